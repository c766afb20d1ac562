//! Measures resolve + create + destroy of a container cgroup with typical
//! resources (what `berth run` does), for comparing start-path cost:
//! `cargo run --release --example cgroup_cycle -- [iterations]`, or one
//! iteration under `strace -c` to count syscalls.

use std::time::Instant;

use berth_cgroups::{runc_device_rules, Cgroup};

fn main() {
    let n: u32 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(200);
    let mut r: oci_spec::runtime::LinuxResources = serde_json::from_str(
        r#"{"memory": {"limit": 268435456}, "cpu": {"shares": 1024}, "pids": {"limit": 1024},
            "devices": [{"allow": false, "access": "rwm"}]}"#,
    )
    .expect("resources");
    r.set_devices(Some(runc_device_rules(r.devices().as_deref().unwrap_or_default())));
    let path = format!("/berth-bench-{}", std::process::id());
    let mut times = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let t = Instant::now();
        let cg = Cgroup::resolve(Some(&path), "bench").expect("resolve");
        cg.create(Some(&r)).expect("create");
        let created = t.elapsed();
        cg.destroy().expect("destroy");
        times.push((created, t.elapsed()));
    }
    times.sort();
    let med = times[times.len() / 2];
    let mut c: Vec<_> = times.iter().map(|t| t.0).collect();
    c.sort();
    println!(
        "{n} iterations: resolve+create median {:?} (p90 {:?}); +destroy median {:?}",
        c[c.len() / 2],
        c[c.len() * 9 / 10],
        med.1
    );
}
