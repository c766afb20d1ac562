//! Capability numbers (names come from berth-spec's table).

/// The number of capability `name` (`CAP_SYS_ADMIN` → 21).
pub fn number(name: &str) -> Option<u32> {
    berth_spec::capability_number(name)
}

/// The kernel's `cap_last_cap`, read once per process: it cannot change while the kernel
/// runs, and a create asks for it once per capability named in the spec (13 reads of the
/// /proc file, 65 syscalls, for runc's default spec before it was cached).
static LAST_CAP: std::sync::OnceLock<u32> = std::sync::OnceLock::new();

/// The highest capability number the running kernel knows.
pub fn last_cap() -> u32 {
    *LAST_CAP.get_or_init(read_last_cap)
}

/// [`last_cap`] for a child cloned from the caller (a container init or exec process): the
/// parent's value if it had read it, else a fresh read that leaves the cache alone, so that
/// a clone of a multi-threaded caller can never wait on an initialisation another of the
/// parent's threads had in progress when it cloned.
pub fn last_cap_in_child() -> u32 {
    LAST_CAP.get().copied().unwrap_or_else(read_last_cap)
}

fn read_last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(berth_spec::LAST_CAPABILITY)
}

#[cfg(test)]
mod tests {
    fn kernels() -> u32 {
        std::fs::read_to_string("/proc/sys/kernel/cap_last_cap").unwrap().trim().parse().unwrap()
    }

    #[test]
    fn last_cap_is_the_kernels_cached_or_not() {
        // Other tests may have filled the cache already; either way every path must agree
        // with the kernel.
        assert_eq!(super::last_cap_in_child(), kernels());
        assert_eq!(super::last_cap(), kernels());
        assert_eq!(super::LAST_CAP.get().copied(), Some(kernels()));
        assert_eq!(super::last_cap_in_child(), kernels());
    }
}
