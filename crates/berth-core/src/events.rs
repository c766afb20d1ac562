//! Event delivery to the engine.
//!
//! The original (`libcontainerd/queue.go`) chains one goroutine per event behind its
//! predecessor for the same container: per-container FIFO, containers in parallel, `append`
//! never blocks. Its weaknesses were that a blocked or panicking callback stalled every later
//! event of that container forever, and a panic took the daemon down. [`EventQueue`] keeps the
//! guarantees and fixes the panic half: each container with work has a worker thread of its
//! own, and each callback runs under `catch_unwind`, so a panicking sink loses only its own
//! event. A slow sink still delays later events of the same container — that is what ordering
//! means — but never those of other containers, and never the producer.
//!
//! Workers are reused: a worker whose container ran out of events waits [`LINGER`] for
//! another container's before it exits, and at most [`MAX_IDLE`] wait at once. A thread
//! spawned and torn down per event (a stack mapped and unmapped, with the TLB shootdowns that
//! go with it) sat on the path of every create, start and exit an engine waits for.

use std::collections::{HashMap, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::types::{EventInfo, EventType};

/// How long an idle worker waits for another container's events before it exits.
pub const LINGER: Duration = Duration::from_secs(2);
/// At most this many idle workers wait at once; the rest exit as soon as they are idle.
pub const MAX_IDLE: usize = 4;

/// The engine side of the event stream (the original's `Backend.ProcessEvent`).
///
/// Called from a berth-owned thread, one event at a time per container, in order. It may block
/// (that delays only this container's later events) and may panic (the event is dropped and
/// logged).
pub trait EventSink: Send + Sync + 'static {
    /// Handles one event. An error is logged by the caller; delivery goes on.
    fn process_event(
        &self,
        container_id: &str,
        event: EventType,
        info: &EventInfo,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>>;
}

/// A sink that drops every event: for callers that only drive containers and wait on them
/// (benchmarks, tools), not for an engine, which must see exits and OOMs.
#[derive(Debug, Default, Clone, Copy)]
pub struct DiscardEvents;

impl EventSink for DiscardEvents {
    fn process_event(
        &self,
        _: &str,
        _: EventType,
        _: &EventInfo,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        Ok(())
    }
}

type Job = Box<dyn FnOnce() + Send + 'static>;

#[derive(Default)]
struct Chain {
    jobs: VecDeque<Job>,
    /// A worker runs (or has been assigned) this chain.
    worker: bool,
}

#[derive(Default)]
struct State {
    /// Keys with queued or running jobs; each has one worker (none only after a failed spawn,
    /// until the next append retries).
    chains: HashMap<String, Chain>,
    /// Idle workers, by number, waiting for a key.
    idle: Vec<u64>,
    /// Keys handed to an idle worker that has not woken up yet.
    assigned: HashMap<u64, String>,
    next_worker: u64,
}

#[derive(Default)]
struct Inner {
    state: Mutex<State>,
    /// A chain drained (for [`EventQueue::wait_idle`]).
    drained: Condvar,
    /// A key was assigned to an idle worker.
    work: Condvar,
}

/// Per-key ordered, non-blocking job queue (see the module docs).
#[derive(Clone, Default)]
pub struct EventQueue {
    inner: Arc<Inner>,
}

impl EventQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means a thread panicked while holding it; the state itself is
        // always left consistent (no user code runs under the lock), so keep going.
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `job` behind every job previously queued for `key`. Never blocks on the jobs.
    pub fn append(&self, key: &str, job: impl FnOnce() + Send + 'static) {
        let mut st = self.lock();
        let chain = st.chains.entry(key.to_string()).or_default();
        chain.jobs.push_back(Box::new(job));
        if chain.worker {
            // Its worker picks the job up before it lets the key go.
            return;
        }
        chain.worker = true;
        if let Some(worker) = st.idle.pop() {
            st.assigned.insert(worker, key.to_string());
            drop(st);
            self.inner.work.notify_all();
            return;
        }
        let worker = st.next_worker;
        st.next_worker += 1;
        let queue = self.clone();
        let owned_key = key.to_string();
        let spawned = std::thread::Builder::new()
            .name(format!("berth-events-{worker}"))
            .spawn(move || queue.work(worker, owned_key));
        if let Err(e) = spawned {
            // Keep the jobs: the next append for this key tries again, so nothing is lost or
            // reordered.
            if let Some(chain) = st.chains.get_mut(key) {
                chain.worker = false;
            }
            log::error!("event queue for {key}: cannot start a delivery thread: {e}");
        }
    }

    /// Queues delivery of one event to `sink`.
    pub fn publish(&self, sink: &Arc<dyn EventSink>, event: EventType, info: EventInfo) {
        let sink = Arc::clone(sink);
        let key = info.container_id.clone();
        self.append(&key, move || {
            if let Err(e) = sink.process_event(&info.container_id, event, &info) {
                log::warn!("event sink failed for {} {} {}: {e}", info.container_id, event, info.process_id);
            }
        });
    }

    /// A worker: runs `key`'s chain until it is empty, then waits for another key.
    fn work(&self, me: u64, mut key: String) {
        loop {
            // Still holding the lock under which the drained chain was removed: a later append
            // for any key finds this worker listed as idle, never a gap in between.
            let mut st = self.run_chain(&key);
            if st.idle.len() >= MAX_IDLE {
                return;
            }
            st.idle.push(me);
            let deadline = Instant::now() + LINGER;
            key = loop {
                if let Some(k) = st.assigned.remove(&me) {
                    break k;
                }
                let now = Instant::now();
                if now >= deadline {
                    // Not assigned, so still listed as idle (assignment takes a worker off that
                    // list and into `assigned` in one step): unlist and exit.
                    st.idle.retain(|w| *w != me);
                    return;
                }
                st = match self.inner.work.wait_timeout(st, deadline - now) {
                    Ok((g, _)) => g,
                    Err(p) => p.into_inner().0,
                };
            };
        }
    }

    /// Runs `key`'s jobs until none is left; returns with the lock held, the chain removed.
    fn run_chain(&self, key: &str) -> MutexGuard<'_, State> {
        loop {
            let job = {
                let mut st = self.lock();
                match st.chains.get_mut(key).and_then(|c| c.jobs.pop_front()) {
                    Some(job) => job,
                    None => {
                        st.chains.remove(key);
                        self.inner.drained.notify_all();
                        return st;
                    }
                }
            };
            if catch_unwind(AssertUnwindSafe(job)).is_err() {
                log::error!("event callback for {key} panicked; the event was dropped");
            }
        }
    }

    /// Waits until every job queued for `key` so far has run, or `timeout` passes.
    /// Returns true if the chain drained.
    pub fn wait_idle(&self, key: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = self.lock();
        while st.chains.contains_key(key) {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            st = match self.inner.drained.wait_timeout(st, deadline - now) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
        true
    }

    /// Number of keys with pending or running work.
    pub fn busy_keys(&self) -> usize {
        self.lock().chains.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn serialization_per_key() {
        // The original's TestSerialization: the first job sleeps, order must still be 1,2,3.
        let q = EventQueue::new();
        let (tx, rx) = mpsc::channel();
        for i in 1..=3 {
            let tx = tx.clone();
            q.append("aaa", move || {
                if i == 1 {
                    std::thread::sleep(Duration::from_millis(10));
                }
                tx.send(i).unwrap();
            });
        }
        let got: Vec<i32> = (0..3).map(|_| rx.recv_timeout(Duration::from_secs(5)).unwrap()).collect();
        assert_eq!(got, vec![1, 2, 3]);
        assert!(q.wait_idle("aaa", Duration::from_secs(5)));
        assert_eq!(q.busy_keys(), 0);
    }

    #[test]
    fn blocked_key_does_not_stall_others_and_append_does_not_block() {
        let q = EventQueue::new();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        q.append("slow", move || {
            let _ = release_rx.recv();
        });
        let (tx, rx) = mpsc::channel();
        // Every append below runs on this thread while "slow" is blocked until the release at
        // the end: an append that waited for its consumer would deadlock here.
        for i in 0..100 {
            let tx = tx.clone();
            q.append("slow", move || tx.send(("slow", i)).unwrap());
        }
        let tx2 = tx.clone();
        q.append("fast", move || tx2.send(("fast", 0)).unwrap());
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), ("fast", 0));
        release_tx.send(()).unwrap();
        for i in 0..100 {
            assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), ("slow", i));
        }
    }

    #[test]
    fn an_idle_worker_is_reused_for_the_next_container() {
        let q = EventQueue::new();
        let (tx, rx) = mpsc::channel();
        let tx1 = tx.clone();
        q.append("first", move || tx1.send(std::thread::current().id()).unwrap());
        let first = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(q.wait_idle("first", Duration::from_secs(5)));
        // The worker listed itself as idle in the step that drained "first".
        q.append("second", move || tx.send(std::thread::current().id()).unwrap());
        let second = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(first, second, "a new thread was spawned although a worker was idle");
    }

    #[test]
    fn two_containers_never_share_a_busy_worker() {
        // One idle worker, then two keys at once: the second must get a thread of its own, or
        // a blocked sink for the first would hold up the second.
        let q = EventQueue::new();
        q.append("warm", || {});
        assert!(q.wait_idle("warm", Duration::from_secs(5)));
        let (release_tx, release_rx) = mpsc::channel::<()>();
        q.append("a", move || {
            let _ = release_rx.recv();
        });
        let (tx, rx) = mpsc::channel();
        q.append("b", move || tx.send("b").unwrap());
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), "b");
        release_tx.send(()).unwrap();
        assert!(q.wait_idle("a", Duration::from_secs(5)));
    }

    #[test]
    fn panicking_job_does_not_stop_the_chain() {
        let q = EventQueue::new();
        let (tx, rx) = mpsc::channel();
        q.append("k", || panic!("sink bug"));
        q.append("k", move || tx.send(42).unwrap());
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), 42);
    }

    struct Recorder(Mutex<Vec<(String, EventType)>>);
    impl EventSink for Recorder {
        fn process_event(
            &self,
            id: &str,
            e: EventType,
            _i: &EventInfo,
        ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
            self.0.lock().unwrap().push((id.to_string(), e));
            if e == EventType::Paused {
                return Err("engine refused".into());
            }
            Ok(())
        }
    }

    #[test]
    fn publish_delivers_in_order_and_survives_sink_errors() {
        let rec = Arc::new(Recorder(Mutex::new(Vec::new())));
        let sink: Arc<dyn EventSink> = rec.clone();
        let q = EventQueue::new();
        for e in [EventType::Create, EventType::Start, EventType::Paused, EventType::Exit] {
            q.publish(&sink, e, EventInfo::new("c1", "c1"));
        }
        assert!(q.wait_idle("c1", Duration::from_secs(5)));
        let got: Vec<EventType> = rec.0.lock().unwrap().iter().map(|(_, e)| *e).collect();
        assert_eq!(got, vec![EventType::Create, EventType::Start, EventType::Paused, EventType::Exit]);
    }
}
