//! Shared fixtures: a busybox rootfs built from the host's static /bin/busybox, specs, a
//! recording event sink, and stdio collectors. Everything here is real: real namespaces,
//! cgroups and processes (the tests run as root).

#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use berth_client::{Client, Config, Helper};
use berth_core::{Client as _, EventInfo, EventSink, EventType, ProcessIo};
use oci_spec::runtime::{LinuxNamespaceType, Spec};

/// Generous bound for anything the tests wait for; never a timing assertion, only a guard
/// against hanging forever when something is broken.
pub const LONG: Duration = Duration::from_secs(60);

static BUNDLE: OnceLock<(Option<tempfile::TempDir>, PathBuf)> = OnceLock::new();

/// Set by a test for the engine processes it starts, so they use its rootfs.
pub const BUNDLE_ENV: &str = "BERTH_TEST_BUNDLE";

/// A bundle directory whose `rootfs` holds a static busybox and its applets.
pub fn bundle() -> &'static Path {
    &BUNDLE
        .get_or_init(|| {
            if let Some(p) = std::env::var_os(BUNDLE_ENV) {
                return (None, PathBuf::from(p));
            }
            let dir = tempfile::Builder::new().prefix("berth-client-bundle").tempdir().expect("tempdir");
            let rootfs = dir.path().join("rootfs");
            for d in ["bin", "proc", "dev", "sys", "tmp", "etc"] {
                std::fs::create_dir_all(rootfs.join(d)).expect("mkdir");
            }
            std::fs::copy("/bin/busybox", rootfs.join("bin/busybox"))
                .expect("copy /bin/busybox (install busybox-static)");
            for applet in ["sh", "true", "false", "echo", "sleep", "cat", "ls", "ps", "stty", "read", "head", "env"] {
                std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).expect("symlink");
            }
            std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").expect("passwd");
            let path = dir.path().to_path_buf();
            (Some(dir), path)
        })
        .1
}

/// The rootfs of [`bundle`].
pub fn rootfs() -> PathBuf {
    bundle().join("rootfs")
}

/// The default spec running `args`, without a terminal, with an absolute root path.
pub fn spec(args: &[&str]) -> Spec {
    let mut s = berth_spec::default_spec();
    let mut root = s.root().clone().expect("root");
    root.set_path(rootfs());
    s.set_root(Some(root));
    let mut p = s.process().clone().expect("process");
    p.set_args(Some(args.iter().map(|a| a.to_string()).collect()));
    p.set_terminal(Some(false));
    s.set_process(Some(p));
    s
}

/// [`spec`] without a pid namespace (the container shares the host's).
pub fn spec_host_pidns(args: &[&str]) -> Spec {
    let mut s = spec(args);
    let mut linux = s.linux().clone().expect("linux");
    let ns: Vec<_> = linux
        .namespaces()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|n| n.typ() != LinuxNamespaceType::Pid)
        .collect();
    linux.set_namespaces(Some(ns));
    s.set_linux(Some(linux));
    s
}

/// The process of [`spec`] with other args (for exec).
pub fn process(args: &[&str]) -> oci_spec::runtime::Process {
    spec(args).process().clone().expect("process")
}

/// A container id unique across tests and test binaries.
pub fn id(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("{prefix}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst))
}

/// One recorded event.
#[derive(Debug, Clone)]
pub struct Ev {
    pub container: String,
    pub kind: EventType,
    pub info: EventInfo,
}

/// An event sink that records everything, optionally running a hook first.
#[derive(Default)]
pub struct Recorder {
    events: Mutex<Vec<Ev>>,
    cv: Condvar,
    #[allow(clippy::type_complexity)]
    hook: Option<Box<dyn Fn(&str, EventType, &EventInfo) + Send + Sync>>,
}

impl Recorder {
    pub fn new() -> Arc<Recorder> {
        Arc::new(Recorder::default())
    }

    pub fn with_hook(hook: impl Fn(&str, EventType, &EventInfo) + Send + Sync + 'static) -> Arc<Recorder> {
        Arc::new(Recorder { hook: Some(Box::new(hook)), ..Default::default() })
    }

    /// Events of one container, in delivery order.
    pub fn of(&self, container: &str) -> Vec<Ev> {
        self.events.lock().unwrap().iter().filter(|e| e.container == container).cloned().collect()
    }

    /// Event kinds of one container as `kind:process` strings.
    pub fn trace(&self, container: &str) -> Vec<String> {
        self.of(container)
            .iter()
            .map(|e| {
                let p = if e.info.process_id == container { "init" } else { e.info.process_id.as_str() };
                format!("{}:{p}", e.kind)
            })
            .collect()
    }

    /// Waits until `pred` holds for the events of `container` (panics after [`LONG`]).
    pub fn wait_for(&self, container: &str, what: &str, pred: impl Fn(&[Ev]) -> bool) -> Vec<Ev> {
        let deadline = Instant::now() + LONG;
        let mut g = self.events.lock().unwrap();
        loop {
            let mine: Vec<Ev> = g.iter().filter(|e| e.container == container).cloned().collect();
            if pred(&mine) {
                return mine;
            }
            let now = Instant::now();
            assert!(now < deadline, "timed out waiting for {what} of {container}; got {mine:?}");
            g = self.cv.wait_timeout(g, deadline - now).unwrap().0;
        }
    }

    /// Waits for the exit event of `process` (the init when `process == container`).
    pub fn wait_exit(&self, container: &str, process: &str) -> Ev {
        let evs = self.wait_for(container, &format!("the exit of {process}"), |evs| {
            evs.iter().any(|e| e.kind == EventType::Exit && e.info.process_id == process)
        });
        evs.into_iter().find(|e| e.kind == EventType::Exit && e.info.process_id == process).unwrap()
    }
}

impl EventSink for Recorder {
    fn process_event(
        &self,
        container_id: &str,
        event: EventType,
        info: &EventInfo,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        if let Some(h) = &self.hook {
            h(container_id, event, info);
        }
        self.events.lock().unwrap().push(Ev { container: container_id.to_string(), kind: event, info: info.clone() });
        self.cv.notify_all();
        Ok(())
    }
}

/// A client on a fresh state root, using the crate's `berth-monitor` binary. Dropping it
/// (also when a test panics) kills and deletes whatever containers are left, so a failing
/// test does not leave containers, monitors or a helper running.
pub struct TestClient {
    client: Option<Client>,
    _root: Option<tempfile::TempDir>,
}

impl std::ops::Deref for TestClient {
    type Target = Client;
    fn deref(&self) -> &Client {
        self.client.as_ref().expect("client")
    }
}

impl Drop for TestClient {
    fn drop(&mut self) {
        if let Some(c) = self.client.take() {
            for id in c.containers() {
                let _ = c.stop(&id, libc::SIGKILL, Duration::from_secs(10));
                let _ = c.delete(&id);
            }
        }
    }
}

pub fn client_with(sink: Arc<dyn EventSink>) -> TestClient {
    let root = tempfile::Builder::new().prefix("berth-client-root").tempdir().expect("tempdir");
    let mut cfg = Config::new(root.path());
    cfg.helper = Helper::Path(PathBuf::from(env!("CARGO_BIN_EXE_berth-monitor")));
    TestClient { client: Some(Client::new(cfg, sink).expect("client")), _root: Some(root) }
}

/// A second [`TestClient`] on an existing state root.
pub fn client_on(root: &Path, sink: Arc<dyn EventSink>) -> TestClient {
    let mut cfg = Config::new(root);
    cfg.helper = Helper::Path(PathBuf::from(env!("CARGO_BIN_EXE_berth-monitor")));
    TestClient { client: Some(Client::new(cfg, sink).expect("client")), _root: None }
}

/// Output of one process, collected by threads.
pub struct Collected {
    pub stdout: Arc<Mutex<Vec<u8>>>,
    pub stderr: Arc<Mutex<Vec<u8>>>,
    /// Set when stdout reached end of file.
    pub stdout_eof: Arc<std::sync::atomic::AtomicBool>,
    pub stdin: Option<Box<dyn berth_core::StdinWriter>>,
    threads: Vec<JoinHandle<()>>,
}

impl Collected {
    /// Starts reader threads for `io`.
    pub fn from(io: ProcessIo) -> Collected {
        Self::from_with(io, 4096, Duration::ZERO)
    }

    /// Starts reader threads reading `chunk` bytes at a time and pausing `pause` after each
    /// chunk: a slow engine, so output is still unread when the process exits.
    pub fn from_with(io: ProcessIo, chunk: usize, pause: Duration) -> Collected {
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let stdout_eof = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut threads = Vec::new();
        let spawn =
            |mut r: Box<dyn Read + Send>, buf: Arc<Mutex<Vec<u8>>>, eof: Option<Arc<std::sync::atomic::AtomicBool>>| {
                std::thread::spawn(move || {
                    let mut chunk = vec![0u8; chunk];
                    loop {
                        match r.read(&mut chunk) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => buf.lock().unwrap().extend_from_slice(&chunk[..n]),
                        }
                        if !pause.is_zero() {
                            std::thread::sleep(pause);
                        }
                    }
                    if let Some(e) = eof {
                        e.store(true, Ordering::SeqCst);
                    }
                    // `r` drops here, after EOF was recorded.
                })
            };
        if let Some(r) = io.stdout {
            threads.push(spawn(r, stdout.clone(), Some(stdout_eof.clone())));
        }
        if let Some(r) = io.stderr {
            threads.push(spawn(r, stderr.clone(), None));
        }
        Collected { stdout, stderr, stdout_eof, stdin: io.stdin, threads }
    }

    /// Waits for the readers to finish and returns (stdout, stderr).
    pub fn finish(self) -> (String, String) {
        for t in self.threads {
            t.join().unwrap();
        }
        let o = String::from_utf8_lossy(&self.stdout.lock().unwrap()).into_owned();
        let e = String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned();
        (o, e)
    }
}

/// An attach callback that stores the collected stdio in `slot`.
pub fn collect_into(slot: &mut Option<Collected>) -> impl FnMut(ProcessIo) -> berth_core::Result<()> + '_ {
    move |io| {
        *slot = Some(Collected::from(io));
        Ok(())
    }
}

/// True if `pid` is a live (non-zombie) process.
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => {
            s.rsplit_once(')').and_then(|(_, r)| r.split_whitespace().next()).is_some_and(|st| st != "Z" && st != "X")
        }
        Err(_) => false,
    }
}

/// Waits until `pred` holds (panics after [`LONG`]); for state that settles asynchronously
/// (a process being reaped by its parent).
pub fn eventually(what: &str, pred: impl Fn() -> bool) {
    let deadline = Instant::now() + LONG;
    while !pred() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Pids whose command line mentions `needle` (e.g. a state root: the helper and monitors).
pub fn pids_mentioning(needle: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        if let Ok(c) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            if String::from_utf8_lossy(&c).contains(needle) {
                out.push(pid);
            }
        }
    }
    out
}

/// Cgroup directories of container `id` with the default cgroups path.
pub fn cgroup_dirs(id: &str) -> Vec<PathBuf> {
    let cg = berth_cgroups::Cgroup::resolve(None, id).expect("resolve cgroup");
    cg.dirs().map(Path::to_path_buf).collect()
}
