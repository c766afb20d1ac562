//! The embedding API against real containers: lifecycle, stdio, event ordering, error
//! classes, shutdown semantics. Run as root: `cargo test -p berth-client`.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_client::{Client, Config, Helper};
use berth_core::{Client as _, ErrorKind, EventType, Status};
use common::*;

fn start_collect(c: &Client, id: &str, with_stdin: bool) -> (u32, Collected) {
    let mut slot = None;
    let pid = c.start(id, None, with_stdin, &mut collect_into(&mut slot)).expect("start");
    (pid, slot.expect("attach was called"))
}

fn exec_collect(c: &Client, id: &str, exec_id: &str, args: &[&str], with_stdin: bool) -> (u32, Collected) {
    let mut slot = None;
    let pid = c.exec(id, exec_id, &process(args), with_stdin, &mut collect_into(&mut slot)).expect("exec");
    (pid, slot.expect("attach was called"))
}

#[test]
fn lifecycle_stdio_and_exit_code() {
    // The sink records whether the engine had read all of stdout when the exit event
    // arrived: output must drain fully before the exit event. (The reader appends each chunk
    // before it reads again, and only that next read can see EOF.)
    let complete_at_exit = Arc::new(Mutex::new(None));
    type Shared<T> = Arc<Mutex<T>>;
    let out_buf: Shared<Option<Shared<Vec<u8>>>> = Arc::new(Mutex::new(None));
    let (buf2, seen2) = (out_buf.clone(), complete_at_exit.clone());
    let rec = Recorder::with_hook(move |_, e, _| {
        if e == EventType::Exit {
            let b = buf2.lock().unwrap().clone();
            *seen2.lock().unwrap() = b.map(|b| b.lock().unwrap().ends_with(b"filler-line-1999\n"));
        }
    });
    let c = client_with(rec.clone());
    let id = id("life");
    let script = "read line; echo \"out:$line\"; i=0; while [ $i -lt 2000 ]; do echo filler-line-$i; i=$((i+1)); done; echo err >&2; exit 3";
    c.create(&id, &spec(&["sh", "-c", script]), None).unwrap();
    assert_eq!(c.status(&id).unwrap(), Status::Created);
    // A slow reader: when the process exits, most of its output is still in the pipe.
    let mut slot = None;
    let pid = c
        .start(&id, None, true, &mut |io| {
            slot = Some(Collected::from_with(io, 256, Duration::from_millis(1)));
            Ok(())
        })
        .unwrap();
    let mut io = slot.unwrap();
    *out_buf.lock().unwrap() = Some(io.stdout.clone());
    assert!(pid > 0);
    let mut stdin = io.stdin.take().expect("stdin writer");
    stdin.write_all(b"hi\n").unwrap();
    // Closing delivers EOF even though the monitor holds a copy of the pipe.
    stdin.close().unwrap();
    let exit = rec.wait_exit(&id, &id);
    assert_eq!(exit.info.exit_code, 3);
    assert_eq!(exit.info.pid, pid);
    assert!(exit.info.exited_at.is_some());
    assert_eq!(*complete_at_exit.lock().unwrap(), Some(true), "the exit event came before stdout drained");
    let (out, err) = io.finish();
    assert!(out.starts_with("out:hi\nfiller-line-0\n"), "{out:?}");
    assert!(out.ends_with("filler-line-1999\n"), "output was cut: {} bytes", out.len());
    assert_eq!(err, "err\n");
    assert_eq!(c.status(&id).unwrap(), Status::Stopped);
    let (code, at) = c.delete_task(&id).unwrap();
    assert_eq!(code, 3);
    assert_eq!(Some(at), exit.info.exited_at);
    assert_eq!(rec.trace(&id), ["create:init", "start:init", "exit:init"]);
    c.delete(&id).unwrap();
    assert!(c.status(&id).unwrap_err().is_not_found());
    assert!(!c.root().join(&id).exists());
    for d in cgroup_dirs(&id) {
        assert!(!d.exists(), "{} left behind", d.display());
    }
}

#[test]
fn fifty_containers_with_execs_in_parallel() {
    let rec = Recorder::new();
    let c = client_with(rec.clone());
    let c = Arc::new(c);
    let ids: Vec<String> = (0..50).map(|i| id(&format!("par{i}"))).collect();
    let mut threads = Vec::new();
    for (i, id) in ids.iter().cloned().enumerate() {
        let c = c.clone();
        let rec = rec.clone();
        threads.push(std::thread::spawn(move || {
            c.create(&id, &spec(&["cat"]), None).unwrap();
            let (_, mut init_io) = start_collect(&c, &id, true);
            let msg = format!("exec-{i}");
            let (epid, exec_io) = exec_collect(&c, &id, "e1", &["sh", "-c", &format!("echo {msg}")], false);
            assert!(epid > 0);
            // A second exec that exits at once: its exit must still follow its start.
            exec_collect(&c, &id, "e2", &["true"], false);
            rec.wait_exit(&id, "e1");
            rec.wait_exit(&id, "e2");
            // Write, then drop the writer: dropping closes stdin, so `cat` exits.
            init_io.stdin.take().unwrap().write_all(format!("init-{i}\n").as_bytes()).unwrap();
            let exit = rec.wait_exit(&id, &id);
            assert_eq!(exit.info.exit_code, 0);
            assert_eq!(exec_io.finish().0, format!("{msg}\n"));
            assert_eq!(init_io.finish().0, format!("init-{i}\n"));
            c.delete(&id).unwrap();
        }));
    }
    for t in threads {
        t.join().unwrap();
    }
    for id in &ids {
        let t = rec.trace(id);
        let pos = |s: &str| t.iter().position(|x| x == s).unwrap_or_else(|| panic!("{id}: no {s} in {t:?}"));
        assert_eq!(t.len(), 9, "{id}: {t:?}");
        assert_eq!(&t[..2], ["create:init", "start:init"], "{id}");
        for e in ["e1", "e2"] {
            assert!(pos(&format!("exec-added:{e}")) < pos(&format!("exec-started:{e}")), "{id}: {t:?}");
            assert!(pos(&format!("exec-started:{e}")) < pos(&format!("exit:{e}")), "{id}: {t:?}");
        }
        assert_eq!(t.last().map(String::as_str), Some("exit:init"), "{id}: {t:?}");
    }
}

/// The init dies while an exec runs: the exec's exit must be delivered before the init's,
/// with a pid namespace (the kernel kills the exec) and without (the monitor kills it).
#[test]
fn exec_exits_come_before_the_init_exit() {
    for (label, spec) in [("pidns", spec(&["sleep", "1000"])), ("hostpid", spec_host_pidns(&["sleep", "1000"]))] {
        let rec = Recorder::new();
        let c = client_with(rec.clone());
        let id = id(label);
        c.create(&id, &spec, None).unwrap();
        let (init_pid, _io) = start_collect(&c, &id, false);
        let (epid, _eio) = exec_collect(&c, &id, "long", &["sleep", "1000"], false);
        assert!(alive(epid));
        c.signal_process(&id, &id, libc::SIGKILL).unwrap();
        let exit = rec.wait_exit(&id, &id);
        assert_eq!(exit.info.exit_code, 128 + 9, "{label}");
        assert_eq!(exit.info.pid, init_pid);
        let t = rec.trace(&id);
        assert_eq!(
            t,
            ["create:init", "start:init", "exec-added:long", "exec-started:long", "exit:long", "exit:init"],
            "{label}"
        );
        assert!(!alive(epid), "{label}: exec survived its init");
        // After the init exited, exec is refused (moby 4bafaa00aa / containerd #9828).
        let e = c.exec(&id, "late", &process(&["true"]), false, &mut |_| Ok(())).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{label}: {e}");
        c.delete(&id).unwrap();
    }
}

#[test]
fn exec_after_the_init_exited_is_refused() {
    let rec = Recorder::new();
    let c = client_with(rec.clone());
    let id = id("late");
    c.create(&id, &spec(&["true"]), None).unwrap();
    start_collect(&c, &id, false);
    // Refused as soon as the monitor has seen the exit, even before the engine got the event.
    eventually("the init to exit", || c.wait(&id, Some(Duration::ZERO)).unwrap().is_some());
    let mut attached = false;
    let e = c
        .exec(&id, "x", &process(&["true"]), false, &mut |_| {
            attached = true;
            Ok(())
        })
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(!attached);
    rec.wait_exit(&id, &id);
    assert!(c.flush_events(&id, LONG));
    assert!(rec.trace(&id).iter().all(|t| !t.contains(":x")));
    c.delete(&id).unwrap();
}

#[test]
fn slow_or_panicking_sink_does_not_stall_other_containers() {
    let blocked = id("blocked");
    let panicky = id("panicky");
    let free = id("free");
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let release_rx = Mutex::new(release_rx);
    let (b2, p2) = (blocked.clone(), panicky.clone());
    let rec = Recorder::with_hook(move |cid, e, _| {
        if cid == b2 && e == EventType::Create {
            // Holds up every later event of this container until released.
            let _ = release_rx.lock().unwrap().recv();
        }
        if cid == p2 && e == EventType::Start {
            panic!("engine bug while handling start");
        }
    });
    let c = client_with(rec.clone());
    // The caller never blocks on the sink: these return while the sink sits on `create`.
    c.create(&blocked, &spec(&["true"]), None).unwrap();
    start_collect(&c, &blocked, false);
    c.create(&panicky, &spec(&["true"]), None).unwrap();
    start_collect(&c, &panicky, false);
    c.create(&free, &spec(&["echo", "free"]), None).unwrap();
    let (_, io) = start_collect(&c, &free, false);
    assert_eq!(rec.wait_exit(&free, &free).info.exit_code, 0);
    assert_eq!(io.finish().0, "free\n");
    assert_eq!(rec.trace(&free), ["create:init", "start:init", "exit:init"]);
    // The panicking event is lost, the rest of that container's stream is not.
    rec.wait_exit(&panicky, &panicky);
    assert_eq!(rec.trace(&panicky), ["create:init", "exit:init"]);
    assert!(rec.trace(&blocked).is_empty(), "{:?}", rec.trace(&blocked));
    release_tx.send(()).unwrap();
    rec.wait_exit(&blocked, &blocked);
    assert_eq!(rec.trace(&blocked), ["create:init", "start:init", "exit:init"]);
    for id in [&blocked, &panicky, &free] {
        c.delete(id).unwrap();
    }
}

#[test]
fn error_classes() {
    let rec = Recorder::new();
    let c = client_with(rec.clone());
    let nf = |r: berth_core::Result<()>| assert_eq!(r.unwrap_err().kind(), ErrorKind::NotFound);
    let ghost = "no-such-container";
    // not-found
    nf(c.start(ghost, None, false, &mut |_| Ok(())).map(drop));
    nf(c.exec(ghost, "e", &process(&["true"]), false, &mut |_| Ok(())).map(drop));
    nf(c.signal_process(ghost, ghost, 15));
    nf(c.pause(ghost));
    nf(c.delete(ghost));
    nf(c.delete_task(ghost).map(drop));
    nf(c.stats(ghost).map(drop));
    nf(c.restore(ghost, &mut |_| Ok(())).map(drop));
    assert_eq!(c.status(ghost).unwrap_err().kind(), ErrorKind::NotFound);

    let id = id("errs");
    c.create(&id, &spec(&["sleep", "1000"]), None).unwrap();
    // conflict: id in use; delete_task before exit
    assert_eq!(c.create(&id, &spec(&["true"]), None).unwrap_err().kind(), ErrorKind::Conflict);
    assert_eq!(c.delete_task(&id).unwrap_err().kind(), ErrorKind::Conflict);
    start_collect(&c, &id, false);
    // not-modified: starting a started container (moby c030885e7a)
    assert_eq!(c.start(&id, None, false, &mut |_| Ok(())).unwrap_err().kind(), ErrorKind::NotModified);
    // conflict: deleting a running container, pausing twice, resuming a running one,
    // reusing an exec id
    assert_eq!(c.delete(&id).unwrap_err().kind(), ErrorKind::Conflict);
    assert_eq!(c.status(&id).unwrap(), Status::Running);
    assert_eq!(c.resume(&id).unwrap_err().kind(), ErrorKind::Conflict);
    exec_collect(&c, &id, "busy", &["sleep", "1000"], false);
    let e = c.exec(&id, "busy", &process(&["true"]), false, &mut |_| Ok(())).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    c.pause(&id).unwrap();
    assert_eq!(c.pause(&id).unwrap_err().kind(), ErrorKind::Conflict);
    c.resume(&id).unwrap();
    // not-found: unknown process
    nf(c.signal_process(&id, "nope", 15));
    // invalid-parameter
    let ip = |r: berth_core::Result<()>| {
        let e = r.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidParameter, "{e}");
    };
    ip(c.create("bad/id", &spec(&["true"]), None));
    ip(c.signal_process(&id, &id, 0));
    ip(c.signal_process(&id, &id, 99));
    ip(c.resize_terminal(&id, &id, 80, 25));
    ip(c.resize_terminal(&id, &id, 1 << 20, 25));
    ip(c.exec(&id, "", &process(&["true"]), false, &mut |_| Ok(())).map(drop));
    ip(c.exec(&id, "x", &process(&["/no/such/binary"]), false, &mut |_| Ok(())).map(drop));
    ip(c.create(&common::id("noexe"), &spec(&["/no/such/binary"]), None));
    // not-implemented
    let ni = |r: berth_core::Result<()>| assert_eq!(r.unwrap_err().kind(), ErrorKind::NotImplemented);
    ni(c.create_checkpoint(&id, std::path::Path::new("/tmp/ckpt"), false));
    ni(c.start(&id, Some(std::path::Path::new("/tmp/ckpt")), false, &mut |_| Ok(())).map(drop));
    // system: the container's setup fails in the kernel, not because of the request's shape
    // (the sysctl does not exist; only the container's init can find out)
    let mut bad = spec(&["true"]);
    let mut linux = bad.linux().clone().unwrap();
    linux.set_sysctl(Some([("net.ipv4.berth_no_such_sysctl".to_string(), "1".to_string())].into()));
    bad.set_linux(Some(linux));
    let bad_id = common::id("sys");
    let e = c.create(&bad_id, &bad, None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::System, "{e}");
    assert!(c.status(&bad_id).unwrap_err().is_not_found(), "a failed create leaves nothing registered");
    assert!(!c.root().join(&bad_id).exists());
    // unavailable: the helper cannot be started
    let mut cfg = Config::new(tempfile::tempdir().unwrap().path());
    cfg.helper = Helper::Path("/nonexistent/berth-monitor".into());
    assert_eq!(Client::new(cfg, rec.clone()).unwrap_err().kind(), ErrorKind::Unavailable);

    c.stop(&id, libc::SIGKILL, Duration::from_secs(5)).unwrap();
    c.delete(&id).unwrap();
}

#[test]
fn stop_escalates_pause_resume_stats_and_update() {
    let rec = Recorder::new();
    let c = client_with(rec.clone());
    let id = id("stop");
    // `sleep` as pid 1 of its namespace ignores SIGTERM (no handler, and pid 1 gets no
    // default action), so stop must escalate to SIGKILL.
    c.create(&id, &spec(&["sleep", "1000"]), None).unwrap();
    let (pid, _io) = start_collect(&c, &id, false);
    let pids = c.list_pids(&id).unwrap();
    assert!(pids.contains(&pid), "{pids:?} lacks {pid}");
    // start returns once the init was told to go; it execs `sleep` right after.
    eventually("the init to exec sleep", || {
        c.summary(&id).unwrap().iter().any(|s| s.pid == pid && s.command == "sleep" && s.args == ["sleep", "1000"])
    });
    let stats = c.stats(&id).unwrap();
    assert!(stats.metrics.pids.current >= 1, "{:?}", stats.metrics.pids);

    let mut r = berth_client::Resources::default();
    let mut pl = oci_spec::runtime::LinuxPids::default();
    pl.set_limit(77);
    r.set_pids(Some(pl));
    c.update_resources(&id, &r).unwrap();
    assert_eq!(c.stats(&id).unwrap().metrics.pids.limit, 77);

    c.pause(&id).unwrap();
    assert_eq!(c.status(&id).unwrap(), Status::Paused);
    let e = c.exec(&id, "x", &process(&["true"]), false, &mut |_| Ok(())).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);
    c.resume(&id).unwrap();
    assert_eq!(c.status(&id).unwrap(), Status::Running);

    let (code, _) = c.stop(&id, libc::SIGTERM, Duration::from_millis(300)).unwrap();
    assert_eq!(code, 137, "SIGTERM was ignored, so SIGKILL ended it");
    rec.wait_exit(&id, &id);
    assert_eq!(rec.trace(&id), ["create:init", "start:init", "paused:init", "resumed:init", "exit:init"]);
    assert_eq!(c.update_resources(&id, &r).unwrap_err().kind(), ErrorKind::Conflict);
    c.delete(&id).unwrap();
}

#[test]
fn signals_other_than_kill_are_delivered_as_is() {
    let rec = Recorder::new();
    let c = client_with(rec.clone());
    let id = id("sig");
    c.create(
        &id,
        &spec(&["sh", "-c", "trap 'echo got-usr1; exit 5' USR1; echo ready; while true; do sleep 0.05; done"]),
        None,
    )
    .unwrap();
    let (_, io) = start_collect(&c, &id, false);
    eventually("the trap to be installed", || io.stdout.lock().unwrap().starts_with(b"ready\n"));
    c.signal_process(&id, berth_core::INIT_PROCESS_NAME, libc::SIGUSR1).unwrap();
    assert_eq!(rec.wait_exit(&id, &id).info.exit_code, 5);
    assert_eq!(io.finish().0, "ready\ngot-usr1\n");
    // Signalling a finished process: not found.
    assert_eq!(c.signal_process(&id, &id, 15).unwrap_err().kind(), ErrorKind::NotFound);
    c.delete(&id).unwrap();
}

#[test]
fn deleting_a_created_container_tears_it_down() {
    let rec = Recorder::new();
    let c = client_with(rec.clone());
    let id = id("created");
    c.create(&id, &spec(&["sleep", "1000"]), None).unwrap();
    let state = berth_linux::state::ContainerState::load(c.root(), &id).unwrap();
    let pid = state.pid as u32;
    assert!(alive(pid));
    let dirs = cgroup_dirs(&id);
    assert!(dirs.iter().any(|d| d.exists()));
    c.delete(&id).unwrap();
    assert!(!alive(pid));
    for d in dirs {
        assert!(!d.exists(), "{} left behind", d.display());
    }
    assert!(!c.root().join(&id).exists());
    // It never started, so there is no exit event either.
    assert!(c.flush_events(&id, LONG));
    assert_eq!(rec.trace(&id), ["create:init"]);
}

#[test]
fn failed_attach_kills_the_exec_and_leaves_the_init_startable() {
    let rec = Recorder::new();
    let c = client_with(rec.clone());
    let id = id("attach");
    c.create(&id, &spec(&["sleep", "1000"]), None).unwrap();
    let e = c.start(&id, None, false, &mut |_| Err(berth_core::Error::system("engine cannot attach"))).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::System);
    assert_eq!(c.status(&id).unwrap(), Status::Created, "a failed attach starts nothing");
    start_collect(&c, &id, false);
    let mut exec_pid = 0;
    let e = c
        .exec(&id, "doomed", &process(&["sleep", "1000"]), false, &mut |_| {
            exec_pid = c.list_pids(&id).unwrap().into_iter().max().unwrap_or(0);
            Err(berth_core::Error::system("engine cannot attach"))
        })
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::System);
    assert!(exec_pid > 0);
    eventually("the exec to be killed", || !alive(exec_pid));
    // The id is free again and no event was published for the aborted exec.
    exec_collect(&c, &id, "doomed", &["true"], false);
    rec.wait_exit(&id, "doomed");
    assert_eq!(
        rec.trace(&id),
        ["create:init", "start:init", "exec-added:doomed", "exec-started:doomed", "exit:doomed"]
    );
    c.stop(&id, libc::SIGKILL, Duration::from_secs(5)).unwrap();
    c.delete(&id).unwrap();
}

#[test]
fn close_stdin_from_the_client_while_the_engine_holds_the_writer() {
    let rec = Recorder::new();
    let c = client_with(rec.clone());
    let id = id("closein");
    c.create(&id, &spec(&["cat"]), None).unwrap();
    let (_, mut io) = start_collect(&c, &id, true);
    let mut w = io.stdin.take().unwrap();
    w.write_all(b"abc").unwrap();
    c.close_stdin(&id, &id).unwrap();
    assert_eq!(rec.wait_exit(&id, &id).info.exit_code, 0);
    assert_eq!(io.finish().0, "abc");
    assert_eq!(w.write(b"late").unwrap_err().kind(), std::io::ErrorKind::BrokenPipe);
    drop(w);
    // An exec without stdin reads EOF at once.
    let id2 = common::id("nostdin");
    c.create(&id2, &spec(&["sleep", "1000"]), None).unwrap();
    start_collect(&c, &id2, false);
    let (_, eio) = exec_collect(&c, &id2, "cat", &["cat"], false);
    assert!(eio.stdin.is_none());
    rec.wait_exit(&id2, "cat");
    c.stop(&id2, libc::SIGKILL, Duration::from_secs(5)).unwrap();
    for i in [&id, &id2] {
        c.delete(i).unwrap();
    }
}

#[test]
fn terminal_exec_resize_and_eof() {
    let rec = Recorder::new();
    let c = client_with(rec.clone());
    let id = id("tty");
    c.create(&id, &spec(&["sleep", "1000"]), None).unwrap();
    start_collect(&c, &id, false);
    let mut p = process(&["sh", "-c", "read x; stty size; echo tty-$x"]);
    p.set_terminal(Some(true));
    let mut slot = None;
    c.exec(&id, "t", &p, true, &mut collect_into(&mut slot)).unwrap();
    let mut io = slot.unwrap();
    c.resize_terminal(&id, "t", 100, 40).unwrap();
    let mut w = io.stdin.take().unwrap();
    w.write_all(b"ok\n").unwrap();
    assert_eq!(rec.wait_exit(&id, "t").info.exit_code, 0);
    let (out, _) = io.finish();
    assert!(out.contains("40 100"), "{out:?}");
    assert!(out.contains("tty-ok"), "{out:?}");
    c.stop(&id, libc::SIGKILL, Duration::from_secs(5)).unwrap();
    c.delete(&id).unwrap();
}

#[test]
fn oom_kill_is_reported_before_the_exit() {
    let rec = Recorder::new();
    let c = client_with(rec.clone());
    let id = id("oom");
    let mut s = spec(&["sh", "-c", "x=aaaaaaaaaaaaaaaa; while true; do x=$x$x; done"]);
    let mut linux = s.linux().clone().unwrap();
    let mut res = linux.resources().clone().unwrap_or_default();
    let mut mem = oci_spec::runtime::LinuxMemory::default();
    mem.set_limit(Some(32 << 20)).set_swap(Some(32 << 20));
    res.set_memory(Some(mem));
    linux.set_resources(Some(res));
    s.set_linux(Some(linux));
    c.create(&id, &s, None).unwrap();
    start_collect(&c, &id, false);
    let exit = rec.wait_exit(&id, &id);
    assert_eq!(exit.info.exit_code, 137);
    assert!(exit.info.oom_killed, "{exit:?}");
    let t = rec.trace(&id);
    let oom = t.iter().position(|x| x == "oom:init").unwrap_or_else(|| panic!("no oom event: {t:?}"));
    assert!(oom < t.len() - 1, "{t:?}");
    c.delete(&id).unwrap();
}

#[test]
fn a_dead_monitor_is_reported_as_a_failed_exit_not_a_clean_one() {
    let rec = Recorder::new();
    let c = client_with(rec.clone());
    let id = id("mondead");
    c.create(&id, &spec(&["sleep", "1000"]), None).unwrap();
    let (pid, _io) = start_collect(&c, &id, false);
    let mon = c.monitor_pid(&id).unwrap();
    rustix::process::kill_process(rustix::process::Pid::from_raw(mon as i32).unwrap(), rustix::process::Signal::KILL)
        .unwrap();
    let exit = rec.wait_exit(&id, &id);
    assert_eq!(exit.info.exit_code, u32::MAX);
    assert!(exit.info.error.is_some());
    assert_eq!(c.status(&id).unwrap(), Status::Stopped);
    c.delete(&id).unwrap();
    eventually("the orphaned init to be killed", || !alive(pid));
    assert!(!c.root().join(&id).exists());
    for d in cgroup_dirs(&id) {
        assert!(!d.exists(), "{} left behind", d.display());
    }
}

#[test]
fn a_second_client_can_take_a_container_over() {
    let rec1 = Recorder::new();
    let c1 = client_with(rec1.clone());
    let id = id("takeover");
    c1.create(&id, &spec(&["cat"]), None).unwrap();
    // The first client keeps only the stdin writer (two live readers of one pipe would
    // split the output between them).
    let mut stdin1 = None;
    let pid = c1
        .start(&id, None, true, &mut |io| {
            stdin1 = io.stdin;
            Ok(())
        })
        .unwrap();

    let rec2 = Recorder::new();
    let c2 = client_on(c1.root(), rec2.clone());
    assert_eq!(c2.helper_pid(), c1.helper_pid(), "one helper per state root");
    let mut slot = None;
    assert_eq!(c2.restore(&id, &mut collect_into(&mut slot)).unwrap(), (true, Some(pid)));
    let mut io2 = slot.unwrap();

    // The first client no longer speaks for the container, and did not invent an exit.
    eventually("the first client to notice", || c1.resume(&id).is_err_and(|e| e.kind() == ErrorKind::Unavailable));
    rec1.wait_for(&id, "create and start", |evs| evs.len() >= 2);
    // A pipe reads EOF once every writer is closed: the first client's handle is one of them
    // (after a crash it would be gone with its process).
    drop(stdin1.take());

    let mut w2 = io2.stdin.take().unwrap();
    w2.write_all(b"via-second\n").unwrap();
    c2.close_stdin(&id, &id).unwrap();
    assert_eq!(rec2.wait_exit(&id, &id).info.exit_code, 0);
    assert_eq!(io2.finish().0, "via-second\n");
    assert_eq!(rec2.trace(&id), ["exit:init"]);
    c2.delete(&id).unwrap();
    assert!(c1.flush_events(&id, LONG));
    assert_eq!(rec1.trace(&id), ["create:init", "start:init"], "the first client invented events");
}

#[test]
fn restore_when_the_monitor_is_gone() {
    let rec1 = Recorder::new();
    let c1 = client_with(rec1.clone());
    let id = id("orphan");
    c1.create(&id, &spec(&["sleep", "1000"]), None).unwrap();
    let (pid, _io) = start_collect(&c1, &id, false);
    let mon = c1.monitor_pid(&id).unwrap();
    rustix::process::kill_process(rustix::process::Pid::from_raw(mon as i32).unwrap(), rustix::process::Signal::KILL)
        .unwrap();
    rec1.wait_exit(&id, &id);
    // Nothing supervises it any more, so it is killed (docs/embedding.md, "When a supervisor
    // dies"; tests/crashes.rs).
    eventually("the container whose monitor died to be killed", || !alive(pid));

    // A new client finds the container without a monitor: it is reported stopped with an
    // unknown status.
    let rec2 = Recorder::new();
    let c2 = client_on(c1.root(), rec2.clone());
    assert_eq!(c2.restore(&id, &mut |_| panic!("no stdio for a dead container")).unwrap(), (false, Some(pid)));
    let exit = rec2.wait_exit(&id, &id);
    assert_eq!(exit.info.exit_code, u32::MAX);
    assert!(exit.info.error.is_some());
    assert_eq!(c2.status(&id).unwrap(), Status::Stopped);
    assert_eq!(c2.delete_task(&id).unwrap().0, u32::MAX);
    c2.delete(&id).unwrap();
    assert!(!c2.root().join(&id).exists());
    for d in cgroup_dirs(&id) {
        assert!(!d.exists(), "{} left behind", d.display());
    }
}

/// moby's daemon calls DeleteTask and Delete from inside its exit event handler; that must
/// neither deadlock nor fail.
#[test]
fn the_sink_may_call_back_into_the_client() {
    let client: Arc<Mutex<std::sync::Weak<TestClient>>> = Arc::default();
    let done: Arc<Mutex<Vec<String>>> = Arc::default();
    let (c2, d2) = (client.clone(), done.clone());
    let rec = Recorder::with_hook(move |cid, e, info| {
        if e == EventType::Exit && info.process_id == cid {
            if let Some(c) = c2.lock().unwrap().upgrade() {
                let (code, _) = c.delete_task(cid).unwrap();
                c.delete(cid).unwrap();
                d2.lock().unwrap().push(format!("{cid} {code}"));
            }
        }
    });
    let c = Arc::new(client_with(rec.clone()));
    *client.lock().unwrap() = Arc::downgrade(&c);
    let id = id("callback");
    c.create(&id, &spec(&["sh", "-c", "exit 4"]), None).unwrap();
    start_collect(&c, &id, false);
    rec.wait_exit(&id, &id);
    assert_eq!(*done.lock().unwrap(), [format!("{id} 4")]);
    assert!(c.status(&id).unwrap_err().is_not_found());
    assert!(!c.root().join(&id).exists());
}

#[test]
fn exec_with_an_out_of_range_uid_is_refused_and_nothing_runs() {
    // uid 4294967295 is (uid_t)-1: set*id(-1) means "unchanged", so an exec process that got
    // through would run as root. The API caller gets an invalid-parameter error naming the field.
    let rec = Recorder::new();
    let c = client_with(rec.clone());
    let id = id("badids");
    c.create(&id, &spec(&["sleep", "1000"]), None).unwrap();
    let (init_pid, _io) = start_collect(&c, &id, false);
    let script = "echo STARTED; id -u";
    for (uid, gid, groups, field) in [
        (u32::MAX, 0, vec![], "user.uid: 4294967295"),
        (0, u32::MAX, vec![], "user.gid: 4294967295"),
        (0, 0, vec![2_147_483_648], "user.additionalGids[0]: 2147483648"),
    ] {
        let mut p = process(&["sh", "-c", script]);
        let mut u = p.user().clone();
        u.set_uid(uid).set_gid(gid).set_additional_gids(Some(groups));
        p.set_user(u);
        let mut attached = false;
        let r = c.exec(&id, "bad", &p, false, &mut |_| {
            attached = true;
            Ok(())
        });
        let e = match r {
            Ok(pid) => {
                let out = rec.wait_exit(&id, "bad");
                panic!("exec as {uid}:{gid} ran as pid {pid} (exit {:?})", out.info.exit_code);
            }
            Err(e) => e,
        };
        assert_eq!(e.kind(), ErrorKind::InvalidParameter, "{e}");
        assert!(e.to_string().contains(&format!("{field} is out of range (0 to 2147483647)")), "{e}");
        assert!(!attached, "the exec's stdio was attached: it started");
        assert_eq!(c.list_pids(&id).unwrap(), [init_pid], "a process was left in the container");
    }
    // Nothing was registered: the same exec id works with the largest valid uid.
    let mut p = process(&["sh", "-c", script]);
    let mut u = p.user().clone();
    u.set_uid(2_147_483_647);
    p.set_user(u);
    let mut slot = None;
    c.exec(&id, "bad", &p, false, &mut collect_into(&mut slot)).expect("exec with uid 2147483647");
    assert_eq!(rec.wait_exit(&id, "bad").info.exit_code, 0);
    let (out, _) = slot.unwrap().finish();
    assert_eq!(out, "STARTED\n2147483647\n");
    assert_eq!(rec.trace(&id), ["create:init", "start:init", "exec-added:bad", "exec-started:bad", "exit:bad"]);
    c.stop(&id, libc::SIGKILL, Duration::from_secs(5)).unwrap();
    c.delete(&id).unwrap();
}

#[test]
fn device_rules_in_an_update_keep_the_default_devices() {
    // An update's device rules are composed as at create (deny all, the rules, the default
    // allow list): before, they replaced everything, so /dev/null became unusable.
    let rec = Recorder::new();
    let c = client_with(rec.clone());
    let id = id("devupdate");
    // /dev/kmsg as a node (without it, the probe's write would create a regular file).
    let mut s = serde_json::to_value(spec(&["sleep", "1000"])).unwrap();
    s["linux"]["devices"] = serde_json::json!([{"path": "/dev/kmsg", "type": "c", "major": 1, "minor": 11}]);
    c.create(&id, &serde_json::from_value(s).unwrap(), None).unwrap();
    start_collect(&c, &id, false);
    let probe = |n: &str| -> String {
        let script =
            "(echo x > /dev/null) 2>&1 && echo null=ok; (echo '<7>berth test' > /dev/kmsg) 2>&1 && echo kmsg=ok";
        let mut slot = None;
        c.exec(&id, n, &process(&["sh", "-c", script]), false, &mut collect_into(&mut slot)).unwrap();
        rec.wait_exit(&id, n);
        slot.unwrap().finish().0
    };
    let update = |rules: serde_json::Value| {
        let r: berth_client::Resources = serde_json::from_value(serde_json::json!({"devices": rules})).unwrap();
        c.update_resources(&id, &r).unwrap();
    };
    let denied = "null=ok\nsh: can't create /dev/kmsg: Operation not permitted\n";
    assert_eq!(probe("p1"), denied);
    update(serde_json::json!([{"allow": true, "type": "c", "major": 1, "minor": 11, "access": "w"}]));
    assert_eq!(probe("p2"), "null=ok\nkmsg=ok\n");
    update(serde_json::json!([{"allow": false, "access": "rwm"}]));
    assert_eq!(probe("p3"), denied);
    c.stop(&id, libc::SIGKILL, Duration::from_secs(5)).unwrap();
    c.delete(&id).unwrap();
}

#[test]
fn failing_poststart_hook_fails_start_and_stops_the_container() {
    // As `berth start`: the start is refused with the hook's error, the process is killed,
    // and the container is left stopped for delete, which runs poststop. The engine sees no
    // start and hence no exit event.
    let rec = Recorder::new();
    let c = client_with(rec.clone());
    let id = id("poststart");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("poststop.log");
    let mut s = spec(&["sleep", "100000"]);
    let hooks: oci_spec::runtime::Hooks = serde_json::from_value(serde_json::json!({
        "poststart": [{"path": "/bin/sh", "args": ["sh", "-c", "echo hook-says-no >&2; exit 3"]}],
        "poststop": [{"path": "/bin/sh", "args": ["sh", "-c", format!("echo poststop >> {}", log.display())]}],
    }))
    .unwrap();
    s.set_hooks(Some(hooks));
    c.create(&id, &s, None).unwrap();
    let pid = berth_linux::state::ContainerState::load(c.root(), &id).unwrap().pid as u32;
    let err = c.start(&id, None, false, &mut |_| Ok(())).unwrap_err();
    for needle in ["hooks.poststart[0]", "exit status: 3", "hook-says-no"] {
        assert!(err.to_string().contains(needle), "the error lacks {needle:?}: {err}");
    }
    // Stopped by the time start returns: the monitor reaped the init before answering.
    assert!(!alive(pid), "the init was not killed");
    assert_eq!(c.status(&id).unwrap(), Status::Stopped);
    assert!(!log.exists(), "poststop ran before delete");
    c.delete(&id).unwrap();
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "poststop\n");
    for d in cgroup_dirs(&id) {
        assert!(!d.exists(), "{} left behind", d.display());
    }
    assert!(!c.root().join(&id).exists());
    assert!(c.flush_events(&id, LONG));
    assert_eq!(rec.trace(&id), ["create:init"]);
}
