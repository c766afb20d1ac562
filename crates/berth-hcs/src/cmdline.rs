//! Windows command-line escaping (Go `syscall.EscapeArg`, which `windows.EscapeArg` is).
//!
//! A Windows process receives one command-line string and splits it itself (by the
//! `CommandLineToArgvW` rules). The original joined `Args` with spaces and relied on the daemon
//! having escaped them; moby 20833b06a0 moved the escaping here: use `process.commandLine`
//! when the spec gives one, else escape every argument and join with spaces.

/// Escapes one argument so `CommandLineToArgvW` yields it back unchanged: quoted if it
/// contains a space or tab (or is empty), with backslashes doubled only where they precede a
/// quote (or the closing quote).
pub fn escape_arg(s: &str) -> String {
    if s.is_empty() {
        return "\"\"".to_string();
    }
    let needs_quotes = s.bytes().any(|c| c == b' ' || c == b'\t');
    if !needs_quotes && !s.bytes().any(|c| c == b'"' || c == b'\\') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 2);
    if needs_quotes {
        out.push('"');
    }
    let mut slashes = 0usize;
    for c in s.chars() {
        match c {
            '\\' => {
                slashes += 1;
                out.push('\\');
            }
            '"' => {
                // Double the backslashes that precede the quote, then escape the quote.
                out.extend(std::iter::repeat_n('\\', slashes));
                out.push('\\');
                out.push('"');
                slashes = 0;
            }
            _ => {
                slashes = 0;
                out.push(c);
            }
        }
    }
    if needs_quotes {
        out.extend(std::iter::repeat_n('\\', slashes));
        out.push('"');
    }
    out
}

/// The command line for `args`: each escaped with [`escape_arg`], joined by single spaces.
pub fn escape_args(args: &[String]) -> String {
    args.iter().map(|a| escape_arg(a)).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_go_escape_arg() {
        // Go's syscall TestEscapeArg cases and a few more.
        for (i, want) in [
            (r#""#, r#""""#),
            (r#"a"#, r#"a"#),
            (r#" "#, r#"" ""#),
            (r#"\"#, r#"\"#),
            (r#"""#, r#"\""#),
            (r#"\""#, r#"\\\""#),
            (r#"\\""#, r#"\\\\\""#),
            (r#"\\ "#, r#""\\ ""#),
            (r#" \\"#, r#"" \\\\""#),
            (r#"a "#, r#""a ""#),
            (r#"C:\"#, r#"C:\"#),
            (r#"C:\Program Files (x32)\Common\"#, r#""C:\Program Files (x32)\Common\\""#),
            (r#"C:\Users\Игорь\"#, r#"C:\Users\Игорь\"#),
            (r#"\\?\C:\Windows"#, r#"\\?\C:\Windows"#),
            (r#"\\server\share\file"#, r#"\\server\share\file"#),
            ("a\tb", "\"a\tb\""),
            (r#"é "q""#, r#""é \"q\"""#),
        ] {
            assert_eq!(escape_arg(i), want, "EscapeArg({i:?})");
        }
    }

    #[test]
    fn joins_with_spaces() {
        let args = vec!["cmd".to_string(), "/S".into(), "/C".into(), "echo hi".into()];
        assert_eq!(escape_args(&args), "cmd /S /C \"echo hi\"");
        assert_eq!(escape_args(&[]), "");
    }
}
