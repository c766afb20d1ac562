//! Event delivery to the engine.
//!
//! The original (`libcontainerd/queue.go`) chains one goroutine per event behind its
//! predecessor for the same container: per-container FIFO, containers in parallel, `append`
//! never blocks. Its weaknesses were that a blocked or panicking callback stalled every later
//! event of that container forever, and a panic took the daemon down. [`EventQueue`] keeps the
//! guarantees and fixes the panic half: one worker thread per container *while it has work*
//! (none when idle), and each callback runs under `catch_unwind`, so a panicking sink loses only
//! its own event. A slow sink still delays later events of the same container — that is what
//! ordering means — but never those of other containers, and never the producer.

use std::collections::{HashMap, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::types::{EventInfo, EventType};

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

type Job = Box<dyn FnOnce() + Send + 'static>;

#[derive(Default)]
struct Chain {
    jobs: VecDeque<Job>,
    worker: bool,
}

#[derive(Default)]
struct Inner {
    chains: Mutex<HashMap<String, Chain>>,
    idle: Condvar,
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

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Chain>> {
        // A poisoned lock only means a thread panicked while holding it; the map itself is
        // always left consistent (no user code runs under the lock), so keep going.
        self.inner.chains.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `job` behind every job previously queued for `key`. Never blocks on the jobs.
    pub fn append(&self, key: &str, job: impl FnOnce() + Send + 'static) {
        let mut chains = self.lock();
        let chain = chains.entry(key.to_string()).or_default();
        chain.jobs.push_back(Box::new(job));
        if chain.worker {
            return;
        }
        chain.worker = true;
        let queue = self.clone();
        let owned_key = key.to_string();
        let spawned = std::thread::Builder::new()
            .name(format!("berth-events-{}", short(key)))
            .spawn(move || queue.run(&owned_key));
        if let Err(e) = spawned {
            // Keep the jobs: the next append retries the spawn, so nothing is reordered.
            chain.worker = false;
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

    fn run(&self, key: &str) {
        loop {
            let job = {
                let mut chains = self.lock();
                let next = chains.get_mut(key).and_then(|c| c.jobs.pop_front());
                match next {
                    Some(job) => job,
                    None => {
                        chains.remove(key);
                        self.inner.idle.notify_all();
                        return;
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
        let mut chains = self.lock();
        while chains.contains_key(key) {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            chains = match self.inner.idle.wait_timeout(chains, deadline - now) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
        true
    }

    /// Number of keys with pending or running work.
    pub fn busy_keys(&self) -> usize {
        self.lock().len()
    }
}

fn short(key: &str) -> &str {
    // Thread names are truncated by the kernel to 15 bytes anyway.
    let end = key.char_indices().nth(8).map_or(key.len(), |(i, _)| i);
    &key[..end]
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
