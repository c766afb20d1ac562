//! Thin wrappers over `bpf(2)` for the few commands a container runtime needs:
//! loading a program, attaching it to / detaching it from a cgroup, listing the
//! programs attached to a cgroup and turning a program id back into an fd.
//!
//! Neither `rustix` nor `libc` wraps these commands, and pulling in a BPF
//! library (libbpf, aya) would cost start time and a C toolchain for a program
//! of a few dozen instructions. Callers assemble instructions with [`Insn`].
//!
//! Every fd the kernel hands out for a BPF object is created with `O_CLOEXEC`
//! (`bpf_prog_new_fd` uses `anon_inode_getfd(..., O_RDWR | O_CLOEXEC)`), so the
//! returned [`OwnedFd`]s never leak across `execve`.

use std::ffi::CStr;
use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// `BPF_PROG_TYPE_CGROUP_DEVICE` from `enum bpf_prog_type`.
pub const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
/// `BPF_CGROUP_DEVICE` from `enum bpf_attach_type`.
pub const BPF_CGROUP_DEVICE: u32 = 6;
/// Let several programs be attached to one cgroup; all of them must allow.
pub const BPF_F_ALLOW_MULTI: u32 = 1 << 1;
/// Atomically replace `replace_bpf_fd` with the new program (Linux 5.6+).
pub const BPF_F_REPLACE: u32 = 1 << 2;

/// `access_type` low half: block device (`BPF_DEVCG_DEV_BLOCK`).
pub const BPF_DEVCG_DEV_BLOCK: i32 = 1;
/// `access_type` low half: character device (`BPF_DEVCG_DEV_CHAR`).
pub const BPF_DEVCG_DEV_CHAR: i32 = 2;
/// `access_type` high half: mknod (`BPF_DEVCG_ACC_MKNOD`).
pub const BPF_DEVCG_ACC_MKNOD: i32 = 1;
/// `access_type` high half: read (`BPF_DEVCG_ACC_READ`).
pub const BPF_DEVCG_ACC_READ: i32 = 2;
/// `access_type` high half: write (`BPF_DEVCG_ACC_WRITE`).
pub const BPF_DEVCG_ACC_WRITE: i32 = 4;

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_DETACH: libc::c_long = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_PROG_QUERY: libc::c_long = 16;

/// Instruction classes, sizes, modes and operations used to build opcodes
/// (`include/uapi/linux/bpf_common.h` and `bpf.h`).
pub mod op {
    pub const LDX: u8 = 0x01;
    pub const ALU: u8 = 0x04;
    pub const JMP: u8 = 0x05;
    pub const ALU64: u8 = 0x07;
    pub const W: u8 = 0x00;
    pub const MEM: u8 = 0x60;
    pub const K: u8 = 0x00;
    pub const X: u8 = 0x08;
    pub const AND: u8 = 0x50;
    pub const RSH: u8 = 0x70;
    pub const MOV: u8 = 0xb0;
    pub const JEQ: u8 = 0x10;
    pub const JNE: u8 = 0x50;
    pub const EXIT: u8 = 0x90;
}

/// One `struct bpf_insn`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    regs: u8,
    pub off: i16,
    pub imm: i32,
}

impl Insn {
    /// Builds an instruction; `dst`/`src` are register numbers 0..=10.
    pub const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Self {
        // The kernel declares `__u8 dst_reg:4, src_reg:4`; C bitfields are
        // allocated from the low bits on little-endian targets and from the
        // high bits on big-endian ones.
        #[cfg(target_endian = "little")]
        let regs = (src << 4) | (dst & 0x0f);
        #[cfg(target_endian = "big")]
        let regs = (dst << 4) | (src & 0x0f);
        Insn { code, regs, off, imm }
    }

    pub const fn dst(&self) -> u8 {
        #[cfg(target_endian = "little")]
        return self.regs & 0x0f;
        #[cfg(target_endian = "big")]
        return self.regs >> 4;
    }

    pub const fn src(&self) -> u8 {
        #[cfg(target_endian = "little")]
        return self.regs >> 4;
        #[cfg(target_endian = "big")]
        return self.regs & 0x0f;
    }
}

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
#[derive(Default)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    // Explicit padding: the kernel rejects non-zero bytes past the fields it
    // knows, and an implicit hole would be uninitialised.
    _pad: u32,
}

#[repr(C)]
#[derive(Default)]
struct GetIdAttr {
    id: u32,
    next_id: u32,
    open_flags: u32,
}

/// Issues `bpf(cmd, attr, sizeof(attr))`.
///
/// # Safety
/// `attr` must be the attribute struct the kernel expects for `cmd`, and every
/// pointer stored in it must be valid for the access the command performs.
unsafe fn sys_bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: the caller guarantees `attr` matches `cmd`; the size passed is the
    // size of the struct behind the reference, which lives across the call.
    let ret = unsafe {
        libc::syscall(libc::SYS_bpf, cmd, attr as *mut T as *mut libc::c_void, size_of::<T>() as libc::c_uint)
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn owned_fd(ret: libc::c_long) -> io::Result<OwnedFd> {
    let fd = libc::c_int::try_from(ret).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: the kernel just returned this fd to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `BPF_PROG_LOAD`. `name` is truncated to 15 bytes (the kernel limit) and must
/// only contain `[A-Za-z0-9_.]`. If `log` is given, the verifier writes its
/// log there (level 1), which is only worth doing after a failed load.
pub fn prog_load(
    prog_type: u32,
    insns: &[Insn],
    license: &CStr,
    name: &str,
    log: Option<&mut [u8]>,
) -> io::Result<OwnedFd> {
    let insn_cnt = u32::try_from(insns.len()).map_err(|_| io::Error::from_raw_os_error(libc::E2BIG))?;
    let mut attr = ProgLoadAttr {
        prog_type,
        insn_cnt,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        ..Default::default()
    };
    for (dst, src) in attr.prog_name.iter_mut().take(15).zip(name.bytes()) {
        *dst = src;
    }
    if let Some(buf) = log {
        if let Some(first) = buf.first_mut() {
            *first = 0;
        }
        attr.log_level = 1;
        attr.log_size = u32::try_from(buf.len()).unwrap_or(u32::MAX);
        attr.log_buf = buf.as_mut_ptr() as u64;
    }
    // SAFETY: `attr` is a PROG_LOAD attribute; `insns`, `license`, and the log
    // buffer (if any) are borrowed for the duration of the call and their
    // lengths are the ones given to the kernel.
    let ret = unsafe { sys_bpf(BPF_PROG_LOAD, &mut attr)? };
    owned_fd(ret)
}

/// `BPF_PROG_ATTACH` of `prog` to the cgroup directory `target`.
pub fn prog_attach(
    target: BorrowedFd<'_>,
    prog: BorrowedFd<'_>,
    attach_type: u32,
    flags: u32,
    replace: Option<BorrowedFd<'_>>,
) -> io::Result<()> {
    let mut attr = AttachAttr {
        target_fd: target.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type,
        attach_flags: flags,
        replace_bpf_fd: replace.map_or(0, |fd| fd.as_raw_fd() as u32),
    };
    // SAFETY: `attr` is a PROG_ATTACH attribute holding only integers.
    unsafe { sys_bpf(BPF_PROG_ATTACH, &mut attr)? };
    Ok(())
}

/// `BPF_PROG_DETACH` of `prog` from the cgroup directory `target`.
pub fn prog_detach(target: BorrowedFd<'_>, prog: BorrowedFd<'_>, attach_type: u32) -> io::Result<()> {
    let mut attr = AttachAttr {
        target_fd: target.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type,
        ..Default::default()
    };
    // SAFETY: `attr` is a PROG_DETACH attribute holding only integers.
    unsafe { sys_bpf(BPF_PROG_DETACH, &mut attr)? };
    Ok(())
}

/// `BPF_PROG_QUERY`: fills `ids` with the ids of the programs attached to
/// `target` directly (not inherited) and returns how many are attached. If the
/// return value exceeds `ids.len()`, the kernel reported `ENOSPC` and the
/// caller should retry with a larger buffer.
pub fn prog_query(target: BorrowedFd<'_>, attach_type: u32, ids: &mut [u32]) -> io::Result<usize> {
    let mut attr = QueryAttr {
        target_fd: target.as_raw_fd() as u32,
        attach_type,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: u32::try_from(ids.len()).unwrap_or(u32::MAX),
        ..Default::default()
    };
    // SAFETY: `attr` is a PROG_QUERY attribute; `prog_ids` points to `ids`,
    // which is writable for `prog_cnt` entries for the duration of the call.
    match unsafe { sys_bpf(BPF_PROG_QUERY, &mut attr) } {
        Ok(_) => Ok(attr.prog_cnt as usize),
        Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => Ok((attr.prog_cnt as usize).max(ids.len() + 1)),
        Err(e) => Err(e),
    }
}

/// `BPF_PROG_GET_FD_BY_ID`.
pub fn prog_get_fd_by_id(id: u32) -> io::Result<OwnedFd> {
    let mut attr = GetIdAttr { id, ..Default::default() };
    // SAFETY: `attr` is a GET_FD_BY_ID attribute holding only integers.
    let ret = unsafe { sys_bpf(BPF_PROG_GET_FD_BY_ID, &mut attr)? };
    owned_fd(ret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insn_layout_matches_kernel() {
        assert_eq!(size_of::<Insn>(), 8);
        let i = Insn::new(op::LDX | op::MEM | op::W, 2, 1, 4, 0);
        assert_eq!((i.dst(), i.src()), (2, 1));
        #[cfg(target_endian = "little")]
        {
            // ldxw r2, [r1+4] as emitted by clang: 61 12 04 00 00 00 00 00
            let bytes: [u8; 8] = insn_bytes(&i);
            assert_eq!(bytes, [0x61, 0x12, 0x04, 0x00, 0, 0, 0, 0]);
        }
    }

    #[cfg(target_endian = "little")]
    fn insn_bytes(i: &Insn) -> [u8; 8] {
        let off = i.off.to_le_bytes();
        let imm = i.imm.to_le_bytes();
        [i.code, i.regs, off[0], off[1], imm[0], imm[1], imm[2], imm[3]]
    }

    #[test]
    fn attr_sizes_match_kernel_layout() {
        assert_eq!(size_of::<ProgLoadAttr>(), 72);
        assert_eq!(size_of::<AttachAttr>(), 20);
        assert_eq!(size_of::<QueryAttr>(), 32);
        assert_eq!(size_of::<GetIdAttr>(), 12);
    }

    /// Loads `r0 = 1; exit` as a device program: proves the attribute layout
    /// is accepted by the running kernel (needs root / CAP_BPF).
    #[test]
    fn loads_trivial_device_program() {
        let insns = [Insn::new(op::ALU | op::MOV | op::K, 0, 0, 0, 1), Insn::new(op::JMP | op::EXIT, 0, 0, 0, 0)];
        let fd = prog_load(BPF_PROG_TYPE_CGROUP_DEVICE, &insns, c"Apache", "berth_test", None)
            .expect("BPF_PROG_LOAD of a trivial device program");
        // A garbage program must fail, and the verifier log must say why.
        let bad = [Insn::new(op::JMP | op::EXIT, 0, 0, 0, 0)];
        let mut log = vec![0u8; 4096];
        let err = prog_load(BPF_PROG_TYPE_CGROUP_DEVICE, &bad, c"Apache", "bad", Some(&mut log))
            .expect_err("exit with uninitialised r0 must be rejected");
        assert_eq!(err.raw_os_error(), Some(libc::EACCES));
        let text = String::from_utf8_lossy(&log);
        assert!(text.contains("R0"), "verifier log: {text}");
        drop(fd);
    }
}
