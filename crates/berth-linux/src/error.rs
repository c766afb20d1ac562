//! Errors of the Linux platform.
//!
//! Messages name what failed and on which object (a spec field, a path, a container id), so
//! the CLI can print them as they are.

use std::io;

/// An error from the Linux runtime.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bundle or the request is invalid (bad config.json, bad flag value...).
    #[error("{0}")]
    Invalid(String),
    /// No container with this id. (runc's words, which containerd, Docker and podman match.)
    #[error("container does not exist: {0:?}")]
    NotFound(String),
    /// A container with this id already exists. (runc's words.)
    #[error("container with given ID already exists: {0:?}")]
    Exists(String),
    /// The container is in the wrong state for the operation.
    #[error("{0}")]
    WrongState(String),
    /// A system call or file operation failed.
    // The OS error is part of the message (not a `source`), so printing the error chain does
    // not repeat it.
    #[error("{context}: {err}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        err: io::Error,
    },
    /// The container's init reported a failure during setup.
    #[error("{0}")]
    Init(String),
    /// Cgroup management failed.
    #[error("{0}")]
    Cgroup(String),
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An [`Error::Io`] with context.
    pub fn io(context: impl Into<String>, source: impl Into<io::Error>) -> Self {
        Error::Io { context: context.into(), err: source.into() }
    }
}

/// Adds context to I/O results: `fs::read(p).ctx(|| format!("reading {p:?}"))`.
pub(crate) trait Context<T> {
    fn ctx<F: FnOnce() -> String>(self, f: F) -> Result<T>;
}

impl<T, E: Into<io::Error>> Context<T> for std::result::Result<T, E> {
    fn ctx<F: FnOnce() -> String>(self, f: F) -> Result<T> {
        self.map_err(|e| Error::io(f(), e))
    }
}
