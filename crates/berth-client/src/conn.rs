//! Client side of the monitor connections: request/answer calls and one reader thread.
//!
//! Callers send requests directly (a `SOCK_SEQPACKET` send is atomic, so no lock is needed
//! to write) and wait on a per-request channel. A single reactor thread reads every monitor
//! connection with `epoll`: answers go to their waiting caller, events go to the container's
//! handler, which queues them for the engine's sink without blocking. Reading in one place
//! keeps the order the monitor wrote: an event the monitor emitted before answering is queued
//! before the caller wakes up.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use berth_core::{Error, ErrorKind, Result};
use rustix::buffer::spare_capacity;
use rustix::event::{epoll, eventfd, EventfdFlags};

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

/// The epoll token of the wake-up eventfd; connections get 1, 2, ...
const WAKE: u64 = 0;

struct Shared {
    /// By epoll token. Holding a connection here keeps it alive while it may be read.
    entries: Mutex<HashMap<u64, Entry>>,
    next_token: AtomicU64,
    epoll: OwnedFd,
    wake: OwnedFd,
    stop: AtomicBool,
}

impl Shared {
    fn wake(&self) {
        let _ = rustix::io::write(&self.wake, &1u64.to_ne_bytes());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The reader thread for every monitor connection of one client. It waits with epoll, so a
/// wake-up costs the same with 1000 containers as with one (`poll` over every connection
/// made each message cost O(containers): 15 % of the CPU of 1000 starts, bench/scale).
pub(crate) struct Reactor {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

fn sys_err(what: &str, e: rustix::io::Errno) -> Error {
    Error::wrap_system(what, std::io::Error::from(e))
}

impl Reactor {
    pub(crate) fn start() -> Result<Reactor> {
        let wake = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)
            .map_err(|e| sys_err("creating the reactor's eventfd", e))?;
        let ep = epoll::create(epoll::CreateFlags::CLOEXEC).map_err(|e| sys_err("creating the reactor's epoll", e))?;
        epoll::add(&ep, &wake, epoll::EventData::new_u64(WAKE), epoll::EventFlags::IN)
            .map_err(|e| sys_err("watching the reactor's eventfd", e))?;
        let shared = Arc::new(Shared {
            entries: Mutex::new(HashMap::new()),
            next_token: AtomicU64::new(WAKE + 1),
            epoll: ep,
            wake,
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("berth-client".into())
            .spawn(move || run(&s))
            .map_err(|e| Error::wrap_system("starting the client's reader thread", e))?;
        Ok(Reactor { shared, thread: Mutex::new(Some(thread)) })
    }

    /// Stops reading `conn` (closed by the caller: closing its descriptor took it out of the
    /// epoll set, as it is the only reference to that socket).
    pub(crate) fn unregister(&self, conn: &Arc<Conn>) {
        self.shared.lock().retain(|_, e| !Arc::ptr_eq(&e.conn, conn));
    }

    /// Starts reading `conn`, dispatching its events to `handler`.
    pub(crate) fn register(&self, conn: Arc<Conn>, handler: Arc<dyn Handler>) {
        let token = self.shared.next_token.fetch_add(1, Ordering::Relaxed);
        // In the map before epoll can report it.
        self.shared.lock().insert(token, Entry { conn: conn.clone(), handler });
        let added = match conn.fd.read().unwrap_or_else(|p| p.into_inner()).as_ref() {
            Some(fd) => epoll::add(&self.shared.epoll, fd, epoll::EventData::new_u64(token), epoll::EventFlags::IN),
            // Closed already: nothing to read (as with poll, which skipped it).
            None => Ok(()),
        };
        if let Err(e) = added {
            // Unreadable: the connection is treated as ended (calls on it fail as unavailable).
            log::error!("berth client reader: epoll_ctl: {e}");
            self.shared.lock().remove(&token);
            conn.close(Some(format!("cannot watch the monitor connection: {e}")));
        }
    }

    /// Stops the thread; connections are dropped (monitors keep running).
    pub(crate) fn stop(&self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.wake();
        if let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
        self.shared.lock().clear();
    }
}

fn run(s: &Shared) {
    let mut events: Vec<epoll::Event> = Vec::with_capacity(64);
    while !s.stop.load(Ordering::SeqCst) {
        events.clear();
        match epoll::wait(&s.epoll, spare_capacity(&mut events), None) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => {
                log::error!("berth client reader: epoll_wait: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        for ev in &events {
            let token = { ev.data }.u64();
            if token == WAKE {
                let mut b = [0u8; 8];
                let _ = rustix::io::read(&s.wake, &mut b);
                continue;
            }
            // Gone if unregistered (or ended) since epoll reported it.
            let Some((conn, handler)) = s.lock().get(&token).map(|e| (e.conn.clone(), e.handler.clone())) else {
                continue;
            };
            // A connection the caller shut down (delete, failed create or restore) is not
            // read and its end is not reported: the caller knows.
            let shut = conn.lock().closed;
            if !shut && !read_conn(&conn, handler.as_ref()) {
                let was_closed = conn.lock().closed;
                conn.close(None);
                if !was_closed {
                    let replaced = conn.lock().replaced;
                    handler.on_close(replaced);
                }
                s.lock().remove(&token);
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
