//! Real-kernel tests: every filter here is installed in a real process (the
//! `berth-seccomp-probe` helper, spawned with std::process::Command because the test harness
//! is multi-threaded) and the kernel's answer to a real syscall is checked.

use std::io::{IoSliceMut, Read};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::mpsc;

use berth_seccomp::{compile, default_profile, from_json, sys, CompiledFilter, ContainerProcessState};
use oci_spec::runtime::LinuxSeccomp;
use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
use serde_json::{json, Value};

const PROBE: &str = env!("CARGO_BIN_EXE_berth-seccomp-probe");
/// An errno nothing in these tests produces by accident, used as the "denied" marker.
const MARK: u32 = libc::ENOMEDIUM as u32;
const SIGSYS: i32 = libc::SIGSYS;

fn spec(v: Value) -> LinuxSeccomp {
    from_json(&v).unwrap()
}

/// Runs the probe with `filter` installed and returns its output.
fn probe_with(filter: &CompiledFilter, args: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("filter");
    std::fs::write(&path, filter.to_bytes()).unwrap();
    Command::new(PROBE).arg(&path).args(args).output().unwrap()
}

/// Runs the probe and returns its stdout, requiring a clean exit.
fn probe(filter: &CompiledFilter, args: &[&str]) -> String {
    let out = probe_with(filter, args);
    assert!(
        out.status.success(),
        "probe {args:?} failed: {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn run(s: Value, args: &[&str]) -> String {
    probe(&compile(&spec(s)).unwrap(), args)
}

fn allow_all() -> CompiledFilter {
    compile(&spec(json!({"defaultAction": "SCMP_ACT_ALLOW"}))).unwrap()
}

fn marked() -> String {
    format!("errno {MARK}")
}

fn fresh_dir(dir: &Path) -> String {
    dir.join("d").to_str().unwrap().to_owned()
}

#[test]
fn denied_syscall_returns_the_configured_errno() {
    let tmp = tempfile::tempdir().unwrap();
    let d = fresh_dir(tmp.path());
    let s = json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": MARK}]});
    assert_eq!(run(s, &["mkdir", &d]), marked());
    assert!(!Path::new(&d).exists());
    // Control: the same call under an allow-all filter succeeds.
    assert_eq!(probe(&allow_all(), &["mkdir", &d]), "ok 0");
    assert!(Path::new(&d).is_dir());
}

#[test]
fn errno_defaults_to_eperm() {
    let s = json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["getsid"], "action": "SCMP_ACT_ERRNO"}]});
    assert_eq!(run(s, &["getsid"]), format!("errno {}", libc::EPERM));
}

#[test]
fn unknown_syscall_names_are_skipped_and_the_rest_still_applies() {
    let s = json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["no_such_syscall_berth", "getsid"], "action": "SCMP_ACT_ERRNO", "errnoRet": MARK}]});
    assert_eq!(run(s, &["getsid"]), marked());
}

#[test]
fn default_errno_ret_applies_to_unlisted_syscalls() {
    let mut s = default_profile();
    s.set_default_errno_ret(Some(MARK));
    let f = compile(&s).unwrap();
    assert_eq!(probe(&f, &["mount"]), marked());
    // Without defaultErrnoRet the default action answers EPERM.
    s.set_default_errno_ret(None);
    let f = compile(&s).unwrap();
    assert_eq!(probe(&f, &["mount"]), format!("errno {}", libc::EPERM));
}

#[test]
fn every_comparison_operator() {
    // socket(domain, SOCK_DGRAM) for AF_UNIX=1, AF_INET=2, AF_NETLINK=16, with a rule on the
    // domain argument; each row lists which domains must be denied.
    let rows: &[(&str, u64, Option<u64>, &[u64])] = &[
        ("SCMP_CMP_NE", 2, None, &[1, 16]),
        ("SCMP_CMP_LT", 2, None, &[1]),
        ("SCMP_CMP_LE", 2, None, &[1, 2]),
        ("SCMP_CMP_EQ", 2, None, &[2]),
        ("SCMP_CMP_GE", 2, None, &[2, 16]),
        ("SCMP_CMP_GT", 2, None, &[16]),
        // value is the mask, valueTwo the datum: domain & 0b11 == 0 holds for 16 only.
        ("SCMP_CMP_MASKED_EQ", 0b11, Some(0), &[16]),
        // domain & 0b11 == 0b10 holds for 2 only.
        ("SCMP_CMP_MASKED_EQ", 0b11, Some(0b10), &[2]),
    ];
    for (op, value, value_two, denied) in rows {
        let mut a = json!({"index": 0, "value": value, "op": op});
        if let Some(v2) = value_two {
            a["valueTwo"] = json!(v2);
        }
        let f = compile(&spec(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": MARK, "args": [a]}]})))
        .unwrap();
        for domain in [1u64, 2, 16] {
            let out = probe(&f, &["socket", &domain.to_string(), &libc::SOCK_DGRAM.to_string()]);
            assert_eq!(
                out == marked(),
                denied.contains(&domain),
                "{op} {value} {value_two:?}: socket({domain}) gave {out}"
            );
        }
    }
}

#[test]
fn conditions_on_different_arguments_are_anded() {
    // Deny socket(AF_UNIX, SOCK_DGRAM) only.
    let f = compile(&spec(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": MARK, "args": [
            {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
            {"index": 1, "value": 2, "op": "SCMP_CMP_EQ"}]}]})))
    .unwrap();
    assert_eq!(probe(&f, &["socket", "1", "2"]), marked());
    assert_ne!(probe(&f, &["socket", "1", "1"]), marked());
    assert_ne!(probe(&f, &["socket", "2", "2"]), marked());
}

#[test]
fn repeated_argument_index_splits_into_ored_rules_like_runc() {
    // arg0 == 1 and arg0 == 16 can never both hold, so an AND rule would deny nothing; runc
    // turns each condition into its own rule, including the one on arg1.
    let f = compile(&spec(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": MARK, "args": [
            {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
            {"index": 0, "value": 16, "op": "SCMP_CMP_EQ"},
            {"index": 1, "value": 1, "op": "SCMP_CMP_EQ"}]}]})))
    .unwrap();
    assert_eq!(probe(&f, &["socket", "1", "2"]), marked());
    assert_eq!(probe(&f, &["socket", "16", "2"]), marked());
    // Denied by the arg1 rule alone.
    assert_eq!(probe(&f, &["socket", "2", "1"]), marked());
    assert_ne!(probe(&f, &["socket", "2", "2"]), marked());
}

#[test]
fn kill_process_kills_the_whole_process_with_sigsys() {
    let f = compile(&spec(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["getsid"], "action": "SCMP_ACT_KILL_PROCESS"}]})))
    .unwrap();
    let out = probe_with(&f, &["thread", "getsid"]);
    assert_eq!(out.status.signal(), Some(SIGSYS), "{out:?}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("survived"));
}

#[test]
fn kill_and_kill_thread_kill_only_the_calling_thread() {
    for action in ["SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD"] {
        let f = compile(&spec(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["getsid"], "action": action}]})))
        .unwrap();
        let out = probe_with(&f, &["thread", "getsid"]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{action}: {out:?}");
        assert_eq!(stdout.trim(), "thread killed\nsurvived", "{action}");
        // Control: a single-threaded call under the same filter takes the process down.
        let out = probe_with(&f, &["getsid"]);
        assert_eq!(out.status.signal(), Some(SIGSYS), "{action}: {out:?}");
    }
}

#[test]
fn trap_raises_sigsys() {
    let f = compile(&spec(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["getsid"], "action": "SCMP_ACT_TRAP"}]})))
    .unwrap();
    let out = probe_with(&f, &["getsid"]);
    assert_eq!(out.status.signal(), Some(SIGSYS), "{out:?}");
}

#[test]
fn trace_without_a_tracer_fails_with_enosys() {
    // The kernel answers ENOSYS to SECCOMP_RET_TRACE when no tracer is attached.
    for errno_ret in [None, Some(7)] {
        let mut rule = json!({"names": ["getsid"], "action": "SCMP_ACT_TRACE"});
        if let Some(e) = errno_ret {
            rule["errnoRet"] = json!(e);
        }
        let out = run(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [rule]}), &["getsid"]);
        assert_eq!(out, format!("errno {}", libc::ENOSYS));
    }
}

#[test]
fn log_allows_the_syscall() {
    let tmp = tempfile::tempdir().unwrap();
    let d = fresh_dir(tmp.path());
    let s = json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": MARK,
        "syscalls": [{"names": default_allowed(), "action": "SCMP_ACT_ALLOW"},
                     {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_LOG"}]});
    assert_eq!(run(s.clone(), &["mkdir", &d]), "ok 0");
    assert!(Path::new(&d).is_dir());
    // Control: without the LOG rule the default action denies it.
    let mut without = s;
    without["syscalls"].as_array_mut().unwrap().pop();
    let d2 = tmp.path().join("e");
    assert_eq!(run(without, &["mkdir", d2.to_str().unwrap()]), marked());
}

/// The default profile's unconditional allow-list minus mkdir/mkdirat.
fn default_allowed() -> Vec<String> {
    let p = default_profile();
    let mut names = p.syscalls().as_ref().unwrap()[0].names().clone();
    names.retain(|n| n != "mkdir" && n != "mkdirat");
    names.extend(p.syscalls().as_ref().unwrap()[1].names().iter().cloned());
    names.push("clone".into());
    names
}

#[test]
fn filter_flags_are_accepted_by_the_kernel() {
    let f = compile(&spec(json!({"defaultAction": "SCMP_ACT_ALLOW",
        "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_TSYNC"],
        "syscalls": [{"names": ["getsid"], "action": "SCMP_ACT_ERRNO", "errnoRet": MARK}]})))
    .unwrap();
    assert_eq!(f.flags(), sys::FILTER_FLAG_LOG | sys::FILTER_FLAG_SPEC_ALLOW);
    assert_eq!(probe(&f, &["getsid"]), marked());
}

#[test]
fn default_profile_runs_busybox_and_blocks_the_dangerous_parts() {
    let f = compile(&default_profile()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let d = fresh_dir(tmp.path());
    let script = format!(
        "echo hello; mkdir {d} && ls -d {d}; grep '^Seccomp:' /proc/self/status; \
         busybox unshare -u true && echo unshare-worked || echo unshare-failed"
    );
    let out = probe(&f, &["exec", "/bin/busybox", "sh", "-c", &script]);
    assert_eq!(out, format!("hello\n{d}\nSeccomp:\t2\nunshare-failed"), "busybox under the default profile");

    let eperm = format!("errno {}", libc::EPERM);
    let newuts = format!("{:#x}", libc::CLONE_NEWUTS);
    assert_eq!(probe(&f, &["unshare", &newuts]), eperm);
    assert_eq!(probe(&f, &["mount"]), eperm);
    assert_eq!(probe(&f, &["socket", "40", "1"]), eperm, "AF_VSOCK");
    assert!(probe(&f, &["socket", "1", "1"]).starts_with("ok "));
    assert_eq!(probe(&f, &["personality", "0x40000"]), eperm, "ADDR_NO_RANDOMIZE");
    assert!(probe(&f, &["personality", "0xffffffff"]).starts_with("ok "));
    // Threads still work: clone3 answers ENOSYS and libc falls back to clone without
    // namespace flags, which the masked comparison allows.
    assert_eq!(probe(&f, &["thread", "getpid"]).lines().last(), Some("survived"));

    // Controls: as root without the filter these succeed (or fail differently).
    let open = allow_all();
    assert_eq!(probe(&open, &["unshare", &newuts]), "ok 0");
    assert_eq!(probe(&open, &["mount"]), format!("errno {}", libc::ENOENT));
    assert!(probe(&open, &["personality", "0x40000"]).starts_with("ok "));
}

#[test]
fn install_does_not_allocate() {
    let f = compile(&default_profile()).unwrap();
    assert_eq!(probe(&f, &["install-allocs"]), "ok 0");
}

#[test]
fn install_errors_are_reported_not_ignored() {
    // The kernel allows one listener per filter chain: a second NEW_LISTENER install is EBUSY.
    let f = compile(&spec(json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/nonexistent",
        "syscalls": [{"names": ["getsid"], "action": "SCMP_ACT_NOTIFY"}]})))
    .unwrap();
    assert_eq!(probe(&f, &["--no-send", "install-again"]), format!("errno {}", libc::EBUSY));
    // Control: filters without a listener stack fine.
    assert_eq!(probe(&allow_all(), &["install-again"]), "ok 0");
    // The raw wrapper refuses an empty program itself.
    assert_eq!(sys::set_mode_filter(0, &[]).unwrap_err().raw_os_error(), Some(libc::EINVAL));
}

/// A seccomp agent: accepts connections on `path`, receives the notify fd with its
/// containerProcessState, and answers every notification with `answer(nr)`. A connection that
/// carries no fd stops it.
fn spawn_agent(
    path: PathBuf,
    answer: fn(i32) -> sys::SeccompNotifResp,
) -> (std::thread::JoinHandle<()>, mpsc::Receiver<(ContainerProcessState, Vec<u32>)>) {
    let listener = UnixListener::bind(&path).unwrap();
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::spawn(move || loop {
        let (mut conn, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(4))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let msg = rustix::net::recvmsg(&conn, &mut [IoSliceMut::new(&mut buf)], &mut control, RecvFlags::CMSG_CLOEXEC)
            .unwrap();
        let mut fds: Vec<OwnedFd> = Vec::new();
        for m in control.drain() {
            if let RecvAncillaryMessage::ScmRights(r) = m {
                fds.extend(r);
            }
        }
        let Some(fd) = fds.pop() else { return };
        let mut json = buf[..msg.bytes].to_vec();
        conn.read_to_end(&mut json).unwrap();
        let state: ContainerProcessState = serde_json::from_slice(&json).unwrap();
        let mut pids = Vec::new();
        loop {
            let n = match sys::notif_recv(fd.as_fd()) {
                Ok(n) => n,
                // ENOENT: the filtered process is gone.
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => break,
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) => panic!("NOTIF_RECV: {e}"),
            };
            pids.push(n.pid);
            let mut resp = answer(n.data.nr);
            resp.id = n.id;
            sys::notif_id_valid(fd.as_fd(), n.id).unwrap();
            // ENOENT here means the target died meanwhile, which none of these tests do.
            sys::notif_send(fd.as_fd(), &resp).unwrap();
        }
        tx.send((state, pids)).unwrap();
    });
    (handle, rx)
}

fn agent_answer(nr: i32) -> sys::SeccompNotifResp {
    let mut r = sys::SeccompNotifResp { id: 0, val: 0, error: 0, flags: 0 };
    match i64::from(nr) {
        libc::SYS_getsid => r.val = 4242,
        libc::SYS_mkdir | libc::SYS_mkdirat => r.error = -libc::EXDEV,
        // Let anything else run as if allowed.
        _ => r.flags = sys::USER_NOTIF_FLAG_CONTINUE,
    }
    r
}

#[test]
fn notify_reaches_the_listener_and_its_answer_reaches_the_process() {
    let tmp = tempfile::tempdir().unwrap();
    let sock = tmp.path().join("agent.sock");
    let (agent, results) = spawn_agent(sock.clone(), agent_answer);
    let s = spec(json!({"defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": sock, "listenerMetadata": "berth-test-metadata",
        "flags": ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
        "syscalls": [{"names": ["getsid", "mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]}));
    let f = compile(&s).unwrap();
    assert!(f.needs_listener());
    assert_eq!(f.flags(), sys::FILTER_FLAG_NEW_LISTENER | sys::FILTER_FLAG_WAIT_KILLABLE_RECV);
    let sock_arg = sock.to_str().unwrap();
    let d = fresh_dir(tmp.path());
    let cases = [(vec!["getsid"], "ok 4242".to_owned()), (vec!["mkdir", d.as_str()], format!("errno {}", libc::EXDEV))];
    for (op, want) in &cases {
        let mut args = vec!["--listener", sock_arg, "--metadata", "berth-test-metadata"];
        args.extend(op);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("filter");
        std::fs::write(&path, f.to_bytes()).unwrap();
        let child = Command::new(PROBE)
            .arg(&path)
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{op:?}: {out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), want, "{op:?}");
        let (state, pids) = results.recv().unwrap();
        assert_eq!(state.fds, vec!["seccompFd".to_owned()]);
        assert_eq!(state.metadata.as_deref(), Some("berth-test-metadata"));
        assert_eq!(state.pid, pid as i32);
        assert_eq!(state.state.id(), "probe");
        assert_eq!(pids, vec![pid], "{op:?}: exactly one notification, from the probe");
    }
    assert!(!Path::new(&d).exists(), "the agent's EXDEV answer must have stopped mkdir");
    // An fd-less connection stops the agent.
    drop(std::os::unix::net::UnixStream::connect(&sock).unwrap());
    agent.join().unwrap();
}

#[test]
fn syscalls_newer_than_the_profile_get_enosys_not_the_default_errno() {
    // fchmodat2 (452, Linux 6.6) is absent from the profile. Keep only names numbered below it
    // so the test means the same whatever libseccomp knows.
    let names: Vec<String> = default_allowed()
        .into_iter()
        .filter(|n| {
            libseccomp::ScmpSyscall::from_name(n)
                .map(|s| s.as_raw_syscall() < libc::SYS_fchmodat2 as i32)
                .unwrap_or(false)
        })
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().to_str().unwrap();
    let s = json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": MARK, "syscalls": [
        {"names": names, "action": "SCMP_ACT_ALLOW"}]});
    assert_eq!(run(s.clone(), &["fchmodat2", path]), format!("errno {}", libc::ENOSYS));
    // Older syscalls the profile does not list still get the default action.
    assert_eq!(run(s, &["mount"]), marked());
    // Control: the kernel implements fchmodat2, so ENOSYS above came from the filter.
    assert_eq!(probe(&allow_all(), &["fchmodat2", path]), "ok 0");
    // A default of ERRNO(ENOSYS) needs no stub and behaves the same.
    let s = json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": libc::ENOSYS,
        "syscalls": [{"names": default_allowed(), "action": "SCMP_ACT_ALLOW"}]});
    assert_eq!(run(s, &["mount"]), format!("errno {}", libc::ENOSYS));
}
