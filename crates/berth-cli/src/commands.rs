//! The commands: their help, their flags (parsed without side effects into a [`Command`]) and
//! what they run.
//!
//! Every flag is either implemented or refused with an error: none is accepted and ignored.
//! README.md's command reference lists runc 1.1's commands and flags with berth's status.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use berth_linux::container::{self, CreateOptions, LaunchMode};
use berth_linux::exec::ExecOptions;
use lexopt::prelude::*;

use crate::{hcs_config, os, Global};

/// A command-line error: the message and the exit status (1, or 3 for an unknown command,
/// as in runc).
pub(crate) struct Usage {
    pub msg: String,
    pub code: u8,
}

impl Usage {
    pub fn new(msg: impl Into<String>) -> Usage {
        Usage { msg: msg.into(), code: 1 }
    }
}

impl From<lexopt::Error> for Usage {
    fn from(e: lexopt::Error) -> Usage {
        Usage::new(e.to_string())
    }
}

/// What the command line asks for.
pub(crate) enum Invocation {
    /// Text for stdout, and the exit status (help).
    Print(String, u8),
    /// A command to run.
    Run(Command),
}

type Runner = Box<dyn FnOnce(&Global, Option<std::io::Result<Vec<u8>>>) -> Result<i32>>;

/// A parsed command, ready to run.
pub(crate) struct Command {
    pub name: &'static str,
    /// It creates container-facing processes: the binary must be protected first.
    pub sealed: bool,
    /// Descriptors 3 to 3+N-1 the caller passes on purpose, kept open.
    pub keep_fds: u32,
    /// A file to read before inherited descriptors are closed; its content (or the error)
    /// is handed to `run`.
    pub input: Option<PathBuf>,
    pub run: Runner,
}

type Parsed = Result<Invocation, Usage>;

fn command(
    name: &'static str,
    sealed: bool,
    keep_fds: u32,
    input: Option<PathBuf>,
    run: impl FnOnce(&Global, Option<std::io::Result<Vec<u8>>>) -> Result<i32> + 'static,
) -> Parsed {
    Ok(Invocation::Run(Command { name, sealed, keep_fds, input, run: Box::new(run) }))
}

// ---------------------------------------------------------------------------------------------
// Help

/// One command's documentation.
struct Doc {
    name: &'static str,
    summary: &'static str,
    usage: &'static str,
    text: &'static str,
}

const DOCS: &[Doc] = &[
    Doc {
        name: "spec",
        summary: "create a new specification file (config.json)",
        usage: "berth spec [command options]",
        text: "Writes runc 1.1's default config.json into the bundle directory.

Options:
  -b, --bundle DIR    the bundle directory (default: the current directory)
  --rootless          a specification for an unprivileged user (user namespace, no cgroups)
  --seccomp           add berth's default seccomp profile
",
    },
    Doc {
        name: "create",
        summary: "create a container",
        usage: "berth create [command options] <container-id>",
        text: "Creates the container and leaves its init waiting for `berth start`.

Options:
  -b, --bundle DIR        the bundle directory (default: the current directory)
  --console-socket PATH   an AF_UNIX socket that receives the terminal's master (with process.terminal)
  --pid-file FILE         write the init's pid to FILE
  --no-pivot              enter the root with chroot instead of pivot_root (for a rootfs on a ramdisk)
  --no-new-keyring        keep the caller's session keyring instead of a new one for the container
  --preserve-fds N        pass descriptors 3 to 3+N-1 to the process (stdio + $LISTEN_FDS + N in total)
",
    },
    Doc {
        name: "start",
        summary: "start a created container",
        usage: "berth start <container-id>",
        text: "Runs the user process of a created container.\n",
    },
    Doc {
        name: "run",
        summary: "create and start a container",
        usage: "berth run [command options] <container-id>",
        text: "Creates and starts the container. In the foreground, berth forwards signals, proxies the
terminal, waits for the process, removes the container and exits with its status.

Options:
  -b, --bundle DIR        the bundle directory (default: the current directory)
  --console-socket PATH   an AF_UNIX socket that receives the terminal's master (with process.terminal)
  -d, --detach            return once the process runs
  --keep                  do not delete the container after it exits: it stays stopped, cgroups included, until `berth delete`
  --pid-file FILE         write the init's pid to FILE
  --no-subreaper          do not become a subreaper: orphaned processes go to the caller's
  --no-pivot              enter the root with chroot instead of pivot_root (for a rootfs on a ramdisk)
  --no-new-keyring        keep the caller's session keyring instead of a new one for the container
  --preserve-fds N        pass descriptors 3 to 3+N-1 to the process (stdio + $LISTEN_FDS + N in total)
",
    },
    Doc {
        name: "state",
        summary: "print the state of a container",
        usage: "berth state <container-id>",
        text: "Prints the container's state as JSON.\n",
    },
    Doc {
        name: "kill",
        summary: "send a signal to a container's init (or all its processes)",
        usage: "berth kill [command options] <container-id> [signal]",
        text: "Sends the signal (default SIGTERM) to the container's init. The signal is a number (0 to 64;
0 only checks that the init is alive) or a name, with or without SIG, in any case (TERM,
SIGKILL, RTMIN+3).

Options:
  -a, --all   send the signal to every process of the container's cgroup
",
    },
    Doc {
        name: "delete",
        summary: "delete a container",
        usage: "berth delete [command options] <container-id>",
        text: "Removes a stopped (or created) container.

Options:
  -f, --force   kill (SIGKILL) and delete a running container; succeed if there is none
",
    },
    Doc {
        name: "list",
        summary: "list containers",
        usage: "berth list [command options]",
        text: "Lists the containers under --root.

Options:
  -f, --format table|json   the output format (default: table)
  -q, --quiet               print the ids only
",
    },
    Doc {
        name: "exec",
        summary: "run a new process inside a running container",
        usage: "berth exec [command options] <container-id> <command> [args...]\n       berth exec [command options] -p process.json <container-id>",
        text: "Runs a new process in the container's namespaces and cgroups, with its security settings.
Exits with the process's status, or 255 when berth itself fails.

Options:
  --console-socket PATH      an AF_UNIX socket that receives the terminal's master (with -t)
  --cwd DIR                  the working directory in the container
  -e, --env VAR=VALUE        set an environment variable (repeatable; overrides the spec's)
  -t, --tty                  allocate a pseudo-terminal
  -u, --user UID[:GID]       the user (numbers)
  -g, --additional-gids GID  an additional gid (repeatable, or a comma-separated list)
  -p, --process FILE         the process as an OCI process JSON document (/dev/fd/N and /dev/stdin work)
  -d, --detach               return once the process runs
  --pid-file FILE            write the process's pid to FILE
  --process-label LABEL      the SELinux label of the process (process.selinuxLabel)
  --apparmor PROFILE         the AppArmor profile of the process (process.apparmorProfile)
  --no-new-privs             set no_new_privs
  -c, --cap CAP              add a capability (repeatable; unknown names are skipped with a warning)
  --preserve-fds N           pass descriptors 3 to 3+N-1 to the process
  --cgroup [CTRL[,CTRL]:]PATH  run in an existing sub-cgroup of the container's (repeatable with controllers)
  --ignore-paused            exec into a paused container: the process waits, frozen, until resume
With -p, the flags that describe the process (--cwd, -e, -t, -u, -g, -c, --no-new-privs,
--apparmor, --process-label) are refused: put them in the document.
",
    },
    Doc {
        name: "ps",
        summary: "list the processes of a container",
        usage: "berth ps [command options] <container-id> [ps options]",
        text: "Lists the container's processes with the host's ps.

Options:
  -f, --format table|json   table (ps output) or json (an array of host pids)
",
    },
    Doc {
        name: "pause",
        summary: "freeze every process of a container",
        usage: "berth pause <container-id>",
        text: "Freezes every process of the container.\n",
    },
    Doc {
        name: "resume",
        summary: "thaw a paused container",
        usage: "berth resume <container-id>",
        text: "Thaws a paused container.\n",
    },
    Doc {
        name: "events",
        summary: "print resource statistics and OOM events",
        usage: "berth events [command options] <container-id>",
        text: "Streams statistics and OOM events as JSON.

Options:
  --interval DURATION   the statistics interval (Go syntax: 5s, 500ms; default 5s)
  --stats               print the statistics once and exit
",
    },
    Doc {
        name: "update",
        summary: "change the resource limits of a running container",
        usage: "berth update [command options] <container-id>",
        text: "Changes the container's cgroup limits. A value of 0 leaves a limit unchanged, as in runc.

Options:
  -r, --resources FILE|-      an OCI linux.resources JSON document (- reads stdin; not combined with the flags)
  --blkio-weight N            block IO weight (10 to 1000)
  --cpu-period N              CPU CFS period (microseconds)
  --cpu-quota N               CPU CFS quota (microseconds)
  --cpu-share N               CPU shares (relative weight); --cpu-shares is accepted too
  --cpu-rt-period N           CPU realtime period (microseconds)
  --cpu-rt-runtime N          CPU realtime runtime (microseconds)
  --cpuset-cpus LIST          CPUs to use
  --cpuset-mems LIST          memory nodes to use
  --memory SIZE               memory limit (k, m, g suffixes)
  --memory-reservation SIZE   memory soft limit
  --memory-swap SIZE          memory plus swap limit (-1: unlimited)
  --pids-limit N              maximum number of pids
  --l3-cache-schema SCHEMA    Intel RDT/CAT L3 cache schema: refused (berth does not manage resctrl on update)
  --mem-bw-schema SCHEMA      Intel RDT/MBA memory bandwidth schema: refused likewise
  --kernel-memory SIZE, --kernel-memory-tcp SIZE
                              obsolete kernel memory limits: warned about and not applied, as in runc
",
    },
    Doc {
        name: "features",
        summary: "show what this build supports (JSON)",
        usage: "berth features",
        text: "Prints the features document (runc 1.1's shape): the spec versions, hooks, mount options,
namespaces, capabilities, cgroup drivers, seccomp and LSM support this build of berth has.
",
    },
    Doc {
        name: "checkpoint",
        summary: "not supported: checkpoint a container (CRIU)",
        usage: "berth checkpoint [command options] <container-id>",
        text: "Not supported: berth cannot checkpoint containers (it has no CRIU integration). Every use
is refused with an error, and so is --help (exit status 1), so that tools that probe for
checkpoint support by running `checkpoint --help` (podman) see that berth has none.
",
    },
    Doc {
        name: "restore",
        summary: "not supported: restore a container from a checkpoint (CRIU)",
        usage: "berth restore [command options] <container-id>",
        text: "Not supported: berth cannot restore containers from checkpoints (it has no CRIU
integration). Every use is refused with an error, and so is --help (exit status 1).
",
    },
    Doc {
        name: "hcs-config",
        summary: "print the Windows HCS document a spec translates to (dry run)",
        usage: "berth hcs-config [command options] <container-id>",
        text: "Prints the Host Compute Service document the Windows backend would send for the bundle.

Options:
  -b, --bundle DIR           the bundle directory (default: the current directory)
  --lcow-kernel-dir DIR      the utility VM's kernel directory (Linux specs; repeatable)
  --lcow-option KEY=VALUE    a utility VM option (repeatable)
  --process                  print the init's ProcessConfig instead of the ContainerConfig
",
    },
    Doc {
        name: "help",
        summary: "show the commands, or one command's help (alias: h)",
        usage: "berth help [command]",
        text: "Shows the list of commands or the help of one command.\n",
    },
];

/// The top-level help.
pub(crate) fn usage() -> String {
    let mut s = String::from(
        "berth - an OCI container runtime, runc 1.1 compatible\n\nUsage: berth [global options] <command> [command options] [arguments]\n\nCommands:\n",
    );
    for d in DOCS {
        s.push_str(&format!("  {:<11}{}\n", d.name, d.summary));
    }
    s.push_str(
        "
Global options:
  --root DIR             state directory (default /run/berth)
  --log FILE             log file (default stderr)
  --log-format FORMAT    text or json (default text)
  --log-level LEVEL      error, warning (default), info, debug or trace
  --debug                log debug messages
  --systemd-cgroup       the systemd cgroup driver: refused by create, run and update (berth uses cgroupfs)
  --rootless VALUE       true, false or auto (default: detected, as runc; see docs/rootless.md)
  --criu PATH            where criu is (unused: checkpoint and restore are not supported)
  -v, --version          print the version
  -h, --help             print this help
",
    );
    s
}

fn help_text(name: &str) -> Option<String> {
    let d = DOCS.iter().find(|d| d.name == name)?;
    Some(format!("berth {} - {}\n\nUsage: {}\n\n{}", d.name, d.summary, d.usage, d.text))
}

fn help(name: &str) -> Parsed {
    let code = if matches!(name, "checkpoint" | "restore") { 1 } else { 0 };
    Ok(Invocation::Print(help_text(name).unwrap_or_default(), code))
}

fn no_topic(name: &str) -> Usage {
    Usage { msg: format!("No help topic for '{name}': unknown command (see berth --help)"), code: 3 }
}

/// Parses command `name` and its arguments.
pub(crate) fn parse(name: &str, mut p: lexopt::Parser) -> Parsed {
    let p = &mut p;
    match name {
        "help" | "h" => match p.next()? {
            None => Ok(Invocation::Print(usage(), 0)),
            Some(Value(topic)) => {
                let topic = os(topic)?;
                match help_text(&topic) {
                    Some(_) => help(&topic),
                    None if topic == "h" => help("help"),
                    None => Err(no_topic(&topic)),
                }
            }
            Some(other) => Err(other.unexpected().into()),
        },
        "spec" => spec(p),
        "create" => create(p, false),
        "run" => create(p, true),
        "start" => one_id(p, "start"),
        "state" => one_id(p, "state"),
        "pause" => one_id(p, "pause"),
        "resume" => one_id(p, "resume"),
        "kill" => kill(p),
        "delete" => delete(p),
        "list" => list(p),
        "ps" => ps(p),
        "exec" => exec(p),
        "events" => events(p),
        "update" => update(p),
        "features" => features(p),
        "checkpoint" | "restore" => unsupported(p, name),
        "hcs-config" => hcs(p),
        other => Err(no_topic(other)),
    }
}

// ---------------------------------------------------------------------------------------------
// Shared checks

/// `--systemd-cgroup` for the commands that would create or change cgroups.
fn no_systemd(g: &Global) -> Result<()> {
    if g.systemd_cgroup {
        bail!("--systemd-cgroup: the systemd cgroup driver is not supported; berth manages cgroups through cgroupfs (drop the flag, e.g. SystemdCgroup=false in containerd, --cgroup-manager cgroupfs in podman)");
    }
    Ok(())
}

fn number<T: std::str::FromStr>(p: &mut lexopt::Parser, flag: &str) -> Result<T, Usage> {
    let v = os(p.value()?)?;
    v.parse().map_err(|_| Usage::new(format!("{flag} {v:?}: not a valid number")))
}

/// Positional arguments between `min` and `max`, and `-h`.
fn positionals(
    p: &mut lexopt::Parser,
    name: &'static str,
    min: usize,
    max: usize,
    what: &str,
) -> Result<Vec<String>, Option<Usage>> {
    let mut out = Vec::new();
    while let Some(arg) = p.next().map_err(|e| Some(e.into()))? {
        match arg {
            Value(v) => out.push(os(v).map_err(Some)?),
            Short('h') | Long("help") => return Err(None),
            other => return Err(Some(other.unexpected().into())),
        }
    }
    if out.len() < min {
        return Err(Some(Usage::new(format!("{name}: missing {what}"))));
    }
    if out.len() > max {
        return Err(Some(Usage::new(format!("{name}: too many arguments (expected {what})"))));
    }
    Ok(out)
}

/// `positionals`, with `-h` answered by the command's help.
macro_rules! positionals_or_help {
    ($p:expr, $name:expr, $min:expr, $max:expr, $what:expr) => {
        match positionals($p, $name, $min, $max, $what) {
            Ok(v) => v,
            Err(None) => return help($name),
            Err(Some(u)) => return Err(u),
        }
    };
}

/// LISTEN_FDS meant for this process (systemd socket activation), passed on by create/run.
fn listen_fds() -> u32 {
    let listen: u32 = std::env::var("LISTEN_FDS").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    let for_us =
        std::env::var("LISTEN_PID").ok().and_then(|v| v.parse::<u32>().ok()).is_none_or(|p| p == std::process::id());
    if for_us {
        listen
    } else {
        0
    }
}

// ---------------------------------------------------------------------------------------------
// The commands

fn one_id(p: &mut lexopt::Parser, name: &'static str) -> Parsed {
    let id = positionals_or_help!(p, name, 1, 1, "<container-id>").remove(0);
    command(name, false, 0, None, move |g, _| {
        match name {
            "start" => container::start(&g.root, &id)?,
            "state" => {
                let json = container::state_json(&g.root, &id)?;
                container::print(format!("{json}\n").as_bytes())?;
            }
            "pause" => berth_linux::resources::pause(&g.root, &id)?,
            _ => berth_linux::resources::resume(&g.root, &id)?,
        }
        Ok(0)
    })
}

fn spec(p: &mut lexopt::Parser) -> Parsed {
    let mut bundle = PathBuf::from(".");
    let mut rootless = false;
    let mut seccomp = false;
    while let Some(arg) = p.next()? {
        match arg {
            Short('b') | Long("bundle") => bundle = PathBuf::from(p.value()?),
            Long("rootless") => rootless = true,
            Long("seccomp") => seccomp = true,
            Short('h') | Long("help") => return help("spec"),
            other => return Err(other.unexpected().into()),
        }
    }
    command("spec", false, 0, None, move |_, _| {
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
            // runc's exact bytes: re-serializing a parsed Spec would shuffle the capability
            // lists (oci-spec keeps them in a HashSet).
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
    })
}

fn create(p: &mut lexopt::Parser, run: bool) -> Parsed {
    let name = if run { "run" } else { "create" };
    let mut o = CreateOptions { bundle: PathBuf::from("."), ..Default::default() };
    let mut detach = false;
    let mut id = None;
    while let Some(arg) = p.next()? {
        match arg {
            Short('b') | Long("bundle") => o.bundle = PathBuf::from(p.value()?),
            Long("pid-file") => o.pid_file = Some(PathBuf::from(p.value()?)),
            Long("console-socket") => o.console_socket = Some(PathBuf::from(p.value()?)),
            Long("no-pivot") => o.no_pivot = true,
            Long("no-new-keyring") => o.no_new_keyring = true,
            Long("preserve-fds") => o.preserve_fds = number(p, "--preserve-fds")?,
            Short('d') | Long("detach") if run => detach = true,
            // With -d there is nothing to keep the container from: run never deletes a
            // detached container, with or without --keep.
            Long("keep") if run => o.keep = true,
            Long("no-subreaper") if run => o.no_subreaper = true,
            Short('h') | Long("help") => return help(name),
            Value(v) if id.is_none() => id = Some(os(v)?),
            other => return Err(other.unexpected().into()),
        }
    }
    o.id = id.ok_or_else(|| Usage::new(format!("{name}: missing container id")))?;
    let mode = match (run, detach) {
        (false, _) => LaunchMode::Create,
        (true, false) => LaunchMode::RunForeground,
        (true, true) => LaunchMode::RunDetached,
    };
    let keep_fds = o.preserve_fds.saturating_add(listen_fds());
    command(name, true, keep_fds, None, move |g, _| {
        no_systemd(g)?;
        o.root = g.root.clone();
        o.rootless = g.rootless;
        match container::launch(&o, mode)? {
            container::Launched::Exited(code) => Ok(code),
            container::Launched::Created { .. } | container::Launched::Detached => Ok(0),
        }
    })
}

fn kill(p: &mut lexopt::Parser) -> Parsed {
    let mut all = false;
    let mut pos = Vec::new();
    while let Some(arg) = p.next()? {
        match arg {
            Short('a') | Long("all") => all = true,
            Short('h') | Long("help") => return help("kill"),
            Value(v) => pos.push(os(v)?),
            other => return Err(other.unexpected().into()),
        }
    }
    if pos.is_empty() {
        return Err(Usage::new("kill: missing container id"));
    }
    if pos.len() > 2 {
        return Err(Usage::new("kill: too many arguments (expected <container-id> [signal])"));
    }
    command("kill", false, 0, None, move |g, _| {
        let id = &pos[0];
        // As runc: the container first, then the signal.
        berth_linux::state::ContainerState::load(&g.root, id)?;
        let sig = match pos.get(1) {
            None => libc_sigterm(),
            Some(s) => berth_core::signal::parse_signal(s).map_err(|e| anyhow!(e))?,
        };
        container::kill(&g.root, id, sig, all)?;
        Ok(0)
    })
}

fn libc_sigterm() -> i32 {
    15
}

fn delete(p: &mut lexopt::Parser) -> Parsed {
    let mut force = false;
    let mut id = None;
    while let Some(arg) = p.next()? {
        match arg {
            Short('f') | Long("force") => force = true,
            Short('h') | Long("help") => return help("delete"),
            Value(v) if id.is_none() => id = Some(os(v)?),
            other => return Err(other.unexpected().into()),
        }
    }
    let id = id.ok_or_else(|| Usage::new("delete: missing container id"))?;
    command("delete", false, 0, None, move |g, _| {
        container::delete(&g.root, &id, force)?;
        Ok(0)
    })
}

fn format_flag(p: &mut lexopt::Parser, cmd: &str) -> Result<bool, Usage> {
    match os(p.value()?)?.as_str() {
        "json" => Ok(true),
        "table" => Ok(false),
        other => Err(Usage::new(format!("{cmd}: invalid format option {other:?} (expected table or json)"))),
    }
}

fn list(p: &mut lexopt::Parser) -> Parsed {
    let mut json = false;
    let mut quiet = false;
    while let Some(arg) = p.next()? {
        match arg {
            Short('f') | Long("format") => json = format_flag(p, "list")?,
            Short('q') | Long("quiet") => quiet = true,
            Short('h') | Long("help") => return help("list"),
            other => return Err(other.unexpected().into()),
        }
    }
    command("list", false, 0, None, move |g, _| {
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
                let line: Vec<String> =
                    r.iter().enumerate().map(|(i, c)| format!("{c:<width$}", width = w[i])).collect();
                writeln!(out, "{}", line.join("   ").trim_end())?;
            }
        }
        container::print(&out)?;
        Ok(0)
    })
}

fn exec(p: &mut lexopt::Parser) -> Parsed {
    let mut o = ExecOptions::default();
    let mut user = None;
    let mut gids = Vec::new();
    // Flags that describe the process, which a --process document replaces.
    let mut per_process: Vec<&'static str> = Vec::new();
    let mut id = None;
    while id.is_none() {
        let Some(arg) = p.next()? else { break };
        match arg {
            Short('p') | Long("process") => o.process_file = Some(PathBuf::from(p.value()?)),
            Short('t') | Long("tty") => {
                o.args.tty = true;
                per_process.push("--tty");
            }
            Long("console-socket") => o.console_socket = Some(PathBuf::from(p.value()?)),
            Long("cwd") => {
                o.args.cwd = Some(os(p.value()?)?);
                per_process.push("--cwd");
            }
            Short('e') | Long("env") => {
                o.args.env.push(os(p.value()?)?);
                per_process.push("--env");
            }
            Short('u') | Long("user") => {
                user = Some(os(p.value()?)?);
                per_process.push("--user");
            }
            Short('g') | Long("additional-gids") => {
                gids.push(os(p.value()?)?);
                per_process.push("--additional-gids");
            }
            Short('c') | Long("cap") => {
                o.args.caps.push(os(p.value()?)?);
                per_process.push("--cap");
            }
            Long("no-new-privs") => {
                o.args.no_new_privs = true;
                per_process.push("--no-new-privs");
            }
            Long("apparmor") => {
                o.args.apparmor = Some(os(p.value()?)?);
                per_process.push("--apparmor");
            }
            Long("process-label") => {
                o.args.process_label = Some(os(p.value()?)?);
                per_process.push("--process-label");
            }
            Short('d') | Long("detach") => o.detach = true,
            Long("pid-file") => o.pid_file = Some(PathBuf::from(p.value()?)),
            Long("preserve-fds") => o.preserve_fds = number(p, "--preserve-fds")?,
            Long("cgroup") => o.sub_cgroups.push(os(p.value()?)?),
            Long("ignore-paused") => o.ignore_paused = true,
            Short('h') | Long("help") => return help("exec"),
            Value(v) => id = Some(os(v)?),
            other => return Err(other.unexpected().into()),
        }
    }
    o.id = id.ok_or_else(|| Usage::new("exec: missing container id"))?;
    // As runc (SkipArgReorder): everything after the id is the command.
    for a in p.raw_args()? {
        o.args.args.push(os(a)?);
    }
    if let Some(f) = &o.process_file {
        // runc silently ignores these with -p; berth says so instead.
        if let Some(flag) = per_process.first() {
            return Err(Usage::new(format!(
                "exec: {flag} cannot be combined with --process {}: the document describes the process (put it there)",
                f.display()
            )));
        }
        if !o.args.args.is_empty() {
            return Err(Usage::new("exec: give either --process or a command, not both"));
        }
    }
    let keep_fds = o.preserve_fds;
    let input = o.process_file.clone();
    command("exec", true, keep_fds, input, move |g, input| {
        o.root = g.root.clone();
        if let (Some(f), Some(data)) = (&o.process_file, input) {
            o.process_json = Some(data.with_context(|| format!("reading --process {}", f.display()))?);
        }
        if let Some(u) = &user {
            o.args.user = Some(berth_linux::exec::parse_user(u)?);
        }
        for g in &gids {
            o.args.additional_gids.extend(berth_linux::exec::parse_additional_gids(g)?);
        }
        Ok(berth_linux::exec::exec(&o)?)
    })
}

fn ps(p: &mut lexopt::Parser) -> Parsed {
    let mut json = false;
    let mut id = None;
    while id.is_none() {
        let Some(arg) = p.next()? else { break };
        match arg {
            Short('f') | Long("format") => json = format_flag(p, "ps")?,
            Short('h') | Long("help") => return help("ps"),
            Value(v) => id = Some(os(v)?),
            other => return Err(other.unexpected().into()),
        }
    }
    let id = id.ok_or_else(|| Usage::new("ps: missing container id"))?;
    let mut ps_args = Vec::new();
    for a in p.raw_args()? {
        ps_args.push(os(a)?);
    }
    command("ps", false, 0, None, move |g, _| {
        let st = berth_linux::state::ContainerState::load(&g.root, &id)?;
        if berth_linux::vm::is_vm(&st.spec) {
            return ps_vm(&g.root, &st, json, &ps_args);
        }
        let pids = berth_linux::exec::pids_of(&g.root, &st)?;
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
        let col = header
            .split_whitespace()
            .position(|h| h == "PID")
            .ok_or_else(|| anyhow!("couldn't find PID field in ps output"))?;
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
    })
}

/// `ps` of a VM container (docs/vm-isolation.md): its processes are in the guest, where the
/// host's ps cannot see them, so the agent reads them from the guest's /proc. `--format
/// json` is runc's list of pids (the guest's); the table has the columns of `ps -ef` that
/// the guest reports. ps options cannot apply: there is no ps to pass them to.
fn ps_vm(
    root: &std::path::Path,
    st: &berth_linux::state::ContainerState,
    json: bool,
    ps_args: &[String],
) -> Result<i32> {
    if !ps_args.is_empty() && ps_args != ["-ef"] {
        bail!(
            "ps {}: ps options are not supported for a VM container (annotations[\"org.berth.isolation\"] is \"vm\": its processes are in the guest, listed by berth's agent)",
            ps_args.join(" ")
        );
    }
    let procs = berth_linux::vm::processes(root, st)?;
    if json {
        let pids: Vec<i32> = procs.iter().map(|p| p.pid).collect();
        container::print(format!("{}\n", serde_json::to_string(&pids)?).as_bytes())?;
        return Ok(0);
    }
    let mut buf = format!("{:<8} {:>7} {:>7} {:<4} {:>8} CMD\n", "UID", "PID", "PPID", "STAT", "TIME");
    for p in &procs {
        let secs = (p.user_ns + p.system_ns) / 1_000_000_000;
        let time = format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
        let cmd = if p.args.is_empty() { format!("[{}]", p.command) } else { p.args.join(" ") };
        buf.push_str(&format!("{:<8} {:>7} {:>7} {:<4} {:>8} {cmd}\n", p.uid, p.pid, p.ppid, p.state, time));
    }
    container::print(buf.as_bytes())?;
    Ok(0)
}

fn hcs(p: &mut lexopt::Parser) -> Parsed {
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
            Short('h') | Long("help") => return help("hcs-config"),
            Value(v) if id.is_none() => id = Some(os(v)?),
            other => return Err(other.unexpected().into()),
        }
    }
    let id = id.ok_or_else(|| Usage::new("hcs-config: missing container id"))?;
    command("hcs-config", false, 0, None, move |_, _| {
        let out = hcs_config::run(hcs_config::HcsConfigArgs { bundle, id, lcow_options, process })?;
        container::print(format!("{out}\n").as_bytes())?;
        Ok(0)
    })
}

fn parse_duration(s: &str) -> Result<std::time::Duration, Usage> {
    // Go duration syntax as runc takes it: 5s, 500ms, 1m, 1.5s.
    let t = s.trim();
    let (num, unit) = t.find(|c: char| c.is_ascii_alphabetic()).map_or((t, "s"), |i| (&t[..i], &t[i..]));
    let n: f64 = num.parse().map_err(|_| Usage::new(format!("--interval {s:?}: not a duration")))?;
    let secs = match unit {
        "ns" => n / 1e9,
        "us" | "µs" => n / 1e6,
        "ms" => n / 1e3,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(Usage::new(format!("--interval {s:?}: unknown unit {unit:?}"))),
    };
    if !(secs > 0.0 && secs.is_finite()) {
        return Err(Usage::new(format!("--interval {s:?}: must be positive")));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

fn events(p: &mut lexopt::Parser) -> Parsed {
    let mut once = false;
    let mut interval = std::time::Duration::from_secs(5);
    let mut id = None;
    while let Some(arg) = p.next()? {
        match arg {
            Long("stats") => once = true,
            Long("interval") => interval = parse_duration(&os(p.value()?)?)?,
            Short('h') | Long("help") => return help("events"),
            Value(v) if id.is_none() => id = Some(os(v)?),
            other => return Err(other.unexpected().into()),
        }
    }
    let id = id.ok_or_else(|| Usage::new("events: missing container id"))?;
    command("events", false, 0, None, move |g, _| {
        berth_linux::resources::events(&g.root, &id, once, interval, |line| {
            container::print(format!("{line}\n").as_bytes())
        })?;
        Ok(0)
    })
}

fn update(p: &mut lexopt::Parser) -> Parsed {
    use berth_linux::resources::parse_size;
    let mut file: Option<String> = None;
    let mut id = None;
    let mut v = serde_json::json!({});
    let mut flags = Vec::new();
    // runc: a value of 0 (or "") leaves the limit unchanged.
    let mut set = |flag: &'static str, section: &str, key: &str, val: serde_json::Value| {
        flags.push(flag);
        let unchanged = val == serde_json::json!(0) || val == serde_json::json!("");
        if !unchanged {
            v[section][key] = val;
        }
    };
    let size = |p: &mut lexopt::Parser, flag: &str| -> Result<serde_json::Value, Usage> {
        let s = os(p.value()?)?;
        parse_size(&s).map(Into::into).map_err(|e| Usage::new(format!("{flag} {e}")))
    };
    while let Some(arg) = p.next()? {
        match arg {
            Short('r') | Long("resources") => file = Some(os(p.value()?)?),
            Long("memory") => set("--memory", "memory", "limit", size(p, "--memory")?),
            Long("memory-swap") => set("--memory-swap", "memory", "swap", size(p, "--memory-swap")?),
            Long("memory-reservation") => {
                set("--memory-reservation", "memory", "reservation", size(p, "--memory-reservation")?)
            }
            Long("kernel-memory") => set("--kernel-memory", "memory", "kernel", size(p, "--kernel-memory")?),
            Long("kernel-memory-tcp") => {
                set("--kernel-memory-tcp", "memory", "kernelTCP", size(p, "--kernel-memory-tcp")?)
            }
            // runc's spelling is --cpu-share; --cpu-shares is berth's older one.
            Long("cpu-share") | Long("cpu-shares") => {
                set("--cpu-share", "cpu", "shares", number::<u64>(p, "--cpu-share")?.into())
            }
            Long("cpu-quota") => set("--cpu-quota", "cpu", "quota", number::<i64>(p, "--cpu-quota")?.into()),
            Long("cpu-period") => set("--cpu-period", "cpu", "period", number::<u64>(p, "--cpu-period")?.into()),
            Long("cpu-rt-runtime") => {
                set("--cpu-rt-runtime", "cpu", "realtimeRuntime", number::<i64>(p, "--cpu-rt-runtime")?.into())
            }
            Long("cpu-rt-period") => {
                set("--cpu-rt-period", "cpu", "realtimePeriod", number::<u64>(p, "--cpu-rt-period")?.into())
            }
            Long("cpuset-cpus") => set("--cpuset-cpus", "cpu", "cpus", os(p.value()?)?.into()),
            Long("cpuset-mems") => set("--cpuset-mems", "cpu", "mems", os(p.value()?)?.into()),
            Long("pids-limit") => set("--pids-limit", "pids", "limit", number::<i64>(p, "--pids-limit")?.into()),
            Long("blkio-weight") => {
                set("--blkio-weight", "blockIO", "weight", number::<u16>(p, "--blkio-weight")?.into())
            }
            Long(flag @ ("l3-cache-schema" | "mem-bw-schema")) => {
                let flag = format!("--{flag}");
                let _ = p.value()?;
                return Err(Usage::new(rdt_refusal(&flag)));
            }
            Short('h') | Long("help") => return help("update"),
            Value(x) if id.is_none() => id = Some(os(x)?),
            other => return Err(other.unexpected().into()),
        }
    }
    let id = id.ok_or_else(|| Usage::new("update: missing container id"))?;
    if let (Some(_), Some(flag)) = (&file, flags.first()) {
        // runc ignores the flags then; berth says so.
        return Err(Usage::new(format!(
            "update: {flag} cannot be combined with --resources: the document replaces the flags (put it there)"
        )));
    }
    let input = file.clone().filter(|f| f != "-").map(PathBuf::from);
    command("update", false, 0, input, move |g, input| {
        no_systemd(g)?;
        let json = match (file.as_deref(), input) {
            (Some("-"), _) => {
                let mut s = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut s).context("reading resources from stdin")?;
                serde_json::from_str(&s).context("--resources: invalid JSON")?
            }
            (Some(path), Some(data)) => {
                let data = data.with_context(|| format!("--resources {path}"))?;
                serde_json::from_slice(&data).with_context(|| format!("--resources {path}: invalid JSON"))?
            }
            _ => v,
        };
        let resources: berth_linux::oci::LinuxResources =
            serde_json::from_value(json).context("--resources: not a LinuxResources document")?;
        berth_linux::resources::update(&g.root, &id, &resources)?;
        Ok(0)
    })
}

/// `update --l3-cache-schema`/`--mem-bw-schema`: runc's words when the host has no RDT.
fn rdt_refusal(flag: &str) -> String {
    let what = if flag == "--l3-cache-schema" {
        "Intel RDT/CAT: l3 cache schema is not enabled"
    } else {
        "Intel RDT/MBA: memory bandwidth schema is not enabled"
    };
    if std::path::Path::new("/sys/fs/resctrl/schemata").exists() {
        format!("{flag}: not supported: berth update changes cgroup limits only, not Intel RDT schemata")
    } else {
        format!("{flag}: {what} (resctrl is not mounted at /sys/fs/resctrl)")
    }
}

fn features(p: &mut lexopt::Parser) -> Parsed {
    positionals_or_help!(p, "features", 0, 0, "no arguments");
    command("features", false, 0, None, |_, _| {
        container::print(crate::features::document().as_bytes())?;
        Ok(0)
    })
}

/// `checkpoint` and `restore`: refused, whatever the arguments; `--help` explains and exits 1.
fn unsupported(p: &mut lexopt::Parser, name: &str) -> Parsed {
    let name: &'static str = if name == "checkpoint" { "checkpoint" } else { "restore" };
    // Options are not parsed (the values of runc's would be meaningless); only help counts.
    for a in p.raw_args()? {
        if a == "-h" || a == "--help" {
            return help(name);
        }
    }
    command(name, false, 0, None, move |_, _| {
        bail!(
            "{name} is not supported: berth has no CRIU integration, so it cannot checkpoint or restore containers (see berth {name} --help)"
        )
    })
}
