//! [`CompiledFilter`]: a finished classic-BPF program plus the `seccomp(2)` flags to install it
//! with, its byte serialization (used by the cache and by the probe), and installation.

use std::fmt;
use std::os::fd::OwnedFd;

use berth_sys::seccomp::{
    self as sys, SockFilter, BPF_MAXINSNS, FILTER_FLAG_LOG, FILTER_FLAG_NEW_LISTENER, FILTER_FLAG_SPEC_ALLOW,
    FILTER_FLAG_WAIT_KILLABLE_RECV,
};
use sha2::{Digest, Sha256};

use crate::SeccompError;

/// Serialization magic; the trailing digit is the format version.
const MAGIC: &[u8; 8] = b"BERTHBF1";
const HEADER_LEN: usize = MAGIC.len() + 4 + 4;
const INSN_LEN: usize = 8;
const DIGEST_LEN: usize = 32;
/// The largest valid serialization; readers use it to bound how much they read.
pub(crate) const MAX_SERIALIZED_LEN: usize = HEADER_LEN + BPF_MAXINSNS * INSN_LEN + DIGEST_LEN;

/// Every flag [`crate::compile`] can emit. TSYNC is never emitted: the filter is installed by
/// a single-threaded child, and the kernel refuses TSYNC together with NEW_LISTENER.
pub(crate) const KNOWN_FLAGS: u32 =
    FILTER_FLAG_LOG | FILTER_FLAG_SPEC_ALLOW | FILTER_FLAG_NEW_LISTENER | FILTER_FLAG_WAIT_KILLABLE_RECV;

/// A seccomp filter compiled in the parent, ready to be installed by the container init.
///
/// Installing it needs no libseccomp and no allocation (see [`CompiledFilter::install`]).
#[derive(Clone)]
pub struct CompiledFilter {
    program: Vec<SockFilter>,
    flags: u32,
}

impl CompiledFilter {
    pub(crate) fn new(program: Vec<SockFilter>, flags: u32) -> Result<Self, SeccompError> {
        if program.is_empty() {
            return Err(SeccompError::Format("empty program"));
        }
        if program.len() > BPF_MAXINSNS {
            return Err(SeccompError::Format("program longer than BPF_MAXINSNS (4096) instructions"));
        }
        if flags & !KNOWN_FLAGS != 0 {
            return Err(SeccompError::Format("unknown SECCOMP_FILTER_FLAG_* bits"));
        }
        if flags & FILTER_FLAG_WAIT_KILLABLE_RECV != 0 && flags & FILTER_FLAG_NEW_LISTENER == 0 {
            return Err(SeccompError::Format("WAIT_KILLABLE_RECV without NEW_LISTENER (the kernel refuses it)"));
        }
        Ok(CompiledFilter { program, flags })
    }

    /// The `SECCOMP_FILTER_FLAG_*` bits passed to `seccomp(2)`.
    pub fn flags(&self) -> u32 {
        self.flags
    }

    /// True when installing returns a notification fd that must go to `listenerPath`.
    pub fn needs_listener(&self) -> bool {
        self.flags & FILTER_FLAG_NEW_LISTENER != 0
    }

    /// The BPF instructions.
    pub fn program(&self) -> &[SockFilter] {
        &self.program
    }

    /// Installs the filter on the calling thread with the raw `seccomp(2)` syscall.
    ///
    /// Meant for the container init between clone and exec: it performs no allocation and
    /// touches no lock (the error carries a raw errno only). The caller must have set
    /// `PR_SET_NO_NEW_PRIVS` or hold `CAP_SYS_ADMIN`. Returns the notify fd when
    /// [`needs_listener`](Self::needs_listener) is true; it is close-on-exec.
    pub fn install(&self) -> Result<Option<OwnedFd>, SeccompError> {
        sys::set_mode_filter(self.flags, &self.program)
            .map_err(|source| SeccompError::Install { flags: self.flags, source })
    }

    /// Serializes the filter: magic, flags, instruction count, instructions (little-endian),
    /// then a SHA-256 of everything before it so truncation or bit rot is detected on read.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.program.len() * INSN_LEN + DIGEST_LEN);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.flags.to_le_bytes());
        // new() bounds the length by BPF_MAXINSNS, so this never saturates.
        let count = u32::try_from(self.program.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&count.to_le_bytes());
        for insn in &self.program {
            out.extend_from_slice(&insn.code.to_le_bytes());
            out.push(insn.jt);
            out.push(insn.jf);
            out.extend_from_slice(&insn.k.to_le_bytes());
        }
        let digest = Sha256::digest(&out);
        out.extend_from_slice(&digest);
        out
    }

    /// Parses what [`to_bytes`](Self::to_bytes) produced. Any damage is an error; nothing is
    /// trusted before the digest has been checked.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SeccompError> {
        if bytes.len() < HEADER_LEN + DIGEST_LEN {
            return Err(SeccompError::Format("too short"));
        }
        let (body, digest) = bytes.split_at(bytes.len() - DIGEST_LEN);
        if Sha256::digest(body).as_slice() != digest {
            return Err(SeccompError::Format("checksum mismatch"));
        }
        let (magic, rest) = body.split_at(MAGIC.len());
        if magic != MAGIC {
            return Err(SeccompError::Format("bad magic or unsupported format version"));
        }
        let (flags, rest) = split_u32(rest)?;
        let (count, insns) = split_u32(rest)?;
        let count = usize::try_from(count).map_err(|_| SeccompError::Format("bad count"))?;
        if insns.len() != count.saturating_mul(INSN_LEN) {
            return Err(SeccompError::Format("instruction count does not match the length"));
        }
        let program = insns
            .chunks_exact(INSN_LEN)
            .map(|c| SockFilter {
                code: u16::from_le_bytes([c[0], c[1]]),
                jt: c[2],
                jf: c[3],
                k: u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect();
        CompiledFilter::new(program, flags)
    }
}

fn split_u32(b: &[u8]) -> Result<(u32, &[u8]), SeccompError> {
    match b.split_first_chunk::<4>() {
        Some((head, rest)) => Ok((u32::from_le_bytes(*head), rest)),
        None => Err(SeccompError::Format("truncated header")),
    }
}

impl PartialEq for CompiledFilter {
    fn eq(&self, other: &Self) -> bool {
        self.flags == other.flags
            && self.program.len() == other.program.len()
            && self
                .program
                .iter()
                .zip(&other.program)
                .all(|(a, b)| a.code == b.code && a.jt == b.jt && a.jf == b.jf && a.k == b.k)
    }
}

impl Eq for CompiledFilter {}

impl fmt::Debug for CompiledFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompiledFilter")
            .field("instructions", &self.program.len())
            .field("flags", &format_args!("{:#x}", self.flags))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CompiledFilter {
        let insns = vec![
            SockFilter { code: 0x20, jt: 0, jf: 0, k: 4 },
            SockFilter { code: 0x06, jt: 1, jf: 2, k: 0x7fff_0000 },
        ];
        CompiledFilter::new(insns, FILTER_FLAG_LOG).unwrap()
    }

    #[test]
    fn bytes_round_trip() {
        let f = sample();
        let back = CompiledFilter::from_bytes(&f.to_bytes()).unwrap();
        assert_eq!(f, back);
        assert_eq!(back.flags(), FILTER_FLAG_LOG);
        assert_eq!(back.program()[1].jf, 2);
    }

    #[test]
    fn every_truncation_and_every_bit_flip_is_rejected() {
        let bytes = sample().to_bytes();
        for len in 0..bytes.len() {
            assert!(CompiledFilter::from_bytes(&bytes[..len]).is_err(), "len {len}");
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x10;
            assert!(CompiledFilter::from_bytes(&b).is_err(), "flip at {i}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(CompiledFilter::from_bytes(&longer).is_err());
    }

    #[test]
    fn rejects_bad_programs_and_flags() {
        assert!(CompiledFilter::new(Vec::new(), 0).is_err());
        let one = SockFilter { code: 0x06, jt: 0, jf: 0, k: 0x7fff_0000 };
        assert!(CompiledFilter::new(vec![one; BPF_MAXINSNS + 1], 0).is_err());
        assert!(CompiledFilter::new(vec![one; BPF_MAXINSNS], 0).is_ok());
        assert!(CompiledFilter::new(vec![one], 1 << 20).is_err());
        assert!(CompiledFilter::new(vec![one], FILTER_FLAG_WAIT_KILLABLE_RECV).is_err());
        let both = FILTER_FLAG_WAIT_KILLABLE_RECV | FILTER_FLAG_NEW_LISTENER;
        assert!(CompiledFilter::new(vec![one], both).unwrap().needs_listener());
    }
}
