//! berth's guest agent: PID 1 of a VM container's guest (started by the initramfs's /init).
//!
//! It mounts the rootfs the host shares over virtiofs, opens the virtio-serial port named
//! `berth.agent`, says hello, and then serves the host's requests (`berth_vm::proto`) in one
//! single-threaded poll loop: the container is created, started and exec'd into by
//! berth-linux exactly as on a host (namespaces, mounts, capabilities, seccomp, cgroups — here
//! the guest's), its stdio relayed as frames, each exit reported after the process's output.
//! No second runtime: this is berth.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use berth_linux::container::{self, CreateOptions, LaunchMode, Launched};
use berth_linux::init::Stdio;
use berth_linux::state::ContainerState;
use berth_sys::signal::{self as sig, SigSet};
use berth_vm::proto::{self, Decoder, Event, Frame, Kind, Request, Response, INIT_KEY};
use rustix::event::{poll, PollFd, PollFlags};
use rustix::fs::{Mode, OFlags};
use rustix::process::{Pid, WaitOptions};

const STATE_ROOT: &str = "/run/berth";
const BUNDLE: &str = "/run/bundle";
const PORT_NAME: &str = "berth.agent";

struct Logger;

impl log::Log for Logger {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::Level::Warn
    }
    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            let _ = writeln!(io::stderr(), "berth-vm-agent: {}: {}", r.level(), r.args());
        }
    }
    fn flush(&self) {}
}

static LOGGER: Logger = Logger;

/// One process of the container, guest side.
struct Proc {
    pid: i32,
    pidfd: OwnedFd,
    /// Where the host's stdin bytes go (a pipe, or the PTY master).
    stdin: Option<OwnedFd>,
    /// stdout (or the PTY master).
    stdout: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
    tty: bool,
    exited: Option<i32>,
}

struct Agent {
    port: OwnedFd,
    procs: BTreeMap<u32, Proc>,
    init_state: Option<ContainerState>,
    id: String,
}

fn main() {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::LevelFilter::Warn);
    if let Err(e) = run() {
        let _ = writeln!(io::stderr(), "berth-vm-agent: {e}");
    }
    // PID 1 must not exit (the kernel would panic): power off instead; QEMU runs with
    // -no-reboot, so a reboot ends it.
    rustix::fs::sync();
    let _ = rustix::system::reboot(rustix::system::RebootCommand::Restart);
    loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

fn run() -> io::Result<()> {
    std::fs::create_dir_all(berth_vm::GUEST_ROOTFS)?;
    rustix::mount::mount("rootfs", berth_vm::GUEST_ROOTFS, "virtiofs", rustix::mount::MountFlags::empty(), None)
        .map_err(|e| io::Error::new(e.kind(), format!("mounting the virtiofs rootfs: {e}")))?;
    std::fs::create_dir_all(BUNDLE)?;
    std::fs::create_dir_all(STATE_ROOT)?;
    let port = open_port()?;
    let mut set = SigSet::empty();
    set.add(libc::SIGCHLD)?;
    let mut blocked = set;
    blocked.add(libc::SIGPIPE)?;
    sig::set_mask(&blocked)?;
    let sigfd = sig::signalfd(&set)?;
    let mut a = Agent { port, procs: BTreeMap::new(), init_state: None, id: String::new() };
    let kernel = rustix::system::uname().release().to_string_lossy().into_owned();
    a.send(&Frame::json(Kind::Event, &Event::Hello { kernel }))?;
    let mut dec = Decoder::default();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let mut fds = vec![PollFd::new(&a.port, PollFlags::IN), PollFd::new(&sigfd, PollFlags::IN)];
        let mut srcs = Vec::new();
        for (k, p) in &a.procs {
            if let Some(o) = &p.stdout {
                fds.push(PollFd::new(o, PollFlags::IN));
                srcs.push((*k, 1u32));
            }
            if let Some(e) = &p.stderr {
                fds.push(PollFd::new(e, PollFlags::IN));
                srcs.push((*k, 2u32));
            }
        }
        match poll(&mut fds, None) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
        let port_ready = !fds[0].revents().is_empty();
        let sig_ready = !fds[1].revents().is_empty();
        let out_ready: Vec<(u32, u32)> =
            fds[2..].iter().zip(srcs).filter(|(f, _)| !f.revents().is_empty()).map(|(_, s)| s).collect();
        drop(fds);
        for (k, fd) in out_ready {
            a.pump_output(k, fd, &mut buf)?;
        }
        if port_ready {
            match rustix::io::read(&a.port, &mut buf) {
                Ok(0) => std::thread::sleep(std::time::Duration::from_millis(10)),
                Ok(n) => {
                    dec.feed(&buf[..n]);
                    while let Some(f) = dec.next_frame()? {
                        a.frame(f)?;
                    }
                }
                Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if sig_ready {
            let mut info = [0u8; sig::SIGINFO_SIZE];
            while rustix::io::read(&sigfd, &mut info).is_ok() {}
            a.reap(&mut buf)?;
        }
    }
}

/// The virtio-serial port the host named `berth.agent` (its /dev node's number depends on
/// probe order, so it is found by name).
fn open_port() -> io::Result<OwnedFd> {
    for e in std::fs::read_dir("/sys/class/virtio-ports")? {
        let e = e?;
        if std::fs::read_to_string(e.path().join("name")).map(|n| n.trim() == PORT_NAME).unwrap_or(false) {
            let dev = Path::new("/dev").join(e.file_name());
            return rustix::fs::open(&dev, OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())
                .map_err(|er| io::Error::new(er.kind(), format!("opening {}: {er}", dev.display())));
        }
    }
    Err(io::Error::new(io::ErrorKind::NotFound, format!("no virtio-serial port named {PORT_NAME}")))
}

fn write_all(fd: BorrowedFd<'_>, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match rustix::io::write(fd, buf) {
            Ok(n) => buf = &buf[n..],
            Err(rustix::io::Errno::INTR) => {}
            Err(rustix::io::Errno::AGAIN) => {
                let mut p = [PollFd::new(&fd, PollFlags::OUT)];
                let _ = poll(&mut p, None);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?)
}

fn nonblocking(fd: &OwnedFd) {
    let _ = rustix::io::ioctl_fionbio(fd, true);
}

/// Sets `process.consoleSize` from the host terminal's size.
fn with_size(mut process: serde_json::Value, winsize: Option<(u16, u16)>) -> serde_json::Value {
    if let Some((rows, cols)) = winsize {
        process["consoleSize"] = serde_json::json!({"height": rows, "width": cols});
    }
    process
}

impl Agent {
    fn send(&self, f: &Frame) -> io::Result<()> {
        write_all(self.port.as_fd(), &f.encode())
    }

    fn respond(&self, r: Response) -> io::Result<()> {
        self.send(&Frame::json(Kind::Response, &r))
    }

    fn frame(&mut self, f: Frame) -> io::Result<()> {
        match f.kind {
            Kind::Request => {
                let r = match f.parse::<Request>() {
                    Ok(req) => self.request(req),
                    Err(e) => Response::err(format!("bad request: {e}")),
                };
                self.respond(r)
            }
            Kind::Data => {
                let (key, _) = proto::split_stream(f.stream);
                if let Some(i) = self.procs.get(&key).and_then(|p| p.stdin.as_ref()) {
                    // A process that stopped reading its stdin is its own problem.
                    let _ = write_all(i.as_fd(), &f.payload);
                }
                Ok(())
            }
            Kind::Eof => {
                let (key, _) = proto::split_stream(f.stream);
                if let Some(p) = self.procs.get_mut(&key) {
                    if p.tty {
                        // End of input on a terminal is ^D for the line discipline.
                        if let Some(m) = &p.stdin {
                            let _ = write_all(m.as_fd(), &[4]);
                        }
                    } else {
                        p.stdin = None;
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn request(&mut self, req: Request) -> Response {
        let root = PathBuf::from(STATE_ROOT);
        match req {
            Request::Ping => Response::ok(),
            Request::Create { id, spec, winsize } => {
                let terminal = spec["process"]["terminal"].as_bool().unwrap_or(false);
                let mut spec = spec;
                if terminal {
                    spec["process"] = with_size(spec["process"].take(), winsize);
                }
                let spec: oci_spec::runtime::Spec = match serde_json::from_value(spec) {
                    Ok(s) => s,
                    Err(e) => return Response::err(format!("spec: {e}")),
                };
                let mut p = match self.stdio(terminal) {
                    Ok(x) => x,
                    Err(e) => return Response::err(e),
                };
                let opts = CreateOptions {
                    root: root.clone(),
                    id: id.clone(),
                    bundle: BUNDLE.into(),
                    spec: Some(spec),
                    stdio: p.1.take(),
                    keep_master: true,
                    ..Default::default()
                };
                match container::launch(&opts, LaunchMode::Create) {
                    Ok(Launched::Created { pid, pidfd, master, state }) => {
                        let mut proc_ = p.0;
                        proc_.pid = pid;
                        proc_.pidfd = pidfd;
                        if let Some(m) = master {
                            nonblocking(&m);
                            proc_.stdin = m.try_clone().ok();
                            proc_.stdout = Some(m);
                        }
                        self.procs.insert(INIT_KEY, proc_);
                        self.init_state = Some(*state);
                        self.id = id;
                        Response { ok: true, pid: Some(pid), ..Default::default() }
                    }
                    Ok(_) => Response::err("create did not leave a created container"),
                    Err(e) => Response::err(e),
                }
            }
            Request::Start => match &self.init_state {
                Some(st) => match container::start_created(&root, st) {
                    Ok(()) => Response::ok(),
                    Err(e) => Response::err(e),
                },
                None => Response::err("no container"),
            },
            Request::Exec { key, process, winsize } => {
                let terminal = process["terminal"].as_bool().unwrap_or(false);
                let process = if terminal { with_size(process, winsize) } else { process };
                let process: oci_spec::runtime::Process = match serde_json::from_value(process) {
                    Ok(p) => p,
                    Err(e) => return Response::err(format!("process: {e}")),
                };
                let mut p = match self.stdio(terminal) {
                    Ok(x) => x,
                    Err(e) => return Response::err(e),
                };
                let opts = berth_linux::exec::ExecOptions {
                    root,
                    id: self.id.clone(),
                    process: Some(process),
                    stdio: p.1.take(),
                    ..Default::default()
                };
                match berth_linux::exec::spawn(&opts) {
                    Ok(sp) => {
                        let mut proc_ = p.0;
                        proc_.pid = sp.pid;
                        proc_.pidfd = sp.pidfd;
                        if let Some(m) = sp.master {
                            nonblocking(&m);
                            proc_.stdin = m.try_clone().ok();
                            proc_.stdout = Some(m);
                        }
                        self.procs.insert(key, proc_);
                        Response { ok: true, pid: Some(sp.pid), ..Default::default() }
                    }
                    Err(e) => Response::err(e),
                }
            }
            Request::Signal { key, signal, all } => {
                if all {
                    return match container::kill(&root, &self.id, signal, true) {
                        Ok(()) => Response::ok(),
                        Err(e) => Response::err(e),
                    };
                }
                let Some(p) = self.procs.get(&key).filter(|p| p.exited.is_none()) else {
                    return Response::err(format!("no process {key}"));
                };
                // Any number 1..=64, real-time signals included (rustix names only the classic ones).
                match berth_sys::signal::pidfd_send(p.pidfd.as_fd(), signal) {
                    Ok(()) => Response::ok(),
                    Err(e) => Response::err(format!("signal {signal}: {e}")),
                }
            }
            Request::Resize { key, rows, cols } => match self.procs.get(&key).and_then(|p| p.stdout.as_ref()) {
                Some(m) => {
                    let ws = rustix::termios::Winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
                    match rustix::termios::tcsetwinsize(m, ws) {
                        Ok(()) => Response::ok(),
                        Err(e) => Response::err(e),
                    }
                }
                None => Response::err(format!("no terminal for process {key}")),
            },
            Request::Pids => match berth_linux::exec::pids(&root, &self.id) {
                Ok(p) => {
                    let procs =
                        p.iter().filter_map(|pid| proto::GuestProcess::read(Path::new("/proc"), *pid)).collect();
                    Response { ok: true, pids: Some(p), processes: Some(procs), ..Default::default() }
                }
                Err(e) => Response::err(e),
            },
            // The same statistics as a native container's on a host: the container's cgroup,
            // here the guest's.
            Request::Stats => {
                match ContainerState::load(&root, &self.id).and_then(|st| berth_linux::resources::stats(&root, &st)) {
                    Ok(s) => Response { ok: true, stats: Some(Box::new(s)), ..Default::default() },
                    Err(e) => Response::err(e),
                }
            }
            Request::Shutdown => {
                rustix::fs::sync();
                let _ = rustix::system::reboot(rustix::system::RebootCommand::Restart);
                Response::ok()
            }
        }
    }

    /// Pipes for a process without a terminal: the agent's ends in the `Proc`, the process's
    /// in the `Stdio`. With a terminal berth-linux makes the PTY and returns its master.
    fn stdio(&self, terminal: bool) -> io::Result<(Proc, Option<Stdio>)> {
        let placeholder = rustix::fs::open("/dev/null", OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
        let mut p =
            Proc { pid: 0, pidfd: placeholder, stdin: None, stdout: None, stderr: None, tty: terminal, exited: None };
        if terminal {
            // The process's stdio becomes the terminal; until then it must not be the
            // agent's (the guest console).
            let null = |fl| rustix::fs::open("/dev/null", fl | OFlags::CLOEXEC, Mode::empty());
            let stdio = Stdio {
                stdin: Some(null(OFlags::RDONLY)?),
                stdout: Some(null(OFlags::WRONLY)?),
                stderr: Some(null(OFlags::WRONLY)?),
            };
            return Ok((p, Some(stdio)));
        }
        let (in_r, in_w) = pipe()?;
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        nonblocking(&out_r);
        nonblocking(&err_r);
        p.stdin = Some(in_w);
        p.stdout = Some(out_r);
        p.stderr = Some(err_r);
        Ok((p, Some(Stdio { stdin: Some(in_r), stdout: Some(out_w), stderr: Some(err_w) })))
    }

    /// Sends what is readable on one output; at EOF (or EIO: a PTY whose slave closed)
    /// sends `Eof` and drops it.
    fn pump_output(&mut self, key: u32, fd: u32, buf: &mut [u8]) -> io::Result<()> {
        let Some(p) = self.procs.get_mut(&key) else { return Ok(()) };
        let src = if fd == 2 { &mut p.stderr } else { &mut p.stdout };
        let Some(s) = src.as_ref() else { return Ok(()) };
        match rustix::io::read(s, &mut *buf) {
            Ok(0) | Err(rustix::io::Errno::IO) => {
                *src = None;
                if fd == 1 && p.tty {
                    p.stdin = None;
                }
                self.send(&Frame { kind: Kind::Eof, stream: proto::stream(key, fd), payload: vec![] })
            }
            Ok(n) => self.send(&Frame { kind: Kind::Data, stream: proto::stream(key, fd), payload: buf[..n].to_vec() }),
            Err(_) => Ok(()),
        }
    }

    /// Reaps every exited child; for the container's processes, sends the rest of their
    /// output, then the exit.
    fn reap(&mut self, buf: &mut [u8]) -> io::Result<()> {
        while let Ok(Some((pid, status))) = rustix::process::wait(WaitOptions::NOHANG) {
            let pid = pid.as_raw_nonzero().get();
            let code = status.exit_status().or_else(|| status.terminating_signal().map(|s| 128 + s)).unwrap_or(255);
            let Some(key) = self.procs.iter().find(|(_, p)| p.pid == pid).map(|(k, _)| *k) else { continue };
            if let Some(p) = self.procs.get_mut(&key) {
                p.exited = Some(code);
            }
            self.drain(key, buf)?;
            if key == INIT_KEY {
                // What the container wrote through the shared rootfs is on the host before
                // the host hears of the exit (and may stop the VM at once).
                rustix::fs::sync();
            }
            self.procs.remove(&key);
            self.send(&Frame::json(Kind::Event, &Event::Exit { key, code }))?;
        }
        let _ = Pid::from_raw(1);
        Ok(())
    }

    /// Everything already written by an exited process (its descriptors may be held open by
    /// its children, so this stops at "nothing more right now", not only at EOF).
    fn drain(&mut self, key: u32, buf: &mut [u8]) -> io::Result<()> {
        for fd in [1u32, 2] {
            loop {
                let Some(p) = self.procs.get(&key) else { return Ok(()) };
                let src = if fd == 2 { &p.stderr } else { &p.stdout };
                let Some(s) = src else { break };
                match rustix::io::read(s, &mut *buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => self.send(&Frame {
                        kind: Kind::Data,
                        stream: proto::stream(key, fd),
                        payload: buf[..n].to_vec(),
                    })?,
                }
            }
            self.send(&Frame { kind: Kind::Eof, stream: proto::stream(key, fd), payload: vec![] })?;
        }
        Ok(())
    }
}
