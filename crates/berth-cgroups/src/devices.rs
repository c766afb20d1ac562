//! Device access rules: the OCI rule list is first run through an emulator of
//! the cgroup v1 devices controller, which gives one canonical state (default
//! allow or deny, plus a set of exceptions). From that state we derive
//!
//! * on v1, the minimal sequence of `devices.allow`/`devices.deny` writes to
//!   move the live cgroup from its current state to the target (so `update`
//!   does not briefly deny everything to a running container), and
//! * on v2, an eBPF `BPF_PROG_TYPE_CGROUP_DEVICE` program that makes the same
//!   decisions, so a spec behaves identically on both hierarchies. That
//!   includes v1's refusal to "punch a hole" into a wildcard rule, which we
//!   report as an error rather than silently ignoring (runc does the same).

use std::collections::BTreeMap;
use std::ffi::CStr;

use berth_sys::bpf::{self, op, Insn};
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use crate::error::CgroupError;

const ACC_M: u8 = bpf::BPF_DEVCG_ACC_MKNOD as u8;
const ACC_R: u8 = bpf::BPF_DEVCG_ACC_READ as u8;
const ACC_W: u8 = bpf::BPF_DEVCG_ACC_WRITE as u8;
const ACC_ALL: u8 = ACC_M | ACC_R | ACC_W;

/// The license string of the generated program (device programs need no GPL
/// helpers).
pub(crate) const LICENSE: &CStr = c"Apache";

/// runc 1.1's fixed allow list (`AllowedDevices` in libcontainer/specconv), in its order:
/// `mknod` of any char and block node, `/dev/null`, `random`, `full`, `tty`, `zero`,
/// `urandom`, every `/dev/pts/*`, `ptmx` and `/dev/net/tun`. [`runc_device_rules`] appends
/// it after the spec's rules, so a spec cannot deny these.
///
/// Not `/dev/console` (5:1): runc 1.1 has no rule for it either; a terminal's console is the
/// PTY slave bound there, a `136:*` device. One deliberate difference: runc 1.1 drops a
/// default rule whose path (e.g. `/dev/null`) is also listed in `linux.devices`, which makes
/// such a container fail to open its own `/dev/null`; berth always appends the whole list.
pub fn default_allowed_devices() -> Vec<LinuxDeviceCgroup> {
    let rule = |typ: LinuxDeviceType, major: Option<i64>, minor: Option<i64>, access: &str| {
        let mut r = LinuxDeviceCgroup::default();
        r.set_allow(true);
        r.set_typ(Some(typ));
        r.set_major(major);
        r.set_minor(minor);
        r.set_access(Some(access.to_owned()));
        r
    };
    use LinuxDeviceType::{B, C};
    vec![
        // mknod of any device node; opening it still needs an allow rule.
        rule(C, None, None, "m"),
        rule(B, None, None, "m"),
        rule(C, Some(1), Some(3), "rwm"),    // /dev/null
        rule(C, Some(1), Some(8), "rwm"),    // /dev/random
        rule(C, Some(1), Some(7), "rwm"),    // /dev/full
        rule(C, Some(5), Some(0), "rwm"),    // /dev/tty
        rule(C, Some(1), Some(5), "rwm"),    // /dev/zero
        rule(C, Some(1), Some(9), "rwm"),    // /dev/urandom
        rule(C, Some(136), None, "rwm"),     // /dev/pts/*
        rule(C, Some(5), Some(2), "rwm"),    // /dev/ptmx
        rule(C, Some(10), Some(200), "rwm"), // /dev/net/tun
    ]
}

/// The rules a container's devices cgroup gets for `linux.resources.devices`, as runc 1.1
/// builds them: everything denied (the state every rule list starts from), the spec's rules
/// in order, then [`default_allowed_devices`]. For `create`, and for an `update` that carries
/// devices (so an update never drops the defaults). `linux.devices` contributes nothing:
/// creating a node in the container is not permission to open it.
pub fn runc_device_rules(spec_rules: &[LinuxDeviceCgroup]) -> Vec<LinuxDeviceCgroup> {
    let mut rules = spec_rules.to_vec();
    rules.extend(default_allowed_devices());
    rules
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Kind {
    Char,
    Block,
}

/// The match part of an exception; `None` is a wildcard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Meta {
    pub major: Option<u32>,
    pub minor: Option<u32>,
    pub kind: Kind,
}

/// A normalised rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rule {
    /// Type `a`: resets to allow-all (`true`) or deny-all (`false`).
    All(bool),
    One {
        allow: bool,
        meta: Meta,
        access: u8,
    },
}

fn field(i: usize) -> String {
    format!("linux.resources.devices[{i}]")
}

fn num(v: Option<i64>, i: usize, what: &str) -> Result<Option<u32>, CgroupError> {
    match v {
        None | Some(-1) => Ok(None),
        Some(n) => u32::try_from(n)
            .map(Some)
            .map_err(|_| CgroupError::invalid(format!("{}.{what}", field(i)), format!("{n} is not a device number"))),
    }
}

fn access_bits(s: &str, i: usize) -> Result<u8, CgroupError> {
    if s.is_empty() {
        return Err(CgroupError::invalid(format!("{}.access", field(i)), "must not be empty (use some of \"rwm\")"));
    }
    let mut bits = 0;
    for c in s.chars() {
        bits |= match c {
            'r' => ACC_R,
            'w' => ACC_W,
            'm' => ACC_M,
            other => {
                return Err(CgroupError::invalid(
                    format!("{}.access", field(i)),
                    format!("unknown access {other:?} in {s:?} (allowed: r, w, m)"),
                ))
            }
        };
    }
    Ok(bits)
}

/// Validates and normalises the spec's rules.
pub(crate) fn normalise(rules: &[LinuxDeviceCgroup]) -> Result<Vec<Rule>, CgroupError> {
    rules
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let access = access_bits(r.access().as_deref().unwrap_or("rwm"), i)?;
            let kind = match r.typ().unwrap_or(LinuxDeviceType::A) {
                LinuxDeviceType::A => return Ok(Rule::All(r.allow())),
                LinuxDeviceType::C | LinuxDeviceType::U => Kind::Char,
                LinuxDeviceType::B => Kind::Block,
                LinuxDeviceType::P => {
                    return Err(CgroupError::invalid(
                        format!("{}.type", field(i)),
                        "\"p\" (FIFO) is not a device the devices cgroup can control; use a, b or c",
                    ))
                }
            };
            Ok(Rule::One {
                allow: r.allow(),
                meta: Meta { major: num(r.major(), i, "major")?, minor: num(r.minor(), i, "minor")?, kind },
                access,
            })
        })
        .collect()
}

/// State of a v1 devices cgroup: a default plus exceptions to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Emulator {
    pub default_allow: bool,
    pub exceptions: BTreeMap<Meta, u8>,
}

impl Emulator {
    /// A fresh, deny-everything state (what an empty rule list means).
    pub fn deny_all() -> Self {
        Emulator { default_allow: false, exceptions: BTreeMap::new() }
    }

    pub fn from_rules(rules: &[Rule]) -> Result<Self, CgroupError> {
        let mut e = Emulator::deny_all();
        for (i, r) in rules.iter().enumerate() {
            e.apply(r, i)?;
        }
        Ok(e)
    }

    fn apply(&mut self, rule: &Rule, i: usize) -> Result<(), CgroupError> {
        match *rule {
            Rule::All(allow) => {
                *self = Emulator { default_allow: allow, exceptions: BTreeMap::new() };
                Ok(())
            }
            Rule::One { allow, meta, access } => {
                if allow == self.default_allow {
                    self.remove(meta, access, i)
                } else {
                    *self.exceptions.entry(meta).or_insert(0) |= access;
                    Ok(())
                }
            }
        }
    }

    /// Removes `access` from the exception `meta`. v1 only removes exact
    /// matches and silently ignores a removal that a wildcard exception still
    /// covers; we refuse it instead, since the user asked for something the
    /// kernel would not do.
    fn remove(&mut self, meta: Meta, access: u8, i: usize) -> Result<(), CgroupError> {
        let wild =
            [Meta { major: None, ..meta }, Meta { minor: None, ..meta }, Meta { major: None, minor: None, ..meta }];
        for w in wild {
            if w == meta {
                continue;
            }
            if let Some(p) = self.exceptions.get(&w) {
                if p & access != 0 {
                    return Err(CgroupError::invalid(
                        field(i),
                        format!(
                            "cannot {} {} because an earlier wildcard rule {} already {} it; the devices cgroup cannot punch a hole into a wildcard rule",
                            if self.default_allow { "allow" } else { "deny" },
                            rule_string(meta, access),
                            rule_string(w, *p),
                            if self.default_allow { "denies" } else { "allows" },
                        ),
                    ));
                }
            }
        }
        if let Some(p) = self.exceptions.get_mut(&meta) {
            *p &= !access;
            if *p == 0 {
                self.exceptions.remove(&meta);
            }
        }
        Ok(())
    }

    /// Parses `devices.list`. It only lists allowed devices, and an allow-all
    /// cgroup shows just `a *:* rwm` (its deny exceptions are invisible).
    pub fn from_list(list: &str) -> Option<Self> {
        let mut e = Emulator::deny_all();
        for line in list.lines().filter(|l| !l.trim().is_empty()) {
            let mut it = line.split_ascii_whitespace();
            let (t, mm, acc) = (it.next()?, it.next()?, it.next()?);
            let kind = match t {
                "a" => {
                    e = Emulator { default_allow: true, exceptions: BTreeMap::new() };
                    continue;
                }
                "c" => Kind::Char,
                "b" => Kind::Block,
                _ => return None,
            };
            let (ma, mi) = mm.split_once(':')?;
            let p = |s: &str| -> Option<Option<u32>> {
                if s == "*" {
                    Some(None)
                } else {
                    s.parse().ok().map(Some)
                }
            };
            let meta = Meta { major: p(ma)?, minor: p(mi)?, kind };
            let access = access_bits(acc, 0).ok()?;
            if !e.default_allow {
                *e.exceptions.entry(meta).or_insert(0) |= access;
            }
        }
        Some(e)
    }

    /// The v1 writes that turn `self` (the live state) into `target`:
    /// `(is_allow, rule)` pairs for `devices.allow` / `devices.deny`.
    pub fn transition(&self, target: &Emulator) -> Vec<(bool, String)> {
        let mut out = Vec::new();
        let mut old = &self.exceptions;
        let empty = BTreeMap::new();
        // An allow-all cgroup may hide deny exceptions we cannot see, so it is
        // always reset; so is a cgroup whose default must change.
        if self.default_allow || self.default_allow != target.default_allow {
            out.push((target.default_allow, "a *:* rwm".to_owned()));
            old = &empty;
        }
        for (meta, perms) in old {
            let dropped = perms & !target.exceptions.get(meta).copied().unwrap_or(0);
            if dropped != 0 {
                out.push((target.default_allow, rule_string(*meta, dropped)));
            }
        }
        for (meta, perms) in &target.exceptions {
            let gained = perms & !old.get(meta).copied().unwrap_or(0);
            if gained != 0 {
                out.push((!target.default_allow, rule_string(*meta, gained)));
            }
        }
        out
    }

    /// Builds the equivalent cgroup v2 device program.
    pub fn program(&self) -> Result<Vec<Insn>, CgroupError> {
        let mut p = vec![
            // r2 = type (low 16 bits of access_type), r3 = access (high 16),
            // r4 = major, r5 = minor; r1 points at struct bpf_cgroup_dev_ctx.
            Insn::new(op::LDX | op::MEM | op::W, 2, 1, 0, 0),
            Insn::new(op::ALU | op::AND | op::K, 2, 0, 0, 0xffff),
            Insn::new(op::LDX | op::MEM | op::W, 3, 1, 0, 0),
            Insn::new(op::ALU | op::RSH | op::K, 3, 0, 0, 16),
            Insn::new(op::LDX | op::MEM | op::W, 4, 1, 4, 0),
            Insn::new(op::LDX | op::MEM | op::W, 5, 1, 8, 0),
        ];
        // Every exception has the action opposite to the default, so the
        // order of blocks does not matter.
        let verdict = i32::from(!self.default_allow);
        for (meta, access) in &self.exceptions {
            let mut block: Vec<(u8, u8, u8, i32)> = Vec::new(); // (code, dst, src, imm); jumps patched below
            let ty = match meta.kind {
                Kind::Char => bpf::BPF_DEVCG_DEV_CHAR,
                Kind::Block => bpf::BPF_DEVCG_DEV_BLOCK,
            };
            block.push((op::JMP | op::JNE | op::K, 2, 0, ty));
            if *access != ACC_ALL {
                // Same matching as the v1 kernel code: an allow exception must
                // cover every requested bit (`match_exception`), while a deny
                // exception applies as soon as one requested bit is in it
                // (`match_exception_partial`).
                block.push((op::ALU | op::MOV | op::X, 1, 3, 0));
                block.push((op::ALU | op::AND | op::K, 1, 0, i32::from(*access)));
                if self.default_allow {
                    block.push((op::JMP | op::JEQ | op::K, 1, 0, 0));
                } else {
                    block.push((op::JMP | op::JNE | op::X, 1, 3, 0));
                }
            }
            for (reg, v, name) in [(4u8, meta.major, "major"), (5u8, meta.minor, "minor")] {
                if let Some(v) = v {
                    // Compared as 64-bit against a sign-extended immediate:
                    // keep to values that survive that (real majors are 12
                    // bits and minors 20 bits).
                    let imm = i32::try_from(v).map_err(|_| {
                        CgroupError::invalid(
                            "linux.resources.devices",
                            format!("{name} {v} is out of range for the cgroup v2 device filter"),
                        )
                    })?;
                    block.push((op::JMP | op::JNE | op::K, reg, 0, imm));
                }
            }
            let len = block.len() + 2;
            for (idx, (code, dst, src, imm)) in block.into_iter().enumerate() {
                let is_jump = code & 0x07 == op::JMP && matches!(code & 0xf0, op::JNE | op::JEQ);
                // A failed match skips to the first instruction after this
                // block's `exit`; offsets are relative to the next insn.
                let off = if is_jump { (len - idx - 1) as i16 } else { 0 };
                p.push(Insn::new(code, dst, src, off, imm));
            }
            p.push(Insn::new(op::ALU | op::MOV | op::K, 0, 0, 0, verdict));
            p.push(Insn::new(op::JMP | op::EXIT, 0, 0, 0, 0));
        }
        p.push(Insn::new(op::ALU | op::MOV | op::K, 0, 0, 0, i32::from(self.default_allow)));
        p.push(Insn::new(op::JMP | op::EXIT, 0, 0, 0, 0));
        Ok(p)
    }
}

fn rule_string(meta: Meta, access: u8) -> String {
    let t = match meta.kind {
        Kind::Char => 'c',
        Kind::Block => 'b',
    };
    let n = |v: Option<u32>| v.map_or_else(|| "*".to_owned(), |v| v.to_string());
    let mut acc = String::with_capacity(3);
    if access & ACC_R != 0 {
        acc.push('r');
    }
    if access & ACC_W != 0 {
        acc.push('w');
    }
    if access & ACC_M != 0 {
        acc.push('m');
    }
    format!("{t} {}:{} {acc}", n(meta.major), n(meta.minor))
}

/// Runs a generated program over one request, the way the kernel would.
/// Used by tests to check the program against the emulator.
#[cfg(test)]
pub(crate) fn interpret(prog: &[Insn], kind: Kind, access: u8, major: u32, minor: u32) -> bool {
    let ty: u32 = match kind {
        Kind::Char => 2,
        Kind::Block => 1,
    };
    let ctx = [(u32::from(access) << 16) | ty, major, minor];
    let mut r = [0u64; 11];
    let mut pc = 0usize;
    loop {
        let i = prog[pc];
        let (d, s) = (i.dst() as usize, i.src() as usize);
        pc += 1;
        match i.code {
            c if c == op::LDX | op::MEM | op::W => r[d] = u64::from(ctx[(i.off / 4) as usize]),
            c if c == op::ALU | op::AND | op::K => r[d] = (r[d] as u32 & i.imm as u32) as u64,
            c if c == op::ALU | op::RSH | op::K => r[d] = ((r[d] as u32) >> i.imm) as u64,
            c if c == op::ALU | op::MOV | op::X => r[d] = r[s] as u32 as u64,
            c if c == op::ALU | op::MOV | op::K => r[d] = i.imm as u32 as u64,
            c if c == op::JMP | op::JNE | op::K => {
                if r[d] != i.imm as i64 as u64 {
                    pc += i.off as usize
                }
            }
            c if c == op::JMP | op::JEQ | op::K => {
                if r[d] == i.imm as i64 as u64 {
                    pc += i.off as usize
                }
            }
            c if c == op::JMP | op::JNE | op::X => {
                if r[d] != r[s] {
                    pc += i.off as usize
                }
            }
            c if c == op::JMP | op::EXIT => return r[0] == 1,
            c => panic!("unexpected opcode {c:#x}"),
        }
    }
}

/// The v1 kernel's verdict for one request under the emulated state
/// (`devcgroup_legacy_check_permission`), as the reference for tests.
#[cfg(test)]
pub(crate) fn emulated_verdict(e: &Emulator, kind: Kind, access: u8, major: u32, minor: u32) -> bool {
    let mut matching = e
        .exceptions
        .iter()
        .filter(|(m, _)| m.kind == kind && m.major.is_none_or(|v| v == major) && m.minor.is_none_or(|v| v == minor));
    if e.default_allow {
        !matching.any(|(_, p)| access & p != 0)
    } else {
        matching.any(|(_, p)| access & !p == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(allow: bool, t: &str, major: Option<i64>, minor: Option<i64>, access: &str) -> LinuxDeviceCgroup {
        let mut d = LinuxDeviceCgroup::default();
        d.set_allow(allow);
        d.set_typ(Some(match t {
            "a" => LinuxDeviceType::A,
            "b" => LinuxDeviceType::B,
            "c" => LinuxDeviceType::C,
            "p" => LinuxDeviceType::P,
            _ => LinuxDeviceType::U,
        }));
        d.set_major(major);
        d.set_minor(minor);
        d.set_access(Some(access.into()));
        d
    }

    fn spec_with_defaults() -> Vec<LinuxDeviceCgroup> {
        let mut v = vec![r(false, "a", None, None, "rwm")];
        v.extend(default_allowed_devices());
        v
    }

    #[test]
    fn default_list_is_runc_1_1s_and_follows_the_spec_rules() {
        // runc 1.1 libcontainer/specconv AllowedDevices, in order (no 5:1 console).
        let want = [
            "c *:* m",
            "b *:* m",
            "c 1:3 rwm",
            "c 1:8 rwm",
            "c 1:7 rwm",
            "c 5:0 rwm",
            "c 1:5 rwm",
            "c 1:9 rwm",
            "c 136:* rwm",
            "c 5:2 rwm",
            "c 10:200 rwm",
        ];
        let got: Vec<String> = normalise(&default_allowed_devices())
            .unwrap()
            .into_iter()
            .map(|r| match r {
                Rule::One { allow: true, meta, access } => rule_string(meta, access),
                other => panic!("not an allow rule: {other:?}"),
            })
            .collect();
        assert_eq!(got, want);
        let spec = [r(false, "a", None, None, "rwm"), r(true, "c", Some(1), Some(11), "r")];
        let all = runc_device_rules(&spec);
        assert_eq!(all[..2], spec);
        assert_eq!(all[2..], default_allowed_devices()[..]);
    }

    #[test]
    fn fresh_cgroup_gets_deny_all_then_allows() {
        let target = Emulator::from_rules(&normalise(&spec_with_defaults()).unwrap()).unwrap();
        // A fresh v1 cgroup is assumed allow-all (inherited from the root).
        let live = Emulator { default_allow: true, exceptions: BTreeMap::new() };
        let w = live.transition(&target);
        assert_eq!(w[0], (false, "a *:* rwm".to_owned()));
        assert!(w.contains(&(true, "c 1:3 rwm".to_owned())));
        assert!(w.contains(&(true, "c 136:* rwm".to_owned())));
        assert!(w.contains(&(true, "c *:* m".to_owned())));
        assert!(w[1..].iter().all(|(allow, _)| *allow));
    }

    #[test]
    fn update_is_minimal_and_never_resets_an_allowlist() {
        let before = Emulator::from_rules(&normalise(&spec_with_defaults()).unwrap()).unwrap();
        // devices.list as the kernel would print it for `before`.
        let list: String = before.exceptions.iter().map(|(m, p)| rule_string(*m, *p) + "\n").collect();
        let live = Emulator::from_list(&list).unwrap();
        assert_eq!(live, before);
        let mut spec = spec_with_defaults();
        spec.push(r(true, "b", Some(8), Some(0), "r"));
        spec.push(r(false, "c", Some(1), Some(3), "w"));
        let target = Emulator::from_rules(&normalise(&spec).unwrap()).unwrap();
        assert_eq!(live.transition(&target), vec![(false, "c 1:3 w".to_owned()), (true, "b 8:0 r".to_owned())]);
        assert!(live.transition(&live).is_empty());
    }

    #[test]
    fn refuses_to_punch_holes_into_wildcards() {
        let spec = vec![
            r(false, "a", None, None, "rwm"),
            r(true, "c", Some(136), None, "rwm"),
            r(false, "c", Some(136), Some(2), "rw"),
        ];
        let e = Emulator::from_rules(&normalise(&spec).unwrap()).unwrap_err().to_string();
        assert!(e.starts_with("linux.resources.devices[2]: cannot deny c 136:2 rw"), "{e}");
    }

    #[test]
    fn rejects_bad_rules_naming_the_field() {
        let e = normalise(&[r(true, "c", Some(1), Some(3), "rx")]).unwrap_err().to_string();
        assert!(e.starts_with("linux.resources.devices[0].access: unknown access 'x'"), "{e}");
        let e = normalise(&[r(true, "p", None, None, "r")]).unwrap_err().to_string();
        assert!(e.starts_with("linux.resources.devices[0].type"), "{e}");
        let e = normalise(&[r(true, "c", Some(-5), None, "r")]).unwrap_err().to_string();
        assert!(e.starts_with("linux.resources.devices[0].major"), "{e}");
        let e = normalise(&[r(true, "c", Some(1), Some(1), "")]).unwrap_err().to_string();
        assert!(e.contains("must not be empty"), "{e}");
    }

    /// The BPF program must decide exactly like the emulator for a grid of
    /// requests, in both allow-list and deny-list mode.
    #[test]
    fn program_matches_emulator() {
        let specs = vec![
            spec_with_defaults(),
            vec![
                r(true, "a", None, None, "rwm"),
                r(false, "c", Some(1), Some(3), "w"),
                r(false, "b", Some(8), None, "rwm"),
                r(false, "c", None, Some(7), "m"),
            ],
            // Allow-list: no single exception covers "rw" on 1:3, so the
            // kernel refuses it although r and w are each allowed.
            vec![
                r(false, "a", None, None, "rwm"),
                r(true, "c", Some(1), Some(3), "r"),
                r(true, "c", Some(1), None, "w"),
            ],
            vec![],
        ];
        for spec in specs {
            let e = Emulator::from_rules(&normalise(&spec).unwrap()).unwrap();
            let prog = e.program().unwrap();
            for kind in [Kind::Char, Kind::Block] {
                for access in 1..=7u8 {
                    for major in [0, 1, 5, 8, 10, 136, 4095] {
                        for minor in [0, 2, 3, 7, 200, 99999] {
                            assert_eq!(
                                interpret(&prog, kind, access, major, minor),
                                emulated_verdict(&e, kind, access, major, minor),
                                "{kind:?} {access} {major}:{minor} in {e:?}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn type_a_resets_and_u_means_char() {
        let spec = vec![
            r(true, "c", Some(1), Some(3), "rwm"),
            r(false, "a", Some(1), Some(1), "r"),
            r(true, "u", Some(4), Some(1), "r"),
        ];
        let e = Emulator::from_rules(&normalise(&spec).unwrap()).unwrap();
        assert!(!e.default_allow);
        assert_eq!(e.exceptions.len(), 1);
        let (m, p) = e.exceptions.iter().next().unwrap();
        assert_eq!((m.kind, m.major, m.minor, *p), (Kind::Char, Some(4), Some(1), ACC_R));
    }
}
