//! Finds where a JSON path points in the original text, to give type errors a line and column.
//!
//! Typed deserialization runs over a `serde_json::Value` (see `parse.rs` for why), and a `Value`
//! has forgotten where things were. Type errors are rare, so on that cold path we walk the raw
//! bytes again, following the path serde_path_to_error reported. The input is known to be
//! valid JSON at this point (it parsed into a `Value`), so the scanner only needs to be
//! correct for valid JSON, but it must never panic or loop on anything.

use crate::error::Seg;

/// Byte offset of the value at `path`, or of the deepest ancestor that could be found.
pub(crate) fn locate(bytes: &[u8], path: &[Seg]) -> usize {
    let mut sc = Scanner { b: bytes, i: 0 };
    sc.ws();
    let mut found = sc.i;
    for seg in path {
        let next = match seg {
            Seg::Key(k) => sc.member(k),
            Seg::Index(n) => sc.element(*n),
        };
        match next {
            Some(pos) => {
                found = pos;
                sc.i = pos;
            }
            None => break,
        }
    }
    found
}

/// 1-based (line, column) of a byte offset; the column counts bytes, like serde_json's.
pub(crate) fn line_col(bytes: &[u8], offset: usize) -> (usize, usize) {
    let upto = bytes.get(..offset).unwrap_or(bytes);
    let line = upto.iter().filter(|&&b| b == b'\n').count() + 1;
    let col = match upto.iter().rposition(|&b| b == b'\n') {
        Some(nl) => offset - nl,
        None => offset + 1,
    };
    (line, col)
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    /// At an opening quote: skips the string, returns the range of its raw contents.
    fn string(&mut self) -> Option<(usize, usize)> {
        if self.peek() != Some(b'"') {
            return None;
        }
        self.i += 1;
        let start = self.i;
        loop {
            match self.peek()? {
                b'\\' => self.i += 2,
                b'"' => {
                    let end = self.i;
                    self.i += 1;
                    return Some((start, end));
                }
                _ => self.i += 1,
            }
        }
    }

    /// Skips any value starting at the current (non-whitespace) position.
    fn skip_value(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(|_| ()),
            b'{' | b'[' => {
                let mut depth = 0usize;
                loop {
                    match self.peek()? {
                        b'"' => {
                            self.string()?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth = depth.checked_sub(1)?;
                            if depth == 0 {
                                self.i += 1;
                                return Some(());
                            }
                        }
                        _ => {}
                    }
                    self.i += 1;
                }
            }
            _ => {
                let start = self.i;
                while let Some(c) = self.peek() {
                    if matches!(c, b',' | b']' | b'}' | b' ' | b'\t' | b'\n' | b'\r') {
                        break;
                    }
                    self.i += 1;
                }
                (self.i > start).then_some(())
            }
        }
    }

    /// At an object: offset of the value of the *last* member named `key` (serde_json keeps
    /// the last of duplicate keys, so that is the one a type error is about).
    fn member(&mut self, key: &str) -> Option<usize> {
        if self.peek() != Some(b'{') {
            return None;
        }
        self.i += 1;
        let mut hit = None;
        loop {
            self.ws();
            if self.peek()? == b'}' {
                return hit;
            }
            let (s, e) = self.string()?;
            let raw = self.b.get(s..e)?;
            let matches = if raw.contains(&b'\\') {
                // Escaped keys are rare; let serde_json decode the quoted string.
                serde_json::from_slice::<String>(self.b.get(s - 1..e + 1)?).ok()? == key
            } else {
                raw == key.as_bytes()
            };
            self.ws();
            if self.peek()? != b':' {
                return None;
            }
            self.i += 1;
            self.ws();
            if matches {
                hit = Some(self.i);
            }
            self.skip_value()?;
            self.ws();
            match self.peek()? {
                b',' => self.i += 1,
                b'}' => return hit,
                _ => return None,
            }
        }
    }

    /// At an array: offset of element `n`.
    fn element(&mut self, n: usize) -> Option<usize> {
        if self.peek() != Some(b'[') {
            return None;
        }
        self.i += 1;
        let mut k = 0usize;
        loop {
            self.ws();
            if self.peek()? == b']' {
                return None;
            }
            if k == n {
                return Some(self.i);
            }
            self.skip_value()?;
            self.ws();
            match self.peek()? {
                b',' => self.i += 1,
                _ => return None,
            }
            k += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str, path: &[Seg]) -> (usize, usize) {
        line_col(text.as_bytes(), locate(text.as_bytes(), path))
    }

    #[test]
    fn finds_nested_members_and_elements() {
        let text = "{\n  \"a\": {\"b\": [1, {\"c\": \"x\"}]},\n  \"d\": 2\n}";
        assert_eq!(at(text, &[Seg::Key("d".into())]), (3, 8));
        assert_eq!(
            at(text, &[Seg::Key("a".into()), Seg::Key("b".into()), Seg::Index(1), Seg::Key("c".into())]),
            (2, 24)
        );
        // Missing step: stops at the deepest ancestor found.
        assert_eq!(at(text, &[Seg::Key("a".into()), Seg::Key("zz".into())]), (2, 8));
        assert_eq!(at(text, &[]), (1, 1));
    }

    #[test]
    fn escaped_and_duplicate_keys() {
        let text = r#"{"k\u0065y": 1, "key": [true, "a\"]b", 3]}"#;
        assert_eq!(at(text, &[Seg::Key("key".into()), Seg::Index(2)]), (1, 40));
    }

    #[test]
    fn garbage_does_not_panic() {
        for text in ["", "{", "[", "{\"a\"", "{\"a\":", "[1,", "\"\\", "}", "{\"a\":[}"] {
            let _ = locate(text.as_bytes(), &[Seg::Key("a".into()), Seg::Index(3)]);
            let _ = line_col(text.as_bytes(), 1000);
        }
    }
}
