//! Whether berth runs rootless, decided as runc decides it.
//!
//! berth is rootless when its effective uid is not 0, or when it runs in a user namespace
//! whose uid map is not the host's identity map: rootless podman runs the runtime as uid 0
//! inside the user namespace it made, where `geteuid() == 0` but nothing of the host is
//! root's to change (cgroups, /run). `--rootless true|false` overrides the detection
//! (`auto` is the default).

use std::path::PathBuf;

use crate::error::{Error, Result};

/// `--rootless`: `true`, `false` or `auto` (detect).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Rootless {
    /// Detect (the default).
    #[default]
    Auto,
    /// Rootless.
    True,
    /// Not rootless.
    False,
}

impl std::str::FromStr for Rootless {
    type Err = Error;
    fn from_str(s: &str) -> Result<Rootless> {
        match s {
            "true" => Ok(Rootless::True),
            "false" => Ok(Rootless::False),
            "auto" | "" => Ok(Rootless::Auto),
            other => Err(Error::Invalid(format!("--rootless {other:?}: must be true, false or auto"))),
        }
    }
}

impl Rootless {
    /// The decision: the flag's, or the detection's.
    pub fn decide(self) -> bool {
        match self {
            Rootless::True => true,
            Rootless::False => false,
            Rootless::Auto => detect(),
        }
    }
}

/// The host's identity map, as `/proc/self/uid_map` shows it outside any user namespace.
fn is_identity_map(map: &str) -> bool {
    let fields: Vec<&str> = map.split_whitespace().collect();
    fields == ["0", "0", "4294967295"]
}

/// Whether this process runs in a user namespace other than the host's.
pub fn in_user_namespace() -> bool {
    std::fs::read_to_string("/proc/self/uid_map").map(|m| !is_identity_map(&m)).unwrap_or(false)
}

/// runc's rule: not root, or root of a user namespace that is not the host's.
pub fn detect() -> bool {
    !rustix::process::geteuid().is_root() || in_user_namespace()
}

/// The default state root: `/run/berth` for root, `$XDG_RUNTIME_DIR/berth` when rootless (as
/// runc's `$XDG_RUNTIME_DIR/runc`). A rootless caller without `XDG_RUNTIME_DIR` must name
/// one: a guessed shared directory could be another user's.
pub fn default_state_root(rootless: bool) -> Result<PathBuf> {
    if !rootless {
        return Ok(PathBuf::from("/run/berth"));
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if !d.is_empty() => Ok(PathBuf::from(d).join("berth")),
        _ => Err(Error::Invalid(
            "rootless: XDG_RUNTIME_DIR is not set, so there is no default state root; set it, or give one with --root"
                .into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_maps() {
        assert!(is_identity_map("         0          0 4294967295\n"));
        assert!(!is_identity_map("         0       1001          1\n         1     100000      65536\n"));
        assert!(!is_identity_map("0 0 65536\n"));
        assert_eq!("auto".parse::<Rootless>().unwrap(), Rootless::Auto);
        assert_eq!("true".parse::<Rootless>().unwrap(), Rootless::True);
        assert!("yes".parse::<Rootless>().is_err());
    }
}
