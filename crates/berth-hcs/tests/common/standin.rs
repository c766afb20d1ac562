//! The stand-in vmcompute library harness (see `tests/binding.rs`) and an event recorder.
#![cfg(unix)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;

use berth_core::{EventInfo, EventSink, EventType, ProcessIo};
use berth_hcs::hcs::HcsApi;
use berth_hcs::HcsClient;
use serde_json::json;

use super::*;

pub const GUARD: Duration = Duration::from_secs(60);

pub fn compiled_standin() -> &'static PathBuf {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        let src = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/standin/vmcompute.c");
        let out =
            PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("vmcompute-standin-{}.so", std::process::id()));
        let st = Command::new("cc")
            .args(["-shared", "-fPIC", "-O1", "-Wall", "-Wextra", "-Werror", "-pthread", "-o"])
            .arg(&out)
            .arg(src)
            .arg("-ldl")
            .status()
            .expect("running cc");
        assert!(st.success(), "compiling the stand-in vmcompute library failed");
        out
    })
}

/// One private instance of the stand-in library.
pub struct StandIn {
    pub dir: tempfile::TempDir,
    pub api: Arc<HcsApi>,
}

impl StandIn {
    pub fn new() -> StandIn {
        let dir = tempfile::tempdir().unwrap();
        let lib = dir.path().join("vmcompute.so");
        std::fs::copy(compiled_standin(), &lib).unwrap();
        let api = HcsApi::load(&lib).unwrap();
        StandIn { dir, api }
    }

    /// Every call so far, as tab-separated fields.
    pub fn calls(&self) -> Vec<Vec<String>> {
        let text = std::fs::read_to_string(self.dir.path().join("calls.log")).unwrap_or_default();
        text.lines().map(|l| l.split('\t').map(unescape).collect()).collect()
    }

    pub fn named(&self, name: &str) -> Vec<Vec<String>> {
        self.calls().into_iter().filter(|c| c[0] == name).collect()
    }

    pub fn names(&self) -> Vec<String> {
        self.calls().into_iter().map(|c| c[0].clone()).collect()
    }

    /// Waits (hang guard only) until `pred` holds on the call log.
    pub fn wait_calls(&self, pred: impl Fn(&[Vec<String>]) -> bool) {
        let end = std::time::Instant::now() + GUARD;
        while !pred(&self.calls()) {
            assert!(std::time::Instant::now() < end, "stand-in never saw the expected calls: {:?}", self.names());
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

pub fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c == '\\' {
            match it.next() {
                Some('t') => out.push('\t'),
                Some('n') => out.push('\n'),
                Some(o) => out.push(o),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// An engine that records events in delivery order.
#[derive(Default)]
pub struct Recorder {
    events: Mutex<Vec<(EventType, EventInfo)>>,
    cv: Condvar,
}

impl EventSink for Recorder {
    fn process_event(
        &self,
        _id: &str,
        e: EventType,
        info: &EventInfo,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.events.lock().unwrap().push((e, info.clone()));
        self.cv.notify_all();
        Ok(())
    }
}

impl Recorder {
    pub fn wait_for(&self, pred: impl Fn(&[(EventType, EventInfo)]) -> bool) -> Vec<(EventType, EventInfo)> {
        let mut g = self.events.lock().unwrap();
        let end = std::time::Instant::now() + GUARD;
        while !pred(&g) {
            let now = std::time::Instant::now();
            assert!(
                now < end,
                "events never arrived: {:?}",
                g.iter().map(|(e, i)| (e, &i.process_id)).collect::<Vec<_>>()
            );
            g = self.cv.wait_timeout(g, end - now).unwrap().0;
        }
        g.clone()
    }

    pub fn wait_exit(&self, process_id: &str) -> EventInfo {
        let ev = self.wait_for(|e| e.iter().any(|(t, i)| *t == EventType::Exit && i.process_id == process_id));
        ev.into_iter().find(|(t, i)| *t == EventType::Exit && i.process_id == process_id).unwrap().1
    }

    pub fn kinds(&self) -> Vec<(EventType, String)> {
        self.events.lock().unwrap().iter().map(|(e, i)| (*e, i.process_id.clone())).collect()
    }
}

pub fn client(s: &StandIn, host: FakeHost) -> (HcsClient, Arc<Recorder>) {
    let rec = Arc::new(Recorder::default());
    let sink: Arc<dyn EventSink> = rec.clone();
    let c = HcsClient::new(s.api.clone(), sink).with_host(Arc::new(host));
    (c, rec)
}

pub fn wcow_cmd(args: &[&str]) -> oci_spec::runtime::Spec {
    let mut v = wcow();
    set(&mut v, "process/args", json!(args));
    spec(v)
}

pub fn hyperv_cmd(args: &[&str]) -> (oci_spec::runtime::Spec, FakeHost) {
    let mut v = wcow();
    remove(&mut v, "root");
    set(&mut v, "windows/hyperv", json!({}));
    set(&mut v, "process/args", json!(args));
    (spec(v), FakeHost::new().with(&format!(r"{BASE}\UtilityVM")))
}

/// Attach callback that keeps the stdio for the test.
pub fn keep(slot: &Mutex<Option<ProcessIo>>) -> impl FnMut(ProcessIo) -> berth_core::Result<()> + '_ {
    move |io| {
        *slot.lock().unwrap() = Some(io);
        Ok(())
    }
}

pub fn exec_process(args: &[&str]) -> oci_spec::runtime::Process {
    serde_json::from_value(json!({"cwd": "", "args": args, "user": {"uid": 0, "gid": 0}})).unwrap()
}
