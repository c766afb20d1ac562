//! Command line of a containerd v2 shim, parsed the way Go's `flag` package does.
//!
//! containerd runs `SHIM -namespace NS -address SOCK -publish-binary BIN -id ID [-debug] start`
//! (working directory = bundle, runtime options on stdin), `... -id ID -bundle B delete` to
//! clean up after a dead shim, and `-v` for the version. Our own server process is started as
//! `SHIM -namespace NS -address SOCK -publish-binary BIN -socket PATH serve`.

/// Parsed flags.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Args {
    /// `-namespace`.
    pub namespace: String,
    /// `-id`.
    pub id: String,
    /// `-address`: containerd's gRPC socket.
    pub address: String,
    /// `-publish-binary`: containerd's binary (for `publish`).
    pub publish_binary: String,
    /// `-bundle`.
    pub bundle: String,
    /// `-socket`: the server's listening socket (server process only).
    pub socket: String,
    /// `-debug`.
    pub debug: bool,
    /// `-v` / `-version`.
    pub version: bool,
    /// `-info` (containerd 2.x).
    pub info: bool,
    /// The action: `start`, `delete`, `serve`, or empty.
    pub action: String,
}

/// A command-line error.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ArgsError {
    /// Unknown flag.
    #[error("flag provided but not defined: -{0}")]
    Unknown(String),
    /// A value flag at the end of the line.
    #[error("flag needs an argument: -{0}")]
    Missing(String),
    /// A bad boolean.
    #[error("invalid boolean value {1:?} for -{0}")]
    Bool(String, String),
}

/// Parses `argv[1..]`.
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Args, ArgsError> {
    let mut a = Args::default();
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let Some(flag) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')).filter(|f| !f.is_empty()) else {
            // Go's flag package stops at the first non-flag argument.
            if a.action.is_empty() {
                a.action = arg;
            }
            continue;
        };
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (flag, None),
        };
        let boolean = |v: Option<String>| -> Result<bool, ArgsError> {
            match v.as_deref() {
                None | Some("true") | Some("1") | Some("t") | Some("T") | Some("TRUE") | Some("True") => Ok(true),
                Some("false") | Some("0") | Some("f") | Some("F") | Some("FALSE") | Some("False") => Ok(false),
                Some(x) => Err(ArgsError::Bool(name.to_string(), x.to_string())),
            }
        };
        match name {
            "debug" => a.debug = boolean(inline)?,
            "v" | "version" => a.version = boolean(inline)?,
            "info" => a.info = boolean(inline)?,
            "namespace" | "id" | "address" | "publish-binary" | "bundle" | "socket" => {
                let v = match inline {
                    Some(v) => v,
                    None => it.next().ok_or_else(|| ArgsError::Missing(name.to_string()))?,
                };
                match name {
                    "namespace" => a.namespace = v,
                    "id" => a.id = v,
                    "address" => a.address = v,
                    "publish-binary" => a.publish_binary = v,
                    "bundle" => a.bundle = v,
                    _ => a.socket = v,
                }
            }
            other => return Err(ArgsError::Unknown(other.to_string())),
        }
    }
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Args, ArgsError> {
        parse(s.split_whitespace().map(String::from))
    }

    #[test]
    fn containerd_start_line() {
        let a = p("-namespace default -address /run/containerd/containerd.sock -publish-binary /usr/bin/containerd -id c1 -debug start").unwrap();
        assert_eq!(a.namespace, "default");
        assert_eq!(a.address, "/run/containerd/containerd.sock");
        assert_eq!(a.publish_binary, "/usr/bin/containerd");
        assert_eq!(a.id, "c1");
        assert!(a.debug);
        assert_eq!(a.action, "start");
    }

    #[test]
    fn equals_form_double_dash_and_errors() {
        let a = p("--namespace=ns -bundle=/b -id x delete").unwrap();
        assert_eq!((a.namespace.as_str(), a.bundle.as_str(), a.action.as_str()), ("ns", "/b", "delete"));
        assert!(p("-v").unwrap().version);
        assert!(!p("-debug=false").unwrap().debug);
        assert_eq!(p("-bogus"), Err(ArgsError::Unknown("bogus".into())));
        assert_eq!(p("-id"), Err(ArgsError::Missing("id".into())));
        assert_eq!(p("-debug=maybe"), Err(ArgsError::Bool("debug".into(), "maybe".into())));
    }
}
