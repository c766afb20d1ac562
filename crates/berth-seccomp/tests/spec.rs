//! Translation, validation, cache and notify-message tests that need no filter installed
//! (those are in kernel.rs). They still drive the real libseccomp.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use berth_seccomp::{
    cache_key, cache_path, compile, compile_cached, default_profile, from_json, from_json_slice, send_listener_fd,
    send_to_listener, sys, CompiledFilter, ContainerProcessState,
};
use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompOperator};
use serde_json::{json, Value};

fn spec(v: Value) -> LinuxSeccomp {
    from_json(&v).unwrap()
}

fn compile_err(v: Value) -> String {
    compile(&spec(v)).unwrap_err().to_string()
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn errors_name_the_field() {
    let e = compile_err(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["getpid"], "action": "SCMP_ACT_ERRNO"},
        {"names": ["getpid"], "action": "SCMP_ACT_ERRNO"},
        {"names": ["getpid"], "action": "SCMP_ACT_ERRNO"},
        {"names": [""], "action": "SCMP_ACT_ERRNO"}]}));
    assert_eq!(e, "linux.seccomp.syscalls[3].names[0]: empty syscall name");

    let e = compile_err(json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/x",
        "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_NOTIFY"}]}));
    assert!(
        e.starts_with("linux.seccomp.syscalls[0].names[1]: SCMP_ACT_NOTIFY cannot be used for the write syscall"),
        "{e}"
    );

    let e = compile_err(json!({"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": "/x"}));
    assert!(e.starts_with("linux.seccomp.defaultAction: SCMP_ACT_NOTIFY cannot be used as the default action"), "{e}");

    let e = compile_err(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["getpid"], "action": "SCMP_ACT_KILL", "errnoRet": 1}]}));
    assert!(e.starts_with("linux.seccomp.syscalls[0].errnoRet: SCMP_ACT_KILL does not take an errno"), "{e}");

    let e = compile_err(json!({"defaultAction": "SCMP_ACT_KILL_PROCESS", "defaultErrnoRet": 1}));
    assert!(e.starts_with("linux.seccomp.defaultErrnoRet: SCMP_ACT_KILL_PROCESS does not take an errno"), "{e}");

    let e = compile_err(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 70000}]}));
    assert_eq!(e, "linux.seccomp.syscalls[0].errnoRet: 70000 does not fit in 16 bits");

    let e = compile_err(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "args": [
            {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
            {"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}));
    assert_eq!(e, "linux.seccomp.syscalls[0].args[1].index: 6 is out of range: syscalls have arguments 0 to 5");

    let e = compile_err(json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerMetadata": "m"}));
    assert_eq!(e, "linux.seccomp.listenerMetadata: must not be set when listenerPath is not set");

    let e = compile_err(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["getpid"], "action": "SCMP_ACT_ERRNO"},
        {"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}));
    assert!(
        e.starts_with("linux.seccomp.listenerPath: must be set because linux.seccomp.syscalls[1] uses SCMP_ACT_NOTIFY"),
        "{e}"
    );

    let e = compile_err(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": [], "action": "SCMP_ACT_ERRNO"}]}));
    assert_eq!(e, "linux.seccomp.syscalls[0].names: must contain at least one syscall name");

    // Unknown enum values never reach LinuxSeccomp; from_json names them.
    let e = from_json(&json!({"defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86", "SCMP_ARCH_FOO"]}))
    .unwrap_err()
    .to_string();
    assert_eq!(e, r#"linux.seccomp.architectures[1]: unknown architecture "SCMP_ARCH_FOO""#);
}

#[test]
fn architectures_the_linked_libseccomp_lacks_are_errors() {
    let s = spec(json!({"defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86", "SCMP_ARCH_LOONGARCH64"]}));
    let v = libseccomp::ScmpVersion::current().unwrap();
    if (v.major, v.minor) < (2, 6) {
        let e = compile(&s).unwrap_err().to_string();
        assert!(
            e.starts_with("linux.seccomp.architectures[1]: libseccomp refused architecture SCMP_ARCH_LOONGARCH64"),
            "{e}"
        );
    } else {
        // libseccomp 2.6 knows LoongArch.
        compile(&s).unwrap();
    }
}

#[test]
fn rules_equal_to_the_default_action_are_skipped() {
    // libseccomp refuses a rule whose action is the default one; runc skips it silently.
    let with = compile(&spec(json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]},
        {"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
        {"names": ["mkdir"], "action": "SCMP_ACT_ALLOW"}]})))
    .unwrap();
    let without = compile(&spec(json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["mkdir"], "action": "SCMP_ACT_ALLOW"}]})))
    .unwrap();
    assert_eq!(with, without);
    // A different errno is a different action and is kept.
    let other = compile(&spec(json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
        {"names": ["mkdir"], "action": "SCMP_ACT_ALLOW"}]})))
    .unwrap();
    assert_ne!(other, without);
}

#[test]
fn flags_follow_the_spec_and_notify_adds_new_listener() {
    let flags = |v: Value| compile(&spec(v)).unwrap().flags();
    assert_eq!(flags(json!({"defaultAction": "SCMP_ACT_ALLOW"})), 0);
    assert_eq!(
        flags(json!({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_LOG"]})),
        sys::FILTER_FLAG_LOG
    );
    // TSYNC is ignored (single-threaded init); WAIT_KILLABLE_RECV needs a listener.
    assert_eq!(
        flags(json!({"defaultAction": "SCMP_ACT_ALLOW", "flags": [
            "SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
            "SECCOMP_FILTER_FLAG_SPEC_ALLOW"]})),
        sys::FILTER_FLAG_SPEC_ALLOW
    );
    let notify = compile(&spec(json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/x",
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]})))
    .unwrap();
    assert!(notify.needs_listener());
    assert_eq!(notify.flags(), sys::FILTER_FLAG_NEW_LISTENER);
}

#[test]
fn default_profile_is_docker_like_and_round_trips_through_json() {
    let p = default_profile();
    let v = serde_json::to_value(&p).unwrap();
    assert_eq!(v["defaultAction"], "SCMP_ACT_ERRNO");
    assert_eq!(v["defaultErrnoRet"], 1);
    if cfg!(target_arch = "x86_64") {
        assert_eq!(v["architectures"], json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]));
    }
    assert_eq!(from_json(&v).unwrap(), p);

    let calls = p.syscalls().as_ref().unwrap();
    let named = |n: &'static str| calls.iter().filter(move |c| c.names().iter().any(|x| x == n));
    for forbidden in ["mount", "umount2", "unshare", "setns", "bpf", "kexec_load", "init_module", "reboot"] {
        assert_eq!(named(forbidden).count(), 0, "{forbidden} must not be allowed");
    }
    let clone: Vec<_> = named("clone").collect();
    assert_eq!(clone.len(), 1);
    let args = clone[0].args().as_ref().unwrap();
    assert_eq!(args.len(), 1);
    assert_eq!(args[0].op(), LinuxSeccompOperator::ScmpCmpMaskedEq);
    assert_eq!(args[0].value(), 0x7e02_0000);
    assert_eq!(args[0].value_two(), None);
    let clone3: Vec<_> = named("clone3").collect();
    assert_eq!(clone3[0].errno_ret(), Some(libc::ENOSYS as u32));
    assert_eq!(named("personality").count(), 5);
    let socket: Vec<_> = named("socket").collect();
    assert_eq!(socket[0].args().as_ref().unwrap()[0].value(), 40);

    let f = compile(&p).unwrap();
    assert!(!f.needs_listener());
    assert!(f.program().len() > 100);
}

#[test]
fn compiling_is_deterministic() {
    let p = default_profile();
    assert_eq!(compile(&p).unwrap().to_bytes(), compile(&p).unwrap().to_bytes());
}

#[test]
fn cache_hit_returns_identical_bytes_with_private_permissions() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run/berth/.cache/seccomp");
    let p = default_profile();
    let fresh = compile(&p).unwrap();

    let first = compile_cached(&p, &dir).unwrap();
    assert_eq!(first.to_bytes(), fresh.to_bytes());
    let entry = cache_path(&p, &dir).unwrap();
    assert_eq!(fs::read(&entry).unwrap(), fresh.to_bytes());
    assert_eq!(mode(&entry), 0o600);
    assert_eq!(mode(&dir), 0o700);
    // Nothing but the entry is left behind (no temporary files).
    let names: Vec<_> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, vec![entry.file_name().unwrap().to_owned()]);

    let second = compile_cached(&p, &dir).unwrap();
    assert_eq!(second.to_bytes(), fresh.to_bytes());
}

#[test]
fn cache_hit_really_reads_the_entry() {
    // Plant a different (valid, same flags) program under the key: a hit must return it,
    // which proves the hit path does not recompile.
    let tmp = tempfile::tempdir().unwrap();
    let p = default_profile();
    let planted = compile(&spec(json!({"defaultAction": "SCMP_ACT_ALLOW"}))).unwrap();
    fs::write(cache_path(&p, tmp.path()).unwrap(), planted.to_bytes()).unwrap();
    assert_eq!(compile_cached(&p, tmp.path()).unwrap(), planted);
}

#[test]
fn corrupt_or_mismatched_entries_are_ignored_and_rewritten() {
    let p = default_profile();
    let good = compile(&p).unwrap().to_bytes();
    let listener = compile(&spec(json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/x",
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]})))
    .unwrap()
    .to_bytes();
    let mut flipped = good.clone();
    flipped[100] ^= 1;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("truncated", good[..good.len() / 2].to_vec()),
        ("one byte short", good[..good.len() - 1].to_vec()),
        ("bit flip", flipped),
        ("garbage", b"not a filter at all".to_vec()),
        ("other flags", listener),
    ];
    for (what, bytes) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let entry = cache_path(&p, tmp.path()).unwrap();
        fs::write(&entry, &bytes).unwrap();
        let got = compile_cached(&p, tmp.path()).unwrap();
        assert_eq!(got.to_bytes(), good, "{what}");
        assert_eq!(fs::read(&entry).unwrap(), good, "{what}: entry rewritten");
    }
}

#[test]
fn cache_does_not_follow_a_symlinked_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cache");
    let p = default_profile();
    fs::create_dir(&dir).unwrap();
    let elsewhere = tmp.path().join("elsewhere");
    let planted = compile(&spec(json!({"defaultAction": "SCMP_ACT_ALLOW"}))).unwrap();
    fs::write(&elsewhere, planted.to_bytes()).unwrap();
    let entry = cache_path(&p, &dir).unwrap();
    symlink(&elsewhere, &entry).unwrap();
    assert_eq!(compile_cached(&p, &dir).unwrap(), compile(&p).unwrap());
    assert!(!fs::symlink_metadata(&entry).unwrap().file_type().is_symlink());
    assert_eq!(fs::read(&elsewhere).unwrap(), planted.to_bytes(), "target untouched");
}

#[test]
fn cache_tightens_directory_permissions_and_survives_an_unusable_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("open");
    fs::create_dir(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    let p = default_profile();
    compile_cached(&p, &dir).unwrap();
    assert_eq!(mode(&dir), 0o700);

    // The cache is an optimisation: a path that cannot be a directory still compiles.
    let file = tmp.path().join("file");
    fs::write(&file, b"x").unwrap();
    assert_eq!(compile_cached(&p, &file).unwrap(), compile(&p).unwrap());
    assert_eq!(fs::read(&file).unwrap(), b"x");
}

#[test]
fn invalid_specs_fail_the_same_way_through_the_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let s = spec(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": [""], "action": "SCMP_ACT_ERRNO"}]}));
    let e = compile_cached(&s, tmp.path()).unwrap_err().to_string();
    assert_eq!(e, "linux.seccomp.syscalls[0].names[0]: empty syscall name");
    assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0);
}

#[test]
fn cache_key_ignores_formatting_but_not_content() {
    let a = from_json_slice(
        br#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW"}]}"#,
    )
    .unwrap();
    let b = from_json_slice(
        br#"{ "syscalls": [ { "action": "SCMP_ACT_ALLOW", "names": [ "read" ] } ],
              "defaultAction": "SCMP_ACT_ERRNO" }"#,
    )
    .unwrap();
    let c = from_json_slice(
        br#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["write"],"action":"SCMP_ACT_ALLOW"}]}"#,
    )
    .unwrap();
    assert_eq!(cache_key(&a).unwrap(), cache_key(&b).unwrap());
    assert_ne!(cache_key(&a).unwrap(), cache_key(&c).unwrap());
    assert_eq!(cache_key(&a).unwrap().len(), 64);
}

#[test]
fn container_process_state_matches_the_runtime_spec_shape() {
    let state: oci_spec::runtime::State = serde_json::from_value(json!({
        "ociVersion": "1.0.2", "id": "oci-container1", "status": "creating", "pid": 4422,
        "bundle": "/containers/redis", "annotations": {"myKey": "myValue"}}))
    .unwrap();
    let msg = ContainerProcessState::new(state, 4422, Some("MKNOD=/dev/null".into()));
    let v = serde_json::to_value(&msg).unwrap();
    assert_eq!(
        v,
        json!({"ociVersion": "1.0.2", "fds": ["seccompFd"], "pid": 4422,
               "metadata": "MKNOD=/dev/null",
               "state": {"ociVersion": "1.0.2", "id": "oci-container1", "status": "creating",
                         "pid": 4422, "bundle": "/containers/redis",
                         "annotations": {"myKey": "myValue"}}})
    );
    let back: ContainerProcessState = serde_json::from_value(v).unwrap();
    assert_eq!(back, msg);
}

#[test]
fn listener_failures_are_errors_naming_the_path() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-agent.sock");
    let fd = fs::File::open("/dev/null").unwrap();
    use std::os::fd::AsFd;
    let e = send_listener_fd(&missing, b"{}", fd.as_fd()).unwrap_err().to_string();
    assert!(e.starts_with("linux.seccomp.listenerPath"), "{e}");
    assert!(e.contains("no-agent.sock") && e.contains("connect"), "{e}");

    let s = spec(json!({"defaultAction": "SCMP_ACT_ALLOW"}));
    let e = send_to_listener(&s, &Default::default(), 1, fd.as_fd()).unwrap_err().to_string();
    assert!(e.starts_with("linux.seccomp.listenerPath: must be set"), "{e}");
}

#[test]
fn from_bytes_rejects_what_to_bytes_did_not_write() {
    let f = compile(&default_profile()).unwrap();
    let bytes = f.to_bytes();
    assert_eq!(CompiledFilter::from_bytes(&bytes).unwrap(), f);
    assert!(CompiledFilter::from_bytes(&bytes[..bytes.len() - 1]).is_err());
    assert!(CompiledFilter::from_bytes(&[]).is_err());
}
