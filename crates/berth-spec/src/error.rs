//! The one error type of this crate, and the JSON-path rendering every message uses.
//!
//! Every error names *where* in the document the problem is (`linux.namespaces[2].type`) so an
//! operator can fix the bundle without reading berth's source. Paths use the JSON field names,
//! not the Rust ones.

use std::fmt::Write as _;
use std::path::PathBuf;

/// Why a bundle or process document was rejected.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The file could not be read.
    ///
    /// The I/O error is part of the message rather than a `source()`: callers print this error
    /// once, and a chained printer would otherwise repeat it.
    #[error("reading {}: {error}", path.display())]
    Io {
        /// The file that was being read.
        path: PathBuf,
        /// What the kernel said.
        error: std::io::Error,
    },
    /// The bytes are not JSON, or a value has the wrong JSON type or an unknown enum value.
    #[error("{path}: {message} at line {line} column {column}")]
    Json {
        /// JSON path of the offending value (`.` for the document itself).
        path: String,
        /// What is wrong, as serde_json words it.
        message: String,
        /// 1-based line of the offending value (or of the syntax error).
        line: usize,
        /// 1-based column (in bytes) of the offending value (or of the syntax error).
        column: usize,
    },
    /// Well-formed JSON that breaks a rule of the runtime spec (or of runc's reading of it).
    #[error("{path}: {problem}")]
    Invalid {
        /// JSON path of the offending field.
        path: String,
        /// What is wrong with it.
        problem: String,
    },
}

impl SpecError {
    /// The JSON path this error is about, if it is about a place in a document.
    pub fn path(&self) -> Option<&str> {
        match self {
            SpecError::Io { .. } => None,
            SpecError::Json { path, .. } | SpecError::Invalid { path, .. } => Some(path),
        }
    }

    /// `(line, column)` of the problem, for malformed documents.
    pub fn line_column(&self) -> Option<(usize, usize)> {
        match self {
            SpecError::Json { line, column, .. } => Some((*line, *column)),
            _ => None,
        }
    }

    pub(crate) fn invalid(path: impl Into<String>, problem: impl Into<String>) -> Self {
        SpecError::Invalid { path: path.into(), problem: problem.into() }
    }
}

/// One step of a JSON path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
}

/// Appends `.key` (or `["key"]` when the key is not identifier-like, e.g. sysctl names, which
/// contain dots) to `out`.
pub(crate) fn push_key(out: &mut String, key: &str) {
    let ident = !key.is_empty()
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        && !key.as_bytes().first().is_some_and(u8::is_ascii_digit);
    if ident {
        if !out.is_empty() {
            out.push('.');
        }
        out.push_str(key);
    } else {
        out.push('[');
        // A `String` always serializes; the fallback only keeps this panic-free.
        out.push_str(&serde_json::to_string(key).unwrap_or_else(|_| format!("{key:?}")));
        out.push(']');
    }
}

/// `prefix.name`, or just `name` for the document root.
pub(crate) fn field(prefix: &str, name: &str) -> String {
    let mut s = String::with_capacity(prefix.len() + name.len() + 1);
    s.push_str(prefix);
    push_key(&mut s, name);
    s
}

/// `prefix[i]`.
pub(crate) fn index(prefix: &str, i: usize) -> String {
    let mut s = String::with_capacity(prefix.len() + 4);
    s.push_str(prefix);
    let _ = write!(s, "[{i}]");
    s
}

/// `prefix["key"]` or `prefix.key`, for map entries.
pub(crate) fn map_key(prefix: &str, key: &str) -> String {
    field(prefix, key)
}

/// Renders a list of segments the same way the validators do.
pub(crate) fn render(segs: &[Seg]) -> String {
    let mut s = String::new();
    for seg in segs {
        match seg {
            Seg::Key(k) => push_key(&mut s, k),
            Seg::Index(i) => {
                let _ = write!(s, "[{i}]");
            }
        }
    }
    if s.is_empty() {
        s.push('.');
    }
    s
}

/// Converts serde_path_to_error's path into our segments. `Enum`/`Unknown` segments end the
/// path: nothing in the runtime spec is an externally tagged enum, and an unknown step cannot
/// be located in the text anyway.
pub(crate) fn segments(path: &serde_path_to_error::Path) -> Vec<Seg> {
    let mut out = Vec::new();
    for seg in path.iter() {
        match seg {
            serde_path_to_error::Segment::Seq { index } => out.push(Seg::Index(*index)),
            serde_path_to_error::Segment::Map { key } => out.push(Seg::Key(key.clone())),
            serde_path_to_error::Segment::Enum { .. } | serde_path_to_error::Segment::Unknown => break,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_identifiers_and_odd_keys() {
        let segs = vec![Seg::Key("linux".into()), Seg::Key("sysctl".into()), Seg::Key("net.ipv4.ip_forward".into())];
        assert_eq!(render(&segs), r#"linux.sysctl["net.ipv4.ip_forward"]"#);
        assert_eq!(render(&[Seg::Key("mounts".into()), Seg::Index(3)]), "mounts[3]");
        assert_eq!(render(&[]), ".");
        assert_eq!(field("", "args"), "args");
        assert_eq!(field("process", "args"), "process.args");
        assert_eq!(field("x", "1a"), r#"x["1a"]"#);
        assert_eq!(index("process.env", 2), "process.env[2]");
    }

    #[test]
    fn path_accessor() {
        let e = SpecError::invalid("process.args", "must not be empty");
        assert_eq!(e.path(), Some("process.args"));
        assert_eq!(e.to_string(), "process.args: must not be empty");
        let io = SpecError::Io { path: "/x/config.json".into(), error: std::io::Error::from_raw_os_error(2) };
        assert_eq!(io.path(), None);
        assert_eq!(io.to_string(), "reading /x/config.json: No such file or directory (os error 2)");
    }
}
