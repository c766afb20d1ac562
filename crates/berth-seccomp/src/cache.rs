//! On-disk cache of compiled filters, keyed by what determines the program.
//!
//! Generating Docker's profile through libseccomp costs milliseconds per container start
//! (figures in `docs/seccomp.md`); reading a cached program costs tens of microseconds. crun
//! does the same (`$RUNDIR/.cache/seccomp`, crun 3ebaba33).
//!
//! The key is the SHA-256 of: a format tag, this crate's version, the libseccomp version and
//! API level, the native architecture, and the canonical JSON of the `LinuxSeccomp`
//! (serde_json of the typed struct, so field order and whitespace of the original file do not
//! matter). Entries carry their own checksum ([`CompiledFilter::to_bytes`]), so a short or
//! corrupt entry is detected, ignored and rewritten. Writes go to a unique temporary file
//! (0600) that is renamed over the entry, so readers never see a half-written file. No fsync:
//! a file emptied by a crash just fails its checksum and is regenerated.
//!
//! The cache is an optimisation only: if the directory cannot be used, the filter is compiled
//! and returned anyway (with a warning); compile errors are always errors.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use oci_spec::runtime::LinuxSeccomp;
use sha2::{Digest, Sha256};

use crate::filter::MAX_SERIALIZED_LEN;
use crate::{compile, validate, CompiledFilter, SeccompError};

/// Bump when anything about how a key maps to a program changes without a version bump.
const KEY_TAG: &[u8] = b"berth-seccomp-cache/1";

/// The cache file name (64 hex digits) for `s`.
pub fn cache_key(s: &LinuxSeccomp) -> Result<String, SeccompError> {
    let json = serde_json::to_vec(s).map_err(SeccompError::Json)?;
    let mut h = Sha256::new();
    for part in [KEY_TAG, env!("CARGO_PKG_VERSION").as_bytes()] {
        h.update(part);
        h.update([0]);
    }
    match libseccomp::ScmpVersion::current() {
        Ok(v) => h.update(format!("libseccomp {}.{}.{}", v.major, v.minor, v.micro)),
        Err(_) => h.update("libseccomp ?"),
    }
    h.update([0]);
    // The API level reflects what the running kernel supports, which changes what libseccomp
    // accepts (e.g. NOTIFY needs level 6).
    h.update(format!("api {}", libseccomp::get_api()));
    h.update([0]);
    h.update(std::env::consts::ARCH);
    h.update([0]);
    h.update(&json);
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Path of the cache entry for `s` under `cache_dir`.
pub fn cache_path(s: &LinuxSeccomp, cache_dir: &Path) -> Result<PathBuf, SeccompError> {
    Ok(cache_dir.join(cache_key(s)?))
}

/// Like [`compile`], but reuses a program cached in `cache_dir` (created 0700 if missing).
pub fn compile_cached(s: &LinuxSeccomp, cache_dir: &Path) -> Result<CompiledFilter, SeccompError> {
    // Cheap, and keeps the error behaviour identical to compile() on a cache hit.
    let flags = validate(s)?;
    let path = cache_path(s, cache_dir)?;

    let dir_ok = match prepare_dir(cache_dir) {
        Ok(()) => true,
        Err(e) => {
            log::warn!("seccomp cache {}: {e}; compiling without the cache", cache_dir.display());
            false
        }
    };
    if dir_ok {
        match read_entry(&path) {
            Ok(Some(f)) if f.flags() == flags => return Ok(f),
            Ok(Some(_)) => log::debug!("seccomp cache {}: flags differ, rewriting", path.display()),
            Ok(None) => {}
            Err(e) => log::debug!("seccomp cache {}: {e}, rewriting", path.display()),
        }
    }

    let filter = compile(s)?;
    if dir_ok {
        if let Err(e) = write_entry(cache_dir, &path, &filter) {
            log::warn!("seccomp cache {}: cannot write: {e}", path.display());
        }
    }
    Ok(filter)
}

/// Creates the directory 0700 and refuses one another user could have planted entries in.
fn prepare_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let md = fs::symlink_metadata(dir)?;
    if !md.is_dir() {
        return Err(io::Error::other("not a directory"));
    }
    if md.uid() != rustix::process::geteuid().as_raw() {
        return Err(io::Error::other(format!("owned by uid {}, not by us; its entries cannot be trusted", md.uid())));
    }
    if md.mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// `Ok(None)` when there is no entry; `Err` when there is one but it is unusable.
fn read_entry(path: &Path) -> Result<Option<CompiledFilter>, SeccompError> {
    let file = match OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(SeccompError::Cache { path: path.to_owned(), source }),
    };
    let mut bytes = Vec::with_capacity(4096);
    file.take(MAX_SERIALIZED_LEN as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| SeccompError::Cache { path: path.to_owned(), source })?;
    CompiledFilter::from_bytes(&bytes).map(Some)
}

fn write_entry(dir: &Path, path: &Path, filter: &CompiledFilter) -> io::Result<()> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("entry");
    let tmp = dir.join(format!(".{name}.{}.{}.tmp", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed)));
    let result = (|| {
        let mut f =
            OpenOptions::new().write(true).create_new(true).mode(0o600).custom_flags(libc::O_NOFOLLOW).open(&tmp)?;
        f.write_all(&filter.to_bytes())?;
        drop(f);
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}
