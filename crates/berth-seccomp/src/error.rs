//! The crate's error type. Every variant that comes from the spec names the JSON field it is
//! about (`linux.seccomp.syscalls[3].names[0]`), so a user can find the offending line.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong between a `linux.seccomp` object and an installed filter.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// The spec is invalid or asks for something berth refuses to do.
    #[error("{field}: {message}")]
    Invalid {
        /// JSON path of the offending field, e.g. `linux.seccomp.architectures[1]`.
        field: String,
        /// What is wrong with it.
        message: String,
    },

    /// libseccomp refused a value that passed our own validation.
    #[error("{field}: libseccomp refused {what}: {source}")]
    Libseccomp {
        /// JSON path of the field being translated.
        field: String,
        /// What was being added, e.g. `rule for "mkdir"`.
        what: String,
        /// libseccomp's own error.
        #[source]
        source: libseccomp::error::SeccompError,
    },

    /// Exporting the compiled program from libseccomp failed.
    #[error("exporting the seccomp BPF program: {0}")]
    Export(#[source] io::Error),

    /// A serialized filter (cache entry or probe input) is malformed.
    #[error("compiled seccomp filter is malformed: {0}")]
    Format(&'static str),

    /// The kernel refused the filter. Carries only a raw errno so that building it on the
    /// child's no-allocation path stays allocation-free.
    #[error("seccomp(SECCOMP_SET_MODE_FILTER, flags={flags:#x}): {source}")]
    Install {
        /// The `SECCOMP_FILTER_FLAG_*` bits that were passed.
        flags: u32,
        /// The errno.
        #[source]
        source: io::Error,
    },

    /// Talking to the seccomp agent at `linux.seccomp.listenerPath` failed.
    #[error("linux.seccomp.listenerPath {path:?}: {op}: {source}")]
    Listener {
        /// The socket path.
        path: PathBuf,
        /// Which step failed (`connect`, `sendmsg`, ...).
        op: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// A cache entry could not be read.
    #[error("seccomp cache entry {path:?}: {source}")]
    Cache {
        /// The entry.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// Serializing JSON (the cache key or the container process state) failed.
    #[error("serializing JSON: {0}")]
    Json(#[source] serde_json::Error),
}

impl SeccompError {
    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        SeccompError::Invalid { field: field.into(), message: message.into() }
    }
}
