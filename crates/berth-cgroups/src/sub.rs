//! `exec --cgroup`: placing an exec process in an existing sub-cgroup of the container's
//! cgroup, as runc 1.1 does.
//!
//! runc's syntax is `[<controller>[,<controller>...]:]<path>`, repeatable. Without a
//! controller (allowed only once) the process goes to `<path>` under the container's cgroup
//! in every hierarchy; with controllers only those hierarchies change. The sub-cgroup must
//! exist: neither runc nor berth creates it. One difference: runc checks that the joined path
//! starts with the container's path as a string, which lets `../<name>X` reach a sibling
//! cgroup; berth resolves `.` and `..` and requires the result to stay inside, component by
//! component.

use std::path::{Component, Path, PathBuf};

use crate::{Cgroup, CgroupError};

fn invalid(arg: &str, reason: impl Into<String>) -> CgroupError {
    CgroupError::Invalid { field: format!("--cgroup {arg:?}"), reason: reason.into() }
}

/// Parses the `--cgroup` arguments into (controller, path) pairs; the controller is empty for
/// "every hierarchy".
pub fn parse_sub_cgroups(args: &[String]) -> Result<Vec<(String, String)>, CgroupError> {
    let mut out = Vec::new();
    for a in args {
        let parts: Vec<&str> = a.splitn(3, ':').collect();
        match parts.as_slice() {
            [path] => {
                if args.len() != 1 {
                    return Err(invalid(a, format!("invalid --cgroup argument: {a} (missing <controller>: prefix)")));
                }
                out.push((String::new(), (*path).to_string()));
            }
            [ctrls, path] => {
                for c in ctrls.split(',') {
                    out.push((c.to_string(), (*path).to_string()));
                }
            }
            _ => return Err(invalid(a, format!("invalid --cgroup argument: {a}"))),
        }
    }
    Ok(out)
}

/// `base` joined with `sub`, `.` and `..` resolved; `None` if the result leaves `base`.
fn join_inside(base: &Path, sub: &str) -> Option<PathBuf> {
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for c in Path::new(sub).components() {
        match c {
            Component::Normal(n) => parts.push(n),
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    let mut p = base.to_path_buf();
    p.extend(parts);
    Some(p)
}

impl Cgroup {
    /// This cgroup with the directories named by `paths` (from [`parse_sub_cgroups`]) moved
    /// to the given sub-cgroups, which must exist and lie inside the container's cgroup.
    /// A controller the container has no hierarchy for is an error.
    pub fn sub_cgroup(&self, paths: &[(String, String)]) -> Result<Cgroup, CgroupError> {
        let mut out = self.clone();
        let arg = |c: &str, p: &str| if c.is_empty() { p.to_string() } else { format!("{c}:{p}") };
        for (ctrl, sub) in paths {
            let dirs: Vec<&mut PathBuf> = if ctrl.is_empty() {
                out.v1.iter_mut().map(|h| &mut h.path).chain(out.v2.iter_mut().map(|d| &mut d.path)).collect()
            } else if let Some(h) = out.v1.iter_mut().find(|h| h.controllers.iter().any(|c| c == ctrl)) {
                vec![&mut h.path]
            } else if let Some(d) = out.v2.as_mut().filter(|d| d.controllers.iter().any(|c| c == ctrl)) {
                vec![&mut d.path]
            } else {
                return Err(invalid(
                    &arg(ctrl, sub),
                    format!("unknown controller {ctrl} in SubCgroupPaths (the container has no hierarchy with it)"),
                ));
            };
            for d in dirs {
                let target = join_inside(d, sub).ok_or_else(|| {
                    invalid(
                        &arg(ctrl, sub),
                        format!("{sub} is not a sub cgroup path (it leaves the container's cgroup {})", d.display()),
                    )
                })?;
                if !target.is_dir() {
                    return Err(invalid(
                        &arg(ctrl, sub),
                        format!(
                            "{}: no such file or directory (the sub-cgroup must exist: berth does not create it)",
                            target.display()
                        ),
                    ));
                }
                *d = target;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn syntax_as_runc() {
        assert_eq!(parse_sub_cgroups(&s(&["a/b"])).unwrap(), [(String::new(), "a/b".to_string())]);
        assert_eq!(
            parse_sub_cgroups(&s(&["memory,pids:x", "cpu:y"])).unwrap(),
            [("memory".into(), "x".into()), ("pids".into(), "x".into()), ("cpu".into(), "y".into())]
        );
        assert_eq!(parse_sub_cgroups(&s(&[":x"])).unwrap(), [(String::new(), "x".to_string())]);
        let e = parse_sub_cgroups(&s(&["a:b:c"])).unwrap_err().to_string();
        assert!(e.contains("invalid --cgroup argument: a:b:c"), "{e}");
        let e = parse_sub_cgroups(&s(&["x", "y"])).unwrap_err().to_string();
        assert!(e.contains("missing <controller>: prefix"), "{e}");
    }

    #[test]
    fn paths_stay_inside() {
        let base = Path::new("/sys/fs/cgroup/memory/berth/c1");
        assert_eq!(join_inside(base, "sub").unwrap(), base.join("sub"));
        assert_eq!(join_inside(base, "/sub/./x/../y").unwrap(), base.join("sub/y"));
        assert_eq!(join_inside(base, "").unwrap(), base);
        assert!(join_inside(base, "..").is_none());
        assert!(join_inside(base, "../c1x").is_none());
        assert!(join_inside(base, "sub/../../x").is_none());
    }
}
