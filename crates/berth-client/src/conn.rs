//! Client side of the monitor connections: request/answer calls and one reader thread.
//!
//! Callers send requests directly (a `SOCK_SEQPACKET` send is atomic, so no lock is needed
//! to write) and wait on a per-request channel. A single reactor thread reads every monitor
//! connection with `poll`: answers go to their waiting caller, events go to the container's
//! handler, which queues them for the engine's sink without blocking. Reading in one place
//! keeps the order the monitor wrote: an event the monitor emitted before answering is queued
//! before the caller wakes up.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use berth_core::{Error, ErrorKind, Result};
use rustix::event::{eventfd, poll, EventfdFlags, PollFd, PollFlags};

use crate::wire::{self, Body, Envelope, Msg, Request, WireEvent};

/// The answer to one request.
pub(crate) type Answer = Result<(Body, Vec<OwnedFd>)>;

/// What the reactor calls for a connection's unsolicited traffic.
pub(crate) trait Handler: Send + Sync {
    /// An event, in monitor order. Must not block.
    fn on_event(&self, ev: WireEvent);
    /// The connection ended: the monitor exited, or (`replaced`) another client took the
    /// container over.
    fn on_close(&self, replaced: bool);
}

#[derive(Default)]
struct Pending {
    closed: bool,
    replaced: bool,
    reason: Option<String>,
    waiters: HashMap<u64, SyncSender<Answer>>,
}

/// One connection to a monitor.
pub(crate) struct Conn {
    /// Closed (set to `None`) by the reactor as soon as the monitor hangs up, so that when a
    /// `delete` returns the descriptor is gone too. Senders hold the read lock while sending;
    /// a send to a hung-up peer fails at once, so they never hold up the reactor.
    fd: RwLock<Option<OwnedFd>>,
    next: AtomicU64,
    pending: Mutex<Pending>,
}

impl Conn {
    pub(crate) fn new(fd: OwnedFd) -> Arc<Conn> {
        Arc::new(Conn { fd: RwLock::new(Some(fd)), next: AtomicU64::new(1), pending: Mutex::default() })
    }

    /// A connection that is already closed (unit tests, containers whose monitor is gone).
    pub(crate) fn detached() -> Conn {
        Conn {
            fd: RwLock::new(None),
            next: AtomicU64::new(1),
            pending: Mutex::new(Pending { closed: true, reason: Some("no monitor".into()), ..Default::default() }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn gone(reason: Option<&str>) -> Error {
        Error::unavailable(format!(
            "the container's monitor is gone{}",
            reason.map(|r| format!(": {r}")).unwrap_or_default()
        ))
    }

    /// Sends `req` and waits up to `timeout` for its answer.
    pub(crate) fn call(&self, req: Request, fds: &[BorrowedFd<'_>], timeout: Duration) -> Answer {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = sync_channel(1);
        {
            let mut p = self.lock();
            if p.closed {
                return Err(Self::gone(p.reason.as_deref()));
            }
            p.waiters.insert(id, tx);
        }
        let what = op_name(&req);
        let sent = match self.fd.read().unwrap_or_else(|p| p.into_inner()).as_ref() {
            Some(sock) => wire::send_json(sock.as_fd(), &Envelope { id, req }, fds, false),
            None => Err(std::io::Error::from_raw_os_error(libc::EPIPE)),
        };
        if let Err(e) = sent {
            self.lock().waiters.remove(&id);
            return Err(match e.raw_os_error() {
                Some(libc::EPIPE) | Some(libc::ECONNRESET) => Self::gone(Some(&e.to_string())),
                Some(libc::EMSGSIZE) => Error::invalid_parameter(format!("{what}: request too large: {e}")),
                _ => Error::wrap_system(format!("{what}: sending to the monitor"), e),
            });
        }
        match rx.recv_timeout(timeout) {
            Ok(a) => a,
            Err(RecvTimeoutError::Timeout) => {
                self.lock().waiters.remove(&id);
                Err(Error::system(format!("{what}: the monitor did not answer within {timeout:?}")))
            }
            Err(RecvTimeoutError::Disconnected) => Err(Self::gone(self.lock().reason.as_deref())),
        }
    }

    /// Sends `req` without waiting for (or getting) an answer.
    pub(crate) fn notify(&self, req: Request) -> Result<()> {
        let g = self.fd.read().unwrap_or_else(|p| p.into_inner());
        let Some(sock) = g.as_ref() else { return Ok(()) };
        wire::send_json(sock.as_fd(), &Envelope { id: 0, req }, &[], false)
            .map_err(|e| Error::wrap_system("notifying the monitor", e))
    }

    fn deliver(&self, id: u64, a: Answer) {
        // A caller that timed out is gone; its descriptors are closed by dropping them here.
        if let Some(tx) = self.lock().waiters.remove(&id) {
            let _ = tx.try_send(a);
        }
    }

    fn close(&self, reason: Option<String>) {
        self.fd.write().unwrap_or_else(|p| p.into_inner()).take();
        let waiters = {
            let mut p = self.lock();
            p.closed = true;
            if p.reason.is_none() {
                p.reason = reason;
            }
            std::mem::take(&mut p.waiters)
        };
        let reason = self.lock().reason.clone();
        for (_, tx) in waiters {
            let _ = tx.try_send(Err(Self::gone(reason.as_deref())));
        }
    }

    /// Closes the client's end now (after `delete`, or a failed `create`: the monitor is
    /// exiting by itself and nothing more is expected from it).
    pub(crate) fn shutdown(&self, why: &str) {
        self.close(Some(why.to_string()));
    }
}

fn op_name(r: &Request) -> &'static str {
    match r {
        Request::Create { .. } => "create",
        Request::InitStdio { .. } => "start (stdio)",
        Request::Start { .. } => "start",
        Request::Exec { .. } => "exec",
        Request::Commit { .. } => "exec (commit)",
        Request::Abort { .. } => "exec (abort)",
        Request::Signal { .. } => "signal",
        Request::Resize { .. } => "resize",
        Request::CloseStdin { .. } => "close stdin",
        Request::Pause => "pause",
        Request::Resume => "resume",
        Request::DeleteTask => "delete task",
        Request::Delete => "delete",
        Request::Attach => "restore",
        Request::Flush => "restore (flush)",
    }
}

struct Entry {
    conn: Arc<Conn>,
    handler: Arc<dyn Handler>,
}

struct Shared {
    entries: Mutex<Vec<Entry>>,
    wake: OwnedFd,
    stop: AtomicBool,
}

impl Shared {
    fn wake(&self) {
        let _ = rustix::io::write(&self.wake, &1u64.to_ne_bytes());
    }
}

/// The reader thread for every monitor connection of one client.
pub(crate) struct Reactor {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Reactor {
    pub(crate) fn start() -> Result<Reactor> {
        let wake = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)
            .map_err(|e| Error::wrap_system("creating the reactor's eventfd", std::io::Error::from(e)))?;
        let shared = Arc::new(Shared { entries: Mutex::new(Vec::new()), wake, stop: AtomicBool::new(false) });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("berth-client".into())
            .spawn(move || run(&s))
            .map_err(|e| Error::wrap_system("starting the client's reader thread", e))?;
        Ok(Reactor { shared, thread: Mutex::new(Some(thread)) })
    }

    /// Stops reading `conn` (closed by the caller).
    pub(crate) fn unregister(&self, conn: &Arc<Conn>) {
        self.shared.entries.lock().unwrap_or_else(|p| p.into_inner()).retain(|e| !Arc::ptr_eq(&e.conn, conn));
        self.shared.wake();
    }

    /// Starts reading `conn`, dispatching its events to `handler`.
    pub(crate) fn register(&self, conn: Arc<Conn>, handler: Arc<dyn Handler>) {
        self.shared.entries.lock().unwrap_or_else(|p| p.into_inner()).push(Entry { conn, handler });
        self.shared.wake();
    }

    /// Stops the thread; connections are dropped (monitors keep running).
    pub(crate) fn stop(&self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.wake();
        if let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
        self.shared.entries.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

fn run(s: &Shared) {
    while !s.stop.load(Ordering::SeqCst) {
        let snapshot: Vec<(Arc<Conn>, Arc<dyn Handler>)> = s
            .entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|e| (e.conn.clone(), e.handler.clone()))
            .collect();
        let ready: Vec<bool> = {
            let guards: Vec<RwLockReadGuard<'_, Option<OwnedFd>>> =
                snapshot.iter().map(|(c, _)| c.fd.read().unwrap_or_else(|p| p.into_inner())).collect();
            let mut fds = Vec::with_capacity(snapshot.len() + 1);
            fds.push(PollFd::new(&s.wake, PollFlags::IN));
            for g in &guards {
                match g.as_ref() {
                    Some(fd) => fds.push(PollFd::new(fd, PollFlags::IN)),
                    // Keeps indices aligned; an fd of -1 is ignored by poll.
                    None => fds.push(PollFd::from_borrowed_fd(s.wake.as_fd(), PollFlags::empty())),
                }
            }
            match poll(&mut fds, None) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => {
                    log::error!("berth client reader: poll: {e}");
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            fds.iter().map(|f| !f.revents().is_empty()).collect()
        };
        if ready.first().copied().unwrap_or(false) {
            let mut b = [0u8; 8];
            let _ = rustix::io::read(&s.wake, &mut b);
        }
        for ((conn, handler), r) in snapshot.iter().zip(ready.iter().skip(1)) {
            if *r && !read_conn(conn, handler.as_ref()) {
                conn.close(None);
                let replaced = conn.lock().replaced;
                handler.on_close(replaced);
                s.entries.lock().unwrap_or_else(|p| p.into_inner()).retain(|e| !Arc::ptr_eq(&e.conn, conn));
            }
        }
    }
}

/// Reads everything available. Returns false when the connection is finished.
fn read_conn(conn: &Conn, handler: &dyn Handler) -> bool {
    loop {
        let got = match conn.fd.read().unwrap_or_else(|p| p.into_inner()).as_ref() {
            Some(fd) => wire::recv_packet(fd.as_fd(), true),
            None => return false,
        };
        match got {
            Ok(Some((data, fds))) => match serde_json::from_slice::<Msg>(&data) {
                Ok(Msg::Ok { id, body }) => conn.deliver(id, Ok((body, fds))),
                Ok(Msg::Err { id: 0, message, .. }) => {
                    log::warn!("berth monitor: {message}");
                    conn.lock().reason = Some(message);
                }
                Ok(Msg::Err { id, kind, message }) => {
                    let kind: ErrorKind = wire::kind_from_str(&kind);
                    conn.deliver(id, Err(Error::new(kind, message)));
                }
                Ok(Msg::Event { event }) => handler.on_event(event),
                Ok(Msg::Replaced) => {
                    let mut p = conn.lock();
                    p.replaced = true;
                    p.reason = Some("another client has taken the container over".into());
                }
                Err(e) => log::warn!("berth client: undecodable message from a monitor: {e}"),
            },
            Ok(None) => return false,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
            Err(e) => {
                log::warn!("berth client: monitor connection: {e}");
                return false;
            }
        }
    }
}
