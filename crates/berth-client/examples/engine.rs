//! A minimal engine on the berth embedding API.
//!
//! `cargo run --release --example engine -- BUNDLE_DIR [SECONDS]`
//!
//! Runs a container from the bundle, streams its output, execs `echo exec-ok` into it, and
//! prints every event as it arrives, one per line, starting with the event type. It then
//! waits up to SECONDS (default 10) for the container to exit, stops it if it has not, and
//! deletes it. The helper runs from this very binary (`run_helper_if_requested`), so nothing
//! else needs to be installed. State lives in `$BERTH_ROOT` (default /run/berth-example).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_client::{Client, Config, CreateOptions, Helper};
use berth_core::{Client as _, EventInfo, EventSink, EventType, ProcessIo};

/// Prints events and tells `main` when a process exited.
struct Printer {
    exits: Mutex<mpsc::Sender<String>>,
}

impl EventSink for Printer {
    fn process_event(
        &self,
        container_id: &str,
        event: EventType,
        info: &EventInfo,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let mut line = format!("{event} container={container_id} process={} pid={}", info.process_id, info.pid);
        if event == EventType::Exit {
            line.push_str(&format!(" exit_code={}", info.exit_code));
            if let Some(e) = &info.error {
                line.push_str(&format!(" error={e:?}"));
            }
        }
        if info.oom_killed {
            line.push_str(" oom_killed=true");
        }
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}")?;
        out.flush()?;
        if event == EventType::Exit {
            let _ = self.exits.lock().map(|tx| tx.send(info.process_id.clone()));
        }
        Ok(())
    }
}

/// Copies the process's output to ours on two threads.
fn stream(io: ProcessIo, threads: &mut Vec<std::thread::JoinHandle<()>>) {
    fn copy(mut r: Box<dyn Read + Send>, err: bool) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = r.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let chunk = buf.get(..n).unwrap_or_default();
                let _ = if err {
                    std::io::stderr().lock().write_all(chunk)
                } else {
                    std::io::stdout().lock().write_all(chunk).and_then(|()| std::io::stdout().flush())
                };
            }
        })
    }
    if let Some(r) = io.stdout {
        threads.push(copy(r, false));
    }
    if let Some(r) = io.stderr {
        threads.push(copy(r, true));
    }
}

fn main() {
    // The helper and monitors run from this binary; this must come before any thread.
    berth_client::run_helper_if_requested();
    if let Err(e) = run() {
        eprintln!("engine: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let bundle = PathBuf::from(args.next().ok_or("usage: engine BUNDLE_DIR [SECONDS]")?);
    let wait_secs: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(10);
    let bundle = std::fs::canonicalize(&bundle)?;
    let spec = berth_spec::load_bundle(&bundle)?.spec;

    let root = std::env::var_os("BERTH_ROOT").map_or_else(|| PathBuf::from("/run/berth-example"), PathBuf::from);
    let mut cfg = Config::new(root);
    cfg.helper = Helper::CurrentExe;
    let (tx, exits) = mpsc::channel();
    let client = Client::new(cfg, Arc::new(Printer { exits: Mutex::new(tx) }))?;

    let id = format!("engine-{}", std::process::id());
    let mut threads = Vec::new();
    client.create(&id, &spec, Some(&CreateOptions { bundle: Some(bundle.clone()), no_pivot: false }))?;
    let started = client.start(&id, None, false, &mut |io| {
        stream(io, &mut threads);
        Ok(())
    });
    if let Err(e) = started {
        let _ = client.delete(&id);
        return Err(e.into());
    }

    let mut process = spec.process().clone().unwrap_or_default();
    process.set_args(Some(vec!["echo".into(), "exec-ok".into()]));
    process.set_terminal(Some(false));
    process.set_console_size(None);
    match client.exec(&id, "exec-1", &process, false, &mut |io| {
        stream(io, &mut threads);
        Ok(())
    }) {
        Ok(_) => {
            // Wait for the exec's exit event before looking at the init.
            while let Ok(p) = exits.recv_timeout(Duration::from_secs(30)) {
                if p == "exec-1" || p == id {
                    break;
                }
            }
        }
        Err(e) => eprintln!("engine: exec refused: {e} ({})", e.kind()),
    }

    if client.wait(&id, Some(Duration::from_secs(wait_secs)))?.is_none() {
        eprintln!("engine: container still running after {wait_secs}s; stopping it");
        client.stop(&id, libc_sigterm(), Duration::from_secs(5))?;
    }
    // The exit event comes after the output drained; wait for it before deleting.
    while let Ok(p) = exits.recv_timeout(Duration::from_secs(30)) {
        if p == id {
            break;
        }
    }
    let (code, _) = client.delete_task(&id)?;
    client.delete(&id)?;
    for t in threads {
        let _ = t.join();
    }
    println!("container {id} exited with {code}");
    Ok(())
}

fn libc_sigterm() -> i32 {
    15
}
