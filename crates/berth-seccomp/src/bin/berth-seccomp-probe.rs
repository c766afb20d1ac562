//! Test helper for berth-seccomp (not shipped): installs a compiled filter in a fresh process
//! and performs one syscall, so tests can observe real kernel behaviour without forking the
//! multi-threaded test harness.
//!
//! ```text
//! berth-seccomp-probe FILTER_FILE [--listener PATH [--metadata TEXT]] [--no-send] OP [ARGS...]
//! ```
//!
//! Prints `ok <return value>` or `errno <n>` for the syscall. Ops: `getpid`, `getsid`,
//! `mkdir PATH`, `personality N`, `fchmodat2 PATH`, `socket DOMAIN TYPE`, `unshare FLAGS`, `mount`,
//! `thread OP...` (run OP on a second thread, then print `survived`), `install-allocs`
//! (heap allocations made by `CompiledFilter::install`), `install-again` (install the same
//! filter a second time), `exec PROG ARGS...`. `--no-send` keeps the notify fd instead of
//! sending it to the listener.
//! Numbers accept a `0x` prefix.

use std::alloc::{GlobalAlloc, Layout, System};
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};

use berth_seccomp::{send_listener_fd, CompiledFilter, ContainerProcessState};

/// Counts heap allocations so `install-allocs` can prove the child path allocates nothing.
struct CountingAlloc;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so the
// GlobalAlloc contract is exactly System's; the counter has no effect on memory.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded from our caller, who upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded from our caller, who upholds `alloc_zeroed`'s contract.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded from our caller, who upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded from our caller, who upholds `dealloc`'s contract.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

fn num(s: Option<&String>) -> Result<u64, String> {
    let s = s.ok_or("missing numeric argument")?;
    let r = match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse(),
    };
    r.map_err(|e| format!("{s:?}: {e}"))
}

fn report(r: Result<i64, std::io::Error>) -> String {
    match r {
        Ok(v) => format!("ok {v}"),
        Err(e) => format!("errno {}", e.raw_os_error().unwrap_or(-1)),
    }
}

fn personality(persona: u64) -> std::io::Result<i64> {
    let persona = libc::c_ulong::try_from(persona).map_err(std::io::Error::other)?;
    // SAFETY: personality(2) takes a plain integer and touches none of our memory.
    let r = unsafe { libc::personality(persona) };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(i64::from(r))
    }
}

/// fchmodat2(2) (Linux 6.6), which libseccomp 2.5 does not know: the ENOSYS stub's test case.
fn fchmodat2(path: &str) -> std::io::Result<i64> {
    let c = std::ffi::CString::new(path).map_err(std::io::Error::other)?;
    // SAFETY: `c` is a NUL-terminated string alive for the whole call; the other arguments
    // are plain integers.
    let r = unsafe { libc::syscall(libc::SYS_fchmodat2, libc::AT_FDCWD, c.as_ptr(), 0o755, 0) };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn run_op(op: &[String], filter: &CompiledFilter, install_allocs: usize) -> Result<String, String> {
    let (name, args) = op.split_first().ok_or("missing OP")?;
    Ok(match name.as_str() {
        "getpid" => format!("ok {}", rustix::process::getpid().as_raw_nonzero()),
        // rustix treats getpid/getppid as infallible, so ops whose result a filter may turn
        // into an errno use getsid, which reports errors.
        "getsid" => {
            report(rustix::process::getsid(None).map(|p| i64::from(p.as_raw_nonzero().get())).map_err(Into::into))
        }
        "mkdir" => {
            let path = args.first().ok_or("mkdir PATH")?;
            report(
                rustix::fs::mkdir(path.as_str(), rustix::fs::Mode::from_raw_mode(0o755))
                    .map(|()| 0)
                    .map_err(Into::into),
            )
        }
        "personality" => report(personality(num(args.first())?)),
        "fchmodat2" => report(fchmodat2(args.first().ok_or("fchmodat2 PATH")?)),
        "socket" => {
            let domain = u16::try_from(num(args.first())?).map_err(|e| e.to_string())?;
            let ty = u32::try_from(num(args.get(1))?).map_err(|e| e.to_string())?;
            report(
                rustix::net::socket(
                    rustix::net::AddressFamily::from_raw(domain),
                    rustix::net::SocketType::from_raw(ty),
                    None,
                )
                .map(|fd| i64::from(std::os::fd::AsRawFd::as_raw_fd(&fd)))
                .map_err(Into::into),
            )
        }
        "unshare" => {
            let flags = u32::try_from(num(args.first())?).map_err(|e| e.to_string())?;
            let flags = rustix::thread::UnshareFlags::from_bits_retain(flags);
            if flags.contains(rustix::thread::UnshareFlags::FILES) {
                return Err("unshare FILES is not supported by the probe".into());
            }
            // SAFETY: without CLONE_FILES no fd table is split, which is the only hazard
            // unshare_unsafe documents.
            report(unsafe { rustix::thread::unshare_unsafe(flags) }.map(|()| 0).map_err(Into::into))
        }
        "mount" => report(
            rustix::mount::mount(
                "none",
                "/nonexistent-berth-seccomp-probe",
                "tmpfs",
                rustix::mount::MountFlags::empty(),
                None,
            )
            .map(|()| 0)
            .map_err(Into::into),
        ),
        "thread" => {
            let rest = args.to_vec();
            let again = filter.clone();
            let handle = std::thread::spawn(move || run_op(&rest, &again, install_allocs));
            // A thread ended by SECCOMP_RET_KILL_THREAD never stores its result, and std's
            // join() then panics; that panic is how the probe learns the thread was killed.
            std::panic::set_hook(Box::new(|_| {}));
            let joined = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handle.join()));
            let _ = std::panic::take_hook();
            match joined {
                Ok(Ok(out)) => format!("{}\nsurvived", out?),
                Ok(Err(_)) => return Err("thread panicked".into()),
                Err(_) => "thread killed\nsurvived".to_owned(),
            }
        }
        "install-allocs" => format!("ok {install_allocs}"),
        "install-again" => match filter.install() {
            Ok(fd) => format!("ok {}", i64::from(fd.is_some())),
            Err(berth_seccomp::SeccompError::Install { source, .. }) => report(Err(source)),
            Err(e) => return Err(e.to_string()),
        },
        "exec" => {
            let (prog, rest) = args.split_first().ok_or("exec PROG ARGS...")?;
            let e = std::process::Command::new(prog).args(rest).exec();
            return Err(format!("exec {prog}: {e}"));
        }
        other => return Err(format!("unknown op {other:?}")),
    })
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    match run(&argv) {
        Ok(out) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("berth-seccomp-probe: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(argv: &[String]) -> Result<String, String> {
    let (filter_path, mut rest) =
        argv.split_first().ok_or("usage: FILTER_FILE [--listener PATH [--metadata TEXT]] OP [ARGS...]")?;
    let mut listener = None;
    let mut metadata = None;
    let mut send = true;
    while let Some((flag, tail)) = rest.split_first() {
        match flag.as_str() {
            "--listener" => {
                let (v, t) = tail.split_first().ok_or("--listener PATH")?;
                listener = Some(v.clone());
                rest = t;
            }
            "--metadata" => {
                let (v, t) = tail.split_first().ok_or("--metadata TEXT")?;
                metadata = Some(v.clone());
                rest = t;
            }
            "--no-send" => {
                send = false;
                rest = tail;
            }
            _ => break,
        }
    }

    let bytes = std::fs::read(filter_path).map_err(|e| format!("{filter_path}: {e}"))?;
    let filter = CompiledFilter::from_bytes(&bytes).map_err(|e| e.to_string())?;
    // SIGSYS dumps core by default; the KILL/TRAP tests must not litter core files.
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
        .map_err(|e| format!("PR_SET_DUMPABLE: {e}"))?;
    rustix::thread::set_no_new_privs(true).map_err(|e| format!("PR_SET_NO_NEW_PRIVS: {e}"))?;

    let state_json = {
        let mut state = oci_spec::runtime::State::default();
        state.set_version("1.2.0".to_owned());
        state.set_id("probe".to_owned());
        state.set_status(oci_spec::runtime::ContainerState::Creating);
        let pid = i32::try_from(std::process::id()).map_err(|e| e.to_string())?;
        state.set_pid(Some(pid));
        serde_json::to_vec(&ContainerProcessState::new(state, pid, metadata)).map_err(|e| e.to_string())?
    };

    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let installed = filter.install();
    let install_allocs = ALLOCATIONS.load(Ordering::Relaxed) - before;
    let notify_fd = installed.map_err(|e| format!("install: {e}"))?;

    let mut kept = None;
    if !send {
        kept = notify_fd;
    } else if let Some(fd) = notify_fd {
        let path = listener.ok_or("the filter has NOTIFY rules but no --listener was given")?;
        send_listener_fd(path.as_ref(), &state_json, fd.as_fd()).map_err(|e| e.to_string())?;
        // The agent holds its own copy now; keeping ours open would not hurt, but the runtime
        // closes it too.
        drop(fd);
    }
    let out = run_op(rest, &filter, install_allocs);
    drop(kept);
    out
}
