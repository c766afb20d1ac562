//! Small, syscall-frugal file helpers for cgroupfs.
//!
//! cgroup files must be written with a single `write(2)` (kernfs parses one
//! buffer per call), are never created (a missing file means a missing
//! controller, which we want to report, not paper over with `O_CREAT`), and
//! are read without the `statx` that `std::fs::read_to_string` adds for its
//! size hint. Every fd is `O_CLOEXEC` and closed before returning.

use std::io;
use std::path::Path;

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

use crate::error::CgroupError;

#[cfg(test)]
thread_local! {
    /// When set, every successful write is appended here so unit tests can
    /// check the exact sequence of writes (a temp dir only keeps the last
    /// value written to each file, while cgroupfs treats each write as a
    /// separate command).
    pub(crate) static JOURNAL: std::cell::RefCell<Option<Vec<(std::path::PathBuf, String)>>> =
        const { std::cell::RefCell::new(None) };
}

fn retry<T>(mut f: impl FnMut() -> Result<T, Errno>) -> Result<T, Errno> {
    loop {
        match f() {
            Err(Errno::INTR) => continue,
            other => return other,
        }
    }
}

/// Writes `value` to an existing file with one `write(2)`.
pub(crate) fn write_raw(path: &Path, value: &[u8]) -> io::Result<()> {
    let fd = retry(|| rustix::fs::open(path, OFlags::WRONLY | OFlags::TRUNC | OFlags::CLOEXEC, Mode::empty()))?;
    let n = retry(|| rustix::io::write(&fd, value))?;
    if n != value.len() {
        return Err(io::Error::new(io::ErrorKind::WriteZero, format!("short write ({n} of {} bytes)", value.len())));
    }
    #[cfg(test)]
    JOURNAL.with(|j| {
        if let Some(j) = j.borrow_mut().as_mut() {
            j.push((path.to_path_buf(), String::from_utf8_lossy(value).into_owned()));
        }
    });
    Ok(())
}

/// Writes `dir/file`; the error names the file and, if given, the spec field.
pub(crate) fn write(dir: &Path, file: &str, value: &str, field: Option<&str>) -> Result<(), CgroupError> {
    let path = dir.join(file);
    write_raw(&path, value.as_bytes()).map_err(|source| {
        let hint = hint_for(&source, file);
        CgroupError::Write { field: field.map(str::to_owned), path, source, hint }
    })
}

/// Adds a hint to the errors users most often hit.
fn hint_for(err: &io::Error, file: &str) -> Option<String> {
    match err.raw_os_error() {
        Some(libc::ENOENT) if file.starts_with("hugetlb.") => Some(format!(
            "no such huge page size here; this kernel supports: {}",
            crate::stats::huge_page_sizes().join(", ")
        )),
        Some(libc::ENOENT) => {
            Some(format!("the kernel does not provide {file} here: controller not enabled or feature not built in"))
        }
        _ => None,
    }
}

/// Reads a whole (small) file.
pub(crate) fn read_raw(path: &Path) -> io::Result<String> {
    let fd = retry(|| rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()))?;
    let mut chunk = [0u8; 4096];
    let mut out: Vec<u8> = Vec::new();
    loop {
        let n = retry(|| rustix::io::read(&fd, &mut chunk[..]))?;
        let Some(got) = chunk.get(..n) else { break };
        out.extend_from_slice(got);
        // cgroupfs and procfs files are seq_files, which fill the buffer
        // unless they hit the end, and regular files only read short at
        // EOF: a short read saves the final zero-length `read`.
        if n < chunk.len() {
            break;
        }
    }
    String::from_utf8(out).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Reads `dir/file`.
pub(crate) fn read(dir: &Path, file: &str) -> Result<String, CgroupError> {
    let path = dir.join(file);
    read_raw(&path).map_err(|source| CgroupError::Read { path, source })
}

/// Parses a single number; `max` means unlimited (`u64::MAX`).
pub(crate) fn parse_u64(path: &Path, s: &str) -> Result<u64, CgroupError> {
    let s = s.trim();
    if s == "max" {
        return Ok(u64::MAX);
    }
    s.parse::<u64>()
        .map_err(|e| CgroupError::Parse { path: path.to_path_buf(), reason: format!("{s:?} is not a number: {e}") })
}

/// Reads `dir/file` as one number.
pub(crate) fn read_u64(dir: &Path, file: &str) -> Result<u64, CgroupError> {
    let content = read(dir, file)?;
    parse_u64(&dir.join(file), &content)
}

/// Like [`read_u64`] but `Ok(None)` when the file does not exist.
pub(crate) fn read_u64_opt(dir: &Path, file: &str) -> Result<Option<u64>, CgroupError> {
    match read(dir, file) {
        Ok(c) => parse_u64(&dir.join(file), &c).map(Some),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Iterates `key value` lines (memory.stat, cpu.stat, memory.events, ...),
/// skipping lines that are not of that shape.
pub(crate) fn key_values(content: &str) -> impl Iterator<Item = (&str, u64)> {
    content.lines().filter_map(|line| {
        let mut it = line.split_ascii_whitespace();
        let k = it.next()?;
        let v = it.next()?;
        if it.next().is_some() {
            return None;
        }
        Some((k, if v == "max" { u64::MAX } else { v.parse().ok()? }))
    })
}

/// Value of `key` in a flat-keyed file, if present.
pub(crate) fn value_of(content: &str, key: &str) -> Option<u64> {
    key_values(content).find(|(k, _)| *k == key).map(|(_, v)| v)
}

/// Whether `path` exists (one `access(2)`).
pub(crate) fn exists(path: &Path) -> bool {
    rustix::fs::access(path, rustix::fs::Access::EXISTS).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_handles_files_larger_than_the_first_buffer() {
        let dir = tempfile::tempdir().unwrap();
        let big = "x".repeat(10_000);
        std::fs::write(dir.path().join("f"), &big).unwrap();
        assert_eq!(read(dir.path(), "f").unwrap(), big);
    }

    #[test]
    fn write_never_creates_files_and_names_field_and_path() {
        let dir = tempfile::tempdir().unwrap();
        let err = write(dir.path(), "memory.max", "1", Some("linux.resources.memory.limit")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("linux.resources.memory.limit: writing "), "{msg}");
        assert!(msg.contains("memory.max: No such file or directory"), "{msg}");
        assert!(!dir.path().join("memory.max").exists());
    }

    #[test]
    fn key_values_parses_flat_keyed_files() {
        let c = "oom 1\noom_kill 3\nbad line here\nmax max\n";
        assert_eq!(value_of(c, "oom_kill"), Some(3));
        assert_eq!(value_of(c, "max"), Some(u64::MAX));
        assert_eq!(value_of(c, "bad"), None);
    }
}
