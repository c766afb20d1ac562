//! Where each cgroup controller lives on this host, found without berth's code, and how a
//! test reports that it cannot run here. Shared with the CLI tests
//! (`crates/berth-cli/tests/common/mod.rs` includes this file).
//!
//! A controller is bound to exactly one hierarchy: a v1 hierarchy (`/proc/cgroups` gives its
//! id, not 0) or the cgroup2 one (id 0). A v1 hierarchy may be mounted anywhere, several
//! times, or nowhere in this mount namespace: another runtime (crun mounts v1 controllers it
//! misses) may have bound it and left, and the hierarchy lives on while it has cgroups. Tests
//! ask [`place_of`] and test the controller where it is; a controller that is nowhere in reach
//! is reported with [`skip`], never counted as a pass in silence.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Where a controller can be reached from this mount namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// Bound to a v1 hierarchy mounted (with its root) here.
    V1(PathBuf),
    /// Bound to cgroup2, mounted here, whose root offers it in `cgroup.controllers`.
    V2(PathBuf),
    /// Unreachable, and why.
    Nowhere(String),
}

/// One line of `/proc/cgroups`: hierarchy id and whether the controller is enabled.
fn proc_cgroups(controller: &str) -> Option<(u32, bool)> {
    let text = std::fs::read_to_string("/proc/cgroups").ok()?;
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.first() != Some(&controller) {
            return None;
        }
        Some((f.get(1)?.parse().ok()?, f.get(3) == Some(&"1")))
    })
}

/// The cgroup mounts of this mount namespace: (root inside the hierarchy, mount point,
/// filesystem type, super options).
pub fn cgroup_mounts() -> Vec<(String, PathBuf, String, String)> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").expect("/proc/self/mountinfo");
    info.lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let pre: Vec<&str> = pre.split(' ').collect();
            let post: Vec<&str> = post.split(' ').collect();
            let fstype = *post.first()?;
            if fstype != "cgroup" && fstype != "cgroup2" {
                return None;
            }
            let point = pre.get(4)?.replace("\\040", " ");
            Some((pre.get(3)?.to_string(), PathBuf::from(point), fstype.to_owned(), post.get(2)?.to_string()))
        })
        .collect()
}

/// The cgroup2 mount of this mount namespace, if any.
pub fn cgroup2_mount() -> Option<PathBuf> {
    cgroup_mounts().into_iter().find(|(root, _, t, _)| t == "cgroup2" && root == "/").map(|(_, p, _, _)| p)
}

/// Where `controller` (e.g. `"hugetlb"`) can be reached from here.
pub fn place_of(controller: &str) -> Place {
    let Some((hierarchy, enabled)) = proc_cgroups(controller) else {
        return Place::Nowhere(format!("this kernel has no {controller} controller (not in /proc/cgroups)"));
    };
    if !enabled {
        return Place::Nowhere(format!(
            "the {controller} controller is disabled (cgroup_disable= on the kernel command line)"
        ));
    }
    let mounts = cgroup_mounts();
    if hierarchy != 0 {
        let mut views = Vec::new();
        for (root, point, fstype, opts) in &mounts {
            if fstype == "cgroup" && opts.split(',').any(|o| o == controller) {
                if root == "/" {
                    return Place::V1(point.clone());
                }
                views.push(format!("{} (only its subtree {root})", point.display()));
            }
        }
        return Place::Nowhere(if views.is_empty() {
            format!(
                "{controller} is bound to cgroup v1 hierarchy {hierarchy} (/proc/cgroups), which is not mounted in this \
                 mount namespace (another runtime bound it and left it unmounted)"
            )
        } else {
            format!(
                "{controller} is bound to cgroup v1 hierarchy {hierarchy}, mounted here only as {}",
                views.join(", ")
            )
        });
    }
    let Some(v2) = cgroup2_mount() else {
        return Place::Nowhere(format!("{controller} is on cgroup2 (hierarchy 0), which is not mounted here"));
    };
    let offered = std::fs::read_to_string(v2.join("cgroup.controllers")).unwrap_or_default();
    if offered.split_whitespace().any(|c| c == controller) {
        Place::V2(v2)
    } else {
        Place::Nowhere(format!(
            "{controller} is bound to no v1 hierarchy and cgroup2 at {} does not offer it (a v1-only controller)",
            v2.display()
        ))
    }
}

/// Reports that the calling test cannot test what it is about on this host, and why: on the
/// test's real stderr (not captured by the harness, so it shows in every `cargo test` run)
/// and in `skipped-tests.log` under `CARGO_TARGET_TMPDIR`, which `scripts/test` prints as a
/// summary. The test then returns; it was not a pass.
pub fn skip(reason: &str) {
    let name = std::thread::current().name().unwrap_or("<unnamed test>").to_owned();
    let line = format!("SKIPPED {name}: {reason}\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
    let log = Path::new(env!("CARGO_TARGET_TMPDIR")).join("skipped-tests.log");
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(log) {
        // One write per line: O_APPEND keeps concurrent tests' lines whole.
        let _ = f.write_all(line.as_bytes());
    }
}

/// [`skip`] for one part of a test that goes on with the rest.
pub fn skip_part(part: &str, reason: &str) {
    skip(&format!("({part}) {reason}"));
}

/// The hierarchy id `/proc/cgroups` gives `controller` (0: cgroup2), if the kernel has it.
pub fn hierarchy_of(controller: &str) -> Option<u32> {
    proc_cgroups(controller).map(|(h, _)| h)
}

/// `controller` bound to a v1 hierarchy that is mounted nowhere, as another runtime can leave
/// it (crun's users bind hugetlb to v1; a runtime that mounts it in its own mount namespace
/// and keeps cgroups there leaves exactly this). Undone on drop.
pub struct BoundUnmounted {
    controller: String,
    /// The cgroup that keeps the hierarchy alive while it is not mounted.
    hold: String,
    pub hierarchy: u32,
}

/// Runs `script` with `$1` = controller, `$2` = a fresh mount point, `$3` = `hold`, in a
/// private mount namespace (nothing it mounts shows outside, and it all goes when it exits).
fn in_private_mount_ns(script: &str, controller: &str, hold: &str) -> Result<String, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let out = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c", script, "sh", controller])
        .arg(dir.path())
        .arg(hold)
        .output()
        .map_err(|e| format!("running unshare: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!("{} {text}", String::from_utf8_lossy(&out.stderr).trim()))
    }
}

impl BoundUnmounted {
    /// Binds a `controller` that is on cgroup2 and in use nowhere: mounts it as v1 in a private
    /// mount namespace, makes one cgroup there, and lets the namespace go.
    pub fn new(controller: &str) -> Result<BoundUnmounted, String> {
        let hold = format!("berth-test-hold-{}", std::process::id());
        let id = in_private_mount_ns(
            "mount -t cgroup -o \"$1\" cgroup \"$2\" || exit 1
             mkdir \"$2/$3\" || { umount \"$2\"; exit 1; }
             awk -v c=\"$1\" '$1 == c { print $2 }' /proc/cgroups
             umount \"$2\"",
            controller,
            &hold,
        )?;
        let hierarchy = id.parse().map_err(|_| format!("no hierarchy id for {controller}: {id:?}"))?;
        Ok(BoundUnmounted { controller: controller.to_owned(), hold, hierarchy })
    }
}

impl Drop for BoundUnmounted {
    fn drop(&mut self) {
        // The same options find the same hierarchy; without its last cgroup and mount the
        // kernel destroys it and the controller goes back to cgroup2. By hand:
        // unshare -m sh -c 'mount -t cgroup -o C cgroup /mnt && rmdir /mnt/berth-test-hold-*',
        // then the same without the rmdir until /proc/cgroups shows hierarchy 0 for C.
        let r = in_private_mount_ns(
            "mount -t cgroup -o \"$1\" cgroup \"$2\" || exit 1
             rmdir \"$2/$3\"; s=$?
             umount \"$2\"
             exit $s",
            &self.controller,
            &self.hold,
        );
        if let Err(e) = r {
            let _ = std::io::stderr().write_all(format!("unbinding {}: {e}\n", self.controller).as_bytes());
        }
        release_unmounted_hierarchy(&self.controller);
    }
}

/// Waits for `controller`'s v1 hierarchy, now without cgroups and mounts, to be destroyed.
/// The kernel destroys an unmounted hierarchy only if no cgroup was left in it when its last
/// mount went, and one just removed may still have been on its way out: then mount and
/// unmount it again (privately). Destruction is asynchronous, so each round first waits a
/// while for the controller to be back on cgroup2 (another mount meanwhile would only make a
/// new hierarchy).
pub fn release_unmounted_hierarchy(controller: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let round = std::time::Instant::now() + std::time::Duration::from_secs(1);
        while std::time::Instant::now() < round {
            if hierarchy_of(controller) == Some(0) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        if std::time::Instant::now() > deadline {
            let _ = std::io::stderr().write_all(
                format!("{controller} is still bound to a v1 hierarchy (see BoundUnmounted's drop to undo it)\n")
                    .as_bytes(),
            );
            return;
        }
        let _ = in_private_mount_ns("mount -t cgroup -o \"$1\" cgroup \"$2\" && umount \"$2\"", controller, "");
    }
}

/// Runs [`release_unmounted_hierarchy`] on drop, also when the test fails.
pub struct ReleaseHierarchyOnDrop(pub &'static str);

impl Drop for ReleaseHierarchyOnDrop {
    fn drop(&mut self) {
        release_unmounted_hierarchy(self.0);
    }
}

// ---- a v1-only consumer next to berth ----------------------------------------------------

/// A limit no machine can reach counts as no limit. A new hugetlb cgroup's `hugetlb.*.max`
/// reads 9223372036854771712, not `max` (the kernel's maximum rounded down to whole huge
/// pages), and so does `i64::MAX` bytes, what some engines write for "unlimited".
pub const UNREACHABLE: u64 = 1 << 62;

/// The limit files of `controller` in cgroup2 directory `dir` that hold something other than
/// `max`, with their contents, and whether that value limits anything (see [`UNREACHABLE`]).
pub fn limit_files(dir: &Path, controller: &str) -> Vec<(PathBuf, String, bool)> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else { return out };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let is_limit = match controller {
            "hugetlb" => name.starts_with("hugetlb.") && name.ends_with(".max"),
            _ => name == format!("{controller}.max"),
        };
        if !is_limit {
            continue;
        }
        let v = std::fs::read_to_string(e.path()).unwrap_or_default();
        let values: Vec<&str> = v.lines().filter_map(|l| l.split_whitespace().last()).collect();
        if values.iter().all(|x| *x == "max") {
            continue;
        }
        let limits = values.iter().any(|x| x.parse::<u64>().is_ok_and(|n| n < UNREACHABLE));
        out.push((e.path(), v.trim().to_owned(), limits));
    }
    out
}

/// The limits of `controller` that limit something in `dir`, as "file = value".
pub fn limits_set(dir: &Path, controller: &str) -> Vec<String> {
    limit_files(dir, controller)
        .into_iter()
        .filter(|(_, _, limits)| *limits)
        .map(|(f, v, _)| format!("{} = {v}", f.display()))
        .collect()
}

/// Every directory of the cgroup2 tree at `mount`, parents before children.
pub fn cgroup2_dirs(mount: &Path) -> Vec<PathBuf> {
    let mut out = vec![mount.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        let mut kids: Vec<PathBuf> = std::fs::read_dir(&out[i])
            .map(|rd| rd.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())).map(|e| e.path()).collect())
            .unwrap_or_default();
        kids.sort();
        out.extend(kids);
        i += 1;
    }
    out
}

/// Whether `dir`'s `cgroup.subtree_control` enables `controller` for its children.
pub fn enables(dir: &Path, controller: &str) -> bool {
    std::fs::read_to_string(dir.join("cgroup.subtree_control"))
        .is_ok_and(|s| s.split_whitespace().any(|c| c == controller))
}

/// What keeps `controller` in use on the cgroup2 tree at `mount`, leaving out the root's own
/// enable and anything below `ours` (a path below the mount): directories that enable it for
/// their children, and directories with its limits set.
pub fn other_users_on_cgroup2(mount: &Path, controller: &str, ours: &str) -> Vec<String> {
    let ours = mount.join(ours.trim_start_matches('/'));
    let mut out = Vec::new();
    for d in cgroup2_dirs(mount) {
        if d.starts_with(&ours) {
            continue;
        }
        if d != mount && enables(&d, controller) {
            out.push(format!("{} enables {controller}", d.display()));
        }
        out.extend(limits_set(&d, controller));
    }
    out
}

/// Takes `controller` out of every `cgroup.subtree_control` of the cgroup2 tree, so that a
/// v1 consumer could bind it, and puts it back on drop (once the controller is back on
/// cgroup2). Refuses, leaving everything as it was, when that would lift a limit in force;
/// so the files the controller gets back hold its defaults, as they did.
pub struct FreedOnCgroup2 {
    pub controller: String,
    pub mount: PathBuf,
    /// Directories it was enabled in, parents first.
    disabled: Vec<PathBuf>,
}

impl FreedOnCgroup2 {
    pub fn new(controller: &str) -> Result<FreedOnCgroup2, String> {
        let mount = match place_of(controller) {
            Place::V2(m) => m,
            Place::V1(m) => {
                return Err(format!(
                    "{controller} is a v1 hierarchy mounted at {}: berth uses it there and cannot bind it to cgroup2",
                    m.display()
                ))
            }
            Place::Nowhere(why) => return Err(why),
        };
        let enabled: Vec<PathBuf> = cgroup2_dirs(&mount).into_iter().filter(|d| enables(d, controller)).collect();
        for d in &enabled {
            for kid in cgroup2_dirs(d).into_iter().skip(1).filter(|k| k.parent() == Some(d.as_path())) {
                let set = limits_set(&kid, controller);
                if !set.is_empty() {
                    return Err(format!(
                        "{controller} is in use on cgroup2 ({}); freeing it would lift those limits",
                        set.join(", ")
                    ));
                }
            }
        }
        let mut freed = FreedOnCgroup2 { controller: controller.to_owned(), mount, disabled: Vec::new() };
        // Children first: the kernel refuses to disable a controller a child still enables.
        for d in enabled.iter().rev() {
            if let Err(e) = std::fs::write(d.join("cgroup.subtree_control"), format!("-{controller}")) {
                return Err(format!("cannot free {controller} in {}: {e}", d.display()));
            }
            freed.disabled.insert(0, d.clone());
        }
        Ok(freed)
    }
}

impl Drop for FreedOnCgroup2 {
    fn drop(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while place_of(&self.controller) != Place::V2(self.mount.clone()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        for d in &self.disabled {
            if d.is_dir() {
                if let Err(e) = std::fs::write(d.join("cgroup.subtree_control"), format!("+{}", self.controller)) {
                    let _ = writeln!(
                        std::io::stderr(),
                        "restoring +{} in {}: {e} (the host was left with it disabled there)",
                        self.controller,
                        d.display()
                    );
                }
            }
        }
    }
}

/// Mounts `controller` as a v1 hierarchy, as a v1-only runtime does (crun needs
/// `mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb` on a hybrid host), in a private
/// mount namespace so nothing shows outside, and unmounts it again. `Ok(hierarchy id)` as
/// `/proc/cgroups` showed it while mounted; `Err(mount's message)` if the kernel refused.
pub fn mount_as_v1(controller: &str) -> Result<u32, String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c"])
        .arg(
            "mount -t cgroup -o \"$1\" cgroup \"$2\" || exit 1
             awk -v c=\"$1\" '$1 == c { print $2 }' /proc/cgroups
             umount \"$2\"",
        )
        .args(["sh", controller])
        .arg(dir.path())
        .output()
        .expect("run unshare");
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() {
        return Err(format!("{}{}", String::from_utf8_lossy(&out.stderr).trim(), text));
    }
    text.parse().map_err(|_| format!("no hierarchy id for {controller} while mounted: {text:?}"))
}

/// [`mount_as_v1`] until it works or a deadline passes: the kernel releases the cgroup2
/// state of a controller just disabled (or of a cgroup just removed) asynchronously.
pub fn mount_as_v1_eventually(controller: &str) -> Result<u32, String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match mount_as_v1(controller) {
            Ok(id) => return Ok(id),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Waits for `controller` to be back on cgroup2 after a v1 hierarchy of it was unmounted
/// (the kernel destroys the hierarchy asynchronously).
pub fn wait_back_on_cgroup2(controller: &str, mount: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while place_of(controller) != Place::V2(mount.to_path_buf()) {
        assert!(Instant::now() < deadline, "timed out waiting for {controller} to be back on cgroup2");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The verdict when a v1 consumer could not bind `controller`: a failure if nothing but
/// berth's cgroups (below `ours`) and the root's own enable keep it on cgroup2, inconclusive
/// (skipped) if another process on this shared host started using it meanwhile.
pub fn v1_consumer_refused(freed: &FreedOnCgroup2, ours: &str, err: &str) {
    let others = other_users_on_cgroup2(&freed.mount, &freed.controller, ours);
    if !others.is_empty() {
        return skip(&format!(
            "inconclusive: a v1 mount of {} failed ({err}) while others used it on cgroup2: {}",
            freed.controller,
            others.join("; ")
        ));
    }
    // Removed cgroups the kernel has not freed yet ("dying") still hold the controller, and
    // may for a long time (kernel-side references); no runtime can change that.
    let stat = std::fs::read_to_string(freed.mount.join("cgroup.stat")).unwrap_or_default();
    let dying = stat
        .lines()
        .find_map(|l| l.strip_prefix(&format!("nr_dying_subsys_{} ", freed.controller)))
        .and_then(|n| n.trim().parse::<u64>().ok())
        .unwrap_or(0);
    if dying > 0 {
        return skip(&format!(
            "inconclusive: a v1 mount of {} failed ({err}) while {dying} removed cgroups the kernel has not freed \
             yet still hold it on cgroup2 (cgroup.stat nr_dying_subsys_{})",
            freed.controller, freed.controller
        ));
    }
    let enabling: Vec<String> = cgroup2_dirs(&freed.mount)
        .into_iter()
        .filter(|d| enables(d, &freed.controller))
        .map(|d| d.display().to_string())
        .collect();
    panic!("a v1-only runtime cannot mount {}: {err}; cgroup2 directories enabling it: {enabling:?}", freed.controller);
}
