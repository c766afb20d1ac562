//! `berth`: a runc-compatible OCI container runtime.
//!
//! The command line follows runc 1.1 (global flags, subcommands and their flags, exit codes,
//! the message words clients match), so podman, conmon, containerd's runc shim and Docker can
//! drive berth unchanged. The process stays single-threaded: it clones the container init
//! itself (see docs/architecture.md).
//!
//! `main` parses the whole command line first, without side effects; only then does it read
//! a document the command names (`exec --process`, `update --resources`, which may be an
//! inherited `/dev/fd/N`), close every other inherited descriptor, open the log and run.

mod commands;
mod features;
mod hcs_config;
mod logger;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use lexopt::prelude::*;

use commands::{Command, Invocation, Usage};

/// Global options.
pub(crate) struct Global {
    root: PathBuf,
    log: Option<PathBuf>,
    log_format: logger::Format,
    log_level: log::LevelFilter,
    systemd_cgroup: bool,
    /// `--rootless VALUE` (`true`, `false`, `auto`: detected by default, as runc).
    rootless: berth_linux::rootless::Rootless,
}

fn main() -> ExitCode {
    let mut parser = lexopt::Parser::from_env();
    let parsed = parse_global(&mut parser).map(|(g, cmd)| {
        let inv = match cmd {
            None => Ok(Invocation::Print(commands::usage(), 0)),
            Some(cmd) => commands::parse(&cmd, parser),
        };
        (g, inv)
    });
    let command = match &parsed {
        Ok((_, Ok(Invocation::Run(c)))) => Some(c),
        _ => None,
    };
    // The CVE-2019-5736 protection re-executes berth when its binary is writable: before
    // anything is read or closed, so the new process finds the caller's descriptors as they
    // were.
    let sealed = match command {
        Some(c) if c.sealed => berth_linux::seal::ensure_sealed(),
        _ => Ok(()),
    };
    // A document named on the command line, read while its descriptor is still open (runc
    // takes `exec -p /dev/fd/N` too). Reading it leaves no descriptor behind.
    let input = match command {
        Some(Command { input: Some(path), .. }) if sealed.is_ok() => Some(std::fs::read(path)),
        _ => None,
    };
    let keep = command.map_or(0, |c| c.keep_fds);
    // Before anything opens a descriptor that outlives this point: whatever the caller leaked
    // to us beyond stdio and the descriptors passed on purpose is closed, so no container
    // process can ever see it (CVE-2024-21626 was a leaked host directory descriptor).
    // SAFETY: nothing so far owns a descriptor above stdio (parsing opens none, the seal and
    // the document read above closed theirs; the logger opens its file later), and the ones
    // passed on purpose are kept.
    let _ = unsafe { berth_sys::close_from(3u32.saturating_add(keep)) };
    let (global, inv) = match parsed {
        Ok(x) => x,
        Err(u) => {
            eprintln!("berth: {}", u.msg);
            return ExitCode::from(u.code);
        }
    };
    if let Err(e) = logger::init(global.log.as_deref(), global.log_format, global.log_level) {
        eprintln!("berth: {}", message(&e));
        return ExitCode::from(1);
    }
    let report = |msg: &str| {
        log::error!("{msg}");
        // With --log the error is in the file (the containerd shim reads it there); the
        // user on a terminal still wants to see it.
        if global.log.is_some() {
            eprintln!("berth: {msg}");
        }
    };
    let cmd = match inv {
        Ok(Invocation::Print(text, code)) => {
            print!("{text}");
            return ExitCode::from(code);
        }
        Ok(Invocation::Run(c)) => c,
        Err(u) => {
            report(&u.msg);
            return ExitCode::from(u.code);
        }
    };
    // runc's `exec` exits 255 when it fails itself, so that callers can tell that from a
    // process that exited 1 (runc PR #3073); every other failure is 1.
    let failure = if cmd.name == "exec" { 255 } else { 1 };
    let result = sealed.map_err(anyhow::Error::from).and_then(|()| (cmd.run)(&global, input));
    match result {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(255)),
        Err(e) => {
            report(&message(&e));
            ExitCode::from(failure)
        }
    }
}

/// The error and its causes joined with ": ", skipping a cause the text already ends with
/// (berth_linux's I/O errors print their source themselves, so `{:#}` would repeat it).
fn message(e: &anyhow::Error) -> String {
    let mut msg = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if msg.ends_with(&text) {
            continue;
        }
        if !msg.is_empty() {
            msg.push_str(": ");
        }
        msg.push_str(&text);
    }
    msg
}

/// Parses the global options; returns them and the command name (`None`: no command, or the
/// global `--help`/`--version` already answered).
fn parse_global(p: &mut lexopt::Parser) -> Result<(Global, Option<String>), Usage> {
    let mut root = None;
    let mut g = Global {
        root: PathBuf::new(),
        log: None,
        log_format: logger::Format::Text,
        log_level: log::LevelFilter::Warn,
        systemd_cgroup: false,
        rootless: berth_linux::rootless::Rootless::Auto,
    };
    let mut debug = false;
    loop {
        let Some(arg) = p.next()? else {
            return Ok((g, None));
        };
        match arg {
            Long("root") => root = Some(PathBuf::from(p.value()?)),
            Long("log") => g.log = Some(PathBuf::from(p.value()?)).filter(|p| !p.as_os_str().is_empty()),
            Long("log-format") => {
                g.log_format = match p.value()?.string()?.as_str() {
                    "json" => logger::Format::Json,
                    "text" => logger::Format::Text,
                    other => {
                        return Err(Usage::new(format!(
                            "--log-format: unknown format {other:?} (expected text or json)"
                        )))
                    }
                }
            }
            Long("log-level") => g.log_level = log_level(&p.value()?.string()?)?,
            Long("debug") => debug = true,
            Long("systemd-cgroup") => g.systemd_cgroup = true,
            // A string flag in runc: `--rootless VALUE` and `--rootless=VALUE` alike.
            Long("rootless") => {
                g.rootless = p.value()?.string()?.parse().map_err(|e: berth_linux::Error| Usage::new(e.to_string()))?
            }
            // Where criu lives: used by checkpoint and restore only, which berth refuses.
            Long("criu") => {
                let _ = p.value()?;
            }
            Short('v') | Long("version") => {
                print!("{}", version());
                std::process::exit(0);
            }
            Short('h') | Long("help") => {
                print!("{}", commands::usage());
                std::process::exit(0);
            }
            Value(cmd) => {
                if debug {
                    g.log_level = log::LevelFilter::Debug;
                }
                let cmd = cmd.string()?;
                g.root = match root {
                    Some(r) => r,
                    None => match berth_linux::rootless::default_state_root(g.rootless.decide()) {
                        Ok(r) => r,
                        // Only commands that use the state root need one.
                        Err(e) if !matches!(cmd.as_str(), "spec" | "help" | "h" | "features" | "hcs-config") => {
                            return Err(Usage::new(e.to_string()))
                        }
                        Err(_) => PathBuf::new(),
                    },
                };
                return Ok((g, Some(cmd)));
            }
            other => return Err(other.unexpected().into()),
        }
    }
}

/// `--log-level`: logrus's level names (what crun and newer runc accept).
fn log_level(v: &str) -> Result<log::LevelFilter, Usage> {
    Ok(match v {
        "panic" | "fatal" | "error" => log::LevelFilter::Error,
        "warn" | "warning" => log::LevelFilter::Warn,
        "info" => log::LevelFilter::Info,
        "debug" => log::LevelFilter::Debug,
        "trace" => log::LevelFilter::Trace,
        other => {
            return Err(Usage::new(format!(
                "--log-level {other:?}: unknown level (panic, fatal, error, warning, info, debug or trace)"
            )))
        }
    })
}

pub(crate) fn version() -> String {
    format!(
        "berth version {}\ncommit: {}\nspec: {}\n",
        env!("CARGO_PKG_VERSION"),
        env!("BERTH_COMMIT"),
        berth_core::OCI_VERSION
    )
}

pub(crate) fn os(v: OsString) -> Result<String, Usage> {
    v.into_string().map_err(|v| Usage::new(format!("argument {v:?} is not valid UTF-8")))
}
