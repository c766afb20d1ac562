#![cfg(target_os = "linux")]
//! No descriptor leaks: the pipes HCS hands over are owned and closed on every path (normal
//! exit, failed attach, CreateProcess failure, exec kill), as is everything the stand-in opens.
//! Its own test binary with a single test, so no other test opens files meanwhile.

mod common;

use std::io::Read;
use std::sync::Mutex;

use berth_core::{Client, EventType};
use common::standin::*;
use common::*;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn every_path_closes_its_descriptors() {
    let s = StandIn::new();
    let (c, rec) = client(&s, FakeHost::new());
    let before = open_fds();

    // Normal life: stdio handed over, stdin closed, output read, exit.
    c.create("ok", &wcow_cmd(&["cat"]), None).unwrap();
    let slot = Mutex::new(None);
    c.start("ok", None, true, &mut keep(&slot)).unwrap();
    // An exec, killed.
    let eslot = Mutex::new(None);
    c.exec("ok", "e1", &exec_process(&["sleep"]), true, &mut keep(&eslot)).unwrap();
    c.signal_process("ok", "e1", 9).unwrap();
    rec.wait_exit("e1");
    drop(eslot);
    let mut io = slot.lock().unwrap().take().unwrap();
    io.stdin.take().unwrap().close().unwrap();
    let mut out = String::new();
    io.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    drop(io);
    rec.wait_exit("init");
    c.delete("ok").unwrap();

    // A failed attach: the process is killed and its pipes closed.
    c.create("attach", &wcow_cmd(&["cat"]), None).unwrap();
    let _ = c.start("attach", None, true, &mut |_io| Err(berth_core::Error::system("no")));
    s.wait_calls(|calls| calls.iter().filter(|c| c[0] == "HcsCloseProcess").count() == 3);
    c.delete("attach").unwrap();

    // CreateProcess failure: reaped with 127.
    c.create("fail", &wcow_cmd(&["fail-create"]), None).unwrap();
    assert!(c.start("fail", None, true, &mut keep(&slot)).is_err());
    rec.wait_for(|e| e.iter().filter(|(t, _)| *t == EventType::Exit).count() == 3);
    c.delete("fail").unwrap();

    // Let the stand-in's process threads finish closing their ends.
    s.wait_calls(|_| open_fds() == before);
    assert_eq!(open_fds(), before);
}
