//! Error classes of the embedding API.
//!
//! The original libcontainerd wrapped errors in marker types (`notFoundErr`, `conflictErr`, ...)
//! and its conflict marker was misspelled, so conflicts were never classified (fixed upstream in
//! 87a12421a94f). Here the class is a plain enum that cannot be misspelled, and every error
//! carries one.

use std::fmt;

/// The class of an [`Error`]: what an engine maps to an HTTP status or a gRPC code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// No such container or process (404).
    NotFound,
    /// The request conflicts with the current state (409), e.g. an id already in use.
    Conflict,
    /// The request itself is malformed (400).
    InvalidParameter,
    /// The request asks for a state the object is already in (304), e.g. starting a started
    /// container (moby c030885e7afe).
    NotModified,
    /// The operation does not exist on this platform (501).
    NotImplemented,
    /// A dependency is missing or unreachable (503), e.g. HCS on a non-Windows host.
    Unavailable,
    /// Anything else: the system failed (500).
    System,
}

impl ErrorKind {
    /// A short, stable, lower-case name (`not-found`, `conflict`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not-found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::InvalidParameter => "invalid-parameter",
            ErrorKind::NotModified => "not-modified",
            ErrorKind::NotImplemented => "not-implemented",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::System => "system",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error of the embedding API: a class, a message, and an optional cause.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

/// Result alias for the embedding API.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error of class `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error { kind, message: message.into(), source: None }
    }

    /// An error of class `kind` with `message`, caused by `source`.
    pub fn with_source(
        kind: ErrorKind,
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error { kind, message: message.into(), source: Some(Box::new(source)) }
    }

    /// Class not-found.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }
    /// Class conflict.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, message)
    }
    /// Class invalid-parameter.
    pub fn invalid_parameter(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidParameter, message)
    }
    /// Class not-modified.
    pub fn not_modified(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotModified, message)
    }
    /// Class not-implemented.
    pub fn not_implemented(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotImplemented, message)
    }
    /// Class unavailable.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }
    /// Class system.
    pub fn system(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::System, message)
    }
    /// Class system, wrapping a lower-level error.
    pub fn wrap_system(message: impl Into<String>, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::with_source(ErrorKind::System, message, source)
    }

    /// The class of this error.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
    /// The message, without the cause.
    pub fn message(&self) -> &str {
        &self.message
    }
    /// True if the class is not-found.
    pub fn is_not_found(&self) -> bool {
        self.kind == ErrorKind::NotFound
    }
    /// True if the class is conflict.
    pub fn is_conflict(&self) -> bool {
        self.kind == ErrorKind::Conflict
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Some(s) => write!(f, "{}: {}", self.message, s),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_includes_cause() {
        let e = Error::wrap_system("starting container", std::io::Error::from_raw_os_error(2));
        assert_eq!(e.kind(), ErrorKind::System);
        assert!(e.to_string().starts_with("starting container: "));
        assert!(std::error::Error::source(&e).is_some());
    }

    #[test]
    fn class_names_are_stable() {
        let kinds = [
            (ErrorKind::NotFound, "not-found"),
            (ErrorKind::Conflict, "conflict"),
            (ErrorKind::InvalidParameter, "invalid-parameter"),
            (ErrorKind::NotModified, "not-modified"),
            (ErrorKind::NotImplemented, "not-implemented"),
            (ErrorKind::Unavailable, "unavailable"),
            (ErrorKind::System, "system"),
        ];
        for (k, s) in kinds {
            assert_eq!(k.to_string(), s);
        }
        assert!(Error::not_found("x").is_not_found());
        assert!(Error::conflict("x").is_conflict());
    }
}
