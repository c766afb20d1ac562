//! `berth`: a runc-compatible OCI container runtime.
//!
//! The command line follows runc 1.1 (global flags, subcommands and their flags), so podman,
//! conmon and containerd's runc shim can drive berth unchanged. The process stays
//! single-threaded: it clones the container init itself (see docs/architecture.md).

mod hcs_config;
mod logger;

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use berth_linux::container::{self, CreateOptions, LaunchMode};
use lexopt::prelude::*;

const USAGE: &str = "\
berth - an OCI container runtime

Usage: berth [global options] <command> [command options] [arguments]

Commands:
  spec       create a new specification file (config.json)
  create     create a container
  start      start a created container
  run        create and start a container
  state      print the state of a container
  kill       send a signal to a container's init (or all its processes)
  exec       run a new process inside a running container
  ps         list the processes of a container
  pause      freeze every process of a container
  resume     thaw a paused container
  events     print resource statistics and OOM events
  update     change the resource limits of a running container
  hcs-config print the Windows HCS document a spec translates to (dry run)
  delete     delete a container
  list       list containers

Global options:
  --root DIR            state directory (default /run/berth)
  --log FILE            log file (default stderr)
  --log-format FORMAT   text or json (default text)
  --debug               enable debug logging
  --systemd-cgroup      use the systemd cgroup driver (unsupported: berth uses cgroupfs)
  -v, --version         print the version
  -h, --help            print this help
";

/// Global options.
struct Global {
    root: PathBuf,
    /// `--rootless` (auto-detected by default, as runc).
    rootless: berth_linux::rootless::Rootless,
    log: Option<PathBuf>,
    log_format: logger::Format,
    debug: bool,
    systemd_cgroup: bool,
}

/// How many descriptors from 3 on the caller passes on purpose: `--preserve-fds N` plus
/// systemd socket activation (`LISTEN_FDS` for our pid).
fn passed_fds() -> u32 {
    let mut n = 0u32;
    let mut args = std::env::args_os().skip(1);
    while let Some(a) = args.next() {
        let a = a.to_string_lossy().into_owned();
        if a == "--" {
            break;
        }
        let v = if a == "--preserve-fds" {
            args.next().map(|v| v.to_string_lossy().into_owned())
        } else {
            a.strip_prefix("--preserve-fds=").map(str::to_string)
        };
        if let Some(v) = v {
            n = n.max(v.parse().unwrap_or(0));
        }
    }
    let listen: u32 = std::env::var("LISTEN_FDS").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    let for_us =
        std::env::var("LISTEN_PID").ok().and_then(|v| v.parse::<u32>().ok()).is_none_or(|p| p == std::process::id());
    n.saturating_add(if for_us { listen } else { 0 })
}

fn main() -> ExitCode {
    // Before anything opens a descriptor: whatever the caller leaked to us beyond stdio and
    // the descriptors passed on purpose is closed, so no container process can ever see it
    // (CVE-2024-21626 was a leaked host directory descriptor).
    // SAFETY: this is the first statement of main: no descriptor above stdio is owned by
    // anything yet (std opens none before main; the logger opens its file later), and the
    // ones passed on purpose are kept.
    let _ = unsafe { berth_sys::close_from(3u32.saturating_add(passed_fds())) };
    let mut parser = lexopt::Parser::from_env();
    let (global, cmd) = match parse_global(&mut parser) {
        Ok(Some(x)) => x,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth: {}", message(&e));
            return ExitCode::from(1);
        }
    };
    if let Err(e) = logger::init(global.log.as_deref(), global.log_format, global.debug) {
        eprintln!("berth: {}", message(&e));
        return ExitCode::from(1);
    }
    match dispatch(&global, &cmd, parser) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(255)),
        Err(e) => {
            let msg = message(&e);
            log::error!("{msg}");
            // With --log the error is in the file (the containerd shim reads it there); the
            // user on a terminal still wants to see it.
            if global.log.is_some() {
                eprintln!("berth: {msg}");
            }
            ExitCode::from(1)
        }
    }
}

/// The error and its causes joined with ": ", skipping a cause the text already ends with
/// (berth_linux's I/O errors print their source themselves, so `{:#}` would repeat it).
fn message(e: &anyhow::Error) -> String {
    let mut msg = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if msg.ends_with(&text) {
            continue;
        }
        if !msg.is_empty() {
            msg.push_str(": ");
        }
        msg.push_str(&text);
    }
    msg
}

fn parse_global(p: &mut lexopt::Parser) -> Result<Option<(Global, String)>> {
    let mut root = None;
    let mut g = Global {
        root: PathBuf::new(),
        rootless: berth_linux::rootless::Rootless::Auto,
        log: None,
        log_format: logger::Format::Text,
        debug: false,
        systemd_cgroup: false,
    };
    loop {
        let Some(arg) = p.next()? else {
            print!("{USAGE}");
            return Ok(None);
        };
        match arg {
            Long("root") => root = Some(PathBuf::from(p.value()?)),
            Long("log") => g.log = Some(PathBuf::from(p.value()?)).filter(|p| !p.as_os_str().is_empty()),
            Long("log-format") => {
                g.log_format = match p.value()?.string()?.as_str() {
                    "json" => logger::Format::Json,
                    "text" => logger::Format::Text,
                    other => {
                        bail!("--log-format: unknown format {other:?} (expected text or json)")
                    }
                }
            }
            Long("debug") => g.debug = true,
            Long("systemd-cgroup") => g.systemd_cgroup = true,
            Long("rootless") => {
                if let Some(v) = p.optional_value() {
                    g.rootless = v.string()?.parse()?;
                }
            }
            Long("criu") | Long("log-level") => {
                let _ = p.value()?;
            }
            Short('v') | Long("version") => {
                print!("{}", version());
                return Ok(None);
            }
            Short('h') | Long("help") => {
                print!("{USAGE}");
                return Ok(None);
            }
            Value(cmd) => {
                let cmd = cmd.string()?;
                g.root = match root {
                    Some(r) => r,
                    None => match berth_linux::rootless::default_state_root(g.rootless.decide()) {
                        Ok(r) => r,
                        // Only commands that use the state root need one.
                        Err(e) if !matches!(cmd.as_str(), "spec" | "help" | "features" | "hcs-config") => {
                            return Err(e.into())
                        }
                        Err(_) => PathBuf::new(),
                    },
                };
                return Ok(Some((g, cmd)));
            }
            other => return Err(other.unexpected().into()),
        }
    }
}

fn version() -> String {
    format!(
        "berth version {}\ncommit: {}\nspec: {}\n",
        env!("CARGO_PKG_VERSION"),
        env!("BERTH_COMMIT"),
        berth_core::OCI_VERSION
    )
}

fn dispatch(g: &Global, cmd: &str, mut p: lexopt::Parser) -> Result<i32> {
    if g.systemd_cgroup && matches!(cmd, "create" | "run" | "update") {
        bail!("--systemd-cgroup: the systemd cgroup driver is not supported; berth manages cgroups through cgroupfs (drop the flag, e.g. SystemdCgroup=false in containerd, --cgroup-manager cgroupfs in podman)");
    }
    if matches!(cmd, "create" | "run" | "exec") {
        berth_linux::seal::ensure_sealed()?;
    }
    match cmd {
        "spec" => cmd_spec(&mut p),
        "create" => cmd_create(g, &mut p, LaunchMode::Create),
        "run" => cmd_create(g, &mut p, LaunchMode::RunForeground),
        "start" => {
            let id = one_id(&mut p, "start")?;
            container::start(&g.root, &id)?;
            Ok(0)
        }
        "state" => {
            let id = one_id(&mut p, "state")?;
            let json = container::state_json(&g.root, &id)?;
            container::print(format!("{json}\n").as_bytes())?;
            Ok(0)
        }
        "kill" => cmd_kill(g, &mut p),
        "exec" => cmd_exec(g, &mut p),
        "ps" => cmd_ps(g, &mut p),
        "hcs-config" => cmd_hcs_config(&mut p),
        "pause" => {
            let id = one_id(&mut p, "pause")?;
            berth_linux::resources::pause(&g.root, &id)?;
            Ok(0)
        }
        "resume" => {
            let id = one_id(&mut p, "resume")?;
            berth_linux::resources::resume(&g.root, &id)?;
            Ok(0)
        }
        "events" => cmd_events(g, &mut p),
        "update" => cmd_update(g, &mut p),
        "delete" => cmd_delete(g, &mut p),
        "list" | "ps-all" => cmd_list(g, &mut p),
        "help" => {
            print!("{USAGE}");
            Ok(0)
        }
        other => bail!("unknown command {other:?} (see berth --help)"),
    }
}

fn os(v: OsString) -> Result<String> {
    v.into_string().map_err(|v| anyhow!("argument {v:?} is not valid UTF-8"))
}

fn one_id(p: &mut lexopt::Parser, cmd: &str) -> Result<String> {
    let mut id = None;
    while let Some(arg) = p.next()? {
        match arg {
            Value(v) if id.is_none() => id = Some(os(v)?),
            Short('h') | Long("help") => {
                println!("Usage: berth {cmd} <container-id>");
                std::process::exit(0);
            }
            other => return Err(other.unexpected().into()),
        }
    }
    id.ok_or_else(|| anyhow!("{cmd}: missing container id"))
}

fn cmd_spec(p: &mut lexopt::Parser) -> Result<i32> {
    let mut bundle = PathBuf::from(".");
    let mut rootless = false;
    let mut seccomp = false;
    while let Some(arg) = p.next()? {
        match arg {
            Short('b') | Long("bundle") => bundle = PathBuf::from(p.value()?),
            Long("rootless") => rootless = true,
            Long("seccomp") => seccomp = true,
            other => return Err(other.unexpected().into()),
        }
    }
    let path = bundle.join("config.json");
    let json = if rootless || seccomp {
        let mut spec = berth_spec::default_spec();
        if rootless {
            let (uid, gid) = (berth_linux::seal::euid(), berth_linux::seal::egid());
            berth_spec::to_rootless(&mut spec, uid, gid);
        }
        if seccomp {
            if let Some(linux) = spec.linux_mut() {
                linux.set_seccomp(Some(berth_seccomp::default_profile()));
            }
        }
        serde_json::to_string_pretty(&spec).context("encoding the default spec")? + "\n"
    } else {
        // runc's exact bytes: re-serializing a parsed Spec would shuffle the capability lists
        // (oci-spec keeps them in a HashSet).
        berth_spec::DEFAULT_SPEC_JSON.to_string()
    };
    // create_new: never overwrite, even in a race.
    let mut f = match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            bail!("File {} exists. Remove it first", path.display())
        }
        Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
    };
    f.write_all(json.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
    Ok(0)
}

fn cmd_create(g: &Global, p: &mut lexopt::Parser, mut mode: LaunchMode) -> Result<i32> {
    let mut o =
        CreateOptions { root: g.root.clone(), bundle: PathBuf::from("."), rootless: g.rootless, ..Default::default() };
    let mut id = None;
    while let Some(arg) = p.next()? {
        match arg {
            Short('b') | Long("bundle") => o.bundle = PathBuf::from(p.value()?),
            Long("pid-file") => o.pid_file = Some(PathBuf::from(p.value()?)),
            Long("console-socket") => o.console_socket = Some(PathBuf::from(p.value()?)),
            Long("no-pivot") => o.no_pivot = true,
            Long("no-new-keyring") | Long("no-subreaper") => {}
            Long("preserve-fds") => {
                o.preserve_fds = p.value()?.parse().map_err(|e| anyhow!("--preserve-fds: {e}"))?;
            }
            Short('d') | Long("detach") if mode == LaunchMode::RunForeground => mode = LaunchMode::RunDetached,
            Long("keep") if mode != LaunchMode::Create => {}
            Value(v) if id.is_none() => id = Some(os(v)?),
            other => return Err(other.unexpected().into()),
        }
    }
    o.id = id.ok_or_else(|| anyhow!("missing container id"))?;
    match container::launch(&o, mode)? {
        container::Launched::Exited(code) => Ok(code),
        container::Launched::Created { .. } | container::Launched::Detached => Ok(0),
    }
}

fn cmd_kill(g: &Global, p: &mut lexopt::Parser) -> Result<i32> {
    let mut all = false;
    let mut pos = Vec::new();
    while let Some(arg) = p.next()? {
        match arg {
            Short('a') | Long("all") => all = true,
            Value(v) => pos.push(os(v)?),
            other => return Err(other.unexpected().into()),
        }
    }
    let (id, sig) = match pos.as_slice() {
        [id] => (id.clone(), libc_sigterm()),
        [id, s] => (id.clone(), berth_core::signal::parse_signal(s).map_err(|e| anyhow!(e))?),
        [] => bail!("kill: missing container id"),
        _ => bail!("kill: too many arguments (expected ID [SIGNAL])"),
    };
    container::kill(&g.root, &id, sig, all)?;
    Ok(0)
}

fn libc_sigterm() -> i32 {
    15
}

fn cmd_delete(g: &Global, p: &mut lexopt::Parser) -> Result<i32> {
    let mut force = false;
    let mut id = None;
    while let Some(arg) = p.next()? {
        match arg {
            Short('f') | Long("force") => force = true,
            Value(v) if id.is_none() => id = Some(os(v)?),
            other => return Err(other.unexpected().into()),
        }
    }
    let id = id.ok_or_else(|| anyhow!("delete: missing container id"))?;
    container::delete(&g.root, &id, force)?;
    Ok(0)
}

fn cmd_list(g: &Global, p: &mut lexopt::Parser) -> Result<i32> {
    let mut json = false;
    let mut quiet = false;
    while let Some(arg) = p.next()? {
        match arg {
            Short('f') | Long("format") => {
                json = match p.value()?.string()?.as_str() {
                    "json" => true,
                    "table" => false,
                    other => bail!("list: unknown format {other:?} (expected table or json)"),
                }
            }
            Short('q') | Long("quiet") => quiet = true,
            other => return Err(other.unexpected().into()),
        }
    }
    let states = container::list(&g.root)?;
    let mut out = Vec::new();
    if quiet {
        for s in &states {
            writeln!(out, "{}", s.id)?;
        }
    } else if json {
        serde_json::to_writer(&mut out, &states)?;
        out.push(b'\n');
    } else {
        let rows: Vec<[String; 6]> = states
            .iter()
            .map(|s| {
                [
                    s.id.clone(),
                    s.pid.to_string(),
                    s.status.to_string(),
                    s.bundle.display().to_string(),
                    s.created.clone(),
                    s.owner.clone(),
                ]
            })
            .collect();
        let head = ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"].map(String::from);
        let mut w = [0usize; 6];
        for r in std::iter::once(&head).chain(rows.iter()) {
            for (i, c) in r.iter().enumerate() {
                w[i] = w[i].max(c.len());
            }
        }
        for r in std::iter::once(&head).chain(rows.iter()) {
            let line: Vec<String> = r.iter().enumerate().map(|(i, c)| format!("{c:<width$}", width = w[i])).collect();
            writeln!(out, "{}", line.join("   ").trim_end())?;
        }
    }
    container::print(&out)?;
    Ok(0)
}

fn cmd_exec(g: &Global, p: &mut lexopt::Parser) -> Result<i32> {
    use berth_linux::exec::{parse_additional_gids, parse_user, ExecOptions};
    let mut o = ExecOptions { root: g.root.clone(), ..Default::default() };
    let mut id = None;
    while id.is_none() {
        let Some(arg) = p.next()? else { break };
        match arg {
            Short('p') | Long("process") => o.process_file = Some(PathBuf::from(p.value()?)),
            Short('t') | Long("tty") => o.args.tty = true,
            Long("console-socket") => o.console_socket = Some(PathBuf::from(p.value()?)),
            Long("cwd") => o.args.cwd = Some(os(p.value()?)?),
            Short('e') | Long("env") => o.args.env.push(os(p.value()?)?),
            Short('u') | Long("user") => o.args.user = Some(parse_user(&os(p.value()?)?)?),
            Short('g') | Long("additional-gids") => {
                o.args.additional_gids.extend(parse_additional_gids(&os(p.value()?)?)?);
            }
            Short('c') | Long("cap") => o.args.caps.push(os(p.value()?)?),
            Long("no-new-privs") => o.args.no_new_privs = true,
            Short('d') | Long("detach") => o.detach = true,
            Long("pid-file") => o.pid_file = Some(PathBuf::from(p.value()?)),
            Long("preserve-fds") => o.preserve_fds = p.value()?.parse().map_err(|e| anyhow!("--preserve-fds: {e}"))?,
            // Accepted for compatibility; berth has no AppArmor/SELinux support.
            Long("apparmor") | Long("process-label") => {
                let _ = p.value()?;
            }
            Long("ignore-paused") => {}
            Value(v) => id = Some(os(v)?),
            other => return Err(other.unexpected().into()),
        }
    }
    o.id = id.ok_or_else(|| anyhow!("exec: missing container id"))?;
    for a in p.raw_args()? {
        o.args.args.push(os(a)?);
    }
    if o.process_file.is_some() && !o.args.args.is_empty() {
        bail!("exec: give either --process or a command, not both");
    }
    Ok(berth_linux::exec::exec(&o)?)
}

fn cmd_ps(g: &Global, p: &mut lexopt::Parser) -> Result<i32> {
    let mut json = false;
    let mut id = None;
    let mut ps_args = Vec::new();
    while id.is_none() {
        let Some(arg) = p.next()? else { break };
        match arg {
            Short('f') | Long("format") => {
                json = match p.value()?.string()?.as_str() {
                    "json" => true,
                    "table" => false,
                    other => bail!("ps: unknown format {other:?} (expected table or json)"),
                }
            }
            Value(v) => id = Some(os(v)?),
            other => return Err(other.unexpected().into()),
        }
    }
    let id = id.ok_or_else(|| anyhow!("ps: missing container id"))?;
    for a in p.raw_args()? {
        ps_args.push(os(a)?);
    }
    let pids = berth_linux::exec::pids(&g.root, &id)?;
    if json {
        container::print(format!("{}\n", serde_json::to_string(&pids)?).as_bytes())?;
        return Ok(0);
    }
    // Like runc: run the host's ps and keep the header plus the container's rows.
    if ps_args.is_empty() {
        ps_args.push("-ef".to_string());
    }
    let out = std::process::Command::new("ps").args(&ps_args).output().context("running ps")?;
    if !out.status.success() {
        bail!("ps {}: {}", ps_args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let col =
        header.split_whitespace().position(|h| h == "PID").ok_or_else(|| anyhow!("ps output has no PID column"))?;
    let mut buf = format!("{header}\n");
    for l in lines {
        if let Some(pid) = l.split_whitespace().nth(col).and_then(|v| v.parse::<i32>().ok()) {
            if pids.contains(&pid) {
                buf.push_str(l);
                buf.push('\n');
            }
        }
    }
    container::print(buf.as_bytes())?;
    Ok(0)
}

fn cmd_hcs_config(p: &mut lexopt::Parser) -> Result<i32> {
    let mut bundle = PathBuf::from(".");
    let mut lcow_options = Vec::new();
    let mut process = false;
    let mut id = None;
    while let Some(arg) = p.next()? {
        match arg {
            Short('b') | Long("bundle") => bundle = PathBuf::from(p.value()?),
            Long("lcow-kernel-dir") => lcow_options.push(hcs_config::lcow_kernel_dir(&os(p.value()?)?)),
            Long("lcow-option") => lcow_options.push(os(p.value()?)?),
            Long("process") => process = true,
            Value(v) if id.is_none() => id = Some(os(v)?),
            other => return Err(other.unexpected().into()),
        }
    }
    let id = id.ok_or_else(|| anyhow!("hcs-config: missing container id"))?;
    let out = hcs_config::run(hcs_config::HcsConfigArgs { bundle, id, lcow_options, process })?;
    container::print(format!("{out}\n").as_bytes())?;
    Ok(0)
}

fn parse_duration(s: &str) -> Result<std::time::Duration> {
    // Go duration syntax as runc takes it: 5s, 500ms, 1m, 1.5s.
    let t = s.trim();
    let (num, unit) = t.find(|c: char| c.is_ascii_alphabetic()).map_or((t, "s"), |i| (&t[..i], &t[i..]));
    let n: f64 = num.parse().map_err(|_| anyhow!("--interval {s:?}: not a duration"))?;
    let secs = match unit {
        "ns" => n / 1e9,
        "us" | "µs" => n / 1e6,
        "ms" => n / 1e3,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => bail!("--interval {s:?}: unknown unit {unit:?}"),
    };
    if !(secs > 0.0 && secs.is_finite()) {
        bail!("--interval {s:?}: must be positive");
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

fn cmd_events(g: &Global, p: &mut lexopt::Parser) -> Result<i32> {
    let mut once = false;
    let mut interval = std::time::Duration::from_secs(5);
    let mut id = None;
    while let Some(arg) = p.next()? {
        match arg {
            Long("stats") => once = true,
            Long("interval") => interval = parse_duration(&os(p.value()?)?)?,
            Value(v) if id.is_none() => id = Some(os(v)?),
            other => return Err(other.unexpected().into()),
        }
    }
    let id = id.ok_or_else(|| anyhow!("events: missing container id"))?;
    berth_linux::resources::events(&g.root, &id, once, interval, |line| {
        container::print(format!("{line}\n").as_bytes())
    })?;
    Ok(0)
}

fn cmd_update(g: &Global, p: &mut lexopt::Parser) -> Result<i32> {
    use berth_linux::resources::parse_size;
    let mut file: Option<String> = None;
    let mut id = None;
    let mut v = serde_json::json!({});
    let set = |v: &mut serde_json::Value, section: &str, key: &str, val: serde_json::Value| {
        v[section][key] = val;
    };
    while let Some(arg) = p.next()? {
        match arg {
            Short('r') | Long("resources") => file = Some(os(p.value()?)?),
            Long("memory") => set(
                &mut v,
                "memory",
                "limit",
                parse_size(&os(p.value()?)?).map_err(|e| anyhow!("--memory {e}"))?.into(),
            ),
            Long("memory-swap") => set(
                &mut v,
                "memory",
                "swap",
                parse_size(&os(p.value()?)?).map_err(|e| anyhow!("--memory-swap {e}"))?.into(),
            ),
            Long("memory-reservation") => set(
                &mut v,
                "memory",
                "reservation",
                parse_size(&os(p.value()?)?).map_err(|e| anyhow!("--memory-reservation {e}"))?.into(),
            ),
            Long("cpu-shares") => set(&mut v, "cpu", "shares", num::<u64>(p, "--cpu-shares")?.into()),
            Long("cpu-quota") => set(&mut v, "cpu", "quota", num::<i64>(p, "--cpu-quota")?.into()),
            Long("cpu-period") => set(&mut v, "cpu", "period", num::<u64>(p, "--cpu-period")?.into()),
            Long("cpu-rt-runtime") => set(&mut v, "cpu", "realtimeRuntime", num::<i64>(p, "--cpu-rt-runtime")?.into()),
            Long("cpu-rt-period") => set(&mut v, "cpu", "realtimePeriod", num::<u64>(p, "--cpu-rt-period")?.into()),
            Long("cpuset-cpus") => set(&mut v, "cpu", "cpus", os(p.value()?)?.into()),
            Long("cpuset-mems") => set(&mut v, "cpu", "mems", os(p.value()?)?.into()),
            Long("pids-limit") => set(&mut v, "pids", "limit", num::<i64>(p, "--pids-limit")?.into()),
            Long("blkio-weight") => set(&mut v, "blockIO", "weight", num::<u16>(p, "--blkio-weight")?.into()),
            Value(x) if id.is_none() => id = Some(os(x)?),
            other => return Err(other.unexpected().into()),
        }
    }
    let id = id.ok_or_else(|| anyhow!("update: missing container id"))?;
    let json = match file.as_deref() {
        Some("-") => {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s).context("reading resources from stdin")?;
            serde_json::from_str(&s).context("--resources: invalid JSON")?
        }
        Some(path) => {
            let s = std::fs::read_to_string(path).with_context(|| format!("--resources {path}"))?;
            serde_json::from_str(&s).with_context(|| format!("--resources {path}: invalid JSON"))?
        }
        None => v,
    };
    let resources: berth_linux::oci::LinuxResources =
        serde_json::from_value(json).context("--resources: not a LinuxResources document")?;
    berth_linux::resources::update(&g.root, &id, &resources)?;
    Ok(0)
}

fn num<T: std::str::FromStr>(p: &mut lexopt::Parser, flag: &str) -> Result<T> {
    let v = os(p.value()?)?;
    v.parse().map_err(|_| anyhow!("{flag} {v:?}: not a valid number"))
}
