//! The single-threaded side of the client: the helper ("zygote") and the per-container monitors.
//!
//! An engine is typically multi-threaded (tokio). Forking there and then running ordinary code
//! in the child is unsound (a lock held by another thread stays held forever in the child), so
//! the client never forks: it starts one helper process per state root with
//! `std::process::Command` (posix_spawn: only async-signal-safe work between fork and exec).
//! The helper stays single-threaded and forks one monitor per container on request; the monitor
//! calls `berth-linux` in-process (no exec per container or per operation), is the parent and
//! subreaper of the container's init and exec processes, and answers the client over a
//! `SOCK_SEQPACKET` connection. See docs/embedding.md for the whole process model.

pub(crate) mod monitor;
pub(crate) mod zygote;

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;

use crate::wire::HELPER_ARG;

/// Runs the helper if this process was started as one (`argv[1] == "__berth-helper"`), and
/// exits; otherwise returns.
///
/// An engine that wants to ship as a single binary calls this first thing in `main`, before
/// any thread exists, and configures [`crate::Helper::CurrentExe`]. The helper must start
/// single-threaded; calling this after threads were spawned makes it refuse to fork later.
pub fn run_if_requested() {
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() != Some(std::ffi::OsStr::new(HELPER_ARG)) {
        return;
    }
    let code = main_with_args(args.map(PathBuf::from).collect());
    std::process::exit(code)
}

/// Entry point of the `berth-monitor` binary: `berth-monitor __berth-helper ROOT`.
pub fn main() -> ! {
    let mut args = std::env::args_os().skip(1);
    let code = match args.next() {
        Some(a) if a == HELPER_ARG => main_with_args(args.map(PathBuf::from).collect()),
        _ => {
            eprintln!(
                "berth-monitor is started by the berth client library (usage: berth-monitor {HELPER_ARG} STATE_ROOT)"
            );
            2
        }
    };
    std::process::exit(code)
}

/// Set in the helper's environment once leaked descriptors are gone (see [`shed_leaked_fds`]).
const CLEAN_ENV: &str = "BERTH_HELPER_CLEAN";

/// Descriptors the engine leaked to us (not close-on-exec) would live on in the helper and in
/// every monitor for as long as they run. Closing descriptors we did not open needs `unsafe`;
/// instead they are marked close-on-exec and the helper executes itself once more, which
/// closes them. Costs one exec per helper start (not per container).
///
/// The same exec protects the binary (the CVE-2019-5736 class, see berth_linux::seal): the
/// helper and its monitors clone container processes from it, so when it is writable the
/// exec goes through a detached read-only mount of it instead.
fn shed_leaked_fds() {
    if std::env::var_os(CLEAN_ENV).is_some() {
        std::env::remove_var(CLEAN_ENV);
        // Already re-executed: this only makes the process non-dumpable (the binary is
        // protected now, or this run was started from an unwritable one).
        if let Err(e) = berth_linux::seal::ensure_sealed() {
            log::error!("helper: {e}");
            std::process::exit(1);
        }
        return;
    }
    if let Err(e) = berth_sys::cloexec_range(3, u32::MAX) {
        log::warn!("helper: marking inherited descriptors close-on-exec: {e}");
        return;
    }
    if matches!(berth_linux::seal::protection(), Ok(berth_linux::seal::Protection::None)) {
        std::env::set_var(CLEAN_ENV, "1");
        // Does not return on success: executes the binary from a read-only mount, which also
        // closes the descriptors just marked close-on-exec.
        if let Err(e) = berth_linux::seal::ensure_sealed() {
            log::error!("helper: {e}");
            std::process::exit(1);
        }
        std::env::remove_var(CLEAN_ENV);
    }
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_default();
    // By its path, so the process keeps its name (`/proc/self/exe` would make it "exe");
    // through /proc/self/exe only if the binary was replaced or removed meanwhile.
    let exe = std::env::current_exe().ok().filter(|p| p.is_file()).unwrap_or_else(|| "/proc/self/exe".into());
    let err = Command::new(exe).arg0(arg0).args(args).env(CLEAN_ENV, "1").exec();
    log::warn!("helper: re-executing to drop inherited descriptors failed: {err}");
}

fn main_with_args(args: Vec<PathBuf>) -> i32 {
    init_logger();
    shed_leaked_fds();
    match args.as_slice() {
        [root] => zygote::run(root),
        _ => {
            eprintln!("berth helper: expected exactly one argument, the state root");
            2
        }
    }
}

/// A minimal logger to stderr (the helper's log file): `BERTH_LOG=debug|info|warn|error`.
struct StderrLogger;

impl log::Log for StderrLogger {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::max_level()
    }
    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            let now = berth_core::time::format_rfc3339_nanos(std::time::SystemTime::now());
            let line = format!("{now} {} [{}] {}\n", r.level(), std::process::id(), r.args());
            // One write per line so lines of different monitors do not interleave.
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
        }
    }
    fn flush(&self) {}
}

static LOGGER: StderrLogger = StderrLogger;

fn init_logger() {
    let level = match std::env::var("BERTH_LOG").as_deref() {
        Ok("trace") => log::LevelFilter::Trace,
        Ok("debug") => log::LevelFilter::Debug,
        Ok("info") => log::LevelFilter::Info,
        Ok("error") => log::LevelFilter::Error,
        Ok("off") => log::LevelFilter::Off,
        _ => log::LevelFilter::Warn,
    };
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(level);
    }
}
