//! OCI hooks: running them with the state on stdin, honouring `timeout`.
//!
//! Hooks run as plain child processes (`std::process::Command`, which only does
//! async-signal-safe work between fork and exec). Their output is captured in a memfd rather
//! than a pipe, so a chatty hook cannot block and no reader thread is needed: the runtime
//! stays single-threaded.
//!
//! A hook with `env` gets exactly that environment (`env: []`, none at all). One without
//! inherits the environment of the process running it, as in runc (Go's `exec.Cmd` with a nil
//! `Env`): the runtime's for prestart, createRuntime, poststart and poststop; for
//! createContainer and startContainer, which runc runs in its init, the container process's
//! environment, which the init passes in ([`run_all_with`]).

use std::io::{Read, Seek, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use oci_spec::runtime::Hook;

use crate::error::{Error, Result};

/// Runs `hooks` of `phase` in order, those without `env` in the runtime's environment; the
/// first failure stops and is returned.
pub fn run_all(phase: &str, hooks: &[Hook], state_json: &[u8]) -> Result<()> {
    run_all_with(phase, hooks, state_json, None)
}

/// [`run_all`] with `default_env` (`KEY=value` items) for the hooks without `env`; `None`
/// keeps the runtime's.
pub fn run_all_with(phase: &str, hooks: &[Hook], state_json: &[u8], default_env: Option<&[String]>) -> Result<()> {
    for (i, h) in hooks.iter().enumerate() {
        run_one(h, state_json, default_env)
            .map_err(|e| Error::Invalid(format!("hooks.{phase}[{i}] ({}): {e}", h.path().display())))?;
    }
    Ok(())
}

/// Runs `hooks`, logging failures instead of returning them (poststop).
pub fn run_all_warn(phase: &str, hooks: &[Hook], state_json: &[u8]) {
    for (i, h) in hooks.iter().enumerate() {
        if let Err(e) = run_one(h, state_json, None) {
            log::warn!("hooks.{phase}[{i}] ({}) failed: {e}", h.path().display());
        }
    }
}

fn run_one(h: &Hook, state: &[u8], default_env: Option<&[String]>) -> std::result::Result<(), String> {
    let path = h.path();
    let args = h.args().clone().unwrap_or_default();
    let mut cmd = Command::new(path);
    if let Some(a0) = args.first() {
        cmd.arg0(a0);
    }
    cmd.args(args.iter().skip(1));
    match h.env().as_deref().or(default_env) {
        Some(env) => {
            cmd.env_clear();
            for kv in env {
                if let Some((k, v)) = kv.split_once('=') {
                    cmd.env(k, v);
                }
            }
        }
        // The runtime's environment is the caller's: berth's own re-exec marker is not part
        // of it.
        None => {
            cmd.env_remove(crate::seal::REEXEC_ENV);
        }
    }
    let out = rustix::fs::memfd_create("berth-hook-output", rustix::fs::MemfdFlags::CLOEXEC)
        .map_err(|e| format!("memfd_create: {e}"))?;
    let out_file = std::fs::File::from(out);
    let err_file = out_file.try_clone().map_err(|e| e.to_string())?;
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::from(out_file.try_clone().map_err(|e| e.to_string())?))
        .stderr(Stdio::from(err_file));
    let mut child = cmd.spawn().map_err(|e| format!("cannot run: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that exits without reading its stdin is fine (EPIPE).
        let _ = stdin.write_all(state);
    }
    let timeout = h.timeout().map(|t| Duration::from_secs(t.max(1) as u64));
    let status = match timeout {
        None => child.wait().map_err(|e| e.to_string())?,
        Some(t) => {
            let pid = rustix::process::Pid::from_child(&child);
            let pidfd =
                rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).map_err(|e| e.to_string())?;
            let mut fds = [rustix::event::PollFd::new(&pidfd, rustix::event::PollFlags::IN)];
            let ts = rustix::event::Timespec { tv_sec: t.as_secs() as i64, tv_nsec: 0 };
            let n = loop {
                match rustix::event::poll(&mut fds, Some(&ts)) {
                    Ok(n) => break n,
                    Err(rustix::io::Errno::INTR) => continue,
                    Err(e) => return Err(e.to_string()),
                }
            };
            if n == 0 {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("timed out after {}s", t.as_secs()));
            }
            child.wait().map_err(|e| e.to_string())?
        }
    };
    if status.success() {
        return Ok(());
    }
    let mut output = String::new();
    let mut f = out_file;
    let _ = f.rewind();
    let _ = f.take(4096).read_to_string(&mut output);
    let output = output.trim();
    Err(format!("{status}{}{output}", if output.is_empty() { "" } else { ": " }))
}
