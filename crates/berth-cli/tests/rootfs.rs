//! The container's root filesystem as `mounts` and `linux.rootfsPropagation` build it
//! (issue 13): a read-only /dev is populated first and made read-only last, mount
//! destinations that are dangling symlinks are created inside the root, a tmpfs keeps its
//! mount point's mode, and an unbindable root works. Every test ends with a leak check.

mod common;

use std::fs;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::json;

/// `berth run` of a bundle in the foreground, output captured.
fn run(env: &Env, b: &Bundle, name: &str) -> Out {
    let id = env.id(name);
    env.berth(&["run", "--bundle", b.dir(), &id])
}

/// One mountinfo line split into fields.
struct MountLine {
    mount_point: String,
    /// Per-mount options (field 6).
    opts: Vec<String>,
    /// Optional fields (propagation), between field 6 and `-`.
    optional: Vec<String>,
    fstype: String,
    /// Superblock options.
    super_opts: Vec<String>,
}

fn mountinfo(text: &str) -> Vec<MountLine> {
    text.lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let pre: Vec<&str> = pre.split(' ').collect();
            let mut post = post.split(' ');
            let fstype = post.next()?.to_string();
            let super_opts = post.nth(1).unwrap_or_default().split(',').map(str::to_string).collect();
            Some(MountLine {
                mount_point: pre.get(4)?.to_string(),
                opts: pre.get(5)?.split(',').map(str::to_string).collect(),
                optional: pre.iter().skip(6).map(|s| s.to_string()).collect(),
                fstype,
                super_opts,
            })
        })
        .collect()
}

#[track_caller]
fn mount_at<'a>(mounts: &'a [MountLine], mp: &str, text: &str) -> &'a MountLine {
    mounts.iter().rev().find(|m| m.mount_point == mp).unwrap_or_else(|| panic!("nothing mounted at {mp}: {text}"))
}

/// Adds `opt` to the options of the spec's mount at `dest`.
fn add_option(b: &mut Bundle, dest: &str, opt: &str) {
    let m = b.config["mounts"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|m| m["destination"] == dest)
        .unwrap_or_else(|| panic!("the default spec has no {dest} mount"));
    m["options"].as_array_mut().unwrap().push(json!(opt));
    b.write();
}

// ---------------------------------------------------------------------------------------------
// A read-only /dev

/// What the container reports about its /dev: writes through /dev/null, the devpts mount,
/// the /dev symlinks, whether a new file can be created, and /dev's mount line.
const DEV_PROBE: &str = "echo x > /dev/null && echo null-ok; \
    [ -L /dev/fd ] && [ -L /dev/ptmx ] && [ -c /dev/zero ] && echo nodes-ok; \
    head -c 4 /dev/zero | wc -c; \
    touch /dev/x; echo touch=$?; \
    echo shm > /dev/shm/f && echo shm-ok; \
    cat /proc/self/mountinfo";

#[test]
fn a_read_only_dev_is_populated_then_made_read_only() {
    let env = Env::new();
    let mut b = env.bundle(&["sh", "-c", DEV_PROBE]);
    add_option(&mut b, "/dev", "ro");
    let out = run(&env, &b, "devro");
    let text = out.ok();
    assert!(text.contains("null-ok\n"), "{text}");
    assert!(text.contains("nodes-ok\n"), "{text}");
    assert!(text.contains("\n4\n"), "/dev/zero unreadable: {text}");
    assert!(text.contains("touch=1\n"), "a file could be created in the read-only /dev: {text}");
    assert!(out.stderr.contains("/dev/x: Read-only file system"), "{}", out.stderr);
    // The /dev submounts keep their own options: only /dev itself is read-only (as runc).
    assert!(text.contains("shm-ok\n"), "{text}");
    let mounts = mountinfo(text);
    let dev = mount_at(&mounts, "/dev", text);
    assert!(dev.opts.iter().any(|o| o == "ro"), "/dev is not read-only: {:?}", dev.opts);
    // The other options of the spec's /dev survive the remount.
    assert!(dev.opts.iter().any(|o| o == "nosuid"), "/dev lost nosuid: {:?}", dev.opts);
    assert!(dev.super_opts.iter().any(|o| o == "mode=755"), "{:?}", dev.super_opts);
    assert_eq!(mount_at(&mounts, "/dev/pts", text).fstype, "devpts");
    assert!(!b.rootfs().join("dev/x").exists());

    // The same in a user namespace, where the device nodes are bound from the host and the
    // remount is done by the namespace's root.
    let mut b = env.bundle_own(&["sh", "-c", DEV_PROBE]);
    // The mapped root must be able to reach the rootfs.
    fs::set_permissions(b.path(), fs::Permissions::from_mode(0o755)).unwrap();
    add_option(&mut b, "/dev", "ro");
    b.push("/linux/namespaces", json!({"type": "user"}));
    let map = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    b.set("/linux/uidMappings", map.clone());
    b.set("/linux/gidMappings", map);
    let out = run(&env, &b, "devro-userns");
    let text = out.ok();
    for want in ["null-ok\n", "nodes-ok\n", "\n4\n", "touch=1\n", "shm-ok\n"] {
        assert!(text.contains(want), "user namespace: {want:?} missing: {text}");
    }
    assert!(mount_at(&mountinfo(text), "/dev", text).opts.iter().any(|o| o == "ro"), "{text}");

    // Control: the same probe on the default, writable /dev can create the file, so
    // `touch=1` above is the read-only mount and not a broken probe.
    let b = env.bundle(&["sh", "-c", DEV_PROBE]);
    let out = run(&env, &b, "devrw");
    let text = out.ok();
    assert!(text.contains("touch=0\n"), "{text}");
    let mounts = mountinfo(text);
    assert!(mount_at(&mounts, "/dev", text).opts.iter().any(|o| o == "rw"));
    env.finish();
}

#[test]
fn a_read_only_tmpfs_gets_its_tmpcopyup_content_and_later_mount_points_first() {
    // runc mounts every tmpfs read-write and makes the read-only ones read-only last, so
    // tmpcopyup can fill it and a later mount can create its mount point in it.
    let env = Env::new();
    let mut b = env.bundle_own(&[
        "sh",
        "-c",
        "cat /opt/img/f; ls /opt/img; touch /opt/img/new; echo touch=$?; \
         echo y > /opt/img/sub/g && cat /opt/img/sub/g; cat /proc/self/mountinfo",
    ]);
    fs::create_dir_all(b.rootfs().join("opt/img")).unwrap();
    fs::write(b.rootfs().join("opt/img/f"), "from the image\n").unwrap();
    b.push(
        "/mounts",
        json!({"destination": "/opt/img", "type": "tmpfs", "source": "tmpfs", "options": ["ro", "nodev", "tmpcopyup"]}),
    );
    b.push("/mounts", json!({"destination": "/opt/img/sub", "type": "tmpfs", "source": "tmpfs"}));
    let out = run(&env, &b, "tmpfsro");
    let text = out.ok();
    assert!(text.starts_with("from the image\nf\nsub\ntouch=1\ny\n"), "{text}");
    let mounts = mountinfo(text);
    let img = mount_at(&mounts, "/opt/img", text);
    assert!(img.opts.iter().any(|o| o == "ro") && img.opts.iter().any(|o| o == "nodev"), "{:?}", img.opts);
    assert!(mount_at(&mounts, "/opt/img/sub", text).opts.iter().any(|o| o == "rw"));
    // The image's directory is untouched: the mount point was made in the tmpfs.
    assert!(!b.rootfs().join("opt/img/sub").exists());
    env.finish();
}

#[test]
fn a_dev_bind_spelled_unclean_is_not_populated() {
    // With /dev bound from the host, berth must not create device nodes in it: they would
    // land in the host's directory (with the host's /dev: its nodes re-created, its ptmx
    // replaced by a link). The check must see `/dev/` and `//dev/.` as /dev, as runc does.
    let env = Env::new();
    for (i, dest) in ["/dev/", "//dev/."].iter().enumerate() {
        let host = tempfile::tempdir().unwrap();
        fs::write(host.path().join("marker"), "").unwrap();
        let mut b = env.bundle(&["ls", "/dev"]);
        b.push("/mounts", json!({"destination": dest, "type": "bind", "source": host.path(), "options": ["rbind"]}));
        // Masking files needs a /dev/null, which this /dev does not have.
        b.remove("/linux/maskedPaths");
        let out = run(&env, &b, &format!("devbind{i}"));
        assert_eq!(out.ok(), "marker\n", "{dest}");
        let names: Vec<_> = fs::read_dir(host.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["marker"], "{dest}: berth created these in the bound host directory");
    }
    env.finish();
}

/// Receives the PTY master a runtime sends over a console socket (None when the runtime
/// closed the connection without sending one: it failed).
fn recv_master(listener: &UnixListener) -> Option<OwnedFd> {
    let (conn, _) = listener.accept().expect("accept on the console socket");
    recv_fd(&conn)
}

#[test]
fn a_read_only_dev_still_gets_the_console_of_a_terminal_container() {
    // /dev/console is created and the PTY bound on it after pivot_root: before the remount
    // that makes /dev read-only, or a rootfs without /dev/console could not have one.
    let env = Env::new();
    let mut b = env.bundle(&["sh"]);
    b.set("/process/terminal", json!(true));
    add_option(&mut b, "/dev", "ro");
    let id = env.id("devro-tty");
    let sock = b.file("console.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let (out, master) = std::thread::scope(|s| {
        let h = s.spawn(|| {
            env.detached(&b, &id, &["create", "--console-socket", sock.to_str().unwrap(), "--bundle", b.dir(), &id])
        });
        let master = recv_master(&listener);
        (h.join().unwrap(), master)
    });
    out.ok();
    let master = master.expect("no descriptor received on the console socket");
    let pid = env.pid_of(&id);
    env.berth(&["start", &id]).ok();
    let say = |s: &str| {
        rustix::io::write(master.as_fd(), s.as_bytes()).expect("writing to the terminal");
    };
    // The shell's own terminal is /dev/console: writing there reaches us...
    say("echo via-$((40+2)) > /dev/console\n");
    read_until(master.as_fd(), "via-42");
    // ...it is the devpts node bound over the file...
    say("grep -c ' /dev/console .* - devpts ' /proc/self/mountinfo | sed 's/^/console-mounts=/'\n");
    read_until(master.as_fd(), "console-mounts=1");
    // ...and /dev is read-only all the same.
    say("touch /dev/y; echo touch=$?\n");
    read_until(master.as_fd(), "touch=1");
    say("grep ' /dev ' /proc/self/mountinfo | cut -d' ' -f6 | grep -q '^ro,' && echo dev-ro-$((6*7))\n");
    read_until(master.as_fd(), "dev-ro-42");
    say("exit 4\n");
    assert_eq!(env.reap(pid), 4);
    env.wait_status(&id, "stopped");
    env.berth(&["delete", &id]).ok();
    // The shared rootfs has no /dev/console: it was created during setup, inside the
    // container's /dev tmpfs, never in the image.
    assert!(!shared_rootfs().join("dev/console").exists());
    env.finish();
}

// ---------------------------------------------------------------------------------------------
// Mount destinations

fn make_symlink(rootfs: &Path, path: &str, target: &str) {
    let p = rootfs.join(path.trim_start_matches('/'));
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    symlink(target, &p).unwrap();
}

#[test]
fn dangling_symlink_destinations_are_created_inside_the_root() {
    let env = Env::new();
    let id = env.id("dangling");
    // Names unique to this run, so that a mount or directory that escaped to the host can be
    // looked for by name.
    let out_name = format!("berth-{id}-outside");
    let deep = format!("berth-{id}-deep");
    let src = tempfile::tempdir().unwrap();
    fs::write(src.path().join("resolv"), "nameserver 192.0.2.1\n").unwrap();
    let mut b = env.bundle_own(&["cat", "/proc/self/mountinfo"]);
    // Absolute, relative to the container's root: /data exists, newdir does not.
    make_symlink(b.rootfs(), "/mnt/link", "/data/newdir");
    // Dots that would climb out of the rootfs on the host.
    make_symlink(b.rootfs(), "/mnt/dots", &format!("../../../../../{out_name}"));
    // A chain of links, the last one naming several missing directories.
    make_symlink(b.rootfs(), "/mnt/chain", "/mnt/chain2");
    make_symlink(b.rootfs(), "/mnt/chain2", &format!("/{deep}/a/b"));
    // A file destination that is a dangling link (the usual /etc/resolv.conf -> /run/...).
    make_symlink(b.rootfs(), "/etc/resolv.conf", "../run/berth/resolv.conf");
    for (dest, size) in [("/mnt/link", "1236k"), ("/mnt/dots", "1240k"), ("/mnt/chain/c", "1244k")] {
        b.push(
            "/mounts",
            json!({"destination": dest, "type": "tmpfs", "source": "tmpfs", "options": [format!("size={size}")]}),
        );
    }
    b.push(
        "/mounts",
        json!({"destination": "/etc/resolv.conf", "type": "bind", "source": src.path().join("resolv"),
               "options": ["bind", "ro"]}),
    );
    let host_before = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let out = env.berth(&["run", "--bundle", b.dir(), &id]);
    let text = out.ok();
    let mounts = mountinfo(text);
    // Each mount is in the container's own mountinfo (after pivot_root it lists only mounts
    // under the new root) where its link leads when followed inside the root.
    let tmpfs_at = |mp: &str, size: &str| {
        let m = mount_at(&mounts, mp, text);
        assert_eq!(m.fstype, "tmpfs", "{mp}");
        assert!(m.super_opts.iter().any(|o| *o == format!("size={size}")), "{mp}: {:?}", m.super_opts);
    };
    tmpfs_at("/data/newdir", "1236k");
    tmpfs_at(&format!("/{out_name}"), "1240k");
    tmpfs_at(&format!("/{deep}/a/b/c"), "1244k");
    assert!(mount_at(&mounts, "/run/berth/resolv.conf", text).opts.iter().any(|o| o == "ro"));
    // Created in the rootfs, never on the host.
    let r = b.rootfs();
    assert!(r.join("data/newdir").is_dir());
    assert!(r.join(&out_name).is_dir());
    assert!(r.join(&deep).join("a/b/c").is_dir());
    assert!(r.join("run/berth/resolv.conf").is_file());
    for p in [format!("/{out_name}"), format!("/{deep}")] {
        assert!(!Path::new(&p).exists(), "{p} created on the host");
    }
    let bundle_parent = b.path().parent().unwrap();
    assert!(!bundle_parent.join(&out_name).exists(), "created next to the bundle");
    let host_after = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert_eq!(mountinfo(&host_before).len(), mountinfo(&host_after).len(), "host mount count changed");
    env.finish();
}

#[test]
fn a_dangling_link_raced_with_rename_exchange_never_leads_out_of_the_root() {
    // CVE-2021-30465 against the dangling-link walk: a host thread (a sibling container in
    // real life) exchanges `d` (a directory) and `l` (a link to a host directory, `outside`,
    // which the rootfs does NOT have, so in the root the link dangles) in a shared volume,
    // while the container is created again and again with tmpfs mounts through /vol/d. The
    // walk then reads the link, creates its target inside the root, or loses the race and
    // fails. Whatever happens, nothing is created in or mounted on the host's `outside`, and
    // a successful container lists both tmpfs in its own mountinfo (which after pivot_root
    // only holds mounts under its root).
    const RUNS: usize = 30;
    let env = Env::new();
    let vol = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let (vol_path, outside_path) = (vol.path().canonicalize().unwrap(), outside.path().canonicalize().unwrap());
    fs::create_dir(vol_path.join("d")).unwrap();
    symlink(&outside_path, vol_path.join("l")).unwrap();
    let mut b = env.bundle_own(&["cat", "/proc/self/mountinfo"]);
    b.push("/mounts", json!({"destination": "/vol", "type": "bind", "source": vol_path, "options": ["rbind", "rw"]}));
    b.push(
        "/mounts",
        json!({"destination": "/vol/d/m1", "type": "tmpfs", "source": "tmpfs", "options": ["size=1236k"]}),
    );
    b.push(
        "/mounts",
        json!({"destination": "/vol/d/m2/deeper", "type": "tmpfs", "source": "tmpfs", "options": ["size=2468k"]}),
    );
    let (mut ok, mut via_link, mut failed) = (0, 0, Vec::new());
    let ((), swaps) = with_rename_exchange_racer(&vol_path, "d", "l", || {
        for i in 0..RUNS {
            let id = env.id(&format!("dangle-race{i}"));
            // Each run starts with the link dangling in the root: what an earlier run created
            // at its target inside the rootfs goes (the container is gone, and its mounts).
            let _ = fs::remove_dir_all(b.rootfs().join(outside_path.strip_prefix("/").unwrap()));
            let out = env.berth(&["run", "--bundle", b.dir(), &id]);
            if out.code == Some(0) {
                let text = &out.stdout;
                for size in ["size=1236k", "size=2468k"] {
                    assert!(
                        mountinfo(text).iter().any(|m| m.fstype == "tmpfs" && m.super_opts.iter().any(|o| o == size)),
                        "run {i}: the tmpfs with {size} is not inside the container's root: {text}"
                    );
                }
                // Through the link, created inside the root: under the rootfs's own `outside`.
                if mountinfo(text).iter().any(|m| m.mount_point.starts_with(&*outside_path.to_string_lossy())) {
                    via_link += 1;
                }
                ok += 1;
            } else {
                out.code_is(1);
                LeakProbe::with_bundle(&id, env.root(), &b).assert_clean();
                failed.push(out.stderr);
            }
        }
    });
    assert!(swaps > 0, "the racer never ran");
    eprintln!(
        "dangling race: {ok} runs succeeded ({via_link} through the link, inside the root), {} failed cleanly, \
         {swaps} exchanges; failures: {failed:?}",
        failed.len()
    );
    let written: Vec<_> = fs::read_dir(&outside_path).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(written.is_empty(), "created outside the root through the link: {written:?}");
    assert!(
        mount_leaks(&[outside_path.to_string_lossy().into_owned(), vol_path.to_string_lossy().into_owned()]).is_empty()
    );
    // Control: a mkdir that follows the link on the host, as a path-joining runtime would,
    // does show up in `outside`, so the emptiness above is the walk staying in the root.
    let l = if fs::symlink_metadata(vol_path.join("l")).unwrap().is_symlink() { "l" } else { "d" };
    fs::create_dir_all(vol_path.join(l).join("m1")).unwrap();
    assert!(outside_path.join("m1").is_dir(), "the control did not reach the link's target");
    env.finish();
}

#[test]
fn a_destination_through_a_symlink_loop_is_refused_cleanly() {
    let env = Env::new();
    let mut b = env.bundle_own(&["sh", "-c", "echo STARTED"]);
    make_symlink(b.rootfs(), "/mnt/loop1", "/mnt/loop2/x");
    make_symlink(b.rootfs(), "/mnt/loop2", "/mnt/loop1/y");
    let n = b.config["mounts"].as_array().unwrap().len();
    b.push("/mounts", json!({"destination": "/mnt/loop1/z", "type": "tmpfs", "source": "tmpfs"}));
    create_and_run_fail_clean(&env, &b, "loop", &format!("mounts[{n}] (/mnt/loop1/z)"));
    let out = fails_clean(&env, &b, "run", &env.id("loop-msg"), "symbolic links");
    assert!(!out.stderr.contains("panicked"), "{out:?}");
    env.finish();
}

// ---------------------------------------------------------------------------------------------
// tmpfs modes

#[test]
fn a_tmpfs_without_mode_keeps_its_mount_points_mode() {
    let env = Env::new();
    let mut b = env.bundle_own(&["sh", "-c", "cd /m && stat -c '%n %a' 711 1777 given new"]);
    for (d, mode) in [("711", 0o711), ("1777", 0o1777), ("given", 0o711)] {
        let p = b.rootfs().join("m").join(d);
        fs::create_dir_all(&p).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
    }
    for (d, opts) in
        [("711", json!(["size=1m"])), ("1777", json!([])), ("given", json!(["mode=750"])), ("new", json!([]))]
    {
        b.push(
            "/mounts",
            json!({"destination": format!("/m/{d}"), "type": "tmpfs", "source": "tmpfs", "options": opts}),
        );
    }
    let out = run(&env, &b, "tmpfsmode");
    // A mount point that existed keeps its mode; mode= wins over it; one berth had to create
    // gets tmpfs's own default, 1777 (runc does the same).
    assert_eq!(out.ok(), "711 711\n1777 1777\ngiven 750\nnew 1777\n");
    env.finish();
}

// ---------------------------------------------------------------------------------------------
// rootfsPropagation

#[test]
fn an_unbindable_root_runs_with_its_mounts() {
    let env = Env::new();
    let src = tempfile::tempdir().unwrap();
    fs::write(src.path().join("hello"), "from the host\n").unwrap();
    for (prop, name) in [("unbindable", "unbind"), ("runbindable", "runbind")] {
        let mut b =
            env.bundle(&["sh", "-c", "cat /mnt/hello; echo tmp > /tmp/f && cat /tmp/f; cat /proc/self/mountinfo"]);
        b.set("/linux/rootfsPropagation", json!(prop));
        b.push(
            "/mounts",
            json!({"destination": "/mnt", "type": "bind", "source": src.path(), "options": ["rbind", "ro"]}),
        );
        b.push("/mounts", json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}));
        let out = run(&env, &b, name);
        let text = out.ok();
        assert!(text.starts_with("from the host\ntmp\n"), "{prop}: {text}");
        let mounts = mountinfo(text);
        let root = mount_at(&mounts, "/", text);
        assert!(root.optional.iter().any(|f| f == "unbindable"), "{prop}: / is not unbindable: {:?}", root.optional);
        // rbind/ro bind and tmpfs are there; only `runbindable` reaches the mounts below /.
        let below = [mount_at(&mounts, "/mnt", text), mount_at(&mounts, "/tmp", text)];
        for m in below {
            let unbindable = m.optional.iter().any(|f| f == "unbindable");
            assert_eq!(unbindable, prop == "runbindable", "{prop}: {} {:?}", m.mount_point, m.optional);
        }
    }
    env.finish();
}

#[test]
fn bind_sources_only_host_root_can_reach_work_in_a_user_namespace() {
    // The source lies under a directory only host root may search (mode 0700). The init runs
    // as the container's root, which is host uid 100000 in its user namespace: resolving the
    // source from there is refused. berth opens the sources on the host side, before the
    // user namespace, and hands the init the trees to attach. Checked for run and for
    // create, and exec works in the container afterwards.
    let env = Env::new();
    let host = tempfile::tempdir().unwrap();
    let private = host.path().join("private");
    let data = private.join("data");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("hello"), "from-the-host\n").unwrap();
    fs::set_permissions(&private, fs::Permissions::from_mode(0o700)).unwrap();
    fs::set_permissions(&data, fs::Permissions::from_mode(0o755)).unwrap();
    let mut b = env.bundle_own(&["sh", "-c", "cat /mnt/data/hello && echo STARTED"]);
    // The rootfs belongs to the container's root (host 100000), as with any userns image.
    Command::new("chown").args(["-R", "100000:100000"]).arg(b.rootfs()).status().unwrap();
    b.push("/linux/namespaces", json!({"type": "user"}));
    b.set("/linux/uidMappings", json!([{"containerID": 0, "hostID": 100000, "size": 65536}]));
    b.set("/linux/gidMappings", json!([{"containerID": 0, "hostID": 100000, "size": 65536}]));
    b.push("/mounts", json!({"destination": "/mnt/data", "type": "bind", "source": data, "options": ["rbind", "ro"]}));
    // The control: host uid 100000, which is what the container's root is to host files,
    // cannot reach the path (its capabilities in its own namespace do not count here).
    let control = Command::new("setpriv")
        .args(["--reuid=100000", "--regid=100000", "--clear-groups", "ls"])
        .arg(&data)
        .output()
        .expect("setpriv (util-linux)");
    assert!(!control.status.success(), "the control reached {}: the test would prove nothing", data.display());
    let out = run(&env, &b, "userns-bind");
    assert_eq!(out.ok(), "from-the-host\nSTARTED\n");
    b.set("/process/args", json!(["sleep", "1000"]));
    let id = env.id("userns-bind-exec");
    let pid = env.create(&b, &id);
    env.berth(&["start", &id]).ok();
    assert_eq!(env.berth(&["exec", &id, "cat", "/mnt/data/hello"]).ok(), "from-the-host\n");
    env.berth(&["delete", "--force", &id]).ok();
    env.reap(pid);
    env.finish();
}

/// The mounts of the test process's (the host's) mount namespace at or under `dir`.
fn host_mounts_under(dir: &Path) -> Vec<String> {
    let d = dir.to_string_lossy().into_owned();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|mp| mp == &d || mp.starts_with(&format!("{d}/")))
        .collect()
}

/// Propagation of the host's root mount (its optional fields), which a container without a
/// mount namespace must not change.
fn host_root_propagation() -> String {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = info.lines().find(|l| l.split(' ').nth(4) == Some("/")).unwrap().to_string();
    let (pre, _) = line.split_once(" - ").unwrap();
    pre.split(' ').skip(6).map(|f| f.split(':').next().unwrap()).collect::<Vec<_>>().join(" ")
}

#[test]
fn a_container_without_a_mount_namespace_runs_in_the_callers() {
    // The runtime spec: a namespace type not listed is inherited. runc runs such a container
    // in its own mount namespace, confined by chroot. berth does the same and makes the same
    // mounts (in the caller's namespace, resolved inside the root as always), but unlike runc
    // never changes the caller's propagation and removes every mount it made on delete.
    let env = Env::new();
    let script = "readlink /proc/self/ns/mnt; cat /etc/marker; grep -q ' /proc .* - proc ' /proc/self/mountinfo && echo has-proc";
    let mut b = env.bundle_own(&["sh", "-c", script]);
    fs::write(b.rootfs().join("etc/marker"), "in-the-rootfs\n").unwrap();
    b.drop_namespace("mount");
    b.remove("/linux/maskedPaths").remove("/linux/readonlyPaths");
    b.set("/root/readonly", json!(false));
    let own_ns = fs::read_link("/proc/self/ns/mnt").unwrap().to_string_lossy().into_owned();
    let propagation = host_root_propagation();
    let out = run(&env, &b, "no-mntns");
    assert_eq!(out.ok(), format!("{own_ns}\nin-the-rootfs\nhas-proc\n"));
    assert!(host_mounts_under(b.rootfs()).is_empty(), "mounts left: {:?}", host_mounts_under(b.rootfs()));
    assert_eq!(host_root_propagation(), propagation, "the caller's propagation changed");
    // A detached one: its mounts are there while it runs, exec sees its root, and delete
    // removes them.
    b.set("/process/args", json!(["sleep", "1000"]));
    let id = env.id("no-mntns-exec");
    let pid = env.run_detached(&b, &id);
    assert!(!host_mounts_under(b.rootfs()).is_empty(), "the container's mounts are not in the caller's namespace");
    let out = env.berth(&["exec", &id, "sh", "-c", "readlink /proc/self/ns/mnt; cat /etc/marker"]);
    assert_eq!(out.ok(), format!("{own_ns}\nin-the-rootfs\n"));
    env.berth(&["delete", "--force", &id]).ok();
    env.reap(pid);
    assert!(host_mounts_under(b.rootfs()).is_empty(), "mounts left after delete: {:?}", host_mounts_under(b.rootfs()));
    // What cannot be done without a mount namespace is refused, naming the field.
    for (ptr, value, needle) in [
        ("/linux/maskedPaths", json!(["/proc/kcore"]), "linux.maskedPaths: requires a mount namespace"),
        ("/linux/readonlyPaths", json!(["/proc/sys"]), "linux.readonlyPaths: requires a mount namespace"),
        ("/root/readonly", json!(true), "root.readonly: requires a mount namespace"),
        ("/linux/rootfsPropagation", json!("shared"), "linux.rootfsPropagation: requires a mount namespace"),
    ] {
        let mut bad = env.bundle(&["sh", "-c", "echo STARTED"]);
        bad.drop_namespace("mount");
        bad.remove("/linux/maskedPaths").remove("/linux/readonlyPaths");
        bad.set("/root/readonly", json!(false));
        bad.set(ptr, value);
        fails_clean(&env, &bad, "run", &env.id("no-mntns-bad"), needle);
    }
    env.finish();
}
