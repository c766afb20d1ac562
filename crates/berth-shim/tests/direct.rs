//! The shim driven directly over ttrpc, as containerd drives it, without containerd: a stand-in
//! for containerd's events service records what the shim publishes. This is where the RPC
//! semantics and error codes are pinned down (containerd maps the codes back to its errdefs
//! classes), and where the shim's own hygiene is checked: no descriptor leaks across a
//! create/delete cycle, nothing left behind by a failed create, exit once the last task is
//! gone.
//!
//! Runs as root against the real kernel: the containers are real (busybox rootfs).

use std::collections::VecDeque;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use containerd_shim_protos::api;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::shim::events::ForwardRequest;
use containerd_shim_protos::ttrpc::proto::{Code, Request, Response, Status};

const TASK: &str = "containerd.task.v2.Task";

fn frame(stream: u32, kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = (payload.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(&stream.to_be_bytes());
    v.extend_from_slice(&[kind, 0]);
    v.extend_from_slice(payload);
    v
}

fn read_frame(s: &mut UnixStream) -> std::io::Result<(u32, u8, Vec<u8>)> {
    let mut h = [0u8; 10];
    s.read_exact(&mut h)?;
    let len = u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize;
    let stream = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
    let mut p = vec![0u8; len];
    s.read_exact(&mut p)?;
    Ok((stream, h[8], p))
}

/// A ttrpc client connection to the shim.
struct Client {
    s: UnixStream,
    next: u32,
}

impl Client {
    fn connect(address: &str) -> Client {
        let path = address.strip_prefix("unix://").unwrap_or(address);
        let s = UnixStream::connect(path).expect("connecting to the shim");
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        Client { s, next: 1 }
    }

    fn send(&mut self, method: &str, req: &dyn MessageDyn) -> u32 {
        let stream = self.next;
        self.next += 2;
        let mut r = Request::new();
        r.service = TASK.into();
        r.method = method.into();
        r.payload = req.bytes();
        self.s.write_all(&frame(stream, 1, &r.write_to_bytes().unwrap())).unwrap();
        stream
    }

    fn recv(&mut self) -> (u32, Result<Vec<u8>, (Code, String)>) {
        let (stream, kind, p) = read_frame(&mut self.s).expect("reading a response");
        assert_eq!(kind, 2, "response frame");
        let resp = Response::parse_from_bytes(&p).unwrap();
        let st = resp.status.clone().unwrap_or_else(Status::new);
        let code = st.code.enum_value_or(Code::UNKNOWN);
        if code == Code::OK {
            (stream, Ok(resp.payload))
        } else {
            (stream, Err((code, st.message)))
        }
    }

    /// A call of the shim's own group service (`Reserve`, `Confirm`, `Owns`: the payload is
    /// the container id).
    fn group(&mut self, method: &str, id: &str) -> Vec<u8> {
        let stream = self.next;
        self.next += 2;
        let mut r = Request::new();
        r.service = "berth.shim.v1.Group".into();
        r.method = method.into();
        r.payload = id.as_bytes().to_vec();
        self.s.write_all(&frame(stream, 1, &r.write_to_bytes().unwrap())).unwrap();
        let (got, res) = self.recv();
        assert_eq!(got, stream);
        res.unwrap_or_else(|e| panic!("{method}({id}): {e:?}"))
    }

    fn call<R: Message>(&mut self, method: &str, req: &dyn MessageDyn) -> Result<R, (Code, String)> {
        let sent = self.send(method, req);
        let (stream, r) = self.recv();
        assert_eq!(stream, sent, "responses to sequential calls come in order");
        r.map(|p| R::parse_from_bytes(&p).unwrap())
    }
}

trait MessageDyn {
    fn bytes(&self) -> Vec<u8>;
}
impl<M: Message> MessageDyn for M {
    fn bytes(&self) -> Vec<u8> {
        self.write_to_bytes().unwrap()
    }
}

/// Stand-in for containerd's events service: records (topic, type URL, event bytes).
fn events_server(path: &Path) -> Arc<Mutex<Vec<(String, Any)>>> {
    let l = UnixListener::bind(path).unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            let g = g.clone();
            std::thread::spawn(move || {
                while let Ok((stream, _, p)) = read_frame(&mut s) {
                    let req = Request::parse_from_bytes(&p).unwrap();
                    assert_eq!(req.service, "containerd.services.events.ttrpc.v1.Events");
                    let fr = ForwardRequest::parse_from_bytes(&req.payload).unwrap();
                    let env = fr.envelope.unwrap();
                    g.lock().unwrap().push((env.topic.clone(), env.event.unwrap()));
                    let mut resp = Response::new();
                    let mut st = Status::new();
                    st.code = Code::OK.into();
                    resp.status = Some(st).into();
                    if s.write_all(&frame(stream, 2, &resp.write_to_bytes().unwrap())).is_err() {
                        return;
                    }
                }
            });
        }
    });
    got
}

fn topics(ev: &Arc<Mutex<Vec<(String, Any)>>>) -> Vec<String> {
    ev.lock().unwrap().iter().map(|(t, _)| t.clone()).collect()
}

fn wait_for<F: FnMut() -> bool>(what: &str, mut f: F) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn mkfifo(p: &Path) {
    rustix::fs::mknodat(rustix::fs::CWD, p, rustix::fs::FileType::Fifo, rustix::fs::Mode::from_raw_mode(0o600), 0)
        .unwrap();
}

/// A bundle with a busybox rootfs (a bind mount of a shared directory is not needed: the
/// rootfs is a plain directory) and `args` as the process.
fn cgroup_parent() -> String {
    format!("berth-shim-test-{}", std::process::id())
}

fn bundle(base: &Path, id: &str, args: &[&str]) -> PathBuf {
    let b = base.join(id);
    let rootfs = b.join("rootfs");
    fs::create_dir_all(rootfs.join("bin")).unwrap();
    for d in ["proc", "dev", "sys", "tmp"] {
        fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    let bb = ["/bin/busybox", "/usr/bin/busybox"].into_iter().find(|p| Path::new(p).exists()).expect("busybox-static");
    fs::copy(bb, rootfs.join("bin/busybox")).unwrap();
    for a in ["sh", "sleep", "echo", "cat", "true"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(a)).unwrap();
    }
    let spec = serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {"terminal": false, "user": {"uid": 0, "gid": 0}, "args": args,
            "env": ["PATH=/bin"], "cwd": "/",
            "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"]}},
        "root": {"path": "rootfs"},
        "hostname": id,
        "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"},
                   {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]}],
        "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "ipc"}, {"type": "uts"}],
                  "cgroupsPath": format!("/{}/{id}", cgroup_parent())}
    });
    fs::write(b.join("config.json"), serde_json::to_vec_pretty(&spec).unwrap()).unwrap();
    b
}

/// Kills what a failed run would leave: the containers (by cgroup) and the shim, reaped here
/// (this process is their subreaper) before the test process exits; removes the cgroups.
struct Cleanup {
    cgroup_parent: String,
    shim_pid: Option<u32>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let kill = |pid: i32| {
            if let Some(p) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
            }
        };
        let dirs: Vec<PathBuf> = fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
            .map(|d| d.path().join(&self.cgroup_parent))
            .filter(|d| d.exists())
            .collect();
        for d in &dirs {
            for c in fs::read_dir(d).into_iter().flatten().flatten() {
                for pid in fs::read_to_string(c.path().join("cgroup.procs")).unwrap_or_default().lines() {
                    kill(pid.parse().unwrap_or(0));
                }
            }
        }
        if let Some(pid) = self.shim_pid {
            kill(pid as i32);
        }
        // Reap whatever was orphaned to this process.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            match rustix::process::wait(rustix::process::WaitOptions::NOHANG) {
                Ok(Some(_)) => continue,
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(_) => break,
            }
        }
        for d in &dirs {
            for c in fs::read_dir(d).into_iter().flatten().flatten() {
                let _ = fs::remove_dir(c.path());
            }
            let _ = fs::remove_dir(d);
        }
    }
}

fn fds_of(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

fn any_json(url: &str, v: serde_json::Value) -> Any {
    let mut a = Any::new();
    a.type_url = url.into();
    a.value = serde_json::to_vec(&v).unwrap();
    a
}

#[test]
fn task_api_semantics_events_and_hygiene() {
    rustix::process::set_child_subreaper(Some(rustix::process::Pid::INIT)).unwrap();
    let mut cleanup = Cleanup { cgroup_parent: cgroup_parent(), shim_pid: None };
    let tmp = tempfile::Builder::new().prefix("bdirect").tempdir_in("/tmp").unwrap();
    let base = tmp.path();
    let ev_sock = base.join("events.sock");
    let events = events_server(&ev_sock);
    let ns = format!("direct-{}", std::process::id());
    // A containerd address of our own, so the group's socket is ours alone.
    let ctrd = base.join("containerd.sock").to_string_lossy().into_owned();
    let shim = env!("CARGO_BIN_EXE_containerd-shim-berth-v2");

    let start = |id: &str, bundle: &Path| -> String {
        let out = Command::new(shim)
            .args(["-namespace", &ns, "-address", &ctrd, "-publish-binary", "/bin/false", "-id", id, "-debug", "start"])
            .current_dir(bundle)
            .env("TTRPC_ADDRESS", &ev_sock)
            .env("BERTH_SHIM_ROOT", base.join("state"))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "start: {}", String::from_utf8_lossy(&out.stderr));
        assert!(out.stderr.is_empty(), "start must print nothing else: {}", String::from_utf8_lossy(&out.stderr));
        let addr = String::from_utf8(out.stdout).unwrap();
        assert!(addr.starts_with("unix:///run/containerd/s/") && !addr.contains('\n'), "bare address: {addr:?}");
        assert_eq!(fs::read_to_string(bundle.join("address")).unwrap(), addr);
        addr
    };

    let b1 = bundle(base, "t1", &["sh", "-c", "echo out1; echo err1 >&2; sleep 1000"]);
    // t1 and t2 share a shim (a named group); any other container gets its own.
    let group = |b: &Path| {
        let mut spec: serde_json::Value = serde_json::from_slice(&fs::read(b.join("config.json")).unwrap()).unwrap();
        spec["annotations"] = serde_json::json!({"io.berth.shim.group": "t"});
        fs::write(b.join("config.json"), serde_json::to_vec_pretty(&spec).unwrap()).unwrap();
    };
    group(&b1);
    // The server logs to the first bundle's `log` (containerd makes it a fifo; a file here).
    fs::write(b1.join("log"), "").unwrap();
    let log = b1.join("log");
    let addr = start("t1", &b1);
    let b2 = bundle(base, "t2", &["sh", "-c", "exit 7"]);
    group(&b2);
    assert_eq!(start("t2", &b2), addr, "one shim per group");
    let mut c = Client::connect(&addr);

    let connect: api::ConnectResponse = c.call("Connect", &api::ConnectRequest::new()).unwrap();
    let shim_pid = connect.shim_pid;
    cleanup.shim_pid = Some(shim_pid);
    assert!(shim_pid > 0);
    assert!(connect.version.starts_with("berth"));

    // Unknown task: NotFound. Checkpoint: Unimplemented. Unknown method: Unimplemented.
    let mut st = api::StateRequest::new();
    st.id = "nope".into();
    assert_eq!(c.call::<api::StateResponse>("State", &st).unwrap_err().0, Code::NOT_FOUND);
    let mut ck = api::CheckpointTaskRequest::new();
    ck.id = "t1".into();
    let e = c.call::<api::Empty>("Checkpoint", &ck).unwrap_err();
    assert_eq!(e.0, Code::UNIMPLEMENTED);
    assert!(e.1.contains("CRIU"), "{}", e.1);
    assert_eq!(c.call::<api::Empty>("Frobnicate", &ck).unwrap_err().0, Code::UNIMPLEMENTED);

    let fds_before = fds_of(shim_pid);

    // A failed create (the executable does not exist) leaves nothing behind and the shim
    // keeps serving.
    let bad = bundle(base, "bad", &["/nonexistent"]);
    let mut cr = api::CreateTaskRequest::new();
    cr.id = "bad".into();
    cr.bundle = bad.to_string_lossy().into_owned();
    let e = c.call::<api::CreateTaskResponse>("Create", &cr).unwrap_err();
    assert!(e.1.contains("nonexistent"), "the error names the executable: {}", e.1);
    assert!(!base.join("state").join(&ns).join("bad").exists(), "no state left by a failed create");
    assert!(!Path::new(&format!("/sys/fs/cgroup/pids/{}/bad", cgroup_parent())).exists(), "no cgroup left");
    assert_eq!(fds_of(shim_pid), fds_before, "no descriptor leaked by a failed create");

    // t1 with stdout/stderr fifos.
    let (o, e) = (base.join("t1.out"), base.join("t1.err"));
    mkfifo(&o);
    mkfifo(&e);
    let mut out_r = fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(&o).unwrap();
    let mut err_r = fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(&e).unwrap();
    let mut cr = api::CreateTaskRequest::new();
    cr.id = "t1".into();
    cr.bundle = b1.to_string_lossy().into_owned();
    cr.stdout = o.to_string_lossy().into_owned();
    cr.stderr = e.to_string_lossy().into_owned();
    let created: api::CreateTaskResponse = c.call("Create", &cr).unwrap();
    assert!(created.pid > 0);
    assert_eq!(c.call::<api::CreateTaskResponse>("Create", &cr).unwrap_err().0, Code::ALREADY_EXISTS);
    st.id = "t1".into();
    let s: api::StateResponse = c.call("State", &st).unwrap();
    assert_eq!(s.status.enum_value_or_default(), containerd_shim_protos::types::task::Status::CREATED);
    assert_eq!(s.pid, created.pid);

    let mut sr = api::StartRequest::new();
    sr.id = "t1".into();
    let started: api::StartResponse = c.call("Start", &sr).unwrap();
    assert_eq!(started.pid, created.pid);
    assert_eq!(c.call::<api::StartResponse>("Start", &sr).unwrap_err().0, Code::FAILED_PRECONDITION);
    read_until("t1's output", &mut out_r, "out1");
    read_until("t1's stderr", &mut err_r, "err1");

    // Leave the shim idle long enough to give memory back (0.5 s after the last request) and
    // block in its release-then-wait path: everything below runs on refaulted code.
    std::thread::sleep(Duration::from_millis(1500));

    // containerd runs the `delete` action after every disconnect, asynchronously; for an id
    // that a live server owns (a new container reusing the id) it must not touch anything.
    let out = Command::new(shim)
        .args(["-namespace", &ns, "-address", &ctrd, "-id", "t1", "-bundle", &b1.to_string_lossy(), "delete"])
        .env("BERTH_SHIM_ROOT", base.join("state"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(api::DeleteResponse::parse_from_bytes(&out.stdout).is_ok());
    let s: api::StateResponse = c.call("State", &st).unwrap();
    assert_eq!(s.status.enum_value_or_default(), containerd_shim_protos::types::task::Status::RUNNING);

    // Exec: bad spec, a good one, a duplicate id.
    let mut ex = api::ExecProcessRequest::new();
    ex.id = "t1".into();
    ex.exec_id = "e1".into();
    ex.spec =
        Some(any_json("types.containerd.io/opencontainers/runtime-spec/1/Process", serde_json::json!("x"))).into();
    assert_eq!(c.call::<api::Empty>("Exec", &ex).unwrap_err().0, Code::INVALID_ARGUMENT);
    ex.spec = Some(any_json(
        "types.containerd.io/opencontainers/runtime-spec/1/Process",
        serde_json::json!({"args": ["sh", "-c", "exit 5"], "cwd": "/", "env": ["PATH=/bin"],
                           "user": {"uid": 0, "gid": 0}}),
    ))
    .into();
    c.call::<api::Empty>("Exec", &ex).unwrap();
    assert_eq!(c.call::<api::Empty>("Exec", &ex).unwrap_err().0, Code::ALREADY_EXISTS);
    // Wait is answered when the exec exits, while other calls go on.
    let mut w = api::WaitRequest::new();
    w.id = "t1".into();
    w.exec_id = "e1".into();
    let wait_stream = c.send("Wait", &w);
    let mut se = api::StartRequest::new();
    se.id = "t1".into();
    se.exec_id = "e1".into();
    let start_stream = c.send("Start", &se);
    let mut answers = VecDeque::new();
    answers.push_back(c.recv());
    answers.push_back(c.recv());
    let (s1, r1) = answers.pop_front().unwrap();
    let (s2, r2) = answers.pop_front().unwrap();
    assert_eq!((s1, s2), (start_stream, wait_stream), "Start answers first; the parked Wait after the exit");
    assert!(api::StartResponse::parse_from_bytes(&r1.unwrap()).unwrap().pid > 0);
    assert_eq!(api::WaitResponse::parse_from_bytes(&r2.unwrap()).unwrap().exit_status, 5);
    let mut d = api::DeleteRequest::new();
    d.id = "t1".into();
    d.exec_id = "e1".into();
    let del: api::DeleteResponse = c.call("Delete", &d).unwrap();
    assert_eq!(del.exit_status, 5);

    // Pause/resume; a running task cannot be deleted.
    let mut p = api::PauseRequest::new();
    p.id = "t1".into();
    c.call::<api::Empty>("Pause", &p).unwrap();
    assert_eq!(c.call::<api::Empty>("Pause", &p).unwrap_err().0, Code::FAILED_PRECONDITION);
    let s: api::StateResponse = c.call("State", &st).unwrap();
    assert_eq!(s.status.enum_value_or_default(), containerd_shim_protos::types::task::Status::PAUSED);
    let mut rs = api::ResumeRequest::new();
    rs.id = "t1".into();
    c.call::<api::Empty>("Resume", &rs).unwrap();
    d.exec_id.clear();
    assert_eq!(c.call::<api::DeleteResponse>("Delete", &d).unwrap_err().0, Code::FAILED_PRECONDITION);

    // Pids and stats.
    let mut pr = api::PidsRequest::new();
    pr.id = "t1".into();
    let pids: api::PidsResponse = c.call("Pids", &pr).unwrap();
    assert!(pids.processes.iter().any(|p| p.pid == created.pid), "{pids:?}");
    let mut sq = api::StatsRequest::new();
    sq.id = "t1".into();
    let stats: api::StatsResponse = c.call("Stats", &sq).unwrap();
    assert_eq!(stats.stats.type_url, "io.containerd.cgroups.v1.Metrics");
    let m = containerd_shim_protos::cgroups::metrics::Metrics::parse_from_bytes(&stats.stats.value).unwrap();
    assert!(m.pids.current >= 1, "{:?}", m.pids);

    // Update: a bad document is InvalidArgument; a good one applies.
    let mut up = api::UpdateTaskRequest::new();
    up.id = "t1".into();
    up.resources = Some(any_json("x/LinuxResources", serde_json::json!([1, 2]))).into();
    assert_eq!(c.call::<api::Empty>("Update", &up).unwrap_err().0, Code::INVALID_ARGUMENT);
    up.resources = Some(any_json("x/LinuxResources", serde_json::json!({"pids": {"limit": 77}}))).into();
    c.call::<api::Empty>("Update", &up).unwrap();
    let m = containerd_shim_protos::cgroups::metrics::Metrics::parse_from_bytes(
        &c.call::<api::StatsResponse>("Stats", &sq).unwrap().stats.value,
    )
    .unwrap();
    assert_eq!(m.pids.limit, 77);
    // Device rules in an update are composed as at create: deny all, the rules, then the
    // default allow list, which an update must never drop (/dev/null and the like). containerd
    // sends the container's whole `resources`, its device rules included.
    let list = PathBuf::from(format!("/sys/fs/cgroup/devices/{}/t1/devices.list", cgroup_parent()));
    up.resources = Some(any_json(
        "x/LinuxResources",
        serde_json::json!({"devices": [{"allow": false, "access": "rwm"},
                                       {"allow": true, "type": "c", "major": 1, "minor": 11, "access": "r"}]}),
    ))
    .into();
    c.call::<api::Empty>("Update", &up).unwrap();
    let after = fs::read_to_string(&list).unwrap();
    for rule in ["c 1:3 rwm", "c 136:* rwm", "c 1:11 r"] {
        assert!(after.lines().any(|l| l == rule), "{rule} missing after the update: {after}");
    }

    // Kill: invalid signal, then SIGKILL; Wait reports 137; a second kill is NotFound.
    let mut k = api::KillRequest::new();
    k.id = "t1".into();
    k.signal = 1000;
    assert_eq!(c.call::<api::Empty>("Kill", &k).unwrap_err().0, Code::INVALID_ARGUMENT);
    // A real-time signal (SIGRTMIN+3, systemd images' stop signal, which CRI sends by
    // number) is delivered (the init, pid 1 of its namespace with no handler, ignores it).
    k.signal = 37;
    c.call::<api::Empty>("Kill", &k).unwrap();
    k.signal = 9;
    c.call::<api::Empty>("Kill", &k).unwrap();
    w.exec_id.clear();
    let waited: api::WaitResponse = c.call("Wait", &w).unwrap();
    assert_eq!(waited.exit_status, 137);
    assert_eq!(c.call::<api::Empty>("Kill", &k).unwrap_err().0, Code::NOT_FOUND);
    // The client reads EOF on the output once the task is gone.
    wait_for("EOF on t1's stdout", || matches!(out_r.read(&mut [0u8; 64]), Ok(0)));
    let del: api::DeleteResponse = c.call("Delete", &d).unwrap();
    assert_eq!((del.exit_status, del.pid), (137, created.pid));
    assert!(
        !base.join("state").join(&ns).join("t1").exists(),
        "state removed; shim log:\n{}",
        fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(!Path::new(&format!("/sys/fs/cgroup/pids/{}/t1", cgroup_parent())).exists(), "cgroup removed");
    // (One descriptor more than at the start: the events connection to containerd, opened
    // with the first event and kept.)
    let fds_after_t1 = fds_of(shim_pid);
    assert_eq!(fds_after_t1, fds_before + 1, "no descriptor leaked by a create/exec/delete cycle");

    // t2: created, started, exits by itself with 7.
    let mut cr2 = api::CreateTaskRequest::new();
    cr2.id = "t2".into();
    cr2.bundle = b2.to_string_lossy().into_owned();
    c.call::<api::CreateTaskResponse>("Create", &cr2).unwrap();
    sr.id = "t2".into();
    c.call::<api::StartResponse>("Start", &sr).unwrap();
    w.id = "t2".into();
    assert_eq!(c.call::<api::WaitResponse>("Wait", &w).unwrap().exit_status, 7);
    let mut ex2 = ex.clone();
    ex2.id = "t2".into();
    assert_eq!(c.call::<api::Empty>("Exec", &ex2).unwrap_err().0, Code::FAILED_PRECONDITION);
    d.id = "t2".into();
    assert_eq!(c.call::<api::DeleteResponse>("Delete", &d).unwrap().exit_status, 7);
    assert_eq!(fds_of(shim_pid), fds_after_t1, "no descriptor leaked by the second cycle");

    // Events, in order.
    wait_for("the delete events", || topics(&events).iter().filter(|t| *t == "/tasks/delete").count() == 2);
    assert_eq!(
        topics(&events),
        [
            "/tasks/create",
            "/tasks/start",
            "/tasks/exec-added",
            "/tasks/exec-started",
            "/tasks/exit",
            "/tasks/paused",
            "/tasks/resumed",
            "/tasks/exit",
            "/tasks/delete",
            "/tasks/create",
            "/tasks/start",
            "/tasks/exit",
            "/tasks/delete",
        ]
    );
    let exit_e1 = events.lock().unwrap()[4].1.clone();
    assert_eq!(exit_e1.type_url, "containerd.events.TaskExit");
    let x = containerd_shim_protos::events::task::TaskExit::parse_from_bytes(&exit_e1.value).unwrap();
    assert_eq!((x.container_id.as_str(), x.id.as_str(), x.exit_status), ("t1", "e1", 5));

    // Shutdown with no task left: the shim exits and removes its socket.
    let mut sd = api::ShutdownRequest::new();
    sd.id = "t2".into();
    let _ = c.call::<api::Empty>("Shutdown", &sd);
    let sock = PathBuf::from(addr.strip_prefix("unix://").unwrap());
    wait_for("the shim to exit", || {
        !Path::new(&format!("/proc/{shim_pid}")).exists() || {
            // Reap it (it was orphaned to this process).
            if let Some(p) = rustix::process::Pid::from_raw(shim_pid as i32) {
                let _ = rustix::process::waitpid(Some(p), rustix::process::WaitOptions::NOHANG);
            }
            false
        }
    });
    assert!(!sock.exists(), "socket removed");

    // `delete` (containerd's cleanup after a dead shim) answers with a DeleteResponse.
    let out = Command::new(shim)
        .args(["-namespace", &ns, "-address", &ctrd, "-id", "t1", "-bundle", &b1.to_string_lossy(), "delete"])
        .env("BERTH_SHIM_ROOT", base.join("state"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let dr = api::DeleteResponse::parse_from_bytes(&out.stdout).unwrap();
    assert_eq!(dr.exit_status, 137);
    // A bundle containerd already removed: nothing to do, still an answer.
    let gone = base.join("gone");
    let out = Command::new(shim)
        .args(["-namespace", &ns, "-address", &ctrd, "-id", "gone", "-bundle", &gone.to_string_lossy(), "delete"])
        .env("BERTH_SHIM_ROOT", base.join("state"))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(api::DeleteResponse::parse_from_bytes(&out.stdout).unwrap().exit_status, 137);
    cleanup.shim_pid = None;
}

#[test]
fn failing_poststart_hook_fails_start_and_stops_the_task() {
    // Start reports the hook's failure and the task is stopped (killed); the exit follows as
    // for any task, and Delete removes it, running poststop. A cgroup parent and namespace of
    // its own: the other test's cleanup kills what runs under its parent.
    rustix::process::set_child_subreaper(Some(rustix::process::Pid::INIT)).unwrap();
    let parent = format!("{}-poststart", cgroup_parent());
    let mut cleanup = Cleanup { cgroup_parent: parent.clone(), shim_pid: None };
    let tmp = tempfile::Builder::new().prefix("bdirect").tempdir_in("/tmp").unwrap();
    let base = tmp.path();
    let ev_sock = base.join("events.sock");
    let events = events_server(&ev_sock);
    let ns = format!("direct-poststart-{}", std::process::id());
    let ctrd = base.join("containerd.sock").to_string_lossy().into_owned();
    let shim = env!("CARGO_BIN_EXE_containerd-shim-berth-v2");
    let b = bundle(base, "p1", &["sleep", "100000"]);
    let log = base.join("poststop.log");
    let mut spec: serde_json::Value = serde_json::from_slice(&fs::read(b.join("config.json")).unwrap()).unwrap();
    spec["linux"]["cgroupsPath"] = serde_json::json!(format!("/{parent}/p1"));
    spec["hooks"] = serde_json::json!({
        "poststart": [{"path": "/bin/sh", "args": ["sh", "-c", "echo hook-says-no >&2; exit 3"]}],
        "poststop": [{"path": "/bin/sh", "args": ["sh", "-c", format!("echo poststop >> {}", log.display())]}],
    });
    fs::write(b.join("config.json"), serde_json::to_vec_pretty(&spec).unwrap()).unwrap();
    fs::write(b.join("log"), "").unwrap();
    let out = Command::new(shim)
        .args(["-namespace", &ns, "-address", &ctrd, "-publish-binary", "/bin/false", "-id", "p1", "start"])
        .current_dir(&b)
        .env("TTRPC_ADDRESS", &ev_sock)
        .env("BERTH_SHIM_ROOT", base.join("state"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "start: {}", String::from_utf8_lossy(&out.stderr));
    let addr = String::from_utf8(out.stdout).unwrap();
    let mut c = Client::connect(&addr);
    let connect: api::ConnectResponse = c.call("Connect", &api::ConnectRequest::new()).unwrap();
    cleanup.shim_pid = Some(connect.shim_pid);

    let mut cr = api::CreateTaskRequest::new();
    cr.id = "p1".into();
    cr.bundle = b.to_string_lossy().into_owned();
    let created: api::CreateTaskResponse = c.call("Create", &cr).unwrap();
    let mut sr = api::StartRequest::new();
    sr.id = "p1".into();
    let (code, msg) = c.call::<api::StartResponse>("Start", &sr).unwrap_err();
    assert_ne!(code, Code::OK);
    for needle in ["hooks.poststart[0]", "exit status: 3", "hook-says-no"] {
        assert!(msg.contains(needle), "the error lacks {needle:?}: {msg}");
    }
    let mut w = api::WaitRequest::new();
    w.id = "p1".into();
    assert_eq!(c.call::<api::WaitResponse>("Wait", &w).unwrap().exit_status, 137, "the task was not killed");
    assert!(!log.exists(), "poststop ran before Delete");
    let mut d = api::DeleteRequest::new();
    d.id = "p1".into();
    let del: api::DeleteResponse = c.call("Delete", &d).unwrap();
    assert_eq!((del.exit_status, del.pid), (137, created.pid));
    assert_eq!(fs::read_to_string(&log).unwrap(), "poststop\n");
    assert!(!base.join("state").join(&ns).join("p1").exists(), "state removed");
    assert!(!Path::new(&format!("/sys/fs/cgroup/pids/{parent}/p1")).exists(), "cgroup removed");
    // It never started: no start and no exit event, as for any init killed before its start.
    wait_for("the delete event", || topics(&events).iter().any(|t| t == "/tasks/delete"));
    assert_eq!(topics(&events), ["/tasks/create", "/tasks/delete"]);

    let mut sd = api::ShutdownRequest::new();
    sd.id = "p1".into();
    let _ = c.call::<api::Empty>("Shutdown", &sd);
    let shim_pid = connect.shim_pid;
    wait_for("the shim to exit", || {
        !Path::new(&format!("/proc/{shim_pid}")).exists() || {
            if let Some(p) = rustix::process::Pid::from_raw(shim_pid as i32) {
                let _ = rustix::process::waitpid(Some(p), rustix::process::WaitOptions::NOHANG);
            }
            false
        }
    });
    cleanup.shim_pid = None;
}

use std::os::unix::fs::OpenOptionsExt;

/// Reads the non-blocking `r` until what was read contains `needle`.
fn read_until(what: &str, r: &mut impl Read, needle: &str) -> String {
    let mut buf = String::new();
    wait_for(what, || {
        let mut b = [0u8; 64];
        if let Ok(n) = r.read(&mut b) {
            buf.push_str(&String::from_utf8_lossy(&b[..n]));
        }
        buf.contains(needle)
    });
    buf
}

/// Spawns a shim server as `start` does (listening socket and confirmation pipe inherited),
/// reserving `id` for its founding start. Returns the child, the socket path and the write end
/// of the confirmation pipe.
fn spawn_server(base: &Path, ns: &str, id: &str) -> (std::process::Child, PathBuf, std::os::fd::OwnedFd) {
    use std::os::fd::AsRawFd;
    let path = base.join(format!("{id}.sock"));
    let l = rustix::net::socket(rustix::net::AddressFamily::UNIX, rustix::net::SocketType::STREAM, None).unwrap();
    rustix::net::bind(&l, &rustix::net::SocketAddrUnix::new(&path).unwrap()).unwrap();
    rustix::net::listen(&l, 16).unwrap();
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
    rustix::io::fcntl_setfd(&r, rustix::io::FdFlags::empty()).unwrap();
    let ctrd = base.join("containerd.sock").to_string_lossy().into_owned();
    let child = Command::new(env!("CARGO_BIN_EXE_containerd-shim-berth-v2"))
        .args(["-namespace", ns, "-id", id, "-address", &ctrd, "-publish-binary", "/bin/false", "-socket"])
        .arg(&path)
        .arg("serve")
        .env("BERTH_SHIM_LISTEN_FD", l.as_raw_fd().to_string())
        .env("BERTH_SHIM_START_FD", r.as_raw_fd().to_string())
        .env("BERTH_SHIM_ROOT", base.join("state"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(base.join(format!("{id}.log"))).unwrap())
        .spawn()
        .unwrap();
    (child, path, w)
}

#[test]
fn a_start_that_dies_before_confirming_leaves_no_reservation() {
    // `start` reserves the container id for containerd's Create, provisionally: only once it
    // has printed the address (containerd knows the shim) does it confirm. A start killed
    // before that must not leave a server waiting for a Create that never comes.
    let tmp = tempfile::Builder::new().prefix("bdirect").tempdir_in("/tmp").unwrap();
    let base = tmp.path();
    let ns = format!("direct-reserve-{}", std::process::id());
    // Less than the 10 s an idle server lingers, far less than the 60 s a reservation lasts.
    let bound = Duration::from_secs(8);

    // The founding start dies (its end of the pipe closes unconfirmed): the server, which
    // serves nothing, exits and removes its socket.
    let (mut child, path, w) = spawn_server(base, &ns, "x");
    let mut c = Client::connect(&path.to_string_lossy());
    assert_eq!(c.group("Owns", "x"), [1], "the founder's reservation");
    drop(c);
    drop(w);
    let deadline = Instant::now() + bound;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the server outlived its founding start by {bound:?}: {}",
                fs::read_to_string(base.join("x.log")).unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success(), "{status:?}");
    assert!(!path.exists(), "socket left behind");

    // Confirmed, the reservation stands (negative control), and a start that joins it
    // confirms on its connection: without the confirmation its reservation goes with the
    // connection, with it it stays.
    let (mut child, path, w) = spawn_server(base, &ns, "y");
    rustix::io::write(&w, b"1").unwrap();
    drop(w);
    let addr = path.to_string_lossy().into_owned();
    let mut c = Client::connect(&addr);
    let mut joiner = Client::connect(&addr);
    joiner.group("Reserve", "z1");
    assert_eq!(c.group("Owns", "z1"), [1]);
    let mut confirmed = Client::connect(&addr);
    confirmed.group("Reserve", "z2");
    confirmed.group("Confirm", "z2");
    drop(confirmed);
    drop(joiner);
    // The server has handled every close (and the pipe's byte and EOF) that was ready before
    // the one it is seen to have handled last: a probe closed after them all.
    let mut probe = Client::connect(&addr);
    probe.group("Reserve", "z3");
    drop(probe);
    wait_for("the probe's reservation to go", || c.group("Owns", "z3") == [0]);
    assert_eq!(c.group("Owns", "z1"), [0], "an unconfirmed reservation outlived its connection");
    assert_eq!(c.group("Owns", "z2"), [1], "a confirmed reservation went with its connection");
    assert_eq!(c.group("Owns", "y"), [1], "the confirmed founder's reservation went");
    assert!(child.try_wait().unwrap().is_none(), "the server exited with reservations standing");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn start_logs_option_warnings_to_containerd_not_into_the_address() {
    // containerd reads `start`'s stdout and stderr together as the address: a warning must go
    // to the bundle's log (containerd's log) instead. Options with no ConfigPath (what CRI makes
    // of an `options` table whose keys it does not know) are accepted with a warning; options
    // berth does not understand fail the start, with the reason on stderr.
    rustix::process::set_child_subreaper(Some(rustix::process::Pid::INIT)).unwrap();
    let tmp = tempfile::Builder::new().prefix("bdirect").tempdir_in("/tmp").unwrap();
    let base = tmp.path();
    let ns = format!("direct-warn-{}", std::process::id());
    let ctrd = base.join("containerd.sock").to_string_lossy().into_owned();
    let b = bundle(base, "w1", &["sleep", "1000"]);
    fs::write(b.join("log"), "").unwrap();
    let start = |stdin: &[u8]| {
        let f = base.join("stdin");
        fs::write(&f, stdin).unwrap();
        Command::new(env!("CARGO_BIN_EXE_containerd-shim-berth-v2"))
            .args(["-namespace", &ns, "-address", &ctrd, "-publish-binary", "/bin/false", "-id", "w1", "start"])
            .current_dir(&b)
            .env("BERTH_SHIM_ROOT", base.join("state"))
            .stdin(fs::File::open(&f).unwrap())
            .output()
            .unwrap()
    };
    // google.protobuf.Any{type_url: "runtimeoptions.v1.Options", value: empty}
    let mut empty = vec![0x0a, 25];
    empty.extend_from_slice(b"runtimeoptions.v1.Options");
    let out = start(&empty);
    assert!(out.status.success(), "start: {}", String::from_utf8_lossy(&out.stderr));
    let addr = String::from_utf8(out.stdout).unwrap();
    assert!(out.stderr.is_empty() && addr.starts_with("unix:///run/containerd/s/") && !addr.contains(' '), "{addr:?}");
    let log = fs::read_to_string(b.join("log")).unwrap();
    assert!(log.contains("level=warning") && log.contains("no ConfigPath"), "log: {log}");
    let mut c = Client::connect(&addr);
    let connect: api::ConnectResponse = c.call("Connect", &api::ConnectRequest::new()).unwrap();
    drop(c);
    if let Some(p) = rustix::process::Pid::from_raw(connect.shim_pid as i32) {
        let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
        let _ = rustix::process::waitpid(Some(p), rustix::process::WaitOptions::empty());
    }
    let _ = fs::remove_file(addr.trim_start_matches("unix://"));

    // An options type berth does not know: refused, nothing printed as an address, no server.
    let mut runsc = vec![0x0a, 30];
    runsc.extend_from_slice(b"io.containerd.runsc.v1.options");
    let out = start(&runsc);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "{:?}", String::from_utf8_lossy(&out.stdout));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("\"io.containerd.runsc.v1.options\" are not understood by berth's shim"), "{err}");
    assert!(!b.join("address").exists() || fs::read_to_string(b.join("address")).unwrap() == addr);
}
