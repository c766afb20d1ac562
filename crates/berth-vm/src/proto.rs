//! The agent protocol: one byte stream (a virtio-serial port in the guest, a unix socket on
//! the host) carrying frames. A frame is a 9-byte header — payload length (u32 LE), kind (u8),
//! stream (u32 LE) — and the payload. Requests, responses and events are JSON documents;
//! process I/O travels as `Data`/`Eof` frames on stream `key * 4 + fd` (fd 0 stdin, 1
//! stdout, 2 stderr; a terminal uses 0 and 1). The host sends one request at a time and the
//! agent answers each with exactly one response, in order; events (the guest's `Hello`, each
//! process's `Exit`) may come between them. Everything one process writes precedes its
//! `Exit` on the stream, which is what keeps "output before exit" and "no exit before start".

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

/// The largest payload accepted (a spec is well below this; the receiver refuses more
/// rather than allocating what a corrupt header says).
pub const MAX_PAYLOAD: usize = 4 << 20;
/// Header size.
pub const HEADER: usize = 9;
/// The key of the container's init; execs get keys from 1.
pub const INIT_KEY: u32 = 0;

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Host → agent: a [`Request`].
    Request = 1,
    /// Agent → host: the [`Response`] to the oldest unanswered request.
    Response = 2,
    /// Agent → host: an [`Event`].
    Event = 3,
    /// Process I/O on `stream`.
    Data = 4,
    /// End of `stream` (stdin closed, or stdout/stderr reached EOF).
    Eof = 5,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Request,
            2 => Kind::Response,
            3 => Kind::Event,
            4 => Kind::Data,
            5 => Kind::Eof,
            _ => return None,
        })
    }
}

/// One frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Kind.
    pub kind: Kind,
    /// Stream (0 for JSON frames).
    pub stream: u32,
    /// Payload.
    pub payload: Vec<u8>,
}

/// The stream number of a process's fd.
pub fn stream(key: u32, fd: u32) -> u32 {
    key.wrapping_mul(4).wrapping_add(fd)
}

/// The (key, fd) of a stream number.
pub fn split_stream(stream: u32) -> (u32, u32) {
    (stream / 4, stream % 4)
}

impl Frame {
    /// A JSON frame.
    pub fn json<T: Serialize>(kind: Kind, value: &T) -> Frame {
        // Serialising these plain structs cannot fail.
        Frame { kind, stream: 0, payload: serde_json::to_vec(value).unwrap_or_default() }
    }

    /// The frame as bytes on the wire.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + self.payload.len());
        out.extend_from_slice(&(self.payload.len() as u32).to_le_bytes());
        out.push(self.kind as u8);
        out.extend_from_slice(&self.stream.to_le_bytes());
        out.extend_from_slice(&self.payload);
        out
    }

    /// Writes the frame (blocking until all of it is written).
    pub fn write_to(&self, w: &mut impl Write) -> io::Result<()> {
        w.write_all(&self.encode())
    }

    /// Reads one frame; `Ok(None)` at a clean end of stream.
    pub fn read_from(r: &mut impl Read) -> io::Result<Option<Frame>> {
        let mut h = [0u8; HEADER];
        match r.read_exact(&mut h) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        let (frame_len, kind, stream) = parse_header(&h)?;
        let mut payload = vec![0u8; frame_len];
        r.read_exact(&mut payload)?;
        Ok(Some(Frame { kind, stream, payload }))
    }

    /// Parses the payload as JSON.
    pub fn parse<T: for<'a> Deserialize<'a>>(&self) -> io::Result<T> {
        serde_json::from_slice(&self.payload).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

fn parse_header(h: &[u8; HEADER]) -> io::Result<(usize, Kind, u32)> {
    let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
    let kind = Kind::from_u8(h[4]).ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidData, format!("agent protocol: unknown frame kind {}", h[4]))
    })?;
    if len > MAX_PAYLOAD {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("agent protocol: frame of {len} bytes")));
    }
    Ok((len, kind, u32::from_le_bytes([h[5], h[6], h[7], h[8]])))
}

/// Incremental decoder for a non-blocking reader: feed bytes, take whole frames.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
}

impl Decoder {
    /// Appends received bytes.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame, if any; an error for a corrupt stream.
    pub fn next_frame(&mut self) -> io::Result<Option<Frame>> {
        if self.buf.len() < HEADER {
            return Ok(None);
        }
        let mut h = [0u8; HEADER];
        h.copy_from_slice(&self.buf[..HEADER]);
        let (len, kind, stream) = parse_header(&h)?;
        if self.buf.len() < HEADER + len {
            return Ok(None);
        }
        let payload = self.buf[HEADER..HEADER + len].to_vec();
        self.buf.drain(..HEADER + len);
        Ok(Some(Frame { kind, stream, payload }))
    }
}

/// Host → agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Create the container from `spec` (its `root.path` is the guest's view of the rootfs);
    /// its init gets key 0 and waits for `Start`.
    Create {
        /// Container id.
        id: String,
        /// The OCI spec.
        spec: serde_json::Value,
        /// The terminal size when `process.terminal` is set.
        #[serde(default)]
        winsize: Option<(u16, u16)>,
    },
    /// Let the init exec the user process.
    Start,
    /// Start a process in the container, under `key`.
    Exec {
        /// Key of the process (from 1).
        key: u32,
        /// The OCI process.
        process: serde_json::Value,
        /// The terminal size when `process.terminal` is set.
        #[serde(default)]
        winsize: Option<(u16, u16)>,
    },
    /// Send `signal` to process `key` (with `all`, to every process of the container).
    Signal {
        /// Process.
        key: u32,
        /// Signal number.
        signal: i32,
        /// Every process of the container.
        #[serde(default)]
        all: bool,
    },
    /// Set the terminal size of process `key` (rows, columns).
    Resize {
        /// Process.
        key: u32,
        /// Rows.
        rows: u16,
        /// Columns.
        cols: u16,
    },
    /// Liveness check.
    Ping,
    /// The container's processes, as the guest sees them: their pids (and, in
    /// [`Response::processes`], what `ps` shows of each).
    Pids,
    /// The statistics of the container's cgroup in the guest (the same shape as a native
    /// container's, read by berth-cgroups in the guest).
    Stats,
    /// Flush the guest's filesystems and power the VM off.
    Shutdown,
}

/// Agent → host: the answer to one request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// Whether the request succeeded.
    pub ok: bool,
    /// Why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The guest pid of a created or exec'd process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    /// `Pids`: the guest pids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<Vec<i32>>,
    /// `Pids`: each process (those that exited between listing and reading are left out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processes: Option<Vec<GuestProcess>>,
    /// `Stats`: the guest container cgroup's statistics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<Box<berth_cgroups::Stats>>,
}

/// One process as `ps` and the embedding API's process summary show it, read from a `/proc`:
/// the guest's by the agent for a VM container (then pids are the guest's), the host's for
/// the library's summary of a native one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestProcess {
    /// Pid in the guest (the agent's, i.e. the guest's root, pid namespace).
    pub pid: i32,
    /// Parent's pid, same namespace.
    pub ppid: i32,
    /// Real uid.
    pub uid: u32,
    /// State letter (`R`, `S`, `Z`, ...).
    pub state: String,
    /// The command name (`comm`).
    pub command: String,
    /// The command line.
    pub args: Vec<String>,
    /// User CPU time, nanoseconds.
    pub user_ns: u64,
    /// System CPU time, nanoseconds.
    pub system_ns: u64,
    /// Resident set size, bytes.
    pub rss_bytes: u64,
}

impl GuestProcess {
    /// Reads process `pid` from `proc_dir` (`/proc`); `None` if it is gone (or unreadable).
    pub fn read(proc_dir: &std::path::Path, pid: i32) -> Option<GuestProcess> {
        let dir = proc_dir.join(pid.to_string());
        let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
        // The command is between the first '(' and the last ')': it may contain either.
        let open = stat.find('(')?;
        let close = stat.rfind(')')?;
        let command = stat.get(open + 1..close)?.to_string();
        let rest: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
        // After the command, 0-based: 0 state, 1 ppid, 11 utime, 12 stime, 21 rss (pages).
        let ticks = match rustix::param::clock_ticks_per_second() {
            0 => 100,
            t => t,
        };
        let ns = |i: usize| -> Option<u64> {
            let t: u64 = rest.get(i)?.parse().ok()?;
            Some(t.saturating_mul(1_000_000_000) / ticks)
        };
        let rss_pages: u64 = rest.get(21)?.parse().ok()?;
        let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
        let uid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let args = std::fs::read(dir.join("cmdline"))
            .map(|b| {
                b.split(|c| *c == 0)
                    .filter(|s| !s.is_empty())
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect()
            })
            .unwrap_or_default();
        Some(GuestProcess {
            pid,
            ppid: rest.get(1)?.parse().ok()?,
            uid,
            state: rest.first()?.chars().next()?.to_string(),
            command,
            args,
            user_ns: ns(11)?,
            system_ns: ns(12)?,
            rss_bytes: rss_pages.saturating_mul(rustix::param::page_size() as u64),
        })
    }
}

impl Response {
    /// Success.
    pub fn ok() -> Response {
        Response { ok: true, ..Default::default() }
    }

    /// Failure.
    pub fn err(e: impl ToString) -> Response {
        Response { ok: false, error: Some(e.to_string()), ..Default::default() }
    }
}

/// Agent → host, unsolicited.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The agent is up (first frame after boot).
    Hello {
        /// The guest kernel's release.
        kernel: String,
    },
    /// Process `key` exited with `code` (128+N for signal N), after all its output.
    Exit {
        /// Process.
        key: u32,
        /// Exit status.
        code: i32,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_whole_and_in_pieces() {
        let frames = vec![
            Frame::json(Kind::Request, &Request::Signal { key: 3, signal: 15, all: false }),
            Frame { kind: Kind::Data, stream: stream(3, 1), payload: b"hello".to_vec() },
            Frame { kind: Kind::Eof, stream: stream(3, 1), payload: vec![] },
            Frame::json(Kind::Event, &Event::Exit { key: 3, code: 137 }),
        ];
        let wire: Vec<u8> = frames.iter().flat_map(|f| f.encode()).collect();
        let mut r = &wire[..];
        for f in &frames {
            assert_eq!(Frame::read_from(&mut r).unwrap().as_ref(), Some(f));
        }
        assert_eq!(Frame::read_from(&mut r).unwrap(), None);
        // Byte by byte through the decoder: the same frames, none early.
        let mut d = Decoder::default();
        let mut got = Vec::new();
        for b in &wire {
            d.feed(std::slice::from_ref(b));
            while let Some(f) = d.next_frame().unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got, frames);
        assert_eq!(split_stream(stream(3, 2)), (3, 2));
    }

    #[test]
    fn corrupt_headers_are_errors_not_allocations() {
        let mut h = Frame { kind: Kind::Data, stream: 0, payload: vec![] }.encode();
        h[4] = 99;
        assert!(Decoder { buf: h.clone() }.next_frame().unwrap_err().to_string().contains("unknown frame kind 99"));
        h[4] = 4;
        h[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Frame::read_from(&mut &h[..]).unwrap_err().to_string().contains("frame of"));
    }

    #[test]
    fn requests_and_events_are_tagged_json() {
        let r: Request = serde_json::from_str(r#"{"op":"resize","key":0,"rows":24,"cols":80}"#).unwrap();
        assert_eq!(r, Request::Resize { key: 0, rows: 24, cols: 80 });
        let e = serde_json::to_string(&Event::Exit { key: 0, code: 3 }).unwrap();
        assert_eq!(e, r#"{"event":"exit","key":0,"code":3}"#);
        let resp: Response = serde_json::from_str(r#"{"ok":false,"error":"no"}"#).unwrap();
        assert_eq!(resp, Response::err("no"));
        assert_eq!(serde_json::to_string(&Request::Stats).unwrap(), r#"{"op":"stats"}"#);
    }

    #[test]
    fn processes_and_stats_round_trip() {
        let me = GuestProcess::read(std::path::Path::new("/proc"), std::process::id() as i32).unwrap();
        assert_eq!(me.pid, std::process::id() as i32);
        assert!(me.rss_bytes > 0 && !me.args.is_empty(), "{me:?}");
        assert_eq!(me.uid, rustix::process::getuid().as_raw());
        assert!(GuestProcess::read(std::path::Path::new("/proc"), i32::MAX).is_none());
        let mut stats = berth_cgroups::Stats::default();
        stats.memory.usage.usage = 3 << 20;
        stats.pids.current = 2;
        let r = Response {
            ok: true,
            pids: Some(vec![me.pid]),
            processes: Some(vec![me]),
            stats: Some(Box::new(stats)),
            ..Default::default()
        };
        let back: Response = serde_json::from_slice(&serde_json::to_vec(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }
}
