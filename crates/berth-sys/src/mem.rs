//! Giving memory back to the kernel in long-lived, mostly idle processes (the containerd shim).
//!
//! Two sources dominate such a process's PSS at rest: heap pages freed by the allocator but
//! kept mapped, and the pages of its own executable that were touched once (at start-up, or
//! while creating a container) and are not needed again until the next request. Both can be
//! handed back without changing any data: [`trim_heap`] asks glibc to return free heap pages;
//! [`release_clean_image_pages`] unmaps the clean, read-only pages of the executable's own file
//! mappings from this process (they stay in the page cache and fault back in on use).

use std::io;

/// Returns free heap memory to the kernel (`malloc_trim(0)`). Returns whether any was released.
pub fn trim_heap() -> bool {
    // SAFETY: malloc_trim only walks the allocator's own free lists under its lock; it takes
    // no pointers from us.
    unsafe { libc::malloc_trim(0) != 0 }
}

/// A private, read-only mapping of the executable: `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: usize,
    end: usize,
}

/// The private, never-writable-now mappings of `exe` in `/proc/self/maps` text.
fn image_mappings(maps: &str, exe: &str) -> Vec<Span> {
    maps.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let range = f.next()?;
            let perms = f.next()?;
            // The path may contain spaces (" (deleted)"): it is the rest of the line.
            let path = f.skip(3).collect::<Vec<_>>().join(" ");
            if path != exe || perms.len() != 4 || perms.contains('w') || !perms.ends_with('p') {
                return None;
            }
            let (a, b) = range.split_once('-')?;
            Some(Span { start: usize::from_str_radix(a, 16).ok()?, end: usize::from_str_radix(b, 16).ok()? })
        })
        .collect()
}

const PAGE: usize = 4096;
/// pagemap: page present in RAM.
const PM_PRESENT: u64 = 1 << 63;
/// pagemap: page swapped out.
const PM_SWAPPED: u64 = 1 << 62;
/// pagemap: file page (or shared anonymous); clear for a private copy-on-write copy.
const PM_FILE: u64 = 1 << 61;

/// Splits `span` into runs of pages that hold no private copy (given the span's pagemap
/// entries, one per page): the ranges whose pages are safe to drop.
fn droppable_runs(span: Span, entries: &[u64]) -> Vec<Span> {
    let mut out = Vec::new();
    let mut run: Option<usize> = None;
    for (i, e) in entries.iter().enumerate() {
        let addr = span.start + i * PAGE;
        let private_copy = (e & PM_PRESENT != 0 && e & PM_FILE == 0) || e & PM_SWAPPED != 0;
        match (private_copy, run) {
            (false, None) => run = Some(addr),
            (true, Some(s)) => {
                out.push(Span { start: s, end: addr });
                run = None;
            }
            _ => {}
        }
    }
    if let Some(s) = run {
        out.push(Span { start: s, end: span.start + entries.len() * PAGE });
    }
    out
}

fn pagemap(f: &std::fs::File, span: Span) -> io::Result<Vec<u64>> {
    use std::os::unix::fs::FileExt;
    let pages = span.end.saturating_sub(span.start) / PAGE;
    let mut buf = vec![0u8; pages * 8];
    f.read_exact_at(&mut buf, (span.start / PAGE * 8) as u64)?;
    Ok(buf.chunks_exact(8).map(|c| u64::from_ne_bytes(c.try_into().unwrap_or_default())).collect())
}

/// Drops this process's mappings of the clean pages of its own executable's read-only
/// private mappings (`MADV_DONTNEED`): code, constants, and the untouched part of the
/// relocation-protected data. Pages holding a private copy (the GOT written by the dynamic
/// loader) are found through `/proc/self/pagemap` and kept. Returns the bytes advised.
pub fn release_clean_image_pages() -> io::Result<usize> {
    let exe = std::fs::read_link("/proc/self/exe")?;
    let exe = exe.to_string_lossy().into_owned();
    let maps = std::fs::read_to_string("/proc/self/maps")?;
    let pm = std::fs::File::open("/proc/self/pagemap")?;
    let mut runs = Vec::new();
    for span in image_mappings(&maps, &exe) {
        runs.extend(droppable_runs(span, &pagemap(&pm, span)?));
    }
    drop((maps, pm));
    let mut total = 0;
    for r in runs {
        let len = r.end - r.start;
        // SAFETY: [start, end) lies in a private, read-only file mapping of this process's
        // executable, and pagemap showed no page in it holding a private (copy-on-write or
        // swapped) copy: every page is either absent or the file's own page-cache page.
        // Nothing in this process makes these mappings writable again, so no copy can appear
        // meanwhile. Dropping the pages loses no data (the next access refaults the same
        // bytes), and the range stays mapped, so no reference into it is invalidated.
        let rc = unsafe { libc::madvise(r.start as *mut libc::c_void, len, libc::MADV_DONTNEED) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        total += len;
    }
    Ok(total)
}

/// Bytes below the stack pointer that are kept (red zone, and the frames of this function and
/// of libc's madvise).
const STACK_MARGIN: usize = 16 * 1024;

/// Drops the pages of the main thread's stack far below the current stack pointer: a deep
/// call chain (creating a container) leaves them dirty, and nothing reads them again before
/// writing. Must be called from the main thread, with no signal handler that could run on
/// that stack in the released range (handlers run at the current stack pointer or on an
/// alternate stack, both above it). Returns the bytes released.
pub fn release_unused_stack() -> io::Result<usize> {
    let marker = 0u8;
    let sp = std::ptr::addr_of!(marker) as usize;
    let maps = std::fs::read_to_string("/proc/self/maps")?;
    let Some(start) = maps.lines().find(|l| l.ends_with("[stack]")).and_then(|l| {
        let range = l.split_whitespace().next()?;
        let (a, b) = range.split_once('-')?;
        let (a, b) = (usize::from_str_radix(a, 16).ok()?, usize::from_str_radix(b, 16).ok()?);
        (a <= sp && sp < b).then_some(a)
    }) else {
        // Not on the main thread's stack: nothing to do.
        return Ok(0);
    };
    let page = 4096;
    let end = (sp.saturating_sub(STACK_MARGIN)) & !(page - 1);
    if end <= start {
        return Ok(0);
    }
    // SAFETY: [start, end) lies in this thread's stack mapping, at least STACK_MARGIN bytes
    // below the current stack pointer: no live frame, red zone or signal frame is there (see
    // the contract above). After MADV_DONTNEED the pages read as zeros, which is fine for
    // memory that is always written before it is read (a new frame).
    let r = unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(end - start)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &str = "\
00200000-00300000 r--p 00000000 fe:00 1 /usr/bin/x
00300000-00600000 r-xp 00100000 fe:00 1 /usr/bin/x
00600000-00604000 rw-p 00400000 fe:00 1 /usr/bin/x
7f00-7f10 r-xp 00000000 fe:00 2 /usr/lib/libc.so.6
7f20-7f30 r--p 00000000 fe:00 3 /usr/bin/x (deleted)
";

    #[test]
    fn only_private_read_only_mappings_of_the_executable() {
        let got = image_mappings(MAPS, "/usr/bin/x");
        assert_eq!(got, vec![Span { start: 0x200000, end: 0x300000 }, Span { start: 0x300000, end: 0x600000 }]);
        assert!(image_mappings(MAPS, "/nonexistent").is_empty());
    }

    #[test]
    fn private_copies_split_the_runs() {
        let span = Span { start: 0x1000, end: 0x6000 };
        let file = PM_PRESENT | PM_FILE;
        let anon = PM_PRESENT;
        // file, absent, anon, file, swapped
        let runs = droppable_runs(span, &[file, 0, anon, file, PM_SWAPPED]);
        assert_eq!(runs, vec![Span { start: 0x1000, end: 0x3000 }, Span { start: 0x4000, end: 0x5000 }]);
        assert_eq!(droppable_runs(span, &[file; 5]), vec![span]);
        assert!(droppable_runs(span, &[anon; 5]).is_empty());
    }

    #[test]
    fn releasing_keeps_the_process_working() {
        let before = std::fs::read_to_string("/proc/self/smaps_rollup").unwrap();
        let n = release_clean_image_pages().unwrap();
        assert!(n > 0, "the test binary has read-only mappings");
        // Code and constants still work after the pages were dropped.
        let v: Vec<u64> = (0..1000).map(|i| i * 3).collect();
        assert_eq!(v.iter().sum::<u64>(), 1_498_500);
        trim_heap();
        assert!(!before.is_empty());
        // Off the main thread (test threads) there is nothing to release, and nothing breaks.
        assert_eq!(release_unused_stack().unwrap(), 0);
    }
}
