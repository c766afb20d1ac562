//! `linux.seccomp` → libseccomp → classic BPF, with runc's semantics.
//!
//! The translation mirrors runc's `libcontainer/seccomp/seccomp_linux.go`:
//! * `SCMP_ACT_KILL` is `KILL_THREAD`; `ERRNO` and `TRACE` default their data to `EPERM`.
//! * A rule whose action equals the default action is skipped (libseccomp refuses it).
//! * A syscall name libseccomp does not know is skipped with a debug log: profiles list
//!   syscalls from every architecture and every kernel version.
//! * When one `syscalls[]` entry compares the same argument index more than once, each
//!   condition becomes its own rule (OR); otherwise all conditions form one rule (AND).
//! * `SCMP_CMP_MASKED_EQ` takes the mask from `value` and the datum from `valueTwo`.
//! * More than 32 syscall names turn on libseccomp's binary-tree optimisation.
//! * `SCMP_ACT_NOTIFY` may not be the default action nor be used for `write`, because the
//!   container init still has to hand the listener fd over after installing the filter.
//! * Syscalls newer than anything the profile names answer `ENOSYS` (see [`crate::enosys`]).
//!
//! libseccomp is only used to generate the program (`seccomp_export_bpf`); it never loads it.
//! Loading happens later, in the child, through [`crate::CompiledFilter::install`].

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use berth_sys::seccomp::{
    SockFilter, BPF_MAXINSNS, FILTER_FLAG_LOG, FILTER_FLAG_NEW_LISTENER, FILTER_FLAG_SPEC_ALLOW,
    FILTER_FLAG_WAIT_KILLABLE_RECV,
};
use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag, LinuxSeccompOperator,
};

use crate::{CompiledFilter, SeccompError};

/// Linux syscalls take at most six arguments.
const MAX_ARGS: usize = 6;
/// runc's threshold for libseccomp's binary-tree optimisation (libseccomp <= 2.5.4 misbehaves
/// with the tree and zero rules, so small profiles keep the linear layout).
const OPTIMIZE_THRESHOLD: usize = 32;

const FIELD: &str = "linux.seccomp";

/// Compiles `linux.seccomp` into a BPF program, without installing it.
///
/// Any problem is an error naming the offending field; nothing is silently dropped except
/// syscall names unknown to libseccomp (like runc) and `SECCOMP_FILTER_FLAG_TSYNC` (meaningless
/// for a single-threaded init; runc ignores it too).
pub fn compile(s: &LinuxSeccomp) -> Result<CompiledFilter, SeccompError> {
    let flags = validate(s)?;
    let ctx = build_context(s)?;
    let mut program = export(&ctx)?;
    if crate::enosys::wanted(s) {
        match crate::enosys::stub(&crate::enosys::arch_maxima(s, arch)) {
            Some(mut stub) => {
                stub.append(&mut program);
                program = stub;
            }
            None => log::debug!("{FIELD}: no ENOSYS stub (no known syscall numbers)"),
        }
    }
    CompiledFilter::new(program, flags)
}

/// Checks everything that can be checked without libseccomp and returns the
/// `SECCOMP_FILTER_FLAG_*` bits the filter must be installed with.
pub fn validate(s: &LinuxSeccomp) -> Result<u32, SeccompError> {
    let default_action = s.default_action();
    if default_action == LinuxSeccompAction::ScmpActNotify {
        return Err(SeccompError::invalid(
            format!("{FIELD}.defaultAction"),
            "SCMP_ACT_NOTIFY cannot be used as the default action (the init could not hand the \
             listener fd over)",
        ));
    }
    action(default_action, s.default_errno_ret(), &format!("{FIELD}.defaultErrnoRet"))?;

    if let (None, Some(_)) = (s.listener_path(), s.listener_metadata()) {
        return Err(SeccompError::invalid(
            format!("{FIELD}.listenerMetadata"),
            "must not be set when listenerPath is not set",
        ));
    }

    let mut notify_at = None;
    for (i, call) in s.syscalls().iter().flatten().enumerate() {
        let field = format!("{FIELD}.syscalls[{i}]");
        if call.names().is_empty() {
            return Err(SeccompError::invalid(format!("{field}.names"), "must contain at least one syscall name"));
        }
        let is_notify = call.action() == LinuxSeccompAction::ScmpActNotify;
        for (j, name) in call.names().iter().enumerate() {
            if name.is_empty() {
                return Err(SeccompError::invalid(format!("{field}.names[{j}]"), "empty syscall name"));
            }
            if is_notify && name == "write" {
                return Err(SeccompError::invalid(
                    format!("{field}.names[{j}]"),
                    "SCMP_ACT_NOTIFY cannot be used for the write syscall (the init needs write \
                     to hand the listener fd over)",
                ));
            }
        }
        action(call.action(), call.errno_ret(), &format!("{field}.errnoRet"))?;
        for (k, arg) in call.args().iter().flatten().enumerate() {
            if arg.index() >= MAX_ARGS {
                return Err(SeccompError::invalid(
                    format!("{field}.args[{k}].index"),
                    format!("{} is out of range: syscalls have arguments 0 to 5", arg.index()),
                ));
            }
        }
        if is_notify && notify_at.is_none() {
            notify_at = Some(i);
        }
    }

    let mut flags = 0;
    let mut wait_killable = false;
    for flag in s.flags().iter().flatten() {
        match flag {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => flags |= FILTER_FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => flags |= FILTER_FLAG_SPEC_ALLOW,
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => wait_killable = true,
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => {
                log::debug!("{FIELD}.flags: SECCOMP_FILTER_FLAG_TSYNC ignored (single-threaded init)")
            }
        }
    }
    if let Some(i) = notify_at {
        if s.listener_path().is_none() {
            return Err(SeccompError::invalid(
                format!("{FIELD}.listenerPath"),
                format!(
                    "must be set because {FIELD}.syscalls[{i}] uses SCMP_ACT_NOTIFY (nobody \
                     would answer the notifications)"
                ),
            ));
        }
        flags |= FILTER_FLAG_NEW_LISTENER;
        if wait_killable {
            flags |= FILTER_FLAG_WAIT_KILLABLE_RECV;
        }
    } else if wait_killable {
        // The kernel refuses WAIT_KILLABLE_RECV without NEW_LISTENER, and the flag only changes
        // how notifications wait, so without NOTIFY rules it has nothing to act on.
        log::debug!("{FIELD}.flags: SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV ignored: no SCMP_ACT_NOTIFY rule");
    }
    Ok(flags)
}

/// Translates an OCI action plus its optional errno. `errno_field` names the errno field for
/// error messages (the action fields cannot be wrong once deserialized).
fn action(a: LinuxSeccompAction, errno_ret: Option<u32>, errno_field: &str) -> Result<ScmpAction, SeccompError> {
    let data = |default: u16| -> Result<u16, SeccompError> {
        match errno_ret {
            None => Ok(default),
            Some(v) => {
                u16::try_from(v).map_err(|_| SeccompError::invalid(errno_field, format!("{v} does not fit in 16 bits")))
            }
        }
    };
    let no_errno = |name: &str| -> Result<(), SeccompError> {
        match errno_ret {
            None => Ok(()),
            Some(_) => Err(SeccompError::invalid(
                errno_field,
                format!("{name} does not take an errno (only SCMP_ACT_ERRNO and SCMP_ACT_TRACE do)"),
            )),
        }
    };
    let eperm = libc::EPERM as u16;
    Ok(match a {
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(i32::from(data(eperm)?)),
        LinuxSeccompAction::ScmpActTrace => ScmpAction::Trace(data(eperm)?),
        LinuxSeccompAction::ScmpActAllow => {
            no_errno("SCMP_ACT_ALLOW")?;
            ScmpAction::Allow
        }
        LinuxSeccompAction::ScmpActKill => {
            no_errno("SCMP_ACT_KILL")?;
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillThread => {
            no_errno("SCMP_ACT_KILL_THREAD")?;
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => {
            no_errno("SCMP_ACT_KILL_PROCESS")?;
            ScmpAction::KillProcess
        }
        LinuxSeccompAction::ScmpActTrap => {
            no_errno("SCMP_ACT_TRAP")?;
            ScmpAction::Trap
        }
        LinuxSeccompAction::ScmpActLog => {
            no_errno("SCMP_ACT_LOG")?;
            ScmpAction::Log
        }
        LinuxSeccompAction::ScmpActNotify => {
            no_errno("SCMP_ACT_NOTIFY")?;
            ScmpAction::Notify
        }
    })
}

fn arch(a: Arch) -> ScmpArch {
    match a {
        Arch::ScmpArchNative => ScmpArch::Native,
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchArm => ScmpArch::Arm,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        Arch::ScmpArchMips => ScmpArch::Mips,
        Arch::ScmpArchMips64 => ScmpArch::Mips64,
        Arch::ScmpArchMips64n32 => ScmpArch::Mips64N32,
        Arch::ScmpArchMipsel => ScmpArch::Mipsel,
        Arch::ScmpArchMipsel64 => ScmpArch::Mipsel64,
        Arch::ScmpArchMipsel64n32 => ScmpArch::Mipsel64N32,
        Arch::ScmpArchPpc => ScmpArch::Ppc,
        Arch::ScmpArchPpc64 => ScmpArch::Ppc64,
        Arch::ScmpArchPpc64le => ScmpArch::Ppc64Le,
        Arch::ScmpArchS390 => ScmpArch::S390,
        Arch::ScmpArchS390x => ScmpArch::S390X,
        Arch::ScmpArchParisc => ScmpArch::Parisc,
        Arch::ScmpArchParisc64 => ScmpArch::Parisc64,
        Arch::ScmpArchRiscv64 => ScmpArch::Riscv64,
        Arch::ScmpArchLoongarch64 => ScmpArch::Loongarch64,
        Arch::ScmpArchM68k => ScmpArch::M68k,
        Arch::ScmpArchSh => ScmpArch::Sh,
        Arch::ScmpArchSheb => ScmpArch::Sheb,
    }
}

fn condition(arg: &LinuxSeccompArg) -> ScmpArgCompare {
    let op = match arg.op() {
        LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
        LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
        LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
        LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
        LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
        LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
        // runc/libseccomp-golang: value is the mask, valueTwo the datum.
        LinuxSeccompOperator::ScmpCmpMaskedEq => {
            return ScmpArgCompare::new(
                arg_index(arg),
                ScmpCompareOp::MaskedEqual(arg.value()),
                arg.value_two().unwrap_or(0),
            );
        }
    };
    ScmpArgCompare::new(arg_index(arg), op, arg.value())
}

fn arg_index(arg: &LinuxSeccompArg) -> u32 {
    // validate() bounds the index by MAX_ARGS.
    u32::try_from(arg.index()).unwrap_or(u32::MAX)
}

fn build_context(s: &LinuxSeccomp) -> Result<ScmpFilterContext, SeccompError> {
    let default_action = action(s.default_action(), s.default_errno_ret(), &format!("{FIELD}.defaultErrnoRet"))?;
    let mut ctx = ScmpFilterContext::new(default_action).map_err(|source| SeccompError::Libseccomp {
        field: format!("{FIELD}.defaultAction"),
        what: format!("{:?}", s.default_action()),
        source,
    })?;

    for (i, a) in s.architectures().iter().flatten().enumerate() {
        ctx.add_arch(arch(*a)).map_err(|source| SeccompError::Libseccomp {
            field: format!("{FIELD}.architectures[{i}]"),
            what: format!("architecture {a}"),
            source,
        })?;
    }

    let total_names: usize = s.syscalls().iter().flatten().map(|c| c.names().len()).sum();
    if total_names > OPTIMIZE_THRESHOLD {
        if let Err(e) = ctx.set_ctl_optimize(2) {
            log::debug!("seccomp binary tree optimisation unavailable: {e}");
        }
    }

    for (i, call) in s.syscalls().iter().flatten().enumerate() {
        let field = format!("{FIELD}.syscalls[{i}]");
        let act = action(call.action(), call.errno_ret(), &format!("{field}.errnoRet"))?;
        if act == default_action {
            continue;
        }
        let args = call.args().as_deref().unwrap_or_default();
        let conditions: Vec<ScmpArgCompare> = args.iter().map(condition).collect();
        let mut seen = [0u8; MAX_ARGS];
        let mut repeated = false;
        for a in args {
            if let Some(n) = seen.get_mut(a.index()) {
                *n += 1;
                repeated |= *n > 1;
            }
        }
        for (j, name) in call.names().iter().enumerate() {
            let Ok(nr) = ScmpSyscall::from_name(name) else {
                log::debug!("{field}.names[{j}]: unknown seccomp syscall {name:?} ignored");
                continue;
            };
            let add_err = |source| SeccompError::Libseccomp {
                field: format!("{field}.names[{j}]"),
                what: format!("the rule for {name:?}"),
                source,
            };
            if repeated {
                for c in &conditions {
                    ctx.add_rule_conditional(act, nr, std::slice::from_ref(c)).map_err(add_err)?;
                }
            } else {
                ctx.add_rule_conditional(act, nr, &conditions).map_err(add_err)?;
            }
        }
    }
    Ok(ctx)
}

/// libseccomp 2.5 can only export to an fd; a memfd avoids both a temp file and the pipe
/// deadlock a program larger than the pipe buffer would cause.
fn export(ctx: &ScmpFilterContext) -> Result<Vec<SockFilter>, SeccompError> {
    let fd = rustix::fs::memfd_create("berth-seccomp-bpf", rustix::fs::MemfdFlags::CLOEXEC)
        .map_err(|e| SeccompError::Export(e.into()))?;
    ctx.export_bpf(&fd).map_err(|e| SeccompError::Export(std::io::Error::other(e)))?;
    let mut file = File::from(fd);
    file.seek(SeekFrom::Start(0)).map_err(SeccompError::Export)?;
    let mut raw = Vec::new();
    // One instruction past the limit is enough for CompiledFilter::new to reject it.
    file.take(((BPF_MAXINSNS + 1) * 8) as u64).read_to_end(&mut raw).map_err(SeccompError::Export)?;
    if raw.len() % 8 != 0 {
        return Err(SeccompError::Format("libseccomp exported a partial instruction"));
    }
    // libseccomp writes `struct sock_filter` in host byte order.
    Ok(raw
        .chunks_exact(8)
        .map(|c| SockFilter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect())
}
