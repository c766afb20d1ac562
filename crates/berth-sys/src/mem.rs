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

/// The private, not writable, file mappings in `/proc/self/maps` text whose path passes `keep`.
fn image_mappings(maps: &str, keep: impl Fn(&str) -> bool) -> Vec<Span> {
    maps.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let range = f.next()?;
            let perms = f.next()?;
            // The path may contain spaces (" (deleted)"): it is the rest of the line.
            let path = f.skip(3).collect::<Vec<_>>().join(" ");
            if !keep(&path) || perms.len() != 4 || perms.contains('w') || !perms.ends_with('p') {
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

/// The droppable page runs of this process's file mappings whose path passes `keep`.
fn clean_runs(keep: impl Fn(&str) -> bool) -> io::Result<Vec<Span>> {
    let maps = std::fs::read_to_string("/proc/self/maps")?;
    let pm = std::fs::File::open("/proc/self/pagemap")?;
    let mut runs = Vec::new();
    for span in image_mappings(&maps, keep) {
        runs.extend(droppable_runs(span, &pagemap(&pm, span)?));
    }
    Ok(runs)
}

fn drop_runs(runs: &[Span]) -> io::Result<usize> {
    let mut total = 0;
    for r in runs {
        let len = r.end - r.start;
        // SAFETY: [start, end) lies in a private, read-only file mapping of this process, and
        // pagemap showed no page in it holding a private (copy-on-write or swapped) copy:
        // every page is either absent or the file's own page-cache page. Nothing in this
        // process makes such mappings writable again, so no copy can appear meanwhile.
        // Dropping the pages loses no data (the next access refaults the same bytes), and the
        // range stays mapped, so no reference into it is invalidated.
        let rc = unsafe { libc::madvise(r.start as *mut libc::c_void, len, libc::MADV_DONTNEED) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        total += len;
    }
    Ok(total)
}

/// Drops this process's mappings of the clean pages of its own executable's read-only
/// private mappings (`MADV_DONTNEED`): code, constants, and the untouched part of the
/// relocation-protected data. Pages holding a private copy (the GOT written by the dynamic
/// loader) are found through `/proc/self/pagemap` and kept. Returns the bytes advised.
pub fn release_clean_image_pages() -> io::Result<usize> {
    let exe = std::fs::read_link("/proc/self/exe")?;
    let exe = exe.to_string_lossy().into_owned();
    drop_runs(&clean_runs(|p| p == exe)?)
}

/// Drops the clean pages of every read-only private file mapping of this process (the
/// executable and its shared libraries, as [`release_clean_image_pages`]), then blocks in
/// `epoll_wait` on `epoll` for at most `timeout_ms` (-1: no limit) until something is ready.
/// The ready event is not consumed (level-triggered sets report it again to the caller's next
/// wait); returns whether one was ready.
///
/// Waiting here, right after the release, is the point: every page touched after the release
/// comes back (with the kernel's fault-around, 64 KiB at a time), and from here to the wait
/// only this function's own code runs. An idle process then holds little more than the page
/// block of this function and its data.
pub fn release_and_wait(epoll: std::os::fd::BorrowedFd<'_>, timeout_ms: i32) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    let runs = clean_runs(|p| p.starts_with('/'))?;
    drop_runs(&runs)?;
    drop(runs);
    let mut ev = libc::epoll_event { events: 0, u64: 0 };
    loop {
        // SAFETY: `ev` is a valid, writable buffer for exactly one event (maxevents = 1);
        // `epoll` is a borrowed, open descriptor.
        let n = unsafe { libc::epoll_wait(epoll.as_raw_fd(), &mut ev, 1, timeout_ms) };
        if n >= 0 {
            return Ok(n > 0);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
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
        let got = image_mappings(MAPS, |p| p == "/usr/bin/x");
        assert_eq!(got, vec![Span { start: 0x200000, end: 0x300000 }, Span { start: 0x300000, end: 0x600000 }]);
        assert!(image_mappings(MAPS, |p| p == "/nonexistent").is_empty());
        // Every file: the libc text and the deleted file's mapping too.
        assert_eq!(image_mappings(MAPS, |p| p.starts_with('/')).len(), 4);
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
        // Release everything, then wait: an epoll set with a ready eventfd returns at once,
        // an empty one times out.
        let ep = rustix::event::epoll::create(rustix::event::epoll::CreateFlags::CLOEXEC).unwrap();
        assert!(!release_and_wait(std::os::fd::AsFd::as_fd(&ep), 10).unwrap());
        let efd = rustix::event::eventfd(1, rustix::event::EventfdFlags::CLOEXEC).unwrap();
        rustix::event::epoll::add(
            &ep,
            &efd,
            rustix::event::epoll::EventData::new_u64(7),
            rustix::event::epoll::EventFlags::IN,
        )
        .unwrap();
        assert!(release_and_wait(std::os::fd::AsFd::as_fd(&ep), -1).unwrap());
        let v: Vec<u64> = (0..100).collect();
        assert_eq!(v.iter().sum::<u64>(), 4950);
    }
}

/// One page of memory shared between the process that makes it and every child it clones
/// afterwards (`MAP_SHARED | MAP_ANONYMOUS`; not inherited across `execve`).
///
/// A container process whose seccomp filter is already installed may be unable to make any
/// syscall, so it cannot report why its `execve` failed over a socket, nor even exit
/// cleanly. Writing to memory needs no syscall: the child leaves its message here and the
/// parent reads it once the child is gone.
#[derive(Debug)]
pub struct SharedPage {
    ptr: std::ptr::NonNull<u8>,
}

const SHARED_PAGE: usize = 4096;
/// The message starts after its length, a `u32` at offset 0.
const MSG_MAX: usize = SHARED_PAGE - 4;

impl SharedPage {
    /// Maps a zeroed shared page.
    pub fn new() -> io::Result<SharedPage> {
        // SAFETY: an anonymous mapping at an address of the kernel's choosing touches no
        // existing memory; the result is checked before use.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                SHARED_PAGE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = std::ptr::NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::from_raw_os_error(libc::ENOMEM))?;
        Ok(SharedPage { ptr })
    }

    fn len_cell(&self) -> &std::sync::atomic::AtomicU32 {
        // SAFETY: the page is page-aligned (so 4-aligned), at least 4 bytes long, lives as
        // long as `self`, and is only ever accessed as this atomic at offset 0 and as plain
        // bytes after it.
        unsafe { &*self.ptr.as_ptr().cast::<std::sync::atomic::AtomicU32>() }
    }

    /// Leaves `msg` (truncated to the page) for the other side. Makes no syscall and does
    /// not allocate.
    pub fn put(&self, msg: &[u8]) {
        let n = msg.len().min(MSG_MAX);
        // SAFETY: the destination is bytes 4..4+n of our own mapping (n <= PAGE - 4), the
        // source is `msg`, and the two cannot overlap. The length is published after the
        // bytes (Release), so a reader that sees it sees them.
        unsafe { std::ptr::copy_nonoverlapping(msg.as_ptr(), self.ptr.as_ptr().add(4), n) };
        self.len_cell().store(n as u32, std::sync::atomic::Ordering::Release);
    }

    /// The message a child left, if any.
    pub fn take(&self) -> Option<Vec<u8>> {
        let n = (self.len_cell().load(std::sync::atomic::Ordering::Acquire) as usize).min(MSG_MAX);
        if n == 0 {
            return None;
        }
        let mut out = vec![0u8; n];
        // SAFETY: bytes 4..4+n lie within the mapping (n <= PAGE - 4), and `out` has room.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.as_ptr().add(4), out.as_mut_ptr(), n) };
        Some(out)
    }
}

impl Drop for SharedPage {
    fn drop(&mut self) {
        // SAFETY: the mapping was created by `new` with this length and is not used after.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), SHARED_PAGE) };
    }
}

#[cfg(test)]
mod shared_page_tests {
    use super::SharedPage;

    // The cross-process path (a container process leaving its message) is covered end to
    // end by berth-cli's security tests: fork is refused in the multi-threaded test harness.
    #[test]
    fn a_message_round_trips_and_is_truncated_to_the_page() {
        let page = SharedPage::new().unwrap();
        assert_eq!(page.take(), None);
        page.put(b"execve failed");
        assert_eq!(page.take().as_deref(), Some(&b"execve failed"[..]));
        page.put(&[b'x'; 10_000]);
        assert_eq!(page.take().map(|m| m.len()), Some(4092));
    }
}
