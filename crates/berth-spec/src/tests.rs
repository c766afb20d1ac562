//! Crate-level tests: one table row per validation rule with its exact message, the runc
//! default spec, leniencies, located parse errors, and a no-panic property over arbitrary
//! and mutated documents.

use std::path::Path;

use oci_spec::runtime::{Capability, LinuxNamespaceType};
use proptest::prelude::*;
use serde_json::{json, Value};

use crate::*;

fn base() -> Value {
    serde_json::from_str(DEFAULT_SPEC_JSON).expect("embedded default parses")
}

/// Sets the value at a JSON pointer, creating missing object members on the way; `-` as the
/// last step appends to an array.
fn set(v: &mut Value, ptr: &str, x: Value) {
    let (parent, last) = ptr.rsplit_once('/').expect("pointer has a /");
    let mut cur = v;
    for step in parent.split('/').skip(1) {
        cur = match cur {
            Value::Object(m) => m.entry(step).or_insert_with(|| json!({})),
            Value::Array(a) => a.get_mut(step.parse::<usize>().expect("index")).expect("index in range"),
            other => panic!("cannot descend into {other}"),
        };
    }
    match cur {
        Value::Object(m) => {
            m.insert(last.to_string(), x);
        }
        Value::Array(a) if last == "-" => a.push(x),
        Value::Array(a) => a[last.parse::<usize>().expect("index")] = x,
        other => panic!("cannot set in {other}"),
    }
}

fn del(v: &mut Value, ptr: &str) {
    let (parent, last) = ptr.rsplit_once('/').expect("pointer has a /");
    let p = if parent.is_empty() { v } else { v.pointer_mut(parent).expect("parent exists") };
    match p {
        Value::Object(m) => {
            m.remove(last);
        }
        Value::Array(a) => {
            a.remove(last.parse::<usize>().expect("index"));
        }
        _ => panic!("cannot delete in {p}"),
    }
}

fn parse_value(v: &Value) -> Result<Loaded, SpecError> {
    parse(&serde_json::to_vec_pretty(v).expect("serializes"))
}

fn mutated(f: impl FnOnce(&mut Value)) -> Result<Loaded, SpecError> {
    let mut v = base();
    f(&mut v);
    parse_value(&v)
}

/// Removes a namespace type from the default list.
fn drop_ns(v: &mut Value, t: &str) {
    let list = v.pointer_mut("/linux/namespaces").and_then(Value::as_array_mut).expect("namespaces");
    list.retain(|n| n["type"] != t);
}

fn user_ns(v: &mut Value) {
    set(v, "/linux/namespaces/-", json!({"type": "user"}));
    set(v, "/linux/uidMappings", json!([{"containerID": 0, "hostID": 100000, "size": 65536}]));
    set(v, "/linux/gidMappings", json!([{"containerID": 0, "hostID": 100000, "size": 65536}]));
}

type Mutation = fn(&mut Value);

/// `(mutation of the runc default spec, exact error message)`.
fn rule_table() -> Vec<(Mutation, &'static str)> {
    vec![
        // ociVersion
        (|v| set(v, "/ociVersion", json!("")), "ociVersion: must be set"),
        (|v| del(v, "/ociVersion"), "ociVersion: must be set"),
        (
            |v| set(v, "/ociVersion", json!("2.0.0")),
            "ociVersion: unsupported version \"2.0.0\" (berth reads 1.x)",
        ),
        // root
        (|v| del(v, "/root"), "root: must be set"),
        (|v| set(v, "/root/path", json!("")), "root.path: must not be empty"),
        (
            |v| set(v, "/root/path", json!("a\u{0}b")),
            "root.path: must not contain a NUL byte",
        ),
        // process
        (|v| del(v, "/process"), "process: must be set to create a container"),
        (|v| set(v, "/process/args", json!([])), "process.args: must not be empty"),
        (|v| del(v, "/process/args"), "process.args: must not be empty"),
        (
            |v| set(v, "/process/args", json!([""])),
            "process.args[0]: must not be empty (it names the program to run)",
        ),
        (
            |v| set(v, "/process/args", json!(["sh", "-c", "a\u{0}"])),
            "process.args[2]: must not contain a NUL byte",
        ),
        (|v| set(v, "/process/cwd", json!("rel")), "process.cwd: must be an absolute path"),
        (|v| del(v, "/process/cwd"), "process.cwd: must not be empty"),
        (
            |v| set(v, "/process/env/-", json!("FOO")),
            "process.env[2]: \"FOO\" is not of the form KEY=VALUE",
        ),
        (
            |v| set(v, "/process/env/-", json!("=x")),
            "process.env[2]: variable name must not be empty",
        ),
        (
            |v| set(v, "/process/env/-", json!("A=\u{0}")),
            "process.env[2]: must not contain a NUL byte",
        ),
        (
            |v| set(v, "/process/rlimits/-", json!({"type": "RLIMIT_NOFILE", "hard": 1, "soft": 1})),
            "process.rlimits[1].type: duplicate rlimit \"RLIMIT_NOFILE\"",
        ),
        (
            |v| set(v, "/process/rlimits/0/soft", json!(2048)),
            "process.rlimits[0].soft: 2048 exceeds the hard limit 1024",
        ),
        (
            |v| set(v, "/process/oomScoreAdj", json!(1001)),
            "process.oomScoreAdj: 1001 is out of range -1000..=1000",
        ),
        (
            |v| set(v, "/process/oomScoreAdj", json!(-1001)),
            "process.oomScoreAdj: -1001 is out of range -1000..=1000",
        ),
        (
            |v| set(v, "/process/ioPriority", json!({"class": "IOPRIO_CLASS_BE", "priority": 8})),
            "process.ioPriority.priority: 8 is out of range 0..=7",
        ),
        (
            |v| set(v, "/process/scheduler", json!({"policy": "SCHED_OTHER", "nice": 20})),
            "process.scheduler.nice: 20 is out of range -20..=19",
        ),
        (
            |v| set(v, "/process/scheduler", json!({"policy": "SCHED_OTHER", "flags": ["SCHED_RESET_ON_FORK"]})),
            "process.scheduler.flags[0]: unknown flag \"SCHED_RESET_ON_FORK\" (the runtime spec defines \
             SCHED_FLAG_RESET_ON_FORK, SCHED_FLAG_RECLAIM, SCHED_FLAG_DL_OVERRUN, SCHED_FLAG_KEEP_POLICY, \
             SCHED_FLAG_KEEP_PARAMS, SCHED_FLAG_UTIL_CLAMP_MIN, SCHED_FLAG_UTIL_CLAMP_MAX)",
        ),
        (
            |v| set(v, "/process/scheduler", json!({"policy": "SCHED_ISO"})),
            "process.scheduler.policy: SCHED_ISO is not implemented by Linux",
        ),
        (
            |v| set(v, "/process/scheduler", json!({"policy": "SCHED_FIFO"})),
            "process.scheduler.priority: required for SCHED_FIFO (1..=99)",
        ),
        (
            |v| set(v, "/process/scheduler", json!({"policy": "SCHED_RR", "priority": 100})),
            "process.scheduler.priority: 100 is out of range 1..=99 for SCHED_RR",
        ),
        (
            |v| set(v, "/process/scheduler", json!({"policy": "SCHED_BATCH", "priority": 5})),
            "process.scheduler.priority: only SCHED_FIFO and SCHED_RR take a priority",
        ),
        (
            |v| set(v, "/process/scheduler", json!({"policy": "SCHED_FIFO", "priority": 5, "period": 1000})),
            "process.scheduler.period: only SCHED_DEADLINE takes runtime, deadline and period",
        ),
        (
            |v| set(v, "/process/ioPriority", json!({"priority": 1})),
            "process.ioPriority.class: required (IOPRIO_CLASS_RT, IOPRIO_CLASS_BE or IOPRIO_CLASS_IDLE)",
        ),
        (
            |v| set(v, "/process/execCPUAffinity", json!({"initial": "3-1"})),
            "process.execCPUAffinity.initial: \"3-1\": \"3-1\" is a descending range",
        ),
        (
            |v| set(v, "/process/execCPUAffinity", json!({"final": "0,1024"})),
            "process.execCPUAffinity.final: \"0,1024\": 1024 is above the largest number berth supports (1023)",
        ),
        (
            |v| set(v, "/process/apparmorProfile", json!("a\u{0}")),
            "process.apparmorProfile: must not contain a NUL byte",
        ),
        (
            |v| set(v, "/process/selinuxLabel", json!("a\u{0}")),
            "process.selinuxLabel: must not contain a NUL byte",
        ),
        // namespaces
        (
            |v| set(v, "/linux/namespaces/-", json!({"type": "pid"})),
            "linux.namespaces[5].type: duplicate namespace \"pid\"",
        ),
        (
            |v| set(v, "/linux/namespaces/2", json!({"type": "network"})),
            "linux.namespaces[2].type: duplicate namespace \"network\"",
        ),
        (
            |v| set(v, "/linux/namespaces/0/path", json!("proc/1/ns/pid")),
            "linux.namespaces[0].path: must be an absolute path",
        ),
        // user namespace and ID mappings
        (
            |v| set(v, "/linux/namespaces/-", json!({"type": "user"})),
            "linux.uidMappings: required when creating a user namespace",
        ),
        (
            |v| {
                user_ns(v);
                del(v, "/linux/gidMappings");
            },
            "linux.gidMappings: required when creating a user namespace",
        ),
        (
            |v| set(v, "/linux/uidMappings", json!([{"containerID": 0, "hostID": 1000, "size": 1}])),
            "linux.uidMappings: set, but linux.namespaces has no user namespace",
        ),
        (
            |v| set(v, "/linux/gidMappings", json!([{"containerID": 0, "hostID": 1000, "size": 1}])),
            "linux.gidMappings: set, but linux.namespaces has no user namespace",
        ),
        (
            |v| {
                user_ns(v);
                set(v, "/linux/uidMappings/0/size", json!(0));
            },
            "linux.uidMappings: no mapping for container uid 0",
        ),
        (
            |v| {
                user_ns(v);
                set(v, "/linux/uidMappings/-", json!({"containerID": 70000, "hostID": 1, "size": 0}));
            },
            "linux.uidMappings[1].size: must be greater than 0",
        ),
        (
            |v| {
                user_ns(v);
                set(v, "/linux/uidMappings/0/hostID", json!(4_294_967_295u32));
            },
            "linux.uidMappings[0].hostID: 4294967295 is out of range (0 to 2147483647)",
        ),
        (
            |v| {
                user_ns(v);
                set(v, "/linux/gidMappings/0/containerID", json!(2_147_483_000u32));
                set(v, "/linux/gidMappings/-", json!({"containerID": 0, "hostID": 1, "size": 1}));
            },
            "linux.gidMappings[0].size: containerID 2147483000 + size 65536 - 1 = 2147548535 is out of range (0 to 2147483647)",
        ),
        (
            |v| {
                user_ns(v);
                set(v, "/linux/uidMappings/-", json!({"containerID": 10, "hostID": 1, "size": 5}));
            },
            "linux.uidMappings[1]: containerID range overlaps linux.uidMappings[0]",
        ),
        (
            |v| {
                user_ns(v);
                set(v, "/linux/uidMappings/-", json!({"containerID": 70000, "hostID": 100010, "size": 5}));
            },
            "linux.uidMappings[1]: hostID range overlaps linux.uidMappings[0]",
        ),
        (
            |v| {
                user_ns(v);
                set(v, "/linux/gidMappings/0/containerID", json!(1));
            },
            "linux.gidMappings: no mapping for container gid 0",
        ),
        // hostname / domainname
        (
            |v| drop_ns(v, "uts"),
            "hostname: requires a UTS namespace in linux.namespaces (it would change the host's)",
        ),
        (
            |v| {
                drop_ns(v, "uts");
                del(v, "/hostname");
                set(v, "/domainname", json!("example.org"));
            },
            "domainname: requires a UTS namespace in linux.namespaces (it would change the host's)",
        ),
        (
            |v| set(v, "/hostname", json!("h".repeat(65))),
            "hostname: 65 bytes long; the limit is 64",
        ),
        // sysctl
        (
            |v| {
                drop_ns(v, "network");
                set(v, "/linux/sysctl", json!({"net.ipv4.ip_forward": "1"}));
            },
            "linux.sysctl[\"net.ipv4.ip_forward\"]: requires a network namespace in linux.namespaces (it would change the host's)",
        ),
        (
            |v| {
                drop_ns(v, "ipc");
                set(v, "/linux/sysctl", json!({"kernel.shmmax": "1"}));
            },
            "linux.sysctl[\"kernel.shmmax\"]: requires an IPC namespace in linux.namespaces (it would change the host's)",
        ),
        (
            |v| {
                drop_ns(v, "ipc");
                set(v, "/linux/sysctl", json!({"fs.mqueue.msg_max": "1"}));
            },
            "linux.sysctl[\"fs.mqueue.msg_max\"]: requires an IPC namespace in linux.namespaces (it would change the host's)",
        ),
        (
            |v| {
                drop_ns(v, "ipc");
                set(v, "/linux/sysctl", json!({"kernel/sem": "1"}));
            },
            "linux.sysctl[\"kernel/sem\"]: requires an IPC namespace in linux.namespaces (it would change the host's)",
        ),
        (
            |v| {
                drop_ns(v, "uts");
                del(v, "/hostname");
                set(v, "/linux/sysctl", json!({"kernel.domainname": "x"}));
            },
            "linux.sysctl[\"kernel.domainname\"]: requires a UTS namespace in linux.namespaces (it would change the host's)",
        ),
        (
            |v| set(v, "/linux/sysctl", json!({"kernel.hostname": "x"})),
            "linux.sysctl[\"kernel.hostname\"]: conflicts with the \"hostname\" field; set that instead",
        ),
        (
            |v| set(v, "/linux/sysctl", json!({"vm.swappiness": "1", "zz.z": "1"})),
            "linux.sysctl[\"vm.swappiness\"]: is not in a separate kernel namespace; setting it would change the host",
        ),
        (
            |v| set(v, "/linux/sysctl", json!({"net/../../etc/x": "1"})),
            "linux.sysctl[\"net/../../etc/x\"]: not a valid sysctl name",
        ),
        (
            |v| set(v, "/linux/sysctl", json!({"net..x": "1"})),
            "linux.sysctl[\"net..x\"]: not a valid sysctl name",
        ),
        // time namespace
        (
            |v| set(v, "/linux/timeOffsets", json!({"monotonic": {"secs": 1}})),
            "linux.timeOffsets: set, but linux.namespaces has no time namespace",
        ),
        (
            |v| {
                set(v, "/linux/namespaces/-", json!({"type": "time", "path": "/proc/1/ns/time"}));
                set(v, "/linux/timeOffsets", json!({"monotonic": {"secs": 1}}));
            },
            "linux.timeOffsets: cannot be applied to a joined time namespace (its path is set)",
        ),
        (
            |v| {
                set(v, "/linux/namespaces/-", json!({"type": "time"}));
                set(v, "/linux/timeOffsets", json!({"realtime": {"secs": 1}}));
            },
            "linux.timeOffsets.realtime: unknown clock (want \"monotonic\" or \"boottime\")",
        ),
        (
            |v| {
                set(v, "/linux/namespaces/-", json!({"type": "time"}));
                set(v, "/linux/timeOffsets", json!({"boottime": {"secs": 1, "nanosecs": 1_000_000_000u32}}));
            },
            "linux.timeOffsets.boottime.nanosecs: 1000000000 must be less than 1000000000",
        ),
        // mounts
        (
            |v| set(v, "/mounts/-", json!({"destination": "", "type": "tmpfs"})),
            "mounts[7].destination: must not be empty",
        ),
        (
            |v| set(v, "/mounts/-", json!({"destination": "/mnt", "options": ["rbind"]})),
            "mounts[7].source: required for bind mounts",
        ),
        (
            |v| set(v, "/mounts/-", json!({"destination": "/mnt", "type": "bind", "source": ""})),
            "mounts[7].source: required for bind mounts",
        ),
        (
            |v| set(v, "/mounts/-", json!({"destination": "/mnt", "source": "/tmp"})),
            "mounts[7].type: required unless the mount is a bind mount",
        ),
        (
            |v| set(v, "/mounts/-", json!({"destination": "/mnt", "type": "tmpfs", "options": ["size=1\u{0}"]})),
            "mounts[7].options[0]: must not contain a NUL byte",
        ),
        (
            |v| set(v, "/mounts/-", json!({"destination": "/mnt", "type": "bind", "source": "/tmp",
                "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}]})),
            "mounts[7].gidMappings: required when uidMappings is set",
        ),
        (
            |v| set(v, "/mounts/-", json!({"destination": "/mnt", "type": "tmpfs",
                "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}],
                "gidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}]})),
            "mounts[7].uidMappings: id-mapped mounts must be bind mounts",
        ),
        (
            |v| set(v, "/mounts/-", json!({"destination": "/mnt", "type": "bind", "source": "/tmp",
                "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}],
                "gidMappings": [{"containerID": 0, "hostID": 1000, "size": 0}]})),
            "mounts[7].gidMappings[0].size: must be greater than 0",
        ),
        // devices
        (
            |v| set(v, "/linux/devices", json!([{"path": "/dev/x", "type": "a", "major": 1, "minor": 3}])),
            "linux.devices[0].type: must be one of \"c\", \"b\", \"u\", \"p\" (got \"a\")",
        ),
        (
            |v| set(v, "/linux/devices", json!([{"path": "dev/null", "type": "c", "major": 1, "minor": 3}])),
            "linux.devices[0].path: must be an absolute path",
        ),
        (
            |v| set(v, "/linux/devices", json!([{"type": "c", "major": 1, "minor": 3}])),
            "linux.devices[0].path: must not be empty",
        ),
        (
            |v| set(v, "/linux/devices", json!([{"path": "/dev/null", "type": "c", "minor": 3}])),
            "linux.devices[0].major: required for device type \"c\"",
        ),
        (
            |v| set(v, "/linux/devices", json!([{"path": "/dev/sda", "type": "b", "major": 8}])),
            "linux.devices[0].minor: required for device type \"b\"",
        ),
        (
            |v| set(v, "/linux/devices", json!([{"path": "/dev/x", "type": "u", "major": 1, "minor": -3}])),
            "linux.devices[0].minor: must not be negative",
        ),
        (
            |v| set(v, "/linux/devices", json!([{"path": "/dev/x", "type": "c", "major": 1, "minor": 3, "fileMode": 0o100666}])),
            "linux.devices[0].fileMode: 0o100666 has bits outside 0o7777 (the type comes from \"type\")",
        ),
        // masked / read-only paths
        (
            |v| set(v, "/linux/maskedPaths/-", json!("proc/foo")),
            "linux.maskedPaths[10]: must be an absolute path",
        ),
        (
            |v| set(v, "/linux/readonlyPaths/-", json!("")),
            "linux.readonlyPaths[5]: must be an absolute path",
        ),
        (
            |v| drop_ns(v, "mount"),
            "linux.maskedPaths: requires a mount namespace in linux.namespaces",
        ),
        // rootfsPropagation, cgroupsPath
        (
            |v| set(v, "/linux/rootfsPropagation", json!("bogus")),
            "linux.rootfsPropagation: unsupported value \"bogus\" (want one of private, rprivate, slave, rslave, shared, rshared, unbindable, runbindable)",
        ),
        (
            |v| set(v, "/linux/cgroupsPath", json!("/a\u{0}")),
            "linux.cgroupsPath: must not contain a NUL byte",
        ),
        // resources
        (
            |v| set(v, "/linux/resources/devices/-", json!({"allow": true, "type": "c", "access": "rwx"})),
            "linux.resources.devices[1].access: \"rwx\": want a combination of r, w and m",
        ),
        (
            |v| set(v, "/linux/resources/unified", json!({"../../memory.max": "1"})),
            "linux.resources.unified[\"../../memory.max\"]: must be a cgroup file name (no \"/\")",
        ),
        (
            |v| set(v, "/linux/resources/hugepageLimits", json!([{"pageSize": "../2MB", "limit": 1}])),
            "linux.resources.hugepageLimits[0].pageSize: \"../2MB\" is not a page size such as \"2MB\"",
        ),
        (
            |v| set(v, "/linux/intelRdt", json!({"closID": ".."})),
            "linux.intelRdt.closID: must be a plain resctrl group name (no \"/\")",
        ),
        (
            |v| set(v, "/linux/intelRdt", json!({"memBwSchema": "0=50"})),
            "linux.intelRdt.memBwSchema: \"0=50\" must start with \"MB:\"",
        ),
        (
            |v| set(v, "/linux/intelRdt", json!({"memBwSchema": "MB:0=50\nL3:0=f"})),
            "linux.intelRdt.memBwSchema: must not contain a newline",
        ),
        (
            |v| set(v, "/linux/intelRdt", json!({"l3CacheSchema": "L3:0=f\nMB:0=1"})),
            "linux.intelRdt.l3CacheSchema: must not contain a newline",
        ),
        (
            |v| set(v, "/linux/intelRdt", json!({"schemata": ["L3:0=f", "L2:0=f\nMB:0=1"]})),
            "linux.intelRdt.schemata[1]: must not contain a newline (one line per entry)",
        ),
        (
            |v| set(v, "/linux/personality", json!({"domain": "LINUX32", "flags": ["X"]})),
            "linux.personality.flags[0]: \"X\" is not supported (the runtime spec defines no personality flags)",
        ),
        (
            |v| set(v, "/linux/memoryPolicy", json!({"mode": "MPOL_BIND"})),
            "linux.memoryPolicy.nodes: required for MPOL_BIND",
        ),
        (
            |v| set(v, "/linux/memoryPolicy", json!({"mode": "MPOL_WEIGHTED_INTERLEAVE", "nodes": ""})),
            "linux.memoryPolicy.nodes: required for MPOL_WEIGHTED_INTERLEAVE",
        ),
        (
            |v| set(v, "/linux/memoryPolicy", json!({"mode": "MPOL_DEFAULT", "nodes": "0"})),
            "linux.memoryPolicy.nodes: MPOL_DEFAULT takes no nodes",
        ),
        (
            |v| set(v, "/linux/memoryPolicy", json!({"mode": "MPOL_LOCAL", "nodes": "0-1"})),
            "linux.memoryPolicy.nodes: MPOL_LOCAL takes no nodes",
        ),
        (
            |v| set(v, "/linux/memoryPolicy", json!({"mode": "MPOL_INTERLEAVE", "nodes": "0,x"})),
            "linux.memoryPolicy.nodes: \"0,x\": \"x\" is not a number",
        ),
        (
            |v| set(v, "/linux/memoryPolicy", json!({"mode": "MPOL_BIND", "nodes": "0",
                "flags": ["MPOL_F_STATIC_NODES", "MPOL_F_RELATIVE_NODES"]})),
            "linux.memoryPolicy.flags: MPOL_F_STATIC_NODES and MPOL_F_RELATIVE_NODES exclude each other",
        ),
        (
            |v| set(v, "/linux/mountLabel", json!("a\u{0}")),
            "linux.mountLabel: must not contain a NUL byte",
        ),
        // hooks
        (
            |v| set(v, "/hooks", json!({"prestart": [{"path": "true"}]})),
            "hooks.prestart[0].path: must be an absolute path",
        ),
        (
            |v| set(v, "/hooks", json!({"createRuntime": [{"path": ""}]})),
            "hooks.createRuntime[0].path: must be an absolute path",
        ),
        (
            |v| set(v, "/hooks", json!({"poststop": [{"path": "/bin/true"}, {"path": "/bin/true", "timeout": 0}]})),
            "hooks.poststop[1].timeout: must be greater than 0 (got 0)",
        ),
        // seccomp
        (
            |v| set(v, "/linux/seccomp", json!({"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": "/run/x.sock"})),
            "linux.seccomp.defaultAction: SCMP_ACT_NOTIFY cannot be the default action",
        ),
        (
            |v| set(v, "/linux/seccomp", json!({"defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_NOTIFY"}]})),
            "linux.seccomp.listenerPath: required when an action is SCMP_ACT_NOTIFY",
        ),
        (
            |v| set(v, "/linux/seccomp", json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/x.sock",
                "syscalls": [{"names": ["getcwd", "write"], "action": "SCMP_ACT_NOTIFY"}]})),
            "linux.seccomp.syscalls[0].names[1]: SCMP_ACT_NOTIFY cannot be used for write",
        ),
        (
            |v| set(v, "/linux/seccomp", json!({"defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO"}, {"names": [], "action": "SCMP_ACT_ERRNO"}]})),
            "linux.seccomp.syscalls[1].names: must not be empty",
        ),
        (
            |v| set(v, "/linux/seccomp", json!({"defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": [""], "action": "SCMP_ACT_ERRNO"}]})),
            "linux.seccomp.syscalls[0].names[0]: must not be empty",
        ),
        (
            |v| set(v, "/linux/seccomp", json!({"defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["kill"], "action": "SCMP_ACT_ERRNO",
                    "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}, {"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]})),
            "linux.seccomp.syscalls[0].args[1].index: 6 is out of range 0..=5",
        ),
    ]
}

#[test]
fn every_rule_reports_its_path_and_problem() {
    // The base itself must be valid, or every row would pass for the wrong reason.
    let ok = parse_value(&base()).expect("runc default spec is valid");
    assert!(ok.warnings.is_empty(), "{:?}", ok.warnings);
    let mut failures = Vec::new();
    for (i, (mutate, want)) in rule_table().into_iter().enumerate() {
        match mutated(mutate) {
            Ok(_) => failures.push(format!("row {i}: accepted, want {want:?}")),
            Err(e) => {
                if e.to_string() != want {
                    failures.push(format!("row {i}:\n   got {e}\n  want {want}"));
                }
                assert!(matches!(e, SpecError::Invalid { .. }), "row {i}: {e:?}");
                let path = want.split_once(": ").map(|(p, _)| p);
                assert_eq!(e.path(), path, "row {i}");
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Specs runc accepts that must stay accepted (some with a warning).
#[test]
fn accepted_variants_and_their_warnings() {
    let cases: Vec<(Mutation, &[&str])> = vec![
        (|_| {}, &[]),
        // Unknown top-level and nested fields are ignored.
        (
            |v| {
                set(v, "/futureField", json!({"x": 1}));
                set(v, "/process/futureField", json!(1));
                set(v, "/linux/futureField", json!([]));
            },
            &[],
        ),
        (|v| del(v, "/process/user"), &[]),
        (|v| set(v, "/process/user", Value::Null), &[]),
        (
            |v| {
                del(v, "/linux");
                del(v, "/hostname");
            },
            &[],
        ),
        (|v| del(v, "/hostname"), &[]),
        (|v| set(v, "/ociVersion", json!("1.2.1")), &[]),
        (|v| set(v, "/process/cwd", json!("/work")), &[]),
        (|v| set(v, "/process/oomScoreAdj", json!(-1000)), &[]),
        (|v| set(v, "/linux/namespaces/0/path", json!("")), &[]),
        (|v| set(v, "/linux/namespaces/-", json!({"type": "cgroup"})), &[]),
        (|v| user_ns(v), &[]),
        // Joining a user namespace: mappings are that namespace's business.
        (|v| set(v, "/linux/namespaces/-", json!({"type": "user", "path": "/proc/1/ns/user"})), &[]),
        (
            |v| set(v, "/linux/namespaces/3", json!({"type": "uts", "path": "/proc/1/ns/uts"})),
            &["hostname: will be set in the joined UTS namespace /proc/1/ns/uts, changing it for everyone in it"],
        ),
        (
            |v| set(v, "/linux/sysctl", json!({
                "net.ipv4.ip_forward": "1", "kernel.shm_rmid_forced": "1", "kernel.msgmax": "1",
                "kernel.sem": "1 2 3 4", "kernel.shm_next_id": "1", "fs.mqueue.queues_max": "1",
                "kernel.domainname": "x", "net/ipv4/conf/all/forwarding": "1"})),
            &[],
        ),
        // A joined netns path passes here; the runtime must refuse the host's own netns.
        (|v| {
            set(v, "/linux/namespaces/1/path", json!("/var/run/netns/x"));
            set(v, "/linux/sysctl", json!({"net.core.somaxconn": "1024"}));
        }, &[]),
        (|v| {
            set(v, "/linux/namespaces/-", json!({"type": "time"}));
            set(v, "/linux/timeOffsets", json!({"monotonic": {"secs": -5}, "boottime": {"nanosecs": 5}}));
        }, &[]),
        (
            |v| set(v, "/mounts/-", json!({"destination": "tmp", "type": "tmpfs", "source": "tmpfs"})),
            &["mounts[7].destination: \"tmp\" is not absolute; treating it as relative to \"/\" (as runc does)"],
        ),
        (|v| set(v, "/mounts/-", json!({"destination": "/mnt", "type": "bind", "source": "data"})), &[]),
        (|v| set(v, "/mounts/-", json!({"destination": "/mnt", "source": "/data", "options": ["bind", "ro"]})), &[]),
        (|v| set(v, "/mounts/-", json!({"destination": "/mnt", "type": "none", "source": "/data", "options": ["rbind"],
            "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}],
            "gidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}]})), &[]),
        (|v| set(v, "/linux/devices", json!([
            {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o666, "uid": 0, "gid": 0},
            {"path": "/dev/pipe", "type": "p"}])), &[]),
        (
            |v| set(v, "/linux/devices", json!([{"path": "/fuse", "type": "c", "major": 10, "minor": 229}])),
            &["linux.devices[0].path: /fuse is outside /dev"],
        ),
        (
            |v| set(v, "/linux/cgroupsPath", json!("../../escape")),
            &["linux.cgroupsPath: ../../escape contains \"..\"; it is resolved lexically and cannot leave the cgroup root (as in runc)"],
        ),
        (|v| set(v, "/linux/cgroupsPath", json!("system.slice:docker:abc")), &[]),
        (
            |v| set(v, "/process/user/umask", json!(0o7777)),
            &["process.user.umask: 0o7777 has bits outside 0o777, which the kernel ignores"],
        ),
        (|v| set(v, "/process/user/umask", json!(0o22)), &[]),
        (
            |v| set(v, "/linux/seccomp", json!({})),
            &["linux.seccomp: no defaultAction and no syscalls: seccomp is disabled (as in runc)"],
        ),
        (|v| set(v, "/linux/seccomp", json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
            "architectures": ["SCMP_ARCH_X86_64"], "flags": ["SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
            "listenerPath": "/run/agent.sock",
            "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
                         {"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"},
                         {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                          "args": [{"index": 5, "value": 8, "op": "SCMP_CMP_EQ"}]}]})), &[]),
        (|v| set(v, "/linux/personality", json!({"domain": "LINUX32", "flags": []})), &[]),
        // Every scheduler flag by the runtime spec's name (oci-spec alone misspells two).
        (|v| set(v, "/process/scheduler", json!({"policy": "SCHED_DEADLINE", "runtime": 1, "deadline": 2,
            "period": 3, "flags": ["SCHED_FLAG_RESET_ON_FORK", "SCHED_FLAG_RECLAIM", "SCHED_FLAG_DL_OVERRUN",
            "SCHED_FLAG_KEEP_POLICY", "SCHED_FLAG_KEEP_PARAMS", "SCHED_FLAG_UTIL_CLAMP_MIN",
            "SCHED_FLAG_UTIL_CLAMP_MAX"]})), &[]),
        (|v| set(v, "/process/scheduler", json!({"policy": "SCHED_RR", "priority": 99, "nice": -20})), &[]),
        (|v| set(v, "/process/scheduler", json!({"policy": "SCHED_IDLE", "priority": 0})), &[]),
        // An empty CPU list means "not set".
        (|v| set(v, "/process/execCPUAffinity", json!({"initial": "", "final": "0-1,3"})), &[]),
        (|v| set(v, "/process/ioPriority", json!({"class": "IOPRIO_CLASS_IDLE"})), &[]),
        (|v| set(v, "/linux/memoryPolicy", json!({"mode": "MPOL_PREFERRED"})), &[]),
        (|v| set(v, "/linux/memoryPolicy", json!({"mode": "MPOL_LOCAL", "nodes": ""})), &[]),
        (|v| set(v, "/linux/memoryPolicy", json!({"mode": "MPOL_PREFERRED_MANY", "nodes": "0-3,8",
            "flags": ["MPOL_F_NUMA_BALANCING", "MPOL_F_RELATIVE_NODES"]})), &[]),
        (|v| set(v, "/linux/intelRdt", json!({"closID": "gold", "l3CacheSchema": "L3:0=7f0;1=1f",
            "memBwSchema": "MB:0=20;1=70", "schemata": ["L2:0=f"], "enableMonitoring": true,
            "enableCMT": true, "enableMBM": false})), &[]),
        (|v| {
            set(v, "/process/apparmorProfile", json!("docker-default"));
            set(v, "/process/selinuxLabel", json!("system_u:system_r:container_t:s0"));
            set(v, "/linux/mountLabel", json!("system_u:object_r:container_file_t:s0"));
        }, &[]),
        (|v| set(v, "/hooks", json!({"prestart": [{"path": "/bin/true", "timeout": 5}],
            "poststop": [{"path": "/bin/true", "args": ["true"], "env": ["A=b"]}]})), &[]),
        (|v| set(v, "/linux/resources/unified", json!({"memory.max": "1M"})), &[]),
        (|v| set(v, "/linux/rootfsPropagation", json!("rslave")), &[]),
        (|v| set(v, "/hostname", json!("h".repeat(64))), &[]),
    ];
    for (i, (mutate, want)) in cases.into_iter().enumerate() {
        match mutated(mutate) {
            Ok(l) => assert_eq!(l.warnings, want, "case {i}"),
            Err(e) => panic!("case {i}: rejected: {e}"),
        }
    }
}

/// uids and gids are accepted in 0..=2147483647 only, as runc does: `(uid_t)-1` (4294967295)
/// means "leave unchanged" to set*id(2), so letting it through would run the process as root.
#[test]
fn ids_out_of_range_are_errors_naming_the_field() {
    const MAX: u64 = 2_147_483_647;
    let range = "is out of range (0 to 2147483647)";
    // A bind mount that can carry idmap mappings (index 7: after the 7 default mounts).
    fn idmapped(v: &mut Value) {
        set(
            v,
            "/mounts/-",
            json!({"destination": "/mnt", "type": "bind", "source": "/tmp",
            "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}],
            "gidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}]}),
        );
    }
    // A device node, whose owner chown would also read (uid_t)-1 as "unchanged".
    fn device(v: &mut Value) {
        set(v, "/linux/devices", json!([{"path": "/dev/xnull", "type": "c", "major": 1, "minor": 3}]));
    }
    // (pointer, value, setup, JSON path of the error, problem) for every id field at
    // MAX + 1 and at u32::MAX; each must be refused naming its path.
    type Setup = fn(&mut Value);
    let fields: &[(&str, Setup, &str)] = &[
        ("/process/user/uid", |_| {}, "process.user.uid"),
        ("/process/user/gid", |_| {}, "process.user.gid"),
        ("/process/user/additionalGids", |_| {}, "process.user.additionalGids[1]"),
        ("/linux/uidMappings/0/containerID", user_ns, "linux.uidMappings[0].containerID"),
        ("/linux/uidMappings/0/hostID", user_ns, "linux.uidMappings[0].hostID"),
        ("/linux/gidMappings/0/containerID", user_ns, "linux.gidMappings[0].containerID"),
        ("/linux/gidMappings/0/hostID", user_ns, "linux.gidMappings[0].hostID"),
        ("/mounts/7/uidMappings/0/containerID", idmapped, "mounts[7].uidMappings[0].containerID"),
        ("/mounts/7/uidMappings/0/hostID", idmapped, "mounts[7].uidMappings[0].hostID"),
        ("/mounts/7/gidMappings/0/containerID", idmapped, "mounts[7].gidMappings[0].containerID"),
        ("/mounts/7/gidMappings/0/hostID", idmapped, "mounts[7].gidMappings[0].hostID"),
        ("/linux/devices/0/uid", device, "linux.devices[0].uid"),
        ("/linux/devices/0/gid", device, "linux.devices[0].gid"),
    ];
    let apply = |ptr: &str, setup: Setup, n: u64| {
        mutated(|v| {
            setup(v);
            if ptr.ends_with("additionalGids") {
                set(v, ptr, json!([5, n]));
            } else {
                set(v, ptr, json!(n));
                if ptr.contains("Mappings") {
                    // One id, so that the range ends where it starts.
                    let (entry, _) = ptr.rsplit_once('/').expect("a field of a mapping");
                    set(v, &format!("{entry}/size"), json!(1));
                }
            }
            // A container id 0 mapping must remain for the user namespace itself.
            if ptr.starts_with("/linux/") && ptr.ends_with("containerID") {
                let list = ptr.trim_end_matches("/0/containerID");
                set(v, &format!("{list}/-"), json!({"containerID": 0, "hostID": 5, "size": 1}));
            }
        })
    };
    for (ptr, setup, path) in fields {
        for n in [MAX + 1, u64::from(u32::MAX)] {
            let e = apply(ptr, *setup, n).expect_err(&format!("{ptr} = {n} accepted"));
            assert_eq!(e.to_string(), format!("{path}: {n} {range}"), "{ptr} = {n}");
            assert_eq!(e.path(), Some(*path));
        }
        // The boundary itself is a valid id (mappings of size 1 end on it).
        let l = apply(ptr, *setup, MAX).unwrap_or_else(|e| panic!("{ptr} = {MAX} refused: {e}"));
        assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    }

    // The last id of a mapping (start + size - 1) must be in range too; size 0 maps nothing.
    let end = |list: &'static str, first: &'static str, start: u64, size: u64| {
        mutated(move |v| {
            user_ns(v);
            set(v, &format!("/linux/{list}/-"), json!({"containerID": 70000, "hostID": 200000, "size": 1}));
            set(v, &format!("/linux/{list}/1/{first}"), json!(start));
            set(v, &format!("/linux/{list}/1/size"), json!(size));
        })
    };
    for (list, first) in [
        ("uidMappings", "containerID"),
        ("uidMappings", "hostID"),
        ("gidMappings", "containerID"),
        ("gidMappings", "hostID"),
    ] {
        end(list, first, MAX - 9, 10).unwrap_or_else(|e| panic!("{list} {first} ending on {MAX} refused: {e}"));
        let e = end(list, first, MAX - 9, 11).expect_err("one past the end accepted");
        assert_eq!(
            e.to_string(),
            format!("linux.{list}[1].size: {first} {} + size 11 - 1 = {} {range}", MAX - 9, MAX + 1)
        );
    }
    // A size whose end does not fit 32 bits at all (no overflow in the check itself).
    let e = end("gidMappings", "containerID", MAX, u64::from(u32::MAX)).expect_err("huge size accepted");
    assert_eq!(
        e.to_string(),
        format!("linux.gidMappings[1].size: containerID {MAX} + size 4294967295 - 1 = 6442450941 {range}")
    );
    let e = end("uidMappings", "hostID", 5, 0).expect_err("size 0 accepted");
    assert_eq!(e.to_string(), "linux.uidMappings[1].size: must be greater than 0");
    let e = mutated(|v| {
        idmapped(v);
        set(v, "/mounts/7/gidMappings/0/hostID", json!(MAX - 1));
        set(v, "/mounts/7/gidMappings/0/size", json!(3));
    })
    .expect_err("mount mapping past the end accepted");
    assert_eq!(
        e.to_string(),
        format!("mounts[7].gidMappings[0].size: hostID {} + size 3 - 1 = {} {range}", MAX - 1, MAX + 1)
    );

    // exec --process documents: paths relative to the document.
    for (doc, want) in [
        (r#"{"args": ["id"], "user": {"uid": 4294967295, "gid": 0}}"#, format!("user.uid: 4294967295 {range}")),
        (r#"{"args": ["id"], "user": {"uid": 0, "gid": 2147483648}}"#, format!("user.gid: 2147483648 {range}")),
        (
            r#"{"args": ["id"], "user": {"uid": 0, "gid": 0, "additionalGids": [4294967295]}}"#,
            format!("user.additionalGids[0]: 4294967295 {range}"),
        ),
    ] {
        let e = parse_process(doc.as_bytes()).expect_err(doc);
        assert_eq!(e.to_string(), want);
    }
    let (p, _) = parse_process(
        br#"{"args": ["id"], "user": {"uid": 2147483647, "gid": 2147483647, "additionalGids": [2147483647]}}"#,
    )
    .expect("the largest id is valid");
    assert_eq!(p.user().uid(), 2_147_483_647);
    // validate_process (the embedding API's exec goes through it) applies the same rule.
    let mut bad = p.clone();
    bad.set_cwd("/".into());
    let mut u = bad.user().clone();
    u.set_uid(u32::MAX);
    bad.set_user(u);
    assert_eq!(validate_process(&bad, true).expect_err("uid -1").to_string(), format!("user.uid: 4294967295 {range}"));
    assert_eq!(
        validate_process(&bad, false).expect_err("uid -1").to_string(),
        format!("process.user.uid: 4294967295 {range}")
    );
}

#[test]
fn relative_mount_destination_is_made_absolute() {
    let l = mutated(|v| set(v, "/mounts/-", json!({"destination": "data/x", "type": "tmpfs", "source": "tmpfs"})))
        .expect("accepted");
    let m = l.spec.mounts().as_ref().and_then(|m| m.get(7)).expect("mount 7");
    assert_eq!(m.destination(), Path::new("/data/x"));
    // parse_unvalidated leaves the document alone.
    let mut v = base();
    set(&mut v, "/mounts/0/destination", json!("proc"));
    let raw = parse_unvalidated(&serde_json::to_vec(&v).expect("ser")).expect("parses");
    let m0 = raw.spec.mounts().as_ref().and_then(|m| m.first()).expect("mount 0");
    assert_eq!(m0.destination(), Path::new("proc"));
}

#[test]
fn missing_user_means_root() {
    let l = mutated(|v| del(v, "/process/user")).expect("accepted");
    let user = l.spec.process().as_ref().expect("process").user();
    assert_eq!((user.uid(), user.gid()), (0, 0));
}

#[test]
fn unknown_capabilities_are_dropped_with_a_warning() {
    let l = mutated(|v| {
        set(v, "/process/capabilities/bounding/-", json!("CAP_FOO"));
        set(v, "/process/capabilities/bounding/-", json!("CAP_SYS_ADMIN"));
        set(v, "/process/capabilities/inheritable", json!(["cap_chown", "CAP_BPF"]));
        set(v, "/process/capabilities/ambient/-", json!("CAP_FUTURE_THING"));
    })
    .expect("accepted");
    assert_eq!(
        l.warnings,
        [
            "unknown capability \"CAP_FOO\" in process.capabilities.bounding: ignored",
            // Exact names only, like runc (oci-spec alone would accept this one).
            "unknown capability \"cap_chown\" in process.capabilities.inheritable: ignored",
            "unknown capability \"CAP_FUTURE_THING\" in process.capabilities.ambient: ignored",
        ]
    );
    let caps = l.spec.process().as_ref().and_then(|p| p.capabilities().clone()).expect("caps");
    let bounding = caps.bounding().clone().expect("bounding");
    assert_eq!(bounding.len(), 4);
    assert!(bounding.contains(&Capability::SysAdmin));
    let inh = caps.inheritable().clone().expect("inheritable");
    assert_eq!(inh.into_iter().collect::<Vec<_>>(), [Capability::Bpf]);
    // parse_unvalidated (Windows path) has the same leniency.
    let mut v = base();
    set(&mut v, "/process/capabilities/effective/-", json!("CAP_FOO"));
    let raw = parse_unvalidated(&serde_json::to_vec(&v).expect("ser")).expect("parses");
    assert_eq!(raw.warnings.len(), 1);
}

#[test]
fn default_spec_is_runcs_and_round_trips() {
    let spec = default_spec();
    let parsed = parse(DEFAULT_SPEC_JSON.as_bytes()).expect("valid");
    assert_eq!(parsed.spec, spec);
    assert!(parsed.warnings.is_empty());
    validate(&spec).expect("default spec validates");

    // Serialize and compare with runc's JSON, modulo capability order (oci-spec uses sets).
    fn sort_caps(v: &mut Value) {
        if let Some(caps) = v.pointer_mut("/process/capabilities").and_then(Value::as_object_mut) {
            for list in caps.values_mut().filter_map(Value::as_array_mut) {
                list.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
            }
        }
    }
    let mut ours = serde_json::to_value(&spec).expect("serializes");
    let mut runcs = base();
    sort_caps(&mut ours);
    sort_caps(&mut runcs);
    assert_eq!(ours, runcs);

    // Spot checks of what `runc spec` promises.
    let p = spec.process().as_ref().expect("process");
    assert_eq!(p.terminal(), Some(true));
    assert_eq!(p.args().as_deref(), Some(&["sh".to_string()][..]));
    assert_eq!(spec.hostname().as_deref(), Some("runc"));
    assert_eq!(spec.mounts().as_ref().map(Vec::len), Some(7));
    let linux = spec.linux().as_ref().expect("linux");
    let ns: Vec<_> = linux.namespaces().as_ref().expect("ns").iter().map(|n| n.typ()).collect();
    assert_eq!(
        ns,
        [
            LinuxNamespaceType::Pid,
            LinuxNamespaceType::Network,
            LinuxNamespaceType::Ipc,
            LinuxNamespaceType::Uts,
            LinuxNamespaceType::Mount
        ]
    );
    assert_eq!(linux.masked_paths().as_ref().map(Vec::len), Some(10));
    assert_eq!(linux.readonly_paths().as_ref().map(Vec::len), Some(5));
    let caps = p.capabilities().as_ref().expect("caps");
    assert!(caps.inheritable().is_none(), "CVE-2022-29162: no inheritable caps");
}

/// When runc 1.1 is installed, our embedded document must be exactly what it writes.
#[test]
fn embedded_default_matches_installed_runc_1_1() {
    // scripts/test installs Debian's runc (1.1): a missing runc is a broken setup, not a
    // reason to pass. Set BERTH_NO_RUNC=1 to run the suite on a machine without it.
    let out = match std::process::Command::new("runc").arg("--version").output() {
        Ok(out) => out,
        Err(_) if std::env::var_os("BERTH_NO_RUNC").is_some() => return,
        Err(e) => panic!("runc --version: {e}; install runc (scripts/test does) or set BERTH_NO_RUNC=1"),
    };
    let version = String::from_utf8_lossy(&out.stdout);
    if !version.starts_with("runc version 1.1.") {
        eprintln!("runc is not 1.1 ({version:?}); skipping");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let status =
        std::process::Command::new("runc").arg("spec").current_dir(dir.path()).status().expect("runc spec runs");
    assert!(status.success());
    let written = std::fs::read_to_string(dir.path().join("config.json")).expect("written");
    assert_eq!(written, DEFAULT_SPEC_JSON);
}

#[test]
fn load_bundle_reads_config_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = load_bundle(dir.path()).expect_err("no config.json yet");
    let want = format!("reading {}/config.json: No such file or directory (os error 2)", dir.path().display());
    assert_eq!(err.to_string(), want);
    assert!(err.path().is_none());

    std::fs::write(dir.path().join("config.json"), DEFAULT_SPEC_JSON).expect("write");
    let l = load_bundle(dir.path()).expect("loads");
    assert_eq!(l.spec, default_spec());

    std::fs::write(dir.path().join("config.json"), "{\n  \"ociVersion\": 1\n}").expect("write");
    let e = load_bundle(dir.path()).expect_err("bad type");
    assert_eq!(e.to_string(), "ociVersion: invalid type: integer `1`, expected a string at line 2 column 17");
}

#[test]
fn parse_errors_carry_path_and_position() {
    let cases: &[(&str, &str)] = &[
        ("{\n  \"process\": {\"args\": [\"a\",]}\n}", "process.args: trailing comma at line 2 column 28"),
        (
            "{\"ociVersion\": \"1.0.2\",\n \"linux\": {\"resources\": {\"memory\": {\n   \"limit\": \"x\"}}}}",
            "linux.resources.memory.limit: invalid type: string \"x\", expected i64 at line 3 column 13",
        ),
        ("[]", ".: invalid type: array, expected a JSON object at line 1 column 1"),
        ("", ".: EOF while parsing a value at line 1 column 0"),
        ("{} x", ".: trailing characters at line 1 column 4"),
        (
            "{\"mounts\": [{\"destination\": \"/a\", \"type\": \"x\"},\n  {\"type\": \"x\"}]}",
            "mounts[1]: missing field `destination` at line 2 column 3",
        ),
        (
            "{\"process\": {\"capabilities\": {\"bounding\": [\"CAP_FOO\", 3]}}}",
            "process.capabilities.bounding[1]: invalid type: number, expected a capability name at line 1 column 55",
        ),
        (
            "{\"linux\": {\"sysctl\": {\"net.ipv4.x\": 1}}}",
            "linux.sysctl[\"net.ipv4.x\"]: invalid type: integer `1`, expected a string at line 1 column 37",
        ),
        (
            "{\"process\": {\"user\": {\"uid\": -1}}}",
            "process.user.uid: invalid value: integer `-1`, expected u32 at line 1 column 30",
        ),
    ];
    for (text, want) in cases {
        let e = parse_unvalidated(text.as_bytes()).expect_err(text);
        assert_eq!(e.to_string(), *want, "{text}");
        assert!(e.line_column().is_some());
    }
    // Unknown enum values are parse errors with a path (oci-spec's enums are closed).
    for (text, path) in [
        (r#"{"process": {"rlimits": [{"type": "RLIMIT_FOO"}]}}"#, "process.rlimits[0].type"),
        (r#"{"linux": {"namespaces": [{"type": "foo"}]}}"#, "linux.namespaces[0].type"),
        (r#"{"linux": {"seccomp": {"defaultAction": "SCMP_ACT_BOGUS"}}}"#, "linux.seccomp.defaultAction"),
        (r#"{"linux": {"seccomp": {"defaultAction": "SCMP_ACT_ALLOW", "flags": ["X"]}}}"#, "linux.seccomp.flags[0]"),
        (r#"{"linux": {"personality": {"domain": "LINUX64"}}}"#, "linux.personality.domain"),
        (r#"{"linux": {"devices": [{"path": "/dev/x", "type": "x"}]}}"#, "linux.devices[0].type"),
    ] {
        let e = parse_unvalidated(text.as_bytes()).expect_err(text);
        assert_eq!(e.path(), Some(path), "{e}");
        assert!(e.to_string().contains("unknown variant"), "{e}");
    }
}

#[test]
fn exec_process_documents() {
    let ok = br#"{"args": ["ls"], "cwd": "", "capabilities": {"bounding": ["CAP_KILL", "CAP_FOO"]}}"#;
    let (p, warnings) = parse_process(ok).expect("valid");
    assert_eq!(p.args().as_deref(), Some(&["ls".to_string()][..]));
    assert_eq!(warnings, ["unknown capability \"CAP_FOO\" in capabilities.bounding: ignored"]);
    // No user, no cwd: uid 0 and "use the container's cwd".
    let (p, _) = parse_process(br#"{"args": ["ls"]}"#).expect("valid");
    assert_eq!(p.user().uid(), 0);
    assert!(p.cwd().as_os_str().is_empty());
    validate_process(&p, true).expect("ok for exec");
    assert_eq!(
        validate_process(&p, false).expect_err("cwd required for create").to_string(),
        "process.cwd: must not be empty"
    );

    let cases: &[(&[u8], &str)] = &[
        (br#"{"args": []}"#, "args: must not be empty"),
        (br#"{"cwd": "/"}"#, "args: must not be empty"),
        (br#"{"args": ["ls"], "cwd": "tmp"}"#, "cwd: must be an absolute path"),
        (br#"{"args": ["ls"], "env": ["X"]}"#, "env[0]: \"X\" is not of the form KEY=VALUE"),
        (
            br#"{"args": ["ls"], "rlimits": [{"type": "RLIMIT_CORE", "soft": 2, "hard": 1}]}"#,
            "rlimits[0].soft: 2 exceeds the hard limit 1",
        ),
        (br#"[1]"#, ".: invalid type: array, expected a JSON object at line 1 column 1"),
        (br#"{"args": "ls"}"#, "args: invalid type: string \"ls\", expected a sequence at line 1 column 10"),
        (
            br#"{"args": ["ls"], "scheduler": {"policy": "SCHED_OTHER", "flags": ["RESET_ON_FORK"]}}"#,
            "scheduler.flags[0]: unknown flag \"RESET_ON_FORK\" (the runtime spec defines SCHED_FLAG_RESET_ON_FORK, \
             SCHED_FLAG_RECLAIM, SCHED_FLAG_DL_OVERRUN, SCHED_FLAG_KEEP_POLICY, SCHED_FLAG_KEEP_PARAMS, \
             SCHED_FLAG_UTIL_CLAMP_MIN, SCHED_FLAG_UTIL_CLAMP_MAX)",
        ),
        (
            br#"{"args": ["ls"], "scheduler": {"policy": "SCHED_ISO"}}"#,
            "scheduler.policy: SCHED_ISO is not implemented by Linux",
        ),
        (
            br#"{"args": ["ls"], "ioPriority": {}}"#,
            "ioPriority.class: required (IOPRIO_CLASS_RT, IOPRIO_CLASS_BE or IOPRIO_CLASS_IDLE)",
        ),
        (
            br#"{"args": ["ls"], "execCPUAffinity": {"final": "2-1"}}"#,
            "execCPUAffinity.final: \"2-1\": \"2-1\" is a descending range",
        ),
    ];
    for (text, want) in cases {
        let e = parse_process(text).expect_err(want);
        assert_eq!(e.to_string(), *want);
    }
    // The spec's flag names reach oci-spec's types; empty CPU lists are "not set".
    let (p, _) = parse_process(
        br#"{"args": ["ls"], "scheduler": {"policy": "SCHED_OTHER", "flags": ["SCHED_FLAG_RESET_ON_FORK", "SCHED_FLAG_DL_OVERRUN"]},
            "execCPUAffinity": {"initial": "", "final": "1"}}"#,
    )
    .expect("valid");
    use oci_spec::runtime::LinuxSchedulerFlag as F;
    assert_eq!(
        p.scheduler().as_ref().unwrap().flags().as_deref(),
        Some(&[F::SchedResetOnFork, F::SchedFlagDLOverrun][..])
    );
    let aff = p.exec_cpu_affinity().as_ref().unwrap();
    assert_eq!((aff.initial().as_deref(), aff.cpu_affinity_final().as_deref()), (None, Some("1")));
}

#[test]
fn intel_rdt_monitoring_flags_by_the_specs_names_reach_the_typed_spec() {
    let l = mutated(|v| set(v, "/linux/intelRdt", json!({"enableCMT": true, "enableMBM": false}))).expect("valid");
    let rdt = l.spec.linux().as_ref().unwrap().intel_rdt().clone().unwrap();
    #[allow(deprecated)]
    let got = (rdt.enable_cmt(), rdt.enable_mbm());
    assert_eq!(got, (&Some(true), &Some(false)));
}

#[test]
fn id_lists() {
    assert_eq!(parse_id_list("0-3,7", 1024).unwrap(), [0, 1, 2, 3, 7]);
    assert_eq!(parse_id_list("5,1-2,2", 8).unwrap(), [1, 2, 5]);
    assert_eq!(parse_id_list("7", 8).unwrap(), [7]);
    for bad in ["", ",", "1,", "-1", "1-", "a", "1 ", "8", "0-8", "+1", "2-1"] {
        assert!(parse_id_list(bad, 8).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn validate_alone_warns_on_relative_destination_but_accepts() {
    let mut v = base();
    set(&mut v, "/mounts/0/destination", json!("proc"));
    let raw = parse_unvalidated(&serde_json::to_vec(&v).expect("ser")).expect("parses");
    let mut w = Vec::new();
    validate_with_warnings(&raw.spec, &mut w).expect("valid");
    assert_eq!(w.len(), 1, "{w:?}");
    validate(&raw.spec).expect("valid");
}

// ---- properties -------------------------------------------------------------------------

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        prop_oneof![
            ".{0,12}".prop_map(Value::String),
            // Strings the schema cares about, so enum/path checks get exercised.
            prop::sample::select(vec![
                "CAP_SYS_ADMIN",
                "CAP_FOO",
                "RLIMIT_NOFILE",
                "pid",
                "user",
                "network",
                "uts",
                "SCMP_ACT_NOTIFY",
                "SCMP_ACT_ALLOW",
                "/",
                "rel",
                "bind",
                "rbind",
                "tmpfs",
                "c",
                "a",
                "1.0.2",
                "net.ipv4.x",
                "kernel.hostname",
                "",
                "K=V",
                "monotonic",
            ])
            .prop_map(|s| Value::String(s.to_string())),
        ],
    ];
    leaf.prop_recursive(5, 64, 8, |inner| {
        let keys = prop::sample::select(vec![
            "ociVersion",
            "process",
            "root",
            "linux",
            "mounts",
            "hooks",
            "hostname",
            "args",
            "cwd",
            "env",
            "user",
            "uid",
            "umask",
            "capabilities",
            "bounding",
            "rlimits",
            "type",
            "hard",
            "soft",
            "namespaces",
            "path",
            "uidMappings",
            "size",
            "hostID",
            "containerID",
            "sysctl",
            "devices",
            "major",
            "minor",
            "seccomp",
            "defaultAction",
            "syscalls",
            "names",
            "action",
            "args",
            "index",
            "destination",
            "source",
            "options",
            "timeOffsets",
            "maskedPaths",
            "prestart",
            "timeout",
            "x",
        ]);
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(keys, inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
        ]
    })
}

/// Every (pointer, value) location in a document, so a mutation can target any of them.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let p = format!("{at}/{k}");
                out.push(p.clone());
                pointers(x, p, out);
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                let p = format!("{at}/{i}");
                out.push(p.clone());
                pointers(x, p, out);
            }
        }
        _ => {}
    }
}

fn exercise(bytes: &[u8]) {
    for r in [parse(bytes), parse_unvalidated(bytes)] {
        match r {
            Ok(l) => {
                let _ = validate(&l.spec);
            }
            Err(e) => {
                let s = e.to_string();
                assert!(!s.is_empty());
                assert!(e.path().is_some());
                if let Some((line, _)) = e.line_column() {
                    let lines = bytes.iter().filter(|&&b| b == b'\n').count() + 1;
                    assert!(line >= 1 && line <= lines, "{s}");
                }
            }
        }
    }
    let _ = parse_process(bytes);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_json_never_panics(v in arb_json()) {
        exercise(&serde_json::to_vec(&v).expect("ser"));
        exercise(&serde_json::to_vec(&json!({"ociVersion": "1.0.2", "process": v.clone(), "linux": v})).expect("ser"));
    }

    #[test]
    fn mutated_default_spec_never_panics(
        picks in prop::collection::vec((any::<prop::sample::Index>(), 0u8..3, arb_json()), 1..4),
    ) {
        let mut v = base();
        for (pick, op, x) in picks {
            let mut ptrs = Vec::new();
            pointers(&v, String::new(), &mut ptrs);
            let ptr = pick.get(&ptrs).clone();
            match op {
                0 => { if let Some(t) = v.pointer_mut(&ptr) { *t = x; } }
                1 => del(&mut v, &ptr),
                _ => {
                    if let Some(Value::Array(a)) = v.pointer_mut(&ptr) { a.push(x); }
                    else if let Some(Value::Object(m)) = v.pointer_mut(&ptr) { m.insert("x".into(), x); }
                }
            }
        }
        exercise(&serde_json::to_vec_pretty(&v).expect("ser"));
    }

    #[test]
    fn byte_mutations_never_panic(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..8),
    ) {
        let mut bytes = DEFAULT_SPEC_JSON.as_bytes().to_vec();
        for (at, b, op) in edits {
            let i = at.index(bytes.len().max(1));
            match op {
                0 => { if let Some(x) = bytes.get_mut(i) { *x = b; } }
                1 => { if i < bytes.len() { bytes.remove(i); } }
                _ => bytes.insert(i.min(bytes.len()), b),
            }
        }
        exercise(&bytes);
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let deep = "[".repeat(100_000);
    let e = parse(deep.as_bytes()).expect_err("too deep");
    assert!(e.to_string().contains("recursion limit"), "{e}");
}

/// Timing loop for docs/spec.md; run with
/// `cargo test --release -p berth-spec -- --ignored --nocapture bench_parse`.
#[test]
#[ignore]
fn bench_parse() {
    let typical = include_bytes!("../testdata/typical.json");
    for (name, bytes) in [("runc default", DEFAULT_SPEC_JSON.as_bytes()), ("typical", &typical[..])] {
        let n = 20_000u32;
        let start = std::time::Instant::now();
        for _ in 0..n {
            let l = parse(std::hint::black_box(bytes)).expect("valid");
            std::hint::black_box(l);
        }
        let per = start.elapsed() / n;
        // Baseline: oci-spec straight from bytes, no leniency, no validation.
        let start = std::time::Instant::now();
        for _ in 0..n {
            let s: oci_spec::runtime::Spec = serde_json::from_slice(std::hint::black_box(bytes)).expect("valid");
            std::hint::black_box(s);
        }
        let direct = start.elapsed() / n;
        println!("{name} ({} bytes): {per:?} per parse+validate; plain serde_json -> Spec: {direct:?}", bytes.len());
    }
}
