//! The newer runtime-spec fields (issue 14, item 4), each read back from inside the container:
//! `process.scheduler`, `process.ioPriority`, `process.execCPUAffinity`, `linux.memoryPolicy`,
//! `linux.personality`, `linux.intelRdt`, and the LSM fields `process.apparmorProfile`,
//! `process.selinuxLabel` and `linux.mountLabel`. A field berth cannot apply on this host
//! must fail with an error naming it, never be ignored. See docs/spec.md.
//!
//! The effect is read by a static C probe (built once with `gcc -static`) that prints what the
//! kernel reports for the calling process: `sched_getattr`, `ioprio_get`, `sched_getaffinity`,
//! `get_mempolicy`, `personality(0xffffffff)` and `uname`.
//!
//! Run as root against the real kernel: `cargo test -p berth-cli --test fields`.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::*;
use serde_json::{json, Value};

/// The directory holding the probe (bound read-only onto the container's /data, which the
/// shared rootfs has, so the bundles can share it).
fn probe_dir() -> &'static Path {
    static PROBE: OnceLock<PathBuf> = OnceLock::new();
    PROBE.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("fieldprobe-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let src = dir.join("fieldprobe.c");
        fs::write(
            &src,
            r#"#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/personality.h>
#include <sys/syscall.h>
#include <sys/utsname.h>

/* struct sched_attr, SCHED_ATTR_SIZE_VER1 */
struct attr {
    uint32_t size, policy;
    uint64_t flags;
    int32_t nice;
    uint32_t prio;
    uint64_t runtime, deadline, period;
    uint32_t util_min, util_max;
};

int main(int argc, char **argv) {
    struct attr a;
    memset(&a, 0, sizeof a);
    if (syscall(SYS_sched_getattr, 0, &a, sizeof a, 0) == 0)
        printf("policy=%u\nsched_flags=%llu\nnice=%d\nrt_priority=%u\nruntime=%llu\ndeadline=%llu\nperiod=%llu\n",
               a.policy, (unsigned long long)a.flags, a.nice, a.prio, (unsigned long long)a.runtime,
               (unsigned long long)a.deadline, (unsigned long long)a.period);
    else
        printf("policy=error%d\n", errno);
    long io = syscall(SYS_ioprio_get, 1 /* IOPRIO_WHO_PROCESS */, 0);
    if (io < 0)
        printf("ioprio=error%d\n", errno);
    else
        printf("ioprio_class=%ld\nioprio_data=%ld\n", io >> 13, io & 0x1fff);
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        printf("affinity=");
        int first = 1;
        for (int c = 0; c < CPU_SETSIZE; c++)
            if (CPU_ISSET(c, &set)) {
                printf(first ? "%d" : ",%d", c);
                first = 0;
            }
        printf("\n");
    }
    int mode = -1;
    unsigned long mask[16];
    memset(mask, 0, sizeof mask);
    if (syscall(SYS_get_mempolicy, &mode, mask, 1024, 0, 0) == 0)
        printf("mempolicy=%d\nmempolicy_nodes=%#lx\n", mode, mask[0]);
    else
        printf("mempolicy=error%d\n", errno);
    printf("personality=%#x\n", (unsigned)personality(0xffffffff));
    struct utsname u;
    if (uname(&u) == 0)
        printf("machine=%s\n", u.machine);
    printf("PROBED\n");
    fflush(stdout);
    if (argc > 1)
        pause();
    return 0;
}
"#,
        )
        .unwrap();
        let bin = dir.join("fieldprobe");
        let out = Command::new("gcc").args(["-static", "-O2", "-o"]).arg(&bin).arg(&src).output().expect("gcc");
        assert!(
            out.status.success(),
            "gcc -static (needs gcc and libc6-dev): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    })
}

const PROBE: &str = "/data/fieldprobe";

/// A bundle whose process is the probe (`args`: extra probe arguments; `wait` keeps it
/// running).
fn probe_bundle(env: &Env, args: &[&str]) -> Bundle {
    let mut argv = vec![PROBE];
    argv.extend_from_slice(args);
    let mut b = env.bundle(&argv);
    b.push(
        "/mounts",
        json!({"destination": "/data", "type": "bind", "source": probe_dir(), "options": ["rbind", "ro"]}),
    );
    b
}

/// A long-running container to exec the probe in.
fn sleeper(env: &Env) -> Bundle {
    let mut b = env.bundle(&["sleep", "100000"]);
    b.push(
        "/mounts",
        json!({"destination": "/data", "type": "bind", "source": probe_dir(), "options": ["rbind", "ro"]}),
    );
    b
}

/// The probe's `key=value` lines.
#[track_caller]
fn probed(out: &str) -> BTreeMap<String, String> {
    assert!(out.contains("PROBED"), "the probe did not run: {out:?}");
    out.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// `berth run` of the bundle; the probe's report.
#[track_caller]
fn run_probe(env: &Env, b: &Bundle, name: &str) -> BTreeMap<String, String> {
    let id = env.id(name);
    probed(env.berth(&["run", "--bundle", b.dir(), &id]).ok())
}

/// Writes an exec process document into the bundle and returns its path.
fn process_doc(b: &Bundle, name: &str, extra: Value) -> String {
    let mut p = json!({"args": [PROBE], "cwd": "/", "env": ["PATH=/bin"], "terminal": false});
    for (k, v) in extra.as_object().unwrap() {
        p[k] = v.clone();
    }
    let path = b.file(&format!("{name}.json"));
    fs::write(&path, serde_json::to_vec(&p).unwrap()).unwrap();
    path.to_string_lossy().into_owned()
}

/// `berth exec --process DOC id`; the probe's report.
#[track_caller]
fn exec_probe(env: &Env, b: &Bundle, id: &str, name: &str, extra: Value) -> BTreeMap<String, String> {
    let doc = process_doc(b, name, extra);
    probed(env.berth(&["exec", "--process", &doc, id]).ok())
}

/// An `exec` that must fail: non-zero (1 today; 255 once exec failures exit as runc's), the
/// message names the field, and the probe never ran.
#[track_caller]
fn exec_refused(env: &Env, b: &Bundle, id: &str, name: &str, extra: Value, needles: &[&str]) {
    let doc = process_doc(b, name, extra);
    let out = env.berth(&["exec", "--process", &doc, id]);
    for n in needles {
        out.fails_with(n);
    }
    assert!(matches!(out.code, Some(1) | Some(255)), "exit code: {out:?}");
    assert!(!out.stdout.contains("PROBED"), "the process ran: {out:?}");
}

/// The v1 cpu hierarchy with real-time group scheduling (CONFIG_RT_GROUP_SCHED): a task may
/// only become SCHED_FIFO/SCHED_RR in a cgroup with a real-time budget.
fn rt_group_sched() -> bool {
    Path::new("/sys/fs/cgroup/cpu/cpu.rt_runtime_us").exists()
}

/// Gives the container a real-time budget where the kernel wants one: its own cgroup at the
/// top of the hierarchy (berth's default parent has none to share) with `realtimeRuntime`.
fn rt_budget(b: &mut Bundle, id: &str) {
    if rt_group_sched() {
        b.set("/linux/cgroupsPath", json!(format!("/{id}")));
        b.set("/linux/resources/cpu", json!({"realtimeRuntime": 20000, "realtimePeriod": 1000000}));
    }
}

// ---------------------------------------------------------------------------------------------
// process.scheduler

/// `(process.scheduler, expected probe values)` for every policy Linux implements.
fn policies() -> Vec<(Value, Vec<(&'static str, &'static str)>)> {
    vec![
        (json!({"policy": "SCHED_OTHER", "nice": 5}), vec![("policy", "0"), ("nice", "5")]),
        (json!({"policy": "SCHED_BATCH", "nice": 7}), vec![("policy", "3"), ("nice", "7")]),
        (json!({"policy": "SCHED_IDLE"}), vec![("policy", "5")]),
        (json!({"policy": "SCHED_FIFO", "priority": 10}), vec![("policy", "1"), ("rt_priority", "10")]),
        (json!({"policy": "SCHED_RR", "priority": 20}), vec![("policy", "2"), ("rt_priority", "20")]),
        (
            json!({"policy": "SCHED_DEADLINE", "runtime": 10000000, "deadline": 30000000, "period": 30000000}),
            vec![("policy", "6"), ("runtime", "10000000"), ("deadline", "30000000"), ("period", "30000000")],
        ),
    ]
}

#[track_caller]
fn expect(report: &BTreeMap<String, String>, want: &[(&str, &str)], what: &str) {
    for (k, v) in want {
        assert_eq!(report.get(*k).map(String::as_str), Some(*v), "{what}: {k} in {report:?}");
    }
}

#[test]
fn every_scheduler_policy_applies_to_the_init_and_to_exec() {
    let env = Env::new();
    for (sched, want) in policies() {
        let mut b = probe_bundle(&env, &[]);
        let id = env.id("sched");
        rt_budget(&mut b, &id);
        b.set("/process/scheduler", sched.clone());
        let report = probed(env.berth(&["run", "--bundle", b.dir(), &id]).ok());
        expect(&report, &want, &format!("init with {sched}"));
    }
    // exec --process: each policy on a process of a running container (whose init keeps the
    // default policy).
    let mut b = sleeper(&env);
    let id = env.id("sched-exec");
    rt_budget(&mut b, &id);
    env.run_detached(&b, &id);
    for (i, (sched, want)) in policies().into_iter().enumerate() {
        let report = exec_probe(&env, &b, &id, &format!("p{i}"), json!({"scheduler": sched}));
        expect(&report, &want, &format!("exec with {sched}"));
    }
    // Without --process, exec takes the container's process.scheduler, as runc does.
    let mut b = sleeper(&env);
    b.set("/process/scheduler", json!({"policy": "SCHED_BATCH", "nice": 9}));
    let id = env.id("sched-inherit");
    env.run_detached(&b, &id);
    let report = probed(env.berth(&["exec", &id, PROBE]).ok());
    expect(&report, &[("policy", "3"), ("nice", "9")], "exec inheriting the config's scheduler");
    env.finish();
}

#[test]
fn scheduler_flags_parse_and_apply() {
    let env = Env::new();
    let cases: Vec<(Value, Vec<(&str, &str)>)> = vec![
        // The spec's spelling (oci-spec alone rejects it).
        (
            json!({"policy": "SCHED_OTHER", "nice": 3, "flags": ["SCHED_FLAG_RESET_ON_FORK"]}),
            vec![("policy", "0"), ("nice", "3"), ("sched_flags", "1")],
        ),
        // RECLAIM (2) and DL_OVERRUN (4) are reported back for a deadline task.
        (
            json!({"policy": "SCHED_DEADLINE", "runtime": 10000000, "deadline": 30000000, "period": 30000000,
                   "flags": ["SCHED_FLAG_RECLAIM", "SCHED_FLAG_DL_OVERRUN"]}),
            vec![("policy", "6"), ("sched_flags", "6")],
        ),
        // KEEP_POLICY: the nice value changes, the policy does not.
        (
            json!({"policy": "SCHED_BATCH", "nice": 7, "flags": ["SCHED_FLAG_KEEP_POLICY"]}),
            vec![("policy", "0"), ("nice", "7")],
        ),
        // KEEP_PARAMS keeps the policy and its parameters (the kernel applies only the flags
        // and utilization clamps then): only RESET_ON_FORK takes effect.
        (
            json!({"policy": "SCHED_BATCH", "nice": 7, "flags": ["SCHED_FLAG_KEEP_PARAMS", "SCHED_FLAG_RESET_ON_FORK"]}),
            vec![("policy", "0"), ("nice", "0"), ("sched_flags", "1")],
        ),
    ];
    for (sched, want) in cases {
        let mut b = probe_bundle(&env, &[]);
        b.set("/process/scheduler", sched.clone());
        let report = run_probe(&env, &b, "flags");
        expect(&report, &want, &format!("{sched}"));
    }
    env.finish();
}

#[test]
fn a_scheduler_the_kernel_refuses_fails_naming_the_field() {
    let env = Env::new();
    // Below the kernel's minimum deadline runtime (1024 ns): EINVAL on every kernel.
    let tiny = json!({"policy": "SCHED_DEADLINE", "runtime": 1000, "deadline": 10000000, "period": 10000000});
    let mut b = env.bundle(&["sh", "-c", "echo STARTED"]);
    b.set("/process/scheduler", tiny.clone());
    create_and_run_fail_clean(&env, &b, "sched-dl", "process.scheduler: the kernel refused SCHED_DEADLINE");
    if rt_group_sched() {
        // A real-time policy in a cgroup without a real-time budget.
        let mut b = env.bundle(&["sh", "-c", "echo STARTED"]);
        b.set("/process/scheduler", json!({"policy": "SCHED_FIFO", "priority": 10}));
        create_and_run_fail_clean(&env, &b, "sched-rt", "process.scheduler: the kernel refused SCHED_FIFO");
    } else {
        eprintln!("SKIPPED (FIFO without a budget): this kernel has no real-time group scheduling");
    }
    if !Path::new("/proc/sys/kernel/sched_util_clamp_min").exists() {
        // A kernel without CONFIG_UCLAMP_TASK refuses utilization clamping.
        let mut b = env.bundle(&["sh", "-c", "echo STARTED"]);
        b.set("/process/scheduler", json!({"policy": "SCHED_OTHER", "flags": ["SCHED_FLAG_UTIL_CLAMP_MIN"]}));
        create_and_run_fail_clean(&env, &b, "sched-uclamp", "process.scheduler: the kernel refused SCHED_OTHER");
    } else {
        eprintln!("SKIPPED (utilization clamping refused): this kernel supports it");
    }
    // exec --process: refused the same way; the process never runs.
    let b = sleeper(&env);
    let id = env.id("sched-exec-refused");
    env.run_detached(&b, &id);
    exec_refused(&env, &b, &id, "tiny", json!({"scheduler": tiny}), &["process.scheduler: the kernel refused"]);
    env.finish();
}

// ---------------------------------------------------------------------------------------------
// process.ioPriority

#[test]
fn io_priority_applies_to_the_init_and_to_exec() {
    let env = Env::new();
    let cases = [
        (json!({"class": "IOPRIO_CLASS_RT", "priority": 2}), "1", Some("2")),
        (json!({"class": "IOPRIO_CLASS_BE", "priority": 5}), "2", Some("5")),
        (json!({"class": "IOPRIO_CLASS_IDLE", "priority": 7}), "3", None),
    ];
    for (io, class, data) in &cases {
        let mut b = probe_bundle(&env, &[]);
        b.set("/process/ioPriority", io.clone());
        let report = run_probe(&env, &b, "ioprio");
        assert_eq!(report.get("ioprio_class").map(String::as_str), Some(*class), "init with {io}: {report:?}");
        if let Some(d) = data {
            assert_eq!(report.get("ioprio_data").map(String::as_str), Some(*d), "init with {io}: {report:?}");
        }
    }
    let b = sleeper(&env);
    let id = env.id("ioprio-exec");
    env.run_detached(&b, &id);
    for (i, (io, class, data)) in cases.iter().enumerate() {
        let report = exec_probe(&env, &b, &id, &format!("io{i}"), json!({"ioPriority": io}));
        assert_eq!(report.get("ioprio_class").map(String::as_str), Some(*class), "exec with {io}: {report:?}");
        if let Some(d) = data {
            assert_eq!(report.get("ioprio_data").map(String::as_str), Some(*d), "exec with {io}: {report:?}");
        }
    }
    env.finish();
}

// ---------------------------------------------------------------------------------------------
// process.execCPUAffinity

fn online_cpus() -> String {
    fs::read_to_string("/sys/devices/system/cpu/online").unwrap().trim().to_string()
}

/// The debug line `berth --debug exec` logs with the CPUs the new process started on, as the
/// kernel reports them for it (before it joins the container's cgroups).
fn initial_cpus(stderr: &str) -> Option<String> {
    let l = stderr.lines().find(|l| l.contains("process.execCPUAffinity.initial"))?;
    let rest = &l[l.find("runs on CPUs ")? + "runs on CPUs ".len()..];
    Some(rest.split_whitespace().next()?.to_string())
}

#[test]
fn exec_cpu_affinity_initial_and_final() {
    let cpus = online_cpus();
    if cpus != "0-1" && !cpus.starts_with("0-") {
        eprintln!("SKIPPED: needs CPUs 0 and 1 online (online: {cpus})");
        return;
    }
    let env = Env::new();
    let mut b = sleeper(&env);
    b.set("/process/execCPUAffinity", json!({"initial": "0", "final": "1"}));
    let id = env.id("affinity");
    let init = env.run_detached(&b, &id);
    // Not applicable to the init (runtime spec): it keeps the affinity berth was started with.
    let status = fs::read_to_string(format!("/proc/{init}/status")).unwrap();
    let mine = fs::read_to_string("/proc/self/status").unwrap();
    let allowed = |s: &str| s.lines().find(|l| l.starts_with("Cpus_allowed_list:")).unwrap().to_string();
    assert_eq!(allowed(&status), allowed(&mine), "the init's affinity changed");

    // exec without --process takes the container's execCPUAffinity.
    let out = env.berth(&["--debug", "exec", &id, PROBE]);
    let report = probed(out.ok());
    assert_eq!(report["affinity"], "1", "final: {report:?}");
    assert_eq!(initial_cpus(&out.stderr).as_deref(), Some("0"), "initial: {}", out.stderr);

    // --process: initial only; afterwards the container's CPUs (its cpuset), not `initial`.
    let doc = process_doc(&b, "initial-only", json!({"execCPUAffinity": {"initial": "1"}}));
    let out = env.berth(&["--debug", "exec", "--process", &doc, &id]);
    let report = probed(out.ok());
    assert_eq!(report["affinity"], "0,1", "without final: {report:?}");
    assert_eq!(initial_cpus(&out.stderr).as_deref(), Some("1"), "initial: {}", out.stderr);

    // --process: final only; an empty initial means "not set".
    let report = exec_probe(&env, &b, &id, "final-only", json!({"execCPUAffinity": {"initial": "", "final": "0"}}));
    assert_eq!(report["affinity"], "0", "final only: {report:?}");

    // A CPU that is not online: the kernel refuses, the process never runs.
    exec_refused(
        &env,
        &b,
        &id,
        "offline",
        json!({"execCPUAffinity": {"final": "900"}}),
        &["process.execCPUAffinity.final"],
    );
    exec_refused(
        &env,
        &b,
        &id,
        "offline-initial",
        json!({"execCPUAffinity": {"initial": "900"}}),
        &["process.execCPUAffinity.initial"],
    );
    env.finish();
}

// ---------------------------------------------------------------------------------------------
// linux.memoryPolicy

const MPOL_F_NUMA_BALANCING: i64 = 1 << 13;
const MPOL_F_RELATIVE_NODES: i64 = 1 << 14;
const MPOL_F_STATIC_NODES: i64 = 1 << 15;

/// `(linux.memoryPolicy, get_mempolicy mode with its flags, node mask)`.
fn memory_policies() -> Vec<(Value, i64, &'static str)> {
    vec![
        (json!({"mode": "MPOL_DEFAULT"}), 0, "0"),
        (json!({"mode": "MPOL_PREFERRED", "nodes": "0"}), 1, "0x1"),
        (json!({"mode": "MPOL_BIND", "nodes": "0"}), 2, "0x1"),
        (json!({"mode": "MPOL_INTERLEAVE", "nodes": "0"}), 3, "0x1"),
        (json!({"mode": "MPOL_LOCAL"}), 4, "0"),
        (json!({"mode": "MPOL_PREFERRED_MANY", "nodes": "0"}), 5, "0x1"),
        (json!({"mode": "MPOL_WEIGHTED_INTERLEAVE", "nodes": "0"}), 6, "0x1"),
        (json!({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_STATIC_NODES"]}), 2 | MPOL_F_STATIC_NODES, "0x1"),
        (
            json!({"mode": "MPOL_INTERLEAVE", "nodes": "0", "flags": ["MPOL_F_RELATIVE_NODES"]}),
            3 | MPOL_F_RELATIVE_NODES,
            "0x1",
        ),
        (
            json!({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_NUMA_BALANCING"]}),
            2 | MPOL_F_NUMA_BALANCING,
            "0x1",
        ),
    ]
}

#[test]
fn memory_policy_modes_and_flags_apply_to_the_init_and_to_exec() {
    let env = Env::new();
    let b = sleeper(&env);
    let id = env.id("mempolicy-exec");
    env.run_detached(&b, &id);
    for (policy, mode, nodes) in memory_policies() {
        let mut pb = probe_bundle(&env, &[]);
        pb.set("/linux/memoryPolicy", policy.clone());
        let report = run_probe(&env, &pb, "mempolicy");
        assert_eq!(report["mempolicy"], mode.to_string(), "init with {policy}: {report:?}");
        assert_eq!(report["mempolicy_nodes"], nodes, "init with {policy}: {report:?}");
    }
    // exec applies the container's policy: one container per policy, each exec'd into.
    for (i, (policy, mode, nodes)) in memory_policies().into_iter().enumerate() {
        let mut sb = sleeper(&env);
        sb.set("/linux/memoryPolicy", policy.clone());
        let sid = env.id(&format!("mempolicy-{i}"));
        env.run_detached(&sb, &sid);
        let report = probed(env.berth(&["exec", &sid, PROBE]).ok());
        assert_eq!(report["mempolicy"], mode.to_string(), "exec with {policy}: {report:?}");
        assert_eq!(report["mempolicy_nodes"], nodes, "exec with {policy}: {report:?}");
        env.berth(&["delete", "--force", &sid]).ok();
    }
    // A node this machine does not have: the kernel refuses.
    let mut rb = env.bundle(&["sh", "-c", "echo STARTED"]);
    rb.set("/linux/memoryPolicy", json!({"mode": "MPOL_BIND", "nodes": "63"}));
    create_and_run_fail_clean(&env, &rb, "mempolicy-bad", "linux.memoryPolicy: the kernel refused MPOL_BIND");
    env.finish();
}

// ---------------------------------------------------------------------------------------------
// linux.personality

#[test]
fn personality_applies_to_the_init_and_to_exec() {
    let env = Env::new();
    let mut b = probe_bundle(&env, &[]);
    b.set("/linux/personality", json!({"domain": "LINUX32"}));
    let report = run_probe(&env, &b, "linux32");
    assert_eq!(report["personality"], "0x8", "{report:?}");
    assert_eq!(report["machine"], "i686", "{report:?}");

    let mut s = sleeper(&env);
    s.set("/linux/personality", json!({"domain": "LINUX32"}));
    let id = env.id("linux32-exec");
    env.run_detached(&s, &id);
    let report = probed(env.berth(&["exec", &id, PROBE]).ok());
    assert_eq!(report["personality"], "0x8", "exec: {report:?}");
    assert_eq!(report["machine"], "i686", "exec: {report:?}");

    // LINUX is applied too: berth started under `setarch linux32` gives the container 64-bit
    // uname only with the field (the control shows the probe sees the inherited one).
    let setarch = |b: &Bundle, name: &str| {
        let id = env.id(name);
        let o = Command::new("setarch")
            .args(["linux32", BERTH, "--root"])
            .arg(env.root())
            .args(["run", "--bundle", b.dir(), &id])
            .output()
            .expect("setarch");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        probed(&String::from_utf8_lossy(&o.stdout))
    };
    let control = probe_bundle(&env, &[]);
    assert_eq!(setarch(&control, "inherit")["personality"], "0x8", "control: the probe sees the inherited domain");
    let mut b = probe_bundle(&env, &[]);
    b.set("/linux/personality", json!({"domain": "LINUX"}));
    let report = setarch(&b, "linux");
    assert_eq!(report["personality"], "0", "{report:?}");
    assert_eq!(report["machine"], "x86_64", "{report:?}");

    // The runtime spec defines no flag: one cannot be applied, so it is refused.
    let mut b = env.bundle(&["sh", "-c", "echo STARTED"]);
    b.set("/linux/personality", json!({"domain": "LINUX", "flags": ["ADDR_NO_RANDOMIZE"]}));
    create_and_run_fail_clean(&env, &b, "pers-flags", "linux.personality.flags[0]");
    env.finish();
}

// ---------------------------------------------------------------------------------------------
// linux.intelRdt

fn resctrl_mounted() -> bool {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split_once(" - ").is_some_and(|(_, post)| post.starts_with("resctrl ")))
}

#[test]
fn intel_rdt_without_resctrl_is_refused_naming_the_field() {
    if resctrl_mounted() {
        eprintln!("SKIPPED: resctrl is mounted here; this test covers hosts without it");
        return;
    }
    let env = Env::new();
    for (name, rdt) in [
        ("closid", json!({"closID": "guaranteed"})),
        ("l3", json!({"l3CacheSchema": "L3:0=ff"})),
        ("mb", json!({"closID": "x", "memBwSchema": "MB:0=50"})),
        ("schemata", json!({"schemata": ["L3:0=f"]})),
        ("empty", json!({})),
    ] {
        let mut b = env.bundle(&["sh", "-c", "echo STARTED"]);
        b.set("/linux/intelRdt", rdt);
        create_and_run_fail_clean(&env, &b, &format!("rdt-{name}"), "linux.intelRdt: no resctrl filesystem is mounted");
    }
    env.finish();
}

// ---------------------------------------------------------------------------------------------
// LSM labels

fn apparmor_enabled() -> bool {
    fs::read_to_string("/sys/module/apparmor/parameters/enabled").is_ok_and(|s| s.trim() == "Y")
}

fn selinux_enabled() -> bool {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split_once(" - ").is_some_and(|(_, post)| post.starts_with("selinuxfs ")))
}

#[test]
fn apparmor_profile_without_apparmor_fails_at_init_as_in_runc() {
    if apparmor_enabled() {
        eprintln!("SKIPPED: AppArmor is enabled here; this test covers hosts without it");
        return;
    }
    let env = Env::new();
    let mut b = env.bundle(&["sh", "-c", "echo STARTED"]);
    b.set("/process/apparmorProfile", json!("berth-test"));
    create_and_run_fail_clean(
        &env,
        &b,
        "apparmor",
        "process.apparmorProfile: apparmor failed to apply profile: write /proc/self/attr/exec",
    );
    let s = sleeper(&env);
    let id = env.id("apparmor-exec");
    env.run_detached(&s, &id);
    exec_refused(
        &env,
        &s,
        &id,
        "aa",
        json!({"apparmorProfile": "berth-test"}),
        &["apparmorProfile: apparmor failed to apply profile"],
    );
    env.finish();
}

#[test]
fn selinux_label_without_selinux_fails_before_anything_starts_as_in_runc() {
    if selinux_enabled() {
        eprintln!("SKIPPED: SELinux is enabled here; this test covers hosts without it");
        return;
    }
    let env = Env::new();
    let mut b = env.bundle(&["sh", "-c", "echo STARTED"]);
    b.set("/process/selinuxLabel", json!("system_u:system_r:container_t:s0:c1,c2"));
    create_and_run_fail_clean(
        &env,
        &b,
        "selinux",
        "process.selinuxLabel: selinux label is specified in config, but selinux is disabled or not supported",
    );
    let s = sleeper(&env);
    let id = env.id("selinux-exec");
    env.run_detached(&s, &id);
    exec_refused(
        &env,
        &s,
        &id,
        "se",
        json!({"selinuxLabel": "system_u:system_r:container_t:s0"}),
        &["selinuxLabel: selinux label is specified in config, but selinux is disabled or not supported"],
    );
    env.finish();
}

#[test]
fn mount_label_without_selinux_fails_the_labelled_mounts_as_in_runc() {
    if selinux_enabled() {
        eprintln!("SKIPPED: SELinux is enabled here; this test covers hosts without it");
        return;
    }
    let env = Env::new();
    let label = "system_u:object_r:container_file_t:s0:c1,c2";
    let mut b = env.bundle(&["sh", "-c", "echo STARTED"]);
    b.set("/linux/mountLabel", json!(label));
    // runc 1.1 passes context= to tmpfs (the first, /dev), devpts and the masking tmpfs.
    create_and_run_fail_clean(&env, &b, "mountlabel", "linux.mountLabel");
    // ... and not to proc, sysfs, mqueue or bind mounts: with only those, runc runs the
    // container, and so does berth.
    let mut b = env.bundle_own(&["sh", "-c", "echo STARTED"]);
    b.set("/linux/mountLabel", json!(label));
    let keep = ["/proc", "/sys", "/dev/mqueue"];
    let mounts: Vec<Value> = b.config["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| keep.contains(&m["destination"].as_str().unwrap()))
        .cloned()
        .collect();
    b.set("/mounts", Value::Array(mounts));
    b.push("/mounts", json!({"destination": "/mnt", "type": "bind", "source": "/tmp", "options": ["rbind", "ro"]}));
    b.set("/linux/maskedPaths", json!(["/proc/kcore"]));
    let id = env.id("mountlabel-ok");
    let out = env.berth(&["run", "--bundle", b.dir(), &id]);
    assert!(out.ok().contains("STARTED"), "{out:?}");
    env.finish();
}
