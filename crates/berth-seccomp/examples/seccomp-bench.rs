//! Measures what the cache saves: libseccomp compile of the default profile vs a cache hit.
//!
//! `cargo run --release -p berth-seccomp --example seccomp-bench [ITERATIONS]`
//! Also writes the compiled default profile to `$BERTH_SECCOMP_DUMP` when set.

use std::time::{Duration, Instant};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: u32 = std::env::args().nth(1).map(|s| s.parse()).transpose()?.unwrap_or(200);
    let profile = berth_seccomp::default_profile();
    let dir = std::env::temp_dir().join(format!("berth-seccomp-bench-{}", std::process::id()));

    let first = Instant::now();
    let filter = berth_seccomp::compile(&profile)?;
    let first = first.elapsed();
    if let Some(path) = std::env::var_os("BERTH_SECCOMP_DUMP") {
        std::fs::write(path, filter.to_bytes())?;
    }

    let time =
        |f: &dyn Fn() -> Result<(), berth_seccomp::SeccompError>| -> Result<Duration, berth_seccomp::SeccompError> {
            let start = Instant::now();
            for _ in 0..n {
                f()?;
            }
            Ok(start.elapsed() / n)
        };
    let compile = time(&|| berth_seccomp::compile(&profile).map(drop))?;
    berth_seccomp::compile_cached(&profile, &dir)?;
    let hit = time(&|| berth_seccomp::compile_cached(&profile, &dir).map(drop))?;
    let key = time(&|| berth_seccomp::cache_key(&profile).map(drop))?;
    std::fs::remove_dir_all(&dir)?;

    println!("default profile: {} instructions", filter.program().len());
    println!("first compile (cold libseccomp): {first:?}");
    println!("compile, mean of {n}: {compile:?}");
    println!("compile_cached hit, mean of {n}: {hit:?}");
    println!("  of which cache_key: {key:?}");
    Ok(())
}
