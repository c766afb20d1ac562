//! Capability numbers (names come from berth-spec's table).

/// The number of capability `name` (`CAP_SYS_ADMIN` → 21).
pub fn number(name: &str) -> Option<u32> {
    berth_spec::capability_number(name)
}

/// The highest capability number the running kernel knows.
pub fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(berth_spec::LAST_CAPABILITY)
}
