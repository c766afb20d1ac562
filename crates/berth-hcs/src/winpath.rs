//! Go's `path/filepath` with Windows rules, and Go's slash-only `path`, as pure functions.
//!
//! The original ran on Windows only, so every `filepath.Join`/`filepath.Split` in it followed
//! Windows rules (`\` and `/` are separators, `C:` and `\\server\share` are volume names,
//! results use `\`). berth computes the same documents on any host, so these are ports of the
//! Go 1.9 functions (the toolchain of the seed era) instead of `std::path`, which follows the
//! host's rules. LCOW bind mounts used the slash-only `path.Join`, ported as [`posix_join`].
//!
//! All functions work on bytes and only ever split at ASCII separators, so UTF-8 stays intact.

fn is_sep(c: u8) -> bool {
    c == b'\\' || c == b'/'
}

/// Length of the leading volume name: `C:` (2) or `\\server\share` (UNC), else 0.
fn volume_name_len(p: &[u8]) -> usize {
    if p.len() < 2 {
        return 0;
    }
    let c = p[0];
    if p[1] == b':' && c.is_ascii_alphabetic() {
        return 2;
    }
    let l = p.len();
    if l >= 5 && is_sep(p[0]) && is_sep(p[1]) && !is_sep(p[2]) && p[2] != b'.' {
        // \\server\share: server name, one separator, then a share name.
        let mut n = 3;
        while n < l - 1 {
            if is_sep(p[n]) {
                n += 1;
                if !is_sep(p[n]) {
                    if p[n] == b'.' {
                        break;
                    }
                    while n < l {
                        if is_sep(p[n]) {
                            break;
                        }
                        n += 1;
                    }
                    return n;
                }
                break;
            }
            n += 1;
        }
    }
    0
}

fn from_slash(v: Vec<u8>) -> String {
    let v: Vec<u8> = v.into_iter().map(|c| if c == b'/' { b'\\' } else { c }).collect();
    // Only ASCII bytes were replaced or removed at ASCII boundaries: still UTF-8.
    String::from_utf8(v).unwrap_or_default()
}

/// Go `filepath.Clean` (Windows).
pub fn clean(path: &str) -> String {
    let orig = path.as_bytes();
    let vol_len = volume_name_len(orig);
    let p = &orig[vol_len..];
    if p.is_empty() {
        if vol_len > 1 && orig.get(1) != Some(&b':') {
            return from_slash(orig.to_vec());
        }
        return format!("{path}.");
    }
    let rooted = is_sep(p[0]);
    let n = p.len();
    let mut out: Vec<u8> = orig[..vol_len].to_vec();
    let base = vol_len;
    let (mut r, mut dotdot) = (0usize, 0usize);
    if rooted {
        out.push(b'\\');
        r = 1;
        dotdot = 1;
    }
    // `w` is the length of the cleaned part after the volume.
    let w = |out: &Vec<u8>| out.len() - base;
    while r < n {
        if is_sep(p[r]) || (p[r] == b'.' && (r + 1 == n || is_sep(p[r + 1]))) {
            // Empty element or `.`.
            r += 1;
        } else if p[r] == b'.' && p[r + 1] == b'.' && (r + 2 == n || is_sep(p[r + 2])) {
            r += 2;
            if w(&out) > dotdot {
                // Backtrack over the last element and the separator before it.
                let mut wv = w(&out) - 1;
                while wv > dotdot && !is_sep(out[base + wv]) {
                    wv -= 1;
                }
                out.truncate(base + wv);
            } else if !rooted {
                if w(&out) > 0 {
                    out.push(b'\\');
                }
                out.extend_from_slice(b"..");
                dotdot = w(&out);
            }
        } else {
            if (rooted && w(&out) != 1) || (!rooted && w(&out) != 0) {
                out.push(b'\\');
            }
            while r < n && !is_sep(p[r]) {
                out.push(p[r]);
                r += 1;
            }
        }
    }
    if w(&out) == 0 {
        out.push(b'.');
    }
    from_slash(out)
}

fn is_unc(p: &str) -> bool {
    volume_name_len(p.as_bytes()) > 2
}

/// Go `filepath.Join` (Windows): joins the non-empty tail from the first non-empty element
/// with `\` and cleans, without ever turning two non-UNC parts into a UNC path.
pub fn join(elems: &[&str]) -> String {
    let Some(first) = elems.iter().position(|e| !e.is_empty()) else {
        return String::new();
    };
    let elems = &elems[first..];
    let head = elems[0];
    if head.len() == 2 && head.as_bytes()[1] == b':' {
        // A bare drive letter stays relative to that drive's current directory.
        return clean(&format!("{}{}", head, elems[1..].join("\\")));
    }
    let p = clean(&elems.join("\\"));
    if !is_unc(&p) {
        return p;
    }
    let head = clean(head);
    if is_unc(&head) {
        return p;
    }
    let tail = clean(&elems[1..].join("\\"));
    if head.ends_with('\\') {
        format!("{head}{tail}")
    } else {
        format!("{head}\\{tail}")
    }
}

/// Go `filepath.Split` (Windows): `(dir, file)` split after the last separator.
pub fn split(path: &str) -> (&str, &str) {
    let b = path.as_bytes();
    let vol = volume_name_len(b);
    let mut i = b.len();
    while i > vol && !is_sep(b[i - 1]) {
        i -= 1;
    }
    (&path[..i], &path[i..])
}

/// Go `path.Clean` (slash-only).
pub fn posix_clean(path: &str) -> String {
    if path.is_empty() {
        return ".".to_string();
    }
    let p = path.as_bytes();
    let rooted = p[0] == b'/';
    let n = p.len();
    let mut out: Vec<u8> = Vec::with_capacity(n);
    let (mut r, mut dotdot) = (0usize, 0usize);
    if rooted {
        out.push(b'/');
        r = 1;
        dotdot = 1;
    }
    while r < n {
        if p[r] == b'/' || (p[r] == b'.' && (r + 1 == n || p[r + 1] == b'/')) {
            r += 1;
        } else if p[r] == b'.' && p[r + 1] == b'.' && (r + 2 == n || p[r + 2] == b'/') {
            r += 2;
            if out.len() > dotdot {
                let mut wv = out.len() - 1;
                while wv > dotdot && out[wv] != b'/' {
                    wv -= 1;
                }
                out.truncate(wv);
            } else if !rooted {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(b"..");
                dotdot = out.len();
            }
        } else {
            if (rooted && out.len() != 1) || (!rooted && !out.is_empty()) {
                out.push(b'/');
            }
            while r < n && p[r] != b'/' {
                out.push(p[r]);
                r += 1;
            }
        }
    }
    if out.is_empty() {
        return ".".to_string();
    }
    String::from_utf8(out).unwrap_or_default()
}

/// Go `path.Join` (slash-only).
pub fn posix_join(elems: &[&str]) -> String {
    match elems.iter().position(|e| !e.is_empty()) {
        Some(i) => posix_clean(&elems[i..].join("/")),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_matches_go_windows() {
        // Cases from Go's filepath tests (windows) plus the shapes the original produced.
        // The port follows Go 1.9, the toolchain of the seed era.
        for (i, want) in [
            ("", "."),
            ("c:", "c:."),
            ("c:\\", "c:\\"),
            ("c:\\abc", "c:\\abc"),
            ("c:abc\\..\\..\\.\\..\\def", "c:..\\..\\def"),
            ("c:\\abc\\def\\..\\..", "c:\\"),
            ("c:\\..\\abc", "c:\\abc"),
            ("c:..\\abc", "c:..\\abc"),
            ("\\", "\\"),
            ("/", "\\"),
            ("\\\\i\\..\\c$", "\\c$"),
            ("\\\\i\\..\\i\\c$", "\\i\\c$"),
            ("\\\\i\\..\\I\\c$", "\\I\\c$"),
            ("\\\\host\\share\\foo\\..\\bar", "\\\\host\\share\\bar"),
            ("//host/share/foo/../baz", "\\\\host\\share\\baz"),
            ("\\\\a\\b\\..\\c", "\\\\a\\b\\c"),
            ("\\\\a\\b", "\\\\a\\b"),
            ("abc/def", "abc\\def"),
            ("a//b/./c/..", "a\\b"),
            ("../../x", "..\\..\\x"),
            ("C:\\control\\windowsfilter\\x\\", "C:\\control\\windowsfilter\\x"),
        ] {
            assert_eq!(clean(i), want, "Clean({i:?})");
        }
    }

    #[test]
    fn join_matches_go_windows() {
        for (e, want) in [
            (&["directory", "file"][..], "directory\\file"),
            (&["C:\\Windows\\", "System32"], "C:\\Windows\\System32"),
            (&["C:\\Windows\\", ""], "C:\\Windows"),
            (&["C:\\", "Windows"], "C:\\Windows"),
            (&["C:", "a"], "C:a"),
            (&["C:", "a\\b"], "C:a\\b"),
            (&["C:", "a", "b"], "C:a\\b"),
            // Go 1.9 joined a bare drive with the rest as is (empty parts included); Go 1.20
            // changed these two to "C:b".
            (&["C:", "", "b"], "C:\\b"),
            (&["C:", "", "", "b"], "C:\\b"),
            (&["C:", ""], "C:."),
            (&["C:", "", ""], "C:\\"),
            (&["C:.", "a"], "C:a"),
            (&["C:a", "b"], "C:a\\b"),
            (&["C:a", "b", "d"], "C:a\\b\\d"),
            (&["\\\\host\\share", "foo"], "\\\\host\\share\\foo"),
            (&["\\\\host\\share\\foo"], "\\\\host\\share\\foo"),
            (&["//host/share", "foo/bar"], "\\\\host\\share\\foo\\bar"),
            (&["\\"], "\\"),
            (&["\\", ""], "\\"),
            (&["\\", "a"], "\\a"),
            (&["\\\\", "a"], "\\a"),
            (&["\\", "a", "b"], "\\a\\b"),
            (&["\\\\", "a", "b"], "\\a\\b"),
            (&["\\", "\\\\a\\b", "c"], "\\a\\b\\c"),
            (&["\\\\a", "b", "c"], "\\a\\b\\c"),
            (&["\\\\a\\", "b", "c"], "\\a\\b\\c"),
            (&["", ""], ""),
            (&["", "Linux Containers"], "Linux Containers"),
            (&["C:\\control\\windowsfilter\\65bf", "UtilityVM"], "C:\\control\\windowsfilter\\65bf\\UtilityVM"),
        ] {
            assert_eq!(join(e), want, "Join({e:?})");
        }
    }

    #[test]
    fn split_matches_go_windows() {
        for (p, d, f) in [
            ("c:", "c:", ""),
            ("c:/", "c:/", ""),
            ("c:/foo", "c:/", "foo"),
            ("c:/foo/bar", "c:/foo/", "bar"),
            ("//host/share", "//host/share", ""),
            ("//host/share/", "//host/share/", ""),
            ("//host/share/foo", "//host/share/", "foo"),
            ("\\\\host\\share", "\\\\host\\share", ""),
            ("\\\\host\\share\\", "\\\\host\\share\\", ""),
            ("\\\\host\\share\\foo", "\\\\host\\share\\", "foo"),
            ("C:\\a\\layer", "C:\\a\\", "layer"),
            ("layer", "", "layer"),
            ("C:\\a\\é", "C:\\a\\", "é"),
        ] {
            assert_eq!(split(p), (d, f), "Split({p:?})");
        }
    }

    #[test]
    fn posix_join_matches_go_path() {
        for (e, want) in [
            (&["/tmp/gcs/x/binds", "/target"][..], "/tmp/gcs/x/binds/target"),
            (&["/tmp/gcs/x/binds", "target/../a"], "/tmp/gcs/x/binds/a"),
            (&["a", ""], "a"),
            (&["", ""], ""),
            (&["", "a"], "a"),
            (&["a", "b/c"], "a/b/c"),
            (&["/", "../x"], "/x"),
            (&["..", "..", "x"], "../../x"),
            (&["a/b", "../../.."], ".."),
        ] {
            assert_eq!(posix_join(e), want, "path.Join({e:?})");
        }
    }

    #[test]
    fn never_panics_on_odd_bytes() {
        for s in ["\\\\", "\\\\\\", "\\\\a", "\\\\a\\", "\\\\.\\pipe\\x", "..", ".", "é\\..", "\\\\?\\C:\\x"] {
            let _ = clean(s);
            let _ = split(s);
            let _ = join(&[s, s]);
            let _ = posix_clean(s);
        }
    }
}
