//! The container's setup order (issue 13): the seccomp filter goes on last, privileged work
//! happens while berth still has privileges, and what the process user owns is handed over
//! before the drop. See docs/seccomp.md ("What runs after the filter") and
//! docs/architecture.md ("Inside the init").
//!
//! Run as root against the real kernel: `cargo test -p berth-cli --test order`.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::*;
use serde_json::{json, Value};

const ARCHES: [&str; 3] = ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"];

/// What the test workloads (busybox `sh -c 'echo …'`, `sleep`, `mkdir`, the static syscall
/// probe) need, found with strace, and nothing else. In particular none of berth's own setup
/// calls: openat2, close_range, getcwd, fchdir, chdir, capset, capget, setresuid, setresgid,
/// setgroups, setrlimit, umask, rt_sigprocmask, sendmsg, recvmsg, socket, statx, faccessat2.
/// A runtime that still makes any of those after installing the filter fails with it, as
/// berth did (`process.cwd "/": Operation not permitted`, `close_range: Operation not
/// permitted`). runtime-tools' default allow list is the model: an allow-list profile written
/// for the workload, not for the runtime.
const WORKLOAD: &[&str] = &[
    "arch_prctl",
    "brk",
    "close",
    "execve",
    "exit",
    "exit_group",
    "fcntl",
    "getegid",
    "geteuid",
    "getgid",
    "getpid",
    "getppid",
    "getrandom",
    "getuid",
    "ioctl",
    "mmap",
    "mprotect",
    "munmap",
    "newfstatat",
    "fstat",
    "openat",
    "prctl",
    "prlimit64",
    "read",
    "readlink",
    "rseq",
    "rt_sigaction",
    "rt_sigreturn",
    "set_robust_list",
    "set_tid_address",
    "uname",
    "write",
    "writev",
    "clock_nanosleep",
    "nanosleep",
    "restart_syscall",
    "wait4",
    "dup2",
    "clone",
    "fork",
    "vfork",
    "pipe",
    "pipe2",
];

/// The setup calls the strict profile must not contain (checked, so that the list above
/// cannot quietly grow to cover berth).
const BERTH_SETUP: &[&str] = &[
    "openat2",
    "close_range",
    "getcwd",
    "fchdir",
    "chdir",
    "capset",
    "capget",
    "setresuid",
    "setresgid",
    "setgroups",
    "setrlimit",
    "umask",
    "rt_sigprocmask",
    "sendmsg",
    "recvmsg",
    "socket",
    "statx",
    "faccessat2",
];

fn strict(errno_ret: Option<u32>) -> Value {
    let mut p = json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ARCHES,
        "syscalls": [{"names": WORKLOAD, "action": "SCMP_ACT_ALLOW"}]
    });
    if let Some(e) = errno_ret {
        p["defaultErrnoRet"] = json!(e);
    }
    p
}

/// Docker's default profile as podman ships it (containers-common's
/// /usr/share/containers/seccomp.json, derived from moby's), turned into an OCI
/// `linux.seccomp` the way engines do: entries kept or dropped by their `includes` and
/// `excludes` for amd64 and the spec's capabilities, engine-only fields removed.
fn docker_default(caps: &[&str]) -> Value {
    let path = "/usr/share/containers/seccomp.json";
    let text = fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{path}: {e} (package golang-github-containers-common, installed with podman)"));
    let src: Value = serde_json::from_str(&text).unwrap();
    let arch_ok = |v: &Value| v.as_array().is_some_and(|a| a.iter().any(|x| x == "amd64"));
    let caps_all = |v: &Value| v.as_array().is_some_and(|a| a.iter().all(|c| caps.contains(&c.as_str().unwrap_or(""))));
    let caps_any = |v: &Value| v.as_array().is_some_and(|a| a.iter().any(|c| caps.contains(&c.as_str().unwrap_or(""))));
    let mut syscalls = Vec::new();
    for s in src["syscalls"].as_array().unwrap() {
        let inc = &s["includes"];
        let exc = &s["excludes"];
        if inc.get("arches").is_some() && !arch_ok(&inc["arches"]) {
            continue;
        }
        if inc.get("caps").is_some() && !caps_all(&inc["caps"]) {
            continue;
        }
        if exc.get("arches").is_some() && arch_ok(&exc["arches"]) {
            continue;
        }
        if exc.get("caps").is_some() && caps_any(&exc["caps"]) {
            continue;
        }
        let mut e = json!({"names": s["names"], "action": s["action"]});
        for k in ["args", "errnoRet"] {
            if let Some(v) = s.get(k).filter(|v| !v.is_null()) {
                e[k] = v.clone();
            }
        }
        syscalls.push(e);
    }
    let mut p = json!({"defaultAction": src["defaultAction"], "architectures": ARCHES, "syscalls": syscalls});
    if let Some(r) = src.get("defaultErrnoRet").filter(|v| !v.is_null()) {
        p["defaultErrnoRet"] = r.clone();
    }
    p
}

fn default_caps() -> Vec<String> {
    default_config()["process"]["capabilities"]["bounding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect()
}

/// A static syscall probe (C, built once with gcc): for each syscall number given, calls it
/// with harmless invalid arguments and prints `NR:ERRNO` (0 if it ran).
fn sysprobe() -> &'static Path {
    static PROBE: OnceLock<PathBuf> = OnceLock::new();
    PROBE.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("sysprobe-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let src = dir.join("sysprobe.c");
        fs::write(
            &src,
            r#"#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/syscall.h>
int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        long nr = strtol(argv[i], 0, 10);
        errno = 0;
        long r = syscall(nr, -1L, 0L, 0L, 0L, 0L, 0L);
        printf("%ld:%d\n", nr, r < 0 ? errno : 0);
    }
    return 0;
}
"#,
        )
        .unwrap();
        let bin = dir.join("sysprobe");
        let out = Command::new("gcc").args(["-static", "-O2", "-o"]).arg(&bin).arg(&src).output().expect("gcc");
        assert!(
            out.status.success(),
            "gcc -static (needs gcc and libc6-dev): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        bin
    })
}

/// The profiles of the test: (name, profile, expected errno of a plain syscall the profile
/// does not allow, e.g. mkdir).
fn profiles() -> Vec<(&'static str, Value, i32)> {
    let caps = default_caps();
    let caps: Vec<&str> = caps.iter().map(String::as_str).collect();
    let docker = docker_default(&caps);
    let docker_errno = docker.get("defaultErrnoRet").and_then(Value::as_i64).unwrap_or(libc::EPERM as i64) as i32;
    vec![
        ("strict", strict(None), libc::EPERM),
        ("errnoret-enxio", strict(Some(libc::ENXIO as u32)), libc::ENXIO),
        ("docker-default", docker, docker_errno),
    ]
}

#[test]
fn the_strict_profile_lacks_every_setup_call_of_the_runtime() {
    // Guards the test data: a profile that allowed berth's setup calls would prove nothing.
    for name in BERTH_SETUP {
        assert!(!WORKLOAD.contains(name), "{name} must not be in the strict allow list");
    }
}

#[test]
fn a_profile_that_allows_only_the_workload_runs_for_run_and_exec_with_and_without_nnp() {
    let env = Env::new();
    for (name, profile, _) in profiles() {
        for nnp in [true, false] {
            let what = format!("{name} profile, noNewPrivileges={nnp}");
            // run
            let mut b = env.bundle(&["sh", "-c", "echo STARTED"]);
            b.set("/linux/seccomp", profile.clone()).set("/process/noNewPrivileges", json!(nnp));
            let id = env.id(&format!("{name}-run"));
            let out = env.berth(&["run", "--bundle", b.dir(), &id]);
            assert_eq!(out.code, Some(0), "{what}: run: {}", out.stderr);
            assert_eq!(out.stdout, "STARTED\n", "{what}");
            // create + start
            let id = env.id(&format!("{name}-create"));
            let pid = env.create(&b, &id);
            env.berth(&["start", &id]).ok();
            assert_eq!(env.reap(pid), 0, "{what}: create/start: {}", env.output_of(&b, &id));
            assert!(env.output_of(&b, &id).contains("STARTED"), "{what}");
            env.berth(&["delete", &id]).ok();
            // exec (as root and as another user), into a container under the same profile
            let mut b = env.bundle(&["sleep", "1000"]);
            b.set("/linux/seccomp", profile.clone()).set("/process/noNewPrivileges", json!(nnp));
            let id = env.id(&format!("{name}-exec"));
            let pid = env.run_detached(&b, &id);
            for user in ["0:0", "1000:1000"] {
                let out = env.berth(&["exec", "--user", user, &id, "sh", "-c", "echo EXECED $(id -u)"]);
                assert_eq!(out.code, Some(0), "{what}: exec as {user}: {}", out.stderr);
                assert_eq!(out.stdout, format!("EXECED {}\n", &user[..user.find(':').unwrap()]), "{what}");
            }
            env.berth(&["delete", "--force", &id]).ok();
            env.reap(pid);
        }
    }
    env.finish();
}

#[test]
fn the_filter_is_in_force_after_setup_with_the_profiles_errno() {
    // The other side: the profile really is installed. A syscall it does not allow (mkdir)
    // gets the profile's errno: EPERM by default, ENXIO with defaultErrnoRet, and what
    // Docker's profile says for a syscall it does not list (a new one: clone3 → ENOSYS, the
    // rule that makes glibc fall back to clone).
    let env = Env::new();
    for (name, profile, errno) in profiles() {
        for nnp in [true, false] {
            let mut b = env.bundle_own(&["sh", "-c", "mkdir /tmp/x 2>&1; echo rc=$?"]);
            b.push("/mounts", json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}));
            b.set("/linux/seccomp", profile.clone()).set("/process/noNewPrivileges", json!(nnp));
            let id = env.id(&format!("{name}-errno"));
            let out = env.berth(&["run", "--bundle", b.dir(), &id]);
            let text = out.ok();
            if name == "docker-default" {
                // Docker's profile allows mkdir: nothing to refuse, the call succeeds.
                assert!(text.contains("rc=0"), "{name}: {text}");
                continue;
            }
            let msg = std::io::Error::from_raw_os_error(errno).to_string();
            let msg = msg.split(" (os error").next().unwrap();
            assert!(text.contains(msg) && text.contains("rc=1"), "{name} nnp={nnp}: expected {msg:?}: {text}");
        }
    }
    env.finish();
}

#[test]
fn syscalls_newer_than_the_profile_get_enosys_and_older_unlisted_ones_the_default_errno() {
    // runc's rule for an allow-list profile: a syscall newer than every syscall the profile
    // names gets ENOSYS (so that libc falls back to an older one, as glibc does from clone3
    // to clone), while an older syscall the profile does not list gets the default errno.
    // The strict profile's newest syscall is rseq (334); openat2 (437), close_range (436) and
    // clone3 (435) are newer, mkdir (83) and personality (135) older. Checked for the init
    // and for exec, with and without noNewPrivileges.
    let env = Env::new();
    let nrs = [libc::SYS_openat2, libc::SYS_close_range, libc::SYS_clone3, libc::SYS_mkdir, libc::SYS_personality];
    let args: Vec<String> = nrs.iter().map(|n| n.to_string()).collect();
    let want: Vec<String> = vec![
        format!("{}:{}", libc::SYS_openat2, libc::ENOSYS),
        format!("{}:{}", libc::SYS_close_range, libc::ENOSYS),
        format!("{}:{}", libc::SYS_clone3, libc::ENOSYS),
        format!("{}:{}", libc::SYS_mkdir, libc::EPERM),
        format!("{}:{}", libc::SYS_personality, libc::EPERM),
    ];
    for nnp in [true, false] {
        let mut cmd = vec!["/bin/sysprobe".to_string()];
        cmd.extend(args.iter().cloned());
        let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
        let mut b = env.bundle_own(&cmd);
        fs::copy(sysprobe(), b.rootfs().join("bin/sysprobe")).unwrap();
        fs::set_permissions(b.rootfs().join("bin/sysprobe"), fs::Permissions::from_mode(0o755)).unwrap();
        b.set("/linux/seccomp", strict(None)).set("/process/noNewPrivileges", json!(nnp));
        let id = env.id("enosys-run");
        let out = env.berth(&["run", "--bundle", b.dir(), &id]);
        assert_eq!(out.ok().lines().collect::<Vec<_>>(), want, "run, noNewPrivileges={nnp}");
        b.set("/process/args", json!(["sleep", "1000"]));
        let id = env.id("enosys-exec");
        let pid = env.run_detached(&b, &id);
        let mut exec = vec!["exec", &id];
        exec.extend(cmd.iter());
        let out = env.berth(&exec);
        assert_eq!(out.ok().lines().collect::<Vec<_>>(), want, "exec, noNewPrivileges={nnp}");
        env.berth(&["delete", "--force", &id]).ok();
        env.reap(pid);
    }
    env.finish();
}

#[test]
fn a_cwd_only_root_may_enter_works_for_another_user_in_create_and_exec() {
    // runc PR #2086: the cwd is entered while the process is still root, then the user is
    // switched; the process keeps a cwd it could not have entered itself. Checked for
    // create/start, run, and `exec --user --cwd`.
    let env = Env::new();
    let mut b = env.bundle_own(&["sh", "-c", "pwd; id -u; ls . >/dev/null 2>&1 || echo cannot-list"]);
    let secret = b.rootfs().join("secret");
    fs::create_dir(&secret).unwrap();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o700)).unwrap();
    b.set("/process/cwd", json!("/secret")).set("/process/user", json!({"uid": 1000, "gid": 1000}));
    let want = "/secret\n1000\ncannot-list\n";
    let id = env.id("cwd-run");
    assert_eq!(env.berth(&["run", "--bundle", b.dir(), &id]).ok(), want);
    let id = env.id("cwd-create");
    let pid = env.create(&b, &id);
    env.berth(&["start", &id]).ok();
    assert_eq!(env.reap(pid), 0);
    assert_eq!(env.output_of(&b, &id), want);
    env.berth(&["delete", &id]).ok();
    // exec --user into a container running as root with cwd /.
    b.set("/process/cwd", json!("/")).set("/process/user", json!({"uid": 0, "gid": 0}));
    b.set("/process/args", json!(["sleep", "1000"]));
    let id = env.id("cwd-exec");
    let pid = env.run_detached(&b, &id);
    let out = env.berth(&[
        "exec",
        "--user",
        "1000:1000",
        "--cwd",
        "/secret",
        &id,
        "sh",
        "-c",
        "pwd; id -u; ls . >/dev/null 2>&1 || echo cannot-list",
    ]);
    assert_eq!(out.ok(), want);
    // The user really cannot enter it on its own (the control: the privilege mattered).
    let out = env.berth(&["exec", "--user", "1000:1000", &id, "sh", "-c", "cd /secret 2>&1 || echo refused"]);
    assert!(out.ok().contains("refused"), "{out:?}");
    env.berth(&["delete", "--force", &id]).ok();
    env.reap(pid);
    env.finish();
}
