//! Errors of the shim, and their mapping to ttrpc status codes (which containerd turns back
//! into its errdefs classes: NotFound, AlreadyExists, FailedPrecondition, ...).

use containerd_shim_protos::ttrpc::proto::Code;

use crate::ttrpc::RpcError;

/// A shim error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A system call or file operation failed.
    #[error("{context}: {err}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        err: std::io::Error,
    },
    /// The runtime library refused or failed.
    #[error("{0}")]
    Runtime(#[from] berth_linux::Error),
    /// Cgroup operation failed.
    #[error("{0}")]
    Cgroup(#[from] berth_cgroups::CgroupError),
    /// No such task or process.
    #[error("{0}")]
    NotFound(String),
    /// The id is taken.
    #[error("{0}")]
    Exists(String),
    /// The task or process is in the wrong state.
    #[error("{0}")]
    State(String),
    /// A malformed request.
    #[error("{0}")]
    Invalid(String),
    /// Something berth deliberately does not support.
    #[error("{0}")]
    Unsupported(String),
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An [`Error::Io`].
    pub fn io(context: impl Into<String>, err: impl Into<std::io::Error>) -> Self {
        Error::Io { context: context.into(), err: err.into() }
    }
}

impl From<Error> for RpcError {
    fn from(e: Error) -> Self {
        use berth_linux::Error as L;
        let code = match &e {
            Error::NotFound(_) | Error::Runtime(L::NotFound(_)) => Code::NOT_FOUND,
            Error::Exists(_) | Error::Runtime(L::Exists(_)) => Code::ALREADY_EXISTS,
            Error::State(_) | Error::Runtime(L::WrongState(_)) => Code::FAILED_PRECONDITION,
            Error::Invalid(_) | Error::Runtime(L::Invalid(_)) => Code::INVALID_ARGUMENT,
            Error::Unsupported(_) => Code::UNIMPLEMENTED,
            Error::Cgroup(berth_cgroups::CgroupError::Invalid { .. }) => Code::INVALID_ARGUMENT,
            _ => Code::UNKNOWN,
        };
        RpcError::new(code, e.to_string())
    }
}
