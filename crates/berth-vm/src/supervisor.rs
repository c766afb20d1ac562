//! The VM supervisor: one single-threaded process per VM container, forked by whoever
//! creates the container (the CLI's `create`/`run`, a library monitor). To the rest of berth
//! it *is* the container's init: its pid is the one in `state.json`, it is in the container's
//! host cgroup (so are its children QEMU and virtiofsd, so the freezer pauses the whole VM),
//! it holds `exec.fifo` until `start`, signals sent to it are forwarded to the guest's init,
//! and it exits with the guest init's exit status. Meanwhile it owns QEMU and virtiofsd
//! (both die with it: parent-death signal), relays the init's stdio or terminal, serves the
//! control socket for execs, and turns every VM failure into the container's exit: status
//! [`VM_FAILURE_EXIT`], the reason in `vm/failure`, on the container's stderr and in the log.

use std::collections::{BTreeMap, VecDeque};
use std::ffi::CString;
use std::fs;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use berth_sys::process::{fork, CStringArray, Forked};
use berth_sys::signal::{self as sig, SigSet};
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::fs::{Mode, OFlags};
use rustix::process::{Pid, Signal, WaitOptions};

use crate::ctl::{self, CtlReply, CtlRequest};
use crate::host::{self, Accel, Assets, VmPaths, VmSize};
use crate::proto::{self, Decoder, Event, Frame, Kind, Request, Response, INIT_KEY};

/// The container's exit status when the VM failed (QEMU crashed, the guest kernel
/// panicked, the agent stopped answering) rather than the container's process exiting.
pub const VM_FAILURE_EXIT: i32 = 255;

/// Everything the supervisor needs, prepared by the creator before the fork.
#[derive(Debug)]
pub struct Config {
    /// Container id.
    pub id: String,
    /// The container's state directory (`<root>/<id>`).
    pub state_dir: PathBuf,
    /// The rootfs shared with the guest.
    pub rootfs: PathBuf,
    /// The spec the guest's berth runs (see [`crate::guest_spec`]).
    pub guest_spec: serde_json::Value,
    /// Guest size.
    pub size: VmSize,
    /// QEMU, virtiofsd, kernel, initramfs.
    pub assets: Assets,
    /// Start at once (`run`) instead of waiting on `exec_fifo` (`create`).
    pub start_now: bool,
    /// `exec.fifo`, opened read-write: `berth start` writes a byte to it.
    pub exec_fifo: Option<OwnedFd>,
    /// stdin, stdout, stderr of the container (`None`: the supervisor's own 0, 1, 2).
    pub stdio: [Option<OwnedFd>; 3],
    /// The slave of the host PTY standing for the container's terminal.
    pub tty: Option<OwnedFd>,
    /// Where the creator waits for "ready" or the error (one JSON line).
    pub report: OwnedFd,
    /// Read end of a pipe the creator writes one byte to (or closes) once it has placed the
    /// supervisor in all the container's cgroups: QEMU and virtiofsd, forked after that,
    /// inherit them (clone3 can only place it in the cgroup2 one; v1 controllers come after).
    pub placed: Option<OwnedFd>,
}

/// What the creator reads from the report descriptor.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Report {
    /// The error, when the container could not be created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The guest kernel release (success).
    #[serde(default)]
    pub kernel: String,
}

fn env_secs(name: &str, default: u64) -> Duration {
    Duration::from_secs(std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default))
}

/// What an outstanding request was for.
#[derive(Debug)]
enum Pending {
    Create,
    Start,
    Exec(u32),
    Ignore,
    SignalAll(OwnedFd),
    /// `Pids` for a control connection (`ps`): the reply goes there.
    Processes(OwnedFd),
    /// `Stats` for a control connection.
    Stats(OwnedFd),
}

/// One process in the guest, seen from the host.
#[derive(Debug, Default)]
struct Proc {
    /// Host side of its stdin (read from here, sent to the guest).
    stdin: Option<OwnedFd>,
    /// Host side of stdout (and of the terminal).
    stdout: Option<OwnedFd>,
    /// Host side of stderr.
    stderr: Option<OwnedFd>,
    /// The exec stand-in's connection (execs only).
    conn: Option<OwnedFd>,
}

struct Sup {
    cfg_id: String,
    paths: VmPaths,
    agent: OwnedFd,
    dec: Decoder,
    pending: VecDeque<(Pending, Instant)>,
    procs: BTreeMap<u32, Proc>,
    next_key: u32,
    qemu: Option<i32>,
    virtiofsd: Option<i32>,
    sigfd: OwnedFd,
    ctl: Option<OwnedFd>,
    fifo: Option<OwnedFd>,
    tty: bool,
    agent_timeout: Duration,
    ping_every: Duration,
    last_seen: Instant,
    started: bool,
    /// A [`CtlRequest::Kill`] arrived.
    killed: bool,
}

/// Runs the supervisor in the calling (freshly forked, single-threaded) process. Never
/// returns.
pub fn supervise(cfg: Config) -> ! {
    // A creator that dies during setup takes the half-built VM with it; cleared once ready.
    let _ = rustix::process::set_parent_process_death_signal(Some(Signal::KILL));
    // virtiofsd forks its sandbox; whatever it leaves is reaped here, not by a stranger.
    let _ = rustix::process::set_child_subreaper(Some(rustix::process::getpid()));
    let report = cfg.report.try_clone().ok();
    let mut cfg = cfg;
    if let Some(p) = cfg.placed.take() {
        let mut b = [0u8; 1];
        let got = loop {
            match rustix::io::read(&p, &mut b) {
                Err(rustix::io::Errno::INTR) => continue,
                r => break r,
            }
        };
        // Closed without the byte: the creator failed (and kills us); start nothing.
        if got != Ok(1) {
            berth_sys::process::exit_immediately(1)
        }
    }
    match setup(cfg) {
        Ok(mut s) => {
            let code = s.run();
            s.teardown();
            berth_sys::process::exit_immediately(code)
        }
        Err((msg, partial)) => {
            if let Some(mut p) = partial {
                p.teardown();
            }
            if let Some(r) = report {
                let _ = write_report(&r, &Report { error: Some(msg), kernel: String::new() });
            }
            berth_sys::process::exit_immediately(1)
        }
    }
}

fn write_report(fd: &OwnedFd, r: &Report) -> io::Result<()> {
    let mut line = serde_json::to_vec(r).unwrap_or_default();
    line.push(b'\n');
    write_all(fd.as_fd(), &line)
}

fn write_all(fd: BorrowedFd<'_>, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match rustix::io::write(fd, buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(rustix::io::Errno::INTR) => continue,
            Err(rustix::io::Errno::AGAIN) => {
                let mut p = [PollFd::new(&fd, PollFlags::OUT)];
                let _ = poll(&mut p, None);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

type SetupError = (String, Option<Box<Sup>>);

/// Starts virtiofsd and QEMU, waits for the agent, creates (and with `start_now` starts)
/// the container in the guest, then tells the creator.
fn setup(cfg: Config) -> Result<Sup, SetupError> {
    let paths = VmPaths::new(&cfg.state_dir);
    let plain = |m: String| (m, None);
    fs::create_dir_all(&paths.dir).map_err(|e| plain(format!("creating {}: {e}", paths.dir.display())))?;
    // Signals: forwarded ones and SIGCHLD/SIGWINCH through a signalfd; SIGPIPE blocked so
    // that writing to a closed stdout is an EPIPE here, never a signal to forward.
    let mut set = SigSet::empty();
    for s in sig::forwarded().chain([libc::SIGCHLD, libc::SIGWINCH]) {
        let _ = set.add(s);
    }
    let mut blocked = SigSet::empty();
    for s in sig::forwarded().chain([libc::SIGCHLD, libc::SIGWINCH, libc::SIGPIPE]) {
        let _ = blocked.add(s);
    }
    sig::set_mask(&blocked).map_err(|e| plain(format!("blocking signals: {e}")))?;
    let sigfd = sig::signalfd(&set).map_err(|e| plain(format!("signalfd: {e}")))?;
    // Own session, so that a terminal's size changes reach us as SIGWINCH.
    let _ = rustix::process::setsid();
    if let Some(t) = &cfg.tty {
        let _ = rustix::process::ioctl_tiocsctty(t);
        // The guest's PTY does the line discipline; this one only carries bytes.
        if let Ok(mut raw) = rustix::termios::tcgetattr(t) {
            raw.make_raw();
            let _ = rustix::termios::tcsetattr(t, rustix::termios::OptionalActions::Now, &raw);
        }
    }

    let agent_listener = std::os::unix::net::UnixListener::bind(paths.agent())
        .map_err(|e| plain(format!("listening on {}: {e}", paths.agent().display())))?;
    let vmm_log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(paths.log())
        .map_err(|e| plain(format!("creating {}: {e}", paths.log().display())))?;
    let vmm_log: OwnedFd = vmm_log.into();

    let virtiofsd = spawn(&cfg.assets.virtiofsd, &host::virtiofsd_args(&paths, &cfg.rootfs), &vmm_log)
        .map_err(|e| plain(format!("starting virtiofsd {}: {e}", cfg.assets.virtiofsd.display())))?;
    let mut partial = Sup {
        cfg_id: cfg.id.clone(),
        paths: paths.clone(),
        agent: vmm_log.try_clone().map_err(|e| plain(e.to_string()))?,
        dec: Decoder::default(),
        pending: VecDeque::new(),
        procs: BTreeMap::new(),
        next_key: 1,
        qemu: None,
        virtiofsd: Some(virtiofsd),
        sigfd,
        ctl: None,
        fifo: cfg.exec_fifo,
        tty: cfg.tty.is_some(),
        agent_timeout: env_secs("BERTH_VM_AGENT_TIMEOUT", 30),
        ping_every: env_secs("BERTH_VM_PING_INTERVAL", 5),
        last_seen: Instant::now(),
        started: false,
        killed: false,
    };
    let boot_deadline = Instant::now() + env_secs("BERTH_VM_BOOT_TIMEOUT", 120);
    // virtiofsd makes its socket after it set up its sandbox; QEMU needs it to exist.
    while !paths.fs().exists() {
        if let Some(why) = partial.reap_failure() {
            return Err((format!("virtiofsd failed before it listened: {why}"), Some(Box::new(partial))));
        }
        if Instant::now() > boot_deadline {
            return Err(("virtiofsd did not create its socket".into(), Some(Box::new(partial))));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let accel = host::accel();
    let args = host::qemu_args(&cfg.assets, &paths, cfg.size, accel);
    log::debug!("vm {}: {} {}", cfg.id, cfg.assets.qemu.display(), args.join(" "));
    match spawn(&cfg.assets.qemu, &args, &vmm_log) {
        Ok(pid) => partial.qemu = Some(pid),
        Err(e) => return Err((format!("starting {}: {e}", cfg.assets.qemu.display()), Some(Box::new(partial)))),
    }
    // QEMU connects to the agent socket at start-up; wait for it, or for QEMU's death.
    agent_listener.set_nonblocking(true).map_err(|e| (e.to_string(), None))?;
    let conn = loop {
        match agent_listener.accept() {
            Ok((c, _)) => break c,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err((format!("accepting QEMU's agent connection: {e}"), Some(Box::new(partial)))),
        }
        if let Some(why) = partial.reap_failure() {
            return Err((why, Some(Box::new(partial))));
        }
        if Instant::now() > boot_deadline {
            return Err(("QEMU did not connect the agent channel".into(), Some(Box::new(partial))));
        }
        let mut p = [PollFd::new(&agent_listener, PollFlags::IN)];
        let _ = poll(&mut p, Some(&Timespec { tv_sec: 0, tv_nsec: 20_000_000 }));
    };
    drop(agent_listener);
    let _ = fs::remove_file(paths.agent());
    let _ = conn.set_nonblocking(false);
    partial.agent = conn.into();

    // The guest boots; its agent says hello.
    let kernel = match partial.wait_event(boot_deadline) {
        Ok(Event::Hello { kernel }) => kernel,
        Ok(other) => {
            return Err((format!("unexpected first message from the agent: {other:?}"), Some(Box::new(partial))))
        }
        Err(e) => return Err((format!("the guest did not boot: {e}"), Some(Box::new(partial)))),
    };
    log::debug!("vm {}: guest kernel {kernel} up", cfg.id);

    // The init's stdio on the host.
    let [stdin, stdout, stderr] = cfg.stdio;
    let dup = |fd: i32| rustix::io::fcntl_dupfd_cloexec(borrow_raw_std(fd), 3).ok();
    let init = if let Some(t) = cfg.tty {
        Proc { stdin: t.try_clone().ok(), stdout: Some(t), stderr: None, conn: None }
    } else {
        Proc {
            stdin: stdin.or_else(|| dup(0)),
            stdout: stdout.or_else(|| dup(1)),
            stderr: stderr.or_else(|| dup(2)),
            conn: None,
        }
    };
    let winsize = init.stdout.as_ref().filter(|_| partial.tty).and_then(|t| winsize(t.as_fd()));
    partial.procs.insert(INIT_KEY, init);
    let create = Request::Create { id: cfg.id.clone(), spec: cfg.guest_spec, winsize };
    if let Err(e) = partial.call(&create, Pending::Create, boot_deadline) {
        return Err((e, Some(Box::new(partial))));
    }
    if cfg.start_now {
        let deadline = Instant::now() + partial.agent_timeout;
        if let Err(e) = partial.call(&Request::Start, Pending::Start, deadline) {
            return Err((e, Some(Box::new(partial))));
        }
        partial.started = true;
    }
    let _ = fs::remove_file(paths.ctl());
    partial.ctl =
        Some(ctl::listen(&paths.ctl()).map_err(|e| (format!("listening on {}: {e}", paths.ctl().display()), None))?);
    // The creator exits as soon as it reads the report: the parent-death signal must be gone
    // before (a creator that died earlier makes the write fail, and the VM is torn down).
    let _ = rustix::process::set_parent_process_death_signal(None);
    if let Err(e) = write_report(&cfg.report, &Report { error: None, kernel }) {
        return Err((format!("reporting to the creator: {e}"), Some(Box::new(partial))));
    }
    drop(cfg.report);
    Ok(partial)
}

fn borrow_raw_std(fd: i32) -> BorrowedFd<'static> {
    match fd {
        0 => rustix::stdio::stdin(),
        1 => rustix::stdio::stdout(),
        _ => rustix::stdio::stderr(),
    }
}

fn winsize(fd: BorrowedFd<'_>) -> Option<(u16, u16)> {
    rustix::termios::tcgetwinsize(fd).ok().map(|w| (w.ws_row, w.ws_col)).filter(|(r, c)| *r > 0 && *c > 0)
}

/// Forks and executes `prog` with its stdout and stderr in `log`, dying with us.
fn spawn(prog: &std::path::Path, args: &[String], log: &OwnedFd) -> io::Result<i32> {
    let path = CString::new(prog.as_os_str().as_encoded_bytes()).map_err(io::Error::other)?;
    let mut argv = vec![prog.display().to_string()];
    argv.extend(args.iter().cloned());
    let argv = CStringArray::new(&argv).map_err(io::Error::other)?;
    let envp = CStringArray::new(&["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"])
        .map_err(io::Error::other)?;
    let devnull = rustix::fs::open("/dev/null", OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())?;
    match fork()? {
        Forked::Child(child) => {
            let _ = rustix::process::set_parent_process_death_signal(Some(Signal::KILL));
            let _ = rustix::stdio::dup2_stdin(&devnull);
            let _ = rustix::stdio::dup2_stdout(log);
            let _ = rustix::stdio::dup2_stderr(log);
            let _ = child.close_all_except(&[]);
            let _ = sig::reset_all();
            let e = berth_sys::process::execve(&path, &argv, &envp);
            let _ = writeln!(io::stderr(), "exec {}: {e}", prog.display());
            berth_sys::process::exit_immediately(127)
        }
        Forked::Parent { pid, .. } => Ok(pid),
    }
}

fn exit_code(status: rustix::process::WaitStatus) -> i32 {
    status.exit_status().or_else(|| status.terminating_signal().map(|s| 128 + s)).unwrap_or(255)
}

impl Sup {
    /// Reaps what died; the reason if QEMU or virtiofsd did.
    fn reap_failure(&mut self) -> Option<String> {
        let mut why = None;
        while let Ok(Some((pid, status))) = rustix::process::wait(WaitOptions::NOHANG) {
            let pid = pid.as_raw_nonzero().get();
            if Some(pid) == self.qemu {
                self.qemu = None;
                why = Some(self.qemu_failure(status));
            } else if Some(pid) == self.virtiofsd {
                self.virtiofsd = None;
                let fs_why = format!("virtiofsd exited ({}){}", describe(status), last_line(&self.paths.log()));
                // virtiofsd ends when QEMU does (its vhost-user peer hung up), often reaped
                // first: QEMU's end (a guest panic, a crash) is the reason if it follows.
                let q = why.take().or_else(|| self.wait_qemu(Duration::from_secs(2)));
                why = Some(q.unwrap_or(fs_why));
            }
        }
        why
    }

    /// QEMU's failure if it exits within `limit`.
    fn wait_qemu(&mut self, limit: Duration) -> Option<String> {
        let pid = Pid::from_raw(self.qemu?)?;
        let end = Instant::now() + limit;
        loop {
            match rustix::process::waitpid(Some(pid), WaitOptions::NOHANG) {
                Ok(Some((_, status))) => {
                    self.qemu = None;
                    return Some(self.qemu_failure(status));
                }
                Ok(None) if Instant::now() < end => std::thread::sleep(Duration::from_millis(10)),
                _ => return None,
            }
        }
    }

    fn qemu_failure(&self, status: rustix::process::WaitStatus) -> String {
        let console = fs::read_to_string(self.paths.console()).unwrap_or_default();
        if let Some(line) = console.lines().find(|l| l.contains("Kernel panic")) {
            return format!("guest kernel panic: {}", line.trim());
        }
        match status.terminating_signal() {
            Some(s) => format!("QEMU was killed by signal {s}"),
            None => format!("QEMU exited ({}){}", describe(status), last_line(&self.paths.log())),
        }
    }

    /// Sends a request and waits for its response (setup only: before the main loop).
    fn call(&mut self, req: &Request, what: Pending, deadline: Instant) -> Result<Response, String> {
        self.send(req, what).map_err(|e| format!("agent channel: {e}"))?;
        loop {
            let f = self.next_frame(deadline)?;
            match f.kind {
                Kind::Response => {
                    self.pending.pop_front();
                    let r: Response = f.parse().map_err(|e| e.to_string())?;
                    return if r.ok { Ok(r) } else { Err(r.error.unwrap_or_else(|| "failed".into())) };
                }
                _ => self.frame(f),
            }
        }
    }

    fn wait_event(&mut self, deadline: Instant) -> Result<Event, String> {
        loop {
            let f = self.next_frame(deadline)?;
            if f.kind == Kind::Event {
                return f.parse().map_err(|e| e.to_string());
            }
        }
    }

    /// The next frame from the agent, or why there is none (blocking, setup only).
    fn next_frame(&mut self, deadline: Instant) -> Result<Frame, String> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if let Some(f) = self.dec.next_frame().map_err(|e| e.to_string())? {
                return Ok(f);
            }
            let now = Instant::now();
            if now > deadline {
                return Err(format!("the agent did not answer{}", self.console_tail()));
            }
            let left = (deadline - now).min(Duration::from_millis(100));
            let mut p = [PollFd::new(&self.agent, PollFlags::IN)];
            let ts = Timespec { tv_sec: 0, tv_nsec: left.subsec_nanos() as i64 };
            let _ = poll(&mut p, Some(&ts));
            if !p[0].revents().is_empty() {
                match rustix::io::read(&self.agent, &mut buf) {
                    Ok(0) => {
                        let why = self.reap_failure().unwrap_or_else(|| "the agent channel closed".into());
                        return Err(why);
                    }
                    Ok(n) => self.dec.feed(&buf[..n]),
                    Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => {}
                    Err(e) => return Err(format!("reading the agent channel: {e}")),
                }
            }
            if let Some(why) = self.reap_failure() {
                return Err(why);
            }
        }
    }

    fn console_tail(&self) -> String {
        last_line(&self.paths.console())
    }

    fn send(&mut self, req: &Request, what: Pending) -> io::Result<()> {
        self.pending.push_back((what, Instant::now()));
        self.write_frame(&Frame::json(Kind::Request, req))
    }

    fn write_frame(&self, f: &Frame) -> io::Result<()> {
        write_all(self.agent.as_fd(), &f.encode())
    }

    /// Handles a frame that is not the response being waited for.
    fn frame(&mut self, f: Frame) {
        match f.kind {
            Kind::Data => {
                let (key, fd) = proto::split_stream(f.stream);
                if let Some(p) = self.procs.get(&key) {
                    let sink = if fd == 2 { &p.stderr } else { &p.stdout };
                    if let Some(s) = sink {
                        let _ = write_all(s.as_fd(), &f.payload);
                    }
                }
            }
            Kind::Eof => {
                let (key, fd) = proto::split_stream(f.stream);
                if let Some(p) = self.procs.get_mut(&key) {
                    match fd {
                        2 => p.stderr = None,
                        // A terminal is one descriptor both ways: keep it for input.
                        _ if key == INIT_KEY && self.tty => {}
                        _ => p.stdout = None,
                    }
                }
            }
            Kind::Event => match f.parse::<Event>() {
                Ok(Event::Exit { key, code }) if key != INIT_KEY => {
                    if let Some(p) = self.procs.remove(&key) {
                        if let Some(c) = &p.conn {
                            let _ = ctl::send(c.as_fd(), &CtlReply::Exit(code), &[]);
                        }
                    }
                }
                Ok(ev) => log::debug!("vm {}: {ev:?}", self.cfg_id),
                Err(e) => log::warn!("vm {}: bad event: {e}", self.cfg_id),
            },
            Kind::Response => {
                let Some((what, _)) = self.pending.pop_front() else { return };
                let r: Response = f.parse().unwrap_or_else(Response::err);
                match what {
                    Pending::Exec(key) => {
                        let reply = if r.ok {
                            CtlReply::Started(r.pid.unwrap_or(0))
                        } else {
                            CtlReply::Error(r.error.unwrap_or_default())
                        };
                        if !r.ok {
                            if let Some(p) = self.procs.remove(&key) {
                                if let Some(c) = &p.conn {
                                    let _ = ctl::send(c.as_fd(), &reply, &[]);
                                }
                            }
                        } else if let Some(c) = self.procs.get(&key).and_then(|p| p.conn.as_ref()) {
                            let _ = ctl::send(c.as_fd(), &reply, &[]);
                        }
                    }
                    Pending::SignalAll(c) => {
                        let reply = if r.ok { CtlReply::Ok } else { CtlReply::Error(r.error.unwrap_or_default()) };
                        let _ = ctl::send(c.as_fd(), &reply, &[]);
                    }
                    Pending::Processes(c) => {
                        let reply = match (r.ok, r.processes) {
                            (true, Some(p)) => CtlReply::Processes(p),
                            (true, None) => CtlReply::Error("the guest agent sent no process list".into()),
                            (false, _) => CtlReply::Error(r.error.unwrap_or_default()),
                        };
                        let _ = ctl::send(c.as_fd(), &reply, &[]);
                    }
                    Pending::Stats(c) => {
                        let reply = match (r.ok, r.stats) {
                            (true, Some(s)) => CtlReply::Stats(s),
                            (true, None) => CtlReply::Error("the guest agent sent no statistics".into()),
                            (false, _) => CtlReply::Error(r.error.unwrap_or_default()),
                        };
                        let _ = ctl::send(c.as_fd(), &reply, &[]);
                    }
                    Pending::Start => {
                        if !r.ok {
                            log::warn!("vm {}: start failed: {}", self.cfg_id, r.error.unwrap_or_default());
                        }
                    }
                    Pending::Create | Pending::Ignore => {}
                }
            }
            Kind::Request => {}
        }
    }

    /// The main loop; returns the container's exit status.
    fn run(&mut self) -> i32 {
        let mut buf = vec![0u8; 64 * 1024];
        let mut last_wake = Instant::now();
        self.last_seen = Instant::now();
        loop {
            // Deadlines are on the monotonic clock, which runs on while the freezer holds us
            // (a paused container): a long gap between two wake-ups means we were frozen, and
            // the agent gets its full time again.
            let now = Instant::now();
            if now.duration_since(last_wake) > Duration::from_secs(2) + self.ping_every {
                self.last_seen = now;
                for (_, t) in self.pending.iter_mut() {
                    *t = now;
                }
            }
            last_wake = now;
            if let Some((_, t)) = self.pending.front() {
                if now.duration_since(*t) > self.agent_timeout {
                    return self.fail(format!(
                        "the guest agent stopped answering (no response in {}s)",
                        self.agent_timeout.as_secs()
                    ));
                }
            } else if now.duration_since(self.last_seen) > self.ping_every
                && self.send(&Request::Ping, Pending::Ignore).is_err()
            {
                let why = self.reap_failure().unwrap_or_else(|| "the agent channel broke".into());
                return self.fail(why);
            }

            let mut fds: Vec<PollFd<'_>> = Vec::new();
            let mut what: Vec<Src> = Vec::new();
            fds.push(PollFd::new(&self.sigfd, PollFlags::IN));
            what.push(Src::Sig);
            fds.push(PollFd::new(&self.agent, PollFlags::IN));
            what.push(Src::Agent);
            if let Some(f) = &self.fifo {
                fds.push(PollFd::new(f, PollFlags::IN));
                what.push(Src::Fifo);
            }
            if let Some(c) = &self.ctl {
                fds.push(PollFd::new(c, PollFlags::IN));
                what.push(Src::Ctl);
            }
            for (k, p) in &self.procs {
                if let (Some(i), true) = (&p.stdin, self.started || *k != INIT_KEY) {
                    fds.push(PollFd::new(i, PollFlags::IN));
                    what.push(Src::Stdin(*k));
                }
                if let Some(c) = &p.conn {
                    fds.push(PollFd::new(c, PollFlags::IN));
                    what.push(Src::Conn(*k));
                }
            }
            let ts = Timespec { tv_sec: 1, tv_nsec: 0 };
            match poll(&mut fds, Some(&ts)) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => return self.fail(format!("poll: {e}")),
            }
            let ready: Vec<Src> =
                fds.iter().zip(what).filter(|(f, _)| !f.revents().is_empty()).map(|(_, w)| w).collect();
            drop(fds);
            for src in ready {
                match src {
                    Src::Sig => {
                        if let Some(code) = self.signals() {
                            return code;
                        }
                    }
                    Src::Agent => match rustix::io::read(&self.agent, &mut buf) {
                        Ok(0) | Err(_) => {
                            // The channel closes when QEMU dies: give SIGCHLD a moment to say how.
                            let mut why = None;
                            for _ in 0..50 {
                                why = self.reap_failure();
                                if why.is_some() {
                                    break;
                                }
                                std::thread::sleep(Duration::from_millis(10));
                            }
                            return self.fail(why.unwrap_or_else(|| "the agent channel closed".into()));
                        }
                        Ok(n) => {
                            self.last_seen = Instant::now();
                            self.dec.feed(&buf[..n]);
                            loop {
                                match self.dec.next_frame() {
                                    Ok(Some(f)) => {
                                        if f.kind == Kind::Event {
                                            if let Ok(Event::Exit { key: INIT_KEY, code }) = f.parse::<Event>() {
                                                return self.init_exited(code);
                                            }
                                        }
                                        self.frame(f);
                                    }
                                    Ok(None) => break,
                                    Err(e) => return self.fail(format!("agent protocol: {e}")),
                                }
                            }
                        }
                    },
                    Src::Fifo => {
                        let mut b = [0u8; 1];
                        if let Some(f) = self.fifo.take() {
                            let _ = rustix::io::read(&f, &mut b);
                        }
                        self.started = true;
                        if self.send(&Request::Start, Pending::Start).is_err() {
                            return self.fail("the agent channel broke".into());
                        }
                    }
                    Src::Ctl => self.accept(),
                    Src::Stdin(k) => self.pump_stdin(k, &mut buf),
                    Src::Conn(k) => self.conn_ready(k),
                }
                if self.killed {
                    return self.init_exited(128 + libc::SIGKILL);
                }
            }
        }
    }

    fn signals(&mut self) -> Option<i32> {
        let mut info = [0u8; sig::SIGINFO_SIZE];
        while let Ok(n) = rustix::io::read(&self.sigfd, &mut info) {
            if n != info.len() {
                break;
            }
            match sig::siginfo_signo(&info) as i32 {
                libc::SIGCHLD => {
                    if let Some(why) = self.reap_failure() {
                        return Some(self.fail(why));
                    }
                }
                libc::SIGWINCH => {
                    let ws = self.procs.get(&INIT_KEY).and_then(|p| p.stdout.as_ref()).and_then(|t| winsize(t.as_fd()));
                    if let (true, Some((rows, cols))) = (self.tty, ws) {
                        let _ = self.send(&Request::Resize { key: INIT_KEY, rows, cols }, Pending::Ignore);
                    }
                }
                s => {
                    let _ = self.send(&Request::Signal { key: INIT_KEY, signal: s, all: false }, Pending::Ignore);
                }
            }
        }
        None
    }

    fn pump_stdin(&mut self, key: u32, buf: &mut [u8]) {
        let Some(p) = self.procs.get_mut(&key) else { return };
        let Some(src) = &p.stdin else { return };
        let (frame, close) = match rustix::io::read(src, &mut *buf) {
            Ok(0) | Err(rustix::io::Errno::IO) => {
                (Frame { kind: Kind::Eof, stream: proto::stream(key, 0), payload: vec![] }, true)
            }
            Ok(n) => (Frame { kind: Kind::Data, stream: proto::stream(key, 0), payload: buf[..n].to_vec() }, false),
            Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => return,
            Err(_) => (Frame { kind: Kind::Eof, stream: proto::stream(key, 0), payload: vec![] }, true),
        };
        if close {
            p.stdin = None;
        }
        let _ = self.write_frame(&frame);
    }

    fn accept(&mut self) {
        let Some(l) = &self.ctl else { return };
        let Ok(c) = rustix::net::accept_with(l, rustix::net::SocketFlags::CLOEXEC) else { return };
        let (req, mut fds) = match ctl::recv::<CtlRequest>(c.as_fd()) {
            Ok(Some(x)) => x,
            _ => return,
        };
        match req {
            CtlRequest::Exec { process } => {
                let key = self.next_key;
                self.next_key += 1;
                let terminal = process.get("terminal").and_then(|t| t.as_bool()).unwrap_or(false);
                let mut p = Proc::default();
                if terminal {
                    let Some(t) = fds.pop() else {
                        let _ = ctl::send(c.as_fd(), &CtlReply::Error("exec: no terminal descriptor".into()), &[]);
                        return;
                    };
                    if let Ok(mut raw) = rustix::termios::tcgetattr(&t) {
                        raw.make_raw();
                        let _ = rustix::termios::tcsetattr(&t, rustix::termios::OptionalActions::Now, &raw);
                    }
                    p.stdin = t.try_clone().ok();
                    p.stdout = Some(t);
                } else {
                    let mut it = fds.into_iter();
                    p.stdin = it.next();
                    p.stdout = it.next();
                    p.stderr = it.next();
                }
                let winsize = if terminal { p.stdout.as_ref().and_then(|t| winsize(t.as_fd())) } else { None };
                p.conn = Some(c);
                self.procs.insert(key, p);
                if self.send(&Request::Exec { key, process, winsize }, Pending::Exec(key)).is_err() {
                    if let Some(p) = self.procs.remove(&key) {
                        if let Some(c) = p.conn {
                            let _ = ctl::send(c.as_fd(), &CtlReply::Error("the agent channel broke".into()), &[]);
                        }
                    }
                }
            }
            CtlRequest::SignalAll { signal } => {
                let _ = self.send(&Request::Signal { key: INIT_KEY, signal, all: true }, Pending::SignalAll(c));
            }
            // (A broken channel drops the connection: the caller sees it close.)
            CtlRequest::Processes => {
                let _ = self.send(&Request::Pids, Pending::Processes(c));
            }
            CtlRequest::Stats => {
                let _ = self.send(&Request::Stats, Pending::Stats(c));
            }
            CtlRequest::Kill => {
                log::debug!("vm {}: killed", self.cfg_id);
                self.killed = true;
            }
            CtlRequest::Signal { .. } => {
                let _ = ctl::send(c.as_fd(), &CtlReply::Error("signal: no exec on this connection".into()), &[]);
            }
        }
    }

    /// A packet (or hang-up) from an exec stand-in.
    fn conn_ready(&mut self, key: u32) {
        let Some(c) = self.procs.get(&key).and_then(|p| p.conn.as_ref()) else { return };
        match ctl::recv::<CtlRequest>(c.as_fd()) {
            Ok(Some((CtlRequest::Signal { signal }, _))) => {
                let _ = self.send(&Request::Signal { key, signal, all: false }, Pending::Ignore);
            }
            Ok(Some(_)) => {}
            // The stand-in is gone (killed with SIGKILL, say): so is the process for its
            // waiter, so stop it in the guest too.
            Ok(None) | Err(_) => {
                if let Some(p) = self.procs.get_mut(&key) {
                    p.conn = None;
                }
                let _ = self.send(&Request::Signal { key, signal: libc::SIGKILL, all: false }, Pending::Ignore);
            }
        }
    }

    fn init_exited(&mut self, code: i32) -> i32 {
        // Remaining frames already received (output written before the exit) were handled in
        // order; tell exec waiters their processes are gone with the container.
        for (_, p) in std::mem::take(&mut self.procs) {
            if let Some(c) = &p.conn {
                let _ = ctl::send(c.as_fd(), &CtlReply::Exit(128 + libc::SIGKILL), &[]);
            }
        }
        code
    }

    /// A VM failure: the reason where `delete`, the user and the log see it; the status
    /// [`VM_FAILURE_EXIT`].
    fn fail(&mut self, why: String) -> i32 {
        let msg = format!("container {}: VM failure: {why}", self.cfg_id);
        log::error!("{msg}");
        let _ = fs::write(self.paths.failure(), format!("{why}\n"));
        if let Some(e) = self.procs.get(&INIT_KEY).and_then(|p| p.stderr.as_ref().or(p.stdout.as_ref())) {
            let _ = write_all(e.as_fd(), format!("berth: {msg}\n").as_bytes());
        }
        for (_, p) in std::mem::take(&mut self.procs) {
            if let Some(c) = &p.conn {
                let _ = ctl::send(c.as_fd(), &CtlReply::Exit(VM_FAILURE_EXIT), &[]);
            }
        }
        VM_FAILURE_EXIT
    }

    /// Stops QEMU and virtiofsd and reaps them; removes the sockets. The agent synced the
    /// guest's filesystems before it reported the exit, and virtiofs writes are synchronous
    /// (cache=none), so there is nothing to lose by not waiting for a guest shutdown.
    fn teardown(&mut self) {
        for pid in [self.qemu.take(), self.virtiofsd.take()].into_iter().flatten() {
            if let Some(p) = Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(p, Signal::KILL);
                let _ = rustix::process::waitpid(Some(p), WaitOptions::empty());
            }
        }
        // Anything else of ours (virtiofsd's sandbox child) dies with its parent: reap it.
        let end = Instant::now() + Duration::from_secs(2);
        while Instant::now() < end {
            match rustix::process::wait(WaitOptions::NOHANG) {
                Ok(Some(_)) => {}
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Err(_) => break,
            }
        }
        for p in [self.paths.agent(), self.paths.fs(), self.paths.ctl()] {
            let _ = fs::remove_file(p);
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Src {
    Sig,
    Agent,
    Fifo,
    Ctl,
    Stdin(u32),
    Conn(u32),
}

fn describe(status: rustix::process::WaitStatus) -> String {
    match status.terminating_signal() {
        Some(s) => format!("killed by signal {s}"),
        None => format!("status {}", exit_code(status)),
    }
}

fn last_line(path: &std::path::Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    match text.lines().rev().find(|l| !l.trim().is_empty()) {
        Some(l) => format!(": {}", l.trim()),
        None => String::new(),
    }
}

/// The accelerator this process will use (for logs and the benchmark).
pub fn accel_name() -> &'static str {
    match host::accel() {
        Accel::Kvm => "kvm",
        Accel::Tcg => "tcg",
    }
}
