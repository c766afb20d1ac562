//! Task events to containerd.
//!
//! containerd 1.6 starts shims with `TTRPC_ADDRESS` (its ttrpc socket) in the environment and
//! accepts events through `containerd.services.events.ttrpc.v1.Events/Forward`, an `Envelope`
//! {timestamp, namespace, topic, Any}. That is what the Go shims do, and what this publisher
//! does, over one persistent connection. Without `TTRPC_ADDRESS` it falls back to running
//! `<publish-binary> --address A publish --topic T --namespace NS` with the `Any` on stdin.
//!
//! Events are sent one at a time, each after the previous one was acknowledged: containerd's
//! ttrpc server handles concurrent requests in parallel goroutines, so pipelining could
//! reorder them. A failed send is retried (reconnecting) up to 5 times, one second apart; the
//! events behind it wait, so order is kept.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use containerd_shim_protos::events::task as ev;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::shim::event::Envelope;
use containerd_shim_protos::shim::events::ForwardRequest;

use crate::ttrpc::{self, FrameBuf, TYPE_RESPONSE};

const SERVICE: &str = "containerd.services.events.ttrpc.v1.Events";
const MAX_ATTEMPTS: u32 = 5;
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// A protobuf timestamp.
pub fn timestamp(t: SystemTime) -> Timestamp {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let mut ts = Timestamp::new();
    ts.seconds = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    ts.nanos = i32::try_from(d.subsec_nanos()).unwrap_or(0);
    ts
}

/// A message with the type URL containerd's typeurl package registered for it: its full
/// protobuf name. Spelled out rather than read from the protobuf descriptors, which would
/// build (and keep, for the life of the process) the reflection tables of whole .proto files.
pub trait Named: Message {
    /// The type URL.
    const TYPE_URL: &'static str;
}

macro_rules! named {
    ($($t:ty => $n:literal),* $(,)?) => { $(impl Named for $t { const TYPE_URL: &'static str = $n; })* };
}

named! {
    ev::TaskCreate => "containerd.events.TaskCreate",
    ev::TaskStart => "containerd.events.TaskStart",
    ev::TaskDelete => "containerd.events.TaskDelete",
    ev::TaskExit => "containerd.events.TaskExit",
    ev::TaskOOM => "containerd.events.TaskOOM",
    ev::TaskExecAdded => "containerd.events.TaskExecAdded",
    ev::TaskExecStarted => "containerd.events.TaskExecStarted",
    ev::TaskPaused => "containerd.events.TaskPaused",
    ev::TaskResumed => "containerd.events.TaskResumed",
    containerd_shim_protos::shim::oci::ProcessDetails => "containerd.runc.v1.ProcessDetails",
    containerd_shim_protos::cgroups::metrics::Metrics => "io.containerd.cgroups.v1.Metrics",
}

/// Wraps a message in an `Any` with containerd's type URL.
pub fn to_any<M: Named>(m: &M) -> Any {
    let mut a = Any::new();
    a.type_url = M::TYPE_URL.to_string();
    a.value = m.write_to_bytes().unwrap_or_default();
    a
}

struct Pending {
    topic: &'static str,
    event: Any,
    at: SystemTime,
    attempts: u32,
}

/// The event publisher.
pub struct Publisher {
    namespace: String,
    ttrpc_address: Option<String>,
    address: String,
    binary: String,
    conn: Option<UnixStream>,
    next_stream: u32,
    queue: VecDeque<Pending>,
    retry_at: Option<Instant>,
    /// Topics sent so far (tests only).
    #[cfg(test)]
    pub sent: Vec<&'static str>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher").field("queued", &self.queue.len()).finish_non_exhaustive()
    }
}

impl Publisher {
    /// A publisher for `namespace`. `ttrpc_address` is `$TTRPC_ADDRESS`; `address` and
    /// `binary` are the `-address` and `-publish-binary` flags (the fallback).
    pub fn new(namespace: &str, ttrpc_address: Option<String>, address: &str, binary: &str) -> Self {
        Publisher {
            namespace: namespace.to_string(),
            ttrpc_address: ttrpc_address.filter(|a| !a.is_empty()),
            address: address.to_string(),
            binary: binary.to_string(),
            conn: None,
            next_stream: 1,
            queue: VecDeque::new(),
            retry_at: None,
            #[cfg(test)]
            sent: Vec::new(),
        }
    }

    /// Publishes `event` on `topic` (in order with every earlier event).
    pub fn publish<M: Named>(&mut self, topic: &'static str, event: &M) {
        log::debug!("publish {topic}");
        self.queue.push_back(Pending { topic, event: to_any(event), at: SystemTime::now(), attempts: 0 });
        if self.retry_at.is_none() {
            self.drain();
        }
    }

    /// When the next retry is due, if events wait for one.
    pub fn retry_at(&self) -> Option<Instant> {
        self.retry_at
    }

    /// How many events wait.
    #[cfg(test)]
    pub fn pending(&self) -> usize {
        self.queue.len()
    }

    /// Sends what is queued, stopping at the first failure (which schedules a retry).
    pub fn drain(&mut self) {
        if self.retry_at.is_some_and(|t| Instant::now() < t) {
            return;
        }
        self.retry_at = None;
        while let Some(p) = self.queue.front_mut() {
            p.attempts += 1;
            let (topic, event, at) = (p.topic, p.event.clone(), p.at);
            match self.send(topic, event, at) {
                Ok(()) => {
                    #[cfg(test)]
                    self.sent.push(topic);
                    self.queue.pop_front();
                }
                Err(e) => {
                    let attempts = self.queue.front().map_or(0, |p| p.attempts);
                    if attempts >= MAX_ATTEMPTS {
                        log::error!("dropping event {topic} after {attempts} attempts: {e}");
                        self.queue.pop_front();
                        continue;
                    }
                    log::warn!("publishing {topic} failed (attempt {attempts}): {e}; retrying");
                    self.retry_at = Some(Instant::now() + Duration::from_secs(1));
                    return;
                }
            }
        }
    }

    /// Blocks until everything queued was sent or given up on, at most `limit`.
    pub fn flush(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.queue.is_empty() && Instant::now() < deadline {
            if let Some(t) = self.retry_at {
                std::thread::sleep(t.saturating_duration_since(Instant::now()).min(Duration::from_millis(200)));
            }
            self.drain();
        }
    }

    fn send(&mut self, topic: &str, event: Any, at: SystemTime) -> std::io::Result<()> {
        let Some(addr) = self.ttrpc_address.clone() else {
            return self.send_with_binary(topic, &event);
        };
        let mut env = Envelope::new();
        env.timestamp = Some(timestamp(at)).into();
        env.namespace = self.namespace.clone();
        env.topic = topic.to_string();
        env.event = Some(event).into();
        let mut req = ForwardRequest::new();
        req.envelope = Some(env).into();
        let payload = req.write_to_bytes().map_err(std::io::Error::other)?;
        // One reconnect per attempt: containerd may have restarted since the last event.
        for fresh in [false, true] {
            if fresh || self.conn.is_none() {
                self.conn = None;
                let c = UnixStream::connect(ttrpc::socket_path(&addr))?;
                c.set_read_timeout(Some(CALL_TIMEOUT))?;
                c.set_write_timeout(Some(CALL_TIMEOUT))?;
                self.conn = Some(c);
                self.next_stream = 1;
            }
            match self.call(&payload) {
                Ok(()) => return Ok(()),
                Err(e) if fresh || e.kind() == std::io::ErrorKind::InvalidData => {
                    self.conn = None;
                    return Err(e);
                }
                Err(_) => self.conn = None,
            }
        }
        Ok(())
    }

    fn call(&mut self, payload: &[u8]) -> std::io::Result<()> {
        let stream = self.next_stream;
        self.next_stream = self.next_stream.wrapping_add(2);
        let ns = self.namespace.clone();
        let frame = ttrpc::request(
            stream,
            SERVICE,
            "Forward",
            payload.to_vec(),
            &[("containerd-namespace-ttrpc", ns.as_str())],
        );
        let conn = self.conn.as_mut().ok_or_else(|| std::io::Error::other("not connected"))?;
        conn.write_all(&frame)?;
        let mut fb = FrameBuf::default();
        let mut chunk = [0u8; 1024];
        loop {
            if let Some(f) = fb.next_frame().map_err(std::io::Error::other)? {
                if f.kind == TYPE_RESPONSE && f.stream == stream {
                    // An error status is containerd's answer, not a broken connection.
                    return ttrpc::parse_response(&f.payload)
                        .map(drop)
                        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e));
                }
                continue;
            }
            let n = conn.read(&mut chunk)?;
            if n == 0 {
                return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "containerd closed the connection"));
            }
            fb.extend(chunk.get(..n).unwrap_or_default());
        }
    }

    fn send_with_binary(&mut self, topic: &str, event: &Any) -> std::io::Result<()> {
        if self.binary.is_empty() {
            return Err(std::io::Error::other("neither TTRPC_ADDRESS nor -publish-binary is set"));
        }
        let data = event.write_to_bytes().map_err(std::io::Error::other)?;
        let mut child = std::process::Command::new(&self.binary)
            .args(["--address", &self.address, "publish", "--topic", topic, "--namespace", &self.namespace])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(&data)?;
        }
        let out = child.wait_with_output()?;
        if out.status.success() {
            Ok(())
        } else {
            Err(std::io::Error::other(format!(
                "{} publish: {}: {}",
                self.binary,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_shim_protos::events::task::{TaskExit, TaskStart};
    use std::os::unix::net::UnixListener;

    /// A stand-in for containerd's events service: answers `n` Forward calls and returns the
    /// envelopes, in arrival order. The first call is answered with an error when `fail_first`.
    fn fake_containerd(l: UnixListener, n: usize, fail_first: bool) -> std::thread::JoinHandle<Vec<Envelope>> {
        std::thread::spawn(move || {
            let mut got = Vec::new();
            let mut failed = !fail_first;
            while got.len() < n {
                let (mut s, _) = l.accept().unwrap();
                let mut fb = FrameBuf::default();
                let mut buf = [0u8; 4096];
                'conn: while got.len() < n {
                    while let Some(f) = fb.next_frame().unwrap() {
                        let req = ttrpc::parse_request(&f.payload).unwrap();
                        assert_eq!((req.service.as_str(), req.method.as_str()), (SERVICE, "Forward"));
                        if !failed {
                            failed = true;
                            s.write_all(&ttrpc::response(f.stream, Err(ttrpc::RpcError::internal("busy")))).unwrap();
                            continue;
                        }
                        let fr = ForwardRequest::parse_from_bytes(&req.payload).unwrap();
                        got.push(fr.envelope.unwrap());
                        s.write_all(&ttrpc::response(f.stream, Ok(Vec::new()))).unwrap();
                    }
                    if got.len() >= n {
                        break 'conn;
                    }
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break 'conn,
                        Ok(k) => fb.extend(&buf[..k]),
                    }
                }
            }
            got
        })
    }

    #[test]
    fn forwards_in_order_with_type_urls_and_retries_after_an_error() {
        let d = tempfile::tempdir().unwrap();
        let sock = d.path().join("ttrpc.sock");
        let l = UnixListener::bind(&sock).unwrap();
        let h = fake_containerd(l, 2, true);
        let mut p = Publisher::new("ns1", Some(sock.to_string_lossy().into_owned()), "", "");
        let mut start = TaskStart::new();
        start.container_id = "c1".into();
        start.pid = 42;
        p.publish("/tasks/start", &start);
        let mut exit = TaskExit::new();
        exit.container_id = "c1".into();
        exit.exit_status = 3;
        p.publish("/tasks/exit", &exit);
        // The first attempt failed: both wait for the retry, in order.
        assert_eq!(p.pending(), 2);
        assert!(p.retry_at().is_some());
        p.flush(Duration::from_secs(10));
        assert_eq!(p.pending(), 0);
        let got = h.join().unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].topic.as_str(), got[0].namespace.as_str()), ("/tasks/start", "ns1"));
        assert_eq!(got[0].event.type_url, "containerd.events.TaskStart");
        assert_eq!(TaskStart::parse_from_bytes(&got[0].event.value).unwrap().pid, 42);
        assert_eq!(got[1].event.type_url, "containerd.events.TaskExit");
        assert_eq!(TaskExit::parse_from_bytes(&got[1].event.value).unwrap().exit_status, 3);
        assert!(got[0].timestamp.seconds > 0);
    }

    #[test]
    fn type_urls_match_the_protobuf_names() {
        use containerd_shim_protos::protobuf::MessageFull;
        fn check<M: Named + MessageFull>() {
            assert_eq!(M::TYPE_URL, M::descriptor().full_name());
        }
        check::<ev::TaskCreate>();
        check::<ev::TaskStart>();
        check::<ev::TaskDelete>();
        check::<ev::TaskExit>();
        check::<ev::TaskOOM>();
        check::<ev::TaskExecAdded>();
        check::<ev::TaskExecStarted>();
        check::<ev::TaskPaused>();
        check::<ev::TaskResumed>();
        check::<containerd_shim_protos::shim::oci::ProcessDetails>();
        check::<containerd_shim_protos::cgroups::metrics::Metrics>();
    }

    #[test]
    fn unreachable_containerd_gives_up_after_five_attempts() {
        let mut p = Publisher::new("ns", Some("/nonexistent/ttrpc.sock".into()), "", "");
        p.publish("/tasks/oom", &TaskStart::new());
        assert_eq!(p.pending(), 1);
        for _ in 0..MAX_ATTEMPTS {
            p.retry_at = None;
            p.drain();
        }
        assert_eq!(p.pending(), 0);
        assert!(p.sent.is_empty());
    }
}
