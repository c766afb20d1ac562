//! `containerd-shim-berth-v2`: containerd's runtime v2 shim for berth.
//!
//! containerd runs this binary as `io.containerd.berth.v2`. It serves the task v2 ttrpc API
//! (`containerd.task.v2.Task`) on berth's runtime library (`berth-linux`, `berth-cgroups`):
//! containers are created in-process, with no runtime binary executed per operation. One
//! single-threaded server process serves a group of containers (see `start.rs`: one container,
//! or one pod, by default, so that a crash costs no more), which is what keeps the
//! per-container cost low. See docs/containerd.md.
//!
//! Modules: [`args`] (the command line), [`start`] (the `start`/`delete` handshake and
//! grouping), [`options`] (the runtime options `start` receives), [`server`] (the event loop and the Task service), [`ttrpc`] (framing),
//! [`events`] (publishing to containerd), [`stdio`] (fifos and terminal relays), [`mounts`]
//! (the rootfs), [`metrics`] (cgroup statistics as containerd's v1 Metrics).

mod args;
mod error;
mod events;
mod metrics;
mod mounts;
mod options;
mod server;
mod start;
mod stdio;
mod ttrpc;

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

/// A logger in logrus's text format, which is how containerd's shims log (containerd copies
/// the lines from the bundle's `log` fifo into its own log). It writes to stderr, which is
/// that fifo for the server; the `start` action writes to the fifo itself ([`LOG_FILE`]),
/// since containerd takes its stdout and stderr together for the address.
struct Logger;

/// Where the log goes instead of stderr.
static LOG_FILE: std::sync::OnceLock<std::fs::File> = std::sync::OnceLock::new();

impl log::Log for Logger {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::max_level()
    }
    fn log(&self, r: &log::Record<'_>) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let level = match r.level() {
            log::Level::Error => "error",
            log::Level::Warn => "warning",
            log::Level::Info => "info",
            log::Level::Debug => "debug",
            log::Level::Trace => "trace",
        };
        let now = berth_core::time::format_rfc3339_nanos(std::time::SystemTime::now());
        let msg = r.args().to_string().replace('\\', "\\\\").replace('"', "\\\"");
        let line = format!("time=\"{now}\" level={level} msg=\"{msg}\" runtime=io.containerd.berth.v2\n");
        // One write per line; a full pipe drops the line rather than stalling the shim.
        match LOG_FILE.get() {
            Some(mut f) => {
                let _ = f.write(line.as_bytes());
            }
            None => {
                let _ = std::io::stderr().lock().write(line.as_bytes());
            }
        }
    }
    fn flush(&self) {}
}

static LOGGER: Logger = Logger;

fn main() {
    let a = match args::parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("containerd-shim-berth-v2: {e}");
            std::process::exit(2);
        }
    };
    if a.version {
        println!("containerd-shim-berth-v2:");
        println!("  Version:  {}", env!("CARGO_PKG_VERSION"));
        println!("  Revision: {}", option_env!("BERTH_REVISION").unwrap_or("unknown"));
        return;
    }
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(if a.debug { log::LevelFilter::Debug } else { log::LevelFilter::Info });
    }
    let code = match a.action.as_str() {
        "start" => {
            // The bundle's log fifo (containerd reads it already); without one, no log at all.
            if let Ok(f) =
                std::fs::OpenOptions::new().append(true).custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC).open("log")
            {
                let _ = LOG_FILE.set(f);
            } else {
                log::set_max_level(log::LevelFilter::Off);
            }
            start_action(&a)
        }
        "delete" => match start::delete(&a) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("containerd-shim-berth-v2 delete: {e}");
                1
            }
        },
        "serve" => serve(&a),
        "" => {
            eprintln!("containerd-shim-berth-v2: an action is required: start, delete (run by containerd)");
            2
        }
        other => {
            eprintln!("containerd-shim-berth-v2: unknown action {other:?}");
            2
        }
    };
    std::process::exit(code);
}

fn start_action(a: &args::Args) -> i32 {
    match start::start(a) {
        Ok(started) => {
            // containerd 1.6 reads the bare address (and 1.7/2.x accept it too). Printed before
            // the confirmation: a start killed after confirming but before printing would leave
            // a reservation nobody uses.
            let mut out = std::io::stdout().lock();
            if let Err(e) = out.write_all(started.address.as_bytes()).and_then(|()| out.flush()) {
                // containerd is gone: no confirmation, so the server drops the reservation.
                log::error!("writing the address: {e}");
                return 1;
            }
            started.confirm();
            0
        }
        Err(e) => {
            // containerd quotes this in the error of the task's creation.
            eprintln!("containerd-shim-berth-v2 start: {e}");
            1
        }
    }
}

fn serve(a: &args::Args) -> i32 {
    // The server clones container processes from this binary: keep it out of their reach
    // (CVE-2019-5736 class; re-executes once from a read-only mount if it is writable). The
    // inherited listener is not close-on-exec, so it survives that exec.
    if let Err(e) = berth_linux::seal::ensure_sealed() {
        log::error!("{e}");
        return 1;
    }
    // A session of its own: no signals from containerd's terminal or process group.
    let _ = rustix::process::setsid();
    let listener = match start::inherited_listener() {
        Ok(l) => l,
        Err(e) => {
            log::error!("{e}");
            return 1;
        }
    };
    let cfg = server::Config {
        namespace: a.namespace.clone(),
        address: a.address.clone(),
        publish_binary: a.publish_binary.clone(),
        ttrpc_address: std::env::var("TTRPC_ADDRESS").ok(),
        root: start::state_root(&a.namespace),
        socket: a.socket.clone().into(),
    };
    let mut srv = match server::Server::new(cfg, listener) {
        Ok(s) => s,
        Err(e) => {
            log::error!("starting the shim server: {e}");
            return 1;
        }
    };
    let start_pipe = match start::inherited_start_pipe() {
        Ok(p) => p,
        Err(e) => {
            log::error!("{e}");
            return 1;
        }
    };
    if !a.id.is_empty() {
        srv.reserve_for_start(&a.id, start_pipe);
    }
    srv.run()
}
