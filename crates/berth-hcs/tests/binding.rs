#![cfg(unix)]
//! The HCS binding and the client over it, against a stand-in vmcompute library.
//!
//! `tests/standin/vmcompute.c` implements the same C entry points as vmcompute.dll and logs
//! every call; it is compiled here with the system `cc` and copied into a fresh directory per
//! test (a distinct file is a distinct dlopen instance, so tests do not share its state).
//! What this cannot cover — and is therefore only type-checked here — is the behaviour of the
//! real vmcompute.dll on Windows: these tests pin the marshalling (UTF-16, handles, result and
//! property documents, callbacks from foreign threads) and the client's semantics.
//!
//! Waits below are bounded only as hang guards (60 s); nothing asserts on timing.

mod common;

use std::io::{Read, Write};
use std::sync::Mutex;

use berth_core::{Client, ErrorKind, EventType, ProcessIo, Status};
use berth_hcs::hcs::VmcomputeNameToGuid;
use berth_hcs::lcow::{ActualMode, LcowConfig};
use berth_hcs::{HcsCreateOptions, NameToGuid};
use berth_hcs_schema::{to_go_json, ContainerConfig, ProcessConfig};
use common::standin::*;
use common::*;
use serde_json::{json, Value};

// ------------------------------------------------------------------ the binding itself

#[test]
fn marshalling_handles_documents_and_callbacks() {
    let s = StandIn::new();
    let id = "c-é-😀-<&>";
    let cfg = ContainerConfig {
        system_type: "Container".into(),
        name: id.into(),
        host_name: "hé-😀".into(),
        ..Default::default()
    };
    let sys = s.api.create_compute_system(id, &cfg, GUARD).unwrap();

    // The id and document arrived intact through UTF-16, byte-exact as Go would write it.
    let create = &s.named("HcsCreateComputeSystem")[0];
    assert_eq!(create[1], id);
    assert_eq!(create[2], to_go_json(&cfg).unwrap());
    assert!(create[2].contains(r#""Name":"c-é-😀-\u003c\u0026\u003e""#), "{}", create[2]);
    assert_eq!(create[3], "no-identity");
    let handle = create[4].clone();
    // The callback was registered on that handle, and the pending create completed through it.
    let reg = &s.named("HcsRegisterComputeSystemCallback")[0];
    assert_eq!(reg[1], handle);

    sys.start(GUARD).unwrap();
    assert_eq!(
        s.named("HcsStartComputeSystem")[0],
        vec!["HcsStartComputeSystem".to_string(), handle.clone(), String::new()]
    );

    // Property documents are parsed.
    let st = sys.statistics().unwrap();
    assert_eq!(st.memory.usage_commit_bytes, 4096);
    assert_eq!(st.network[0].endpoint_id, "ep");
    assert_eq!(s.named("HcsGetComputeSystemProperties")[0][2], r#"{ "PropertyTypes" : ["Statistics"]}"#);

    // A process: stdio pipes, stdin close through HCS, exit code.
    let pc = ProcessConfig {
        command_line: "cat".into(),
        create_std_in_pipe: true,
        create_std_out_pipe: true,
        create_std_err_pipe: true,
        console_size: [24, 80],
        ..Default::default()
    };
    let p = sys.create_process(&pc).unwrap();
    let cp = &s.named("HcsCreateProcess")[0];
    assert_eq!(cp[1], handle);
    // hcsshim zeroed the console size of a process without a console.
    assert!(cp[2].contains(r#""ConsoleSize":[0,0]"#), "{}", cp[2]);
    let ph = cp[3].clone();
    let names = sys.process_list().unwrap();
    assert_eq!(names[0].image_name, "cat");
    assert_eq!(names[0].process_id, p.pid());

    let io = p.take_stdio();
    let (mut stdin, mut stdout) = (io.stdin.unwrap(), io.stdout.unwrap());
    assert!(io.stderr.is_some());
    stdin.write_all(b"hello through the stand-in\n").unwrap();
    p.close_stdin().unwrap();
    let modify = &s.named("HcsModifyProcess")[0];
    assert_eq!(modify[1], ph);
    assert_eq!(modify[2], r#"{"Operation":"CloseHandle","CloseHandle":{"Handle":"StdIn"}}"#);
    drop(stdin);
    let mut out = String::new();
    stdout.read_to_string(&mut out).unwrap();
    assert_eq!(out, "hello through the stand-in\n");
    p.wait().unwrap();
    assert_eq!(p.exit_code().unwrap(), 0);
    p.close().unwrap();
    assert_eq!(s.named("HcsCloseProcess"), vec![vec!["HcsCloseProcess".to_string(), ph]]);
    assert_eq!(s.named("HcsUnregisterProcessCallback").len(), 1);
    assert!(p.exit_code().unwrap_err().is_already_closed());

    // Shutdown is asynchronous: pending, then the exit notification.
    let e = sys.shutdown().unwrap_err();
    assert!(e.is_pending(), "{e}");
    sys.wait_timeout(GUARD).unwrap();
    assert!(sys.shutdown().unwrap_err().is_already_stopped());
    sys.close().unwrap();
    sys.close().unwrap();
    assert_eq!(s.named("HcsCloseComputeSystem"), vec![vec!["HcsCloseComputeSystem".to_string(), handle]]);
    assert!(sys.start(GUARD).unwrap_err().is_already_closed());
}

#[test]
fn failures_carry_the_result_document() {
    let s = StandIn::new();
    let e = s.api.create_compute_system("x-create-fails", &ContainerConfig::default(), GUARD).unwrap_err();
    assert_eq!(e.code(), Some(0x57));
    assert!(e.to_string().contains("The parameter is incorrect. [stand-in event]"), "{e}");
    assert_eq!(e.kind(), ErrorKind::System);

    let e = s.api.open_compute_system("nope").unwrap_err();
    assert!(e.is_not_exist());
    assert_eq!(berth_core::Error::from(e).kind(), ErrorKind::NotFound);

    // A start that completes with an error surfaces the notification's status.
    let sys = s.api.create_compute_system("x-start-fails", &ContainerConfig::default(), GUARD).unwrap();
    assert_eq!(sys.start(GUARD).unwrap_err().code(), Some(2));
    // Dropping closes the handle.
    drop(sys);
    assert_eq!(s.named("HcsCloseComputeSystem").len(), 1);
}

#[test]
fn name_to_guid_through_the_library() {
    let s = StandIn::new();
    let n = VmcomputeNameToGuid(s.api.clone());
    assert_eq!(n.name_to_guid(COMMENT_LAYER).unwrap().to_string(), COMMENT_LAYER_GUID);
    assert_eq!(s.named("NameToGuid")[0][1], COMMENT_LAYER);
    assert_eq!(berth_core::Error::from(s.api.name_to_guid("a\0b").unwrap_err()).kind(), ErrorKind::InvalidParameter);
}

// ------------------------------------------------------------------ the client

#[test]
fn lifecycle_stdio_close_stdin_and_exit() {
    let s = StandIn::new();
    let (c, rec) = client(&s, FakeHost::new());
    c.create("c1", &wcow_cmd(&["cat"]), None).unwrap();
    assert_eq!(c.status("c1").unwrap(), Status::Created);
    // The document sent is the translation, with layer ids from the library's NameToGuid.
    let doc: Value = serde_json::from_str(&s.named("HcsCreateComputeSystem")[0][2]).unwrap();
    assert_eq!(doc["VolumePath"], json!(r"\\?\Volume{66d1ef4c-7a00-11e6-8948-00155ddbef9d}"));
    assert_eq!(s.named("NameToGuid")[0][1], "base");
    assert_eq!(c.create("c1", &wcow_cmd(&["cat"]), None).unwrap_err().kind(), ErrorKind::Conflict);

    let slot = Mutex::new(None);
    let pid = c.start("c1", None, true, &mut keep(&slot)).unwrap();
    let mut io = slot.lock().unwrap().take().unwrap();
    assert!(!io.terminal && io.stderr.is_some());
    assert_eq!(c.start("c1", None, true, &mut keep(&slot)).unwrap_err().kind(), ErrorKind::NotModified);
    assert_eq!(c.status("c1").unwrap(), Status::Running);
    assert_eq!(c.delete("c1").unwrap_err().kind(), ErrorKind::Conflict);
    assert_eq!(c.delete_task("c1").unwrap_err().kind(), ErrorKind::Conflict);

    let mut stdin = io.stdin.take().unwrap();
    stdin.write_all(b"ping\n").unwrap();
    stdin.close().unwrap();
    let mut out = String::new();
    io.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    assert_eq!(out, "ping\n");
    // Closing stdin reached HCS.
    assert!(s
        .named("HcsModifyProcess")
        .iter()
        .any(|m| m[2] == r#"{"Operation":"CloseHandle","CloseHandle":{"Handle":"StdIn"}}"#));

    let exit = rec.wait_exit("init");
    assert_eq!(exit.exit_code, 0);
    assert_eq!(exit.pid, pid);
    assert!(exit.error.is_none());
    assert_eq!(
        rec.kinds(),
        vec![(EventType::Create, String::new()), (EventType::Start, "init".into()), (EventType::Exit, "init".into())]
    );
    assert_eq!(c.status("c1").unwrap(), Status::Stopped);
    assert_eq!(c.delete_task("c1").unwrap().0, 0);
    // After the init's exit the system was shut down and closed, once.
    let names = s.names();
    let shut = names.iter().position(|n| n == "HcsShutdownComputeSystem").unwrap();
    let pclose = names.iter().position(|n| n == "HcsCloseProcess").unwrap();
    assert!(pclose < shut, "process closed before the system shutdown: {names:?}");
    assert_eq!(s.named("HcsCloseComputeSystem").len(), 1);
    assert!(!names.iter().any(|n| n == "HcsTerminateComputeSystem"));

    c.delete("c1").unwrap();
    assert_eq!(c.status("c1").unwrap_err().kind(), ErrorKind::NotFound);
}

#[test]
fn unused_stdin_is_closed_at_once() {
    let s = StandIn::new();
    let (c, rec) = client(&s, FakeHost::new());
    c.create("c1", &wcow_cmd(&["cat"]), None).unwrap();
    let slot = Mutex::new(None);
    c.start("c1", None, false, &mut keep(&slot)).unwrap();
    assert!(slot.lock().unwrap().as_ref().unwrap().stdin.is_none());
    // cat saw EOF because the unused stdin was closed through HCS.
    assert_eq!(rec.wait_exit("init").exit_code, 0);
    assert!(s.named("HcsModifyProcess").iter().any(|m| m[2].contains("CloseHandle")));
}

#[test]
fn shutdown_escalates_to_terminate_and_reports_minus_one() {
    let s = StandIn::new();
    let (c, rec) = client(&s, FakeHost::new());
    c.create("c-shutdown-fails", &wcow_cmd(&["exit", "0"]), None).unwrap();
    let slot = Mutex::new(None);
    c.start("c-shutdown-fails", None, false, &mut keep(&slot)).unwrap();
    let exit = rec.wait_exit("init");
    assert_eq!(exit.exit_code, u32::MAX, "a failed post-exit shutdown is not a success");
    assert!(exit.error.as_deref().unwrap().contains("failed to shutdown container"), "{exit:?}");
    let names = s.names();
    let shut = names.iter().position(|n| n == "HcsShutdownComputeSystem").unwrap();
    let term = names.iter().position(|n| n == "HcsTerminateComputeSystem").unwrap();
    assert!(shut < term);
    // The process itself exited 0; that is what delete_task reports.
    assert_eq!(c.delete_task("c-shutdown-fails").unwrap().0, 0);
}

#[test]
fn sigkill_terminates_and_no_shutdown_follows() {
    let s = StandIn::new();
    let (c, rec) = client(&s, FakeHost::new());
    c.create("c1", &wcow_cmd(&["sleep"]), None).unwrap();
    let slot = Mutex::new(None);
    c.start("c1", None, false, &mut keep(&slot)).unwrap();
    c.signal_process("c1", "init", 9).unwrap();
    let exit = rec.wait_exit("init");
    assert_eq!(exit.exit_code, 1);
    assert!(exit.error.is_none(), "{exit:?}");
    let names = s.names();
    assert!(names.iter().any(|n| n == "HcsTerminateComputeSystem"));
    assert!(!names.iter().any(|n| n == "HcsShutdownComputeSystem"), "{names:?}");
    assert_eq!(s.named("HcsCloseComputeSystem").len(), 1);
}

#[test]
fn other_signals_shut_the_system_down() {
    let s = StandIn::new();
    let (c, rec) = client(&s, FakeHost::new());
    c.create("c1", &wcow_cmd(&["sleep"]), None).unwrap();
    let slot = Mutex::new(None);
    c.start("c1", None, false, &mut keep(&slot)).unwrap();
    // The container id names the init too.
    c.signal_process("c1", "c1", 15).unwrap();
    assert_eq!(rec.wait_exit("init").exit_code, 1);
    assert!(!s.names().iter().any(|n| n == "HcsTerminateComputeSystem"));
    assert!(!s.named("HcsShutdownComputeSystem").is_empty());
}

#[test]
fn any_signal_kills_an_exec() {
    let s = StandIn::new();
    let (c, rec) = client(&s, FakeHost::new());
    c.create("c1", &wcow_cmd(&["sleep"]), None).unwrap();
    let slot = Mutex::new(None);
    c.start("c1", None, false, &mut keep(&slot)).unwrap();
    let pid = c.exec("c1", "e1", &exec_process(&["sleep"]), false, &mut keep(&slot)).unwrap();
    assert_eq!(
        c.exec("c1", "e1", &exec_process(&["sleep"]), false, &mut keep(&slot)).unwrap_err().kind(),
        ErrorKind::Conflict
    );
    c.signal_process("c1", "e1", 15).unwrap();
    let exit = rec.wait_exit("e1");
    assert_eq!((exit.exit_code, exit.pid), (1, pid));
    assert!(s.named("HcsTerminateProcess").len() == 1);
    assert!(!s.names().iter().any(|n| n == "HcsShutdownComputeSystem" || n == "HcsTerminateComputeSystem"));
    assert_eq!(c.status("c1").unwrap(), Status::Running);
    // The exec is gone once its exit was delivered.
    rec.wait_for(|e| e.iter().any(|(t, i)| *t == EventType::Exit && i.process_id == "e1"));
    c.signal_process("c1", "init", 9).unwrap();
    rec.wait_exit("init");
    assert_eq!(c.signal_process("c1", "e1", 9).unwrap_err().kind(), ErrorKind::NotFound);
}

#[test]
fn exec_exits_are_delivered_before_the_init_exit() {
    // The stand-in reports the execs' exits only after the system's and the init's, so the
    // init's exit must be held back until they arrived (containerd#9719).
    let id = "c1-late-exec-exits";
    let s = StandIn::new();
    let (c, rec) = client(&s, FakeHost::new());
    c.create(id, &wcow_cmd(&["sleep"]), None).unwrap();
    let slot = Mutex::new(None);
    c.start(id, None, false, &mut keep(&slot)).unwrap();
    for e in ["e1", "e2", "e3"] {
        c.exec(id, e, &exec_process(&["sleep"]), false, &mut keep(&slot)).unwrap();
    }
    c.signal_process(id, "init", 15).unwrap();
    rec.wait_exit("init");
    let k = rec.kinds();
    let init_exit = k.iter().position(|x| *x == (EventType::Exit, "init".to_string())).unwrap();
    assert_eq!(init_exit, k.len() - 1, "{k:?}");
    for e in ["e1", "e2", "e3"] {
        let added = k.iter().position(|x| *x == (EventType::ExecAdded, e.to_string())).unwrap();
        let started = k.iter().position(|x| *x == (EventType::ExecStarted, e.to_string())).unwrap();
        let exited = k.iter().position(|x| *x == (EventType::Exit, e.to_string())).unwrap();
        assert!(added < started && started < exited && exited < init_exit, "{k:?}");
    }
}

#[test]
fn start_event_precedes_a_fast_exit() {
    let s = StandIn::new();
    let (c, rec) = client(&s, FakeHost::new());
    for i in 0..20 {
        let id = format!("fast{i}");
        c.create(&id, &wcow_cmd(&["exit", "3"]), None).unwrap();
        let slot = Mutex::new(None);
        c.start(&id, None, false, &mut keep(&slot)).unwrap();
        // An exec that exits at once must also follow its exec-started.
    }
    let ev = rec.wait_for(|e| e.iter().filter(|(t, _)| *t == EventType::Exit).count() == 20);
    for i in 0..20 {
        let id = format!("fast{i}");
        let mine: Vec<EventType> = ev.iter().filter(|(_, x)| x.container_id == id).map(|(t, _)| *t).collect();
        assert_eq!(mine, vec![EventType::Create, EventType::Start, EventType::Exit], "{id}");
        let exit = ev.iter().find(|(t, x)| *t == EventType::Exit && x.container_id == id).unwrap();
        assert_eq!(exit.1.exit_code, 3);
    }
}

#[test]
fn fast_exec_exit_follows_exec_started() {
    let s = StandIn::new();
    let (c, rec) = client(&s, FakeHost::new());
    c.create("c1", &wcow_cmd(&["sleep"]), None).unwrap();
    let slot = Mutex::new(None);
    c.start("c1", None, false, &mut keep(&slot)).unwrap();
    for i in 0..40 {
        let slot = Mutex::new(None);
        c.exec("c1", &format!("e{i}"), &exec_process(&["exit", "4"]), false, &mut keep(&slot)).unwrap();
    }
    rec.wait_for(|e| e.iter().filter(|(t, _)| *t == EventType::Exit).count() == 40);
    let k = rec.kinds();
    for i in 0..40 {
        let e = format!("e{i}");
        let started = k.iter().position(|x| *x == (EventType::ExecStarted, e.clone())).unwrap();
        let exited = k.iter().position(|x| *x == (EventType::Exit, e.clone())).unwrap();
        assert!(started < exited, "{k:?}");
    }
    c.signal_process("c1", "init", 9).unwrap();
    rec.wait_exit("init");
}

#[test]
fn init_create_failure_reaps_with_127() {
    let s = StandIn::new();
    let (c, rec) = client(&s, FakeHost::new());
    c.create("c1", &wcow_cmd(&["fail-create"]), None).unwrap();
    let slot = Mutex::new(None);
    let e = c.start("c1", None, false, &mut keep(&slot)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::System);
    assert!(slot.lock().unwrap().is_none(), "attach is not called");
    let exit = rec.wait_exit("init");
    assert_eq!((exit.exit_code, exit.pid), (127, 0));
    assert_eq!(c.status("c1").unwrap(), Status::Stopped);
    assert_eq!(c.delete_task("c1").unwrap().0, 127);
    let names = s.names();
    assert!(names.iter().any(|n| n == "HcsShutdownComputeSystem"));
    assert_eq!(s.named("HcsCloseComputeSystem").len(), 1, "the system is not leaked");
    c.delete("c1").unwrap();
}

#[test]
fn failed_attach_kills_waits_and_closes_the_process() {
    let s = StandIn::new();
    let (c, rec) = client(&s, FakeHost::new());
    c.create("c1", &wcow_cmd(&["sleep"]), None).unwrap();
    let e =
        c.start("c1", None, true, &mut |_io| Err(berth_core::Error::system("engine refused the streams"))).unwrap_err();
    assert_eq!(e.message(), "engine refused the streams");
    let ph = s.named("HcsCreateProcess")[0][3].clone();
    s.wait_calls(|calls| calls.iter().any(|c| c[0] == "HcsCloseProcess" && c[1] == ph));
    assert!(s.named("HcsTerminateProcess").iter().any(|c| c[1] == ph));
    assert_eq!(c.status("c1").unwrap(), Status::Created);
    assert!(rec.kinds().iter().all(|(t, _)| *t == EventType::Create));
    // The container can still be deleted: shutdown of a created system, then close.
    c.delete("c1").unwrap();
    assert!(!s.named("HcsShutdownComputeSystem").is_empty());
    assert_eq!(s.named("HcsCloseComputeSystem").len(), 1);
}

#[test]
fn after_the_init_exits_the_container_refuses_work() {
    let s = StandIn::new();
    let (c, rec) = client(&s, FakeHost::new());
    c.create("c1", &wcow_cmd(&["exit", "0"]), None).unwrap();
    let slot = Mutex::new(None);
    c.start("c1", None, false, &mut keep(&slot)).unwrap();
    rec.wait_exit("init");
    let calls_before = s.calls().len();
    let e = c.exec("c1", "e1", &exec_process(&["cat"]), false, &mut keep(&slot)).unwrap_err();
    assert_eq!((e.kind(), e.message()), (ErrorKind::NotFound, "container is not running"));
    assert_eq!(c.signal_process("c1", "init", 15).unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(c.stats("c1").unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(c.resize_terminal("c1", "init", 80, 24).unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(c.start("c1", None, false, &mut keep(&slot)).unwrap_err().kind(), ErrorKind::NotModified);
    // None of these reached HCS.
    let after: Vec<String> = s.calls()[calls_before..].iter().map(|c| c[0].clone()).collect();
    assert!(after.iter().all(|n| !n.starts_with("HcsCreateProcess")), "{after:?}");
}

#[test]
fn pause_and_resume_only_for_hyper_v() {
    let s = StandIn::new();
    let (c, rec) = client(&s, FakeHost::new());
    c.create("p", &wcow_cmd(&["sleep"]), None).unwrap();
    let slot = Mutex::new(None);
    assert_eq!(c.pause("p").unwrap_err().kind(), ErrorKind::NotFound, "not started");
    c.start("p", None, false, &mut keep(&slot)).unwrap();
    let e = c.pause("p").unwrap_err();
    assert_eq!((e.kind(), e.message()), (ErrorKind::NotImplemented, "cannot pause Windows Server Containers"));
    let e = c.resume("p").unwrap_err();
    assert_eq!(e.message(), "cannot resume Windows Server Containers");
    assert!(s.named("HcsPauseComputeSystem").is_empty());

    let s = StandIn::new();
    let (spec_hv, host) = hyperv_cmd(&["sleep"]);
    let (c, rec2) = client(&s, host);
    c.create("h", &spec_hv, None).unwrap();
    c.start("h", None, false, &mut keep(&slot)).unwrap();
    c.pause("h").unwrap();
    assert_eq!(c.status("h").unwrap(), Status::Paused);
    c.resume("h").unwrap();
    assert_eq!(c.status("h").unwrap(), Status::Running);
    assert_eq!(s.named("HcsPauseComputeSystem").len(), 1);
    assert_eq!(s.named("HcsResumeComputeSystem").len(), 1);
    let ev = rec2.wait_for(|e| e.iter().any(|(t, _)| *t == EventType::Resumed));
    let k: Vec<EventType> = ev.iter().map(|(t, _)| *t).collect();
    assert_eq!(k, vec![EventType::Create, EventType::Start, EventType::Paused, EventType::Resumed]);
    assert!(ev.iter().skip(2).all(|(_, i)| i.process_id == "init"));
    drop(rec);
}

#[test]
fn stats_summary_resize_and_close_stdin() {
    let s = StandIn::new();
    let (c, rec) = client(&s, FakeHost::new());
    c.create("c1", &wcow_cmd(&["cat"]), None).unwrap();
    let slot = Mutex::new(None);
    c.start("c1", None, true, &mut keep(&slot)).unwrap();
    let st = c.stats("c1").unwrap();
    assert_eq!(st.hcs.uptime_100ns, 12345);
    let top = c.summary("c1").unwrap();
    assert_eq!(top.len(), 1);
    assert_eq!(top[0].image_name, "cat");
    assert_eq!(c.list_pids("c1").unwrap_err().kind(), ErrorKind::NotImplemented);
    c.update_resources("c1", &()).unwrap();
    assert_eq!(
        c.create_checkpoint("c1", std::path::Path::new("/x"), false).unwrap_err().kind(),
        ErrorKind::NotImplemented
    );

    c.resize_terminal("c1", "init", 120, 40).unwrap();
    assert!(s
        .named("HcsModifyProcess")
        .iter()
        .any(|m| m[2] == r#"{"Operation":"ConsoleSize","ConsoleSize":{"Height":40,"Width":120}}"#));
    assert_eq!(c.resize_terminal("c1", "init", 70000, 1).unwrap_err().kind(), ErrorKind::InvalidParameter);

    // close_stdin through the client API: cat sees EOF even though the engine still holds
    // the stdin writer.
    c.close_stdin("c1", "init").unwrap();
    assert_eq!(rec.wait_exit("init").exit_code, 0);
    assert_eq!(s.named("HcsModifyProcess").iter().filter(|m| m[2].contains("CloseHandle")).count(), 1);
    // Closing the engine's copy once the process is gone is not an error.
    let io = slot.lock().unwrap().take().unwrap();
    io.stdin.unwrap().close().unwrap();
}

#[test]
fn restore_terminates_a_leftover_system() {
    let s = StandIn::new();
    // A system left behind by a previous engine.
    let left = s.api.create_compute_system("old", &ContainerConfig::default(), GUARD).unwrap();
    left.start(GUARD).unwrap();
    let (c, _rec) = client(&s, FakeHost::new());
    let mut attach = |_io: ProcessIo| Ok(());
    assert_eq!(c.restore("old", &mut attach).unwrap(), (false, None));
    let opened = s.named("HcsOpenComputeSystem")[0][2].clone();
    assert!(s.named("HcsTerminateComputeSystem").iter().any(|t| t[1] == opened));
    assert!(s.named("HcsCloseComputeSystem").iter().any(|t| t[1] == opened), "the opened handle is closed");
    // Unknown ids: nothing to do.
    assert_eq!(c.restore("never", &mut attach).unwrap(), (false, None));
    drop(left);
}

#[test]
fn lcow_through_the_client() {
    let s = StandIn::new();
    let (c, rec) = client(&s, FakeHost::new());
    let mut v = lcow();
    set(&mut v, "process/args", json!(["exit", "5"]));
    set(
        &mut v,
        "mounts",
        json!([{"destination": "/data", "type": "bind", "source": r"C:\data", "options": ["rbind", "uvmpath=/tmp/gcs/l1/binds"]}]),
    );
    let sp = spec(v);
    assert_eq!(c.create("l1", &sp, None).unwrap_err().message(), "lcow option must be supplied to the runtime");
    let opts = HcsCreateOptions {
        lcow: Some(LcowConfig { actual_mode: ActualMode::Vhdx, ..Default::default() }),
        credential_spec: None,
    };
    c.create("l1", &sp, Some(&opts)).unwrap();
    let doc: Value = serde_json::from_str(&s.named("HcsCreateComputeSystem")[0][2]).unwrap();
    assert_eq!(doc["ContainerType"], json!("linux"));
    assert_eq!(doc["MappedDirectories"][0]["ContainerPath"], json!("/tmp/gcs/l1/binds/data"));
    let slot = Mutex::new(None);
    c.start("l1", None, false, &mut keep(&slot)).unwrap();
    let p: Value = serde_json::from_str(&s.named("HcsCreateProcess")[0][2]).unwrap();
    assert_eq!(p["CommandArgs"], json!(["exit", "5"]));
    assert_eq!(p["OCISpecification"]["mounts"][0]["source"], json!("/tmp/gcs/l1/binds/data"));
    assert_eq!(rec.wait_exit("init").exit_code, 5);
}

#[test]
fn unknown_ids_and_refused_inputs() {
    let s = StandIn::new();
    let (c, _rec) = client(&s, FakeHost::new());
    let slot = Mutex::new(None);
    for e in [
        c.start("nope", None, false, &mut keep(&slot)).unwrap_err(),
        c.signal_process("nope", "init", 9).unwrap_err(),
        c.delete("nope").unwrap_err(),
        c.delete_task("nope").unwrap_err(),
        c.status("nope").unwrap_err(),
        c.pause("nope").unwrap_err(),
    ] {
        assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    }
    assert_eq!(c.version().unwrap_err().kind(), ErrorKind::NotImplemented);
    assert_eq!(c.create("", &wcow_cmd(&["cat"]), None).unwrap_err().kind(), ErrorKind::InvalidParameter);
    // A failed translation leaves no trace: the id is free again and HCS was never called.
    let mut bad = wcow();
    set(&mut bad, "root/readonly", json!(true));
    assert_eq!(c.create("c1", &spec(bad), None).unwrap_err().kind(), ErrorKind::InvalidParameter);
    assert!(s.calls().is_empty());
    // Servicing containers were removed upstream.
    let mut sv = wcow();
    set(&mut sv, "windows/servicing", json!(true));
    assert_eq!(c.create("c1", &spec(sv), None).unwrap_err().kind(), ErrorKind::NotImplemented);
    // A system that fails to start is terminated and closed; the id stays free.
    let e = c.create("x-start-fails", &wcow_cmd(&["cat"]), None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::System);
    assert_eq!(s.named("HcsCloseComputeSystem").len(), 1);
    assert_eq!(c.status("x-start-fails").unwrap_err().kind(), ErrorKind::NotFound);
    // Exec ids that name the init are refused.
    c.create("c1", &wcow_cmd(&["sleep"]), None).unwrap();
    c.start("c1", None, false, &mut keep(&slot)).unwrap();
    for bad in ["", "init", "c1"] {
        assert_eq!(
            c.exec("c1", bad, &exec_process(&["cat"]), false, &mut keep(&slot)).unwrap_err().kind(),
            ErrorKind::InvalidParameter
        );
    }
    assert_eq!(c.signal_process("c1", "e9", 9).unwrap_err().kind(), ErrorKind::NotFound);
    c.signal_process("c1", "init", 9).unwrap();
}
