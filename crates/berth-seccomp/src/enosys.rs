//! The `-ENOSYS` stub runc prepends to libseccomp's program (runc `patchbpf`).
//!
//! A profile can only name syscalls its author (and the linked libseccomp) knew about. A
//! syscall added to the kernel later falls through to the default action, typically
//! `ERRNO(EPERM)`; libc then does not fall back to the older syscall, because only `ENOSYS`
//! means "not implemented" (glibc's `fchmodat2` use is the classic case, and libseccomp 2.5.4
//! does not know `fchmodat2` at all). So, per architecture in the filter, every syscall number
//! above the largest one the profile mentions answers `ENOSYS` before libseccomp's program
//! runs. Syscalls at or below that number keep the default action.
//!
//! Like runc, the stub is left out when the default action is permissive (ALLOW, LOG, TRACE:
//! new syscalls already pass) or already `ERRNO(ENOSYS)`.

use berth_sys::seccomp::SockFilter;
use libseccomp::{ScmpArch, ScmpSyscall};
use oci_spec::runtime::{Arch, LinuxSeccomp, LinuxSeccompAction};

// Classic BPF opcodes (linux/filter.h).
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JMP_JEQ_K: u16 = 0x15;
const BPF_JMP_JGT_K: u16 = 0x25;
const BPF_JMP_JSET_K: u16 = 0x45;
const BPF_JMP_JA: u16 = 0x05;
const BPF_RET_K: u16 = 0x06;

/// Offsets into `struct seccomp_data`.
const OFFSET_NR: u32 = 0;
const OFFSET_ARCH: u32 = 4;

const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
/// x32 shares AUDIT_ARCH_X86_64 and marks its syscall numbers with this bit.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// What one architecture contributes: its `seccomp_data.arch` value and the largest syscall
/// number the profile names for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ArchMax {
    pub audit: u32,
    pub max_nr: u32,
    pub x32: bool,
}

fn native() -> Option<Arch> {
    if cfg!(target_arch = "x86_64") {
        Some(Arch::ScmpArchX86_64)
    } else if cfg!(target_arch = "x86") {
        Some(Arch::ScmpArchX86)
    } else if cfg!(target_arch = "aarch64") {
        Some(Arch::ScmpArchAarch64)
    } else if cfg!(target_arch = "arm") {
        Some(Arch::ScmpArchArm)
    } else if cfg!(target_arch = "riscv64") {
        Some(Arch::ScmpArchRiscv64)
    } else if cfg!(target_arch = "s390x") {
        Some(Arch::ScmpArchS390x)
    } else {
        None
    }
}

/// Whether the stub applies to this profile at all.
pub(crate) fn wanted(s: &LinuxSeccomp) -> bool {
    match s.default_action() {
        LinuxSeccompAction::ScmpActAllow | LinuxSeccompAction::ScmpActLog | LinuxSeccompAction::ScmpActTrace => false,
        LinuxSeccompAction::ScmpActErrno => s.default_errno_ret() != Some(libc::ENOSYS as u32),
        _ => true,
    }
}

/// The largest syscall number per architecture in the filter (native plus `architectures`).
pub(crate) fn arch_maxima(s: &LinuxSeccomp, scmp: fn(Arch) -> ScmpArch) -> Vec<ArchMax> {
    let mut arches: Vec<Arch> = native().into_iter().collect();
    for a in s.architectures().iter().flatten() {
        let a = if *a == Arch::ScmpArchNative {
            match native() {
                Some(n) => n,
                None => continue,
            }
        } else {
            *a
        };
        if !arches.contains(&a) {
            arches.push(a);
        }
    }
    let names: Vec<&str> = s.syscalls().iter().flatten().flat_map(|c| c.names().iter().map(String::as_str)).collect();
    let mut out = Vec::new();
    for a in arches {
        let x32 = a == Arch::ScmpArchX32;
        // The oci-spec discriminants are libseccomp's tokens, which equal the kernel's
        // AUDIT_ARCH_* values except for x32.
        let audit = if x32 { AUDIT_ARCH_X86_64 } else { a as u32 };
        let max = names
            .iter()
            .filter_map(|n| ScmpSyscall::from_name_by_arch(n, scmp(a)).ok())
            .map(ScmpSyscall::as_raw_syscall)
            .filter(|nr| *nr >= 0)
            .map(|nr| nr as u32 & !X32_SYSCALL_BIT)
            .max();
        if let Some(max_nr) = max {
            out.push(ArchMax { audit, max_nr, x32 });
        }
    }
    out
}

fn stmt(code: u16, k: u32) -> SockFilter {
    SockFilter { code, jt: 0, jf: 0, k }
}

/// Symbolic jump targets, resolved once the stub's length is known.
#[derive(Clone, Copy)]
enum Target {
    Next,
    Skip(usize),
    Enosys,
    Program,
}

struct Insn {
    code: u16,
    k: u32,
    jt: Target,
    jf: Target,
}

/// Builds the stub. Returns `None` when there is nothing to guard or a jump would not fit in
/// classic BPF's 8-bit offsets (the stub is an errno nicety; leaving it out never weakens
/// the filter).
pub(crate) fn stub(maxima: &[ArchMax]) -> Option<Vec<SockFilter>> {
    if maxima.is_empty() {
        return None;
    }
    let x86_64 = maxima.iter().find(|m| m.audit == AUDIT_ARCH_X86_64 && !m.x32);
    let x32 = maxima.iter().find(|m| m.x32);
    let mut insns: Vec<Insn> = vec![Insn { code: BPF_LD_W_ABS, k: OFFSET_ARCH, jt: Target::Next, jf: Target::Next }];
    let mut sections: Vec<(u32, Vec<Insn>)> = Vec::new();
    let load_nr = || Insn { code: BPF_LD_W_ABS, k: OFFSET_NR, jt: Target::Next, jf: Target::Next };
    let gt = |max: u32| Insn { code: BPF_JMP_JGT_K, k: max, jt: Target::Enosys, jf: Target::Program };
    for m in maxima {
        if m.audit == AUDIT_ARCH_X86_64 {
            if m.x32 && x86_64.is_some() {
                // Handled inside the x86_64 section.
                continue;
            }
            // x86_64 and x32 arrive with the same audit value; tell them apart by the bit.
            let mut body = vec![load_nr()];
            let (max64, max32) = (x86_64.map(|m| m.max_nr), x32.map(|m| m.max_nr));
            body.push(Insn { code: BPF_JMP_JSET_K, k: X32_SYSCALL_BIT, jt: Target::Skip(1), jf: Target::Next });
            // 64-bit syscall; without x86_64 in the filter let libseccomp decide.
            body.push(match max64 {
                Some(max) => gt(max),
                None => Insn { code: BPF_JMP_JA, k: 0, jt: Target::Program, jf: Target::Program },
            });
            body.push(match max32 {
                Some(max) => gt(max | X32_SYSCALL_BIT),
                None => Insn { code: BPF_JMP_JA, k: 0, jt: Target::Program, jf: Target::Program },
            });
            sections.push((AUDIT_ARCH_X86_64, body));
        } else {
            sections.push((m.audit, vec![load_nr(), gt(m.max_nr)]));
        }
    }
    for (audit, body) in sections {
        insns.push(Insn { code: BPF_JMP_JEQ_K, k: audit, jt: Target::Next, jf: Target::Skip(body.len()) });
        insns.extend(body);
    }
    // An architecture the stub does not know: libseccomp's program decides.
    insns.push(Insn { code: BPF_JMP_JA, k: 0, jt: Target::Program, jf: Target::Program });
    let enosys_at = insns.len();
    let program_at = enosys_at + 1;

    let mut out = Vec::with_capacity(program_at);
    for (i, insn) in insns.iter().enumerate() {
        let resolve = |t: Target| -> Option<usize> {
            let target = match t {
                Target::Next => i + 1,
                Target::Skip(n) => i + 1 + n,
                Target::Enosys => enosys_at,
                Target::Program => program_at,
            };
            target.checked_sub(i + 1)
        };
        if insn.code == BPF_JMP_JA {
            let k = u32::try_from(resolve(insn.jt)?).ok()?;
            out.push(stmt(BPF_JMP_JA, k));
        } else if insn.code == BPF_LD_W_ABS {
            out.push(stmt(BPF_LD_W_ABS, insn.k));
        } else {
            out.push(SockFilter {
                code: insn.code,
                jt: u8::try_from(resolve(insn.jt)?).ok()?,
                jf: u8::try_from(resolve(insn.jf)?).ok()?,
                k: insn.k,
            });
        }
    }
    out.push(stmt(BPF_RET_K, libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32));
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny classic-BPF interpreter for the subset the stub uses. Returns `Some(ret)` when the
    /// stub decides, `None` when it falls through to the program.
    fn run(stub: &[SockFilter], arch: u32, nr: u32) -> Option<u32> {
        let mut pc = 0usize;
        let mut acc = 0u32;
        loop {
            if pc == stub.len() {
                return None;
            }
            let i = stub[pc];
            pc += 1;
            match i.code {
                BPF_LD_W_ABS => acc = if i.k == OFFSET_ARCH { arch } else { nr },
                BPF_JMP_JA => pc += i.k as usize,
                BPF_RET_K => return Some(i.k),
                c => {
                    let taken = match c {
                        BPF_JMP_JEQ_K => acc == i.k,
                        BPF_JMP_JGT_K => acc > i.k,
                        BPF_JMP_JSET_K => acc & i.k != 0,
                        _ => panic!("unexpected opcode {c:#x}"),
                    };
                    pc += usize::from(if taken { i.jt } else { i.jf });
                }
            }
            assert!(pc <= stub.len(), "jump past the stub");
        }
    }

    const ENOSYS: Option<u32> = Some(libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32);
    const X86: u32 = 0x4000_0003;
    const AARCH64: u32 = 0xc000_00b7;

    #[test]
    fn newer_syscalls_get_enosys_per_architecture() {
        let maxima = [
            ArchMax { audit: AUDIT_ARCH_X86_64, max_nr: 450, x32: false },
            ArchMax { audit: X86, max_nr: 440, x32: false },
            ArchMax { audit: AUDIT_ARCH_X86_64, max_nr: 430, x32: true },
        ];
        let s = stub(&maxima).unwrap();
        assert_eq!(run(&s, AUDIT_ARCH_X86_64, 0), None);
        assert_eq!(run(&s, AUDIT_ARCH_X86_64, 450), None);
        assert_eq!(run(&s, AUDIT_ARCH_X86_64, 451), ENOSYS);
        assert_eq!(run(&s, X86, 440), None);
        assert_eq!(run(&s, X86, 441), ENOSYS);
        assert_eq!(run(&s, AUDIT_ARCH_X86_64, X32_SYSCALL_BIT | 430), None);
        assert_eq!(run(&s, AUDIT_ARCH_X86_64, X32_SYSCALL_BIT | 431), ENOSYS);
        // Unknown architectures are left to libseccomp's bad-arch action.
        assert_eq!(run(&s, AARCH64, 9999), None);
    }

    #[test]
    fn x32_numbers_fall_through_when_x32_is_not_in_the_filter() {
        let s = stub(&[ArchMax { audit: AUDIT_ARCH_X86_64, max_nr: 450, x32: false }]).unwrap();
        assert_eq!(run(&s, AUDIT_ARCH_X86_64, X32_SYSCALL_BIT | 9999), None);
        assert_eq!(run(&s, AUDIT_ARCH_X86_64, 9999), ENOSYS);
        assert!(stub(&[]).is_none());
    }
}
