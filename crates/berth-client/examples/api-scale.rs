//! Scale benchmark of the embedding API, driven by bench/scale: N sleeping containers started
//! through one [`Client`], held while the caller measures them, torn down; then a storm of
//! parallel creates (one thread per container, released together by a barrier).
//!
//! `api-scale N STORM BUNDLE ROOT OUTDIR`
//!
//! BUNDLE's config.json is the spec (its process is kept: a long `sleep`); ROOT is the state
//! root (left in place, so that the caller can check that nothing is left in it); ids are
//! `PREFIX-I` and `PREFIX-storm-I` (`BERTH_SCALE_PREFIX`, default `scale`). The N containers
//! are started by `BERTH_SCALE_THREADS` threads (default 1: one after the other), each doing
//! create + start. Writes OUTDIR/api-start.txt and OUTDIR/api-storm.txt (each start's
//! create + start latency in seconds, one a line) and prints, on stdout:
//!   `started N in T s (R per second), E errors`
//!   `pids: HELPER MONITOR...` then waits for a line on stdin (the caller measures meanwhile)
//!   `teardown N in T s, E errors`
//!   `storm S in T s, E errors` and its teardown likewise
//! Errors are counted and the first few printed on stderr; the exit status is 1 if any.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use berth_client::{Client, Config, Helper};
use berth_core::{Client as _, DiscardEvents};

fn main() {
    berth_client::run_helper_if_requested();
    match run() {
        Ok(0) => {}
        Ok(errors) => {
            eprintln!("api-scale: {errors} errors");
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("api-scale: {e}");
            std::process::exit(1);
        }
    }
}

/// Errors of one phase: counted, the first few kept for stderr.
#[derive(Default)]
struct Errors {
    count: AtomicUsize,
    first: Mutex<Vec<String>>,
}

impl Errors {
    fn add(&self, what: String) {
        if self.count.fetch_add(1, Ordering::Relaxed) < 5 {
            self.first.lock().unwrap_or_else(|p| p.into_inner()).push(what);
        }
    }
    fn report(&self, phase: &str) -> usize {
        for e in self.first.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            eprintln!("api-scale: {phase}: {e}");
        }
        self.count.load(Ordering::Relaxed)
    }
}

fn start_one(client: &Client, id: &str, spec: &oci_spec::runtime::Spec) -> Result<(), String> {
    client.create(id, spec, None).map_err(|e| format!("create {id}: {e}"))?;
    client.start(id, None, false, &mut |_io| Ok(())).map_err(|e| format!("start {id}: {e}"))?;
    Ok(())
}

fn teardown(client: &Client, ids: &[String], errors: &Errors) {
    // Only those that exist: a failed create was counted already.
    for id in ids.iter().filter(|id| client.monitor_pid(id).is_ok()) {
        if let Err(e) = client.stop(id, libc::SIGKILL, Duration::from_secs(10)) {
            errors.add(format!("stop {id}: {e}"));
        }
        if let Err(e) = client.delete(id) {
            errors.add(format!("delete {id}: {e}"));
        }
    }
}

fn write_samples(path: &Path, samples: &[Duration]) -> Result<(), Box<dyn std::error::Error>> {
    let text: String = samples.iter().map(|d| format!("{:.6}\n", d.as_secs_f64())).collect();
    std::fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()).into())
}

fn run() -> Result<usize, Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [n, storm, bundle, root, outdir] = args.as_slice() else {
        return Err("usage: api-scale N STORM BUNDLE ROOT OUTDIR".into());
    };
    let n: usize = n.parse()?;
    let storm: usize = storm.parse()?;
    let outdir = PathBuf::from(outdir);
    let prefix = std::env::var("BERTH_SCALE_PREFIX").unwrap_or_else(|_| "scale".into());
    let threads: usize = std::env::var("BERTH_SCALE_THREADS").ok().map(|s| s.parse()).transpose()?.unwrap_or(1).max(1);

    let b = std::fs::canonicalize(bundle)?;
    let mut spec = berth_spec::load_bundle(&b)?.spec;
    if let Some(mut r) = spec.root().clone() {
        if r.path().is_relative() {
            r.set_path(b.join(r.path()));
            spec.set_root(Some(r));
        }
    }
    let mut cfg = Config::new(PathBuf::from(root));
    let sibling =
        std::env::current_exe()?.ancestors().skip(1).take(2).map(|d| d.join("berth-monitor")).find(|p| p.is_file());
    cfg.helper = match sibling {
        Some(p) => Helper::Path(p),
        None => Helper::CurrentExe,
    };
    let client = Client::new(cfg, Arc::new(DiscardEvents))?;
    let mut total_errors = 0;

    // N containers, THREADS workers taking the next index.
    let ids: Vec<String> = (0..n).map(|i| format!("{prefix}-{i}")).collect();
    let next = AtomicUsize::new(0);
    let errors = Errors::default();
    let samples = Mutex::new(Vec::with_capacity(n));
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(id) = ids.get(i) else { break };
                let t0 = Instant::now();
                match start_one(&client, id, &spec) {
                    Ok(()) => samples.lock().unwrap_or_else(|p| p.into_inner()).push(t0.elapsed()),
                    Err(e) => errors.add(e),
                }
            });
        }
    });
    let took = t.elapsed().as_secs_f64();
    let e = errors.report("start");
    total_errors += e;
    write_samples(&outdir.join("api-start.txt"), &samples.lock().unwrap_or_else(|p| p.into_inner()))?;
    println!("started {n} in {took:.3} s ({:.1} per second), {e} errors", n as f64 / took);

    let mut pids = vec![client.helper_pid().to_string()];
    pids.extend(ids.iter().filter_map(|id| client.monitor_pid(id).ok()).map(|p| p.to_string()));
    println!("pids: {}", pids.join(" "));
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;

    let errors = Errors::default();
    let t = Instant::now();
    teardown(&client, &ids, &errors);
    let e = errors.report("teardown");
    total_errors += e;
    println!("teardown {n} in {:.3} s, {e} errors", t.elapsed().as_secs_f64());

    if storm > 0 {
        let ids: Vec<String> = (0..storm).map(|i| format!("{prefix}-storm-{i}")).collect();
        let errors = Errors::default();
        let samples = Mutex::new(Vec::with_capacity(storm));
        let barrier = Barrier::new(storm);
        let t = Mutex::new(None::<Instant>);
        std::thread::scope(|s| {
            for id in &ids {
                s.spawn(|| {
                    if barrier.wait().is_leader() {
                        *t.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
                    }
                    let t0 = Instant::now();
                    match start_one(&client, id, &spec) {
                        Ok(()) => samples.lock().unwrap_or_else(|p| p.into_inner()).push(t0.elapsed()),
                        Err(e) => errors.add(e),
                    }
                });
            }
        });
        let took = t.into_inner().unwrap_or_else(|p| p.into_inner()).map_or(0.0, |t| t.elapsed().as_secs_f64());
        let e = errors.report("storm");
        total_errors += e;
        write_samples(&outdir.join("api-storm.txt"), &samples.lock().unwrap_or_else(|p| p.into_inner()))?;
        println!("storm {storm} in {took:.3} s, {e} errors");
        let errors = Errors::default();
        let t = Instant::now();
        teardown(&client, &ids, &errors);
        let e = errors.report("storm teardown");
        total_errors += e;
        println!("storm teardown {storm} in {:.3} s, {e} errors", t.elapsed().as_secs_f64());
    }
    drop(client);
    Ok(total_errors)
}
