//! Capability names and numbers (`linux/capability.h`), up to `CAP_CHECKPOINT_RESTORE` (40).
//!
//! Names are matched exactly (`CAP_` prefix, upper case), as runc does: oci-spec's own
//! deserializer would also accept `sys_admin`, but runc drops such names as unknown, and we
//! filter before oci-spec sees them.

use oci_spec::runtime::Capability;

/// Every capability this crate knows, in kernel order; the index is the capability number.
pub const CAPABILITIES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The highest capability number this crate knows (`CAP_CHECKPOINT_RESTORE`).
pub const LAST_CAPABILITY: u32 = 40;

/// `"CAP_SYS_ADMIN"` → `Some(21)`. Exact, case-sensitive match, like runc.
pub fn capability_number(name: &str) -> Option<u32> {
    // Cheap reject before the scan: every name starts with "CAP_".
    if !name.starts_with("CAP_") {
        return None;
    }
    CAPABILITIES.iter().position(|&n| n == name).and_then(|i| u32::try_from(i).ok())
}

/// `21` → `Some("CAP_SYS_ADMIN")`.
pub fn capability_name(number: u32) -> Option<&'static str> {
    CAPABILITIES.get(usize::try_from(number).ok()?).copied()
}

/// The kernel number of an oci-spec capability.
pub fn capability_to_number(cap: Capability) -> u32 {
    use Capability as C;
    // Exhaustive on purpose: a new oci-spec variant must be given its number here.
    match cap {
        C::Chown => 0,
        C::DacOverride => 1,
        C::DacReadSearch => 2,
        C::Fowner => 3,
        C::Fsetid => 4,
        C::Kill => 5,
        C::Setgid => 6,
        C::Setuid => 7,
        C::Setpcap => 8,
        C::LinuxImmutable => 9,
        C::NetBindService => 10,
        C::NetBroadcast => 11,
        C::NetAdmin => 12,
        C::NetRaw => 13,
        C::IpcLock => 14,
        C::IpcOwner => 15,
        C::SysModule => 16,
        C::SysRawio => 17,
        C::SysChroot => 18,
        C::SysPtrace => 19,
        C::SysPacct => 20,
        C::SysAdmin => 21,
        C::SysBoot => 22,
        C::SysNice => 23,
        C::SysResource => 24,
        C::SysTime => 25,
        C::SysTtyConfig => 26,
        C::Mknod => 27,
        C::Lease => 28,
        C::AuditWrite => 29,
        C::AuditControl => 30,
        C::Setfcap => 31,
        C::MacOverride => 32,
        C::MacAdmin => 33,
        C::Syslog => 34,
        C::WakeAlarm => 35,
        C::BlockSuspend => 36,
        C::AuditRead => 37,
        C::Perfmon => 38,
        C::Bpf => 39,
        C::CheckpointRestore => 40,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_matches_kernel_numbers() {
        assert_eq!(capability_number("CAP_CHOWN"), Some(0));
        assert_eq!(capability_number("CAP_NET_BIND_SERVICE"), Some(10));
        assert_eq!(capability_number("CAP_SYS_ADMIN"), Some(21));
        assert_eq!(capability_number("CAP_AUDIT_WRITE"), Some(29));
        assert_eq!(capability_number("CAP_SYSLOG"), Some(34));
        assert_eq!(capability_number("CAP_PERFMON"), Some(38));
        assert_eq!(capability_number("CAP_BPF"), Some(39));
        assert_eq!(capability_number("CAP_CHECKPOINT_RESTORE"), Some(40));
        assert_eq!(capability_number("CAP_FOO"), None);
        assert_eq!(capability_number("cap_sys_admin"), None);
        assert_eq!(capability_number("SYS_ADMIN"), None);
        assert_eq!(capability_name(40), Some("CAP_CHECKPOINT_RESTORE"));
        assert_eq!(capability_name(41), None);
        assert_eq!(LAST_CAPABILITY as usize, CAPABILITIES.len() - 1);
    }

    #[test]
    fn oci_spec_enum_agrees_with_table() {
        // oci-spec serializes a capability as its CAP_ name; that name must map to the same
        // number through the table as through the exhaustive match.
        for (i, name) in CAPABILITIES.iter().enumerate() {
            let cap: Capability = serde_json::from_value(serde_json::Value::String((*name).to_string()))
                .expect("oci-spec knows every capability up to 40");
            assert_eq!(capability_to_number(cap) as usize, i, "{name}");
            assert_eq!(serde_json::to_value(cap).expect("serializes"), serde_json::Value::String((*name).to_string()));
        }
    }
}
