//! Signal names and numbers (Linux numbering), as `runc kill` accepts them.
//!
//! runc upper-cases the argument, strips an optional `SIG` prefix and looks the name up; a
//! plain number is taken as is. `RTMIN+n` / `RTMAX-n` are accepted too.

/// (name without the SIG prefix, number) for Linux on x86_64, aarch64 and riscv64.
const SIGNALS: &[(&str, i32)] = &[
    ("HUP", 1),
    ("INT", 2),
    ("QUIT", 3),
    ("ILL", 4),
    ("TRAP", 5),
    ("ABRT", 6),
    ("IOT", 6),
    ("BUS", 7),
    ("FPE", 8),
    ("KILL", 9),
    ("USR1", 10),
    ("SEGV", 11),
    ("USR2", 12),
    ("PIPE", 13),
    ("ALRM", 14),
    ("TERM", 15),
    ("STKFLT", 16),
    ("CHLD", 17),
    ("CLD", 17),
    ("CONT", 18),
    ("STOP", 19),
    ("TSTP", 20),
    ("TTIN", 21),
    ("TTOU", 22),
    ("URG", 23),
    ("XCPU", 24),
    ("XFSZ", 25),
    ("VTALRM", 26),
    ("PROF", 27),
    ("WINCH", 28),
    ("IO", 29),
    ("POLL", 29),
    ("PWR", 30),
    ("SYS", 31),
];

/// The first real-time signal usable by applications (glibc reserves 32 and 33).
pub const SIGRTMIN: i32 = 34;
/// The last real-time signal.
pub const SIGRTMAX: i32 = 64;

/// Parses a signal given by name (`TERM`, `SIGTERM`, `sigkill`, `RTMIN+2`) or number (`9`,
/// `37`). `0` is accepted: it sends nothing and only checks that the process exists (`kill ID
/// 0`, the liveness probe). runc takes any number and lets kill(2) refuse it; berth checks
/// the range here, with the same exit status. runc knows real-time signals only by number;
/// berth also by their `RTMIN+n`/`RTMAX-n` names.
pub fn parse_signal(s: &str) -> Result<i32, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("signal: must not be empty".into());
    }
    if let Ok(n) = t.parse::<i32>() {
        if (0..=SIGRTMAX).contains(&n) {
            return Ok(n);
        }
        return Err(format!("signal {t}: out of range 0..={SIGRTMAX}"));
    }
    let up = t.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    if let Some(&(_, n)) = SIGNALS.iter().find(|(nm, _)| *nm == name) {
        return Ok(n);
    }
    let rt = |base: i32, rest: &str, sign: i32| -> Option<i32> {
        let off: i32 = if rest.is_empty() { 0 } else { rest.parse().ok()? };
        let n = base + sign * off;
        (SIGRTMIN..=SIGRTMAX).contains(&n).then_some(n)
    };
    let parsed = if let Some(rest) = name.strip_prefix("RTMIN") {
        rest.strip_prefix('+').map_or_else(
            || {
                if rest.is_empty() {
                    rt(SIGRTMIN, "", 1)
                } else {
                    None
                }
            },
            |r| rt(SIGRTMIN, r, 1),
        )
    } else if let Some(rest) = name.strip_prefix("RTMAX") {
        rest.strip_prefix('-').map_or_else(
            || {
                if rest.is_empty() {
                    rt(SIGRTMAX, "", -1)
                } else {
                    None
                }
            },
            |r| rt(SIGRTMAX, r, -1),
        )
    } else {
        None
    };
    parsed.ok_or_else(|| format!("unknown signal {s:?}"))
}

/// The canonical name of signal `n` with the SIG prefix, if it has one.
pub fn signal_name(n: i32) -> Option<String> {
    if let Some((name, _)) = SIGNALS.iter().find(|(_, num)| *num == n) {
        return Some(format!("SIG{name}"));
    }
    if (SIGRTMIN..=SIGRTMAX).contains(&n) {
        return Some(if n == SIGRTMIN { "SIGRTMIN".into() } else { format!("SIGRTMIN+{}", n - SIGRTMIN) });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_numbers_and_prefixes() {
        assert_eq!(parse_signal("TERM"), Ok(15));
        assert_eq!(parse_signal("SIGTERM"), Ok(15));
        assert_eq!(parse_signal("sigkill"), Ok(9));
        assert_eq!(parse_signal("kill"), Ok(9));
        assert_eq!(parse_signal("9"), Ok(9));
        assert_eq!(parse_signal("SIGUSR1"), Ok(10));
        assert_eq!(parse_signal("RTMIN"), Ok(34));
        assert_eq!(parse_signal("SIGRTMIN+3"), Ok(37));
        assert_eq!(parse_signal("RTMAX-1"), Ok(63));
        assert_eq!(parse_signal("0"), Ok(0));
        assert_eq!(parse_signal("64"), Ok(64));
        assert!(parse_signal("-1").is_err());
        assert!(parse_signal("65").is_err());
        assert!(parse_signal("SIGFOO").is_err());
        assert!(parse_signal("RTMIN+40").is_err());
        assert!(parse_signal("").is_err());
        assert_eq!(signal_name(15).as_deref(), Some("SIGTERM"));
        assert_eq!(signal_name(36).as_deref(), Some("SIGRTMIN+2"));
    }
}
