//! Linux platform validation of a parsed `Spec` (and of `exec` process documents).
//!
//! runc is the reference. The rule for choosing between an error and a warning:
//! - an error when runc rejects the spec (at validation or, later, when it fails to start), or
//!   when the runtime spec says MUST and accepting it would make berth guess (e.g. a relative
//!   hook path, a bind mount without a source);
//! - a warning when runc accepts the spec and its meaning is clear but probably unintended
//!   (relative mount destination, umask bits the kernel ignores, a device node outside /dev).
//!
//! Checks stop at the first error, as runc does; the order is the document's order so the
//! first problem in the file is the one reported. Nothing here touches the filesystem or
//! the kernel: checks that need the running system (is this netns path the host's? does the
//! kernel know this syscall?) belong to the runtime.

use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

use oci_spec::runtime::{
    Hook, Linux, LinuxDeviceType, LinuxIdMapping, LinuxNamespaceType, LinuxSchedulerPolicy, LinuxSeccompAction,
    MemoryPolicyFlagType, MemoryPolicyModeType, PosixRlimitType, Process, Scheduler, Spec,
};

use crate::error::{field, index, map_key, SpecError};

type R = Result<(), SpecError>;

fn bad(path: impl Into<String>, problem: impl Into<String>) -> SpecError {
    SpecError::invalid(path, problem)
}

fn no_nul(path: impl FnOnce() -> String, bytes: &[u8]) -> R {
    if bytes.contains(&0) {
        return Err(bad(path(), "must not contain a NUL byte"));
    }
    Ok(())
}

fn path_bytes(p: &Path) -> &[u8] {
    p.as_os_str().as_bytes()
}

/// Validates a whole spec for `create`, collecting warnings.
pub fn validate_with_warnings(spec: &Spec, warnings: &mut Vec<String>) -> R {
    version(spec.version())?;
    root(spec)?;
    match spec.process() {
        Some(p) => process(p, "process", false, warnings)?,
        None => return Err(bad("process", "must be set to create a container")),
    }
    let empty = empty_linux();
    let linux = spec.linux().as_ref().unwrap_or(&empty);
    let ns = namespaces(linux)?;
    uts_names(spec, &ns, warnings)?;
    id_mappings(linux, &ns)?;
    sysctls(linux, &ns)?;
    time_offsets(linux, &ns)?;
    devices(linux, warnings)?;
    restricted_paths(linux, &ns)?;
    propagation(linux)?;
    without_mount_namespace(spec, linux, &ns)?;
    cgroups_path(linux, warnings)?;
    resources(linux)?;
    intel_rdt(linux)?;
    seccomp(linux)?;
    personality(linux)?;
    memory_policy(linux)?;
    if let Some(l) = linux.mount_label() {
        no_nul(|| "linux.mountLabel".into(), l.as_bytes())?;
    }
    mounts(spec, warnings)?;
    hooks(spec)?;
    Ok(())
}

/// `Linux::default()` in oci-spec is a populated youki-style default; validating a spec
/// *without* a linux section must see an empty one.
fn empty_linux() -> Linux {
    let mut l = Linux::default();
    l.set_resources(None);
    l.set_namespaces(None);
    l.set_masked_paths(None);
    l.set_readonly_paths(None);
    l
}

fn version(v: &str) -> R {
    if v.is_empty() {
        return Err(bad("ociVersion", "must be set"));
    }
    if !v.starts_with("1.") {
        return Err(bad("ociVersion", format!("unsupported version {v:?} (berth reads 1.x)")));
    }
    Ok(())
}

fn root(spec: &Spec) -> R {
    let Some(root) = spec.root() else {
        return Err(bad("root", "must be set"));
    };
    if root.path().as_os_str().is_empty() {
        return Err(bad("root.path", "must not be empty"));
    }
    no_nul(|| "root.path".into(), path_bytes(root.path()))
}

/// Process rules shared by `create` (`prefix` = "process") and `exec --process` (`prefix` = "").
pub(crate) fn process(p: &Process, prefix: &str, for_exec: bool, warnings: &mut Vec<String>) -> R {
    let args_path = || field(prefix, "args");
    let args = p.args().as_deref().unwrap_or(&[]);
    if args.is_empty() {
        return Err(bad(args_path(), "must not be empty"));
    }
    for (i, a) in args.iter().enumerate() {
        no_nul(|| index(&args_path(), i), a.as_bytes())?;
    }
    if args.first().is_some_and(String::is_empty) {
        return Err(bad(index(&args_path(), 0), "must not be empty (it names the program to run)"));
    }

    let cwd = p.cwd();
    let cwd_path = || field(prefix, "cwd");
    if cwd.as_os_str().is_empty() {
        // For exec, an empty cwd means "the container's process.cwd".
        if !for_exec {
            return Err(bad(cwd_path(), "must not be empty"));
        }
    } else {
        if !cwd.is_absolute() {
            return Err(bad(cwd_path(), "must be an absolute path"));
        }
        no_nul(cwd_path, path_bytes(cwd))?;
    }

    if let Some(env) = p.env() {
        env_list(env, &field(prefix, "env"))?;
    }

    if let Some(rlimits) = p.rlimits() {
        let rl_path = field(prefix, "rlimits");
        let mut seen: Vec<PosixRlimitType> = Vec::with_capacity(rlimits.len());
        for (i, r) in rlimits.iter().enumerate() {
            if seen.contains(&r.typ()) {
                return Err(bad(field(&index(&rl_path, i), "type"), format!("duplicate rlimit \"{}\"", r.typ())));
            }
            seen.push(r.typ());
            if r.soft() > r.hard() {
                return Err(bad(
                    field(&index(&rl_path, i), "soft"),
                    format!("{} exceeds the hard limit {}", r.soft(), r.hard()),
                ));
            }
        }
    }

    if let Some(adj) = p.oom_score_adj() {
        if !(-1000..=1000).contains(&adj) {
            return Err(bad(field(prefix, "oomScoreAdj"), format!("{adj} is out of range -1000..=1000")));
        }
    }

    if let Some(mask) = p.user().umask() {
        if mask & !0o777 != 0 {
            warnings.push(format!(
                "{}: {mask:#o} has bits outside 0o777, which the kernel ignores",
                field(&field(prefix, "user"), "umask")
            ));
        }
    }
    if let Some(name) = p.user().username() {
        no_nul(|| field(&field(prefix, "user"), "username"), name.as_bytes())?;
    }
    let user_path = field(prefix, "user");
    id_in_range(u64::from(p.user().uid()), || field(&user_path, "uid"))?;
    id_in_range(u64::from(p.user().gid()), || field(&user_path, "gid"))?;
    for (i, g) in p.user().additional_gids().as_deref().unwrap_or(&[]).iter().enumerate() {
        id_in_range(u64::from(*g), || index(&field(&user_path, "additionalGids"), i))?;
    }

    if let Some(io) = p.io_priority() {
        if !(0..=7).contains(&io.priority()) {
            return Err(bad(
                field(&field(prefix, "ioPriority"), "priority"),
                format!("{} is out of range 0..=7", io.priority()),
            ));
        }
    }

    if let Some(sched) = p.scheduler() {
        scheduler(sched, &field(prefix, "scheduler"))?;
    }

    if let Some(aff) = p.exec_cpu_affinity() {
        let at = field(prefix, "execCPUAffinity");
        for (name, v) in [("initial", aff.initial()), ("final", aff.cpu_affinity_final())] {
            if let Some(list) = v.as_deref() {
                parse_id_list(list, CPU_LIMIT).map_err(|e| bad(field(&at, name), e))?;
            }
        }
    }
    if let Some(l) = p.apparmor_profile() {
        no_nul(|| field(prefix, "apparmorProfile"), l.as_bytes())?;
    }
    if let Some(l) = p.selinux_label() {
        no_nul(|| field(prefix, "selinuxLabel"), l.as_bytes())?;
    }
    Ok(())
}

/// `process.scheduler`, with runc's rules (priority only for the real-time policies, the
/// deadline parameters only for SCHED_DEADLINE) and what Linux cannot do at all.
fn scheduler(sched: &Scheduler, at: &str) -> R {
    use LinuxSchedulerPolicy as P;
    let policy = sched.policy();
    if let Some(nice) = sched.nice() {
        if !(-20..=19).contains(nice) {
            return Err(bad(field(at, "nice"), format!("{nice} is out of range -20..=19")));
        }
    }
    if *policy == P::SchedIso {
        return Err(bad(field(at, "policy"), "SCHED_ISO is not implemented by Linux"));
    }
    let realtime = matches!(policy, P::SchedFifo | P::SchedRr);
    match sched.priority() {
        Some(p) if realtime && !(1..=99).contains(p) => {
            return Err(bad(field(at, "priority"), format!("{p} is out of range 1..=99 for {}", policy_name(*policy))));
        }
        None if realtime => {
            return Err(bad(field(at, "priority"), format!("required for {} (1..=99)", policy_name(*policy))));
        }
        Some(p) if !realtime && *p != 0 => {
            return Err(bad(field(at, "priority"), "only SCHED_FIFO and SCHED_RR take a priority"));
        }
        _ => {}
    }
    if *policy != P::SchedDeadline {
        for (name, v) in [("runtime", sched.runtime()), ("deadline", sched.deadline()), ("period", sched.period())] {
            if v.is_some_and(|v| v != 0) {
                return Err(bad(field(at, name), "only SCHED_DEADLINE takes runtime, deadline and period"));
            }
        }
    }
    Ok(())
}

/// The runtime spec's name of a scheduling policy.
pub fn policy_name(p: LinuxSchedulerPolicy) -> &'static str {
    use LinuxSchedulerPolicy as P;
    match p {
        P::SchedOther => "SCHED_OTHER",
        P::SchedFifo => "SCHED_FIFO",
        P::SchedRr => "SCHED_RR",
        P::SchedBatch => "SCHED_BATCH",
        P::SchedIso => "SCHED_ISO",
        P::SchedIdle => "SCHED_IDLE",
        P::SchedDeadline => "SCHED_DEADLINE",
    }
}

/// One more than the largest CPU number berth can put in an affinity mask (glibc's and the
/// kernel ABI's `CPU_SETSIZE`).
pub const CPU_LIMIT: u32 = 1024;

/// One more than the largest NUMA node number berth can put in a node mask (the kernel's
/// largest `MAX_NUMNODES`, `1 << 10`).
pub const NODE_LIMIT: u32 = 1024;

/// Parses a Linux list such as `0-3,7` (CPUs, NUMA nodes): comma-separated numbers and
/// ascending `a-b` ranges, each number below `limit`. Returns the members in order, without
/// duplicates.
pub fn parse_id_list(s: &str, limit: u32) -> Result<Vec<u32>, String> {
    let num = |t: &str| -> Result<u32, String> {
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("{s:?}: {t:?} is not a number"));
        }
        match t.parse::<u32>() {
            Ok(n) if n < limit => Ok(n),
            _ => Err(format!("{s:?}: {t} is above the largest number berth supports ({})", limit - 1)),
        }
    };
    let mut out = Vec::new();
    for part in s.split(',') {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => {
                let n = num(part)?;
                (n, n)
            }
        };
        if a > b {
            return Err(format!("{s:?}: {part:?} is a descending range"));
        }
        out.extend(a..=b);
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// The largest uid or gid berth accepts: runc's limit (`1<<31 - 1`, for 32-bit `int`
/// compatibility). It matters most at the top: `4294967295` is `(uid_t)-1`, which the set*id
/// calls read as "leave unchanged", so passing it through would leave the process root.
pub const MAX_ID: u32 = 2_147_483_647;

/// The message for an id outside `0..=MAX_ID`, shared with the CLI's `exec --user` parsing.
pub fn id_range_problem(id: u64) -> String {
    format!("{id} is out of range (0 to {MAX_ID})")
}

fn id_in_range(id: u64, path: impl FnOnce() -> String) -> R {
    if id > u64::from(MAX_ID) {
        return Err(bad(path(), id_range_problem(id)));
    }
    Ok(())
}

/// `KEY=VALUE` entries, with the checks runc's init makes before `setenv`.
fn env_list(env: &[String], path: &str) -> R {
    for (i, e) in env.iter().enumerate() {
        let Some((k, _)) = e.split_once('=') else {
            return Err(bad(index(path, i), format!("{e:?} is not of the form KEY=VALUE")));
        };
        if k.is_empty() {
            return Err(bad(index(path, i), "variable name must not be empty"));
        }
        no_nul(|| index(path, i), e.as_bytes())?;
    }
    Ok(())
}

/// JSON spelling of a namespace type (oci-spec's `Display` says "mnt"/"net").
fn ns_name(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Mount => "mount",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "network",
        LinuxNamespaceType::Time => "time",
    }
}

/// The namespaces a spec asks for: `None` = not listed (shared with the runtime),
/// `Some(None)` = new, `Some(Some(path))` = join the one at `path`.
pub(crate) struct Namespaces<'a> {
    entries: Vec<(LinuxNamespaceType, Option<&'a Path>)>,
}

impl<'a> Namespaces<'a> {
    pub(crate) fn get(&self, t: LinuxNamespaceType) -> Option<Option<&'a Path>> {
        self.entries.iter().find(|(k, _)| *k == t).map(|(_, p)| *p)
    }
}

fn namespaces(linux: &Linux) -> Result<Namespaces<'_>, SpecError> {
    let list = linux.namespaces().as_deref().unwrap_or(&[]);
    let mut entries = Vec::with_capacity(list.len());
    for (i, ns) in list.iter().enumerate() {
        let t = ns.typ();
        if entries.iter().any(|(k, _)| *k == t) {
            return Err(bad(
                field(&index("linux.namespaces", i), "type"),
                format!("duplicate namespace \"{}\"", ns_name(t)),
            ));
        }
        // runc treats `"path": ""` as "no path".
        let path = ns.path().as_deref().filter(|p| !p.as_os_str().is_empty());
        if let Some(p) = path {
            let at = || field(&index("linux.namespaces", i), "path");
            if !p.is_absolute() {
                return Err(bad(at(), "must be an absolute path"));
            }
            no_nul(at, path_bytes(p))?;
        }
        entries.push((t, path));
    }
    Ok(Namespaces { entries })
}

fn uts_names(spec: &Spec, ns: &Namespaces<'_>, warnings: &mut Vec<String>) -> R {
    for (name, value) in [("hostname", spec.hostname()), ("domainname", spec.domainname())] {
        let Some(value) = value.as_deref().filter(|v| !v.is_empty()) else {
            continue;
        };
        match ns.get(LinuxNamespaceType::Uts) {
            None => return Err(bad(name, "requires a UTS namespace in linux.namespaces (it would change the host's)")),
            Some(Some(p)) => warnings.push(format!(
                "{name}: will be set in the joined UTS namespace {}, changing it for everyone in it",
                p.display()
            )),
            Some(None) => {}
        }
        // HOST_NAME_MAX; sethostname/setdomainname fail with EINVAL beyond it.
        if value.len() > 64 {
            return Err(bad(name, format!("{} bytes long; the limit is 64", value.len())));
        }
        no_nul(|| name.into(), value.as_bytes())?;
    }
    Ok(())
}

/// Shape of an ID mapping list: what the kernel would refuse when it is written to
/// `/proc/PID/{uid,gid}_map`.
fn id_map_shape(maps: &[LinuxIdMapping], path: &str) -> R {
    // The kernel's limit on extents per map (since 4.15).
    if maps.len() > 340 {
        return Err(bad(path, format!("{} entries; the kernel accepts at most 340", maps.len())));
    }
    for (i, m) in maps.iter().enumerate() {
        let at = |f: &str| field(&index(path, i), f);
        let (c, h, s) = (u64::from(m.container_id()), u64::from(m.host_id()), u64::from(m.size()));
        id_in_range(c, || at("containerID"))?;
        id_in_range(h, || at("hostID"))?;
        if s == 0 {
            return Err(bad(at("size"), "must be greater than 0"));
        }
        // Every id of the range must be valid, not just its start.
        for (name, start) in [("containerID", c), ("hostID", h)] {
            let last = start + s - 1;
            if last > u64::from(MAX_ID) {
                return Err(bad(at("size"), format!("{name} {start} + size {s} - 1 = {}", id_range_problem(last))));
            }
        }
        for (j, o) in maps.iter().enumerate().take(i) {
            let (oc, oh, os) = (u64::from(o.container_id()), u64::from(o.host_id()), u64::from(o.size()));
            if c < oc + os && oc < c + s {
                return Err(bad(index(path, i), format!("containerID range overlaps {}", index(path, j))));
            }
            if h < oh + os && oh < h + s {
                return Err(bad(index(path, i), format!("hostID range overlaps {}", index(path, j))));
            }
        }
    }
    Ok(())
}

fn id_mappings(linux: &Linux, ns: &Namespaces<'_>) -> R {
    let uids = linux.uid_mappings().as_deref().unwrap_or(&[]);
    let gids = linux.gid_mappings().as_deref().unwrap_or(&[]);
    let lists = [("linux.uidMappings", uids, "uid"), ("linux.gidMappings", gids, "gid")];
    match ns.get(LinuxNamespaceType::User) {
        None => {
            for (path, list, _) in lists {
                if !list.is_empty() {
                    return Err(bad(path, "set, but linux.namespaces has no user namespace"));
                }
            }
        }
        Some(new_or_join) => {
            for (path, list, what) in lists {
                if new_or_join.is_none() {
                    if list.is_empty() {
                        return Err(bad(path, "required when creating a user namespace"));
                    }
                    // As runc: the container's root must exist, it owns /dev, /proc, ... .
                    if !list.iter().any(|m| m.container_id() == 0 && m.size() > 0) {
                        return Err(bad(path, format!("no mapping for container {what} 0")));
                    }
                }
                id_map_shape(list, path)?;
            }
        }
    }
    Ok(())
}

fn sysctls(linux: &Linux, ns: &Namespaces<'_>) -> R {
    let Some(map) = linux.sysctl() else {
        return Ok(());
    };
    // Sorted so the same bad spec always produces the same error.
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    for k in keys {
        sysctl(k, ns)?;
    }
    Ok(())
}

fn sysctl(key: &str, ns: &Namespaces<'_>) -> R {
    let at = || map_key("linux.sysctl", key);
    // The runtime writes /proc/sys/<key with . or / as separators>; an empty or ".."
    // component would escape /proc/sys.
    if key.is_empty() || key.split(['.', '/']).any(|c| c.is_empty() || c == "..") {
        return Err(bad(at(), "not a valid sysctl name"));
    }
    no_nul(at, key.as_bytes())?;
    let dotted;
    let k = if key.contains('/') {
        dotted = key.replace('/', ".");
        dotted.as_str()
    } else {
        key
    };
    let need = |t: LinuxNamespaceType, why: &str| -> R {
        match ns.get(t) {
            Some(_) => Ok(()),
            None => Err(bad(at(), why.to_string())),
        }
    };
    if k.starts_with("kernel.shm")
        || k.starts_with("kernel.msg")
        || k.starts_with("kernel.sem")
        || k.starts_with("fs.mqueue.")
    {
        return need(
            LinuxNamespaceType::Ipc,
            "requires an IPC namespace in linux.namespaces (it would change the host's)",
        );
    }
    if k.starts_with("net.") {
        return need(
            LinuxNamespaceType::Network,
            "requires a network namespace in linux.namespaces (it would change the host's)",
        );
    }
    match k {
        "kernel.domainname" => {
            need(LinuxNamespaceType::Uts, "requires a UTS namespace in linux.namespaces (it would change the host's)")
        }
        "kernel.hostname" => Err(bad(at(), "conflicts with the \"hostname\" field; set that instead")),
        _ => Err(bad(at(), "is not in a separate kernel namespace; setting it would change the host")),
    }
}

fn time_offsets(linux: &Linux, ns: &Namespaces<'_>) -> R {
    let Some(offsets) = linux.time_offsets().as_ref().filter(|o| !o.is_empty()) else {
        return Ok(());
    };
    match ns.get(LinuxNamespaceType::Time) {
        None => return Err(bad("linux.timeOffsets", "set, but linux.namespaces has no time namespace")),
        Some(Some(_)) => {
            return Err(bad("linux.timeOffsets", "cannot be applied to a joined time namespace (its path is set)"))
        }
        Some(None) => {}
    }
    let mut keys: Vec<&String> = offsets.keys().collect();
    keys.sort();
    for k in keys {
        if k != "monotonic" && k != "boottime" {
            return Err(bad(map_key("linux.timeOffsets", k), "unknown clock (want \"monotonic\" or \"boottime\")"));
        }
        if let Some(ns) = offsets.get(k).and_then(|o| o.nanosecs()) {
            if ns >= 1_000_000_000 {
                return Err(bad(
                    field(&map_key("linux.timeOffsets", k), "nanosecs"),
                    format!("{ns} must be less than 1000000000"),
                ));
            }
        }
    }
    Ok(())
}

fn devices(linux: &Linux, warnings: &mut Vec<String>) -> R {
    let Some(list) = linux.devices() else {
        return Ok(());
    };
    for (i, d) in list.iter().enumerate() {
        let at = |f: &str| field(&index("linux.devices", i), f);
        if d.typ() == LinuxDeviceType::A {
            return Err(bad(at("type"), "must be one of \"c\", \"b\", \"u\", \"p\" (got \"a\")"));
        }
        let p = d.path();
        if p.as_os_str().is_empty() {
            return Err(bad(at("path"), "must not be empty"));
        }
        if !p.is_absolute() {
            return Err(bad(at("path"), "must be an absolute path"));
        }
        no_nul(|| at("path"), path_bytes(p))?;
        if !p.starts_with("/dev") {
            warnings.push(format!("{}: {} is outside /dev", at("path"), p.display()));
        }
        if d.major() < 0 {
            return Err(bad(at("major"), "must not be negative"));
        }
        if d.minor() < 0 {
            return Err(bad(at("minor"), "must not be negative"));
        }
        // Like process.user: (uid_t)-1 would mean "leave the owner unchanged" to chown.
        if let Some(uid) = d.uid() {
            id_in_range(u64::from(uid), || at("uid"))?;
        }
        if let Some(gid) = d.gid() {
            id_in_range(u64::from(gid), || at("gid"))?;
        }
        if let Some(mode) = d.file_mode() {
            if mode & !0o7777 != 0 {
                return Err(bad(
                    at("fileMode"),
                    format!("{mode:#o} has bits outside 0o7777 (the type comes from \"type\")"),
                ));
            }
        }
    }
    Ok(())
}

/// Without a mount namespace the container shares its caller's: berth mounts only under the
/// rootfs there and removes those mounts on delete, but will not remount the rootfs or change
/// the propagation of the caller's mounts (runc ignores both fields in that case).
fn without_mount_namespace(spec: &Spec, linux: &Linux, ns: &Namespaces<'_>) -> R {
    // No linux section at all is another problem, reported when a container is created.
    if spec.linux().is_none() || ns.get(LinuxNamespaceType::Mount).is_some() {
        return Ok(());
    }
    let why = "requires a mount namespace in linux.namespaces (without one the container shares its caller's)";
    if spec.root().as_ref().and_then(|r| r.readonly()).unwrap_or(false) {
        return Err(bad("root.readonly", why));
    }
    if linux.rootfs_propagation().as_deref().is_some_and(|p| !p.is_empty()) {
        return Err(bad("linux.rootfsPropagation", why));
    }
    Ok(())
}

fn restricted_paths(linux: &Linux, ns: &Namespaces<'_>) -> R {
    for (name, list) in [("maskedPaths", linux.masked_paths()), ("readonlyPaths", linux.readonly_paths())] {
        let list = list.as_deref().unwrap_or(&[]);
        let at = || field("linux", name);
        for (i, p) in list.iter().enumerate() {
            if !p.starts_with('/') {
                return Err(bad(index(&at(), i), "must be an absolute path"));
            }
            no_nul(|| index(&at(), i), p.as_bytes())?;
        }
        if !list.is_empty() && ns.get(LinuxNamespaceType::Mount).is_none() {
            return Err(bad(at(), "requires a mount namespace in linux.namespaces"));
        }
    }
    Ok(())
}

const PROPAGATIONS: [&str; 8] =
    ["private", "rprivate", "slave", "rslave", "shared", "rshared", "unbindable", "runbindable"];

fn propagation(linux: &Linux) -> R {
    match linux.rootfs_propagation().as_deref() {
        None | Some("") => Ok(()),
        Some(p) if PROPAGATIONS.contains(&p) => Ok(()),
        Some(p) => Err(bad(
            "linux.rootfsPropagation",
            format!("unsupported value {p:?} (want one of {})", PROPAGATIONS.join(", ")),
        )),
    }
}

fn cgroups_path(linux: &Linux, warnings: &mut Vec<String>) -> R {
    let Some(p) = linux.cgroups_path() else {
        return Ok(());
    };
    no_nul(|| "linux.cgroupsPath".into(), path_bytes(p))?;
    if p.components().any(|c| c == Component::ParentDir) {
        warnings.push(format!(
            "linux.cgroupsPath: {} contains \"..\"; it is resolved lexically and cannot leave the cgroup root (as in runc)",
            p.display()
        ));
    }
    Ok(())
}

/// A cgroup file or directory name that is joined onto a cgroup directory.
fn plain_name(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && !s.contains('/') && !s.contains('\0')
}

fn resources(linux: &Linux) -> R {
    let Some(res) = linux.resources() else {
        return Ok(());
    };
    if let Some(devs) = res.devices() {
        for (i, d) in devs.iter().enumerate() {
            if let Some(a) = d.access() {
                if !a.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
                    return Err(bad(
                        field(&index("linux.resources.devices", i), "access"),
                        format!("{a:?}: want a combination of r, w and m"),
                    ));
                }
            }
        }
    }
    if let Some(unified) = res.unified() {
        let mut keys: Vec<&String> = unified.keys().collect();
        keys.sort();
        for k in keys {
            if !plain_name(k) {
                return Err(bad(map_key("linux.resources.unified", k), "must be a cgroup file name (no \"/\")"));
            }
        }
    }
    if let Some(huge) = res.hugepage_limits() {
        for (i, h) in huge.iter().enumerate() {
            if !plain_name(h.page_size()) {
                return Err(bad(
                    field(&index("linux.resources.hugepageLimits", i), "pageSize"),
                    format!("{:?} is not a page size such as \"2MB\"", h.page_size()),
                ));
            }
        }
    }
    Ok(())
}

fn intel_rdt(linux: &Linux) -> R {
    let Some(rdt) = linux.intel_rdt().as_ref() else {
        return Ok(());
    };
    if let Some(clos) = rdt.clos_id().as_deref() {
        if !plain_name(clos) {
            return Err(bad("linux.intelRdt.closID", "must be a plain resctrl group name (no \"/\")"));
        }
    }
    // Each is written to the group's `schemata` file, one line per resource: a newline would
    // smuggle in another resource's line.
    if let Some(l3) = rdt.l3_cache_schema().as_deref() {
        if l3.contains('\n') {
            return Err(bad("linux.intelRdt.l3CacheSchema", "must not contain a newline"));
        }
    }
    if let Some(mb) = rdt.mem_bw_schema().as_deref() {
        if !mb.starts_with("MB:") {
            return Err(bad("linux.intelRdt.memBwSchema", format!("{mb:?} must start with \"MB:\"")));
        }
        if mb.contains('\n') {
            return Err(bad("linux.intelRdt.memBwSchema", "must not contain a newline"));
        }
    }
    for (i, line) in rdt.schemata().as_deref().unwrap_or_default().iter().enumerate() {
        if line.contains('\n') {
            return Err(bad(index("linux.intelRdt.schemata", i), "must not contain a newline (one line per entry)"));
        }
    }
    Ok(())
}

fn seccomp(linux: &Linux) -> R {
    let Some(sc) = linux.seccomp() else {
        return Ok(());
    };
    if sc.default_action() == LinuxSeccompAction::ScmpActNotify {
        return Err(bad("linux.seccomp.defaultAction", "SCMP_ACT_NOTIFY cannot be the default action"));
    }
    let mut notify = false;
    for (i, call) in sc.syscalls().as_deref().unwrap_or(&[]).iter().enumerate() {
        let at = index("linux.seccomp.syscalls", i);
        let names_at = field(&at, "names");
        if call.names().is_empty() {
            return Err(bad(names_at, "must not be empty"));
        }
        let is_notify = call.action() == LinuxSeccompAction::ScmpActNotify;
        notify |= is_notify;
        for (j, n) in call.names().iter().enumerate() {
            if n.is_empty() {
                return Err(bad(index(&names_at, j), "must not be empty"));
            }
            // The runtime's own writes after loading the filter would block on the agent.
            if is_notify && n == "write" {
                return Err(bad(index(&names_at, j), "SCMP_ACT_NOTIFY cannot be used for write"));
            }
        }
        for (k, a) in call.args().as_deref().unwrap_or(&[]).iter().enumerate() {
            if a.index() >= 6 {
                return Err(bad(
                    field(&index(&field(&at, "args"), k), "index"),
                    format!("{} is out of range 0..=5", a.index()),
                ));
            }
        }
    }
    let listener = sc.listener_path().as_deref().filter(|p| !p.as_os_str().is_empty());
    if notify && listener.is_none() {
        return Err(bad("linux.seccomp.listenerPath", "required when an action is SCMP_ACT_NOTIFY"));
    }
    Ok(())
}

/// The runtime spec defines no personality flag ("Currently no flag values are supported"),
/// so none can be applied, and a field that cannot be applied is an error.
fn personality(linux: &Linux) -> R {
    if let Some(f) = linux.personality().as_ref().and_then(|p| p.flags().as_ref()).and_then(|f| f.first()) {
        return Err(bad(
            "linux.personality.flags[0]",
            format!("{f:?} is not supported (the runtime spec defines no personality flags)"),
        ));
    }
    Ok(())
}

/// `linux.memoryPolicy`: the node list, and which modes take nodes (set_mempolicy(2)).
fn memory_policy(linux: &Linux) -> R {
    use MemoryPolicyModeType as M;
    let Some(mp) = linux.memory_policy().as_ref() else {
        return Ok(());
    };
    let nodes = match mp.nodes().as_deref().filter(|n| !n.is_empty()) {
        Some(n) => parse_id_list(n, NODE_LIMIT).map_err(|e| bad("linux.memoryPolicy.nodes", e))?,
        None => Vec::new(),
    };
    let mode = mp.mode();
    match mode {
        M::MpolDefault | M::MpolLocal if !nodes.is_empty() => {
            return Err(bad("linux.memoryPolicy.nodes", format!("{mode} takes no nodes")));
        }
        M::MpolBind | M::MpolInterleave | M::MpolWeightedInterleave | M::MpolPreferredMany if nodes.is_empty() => {
            return Err(bad("linux.memoryPolicy.nodes", format!("required for {mode}")));
        }
        _ => {}
    }
    let flags = mp.flags().as_deref().unwrap_or_default();
    if flags.contains(&MemoryPolicyFlagType::MpolFStaticNodes)
        && flags.contains(&MemoryPolicyFlagType::MpolFRelativeNodes)
    {
        return Err(bad(
            "linux.memoryPolicy.flags",
            "MPOL_F_STATIC_NODES and MPOL_F_RELATIVE_NODES exclude each other",
        ));
    }
    Ok(())
}

fn mounts(spec: &Spec, warnings: &mut Vec<String>) -> R {
    let Some(list) = spec.mounts() else {
        return Ok(());
    };
    for (i, m) in list.iter().enumerate() {
        let at = |f: &str| field(&index("mounts", i), f);
        let dest = m.destination();
        if dest.as_os_str().is_empty() {
            return Err(bad(at("destination"), "must not be empty"));
        }
        no_nul(|| at("destination"), path_bytes(dest))?;
        if !dest.is_absolute() {
            warnings.push(relative_destination_warning(i, dest));
        }
        let typ = m.typ().as_deref().unwrap_or("");
        no_nul(|| at("type"), typ.as_bytes())?;
        let options = m.options().as_deref().unwrap_or(&[]);
        for (j, o) in options.iter().enumerate() {
            no_nul(|| index(&at("options"), j), o.as_bytes())?;
        }
        let bind = typ == "bind" || options.iter().any(|o| o == "bind" || o == "rbind");
        let source = m.source().as_deref().filter(|s| !s.as_os_str().is_empty());
        if let Some(s) = source {
            no_nul(|| at("source"), path_bytes(s))?;
        }
        if bind && source.is_none() {
            return Err(bad(at("source"), "required for bind mounts"));
        }
        if !bind && typ.is_empty() {
            return Err(bad(at("type"), "required unless the mount is a bind mount"));
        }
        let uids = m.uid_mappings().as_deref().unwrap_or(&[]);
        let gids = m.gid_mappings().as_deref().unwrap_or(&[]);
        if !uids.is_empty() || !gids.is_empty() {
            if uids.is_empty() {
                return Err(bad(at("uidMappings"), "required when gidMappings is set"));
            }
            if gids.is_empty() {
                return Err(bad(at("gidMappings"), "required when uidMappings is set"));
            }
            if !bind {
                return Err(bad(at("uidMappings"), "id-mapped mounts must be bind mounts"));
            }
            id_map_shape(uids, &at("uidMappings"))?;
            id_map_shape(gids, &at("gidMappings"))?;
        }
    }
    Ok(())
}

pub(crate) fn relative_destination_warning(i: usize, dest: &Path) -> String {
    format!(
        "{}: {:?} is not absolute; treating it as relative to \"/\" (as runc does)",
        field(&index("mounts", i), "destination"),
        dest.display().to_string()
    )
}

fn hooks(spec: &Spec) -> R {
    let Some(h) = spec.hooks() else {
        return Ok(());
    };
    #[allow(deprecated)] // prestart is deprecated in the spec but still used and run by runc.
    let prestart = h.prestart();
    let lists: [(&str, &Option<Vec<Hook>>); 6] = [
        ("prestart", prestart),
        ("createRuntime", h.create_runtime()),
        ("createContainer", h.create_container()),
        ("startContainer", h.start_container()),
        ("poststart", h.poststart()),
        ("poststop", h.poststop()),
    ];
    for (name, list) in lists {
        for (i, hook) in list.as_deref().unwrap_or(&[]).iter().enumerate() {
            let at = |f: &str| field(&index(&field("hooks", name), i), f);
            let p = hook.path();
            if !p.is_absolute() {
                return Err(bad(at("path"), "must be an absolute path"));
            }
            no_nul(|| at("path"), path_bytes(p))?;
            if let Some(t) = hook.timeout() {
                if t <= 0 {
                    return Err(bad(at("timeout"), format!("must be greater than 0 (got {t})")));
                }
            }
        }
    }
    Ok(())
}
