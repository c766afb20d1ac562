//! Benchmark of the embedding API: create + start + wait + delete of `/bin/true`, and the
//! memory of a monitor.
//!
//! `cargo run --release --example api-bench -- [CYCLES] [IDLE_CONTAINERS] [BUNDLE]`
//! (or `bench/api-cycle`). With BUNDLE, its config.json is used (its rootfs needs `true` and
//! `sleep`); otherwise a busybox rootfs is built from the host's /bin/busybox in a temporary
//! directory and runc's default spec is used. Uses `berth-monitor` next to this binary when it was built
//! (`cargo build --release -p berth-client --bins`), otherwise this binary as the helper.
//!
//! Prints per-phase and total latency (median, p90, p99) and, with IDLE_CONTAINERS idle
//! containers running, their start rate and each monitor's PSS (from
//! /proc/PID/smaps_rollup), RSS and threads.
//!
//! For bench/run (environment): `BERTH_BENCH_WARMUP=N` warm-up cycles (default 20);
//! `BERTH_BENCH_SAMPLES=FILE` writes each measured cycle's total in seconds, one a line;
//! `BERTH_BENCH_HOLD=1` prints `pids: HELPER MONITOR...` once the idle containers run and
//! waits for a line on stdin before it stops them, so that another program can measure them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_client::{Client, Config, Helper};
use berth_core::{Client as _, DiscardEvents};

fn main() {
    berth_client::run_helper_if_requested();
    if let Err(e) = run() {
        eprintln!("api-bench: {e}");
        std::process::exit(1);
    }
}

fn rootfs(dir: &Path) -> std::io::Result<PathBuf> {
    let rootfs = dir.join("rootfs");
    for d in ["bin", "proc", "dev", "sys", "tmp"] {
        std::fs::create_dir_all(rootfs.join(d))?;
    }
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox"))?;
    for applet in ["sh", "true", "sleep"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet))?;
    }
    Ok(rootfs)
}

fn spec(base: &oci_spec::runtime::Spec, args: &[&str]) -> oci_spec::runtime::Spec {
    let mut s = base.clone();
    if let Some(mut p) = s.process().clone() {
        p.set_args(Some(args.iter().map(|a| a.to_string()).collect()));
        p.set_terminal(Some(false));
        s.set_process(Some(p));
    }
    s
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

fn line(name: &str, mut v: Vec<Duration>) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{name:<24} median {:>6.3} ms   p90 {:>6.3} ms   p99 {:>6.3} ms   min {:>6.3} ms",
        ms(pct(&v, 0.5)),
        ms(pct(&v, 0.9)),
        ms(pct(&v, 0.99)),
        ms(pct(&v, 0.0))
    );
}

/// utime + stime + cutime + cstime of this process, in clock ticks.
fn cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the command: field 14 of stat is index 11 here.
    (11..15).map(|i| f.get(i).and_then(|v| v.parse::<u64>().ok())).sum()
}

fn proc_kb(pid: u32, file: &str, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/{file}")).ok()?;
    s.lines().find_map(|l| l.strip_prefix(key)).and_then(|v| v.split_whitespace().next()).and_then(|v| v.parse().ok())
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let cycles: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(300);
    let idle: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(20);
    let bundle = args.next().map(PathBuf::from);

    let tmp = std::env::temp_dir().join(format!("berth-api-bench-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let result = bench(&tmp, cycles, idle, bundle.as_deref());
    if std::env::var_os("BERTH_BENCH_KEEP").is_some() {
        println!("kept {} (helper log: state/.berth-helper.log)", tmp.display());
    } else {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

fn bench(tmp: &Path, cycles: usize, idle: usize, bundle: Option<&Path>) -> Result<(), Box<dyn std::error::Error>> {
    let base = match bundle {
        Some(b) => {
            let b = std::fs::canonicalize(b)?;
            let mut s = berth_spec::load_bundle(&b)?.spec;
            if let Some(mut root) = s.root().clone() {
                if root.path().is_relative() {
                    root.set_path(b.join(root.path()));
                    s.set_root(Some(root));
                }
            }
            s
        }
        None => {
            let rootfs = rootfs(tmp)?;
            let mut s = berth_spec::default_spec();
            if let Some(mut root) = s.root().clone() {
                root.set_path(rootfs);
                s.set_root(Some(root));
            }
            s
        }
    };
    let mut cfg = Config::new(tmp.join("state"));
    let sibling =
        std::env::current_exe()?.ancestors().skip(1).take(2).map(|d| d.join("berth-monitor")).find(|p| p.is_file());
    cfg.helper = match &sibling {
        Some(p) => Helper::Path(p.clone()),
        None => Helper::CurrentExe,
    };
    println!("helper: {}", sibling.as_ref().map_or("this binary".to_string(), |p| p.display().to_string()));
    let truth = spec(&base, &["/bin/true"]);
    let cpu_before = cpu_ticks();
    // The cycles run on a client (and helper) of their own: once it is dropped the helper has
    // been reaped, and the CPU time of everything involved (this process, the helper, the
    // monitors, the containers) is in this process's own and children's times.
    let mut cycle_cfg = cfg.clone();
    cycle_cfg.root = tmp.join("state-cycles");
    let client = Client::new(cycle_cfg, Arc::new(DiscardEvents))?;

    let (mut total, mut create, mut start, mut wait, mut delete) = (vec![], vec![], vec![], vec![], vec![]);
    let warmup: usize = std::env::var("BERTH_BENCH_WARMUP").ok().map(|s| s.parse()).transpose()?.unwrap_or(20);
    for i in 0..warmup + cycles {
        let id = format!("bench-{i}");
        let t0 = Instant::now();
        client.create(&id, &truth, None)?;
        let t1 = Instant::now();
        client.start(&id, None, false, &mut |_io| Ok(()))?;
        let t2 = Instant::now();
        let (code, _) = client.wait(&id, Some(Duration::from_secs(30)))?.ok_or("the container did not exit")?;
        let t3 = Instant::now();
        client.delete(&id)?;
        let t4 = Instant::now();
        if code != 0 {
            return Err(format!("/bin/true exited with {code}").into());
        }
        if i >= warmup {
            total.push(t4 - t0);
            create.push(t1 - t0);
            start.push(t2 - t1);
            wait.push(t3 - t2);
            delete.push(t4 - t3);
        }
    }
    if let Some(path) = std::env::var_os("BERTH_BENCH_SAMPLES") {
        let text: String = total.iter().map(|d| format!("{}\n", d.as_secs_f64())).collect();
        std::fs::write(&path, text).map_err(|e| format!("writing {}: {e}", Path::new(&path).display()))?;
    }
    println!("{cycles} cycles of create + start + wait + delete of /bin/true through the API:");
    line("create", create);
    line("start", start);
    line("wait (exit known)", wait);
    line("delete", delete);
    line("total", total);
    drop(client);
    if let (Some(a), Some(b)) = (cpu_before, cpu_ticks()) {
        let ms = (b - a) as f64 * 1000.0 / rustix::param::clock_ticks_per_second().max(1) as f64;
        println!(
            "CPU time per cycle       {:.2} ms (engine, helper, monitors and containers; warm-up included)",
            ms / (warmup + cycles) as f64
        );
    }
    let client = Client::new(cfg, Arc::new(DiscardEvents))?;

    if idle > 0 {
        let sleeper = spec(&base, &["sleep", "1000000"]);
        let ids: Vec<String> = (0..idle).map(|i| format!("idle-{i}")).collect();
        let t = Instant::now();
        for id in &ids {
            client.create(id, &sleeper, None)?;
            client.start(id, None, false, &mut |_io| Ok(()))?;
        }
        let took = t.elapsed().as_secs_f64();
        println!("started {idle} idle containers in {:.3} s ({:.1} per second)", took, idle as f64 / took);
        // Round trip to a monitor: a request it refuses at once (resume of a running
        // container), so this is the protocol's cost alone.
        let mut rtt = Vec::new();
        for _ in 0..500 {
            let t = Instant::now();
            let _ = client.resume(&ids[0]);
            rtt.push(t.elapsed());
        }
        line("monitor round trip", rtt);
        // Steady state: monitors give memory back after 500 ms idle (helper/monitor.rs).
        std::thread::sleep(Duration::from_millis(1500));
        let mut pss = Vec::new();
        let mut uss = Vec::new();
        let mut rss = Vec::new();
        let mut threads = Vec::new();
        for id in &ids {
            let pid = client.monitor_pid(id)?;
            pss.push(proc_kb(pid, "smaps_rollup", "Pss:").unwrap_or(0));
            uss.push(
                proc_kb(pid, "smaps_rollup", "Private_Clean:").unwrap_or(0)
                    + proc_kb(pid, "smaps_rollup", "Private_Dirty:").unwrap_or(0),
            );
            rss.push(proc_kb(pid, "status", "VmRSS:").unwrap_or(0));
            threads.push(proc_kb(pid, "status", "Threads:").unwrap_or(0));
        }
        pss.sort_unstable();
        let helper = client.helper_pid();
        println!("{idle} idle containers, one monitor each:");
        println!(
            "monitor PSS  median {} KiB   max {} KiB   total {} KiB",
            pss.get(pss.len() / 2).copied().unwrap_or(0),
            pss.last().copied().unwrap_or(0),
            pss.iter().sum::<u64>()
        );
        uss.sort_unstable();
        println!(
            "monitor USS  median {} KiB   (private pages: what each further monitor adds; PSS tends to it)",
            uss.get(uss.len() / 2).copied().unwrap_or(0)
        );
        println!(
            "monitor RSS  median {} KiB   threads per monitor: {:?}",
            {
                rss.sort_unstable();
                rss.get(rss.len() / 2).copied().unwrap_or(0)
            },
            {
                threads.sort_unstable();
                threads.dedup();
                threads
            }
        );
        println!(
            "helper       PSS {} KiB   RSS {} KiB",
            proc_kb(helper, "smaps_rollup", "Pss:").unwrap_or(0),
            proc_kb(helper, "status", "VmRSS:").unwrap_or(0)
        );
        if std::env::var_os("BERTH_BENCH_HOLD").is_some() {
            let mut pids = vec![client.helper_pid()];
            for id in &ids {
                pids.push(client.monitor_pid(id)?);
            }
            let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
            println!("pids: {}", pids.join(" "));
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
        }
        for id in &ids {
            client.stop(id, 9, Duration::from_secs(5))?;
            client.delete(id)?;
        }
    }
    Ok(())
}
