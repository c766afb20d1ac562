//! A process's stdio as containerd hands it over: fifo paths (or `file://` URIs, or nothing).
//!
//! Without a terminal the fifos are given to the process **directly**: no pipe, no copy, no
//! thread, nothing for the shim to do per byte. The descriptors are opened so that the
//! process behaves as under containerd's runc shim:
//!
//! * stdout/stderr are opened read-write. Like the runc shim, which keeps a reader on each
//!   fifo, this means a client that goes away makes the process block once the fifo is full
//!   instead of killing it with SIGPIPE, and opening never blocks or fails for lack of a reader.
//! * stdin is opened read-only, and the shim keeps a writer of its own (`stdin_keep`) so the
//!   process does not see end-of-file before the client has connected its writer. `CloseIO`
//!   drops the shim's writer; the process then reads EOF once the client closed its own.
//!
//! With a terminal, the PTY master is relayed by the shim's event loop: stdin fifo → master,
//! master → stdout fifo (see [`Relay`]), with bounded buffers and back-pressure.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

use crate::error::{Error, Result};

/// Largest amount buffered per direction of a terminal relay before the source is paused.
pub const RELAY_CAP: usize = 32 * 1024;

fn open(path: &str, flags: OFlags) -> Result<OwnedFd> {
    rustix::fs::open(path, flags | OFlags::CLOEXEC, Mode::from_raw_mode(0o600))
        .map_err(|e| Error::io(format!("opening {path}"), e))
}

fn set_blocking(fd: &OwnedFd, blocking: bool) -> Result<()> {
    let mut fl = rustix::fs::fcntl_getfl(fd).map_err(|e| Error::io("fcntl(F_GETFL)", e))?;
    fl.set(OFlags::NONBLOCK, !blocking);
    rustix::fs::fcntl_setfl(fd, fl).map_err(|e| Error::io("fcntl(F_SETFL)", e))
}

fn dev_null(write: bool) -> Result<OwnedFd> {
    open("/dev/null", if write { OFlags::WRONLY } else { OFlags::RDONLY })
}

/// Opens an output destination for the process (blocking descriptor).
fn output(uri: &str) -> Result<OwnedFd> {
    if uri.is_empty() {
        return dev_null(true);
    }
    if let Some(rest) = uri.strip_prefix("file://") {
        if let Some(dir) = Path::new(rest).parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        }
        return open(rest, OFlags::WRONLY | OFlags::APPEND | OFlags::CREATE);
    }
    if uri.starts_with("binary://") {
        return Err(Error::Unsupported(format!("stdio {uri:?}: binary:// logging drivers are not supported by berth")));
    }
    let path = uri.strip_prefix("fifo://").unwrap_or(uri);
    open(path, OFlags::RDWR)
}

/// The shim's side of one process's stdio.
#[derive(Debug, Default)]
pub struct ProcIo {
    /// The shim's writer on the stdin fifo (non-terminal), dropped by `CloseIO`.
    pub stdin_keep: Option<OwnedFd>,
    /// The terminal relay.
    pub relay: Option<Relay>,
}

/// Opens the process's stdio. Returns the descriptors for the process (none with a
/// terminal: its stdio is the PTY slave) and the shim's side.
pub fn open_process(
    stdin: &str,
    stdout: &str,
    stderr: &str,
    terminal: bool,
) -> Result<(Option<berth_linux::init::Stdio>, ProcIo)> {
    if terminal {
        let mut relay = Relay::default();
        if !stdin.is_empty() {
            let (r, keep) = stdin_fifo(stdin)?;
            set_blocking(&r, false)?;
            relay.input = Some(r);
            relay.input_keep = Some(keep);
        }
        if !stdout.is_empty() {
            let w = output(stdout)?;
            set_blocking(&w, false)?;
            relay.output = Some(w);
        }
        return Ok((None, ProcIo { stdin_keep: None, relay: Some(relay) }));
    }
    let mut io = ProcIo::default();
    let input = if stdin.is_empty() {
        dev_null(false)?
    } else {
        let (r, keep) = stdin_fifo(stdin)?;
        set_blocking(&r, true)?;
        io.stdin_keep = Some(keep);
        r
    };
    let out = output(stdout)?;
    let err = output(stderr)?;
    Ok((Some(berth_linux::init::Stdio { stdin: Some(input), stdout: Some(out), stderr: Some(err) }), io))
}

/// The read end of a stdin fifo (non-blocking) and the shim's keep-alive writer.
fn stdin_fifo(uri: &str) -> Result<(OwnedFd, OwnedFd)> {
    let path = uri.strip_prefix("fifo://").unwrap_or(uri);
    if uri.contains("://") && !uri.starts_with("fifo://") {
        return Err(Error::Unsupported(format!("stdin {uri:?}: only fifos are supported for stdin")));
    }
    let r = open(path, OFlags::RDONLY | OFlags::NONBLOCK)?;
    // A reader exists now (ours), so a non-blocking write open succeeds.
    let keep = open(path, OFlags::WRONLY | OFlags::NONBLOCK)?;
    Ok((r, keep))
}

/// A terminal relay: stdin fifo → PTY master → stdout fifo.
#[derive(Debug, Default)]
pub struct Relay {
    /// PTY master (non-blocking).
    pub master: Option<OwnedFd>,
    /// stdin fifo, read end.
    pub input: Option<OwnedFd>,
    /// The shim's writer on the stdin fifo, dropped by `CloseIO`.
    pub input_keep: Option<OwnedFd>,
    /// stdout fifo.
    pub output: Option<OwnedFd>,
    /// Read from stdin, not yet written to the master.
    pub to_master: Vec<u8>,
    /// Read from the master, not yet written to stdout.
    pub to_output: Vec<u8>,
    /// The terminal's output ended (EIO: every slave descriptor is closed).
    pub master_done: bool,
}

/// What a relay step observed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Bytes moved.
    pub moved: usize,
}

fn read_some(fd: &OwnedFd, out: &mut Vec<u8>) -> std::result::Result<Option<usize>, Errno> {
    let room = RELAY_CAP.saturating_sub(out.len());
    if room == 0 {
        return Ok(Some(0));
    }
    let mut buf = [0u8; 8192];
    let take = room.min(buf.len());
    let Some(slice) = buf.get_mut(..take) else { return Ok(Some(0)) };
    loop {
        match rustix::io::read(fd, &mut *slice) {
            Ok(0) => return Ok(None),
            Ok(n) => {
                out.extend_from_slice(slice.get(..n).unwrap_or_default());
                return Ok(Some(n));
            }
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

fn write_some(fd: &OwnedFd, data: &mut Vec<u8>) -> std::result::Result<usize, Errno> {
    let mut total = 0;
    while !data.is_empty() {
        match rustix::io::write(fd, data) {
            Ok(n) => {
                data.drain(..n);
                total += n;
            }
            Err(Errno::INTR) => continue,
            Err(Errno::AGAIN) => break,
            Err(e) => return Err(e),
        }
    }
    if data.is_empty() {
        // Idle relays hold no buffer memory.
        *data = Vec::new();
    }
    Ok(total)
}

impl Relay {
    /// Moves whatever can move without blocking, in both directions.
    pub fn pump(&mut self) -> Progress {
        let mut p = Progress::default();
        loop {
            let before = p.moved;
            // stdin → master
            if let Some(input) = &self.input {
                match read_some(input, &mut self.to_master) {
                    Ok(Some(n)) => p.moved += n,
                    Ok(None) => self.input_eof(),
                    Err(Errno::AGAIN) => {}
                    Err(_) => self.input_eof(),
                }
            }
            if let Some(m) = &self.master {
                match write_some(m, &mut self.to_master) {
                    Ok(n) => p.moved += n,
                    Err(_) => self.to_master.clear(),
                }
            }
            // master → stdout
            if let (Some(m), false) = (&self.master, self.master_done) {
                match read_some(m, &mut self.to_output) {
                    Ok(Some(n)) => p.moved += n,
                    Ok(None) => self.master_done = true,
                    Err(Errno::AGAIN) => {}
                    // EIO: the last slave descriptor closed.
                    Err(_) => self.master_done = true,
                }
            }
            match &self.output {
                Some(o) => match write_some(o, &mut self.to_output) {
                    Ok(n) => p.moved += n,
                    Err(_) => {
                        self.to_output.clear();
                        self.output = None;
                    }
                },
                None => self.to_output.clear(),
            }
            if p.moved == before {
                return p;
            }
        }
    }

    fn input_eof(&mut self) {
        self.input = None;
        self.input_keep = None;
        // What closing stdin means for a terminal: EOT makes a canonical-mode reader see EOF.
        if let Some(m) = &self.master {
            let _ = rustix::io::write(m, b"\x04");
        }
    }

    /// True once every byte of the terminal's output has been written out.
    pub fn drained(&self) -> bool {
        self.master_done && self.to_output.is_empty()
    }

    /// Closes the output so the client reads EOF.
    pub fn finish(&mut self) {
        self.output = None;
        self.to_output = Vec::new();
    }

    /// Which of the relay's descriptors want which readiness:
    /// (master: read, master: write, input: read, output: write).
    pub fn interest(&self) -> (bool, bool, bool, bool) {
        let master_r = self.master.is_some() && !self.master_done && self.to_output.len() < RELAY_CAP;
        let master_w = self.master.is_some() && !self.to_master.is_empty();
        let input_r = self.input.is_some() && self.to_master.len() < RELAY_CAP;
        let output_w = self.output.is_some() && !self.to_output.is_empty();
        (master_r, master_w, input_r, output_w)
    }

    /// Sets the master (made non-blocking).
    pub fn set_master(&mut self, master: OwnedFd) -> Result<()> {
        set_blocking(&master, false)?;
        self.master = Some(master);
        Ok(())
    }

    /// Resizes the terminal.
    pub fn resize(&self, width: u16, height: u16) -> Result<()> {
        let Some(m) = &self.master else { return Ok(()) };
        let ws = rustix::termios::Winsize { ws_row: height, ws_col: width, ws_xpixel: 0, ws_ypixel: 0 };
        rustix::termios::tcsetwinsize(m.as_fd(), ws).map_err(|e| Error::io("resizing the terminal", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn mkfifo(dir: &Path, name: &str) -> String {
        let p = dir.join(name);
        rustix::fs::mknodat(rustix::fs::CWD, &p, rustix::fs::FileType::Fifo, Mode::from_raw_mode(0o600), 0).unwrap();
        p.to_string_lossy().into_owned()
    }

    #[test]
    fn direct_fifos_keep_stdin_open_until_close_io() {
        let d = tempfile::tempdir().unwrap();
        let (i, o) = (mkfifo(d.path(), "in"), mkfifo(d.path(), "out"));
        let (stdio, mut io) = open_process(&i, &o, "", false).unwrap();
        let stdio = stdio.unwrap();
        let pin = stdio.stdin.unwrap();
        // With no client writer yet, the process does not see EOF: it would block.
        set_blocking(&pin, false).unwrap();
        let mut b = [0u8; 4];
        assert_eq!(rustix::io::read(&pin, &mut b), Err(Errno::AGAIN));
        // CloseIO: the shim's writer goes; with no other writer, EOF.
        io.stdin_keep = None;
        assert_eq!(rustix::io::read(&pin, &mut b), Ok(0));
        // stdout: written by the process, read by the client, no SIGPIPE without a client.
        let pout = stdio.stdout.unwrap();
        rustix::io::write(&pout, b"hello").unwrap();
        let mut reader = std::fs::File::open(&o).unwrap();
        drop(pout);
        let mut s = String::new();
        // The writer is gone: the client reads the data, then EOF.
        reader.read_to_string(&mut s).unwrap();
        assert_eq!(s, "hello");
        // Empty paths are /dev/null.
        let err = stdio.stderr.unwrap();
        assert_eq!(rustix::io::write(&err, b"x"), Ok(1));
    }

    #[test]
    fn binary_uri_is_refused_clearly_and_missing_fifo_names_the_path() {
        let e = open_process("", "binary:///usr/bin/logger", "", false).unwrap_err();
        assert!(e.to_string().contains("binary://"), "{e}");
        let e = open_process("/nonexistent/dir/fifo", "", "", false).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/dir/fifo"), "{e}");
    }

    #[test]
    fn file_uri_appends() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("logs/out.log");
        let uri = format!("file://{}", f.display());
        let (stdio, _io) = open_process("", &uri, &uri, false).unwrap();
        let s = stdio.unwrap();
        rustix::io::write(s.stdout.as_ref().unwrap(), b"a").unwrap();
        rustix::io::write(s.stderr.as_ref().unwrap(), b"b").unwrap();
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "ab");
    }

    #[test]
    fn relay_moves_bytes_both_ways_and_sends_eot_on_stdin_eof() {
        let d = tempfile::tempdir().unwrap();
        let (i, o) = (mkfifo(d.path(), "in"), mkfifo(d.path(), "out"));
        let mut client_out = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(&o).unwrap();
        let (stdio, io) = open_process(&i, &o, "", true).unwrap();
        assert!(stdio.is_none());
        let mut relay = io.relay.unwrap();
        let (master, slave, _) = berth_linux::tty::open_pty(None).unwrap();
        relay.set_master(master).unwrap();
        // Raw mode on the slave so bytes pass unchanged and are not echoed.
        let mut t = rustix::termios::tcgetattr(&slave).unwrap();
        t.make_raw();
        rustix::termios::tcsetattr(&slave, rustix::termios::OptionalActions::Now, &t).unwrap();
        let client_in = std::fs::OpenOptions::new().write(true).open(&i).unwrap();
        rustix::io::write(&client_in, b"ping").unwrap();
        relay.pump();
        let mut b = [0u8; 16];
        let n = rustix::io::read(&slave, &mut b).unwrap();
        assert_eq!(&b[..n], b"ping");
        rustix::io::write(&slave, b"pong").unwrap();
        relay.pump();
        let mut got = Vec::new();
        let _ = client_out.read_to_end(&mut got);
        assert_eq!(got, b"pong");
        // Client closes stdin and CloseIO drops the shim's writer: EOT reaches the terminal.
        drop(client_in);
        relay.input_keep = None;
        relay.pump();
        assert!(relay.input.is_none());
        let n = rustix::io::read(&slave, &mut b).unwrap();
        assert_eq!(&b[..n], b"\x04");
        // The slave closes: the master reports EIO, the relay is drained.
        drop(slave);
        relay.pump();
        assert!(relay.drained());
    }

    use std::os::unix::fs::OpenOptionsExt;
}
