//! Scheduling, I/O priority and NUMA memory policy of the calling thread: `sched_setattr`,
//! `sched_getattr`, `ioprio_set`, `ioprio_get`, `set_mempolicy` and `get_mempolicy`, which
//! neither libc's safe surface nor rustix offers. All of them act on the calling thread only
//! (berth's container processes are single-threaded when they call them), and all of them
//! are inherited across `fork` and kept across `execve`.

use std::io;

use crate::cvt;

/// `struct sched_attr` as of `SCHED_ATTR_SIZE_VER1` (Linux 5.3): the utilization clamps
/// included, so that the `SCHED_FLAG_UTIL_CLAMP_*` flags are accepted with their values.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SchedAttr {
    /// Size of the structure (set by [`sched_setattr`]).
    pub size: u32,
    /// `SCHED_*` policy.
    pub policy: u32,
    /// `SCHED_FLAG_*` flags.
    pub flags: u64,
    /// Nice value (SCHED_OTHER, SCHED_BATCH).
    pub nice: i32,
    /// Static priority (SCHED_FIFO, SCHED_RR).
    pub priority: u32,
    /// SCHED_DEADLINE runtime, ns.
    pub runtime: u64,
    /// SCHED_DEADLINE relative deadline, ns.
    pub deadline: u64,
    /// SCHED_DEADLINE period, ns.
    pub period: u64,
    /// Utilization clamp minimum (with `SCHED_FLAG_UTIL_CLAMP_MIN`).
    pub util_min: u32,
    /// Utilization clamp maximum (with `SCHED_FLAG_UTIL_CLAMP_MAX`).
    pub util_max: u32,
}

/// `SCHED_ATTR_SIZE_VER1`.
const SCHED_ATTR_SIZE: u32 = std::mem::size_of::<SchedAttr>() as u32;

/// `sched_setattr(0, attr, 0)`: sets the calling thread's policy and its parameters.
pub fn sched_setattr(attr: &SchedAttr) -> io::Result<()> {
    let mut a = *attr;
    a.size = SCHED_ATTR_SIZE;
    // SAFETY: `a` is a live, properly sized `struct sched_attr` whose `size` field says so;
    // the kernel only reads it.
    cvt(unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &a as *const SchedAttr, 0) }).map(drop)
}

/// `sched_getattr(0, ...)`: the calling thread's policy and parameters.
pub fn sched_getattr() -> io::Result<SchedAttr> {
    let mut a = SchedAttr::default();
    // SAFETY: the kernel writes at most `SCHED_ATTR_SIZE` bytes into `a`, which is that big.
    cvt(unsafe { libc::syscall(libc::SYS_sched_getattr, 0, &mut a as *mut SchedAttr, SCHED_ATTR_SIZE, 0) })?;
    Ok(a)
}

/// `IOPRIO_WHO_PROCESS`.
pub const IOPRIO_WHO_PROCESS: i32 = 1;

/// `IOPRIO_PRIO_VALUE(class, data)`.
pub fn ioprio_value(class: u32, data: u32) -> u32 {
    (class << 13) | (data & 0x1fff)
}

/// `ioprio_set(IOPRIO_WHO_PROCESS, 0, prio)`: the calling thread's I/O priority.
pub fn ioprio_set(prio: u32) -> io::Result<()> {
    // SAFETY: plain integers; no memory is passed.
    cvt(unsafe { libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, prio) }).map(drop)
}

/// `ioprio_get(IOPRIO_WHO_PROCESS, 0)`: the calling thread's I/O priority value.
pub fn ioprio_get() -> io::Result<u32> {
    // SAFETY: plain integers; no memory is passed.
    let v = cvt(unsafe { libc::syscall(libc::SYS_ioprio_get, IOPRIO_WHO_PROCESS, 0) })?;
    u32::try_from(v).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// `set_mempolicy(mode, nodemask, maxnode)`: `mode` is the `MPOL_*` mode with its
/// `MPOL_F_*` flags; `nodes` is the node mask (bit N of word N/64 is node N), empty for
/// "no nodes".
pub fn set_mempolicy(mode: i32, nodes: &[u64]) -> io::Result<()> {
    let (ptr, maxnode) = if nodes.is_empty() {
        (std::ptr::null(), 0usize)
    } else {
        // maxnode counts bits; the kernel reads ceil(maxnode/64) words. One more than the
        // mask holds, because the kernel takes `maxnode - 1` bits (a historic off-by-one
        // that libnuma compensates for the same way).
        (nodes.as_ptr(), nodes.len() * 64 + 1)
    };
    // SAFETY: `ptr` is null with maxnode 0, or points to `nodes.len()` readable u64 words, of
    // which the kernel reads at most `(maxnode - 1)` bits.
    cvt(unsafe { libc::syscall(libc::SYS_set_mempolicy, mode, ptr, maxnode) }).map(drop)
}

/// `get_mempolicy(&mode, nodemask, 1024, NULL, 0)`: the calling thread's policy, its mode
/// flags ORed in, and the first 1024 bits of its node mask.
pub fn get_mempolicy() -> io::Result<(i32, [u64; 16])> {
    let mut mode: libc::c_int = 0;
    let mut mask = [0u64; 16];
    // SAFETY: `mode` is a writable int and `mask` holds 1024 bits, the `maxnode` given; no
    // address is looked up (flags 0).
    cvt(unsafe {
        libc::syscall(
            libc::SYS_get_mempolicy,
            &mut mode as *mut libc::c_int,
            mask.as_mut_ptr(),
            1024usize,
            std::ptr::null::<libc::c_void>(),
            0,
        )
    })?;
    Ok((mode, mask))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each check runs in a thread of its own: all of these change only the calling thread,
    /// so the test harness's other threads are unaffected.
    fn in_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::spawn(f).join().unwrap()
    }

    #[test]
    fn sched_attr_is_the_kernels_ver1_layout() {
        assert_eq!(SCHED_ATTR_SIZE, 56);
    }

    #[test]
    fn sched_setattr_round_trips_a_nice_value_and_a_flag() {
        let got = in_thread(|| {
            let attr = SchedAttr { policy: libc::SCHED_BATCH as u32, nice: 4, flags: 1, ..Default::default() };
            sched_setattr(&attr).unwrap();
            sched_getattr().unwrap()
        });
        assert_eq!((got.policy, got.nice, got.flags & 1), (libc::SCHED_BATCH as u32, 4, 1));
    }

    #[test]
    fn sched_setattr_reports_the_kernels_refusal() {
        // Policy 4 is SCHED_ISO, which Linux does not implement.
        let e = in_thread(|| sched_setattr(&SchedAttr { policy: 4, ..Default::default() }).unwrap_err());
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
    }

    #[test]
    fn ioprio_round_trips() {
        // Best effort, level 6: a class and level any process may choose for itself.
        let got = in_thread(|| {
            ioprio_set(ioprio_value(2, 6)).unwrap();
            ioprio_get().unwrap()
        });
        assert_eq!(got, ioprio_value(2, 6));
    }

    #[test]
    fn mempolicy_round_trips_where_numa_exists() {
        if !std::path::Path::new("/sys/devices/system/node/node0").exists() {
            eprintln!("SKIPPED: no NUMA node 0 (CONFIG_NUMA off?)");
            return;
        }
        let got = in_thread(|| {
            set_mempolicy(2 /* MPOL_BIND */ | (1 << 15) /* MPOL_F_STATIC_NODES */, &[1]).unwrap();
            get_mempolicy().unwrap()
        });
        assert_eq!(got.0, 2 | (1 << 15));
        assert_eq!(got.1[0], 1);
        let default = in_thread(|| {
            set_mempolicy(0, &[]).unwrap();
            get_mempolicy().unwrap()
        });
        assert_eq!(default.0, 0);
    }
}
