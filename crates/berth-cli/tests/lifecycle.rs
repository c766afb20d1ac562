//! End-to-end tests of the `berth` CLI on real namespaces, mounts and cgroups: the process
//! a container runs (output, exit codes, env, cwd, user, hostname, pid namespace, mounts,
//! read-only root, masked and read-only paths, capabilities, rlimits, oomScoreAdj, sysctl),
//! the lifecycle (every state transition and its `state` JSON, kill, delete --force, list)
//! and the global flags. Every test ends with [`common::Env::finish`], a leak check.
//!
//! Run as root: `cargo test -p berth-cli` (scripts/test does it).

mod common;

use std::fs;
use std::io::Read;

use common::*;
use serde_json::{json, Value};

/// `berth run` of a bundle, in the foreground, with output captured.
fn run(env: &Env, b: &Bundle, name: &str) -> Out {
    let id = env.id(name);
    env.berth(&["run", "--bundle", b.dir(), &id])
}

/// Runs `sh -c script` in a container from a fresh bundle on the shared rootfs; `edit`
/// adjusts the config first.
fn sh(env: &Env, name: &str, script: &str, edit: impl FnOnce(&mut Bundle)) -> Out {
    let mut b = env.bundle(&["sh", "-c", script]);
    edit(&mut b);
    run(env, &b, name)
}

// ---------------------------------------------------------------------------------------------
// The process

#[test]
fn run_passes_stdout_stderr_and_exit_code() {
    let env = Env::new();
    let out = sh(&env, "exit", "echo to-stdout; echo to-stderr >&2; exit 7", |_| {});
    out.code_is(7);
    assert_eq!(out.stdout, "to-stdout\n");
    assert!(out.stderr.contains("to-stderr"), "{out:?}");
    let out = sh(&env, "zero", "true", |_| {});
    assert_eq!(out.ok(), "");
    env.finish();
}

#[test]
fn run_exits_128_plus_signal_when_the_process_is_killed() {
    let env = Env::new();
    // Without a pid namespace the shell is not an init, so it can kill itself.
    let out = sh(&env, "selfkill", "kill -KILL $$", |b| {
        b.drop_namespace("pid");
    });
    out.code_is(128 + 9);
    let out = sh(&env, "selfterm", "kill -TERM $$", |b| {
        b.drop_namespace("pid");
    });
    out.code_is(128 + 15);
    env.finish();
}

#[test]
fn run_exits_137_when_killed_from_outside() {
    let env = Env::new();
    let b = env.bundle(&["sh", "-c", "echo ready; exec sleep 1000"]);
    let id = env.id("extkill");
    let (mut child, mut out) = spawn_piped(&env, &["run", "--bundle", b.dir(), &id]);
    assert_eq!(read_line(&mut out), "ready");
    env.wait_status(&id, "running");
    env.berth(&["kill", &id, "KILL"]).ok();
    let st = child.wait().unwrap();
    assert_eq!(st.code(), Some(137));
    // Foreground run deletes the container it ran.
    assert!(!env.root().join(&id).exists());
    env.finish();
}

#[test]
fn run_forwards_signals_to_the_container() {
    let env = Env::new();
    let b = env.bundle(&["sh", "-c", "trap 'echo got-term; exit 42' TERM; echo ready; sleep 1000 & wait"]);
    let id = env.id("fwd");
    let (mut child, mut out) = spawn_piped(&env, &["run", "--bundle", b.dir(), &id]);
    assert_eq!(read_line(&mut out), "ready");
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(child.id() as i32).unwrap(),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    assert_eq!(read_line(&mut out), "got-term");
    assert_eq!(child.wait().unwrap().code(), Some(42));
    env.finish();
}

#[test]
fn run_forwards_real_time_signals_to_the_container() {
    // runc forwards every signal it can catch, real-time ones included (systemd in a container
    // stops on SIGRTMIN+3).
    let env = Env::new();
    let b = env.bundle(&["sh", "-c", "trap 'echo got-rt; exit 43' 37; echo ready; sleep 1000 & wait"]);
    let id = env.id("fwdrt");
    let (mut child, mut out) = spawn_piped(&env, &["run", "--bundle", b.dir(), &id]);
    assert_eq!(read_line(&mut out), "ready");
    berth_sys::signal::kill(child.id() as i32, 37).unwrap();
    // berth's exit first, under a deadline: a berth that does not forward the signal dies of
    // it and leaves the container (which holds our pipe) running.
    let mut status = None;
    assert!(wait_until(|| {
        status = child.try_wait().unwrap();
        status.is_some()
    }));
    let status = status.unwrap();
    if status.code() != Some(43) {
        env.berth(&["delete", "--force", &id]).ok();
        panic!("berth run ended with {status:?}, not the container's 43: the signal was not forwarded");
    }
    assert_eq!(read_line(&mut out), "got-rt");
    env.finish();
}

#[test]
fn env_and_home() {
    let env = Env::new();
    let out = sh(&env, "env", "env", |b| {
        b.set("/process/env", json!(["PATH=/bin", "GREETING=hello world", "EMPTY="]));
    });
    let vars: Vec<&str> = out.ok().lines().collect();
    assert!(vars.contains(&"GREETING=hello world"), "{vars:?}");
    assert!(vars.contains(&"EMPTY="), "{vars:?}");
    assert!(vars.contains(&"PATH=/bin"), "{vars:?}");
    // No HOME in the spec: taken from the container's /etc/passwd, as runc does.
    assert!(vars.contains(&"HOME=/root"), "{vars:?}");
    let out = sh(&env, "home", "echo $HOME", |b| {
        b.set("/process/user/uid", json!(1000));
    });
    assert_eq!(out.ok(), "/home/user\n");
    env.finish();
}

#[test]
fn cwd_is_entered_and_created() {
    let env = Env::new();
    let out = sh(&env, "cwd", "pwd", |b| {
        b.set("/process/cwd", json!("/etc"));
    });
    assert_eq!(out.ok(), "/etc\n");
    // A missing cwd is created (runc does the same); on its own rootfs copy.
    let mut b = env.bundle_own(&["sh", "-c", "pwd; ls -ld . | cut -c1-10"]);
    b.set("/process/cwd", json!("/work/deep/dir"));
    let out = run(&env, &b, "mkcwd");
    assert_eq!(out.ok(), "/work/deep/dir\ndrwxr-xr-x\n");
    assert!(b.rootfs().join("work/deep/dir").is_dir());
    env.finish();
}

#[test]
fn user_uid_gid_additional_gids_and_umask() {
    let env = Env::new();
    let mut b = env.bundle_own(&[
        "sh",
        "-c",
        "grep -E '^(Uid|Gid|Groups):' /proc/self/status; umask; touch /tmp/f; stat -c %a /tmp/f",
    ]);
    b.set("/process/user", json!({"uid": 1000, "gid": 1001, "additionalGids": [10, 20, 1000], "umask": 23}));
    b.set("/root/readonly", json!(false));
    let out = run(&env, &b, "user");
    let text = out.ok();
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(lines[0], ["Uid:", "1000", "1000", "1000", "1000"], "{text}");
    assert_eq!(lines[1], ["Gid:", "1001", "1001", "1001", "1001"], "{text}");
    assert_eq!(lines[2], ["Groups:", "10", "20", "1000"], "{text}");
    // umask 23 = 0o027: a file created with 0666 ends up 0640.
    assert_eq!(lines[3], ["0027"], "{text}");
    assert_eq!(lines[4], ["640"], "{text}");
    // The default: root, umask 0022.
    let out = sh(&env, "root", "id -u; id -g; umask", |_| {});
    assert_eq!(out.ok(), "0\n0\n0022\n");
    env.finish();
}

#[test]
fn hostname_and_domainname() {
    let env = Env::new();
    let out = sh(&env, "uts", "hostname; cat /proc/sys/kernel/domainname", |b| {
        b.set("/hostname", json!("berth-test-host"));
        b.set("/domainname", json!("example.org"));
    });
    assert_eq!(out.ok(), "berth-test-host\nexample.org\n");
    let host = fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_ne!(host.trim(), "berth-test-host", "the host's hostname changed");
    env.finish();
}

#[test]
fn process_is_pid_1_in_its_pid_namespace() {
    let env = Env::new();
    // The glob is expanded by the shell itself: no other process exists while it runs.
    let out = sh(&env, "pid1", "echo $$; set -- /proc/[0-9]*; echo $# $1", |_| {});
    assert_eq!(out.ok(), "1\n1 /proc/1\n");
    // Without a pid namespace it is not pid 1.
    let out = sh(&env, "hostpid", "echo $$", |b| {
        b.drop_namespace("pid");
    });
    assert_ne!(out.ok().trim(), "1");
    env.finish();
}

#[test]
fn no_pivot_runs_the_container_with_chroot() {
    let env = Env::new();
    let b = env.bundle(&["sh", "-c", "cat /etc/passwd | head -1; echo $$"]);
    let id = env.id("nopivot");
    let out = env.berth(&["run", "--no-pivot", "--bundle", b.dir(), &id]);
    assert_eq!(out.ok(), "root:x:0:0:root:/root:/bin/sh\n1\n");
    env.finish();
}

// ---------------------------------------------------------------------------------------------
// Filesystem

#[test]
fn mounts_bind_ro_rw_tmpfs_options_and_propagation() {
    let env = Env::new();
    let host = tempfile::tempdir().unwrap();
    let hostdir = host.path().canonicalize().unwrap();
    fs::create_dir(hostdir.join("ro")).unwrap();
    fs::create_dir(hostdir.join("rw")).unwrap();
    fs::write(hostdir.join("ro/hello"), "from the host\n").unwrap();
    let script = "cat /mnt/ro/hello; \
        echo x > /mnt/ro/new 2>/dev/null && echo ro-writable || echo ro-refused; \
        echo written > /mnt/rw/out && echo rw-ok; \
        echo data > /mnt/scratch/f && echo tmpfs-ok; \
        grep -E ' /mnt/(ro|rw|scratch|shared|private) ' /proc/self/mountinfo";
    let mut b = env.bundle_own(&["sh", "-c", script]);
    b.push(
        "/mounts",
        json!({"destination": "/mnt/ro", "type": "bind", "source": hostdir.join("ro"), "options": ["rbind", "ro"]}),
    );
    b.push(
        "/mounts",
        json!({"destination": "/mnt/rw", "type": "bind", "source": hostdir.join("rw"), "options": ["bind", "rw"]}),
    );
    b.push(
        "/mounts",
        json!({"destination": "/mnt/scratch", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "nodev", "noexec", "size=1m", "mode=700"]}),
    );
    b.push(
        "/mounts",
        json!({"destination": "/mnt/shared", "type": "tmpfs", "source": "tmpfs", "options": ["rshared"]}),
    );
    b.push(
        "/mounts",
        json!({"destination": "/mnt/private", "type": "tmpfs", "source": "tmpfs", "options": ["private"]}),
    );
    let out = run(&env, &b, "mounts");
    let text = out.ok();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("from the host"));
    assert_eq!(lines.next(), Some("ro-refused"));
    assert_eq!(lines.next(), Some("rw-ok"));
    assert_eq!(lines.next(), Some("tmpfs-ok"));
    let info: Vec<&str> = lines.collect();
    let line = |dest: &str| -> Vec<String> {
        let l = info
            .iter()
            .find(|l| l.split_whitespace().nth(4) == Some(dest))
            .unwrap_or_else(|| panic!("{dest} not mounted: {text}"));
        l.split_whitespace().map(str::to_string).collect()
    };
    let ro = line("/mnt/ro");
    assert!(ro[5].split(',').any(|o| o == "ro"), "{ro:?}");
    let rw = line("/mnt/rw");
    assert!(rw[5].split(',').any(|o| o == "rw"), "{rw:?}");
    let scratch = line("/mnt/scratch");
    for o in ["nosuid", "nodev", "noexec"] {
        assert!(scratch[5].split(',').any(|x| x == o), "{o} missing: {scratch:?}");
    }
    let sep = scratch.iter().position(|f| f == "-").unwrap();
    assert_eq!(scratch[sep + 1], "tmpfs");
    let super_opts = &scratch[sep + 3];
    assert!(super_opts.contains("size=1024k") && super_opts.contains("mode=700"), "{scratch:?}");
    // Optional fields (between field 6 and "-") carry the propagation.
    let shared = line("/mnt/shared");
    let sep = shared.iter().position(|f| f == "-").unwrap();
    assert!(shared[6..sep].iter().any(|f| f.starts_with("shared:")), "{shared:?}");
    let private = line("/mnt/private");
    let sep = private.iter().position(|f| f == "-").unwrap();
    assert!(private[6..sep].is_empty(), "{private:?}");
    assert_eq!(fs::read_to_string(hostdir.join("rw/out")).unwrap(), "written\n");
    assert!(!hostdir.join("ro/new").exists());
    env.finish();
}

#[test]
fn readonly_root_is_enforced() {
    let env = Env::new();
    let out = sh(
        &env,
        "rofs",
        "touch /newfile; echo touch=$?; touch /tmp/x; echo tmp=$?; awk '$5 == \"/\" {print $6}' /proc/self/mountinfo",
        |b| {
            b.set("/root/readonly", json!(true));
        },
    );
    let text = out.ok();
    assert!(out.stderr.contains("/newfile: Read-only file system"), "{text} {}", out.stderr);
    assert!(text.contains("touch=1"), "{text}");
    // The rootfs's /tmp is part of the root, read-only too.
    assert!(text.contains("tmp=1"), "{text}");
    assert!(text.lines().last().unwrap().split(',').any(|o| o == "ro"), "{text}");
    assert!(!shared_rootfs().join("newfile").exists());
    let mut b = env.bundle_own(&["sh", "-c", "touch /newfile && echo ok"]);
    b.set("/root/readonly", json!(false));
    assert_eq!(run(&env, &b, "rwfs").ok(), "ok\n");
    assert!(b.rootfs().join("newfile").exists());
    env.finish();
}

#[test]
fn masked_paths_are_unreadable_or_empty() {
    let env = Env::new();
    // The default spec's masked paths that this kernel has, plus a file and a directory of
    // the image with real content.
    let defaults: Vec<String> = default_config()["linux"]["maskedPaths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .filter(|p| std::path::Path::new(p).exists())
        .collect();
    assert!(defaults.iter().any(|p| p == "/proc/timer_list"), "{defaults:?}");
    let mut paths = defaults.clone();
    paths.extend(["/etc/secret".to_string(), "/etc/secretdir".to_string()]);
    let mut script = String::new();
    for p in &paths {
        script.push_str(&format!(
            "if [ -d {p} ]; then echo {p} $(ls -A {p} | wc -l); else echo {p} $(cat {p} | wc -c); fi; \
             grep -q ' {p} ' /proc/self/mountinfo && echo {p} mounted; "
        ));
    }
    script.push_str("echo x > /etc/secretdir/new 2>/dev/null && echo writable || echo refused");
    let mut b = env.bundle_own(&["sh", "-c", &script]);
    fs::write(b.rootfs().join("etc/secret"), "top secret\n").unwrap();
    fs::create_dir(b.rootfs().join("etc/secretdir")).unwrap();
    fs::write(b.rootfs().join("etc/secretdir/file"), "hidden\n").unwrap();
    b.set("/root/readonly", json!(false));
    b.push("/linux/maskedPaths", json!("/etc/secret"));
    b.push("/linux/maskedPaths", json!("/etc/secretdir"));
    b.push("/linux/maskedPaths", json!("/does/not/exist"));
    let out = run(&env, &b, "masked");
    let mut want = String::new();
    for p in &paths {
        want.push_str(&format!("{p} 0\n{p} mounted\n"));
    }
    want.push_str("refused\n");
    assert_eq!(out.ok(), want, "{}", out.stderr);
    // Masking happens in the container's mount namespace only.
    assert_eq!(fs::read_to_string(b.rootfs().join("etc/secret")).unwrap(), "top secret\n");
    assert!(!fs::read_to_string("/proc/timer_list").unwrap().is_empty());
    env.finish();
}

#[test]
fn readonly_paths_are_read_only() {
    let env = Env::new();
    let script = "echo 1 > /proc/sys/kernel/ns_last_pid 2>/dev/null && echo sys-writable || echo sys-refused; \
        touch /etc/newfile 2>/dev/null && echo etc-writable || echo etc-refused; \
        touch /tmp/ok-$$ && echo tmp-writable && rm /tmp/ok-$$; cat /etc/group | head -1";
    let mut b = env.bundle_own(&["sh", "-c", script]);
    b.push("/linux/readonlyPaths", json!("/etc"));
    b.set("/root/readonly", json!(false));
    let out = run(&env, &b, "ropaths");
    assert_eq!(out.ok(), "sys-refused\netc-refused\ntmp-writable\nroot:x:0:\n", "{}", out.stderr);
    env.finish();
}

// ---------------------------------------------------------------------------------------------
// Credentials and limits

const CAPS_SCRIPT: &str = "grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs):' /proc/self/status";

fn caps_spec() -> Value {
    json!({
        "bounding": ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_KILL", "CAP_NET_RAW", "CAP_SETUID"],
        "effective": ["CAP_CHOWN", "CAP_KILL"],
        "permitted": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW"],
        "inheritable": ["CAP_CHOWN", "CAP_NET_RAW"],
        "ambient": ["CAP_CHOWN"]
    })
}

#[test]
fn capability_sets_as_root() {
    let env = Env::new();
    let bnd = cap_mask(&["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_KILL", "CAP_NET_RAW", "CAP_SETUID"]);
    let inh = cap_mask(&["CAP_CHOWN", "CAP_NET_RAW"]);
    let prm = cap_mask(&["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW"]);
    for nnp in [false, true] {
        let out = sh(&env, "capsroot", CAPS_SCRIPT, |b| {
            b.set("/process/capabilities", caps_spec());
            b.set("/process/noNewPrivileges", json!(nnp));
        });
        let s = out.ok();
        assert_eq!(status_caps(s, "CapBnd:"), bnd, "{s}");
        assert_eq!(status_caps(s, "CapInh:"), inh, "{s}");
        assert_eq!(status_caps(s, "CapAmb:"), cap_bit("CAP_CHOWN"), "{s}");
        // execve as uid 0 grants bounding | inheritable, all effective (capabilities(7),
        // "Capabilities and execution of programs by root"); with no_new_privs the result is
        // capped by the permitted set from before execve. runc gives the same sets.
        let want = if nnp { (bnd | inh) & prm } else { bnd | inh };
        assert_eq!(status_caps(s, "CapPrm:"), want, "nnp={nnp}: {s}");
        assert_eq!(status_caps(s, "CapEff:"), want, "nnp={nnp}: {s}");
        assert!(s.contains(if nnp { "NoNewPrivs:\t1" } else { "NoNewPrivs:\t0" }), "{s}");
    }
    env.finish();
}

#[test]
fn capability_sets_as_non_root() {
    let env = Env::new();
    let out = sh(&env, "capsuser", CAPS_SCRIPT, |b| {
        b.set("/process/capabilities", caps_spec());
        b.set("/process/user", json!({"uid": 1000, "gid": 1000}));
        b.set("/process/noNewPrivileges", json!(false));
    });
    let s = out.ok();
    // A non-root exec of an ordinary file keeps only the ambient set in permitted/effective.
    assert_eq!(
        status_caps(s, "CapBnd:"),
        cap_mask(&["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_KILL", "CAP_NET_RAW", "CAP_SETUID"]),
        "{s}"
    );
    assert_eq!(status_caps(s, "CapInh:"), cap_mask(&["CAP_CHOWN", "CAP_NET_RAW"]), "{s}");
    assert_eq!(status_caps(s, "CapPrm:"), cap_bit("CAP_CHOWN"), "{s}");
    assert_eq!(status_caps(s, "CapEff:"), cap_bit("CAP_CHOWN"), "{s}");
    assert_eq!(status_caps(s, "CapAmb:"), cap_bit("CAP_CHOWN"), "{s}");
    assert!(s.contains("NoNewPrivs:\t0"), "{s}");
    // The default spec's caps, as root.
    let out = sh(&env, "capsdefault", CAPS_SCRIPT, |_| {});
    let s = out.ok();
    let def = cap_mask(&["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    assert_eq!(status_caps(s, "CapBnd:"), def, "{s}");
    assert_eq!(status_caps(s, "CapEff:"), def, "{s}");
    // runc's default lists ambient caps that are not inheritable: the kernel refuses them and
    // runc skips them silently.
    assert_eq!(status_caps(s, "CapAmb:"), 0, "{s}");
    env.finish();
}

#[test]
fn rlimits_soft_and_hard() {
    let env = Env::new();
    let out = sh(
        &env,
        "rlimits",
        "grep -E '^Max (open files|core file size|processes) ' /proc/self/limits; ulimit -n",
        |b| {
            b.set(
                "/process/rlimits",
                json!([
                    {"type": "RLIMIT_NOFILE", "soft": 100, "hard": 200},
                    {"type": "RLIMIT_CORE", "soft": 0, "hard": 4096},
                    {"type": "RLIMIT_NPROC", "soft": 50, "hard": 60}
                ]),
            );
        },
    );
    let text = out.ok();
    let row = |name: &str| -> Vec<String> {
        let l = text.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name}: {text}"));
        l[name.len()..].split_whitespace().map(str::to_string).collect()
    };
    assert_eq!(row("Max open files")[..2], ["100", "200"], "{text}");
    assert_eq!(row("Max core file size")[..2], ["0", "4096"], "{text}");
    assert_eq!(row("Max processes")[..2], ["50", "60"], "{text}");
    assert_eq!(text.lines().last(), Some("100"));
    env.finish();
}

#[test]
fn oom_score_adj_positive() {
    let env = Env::new();
    let out = sh(&env, "oom", "cat /proc/self/oom_score_adj", |b| {
        b.set("/process/oomScoreAdj", json!(500));
    });
    assert_eq!(out.ok(), "500\n");
    env.finish();
}

#[test]
fn sysctl_in_the_containers_namespaces() {
    let env = Env::new();
    let host_ttl = fs::read_to_string("/proc/sys/net/ipv4/ip_default_ttl").unwrap();
    let host_msgmax = fs::read_to_string("/proc/sys/kernel/msgmax").unwrap();
    let out = sh(&env, "sysctl", "cat /proc/sys/net/ipv4/ip_default_ttl /proc/sys/kernel/msgmax", |b| {
        b.set("/linux/sysctl", json!({"net.ipv4.ip_default_ttl": "42", "kernel.msgmax": "12345"}));
    });
    assert_eq!(out.ok(), "42\n12345\n");
    // Both are namespaced (network and ipc): the host keeps its values.
    assert_eq!(fs::read_to_string("/proc/sys/net/ipv4/ip_default_ttl").unwrap(), host_ttl);
    assert_eq!(fs::read_to_string("/proc/sys/kernel/msgmax").unwrap(), host_msgmax);
    env.finish();
}

#[test]
fn container_joins_its_cgroup_before_running() {
    let env = Env::new();
    let b = env.bundle(&["sh", "-c", "cat /proc/self/cgroup"]);
    let id = env.id("cg");
    let out = env.berth(&["run", "--bundle", b.dir(), &id]);
    let text = out.ok();
    // No cgroup namespace in the default spec: the host paths are visible.
    for ctrl in ["pids", "memory", "cpu", "devices", "freezer"] {
        let want = format!("/berth/{id}");
        assert!(
            text.lines()
                .any(|l| l.split(':').nth(1).is_some_and(|c| c.split(',').any(|x| x == ctrl)) && l.ends_with(&want)),
            "{ctrl} cgroup is not {want}: {text}"
        );
    }
    if cgroup_hierarchies().iter().any(|h| h.ends_with("unified")) {
        assert!(text.lines().any(|l| l == format!("0::/berth/{id}")), "{text}");
    }
    env.finish();
}

#[test]
fn memory_and_pids_limits_are_applied() {
    let env = Env::new();
    let b = {
        let mut b = env.bundle(&["sleep", "1000"]);
        b.set("/linux/resources/memory", json!({"limit": 64 * 1024 * 1024}));
        b.set("/linux/resources/pids", json!({"limit": 42}));
        b
    };
    let id = env.id("limits");
    env.create(&b, &id);
    assert_eq!(
        fs::read_to_string(v1_cgroup_dir("memory", &id).join("memory.limit_in_bytes")).unwrap().trim(),
        "67108864"
    );
    assert_eq!(fs::read_to_string(v1_cgroup_dir("pids", &id).join("pids.max")).unwrap().trim(), "42");
    env.berth(&["delete", &id]).ok();
    assert!(!v1_cgroup_dir("memory", &id).exists());
    env.finish();
}

// ---------------------------------------------------------------------------------------------
// Networking

/// Prints `ip -o link show lo`, then whether a TCP connection to 127.0.0.1 goes through
/// (`connect=yes`) or not (`connect=no`). With lo down the address is not even assigned, so
/// every attempt fails at once; the retries only wait for the listener to be up. The
/// listener's stdin never ends (busybox nc gives up on a connection when it reads EOF there,
/// which could reset the client's): it leaves with the container's pid namespace.
const LOOPBACK_PROBE: &str = "ip -o link show lo; sleep 1000 | nc -l -p 5555 >/dev/null & ok=no; \
    for i in $(seq 100); do if echo probe | nc 127.0.0.1 5555 2>/dev/null; then ok=yes; break; fi; sleep 0.05; done; \
    echo connect=$ok";

#[track_caller]
fn assert_loopback_up(out: &Out, what: &str) {
    let text = out.ok();
    assert!(text.contains("<LOOPBACK,UP,LOWER_UP>"), "{what}: lo is not up: {text}");
    assert!(text.contains("connect=yes\n"), "{what}: no TCP connection over lo: {text}");
}

#[test]
fn loopback_is_up_in_a_new_network_namespace() {
    // runc's "loopback" network strategy: a container with a network namespace of its own
    // gets lo up before anything of it runs.
    let env = Env::new();
    assert_loopback_up(&sh(&env, "lo", LOOPBACK_PROBE, |_| {}), "new netns");
    // The same in a new user namespace (the init is root only there, which owns the netns).
    let out = sh(&env, "lo-userns", LOOPBACK_PROBE, |b| {
        b.push("/linux/namespaces", json!({"type": "user"}));
        b.set("/linux/uidMappings", json!([{"containerID": 0, "hostID": 100000, "size": 65536}]));
        b.set("/linux/gidMappings", json!([{"containerID": 0, "hostID": 100000, "size": 65536}]));
    });
    assert_loopback_up(&out, "new netns in a new user namespace");
    // And with a joined user namespace, where the netns is created by unshare after the join.
    let mut holder = env.bundle(&["sleep", "100000"]);
    holder.push("/linux/namespaces", json!({"type": "user"}));
    holder.set("/linux/uidMappings", json!([{"containerID": 0, "hostID": 100000, "size": 65536}]));
    holder.set("/linux/gidMappings", json!([{"containerID": 0, "hostID": 100000, "size": 65536}]));
    let hid = env.id("lo-userns-holder");
    let hpid = env.run_detached(&holder, &hid);
    let out = sh(&env, "lo-userns-join", LOOPBACK_PROBE, |b| {
        b.push("/linux/namespaces", json!({"type": "user", "path": format!("/proc/{hpid}/ns/user")}));
    });
    assert_loopback_up(&out, "new netns in a joined user namespace");
    env.berth(&["delete", "-f", &hid]).ok();
    env.reap(hpid);
    env.finish();
}

#[test]
fn a_joined_network_namespace_is_left_as_it_is() {
    // runc only sets up lo for a network namespace it creates: a joined one (a pod's, set up
    // by CNI) is not touched. Negative control of the test above: a fresh namespace held by
    // a host process has lo down, and it must still be down inside and after the container.
    let env = Env::new();
    let mut holder = std::process::Command::new("unshare").args(["--net", "sleep", "100000"]).spawn().unwrap();
    let ns = format!("/proc/{}/ns/net", holder.id());
    // `unshare` execs sleep in the new namespace: wait until the pid is there.
    assert!(
        wait_until(|| fs::read_link(&ns).ok() != fs::read_link("/proc/self/ns/net").ok()),
        "the holder never entered its network namespace"
    );
    let lo_in_holder = || {
        let o = std::process::Command::new("nsenter")
            .arg(format!("--net={ns}"))
            .args(["ip", "-o", "link", "show", "lo"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    assert!(!lo_in_holder().contains(",UP"), "a new namespace starts with lo down: {}", lo_in_holder());
    let out = sh(&env, "lo-joined", LOOPBACK_PROBE, |b| {
        b.drop_namespace("network");
        b.push("/linux/namespaces", json!({"type": "network", "path": ns}));
    });
    let text = out.ok();
    assert!(text.contains("<LOOPBACK>"), "lo of the joined namespace was changed: {text}");
    assert!(text.contains("connect=no\n"), "{text}");
    assert!(!lo_in_holder().contains(",UP"), "lo of the joined namespace was changed: {}", lo_in_holder());
    holder.kill().unwrap();
    holder.wait().unwrap();
    env.finish();
}

// ---------------------------------------------------------------------------------------------
// Lifecycle

fn assert_rfc3339(s: &str) {
    let b = s.as_bytes();
    assert!(
        b.len() >= 20
            && b[4] == b'-'
            && b[7] == b'-'
            && b[10] == b'T'
            && b[13] == b':'
            && b[16] == b':'
            && (s.ends_with('Z') || s[19..].contains('+') || s[19..].contains('-')),
        "not RFC 3339: {s}"
    );
}

#[test]
fn state_transitions_creating_created_running_stopped() {
    let env = Env::new();
    let mut b = env.bundle(&["sh", "-c", "echo started; exec sleep 1000"]);
    // `creating` is only observable from a hook: berth writes state.json once the init is ready.
    let hook_out = b.file("hook-state.json");
    b.set(
        "/hooks/createRuntime",
        json!([{"path": "/bin/sh", "args": ["sh", "-c", format!("cat > {}", hook_out.display())]}]),
    );
    b.set("/annotations", json!({"org.example.key": "value"}));
    let id = env.id("states");
    let pidfile = b.file("init.pid");
    env.detached(&b, &id, &["create", "--bundle", b.dir(), "--pid-file", pidfile.to_str().unwrap(), &id]).ok();
    let creating: Value = serde_json::from_str(&fs::read_to_string(&hook_out).unwrap()).unwrap();
    assert_eq!(creating["status"], "creating");
    assert_eq!(creating["id"], id);
    assert!(creating["pid"].as_i64().unwrap() > 0);
    assert_eq!(creating["bundle"], b.dir());
    assert_eq!(creating["annotations"]["org.example.key"], "value");

    let st = env.state(&id);
    let pid = env.pid_of(&id);
    assert_eq!(st["status"], "created");
    assert_eq!(st["id"], id);
    assert_eq!(st["ociVersion"], default_config()["ociVersion"]);
    assert_eq!(st["pid"], pid);
    assert_eq!(creating["pid"], pid);
    assert_eq!(fs::read_to_string(&pidfile).unwrap().trim(), pid.to_string());
    assert_eq!(st["bundle"], b.dir());
    assert_eq!(st["rootfs"], json!(b.rootfs()));
    assert_rfc3339(st["created"].as_str().unwrap());
    assert_eq!(st["owner"], "root", "{st}");
    assert_eq!(st["annotations"]["org.example.key"], "value");
    // Created: the process has not run yet.
    assert_eq!(env.output_of(&b, &id), "");

    env.berth(&["start", &id]).ok();
    assert_eq!(env.status(&id), "running");
    assert!(wait_until(|| env.output_of(&b, &id) == "started\n"));
    assert_eq!(env.state(&id)["pid"], pid);

    env.berth(&["kill", &id, "KILL"]).ok();
    env.wait_status(&id, "stopped");
    let st = env.state(&id);
    assert_eq!(st["pid"], 0, "{st}");
    assert_eq!(env.reap(pid), 137);
    env.berth(&["delete", &id]).ok();
    env.berth(&["state", &id]).fails_with("does not exist");
    env.finish();
}

#[test]
fn created_container_can_be_deleted_without_force() {
    let env = Env::new();
    let b = env.bundle(&["true"]);
    let id = env.id("delcreated");
    let pid = env.create(&b, &id);
    env.berth(&["delete", &id]).ok();
    assert_eq!(env.reap(pid), 137);
    env.finish();
}

#[test]
fn stopped_container_reports_stopped_until_deleted() {
    let env = Env::new();
    let b = env.bundle(&["sh", "-c", "exit 3"]);
    let id = env.id("stopped");
    let pid = env.run_detached(&b, &id);
    env.wait_status(&id, "stopped");
    assert_eq!(env.reap(pid), 3);
    assert_eq!(env.status(&id), "stopped");
    env.berth(&["start", &id]).fails_with("stopped");
    env.berth(&["kill", &id]).fails_with("not running");
    env.berth(&["delete", &id]).ok();
    env.finish();
}

#[test]
fn detached_init_is_reaped_by_the_callers_subreaper() {
    // berth's init is a child of the berth process; once berth exits it is re-parented to the
    // nearest subreaper, the test process. If it were not, reap() fails with ECHILD.
    let env = Env::new();
    let b = env.bundle(&["sh", "-c", "trap 'exit 5' TERM; sleep 1000 & wait"]);
    let id = env.id("subreaper");
    let pid = env.run_detached(&b, &id);
    assert_eq!(parent_of(pid), Some(std::process::id() as i32), "the init was not re-parented to the subreaper");
    env.berth(&["kill", &id, "TERM"]).ok();
    // The exit status reaches the subreaper, which is what lets a shim report it.
    assert_eq!(env.reap(pid), 5);
    assert_eq!(env.status(&id), "stopped");
    env.berth(&["delete", &id]).ok();
    env.finish();
}

#[test]
fn kill_accepts_names_numbers_and_sig_prefix() {
    let env = Env::new();
    let script = "trap 'echo USR1' USR1; trap 'echo HUP' HUP; trap 'echo USR2' USR2; \
        trap 'echo TERM; exit 0' TERM; echo ready; while :; do sleep 1000 & wait $!; done";
    let b = env.bundle(&["sh", "-c", script]);
    let id = env.id("kill");
    let pid = env.run_detached(&b, &id);
    let has = |lines: &[&str]| {
        let want: String = lines.iter().map(|l| format!("{l}\n")).collect();
        wait_until(|| env.output_of(&b, &id) == want)
    };
    assert!(has(&["ready"]));
    env.berth(&["kill", &id, "USR1"]).ok();
    assert!(has(&["ready", "USR1"]), "{}", env.output_of(&b, &id));
    env.berth(&["kill", &id, "SIGHUP"]).ok();
    assert!(has(&["ready", "USR1", "HUP"]), "{}", env.output_of(&b, &id));
    env.berth(&["kill", &id, "12"]).ok();
    assert!(has(&["ready", "USR1", "HUP", "USR2"]), "{}", env.output_of(&b, &id));
    env.berth(&["kill", &id, "sigusr1"]).ok();
    assert!(has(&["ready", "USR1", "HUP", "USR2", "USR1"]), "{}", env.output_of(&b, &id));
    env.berth(&["kill", &id, "NOSUCHSIG"]).fails_with("NOSUCHSIG");
    env.berth(&["kill", &id, "65"]).fails_with("signal");
    // 0 sends nothing: it only checks that the init is alive (runc's liveness probe).
    env.berth(&["kill", &id, "0"]).ok();
    // The default is SIGTERM.
    env.berth(&["kill", &id]).ok();
    assert!(has(&["ready", "USR1", "HUP", "USR2", "USR1", "TERM"]), "{}", env.output_of(&b, &id));
    env.wait_status(&id, "stopped");
    assert_eq!(env.reap(pid), 0);
    env.berth(&["delete", &id]).ok();
    env.finish();
}

#[test]
fn kill_all_signals_every_process() {
    let env = Env::new();
    // Without a pid namespace the init's death does not take the others down.
    let mut b = env.bundle(&["sh", "-c", "sleep 1000 & sleep 1000 & echo ready; wait"]);
    b.drop_namespace("pid");
    let id = env.id("killall");
    let pid = env.run_detached(&b, &id);
    assert!(wait_until(|| env.output_of(&b, &id) == "ready\n"));
    let procs = v1_cgroup_dir("pids", &id).join("cgroup.procs");
    assert!(wait_until(|| fs::read_to_string(&procs).unwrap().lines().count() == 3));
    // Once the init dies, its children are orphans re-parented to us, the subreaper.
    for p in fs::read_to_string(&procs).unwrap().lines() {
        env.adopt(p.parse().unwrap());
    }
    env.berth(&["kill", "--all", &id, "KILL"]).ok();
    assert!(wait_until(|| fs::read_to_string(&procs).unwrap().trim().is_empty()));
    env.wait_status(&id, "stopped");
    assert_eq!(env.reap(pid), 137);
    env.berth(&["delete", &id]).ok();
    env.finish();
}

#[test]
fn delete_force_removes_a_running_container() {
    let env = Env::new();
    let b = env.bundle(&["sh", "-c", "sleep 1000 & exec sleep 1000"]);
    let id = env.id("delforce");
    let pid = env.run_detached(&b, &id);
    assert_eq!(env.status(&id), "running");
    let probe = {
        let mut p = LeakProbe::with_bundle(&id, env.root(), &b);
        p.pids.push(pid);
        p
    };
    assert!(!probe.leaks().is_empty(), "a running container must show up in the leak check");
    env.berth(&["delete", "--force", &id]).ok();
    assert!(!env.root().join(&id).exists());
    assert_eq!(env.reap(pid), 137);
    probe.assert_clean();
    env.berth(&["state", &id]).fails_with("does not exist");
    env.finish();
}

#[test]
fn list_table_json_and_quiet() {
    let env = Env::new();
    let empty = env.berth(&["list"]);
    assert_eq!(empty.ok().lines().count(), 1, "{}", empty.stdout);
    let json_empty: Value = serde_json::from_str(env.berth(&["list", "-f", "json"]).ok()).unwrap();
    assert!(json_empty.as_array().is_some_and(|a| a.is_empty()) || json_empty.is_null(), "{json_empty}");

    let b = env.bundle(&["sleep", "1000"]);
    let (a, c) = (env.id("list-a"), env.id("list-b"));
    let pid_a = env.create(&b, &a);
    let pid_c = env.run_detached(&b, &c);
    let table = env.berth(&["list"]);
    let rows: Vec<Vec<String>> =
        table.ok().lines().map(|l| l.split_whitespace().map(str::to_string).collect()).collect();
    assert_eq!(rows[0][..5], ["ID", "PID", "STATUS", "BUNDLE", "CREATED"], "{}", table.stdout);
    assert_eq!(rows[0].last().unwrap(), "OWNER");
    assert_eq!(rows.len(), 3, "{}", table.stdout);
    let row =
        |id: &str| rows.iter().find(|r| r[0] == id).unwrap_or_else(|| panic!("{id} not listed: {}", table.stdout));
    assert_eq!(row(&a)[1..4], [pid_a.to_string(), "created".into(), b.dir().to_string()]);
    assert_eq!(row(&c)[1..4], [pid_c.to_string(), "running".into(), b.dir().to_string()]);
    assert_rfc3339(&row(&a)[4]);
    let mut sorted = [a.clone(), c.clone()];
    sorted.sort();
    assert_eq!([rows[1][0].clone(), rows[2][0].clone()], sorted, "list is sorted by id");

    let json: Value = serde_json::from_str(env.berth(&["list", "--format", "json"]).ok()).unwrap();
    let arr = json.as_array().unwrap();
    assert_eq!(arr.len(), 2);
    let entry = |id: &str| arr.iter().find(|e| e["id"] == id).unwrap_or_else(|| panic!("{id} missing: {json}"));
    assert_eq!(entry(&a)["status"], "created");
    assert_eq!(entry(&a)["pid"], pid_a);
    assert_eq!(entry(&c)["pid"], pid_c);
    assert_eq!(entry(&c)["status"], "running");
    assert_eq!(entry(&c)["bundle"], b.dir());
    assert_eq!(entry(&c)["ociVersion"], default_config()["ociVersion"]);

    assert_eq!(env.berth(&["list", "-q"]).ok(), format!("{}\n{}\n", sorted[0], sorted[1]));
    env.berth(&["list", "-f", "yaml"]).fails_with("yaml");
    env.finish();
}

#[test]
fn exec_and_ps_in_a_running_container() {
    let env = Env::new();
    let mut b = env.bundle(&["sleep", "1000"]);
    b.set("/hostname", json!("exec-host"));
    let id = env.id("exec");
    let pid = env.run_detached(&b, &id);
    let out = env.berth(&["exec", &id, "sh", "-c", "hostname; echo $$; exit 4"]);
    out.code_is(4);
    let mut l = out.stdout.lines();
    assert_eq!(l.next(), Some("exec-host"));
    assert_ne!(l.next(), Some("1"));
    let out = env.berth(&[
        "exec",
        "-e",
        "FOO=bar",
        "-u",
        "1000:1000",
        "--cwd",
        "/tmp",
        &id,
        "sh",
        "-c",
        "id -u; id -g; pwd; echo $FOO",
    ]);
    assert_eq!(out.ok(), "1000\n1000\n/tmp\nbar\n");
    env.berth(&["exec", &id, "sh", "-c", "kill -KILL $$"]).code_is(137);
    env.berth(&["exec", &id, "no-such-command"]).fails_with("no-such-command");
    let pids: Vec<i32> = serde_json::from_str(env.berth(&["ps", "-f", "json", &id]).ok()).unwrap();
    assert_eq!(pids, [pid]);
    let table = env.berth(&["ps", &id]);
    assert!(table.ok().lines().next().unwrap().contains("PID"), "{}", table.stdout);
    assert!(table.stdout.lines().skip(1).any(|l| l.contains("sleep 1000")), "{}", table.stdout);
    env.berth(&["delete", "-f", &id]).ok();
    env.reap(pid);
    env.finish();
}

// ---------------------------------------------------------------------------------------------
// Global flags and `spec`

#[test]
fn version_prints_three_lines() {
    let out = berth_raw(&["--version"]);
    let lines: Vec<&str> = out.ok().lines().collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[0], format!("berth version {}", env!("CARGO_PKG_VERSION")));
    assert!(lines[1].starts_with("commit: ") && lines[1].len() > "commit: ".len(), "{lines:?}");
    assert!(lines[2].starts_with("spec: 1."), "{lines:?}");
    assert_eq!(berth_raw(&["-v"]).ok(), out.stdout);
}

#[test]
fn log_format_json_writes_level_msg_time_and_debug_adds_messages() {
    let env = Env::new();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log.json");
    let id = env.id("nosuch");
    let out = env.berth(&["--log", log.to_str().unwrap(), "--log-format", "json", "state", &id]);
    out.fails_with("does not exist");
    let text = fs::read_to_string(&log).unwrap();
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert_eq!(lines[0]["level"], "error");
    assert!(lines[0]["msg"].as_str().unwrap().contains(&id), "{text}");
    assert_rfc3339(lines[0]["time"].as_str().unwrap());
    // Text format to the same file appends a logfmt-like line.
    env.berth(&["--log", log.to_str().unwrap(), "--log-format", "text", "state", &id]).fails_with("does not exist");
    let text = fs::read_to_string(&log).unwrap();
    let last = text.lines().last().unwrap();
    assert!(last.contains("level=error") && last.contains("msg=") && last.starts_with("time="), "{text}");
    berth_raw(&["--log-format", "xml", "list"]).fails_with("--log-format");
    // --debug adds debug messages (runc's default spec lists ambient capabilities that are
    // not inheritable, which berth skips with a debug message).
    let b = env.bundle(&["true"]);
    let quiet = env.berth(&["run", "--bundle", b.dir(), &env.id("nodebug")]);
    assert!(!quiet.stderr.contains("level=debug"), "{quiet:?}");
    let loud = env.berth(&["--debug", "run", "--bundle", b.dir(), &env.id("debug")]);
    loud.ok();
    assert!(loud.stderr.contains("level=debug"), "{loud:?}");
    env.finish();
}

#[test]
fn systemd_cgroup_is_refused_with_a_clear_error() {
    let env = Env::new();
    let b = env.bundle(&["true"]);
    let id = env.id("systemd");
    let out = env.berth(&["--systemd-cgroup", "run", "--bundle", b.dir(), &id]);
    out.fails_with("systemd cgroup driver is not supported");
    assert!(!env.root().join(&id).exists());
    // Other commands ignore the flag (runc shims pass it to every command).
    env.berth(&["--systemd-cgroup", "list"]).ok();
    env.finish();
}

#[test]
fn spec_writes_runcs_default_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(BERTH).arg("spec").current_dir(dir.path()).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    // Byte for byte what runc 1.1 writes (crates/berth-spec/src/runc-1.1-default.json is
    // `runc spec` output).
    let written = fs::read_to_string(dir.path().join("config.json")).unwrap();
    assert_eq!(written, berth_spec::DEFAULT_SPEC_JSON);
    // --bundle writes elsewhere.
    let other = tempfile::tempdir().unwrap();
    berth_raw(&["spec", "--bundle", other.path().to_str().unwrap()]).ok();
    assert_eq!(fs::read_to_string(other.path().join("config.json")).unwrap(), berth_spec::DEFAULT_SPEC_JSON);
    // A second run refuses and leaves the file alone.
    fs::write(dir.path().join("config.json"), "{\"mine\": true}").unwrap();
    let again = std::process::Command::new(BERTH).arg("spec").current_dir(dir.path()).output().unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists"), "{again:?}");
    let mut s = String::new();
    fs::File::open(dir.path().join("config.json")).unwrap().read_to_string(&mut s).unwrap();
    assert_eq!(s, "{\"mine\": true}");
}

#[test]
fn joins_an_existing_user_namespace_by_path() {
    // A holder container owns a user namespace mapping 0 -> 100000 (like a pod sandbox); a
    // second container joins it by path and gets new pid/mount/... namespaces owned by it.
    let env = Env::new();
    let mut holder = env.bundle(&["sleep", "100000"]);
    holder.push("/linux/namespaces", json!({"type": "user"}));
    holder.set("/linux/uidMappings", json!([{"containerID": 0, "hostID": 100000, "size": 65536}]));
    holder.set("/linux/gidMappings", json!([{"containerID": 0, "hostID": 100000, "size": 65536}]));
    let hid = env.id("userns-holder");
    let hpid = env.run_detached(&holder, &hid);
    let mut b = env.bundle(&["sh", "-c", "echo pid=$$; cat /proc/self/uid_map; readlink /proc/self/ns/user"]);
    b.push("/linux/namespaces", json!({"type": "user", "path": format!("/proc/{hpid}/ns/user")}));
    let id = env.id("userns-join");
    let out = env.berth(&["run", "--bundle", b.dir(), &id]);
    let text = out.ok();
    let want_ns = fs::read_link(format!("/proc/{hpid}/ns/user")).unwrap();
    assert!(text.contains("pid=1\n"), "not pid 1 in a new pid namespace: {text}");
    assert!(text.contains("0     100000      65536"), "{text}");
    assert!(text.contains(&*want_ns.to_string_lossy()), "did not join {}: {text}", want_ns.display());
    // Detached: the init is a direct child of the caller (its subreaper here) and runs as the
    // mapped host uid.
    let mut b2 = env.bundle(&["sleep", "100000"]);
    b2.push("/linux/namespaces", json!({"type": "user", "path": format!("/proc/{hpid}/ns/user")}));
    let id2 = env.id("userns-join-d");
    let pid = env.run_detached(&b2, &id2);
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(status.lines().any(|l| l.starts_with("Uid:") && l.contains("100000")), "{status}");
    assert_eq!(env.berth(&["exec", &id2, "id", "-u"]).ok(), "0\n");
    env.berth(&["delete", "-f", &id2]).ok();
    env.reap(pid);
    env.berth(&["delete", "-f", &hid]).ok();
    env.reap(hpid);
    env.finish();
}
