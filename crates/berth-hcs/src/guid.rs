//! Layer ids: GUIDs derived from layer folder names by HCS's `NameToGuid`.
//!
//! HCS identifies each read-only layer by a GUID computed from the base name of its folder
//! (`vmcompute.dll!NameToGuid`, "ensuring GUIDs generated with the same string are common
//! across all clients"). Microsoft never documented the algorithm; its outputs are RFC 4122
//! version-5 (name-based, SHA-1) GUIDs, but no namespace/encoding combination tried so far
//! reproduces them. So the function sits behind the [`NameToGuid`] trait:
//!
//! * on Windows, [`crate::hcs::VmcomputeNameToGuid`] calls the real export;
//! * elsewhere, [`StandInNameToGuid`] is a **deterministic stand-in, not the real algorithm**:
//!   it knows the two published input/output pairs and derives a version-5-shaped GUID from a
//!   SHA-256 of the name for anything else. Documents produced with it (e.g. by the
//!   `berth hcs-config` dry run on Linux) carry layer ids that real HCS would not compute.
//!
//! [`Guid`] keeps the 16 bytes in Windows memory layout (`Data1`/`Data2`/`Data3` little
//! endian), and its text form byte-swaps the first three groups exactly as hcsshim's
//! `GUID.ToString()` did.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

/// A GUID in Windows memory layout (the `GUID` struct's bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Guid(pub [u8; 16]);

impl Guid {
    /// The GUID whose text form is the RFC 4122 big-endian `bytes` (first three groups are
    /// swapped into memory layout).
    pub fn from_rfc4122_bytes(b: [u8; 16]) -> Guid {
        Guid([b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]])
    }
}

impl fmt::Display for Guid {
    /// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, lower case, no braces; the first three groups
    /// are the little-endian `Data1`, `Data2`, `Data3`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = &self.0;
        write!(
            f,
            "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
            g[3], g[2], g[1], g[0], g[5], g[4], g[7], g[6], g[8], g[9], g[10], g[11], g[12], g[13], g[14], g[15]
        )
    }
}

/// Why a GUID string could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid GUID {0:?}: want xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx")]
pub struct GuidParseError(pub String);

impl FromStr for Guid {
    type Err = GuidParseError;

    fn from_str(s: &str) -> Result<Guid, GuidParseError> {
        let err = || GuidParseError(s.to_string());
        let b = s.as_bytes();
        if b.len() != 36 {
            return Err(err());
        }
        let mut be = [0u8; 16];
        let mut n = 0;
        let mut i = 0;
        while i < 36 {
            if matches!(i, 8 | 13 | 18 | 23) {
                if b[i] != b'-' {
                    return Err(err());
                }
                i += 1;
                continue;
            }
            let hi = hex_val(b[i]).ok_or_else(err)?;
            let lo = hex_val(*b.get(i + 1).ok_or_else(err)?).ok_or_else(err)?;
            *be.get_mut(n).ok_or_else(err)? = (hi << 4) | lo;
            n += 1;
            i += 2;
        }
        Ok(Guid::from_rfc4122_bytes(be))
    }
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Failure of a [`NameToGuid`] implementation.
#[derive(Debug, thiserror::Error)]
#[error("NameToGuid({name:?}): {reason}")]
pub struct NameToGuidError {
    /// The name that could not be converted.
    pub name: String,
    /// Why.
    pub reason: String,
}

/// Computes a layer's GUID from the base name of its folder.
pub trait NameToGuid: Send + Sync {
    /// The GUID HCS associates with `name`.
    fn name_to_guid(&self, name: &str) -> Result<Guid, NameToGuidError>;
}

/// Input/output pairs of the real `vmcompute.dll!NameToGuid` that are on public record: the
/// original's Create comment, and microsoft/hcsshim issue #1072.
pub const KNOWN_NAME_TO_GUID: &[(&str, &str)] = &[
    ("65bf96e5760a09edf1790cb229e2dfb2dbd0fcdc0bf7451bae099106bfbfea0c", "18955d65-d45a-557b-bf1c-49d6dfefc526"),
    ("4", "bd9c3ef9-f239-59b5-a27e-15c523b1d149"),
];

/// Deterministic stand-in for `NameToGuid` on hosts without vmcompute.dll.
///
/// **Not the real algorithm** (see the module docs). For the names in
/// [`KNOWN_NAME_TO_GUID`] it returns the real answer; for any other name it returns the
/// SHA-256 of a fixed prefix and the name's UTF-16LE bytes, truncated to 16 bytes, with the
/// RFC 4122 version (5) and variant bits set so the shape matches real layer ids.
#[derive(Debug, Clone, Copy, Default)]
pub struct StandInNameToGuid;

impl NameToGuid for StandInNameToGuid {
    fn name_to_guid(&self, name: &str) -> Result<Guid, NameToGuidError> {
        if let Some((_, g)) = KNOWN_NAME_TO_GUID.iter().find(|(n, _)| *n == name) {
            return g
                .parse()
                .map_err(|e: GuidParseError| NameToGuidError { name: name.to_string(), reason: e.to_string() });
        }
        let mut h = Sha256::new();
        h.update(b"berth-hcs stand-in NameToGuid (not vmcompute's algorithm)\0");
        for u in name.encode_utf16() {
            h.update(u.to_le_bytes());
        }
        let d = h.finalize();
        let mut be = [0u8; 16];
        be.copy_from_slice(&d[..16]);
        be[6] = (be[6] & 0x0f) | 0x50;
        be[8] = (be[8] & 0x3f) | 0x80;
        Ok(Guid::from_rfc4122_bytes(be))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form_swaps_first_three_groups() {
        let mut b = [0u8; 16];
        for (i, v) in b.iter_mut().enumerate() {
            *v = i as u8;
        }
        // hcsshim GUID.ToString() of bytes 00..0f.
        assert_eq!(Guid(b).to_string(), "03020100-0504-0706-0809-0a0b0c0d0e0f");
        assert_eq!("03020100-0504-0706-0809-0a0b0c0d0e0f".parse::<Guid>().unwrap(), Guid(b));
    }

    #[test]
    fn parse_rejects_malformed() {
        for s in [
            "",
            "03020100-0504-0706-0809-0a0b0c0d0e0",
            "03020100-0504-0706-0809+0a0b0c0d0e0f",
            "0302010g-0504-0706-0809-0a0b0c0d0e0f",
            "{3020100-0504-0706-0809-0a0b0c0d0e0f}",
            "0302010é-0504-0706-0809-0a0b0c0d0e0f",
        ] {
            assert!(s.parse::<Guid>().is_err(), "{s}");
        }
    }

    #[test]
    fn stand_in_knows_published_pairs_and_is_deterministic() {
        let n = StandInNameToGuid;
        for (name, guid) in KNOWN_NAME_TO_GUID {
            assert_eq!(n.name_to_guid(name).unwrap().to_string(), *guid);
        }
        let a = n.name_to_guid("layer-a").unwrap();
        assert_eq!(a, n.name_to_guid("layer-a").unwrap());
        assert_ne!(a, n.name_to_guid("layer-b").unwrap());
        let s = a.to_string();
        assert_eq!(&s[14..15], "5", "version nibble in {s}");
        assert!(matches!(&s[19..20], "8" | "9" | "a" | "b"), "variant in {s}");
    }
}
