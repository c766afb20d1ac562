//! JSON output identical to Go's `encoding/json.Marshal`.
//!
//! serde_json and Go agree on everything the HCS documents use except string escaping: Go
//! escapes `<`, `>` and `&` (HTML-safe by default), U+2028/U+2029 (JavaScript line
//! separators), and — before Go 1.22 — backspace and form feed as `\u0008`/`\u000c` rather
//! than `\b`/`\f`. [`GoFormatter`] changes exactly those; everything else is serde_json's
//! compact output, which matches Go's (no whitespace, lower-case `\u00XX` for other control
//! characters, raw UTF-8 for the rest).

use std::io;

use serde::Serialize;
use serde_json::ser::{CharEscape, Formatter, Serializer};
use serde_json::value::RawValue;

/// A compact serde_json formatter that escapes strings the way Go's `encoding/json` does.
#[derive(Debug, Default, Clone, Copy)]
pub struct GoFormatter;

impl Formatter for GoFormatter {
    fn write_string_fragment<W>(&mut self, writer: &mut W, fragment: &str) -> io::Result<()>
    where
        W: ?Sized + io::Write,
    {
        let bytes = fragment.as_bytes();
        let mut start = 0;
        for (i, ch) in fragment.char_indices() {
            let esc: &[u8] = match ch {
                '<' => b"\\u003c",
                '>' => b"\\u003e",
                '&' => b"\\u0026",
                '\u{2028}' => b"\\u2028",
                '\u{2029}' => b"\\u2029",
                _ => continue,
            };
            // `i` and `i + len` are char boundaries from char_indices, so the slices are exact.
            writer.write_all(bytes.get(start..i).unwrap_or_default())?;
            writer.write_all(esc)?;
            start = i + ch.len_utf8();
        }
        writer.write_all(bytes.get(start..).unwrap_or_default())
    }

    fn write_char_escape<W>(&mut self, writer: &mut W, char_escape: CharEscape) -> io::Result<()>
    where
        W: ?Sized + io::Write,
    {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        match char_escape {
            CharEscape::Quote => writer.write_all(b"\\\""),
            CharEscape::ReverseSolidus => writer.write_all(b"\\\\"),
            // serde_json never asks for an escaped solidus; Go writes `/` verbatim.
            CharEscape::Solidus => writer.write_all(b"/"),
            CharEscape::Backspace => writer.write_all(b"\\u0008"),
            CharEscape::FormFeed => writer.write_all(b"\\u000c"),
            CharEscape::LineFeed => writer.write_all(b"\\n"),
            CharEscape::CarriageReturn => writer.write_all(b"\\r"),
            CharEscape::Tab => writer.write_all(b"\\t"),
            CharEscape::AsciiControl(b) => {
                writer.write_all(&[b'\\', b'u', b'0', b'0', HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]])
            }
        }
    }
}

/// Serializes `value` exactly as Go's `json.Marshal` would (given Go-shaped types).
pub fn to_go_json<T: Serialize + ?Sized>(value: &T) -> Result<String, serde_json::Error> {
    let mut out = Vec::with_capacity(256);
    let mut ser = Serializer::with_formatter(&mut out, GoFormatter);
    value.serialize(&mut ser)?;
    // serde_json only ever writes valid UTF-8; keep the error path anyway instead of panicking.
    String::from_utf8(out).map_err(|e| serde_json::Error::io(io::Error::other(e)))
}

/// Serializes `value` Go-style into a [`RawValue`], to embed verbatim in another document
/// (Go's `*json.RawMessage`, e.g. `ProcessConfig.OCISpecification`).
pub fn to_go_json_raw<T: Serialize + ?Sized>(value: &T) -> Result<Box<RawValue>, serde_json::Error> {
    RawValue::from_string(to_go_json(value)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_go() {
        // Expected bytes are what Go 1.9-1.21 json.Marshal produces for the same string.
        let s = "a<b>&c\u{2028}\u{2029}\"\\/\n\r\t\u{8}\u{c}\u{1}\u{1f}é😀";
        assert_eq!(
            to_go_json(s).unwrap(),
            r#""a\u003cb\u003e\u0026c\u2028\u2029\"\\/\n\r\t\u0008\u000c\u0001\u001fé😀""#
        );
    }

    #[test]
    fn map_keys_are_escaped_and_sorted() {
        let mut m = std::collections::BTreeMap::new();
        m.insert("b&", "1");
        m.insert("a", "<");
        assert_eq!(to_go_json(&m).unwrap(), r#"{"a":"\u003c","b\u0026":"1"}"#);
    }

    #[test]
    fn raw_value_is_embedded_verbatim() {
        #[derive(Serialize)]
        struct Outer {
            #[serde(rename = "X")]
            x: Box<RawValue>,
        }
        let raw = to_go_json_raw(&vec!["<"]).unwrap();
        assert_eq!(to_go_json(&Outer { x: raw }).unwrap(), r#"{"X":["\u003c"]}"#);
    }
}
