//! pause, resume, events (stats and OOM) and update: the cgroup-facing operations behind the
//! CLI's `pause`, `resume`, `events` and `update`.

use std::os::fd::AsFd;
use std::path::Path;
use std::time::Duration;

use berth_core::state::ContainerStatus;
use oci_spec::runtime::LinuxResources;

use crate::error::{Error, Result};
use crate::state::ContainerState;

fn cgroup(st: &ContainerState) -> Result<&berth_cgroups::Cgroup> {
    st.cgroup
        .as_ref()
        .ok_or_else(|| Error::WrongState(format!("container {} has no cgroup (rootless without delegation)", st.id)))
}

/// `pause`: freezes every process of a running container.
pub fn pause(root: &Path, id: &str) -> Result<()> {
    let st = ContainerState::load(root, id)?;
    // runc's words: "container not running" for a paused or stopped one.
    match st.status(root) {
        ContainerStatus::Running | ContainerStatus::Created => {}
        ContainerStatus::Paused => {
            return Err(Error::WrongState(format!(
                "cannot pause container {id}: container not running (already paused)"
            )))
        }
        s => return Err(Error::WrongState(format!("cannot pause container {id}: container not running ({s})"))),
    }
    cgroup(&st)?.freeze().map_err(|e| Error::Cgroup(e.to_string()))
}

/// `resume`: thaws a paused container.
pub fn resume(root: &Path, id: &str) -> Result<()> {
    let st = ContainerState::load(root, id)?;
    if st.status(root) != ContainerStatus::Paused {
        return Err(Error::WrongState(format!("cannot resume container {id}: container not paused")));
    }
    cgroup(&st)?.thaw().map_err(|e| Error::Cgroup(e.to_string()))
}

/// One event in the shape of runc's `events` output.
#[derive(Debug, serde::Serialize)]
pub struct Event {
    /// `stats` or `oom`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Container id.
    pub id: String,
    /// Statistics (stats events only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<berth_cgroups::Stats>,
}

/// Current statistics of a container, with the network interfaces of its namespace; for a
/// VM container, those of its cgroup in the guest (see [`crate::vm::stats`]).
pub fn stats(root: &Path, st: &ContainerState) -> Result<berth_cgroups::Stats> {
    if crate::vm::is_vm(&st.spec) {
        return crate::vm::stats(root, st);
    }
    let mut s = cgroup(st)?.stats().map_err(|e| Error::Cgroup(e.to_string()))?;
    if st.init_alive() {
        s.network_interfaces = network_interfaces(st.pid).ok();
    }
    Ok(s)
}

/// Interface counters from `/proc/PID/net/dev` (the container's network namespace),
/// loopback excluded.
pub fn network_interfaces(pid: i32) -> std::io::Result<Vec<berth_cgroups::NetworkInterface>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/dev"))?;
    let mut out = Vec::new();
    for line in text.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else { continue };
        let name = name.trim();
        if name == "lo" {
            continue;
        }
        let v: Vec<u64> = rest.split_whitespace().filter_map(|x| x.parse().ok()).collect();
        if v.len() < 12 {
            continue;
        }
        out.push(berth_cgroups::NetworkInterface {
            name: name.to_string(),
            rx_bytes: v[0],
            rx_packets: v[1],
            rx_errors: v[2],
            rx_dropped: v[3],
            tx_bytes: v[8],
            tx_packets: v[9],
            tx_errors: v[10],
            tx_dropped: v[11],
        });
    }
    Ok(out)
}

/// `events`: with `once`, prints one stats event; otherwise prints a stats event every
/// `interval` and an OOM event as soon as the kernel reports one, until the container stops.
/// `emit` receives each event's JSON line.
pub fn events(
    root: &Path,
    id: &str,
    once: bool,
    interval: Duration,
    mut emit: impl FnMut(&str) -> Result<()>,
) -> Result<()> {
    let st = ContainerState::load(root, id)?;
    if st.status(root) == ContainerStatus::Stopped {
        return Err(Error::WrongState(format!("container {id} is not running")));
    }
    let line = |e: &Event| serde_json::to_string(e).map_err(|e| Error::Invalid(e.to_string()));
    if once {
        let ev = Event { kind: "stats", id: id.to_string(), data: Some(stats(root, &st)?) };
        return emit(&line(&ev)?);
    }
    let cg = cgroup(&st)?;
    let mut oom = cg.oom_watcher().ok();
    let pidfd = crate::container::open_init(&st)?;
    let mut next = std::time::Instant::now();
    loop {
        let now = std::time::Instant::now();
        if now >= next {
            if let Ok(s) = stats(root, &st) {
                emit(&line(&Event { kind: "stats", id: id.to_string(), data: Some(s) })?)?;
            }
            next = now + interval;
        }
        let wait = next.saturating_duration_since(std::time::Instant::now());
        let ts = rustix::event::Timespec { tv_sec: wait.as_secs() as i64, tv_nsec: i64::from(wait.subsec_nanos()) };
        let mut fds = vec![rustix::event::PollFd::new(&pidfd, rustix::event::PollFlags::IN)];
        if let Some(w) = &oom {
            fds.push(rustix::event::PollFd::from_borrowed_fd(w.as_fd(), rustix::event::PollFlags::IN));
        }
        match rustix::event::poll(&mut fds, Some(&ts)) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(Error::io("poll", e)),
        }
        let exited = !fds[0].revents().is_empty();
        let oom_ready = fds.get(1).is_some_and(|f| !f.revents().is_empty());
        drop(fds);
        if oom_ready {
            if let Some(w) = oom.as_mut() {
                let n = w.read_events().unwrap_or(0);
                for _ in 0..n {
                    emit(&line(&Event { kind: "oom", id: id.to_string(), data: None })?)?;
                }
            }
        }
        if exited {
            return Ok(());
        }
    }
}

/// `update`: applies new limits to a running container and records them in its state.
pub fn update(root: &Path, id: &str, r: &LinuxResources) -> Result<()> {
    let mut st = ContainerState::load(root, id)?;
    if st.status(root) == ContainerStatus::Stopped {
        return Err(Error::WrongState(format!("cannot update container {id}: it is stopped")));
    }
    cgroup(&st)?.update(&for_update(r)).map_err(|e| Error::Cgroup(e.to_string()))?;
    if let Some(linux) = st.spec.linux_mut() {
        let merged = merge(linux.resources().clone().unwrap_or_default(), r);
        linux.set_resources(Some(merged));
    }
    st.save(root)
}

/// What an update applies to the cgroup: `r`, with device rules (if it has any) composed as
/// at create (deny all, `r`'s rules, the default allow list), so that an update never takes
/// `/dev/null` and the other defaults away. Shared by the CLI, the embedding API and the shim.
pub fn for_update(r: &LinuxResources) -> LinuxResources {
    let mut out = r.clone();
    if let Some(d) = r.devices() {
        out.set_devices(Some(berth_cgroups::runc_device_rules(d)));
    }
    out
}

/// Overlays the fields set in `new` on `old` (what the container's recorded spec keeps).
fn merge(old: LinuxResources, new: &LinuxResources) -> LinuxResources {
    let mut out = old;
    if new.memory().is_some() {
        out.set_memory(*new.memory());
    }
    if new.cpu().is_some() {
        out.set_cpu(new.cpu().clone());
    }
    if new.pids().is_some() {
        out.set_pids(*new.pids());
    }
    if new.block_io().is_some() {
        out.set_block_io(new.block_io().clone());
    }
    if new.hugepage_limits().is_some() {
        out.set_hugepage_limits(new.hugepage_limits().clone());
    }
    if new.unified().is_some() {
        out.set_unified(new.unified().clone());
    }
    if new.devices().is_some() {
        out.set_devices(new.devices().clone());
    }
    out
}

/// Parses a size the way runc's `update` flags do (`512m`, `1g`, `1024`; `-1` = unlimited).
pub fn parse_size(s: &str) -> std::result::Result<i64, String> {
    let t = s.trim().to_ascii_lowercase();
    if t == "-1" {
        return Ok(-1);
    }
    let (num, mult) = match t.trim_end_matches('b').chars().last() {
        Some('k') => (&t[..t.trim_end_matches('b').len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.trim_end_matches('b').len() - 1], 1i64 << 20),
        Some('g') => (&t[..t.trim_end_matches('b').len() - 1], 1i64 << 30),
        Some('t') => (&t[..t.trim_end_matches('b').len() - 1], 1i64 << 40),
        _ => (t.as_str(), 1),
    };
    let n: f64 = num.parse().map_err(|_| format!("{s:?}: not a size"))?;
    if n < 0.0 {
        return Err(format!("{s:?}: negative size"));
    }
    Ok((n * mult as f64) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("512m"), Ok(512 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("1GB"), Ok(1 << 30));
        assert_eq!(parse_size("-1"), Ok(-1));
        assert!(parse_size("x").is_err());
        assert!(parse_size("-5").is_err());
    }
}
