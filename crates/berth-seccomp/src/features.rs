//! What this build of berth-seccomp understands, for `berth features`: every name here is
//! parsed and translated (a unit test checks each against the parser), nothing else is.

/// `linux.seccomp` actions, sorted.
pub const KNOWN_ACTIONS: &[&str] = &[
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_LOG",
    "SCMP_ACT_NOTIFY",
    "SCMP_ACT_TRACE",
    "SCMP_ACT_TRAP",
];

/// Argument comparison operators, sorted.
pub const KNOWN_OPERATORS: &[&str] =
    &["SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT", "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"];

/// Architectures (`SCMP_ARCH_NATIVE` aside), sorted. Whether libseccomp can generate a filter
/// for one depends on the libseccomp installed; an architecture it lacks is an error naming
/// the field at create.
pub const KNOWN_ARCHS: &[&str] = &[
    "SCMP_ARCH_AARCH64",
    "SCMP_ARCH_ARM",
    "SCMP_ARCH_LOONGARCH64",
    "SCMP_ARCH_M68K",
    "SCMP_ARCH_MIPS",
    "SCMP_ARCH_MIPS64",
    "SCMP_ARCH_MIPS64N32",
    "SCMP_ARCH_MIPSEL",
    "SCMP_ARCH_MIPSEL64",
    "SCMP_ARCH_MIPSEL64N32",
    "SCMP_ARCH_PARISC",
    "SCMP_ARCH_PARISC64",
    "SCMP_ARCH_PPC",
    "SCMP_ARCH_PPC64",
    "SCMP_ARCH_PPC64LE",
    "SCMP_ARCH_RISCV64",
    "SCMP_ARCH_S390",
    "SCMP_ARCH_S390X",
    "SCMP_ARCH_SH",
    "SCMP_ARCH_SHEB",
    "SCMP_ARCH_X32",
    "SCMP_ARCH_X86",
    "SCMP_ARCH_X86_64",
];

/// The version of the libseccomp berth runs with (`major.minor.micro`).
pub fn libseccomp_version() -> Option<String> {
    libseccomp::ScmpVersion::current().ok().map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro))
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{Arch, LinuxSeccompAction, LinuxSeccompOperator};
    use serde_json::Value;

    fn parses<T: serde::de::DeserializeOwned>(name: &str) -> bool {
        serde_json::from_value::<T>(Value::String(name.to_string())).is_ok()
    }

    #[test]
    fn every_listed_name_parses_and_the_lists_are_sorted() {
        for (list, what) in [(KNOWN_ACTIONS, "actions"), (KNOWN_OPERATORS, "operators"), (KNOWN_ARCHS, "archs")] {
            let mut s = list.to_vec();
            s.sort_unstable();
            assert_eq!(s, list, "{what} not sorted");
        }
        for a in KNOWN_ACTIONS {
            assert!(parses::<LinuxSeccompAction>(a), "{a}");
        }
        for o in KNOWN_OPERATORS {
            assert!(parses::<LinuxSeccompOperator>(o), "{o}");
        }
        for a in KNOWN_ARCHS {
            assert!(parses::<Arch>(a), "{a}");
        }
        // One per oci-spec variant: the enums have no more than the lists (NATIVE aside).
        assert!(!parses::<LinuxSeccompAction>("SCMP_ACT_BOGUS"));
        assert_eq!(KNOWN_ACTIONS.len(), 9);
        assert_eq!(KNOWN_OPERATORS.len(), 7);
        assert!(libseccomp_version().is_some());
    }
}
