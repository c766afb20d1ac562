//! Per-process attributes of the newer runtime-spec fields: `process.scheduler`,
//! `process.ioPriority`, `process.execCPUAffinity`, `linux.memoryPolicy` and
//! `linux.personality`. The plan converts each from the validated spec (in the parent, before
//! anything exists); the container process applies it to itself in the phase of
//! [`crate::init::exec_process`] where it belongs. A value the kernel refuses fails the
//! create or exec with an error naming the field: none of them is ever skipped.

use oci_spec::runtime::{
    ExecCPUAffinity, IOPriorityClass, Linux, LinuxIOPriority, LinuxMemoryPolicy, LinuxPersonalityDomain,
    LinuxSchedulerFlag, LinuxSchedulerPolicy, MemoryPolicyFlagType, MemoryPolicyModeType, Scheduler,
};
use rustix::thread::CpuSet;

use berth_sys::sched::SchedAttr;

use crate::error::{Error, Result};

/// `process.scheduler`, ready for `sched_setattr`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedPlan {
    /// The attributes.
    pub attr: SchedAttr,
    /// `SCHED_FIFO (priority 10)`, for messages.
    pub what: String,
    /// The flags by their spec names, for messages.
    pub flags: Vec<&'static str>,
}

/// `process.ioPriority` as an `IOPRIO_PRIO_VALUE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoPrioPlan {
    /// The value for `ioprio_set`.
    pub value: u32,
    /// The spec's class name, for messages.
    pub class: &'static str,
    /// The level.
    pub level: u32,
}

/// `process.execCPUAffinity` (applied to exec'd processes only: the runtime spec says it is
/// not applicable to the container's init).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AffinityPlan {
    /// CPUs the process starts on, until it has joined the container's cgroups.
    pub initial: Option<CpuSet>,
    /// CPUs it runs on afterwards; `None`: the container's CPUs (see [`apply_final`]).
    pub final_cpus: Option<CpuSet>,
}

/// `linux.memoryPolicy`, ready for `set_mempolicy`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemPolicyPlan {
    /// Mode with its `MPOL_F_*` flags.
    pub mode: i32,
    /// Node mask words.
    pub nodes: Vec<u64>,
    /// `MPOL_BIND (nodes 0-1)`, for messages.
    pub what: String,
}

fn policy_number(p: LinuxSchedulerPolicy) -> u32 {
    use LinuxSchedulerPolicy as P;
    (match p {
        P::SchedOther => libc::SCHED_OTHER,
        P::SchedFifo => libc::SCHED_FIFO,
        P::SchedRr => libc::SCHED_RR,
        P::SchedBatch => libc::SCHED_BATCH,
        // Rejected by berth-spec; the kernel would refuse it too.
        P::SchedIso => 4,
        P::SchedIdle => libc::SCHED_IDLE,
        P::SchedDeadline => 6,
    }) as u32
}

/// `(SCHED_FLAG_* bit, spec name)`.
fn flag(f: LinuxSchedulerFlag) -> (u64, &'static str) {
    use LinuxSchedulerFlag as F;
    match f {
        F::SchedResetOnFork => (0x01, "SCHED_FLAG_RESET_ON_FORK"),
        F::SchedFlagReclaim => (0x02, "SCHED_FLAG_RECLAIM"),
        F::SchedFlagDLOverrun => (0x04, "SCHED_FLAG_DL_OVERRUN"),
        F::SchedFlagKeepPolicy => (0x08, "SCHED_FLAG_KEEP_POLICY"),
        F::SchedFlagKeepParams => (0x10, "SCHED_FLAG_KEEP_PARAMS"),
        F::SchedFlagUtilClampMin => (0x20, "SCHED_FLAG_UTIL_CLAMP_MIN"),
        F::SchedFlagUtilClampMax => (0x40, "SCHED_FLAG_UTIL_CLAMP_MAX"),
    }
}

/// Converts `process.scheduler`. Unset numbers are 0, as the runtime spec says; the
/// utilization clamps, which the spec cannot express, are 0 too (as in runc).
pub fn sched_plan(s: &Scheduler) -> SchedPlan {
    let policy = *s.policy();
    let mut attr = SchedAttr {
        policy: policy_number(policy),
        nice: s.nice().unwrap_or(0),
        priority: s.priority().and_then(|p| u32::try_from(p).ok()).unwrap_or(0),
        runtime: s.runtime().unwrap_or(0),
        deadline: s.deadline().unwrap_or(0),
        period: s.period().unwrap_or(0),
        ..Default::default()
    };
    let mut flags = Vec::new();
    for f in s.flags().iter().flatten() {
        let (bit, name) = flag(*f);
        attr.flags |= bit;
        flags.push(name);
    }
    let name = berth_spec::policy_name(policy);
    let what = match policy {
        LinuxSchedulerPolicy::SchedFifo | LinuxSchedulerPolicy::SchedRr => {
            format!("{name} (priority {})", attr.priority)
        }
        LinuxSchedulerPolicy::SchedDeadline => {
            format!("{name} (runtime {} ns, deadline {} ns, period {} ns)", attr.runtime, attr.deadline, attr.period)
        }
        _ if attr.nice != 0 => format!("{name} (nice {})", attr.nice),
        _ => name.to_string(),
    };
    SchedPlan { attr, what, flags }
}

/// Converts `process.ioPriority`.
pub fn io_prio_plan(io: &LinuxIOPriority) -> IoPrioPlan {
    let (class, name) = match io.class() {
        IOPriorityClass::IoprioClassRt => (1, "IOPRIO_CLASS_RT"),
        IOPriorityClass::IoprioClassBe => (2, "IOPRIO_CLASS_BE"),
        IOPriorityClass::IoprioClassIdle => (3, "IOPRIO_CLASS_IDLE"),
    };
    let level = u32::try_from(io.priority()).unwrap_or(0);
    IoPrioPlan { value: berth_sys::sched::ioprio_value(class, level), class: name, level }
}

fn cpu_set(list: &str, at: &str) -> Result<CpuSet> {
    let cpus =
        berth_spec::parse_id_list(list, berth_spec::CPU_LIMIT).map_err(|e| Error::Invalid(format!("{at}: {e}")))?;
    let mut set = CpuSet::new();
    for c in cpus {
        if c as usize >= CpuSet::MAX_CPU {
            return Err(Error::Invalid(format!("{at}: CPU {c} is above {}", CpuSet::MAX_CPU - 1)));
        }
        set.set(c as usize);
    }
    Ok(set)
}

/// Converts `process.execCPUAffinity` (`at` is its JSON path); `None` when neither set is
/// given.
pub fn affinity_plan(a: &ExecCPUAffinity, at: &str) -> Result<Option<AffinityPlan>> {
    let get = |v: &Option<String>, name: &str| -> Result<Option<CpuSet>> {
        match v.as_deref().filter(|s| !s.is_empty()) {
            Some(list) => cpu_set(list, &format!("{at}.{name}")).map(Some),
            None => Ok(None),
        }
    };
    let initial = get(a.initial(), "initial")?;
    let final_cpus = get(a.cpu_affinity_final(), "final")?;
    Ok((initial.is_some() || final_cpus.is_some()).then_some(AffinityPlan { initial, final_cpus }))
}

/// Converts `linux.memoryPolicy`.
pub fn mem_policy_plan(mp: &LinuxMemoryPolicy) -> Result<MemPolicyPlan> {
    use MemoryPolicyModeType as M;
    let mut mode = match mp.mode() {
        M::MpolDefault => 0,
        M::MpolPreferred => 1,
        M::MpolBind => 2,
        M::MpolInterleave => 3,
        M::MpolLocal => 4,
        M::MpolPreferredMany => 5,
        M::MpolWeightedInterleave => 6,
    };
    for f in mp.flags().iter().flatten() {
        mode |= match f {
            MemoryPolicyFlagType::MpolFNumaBalancing => 1 << 13,
            MemoryPolicyFlagType::MpolFRelativeNodes => 1 << 14,
            MemoryPolicyFlagType::MpolFStaticNodes => 1 << 15,
        };
    }
    let list = mp.nodes().as_deref().unwrap_or_default();
    let mut nodes = Vec::new();
    if !list.is_empty() {
        for n in berth_spec::parse_id_list(list, berth_spec::NODE_LIMIT)
            .map_err(|e| Error::Invalid(format!("linux.memoryPolicy.nodes: {e}")))?
        {
            let word = n as usize / 64;
            if nodes.len() <= word {
                nodes.resize(word + 1, 0);
            }
            nodes[word] |= 1u64 << (n % 64);
        }
    }
    let mut what = mp.mode().to_string();
    let flags: Vec<String> = mp.flags().iter().flatten().map(ToString::to_string).collect();
    if !flags.is_empty() {
        what = format!("{what}|{}", flags.join("|"));
    }
    if !list.is_empty() {
        what = format!("{what} (nodes {list})");
    }
    Ok(MemPolicyPlan { mode, nodes, what })
}

/// `linux.personality` as the `personality(2)` persona.
pub fn personality_of(linux: &Linux) -> Option<libc::c_ulong> {
    linux.personality().as_ref().map(|p| match p.domain() {
        LinuxPersonalityDomain::PerLinux32 => 0x0008,
        LinuxPersonalityDomain::PerLinux => 0,
    })
}

/// Applies `process.scheduler` to the calling process. Needs CAP_SYS_NICE (in the host's
/// user namespace) for the real-time and deadline policies and for a lower nice value.
pub fn apply_scheduler(s: &SchedPlan) -> Result<()> {
    berth_sys::sched::sched_setattr(&s.attr).map_err(|e| {
        let flags = if s.flags.is_empty() { String::new() } else { format!(" with {}", s.flags.join(", ")) };
        let hint = match e.raw_os_error() {
            Some(libc::EPERM) if matches!(s.attr.policy as i32, libc::SCHED_FIFO | libc::SCHED_RR) => {
                " (real-time policies need CAP_SYS_NICE in the host's user namespace and, where the kernel \
                 has real-time group scheduling, a real-time budget for the container's cpu cgroup: \
                 linux.resources.cpu.realtimeRuntime)"
            }
            Some(libc::EPERM) => " (this needs CAP_SYS_NICE in the host's user namespace)",
            Some(libc::EOPNOTSUPP) if s.attr.flags & 0x60 != 0 => {
                " (utilization clamping needs a kernel built with CONFIG_UCLAMP_TASK)"
            }
            Some(libc::EBUSY) if s.attr.policy == 6 => " (the CPUs have no deadline bandwidth left)",
            Some(libc::EINVAL) if s.attr.policy == 6 => " (the kernel wants 1024 <= runtime <= deadline <= period)",
            _ => "",
        };
        Error::Invalid(format!("process.scheduler: the kernel refused {}{flags}: {e}{hint}", s.what))
    })
}

/// Applies `process.ioPriority` to the calling process (the real-time class needs
/// CAP_SYS_ADMIN or CAP_SYS_NICE, depending on the kernel).
pub fn apply_io_priority(io: &IoPrioPlan) -> Result<()> {
    berth_sys::sched::ioprio_set(io.value).map_err(|e| {
        Error::Invalid(format!("process.ioPriority: the kernel refused {} level {}: {e}", io.class, io.level))
    })
}

/// Applies `linux.memoryPolicy` to the calling process.
pub fn apply_mem_policy(mp: &MemPolicyPlan) -> Result<()> {
    berth_sys::sched::set_mempolicy(mp.mode, &mp.nodes)
        .map_err(|e| Error::Invalid(format!("linux.memoryPolicy: the kernel refused {}: {e}", mp.what)))
}

/// Applies `linux.personality` to the calling process.
pub fn apply_personality(persona: libc::c_ulong) -> Result<()> {
    berth_sys::personality(persona).map_err(|e| Error::io("linux.personality", e))
}

/// The CPUs of a set as a Linux list (`0-2,5`), for messages.
pub fn cpu_list(set: &CpuSet) -> String {
    let cpus: Vec<usize> = (0..CpuSet::MAX_CPU).filter(|&c| set.is_set(c)).collect();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let start = cpus[i];
        while i + 1 < cpus.len() && cpus[i + 1] == cpus[i] + 1 {
            i += 1;
        }
        parts.push(if cpus[i] == start { start.to_string() } else { format!("{start}-{}", cpus[i]) });
        i += 1;
    }
    parts.join(",")
}

/// `execCPUAffinity.initial` around the clone of an exec'd process: the parent runs on
/// `initial` while it clones, so the child runs there from its first instruction until it
/// joins the container's cgroups (runc 1.3 does the same from a locked thread around the
/// start of `runc init`); then the parent returns to its own CPUs.
#[derive(Debug)]
#[must_use = "leave() restores the caller's CPU affinity"]
pub struct InitialAffinity {
    saved: Option<CpuSet>,
}

impl InitialAffinity {
    /// Moves the calling process to `initial`, if the plan has one.
    pub fn enter(a: Option<&AffinityPlan>) -> Result<InitialAffinity> {
        let Some(initial) = a.and_then(|a| a.initial.as_ref()) else {
            return Ok(InitialAffinity { saved: None });
        };
        let saved = rustix::thread::sched_getaffinity(None).map_err(|e| Error::io("sched_getaffinity", e))?;
        rustix::thread::sched_setaffinity(None, initial).map_err(|e| {
            Error::Invalid(format!("process.execCPUAffinity.initial: cannot run on CPUs {}: {e}", cpu_list(initial)))
        })?;
        Ok(InitialAffinity { saved: Some(saved) })
    }

    /// In the parent after the clone: back to the caller's CPUs. With the child's pid, logs
    /// (at debug level) the CPUs the kernel reports for it, before it joins the cgroups.
    pub fn leave(self, child: Option<i32>) {
        let Some(saved) = self.saved else { return };
        if let Some(pid) = child {
            if let Ok(now) = rustix::thread::sched_getaffinity(rustix::process::Pid::from_raw(pid)) {
                log::debug!(
                    "exec: process {pid} runs on CPUs {} until it joins the container's cgroups \
                     (process.execCPUAffinity.initial)",
                    cpu_list(&now)
                );
            }
        }
        if let Err(e) = rustix::thread::sched_setaffinity(None, &saved) {
            log::warn!("restoring the CPU affinity of berth: {e}");
        }
    }
}

/// The final affinity of an exec'd process, once it is in the container's cgroups: `final`,
/// or, when only `initial` was given, every CPU (the kernel narrows the mask to the
/// container's cpuset), so that the process does not stay on `initial` where joining the
/// cgroups did not reset it (the runtime spec: the container's default CPU affinity is used).
pub fn apply_final(a: &AffinityPlan) -> Result<()> {
    let (set, field) = match &a.final_cpus {
        Some(f) => (*f, "final"),
        None => {
            let mut all = CpuSet::new();
            for c in 0..CpuSet::MAX_CPU {
                all.set(c);
            }
            (all, "initial")
        }
    };
    rustix::thread::sched_setaffinity(None, &set).map_err(|e| match &a.final_cpus {
        Some(f) => Error::Invalid(format!("process.execCPUAffinity.final: cannot run on CPUs {}: {e}", cpu_list(f))),
        None => Error::Invalid(format!(
            "process.execCPUAffinity.{field}: cannot return to the container's CPUs after the initial ones: {e}"
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sched(v: serde_json::Value) -> SchedPlan {
        sched_plan(&serde_json::from_value(v).unwrap())
    }

    #[test]
    fn scheduler_conversion() {
        let p = sched(serde_json::json!({"policy": "SCHED_DEADLINE", "runtime": 1, "deadline": 2, "period": 3,
            "flags": ["SCHED_RESET_ON_FORK", "SCHED_FLAG_D_L_OVERRUN", "SCHED_FLAG_UTIL_CLAMP_MAX"]}));
        assert_eq!((p.attr.policy, p.attr.runtime, p.attr.deadline, p.attr.period), (6, 1, 2, 3));
        assert_eq!(p.attr.flags, 0x01 | 0x04 | 0x40);
        assert_eq!(p.flags, ["SCHED_FLAG_RESET_ON_FORK", "SCHED_FLAG_DL_OVERRUN", "SCHED_FLAG_UTIL_CLAMP_MAX"]);
        assert_eq!(p.what, "SCHED_DEADLINE (runtime 1 ns, deadline 2 ns, period 3 ns)");
        let p = sched(serde_json::json!({"policy": "SCHED_RR", "priority": 7}));
        assert_eq!((p.attr.policy, p.attr.priority, p.what.as_str()), (2, 7, "SCHED_RR (priority 7)"));
        let p = sched(serde_json::json!({"policy": "SCHED_BATCH", "nice": -3}));
        assert_eq!((p.attr.policy, p.attr.nice, p.what.as_str()), (3, -3, "SCHED_BATCH (nice -3)"));
        assert_eq!(sched(serde_json::json!({"policy": "SCHED_IDLE"})).attr.policy, 5);
        assert_eq!(sched(serde_json::json!({"policy": "SCHED_OTHER"})).attr, SchedAttr::default());
    }

    #[test]
    fn io_priority_conversion() {
        let io: LinuxIOPriority =
            serde_json::from_value(serde_json::json!({"class": "IOPRIO_CLASS_RT", "priority": 3})).unwrap();
        assert_eq!(io_prio_plan(&io).value, (1 << 13) | 3);
        let io: LinuxIOPriority =
            serde_json::from_value(serde_json::json!({"class": "IOPRIO_CLASS_IDLE", "priority": 0})).unwrap();
        assert_eq!(io_prio_plan(&io).value, 3 << 13);
    }

    #[test]
    fn memory_policy_conversion() {
        let mp: LinuxMemoryPolicy = serde_json::from_value(
            serde_json::json!({"mode": "MPOL_INTERLEAVE", "nodes": "0-1,65", "flags": ["MPOL_F_STATIC_NODES"]}),
        )
        .unwrap();
        let p = mem_policy_plan(&mp).unwrap();
        assert_eq!(p.mode, 3 | (1 << 15));
        assert_eq!(p.nodes, [0b11, 0b10]);
        assert_eq!(p.what, "MPOL_INTERLEAVE|MPOL_F_STATIC_NODES (nodes 0-1,65)");
        let mp: LinuxMemoryPolicy = serde_json::from_value(serde_json::json!({"mode": "MPOL_LOCAL"})).unwrap();
        let p = mem_policy_plan(&mp).unwrap();
        assert_eq!((p.mode, p.nodes.len()), (4, 0));
    }

    #[test]
    fn affinity_conversion_and_lists() {
        let a: ExecCPUAffinity = serde_json::from_value(serde_json::json!({"initial": "0-2,5"})).unwrap();
        let p = affinity_plan(&a, "process.execCPUAffinity").unwrap().unwrap();
        assert_eq!(cpu_list(p.initial.as_ref().unwrap()), "0-2,5");
        assert!(p.final_cpus.is_none());
        let none = ExecCPUAffinity::default();
        assert!(affinity_plan(&none, "x").unwrap().is_none());
        let mut s = CpuSet::new();
        for c in [1, 3, 4, 7] {
            s.set(c);
        }
        assert_eq!(cpu_list(&s), "1,3-4,7");
    }
}
