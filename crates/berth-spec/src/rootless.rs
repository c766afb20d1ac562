//! `berth spec --rootless`: runc's `specconv.ToRootless`.
//!
//! A rootless container gets a user namespace mapping container root to the calling user,
//! no network namespace (an unprivileged user cannot configure one usefully), no sysfs
//! mount (it needs a network namespace it owns; the host's /sys is bind-mounted read-only
//! instead), no `uid=`/`gid=` mount options (ids outside the mapping), and no cgroup
//! resources (cgroups are not delegated to unprivileged users by default).

use oci_spec::runtime::{LinuxIdMappingBuilder, LinuxNamespace, LinuxNamespaceType, Mount, Spec};

/// Rewrites `spec` for a rootless container whose root maps to host `uid`/`gid`.
pub fn to_rootless(spec: &mut Spec, uid: u32, gid: u32) {
    if let Some(linux) = spec.linux_mut() {
        let mut ns: Vec<LinuxNamespace> = linux
            .namespaces()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|n| !matches!(n.typ(), LinuxNamespaceType::Network | LinuxNamespaceType::User))
            .collect();
        let mut user = LinuxNamespace::default();
        user.set_typ(LinuxNamespaceType::User);
        ns.push(user);
        linux.set_namespaces(Some(ns));
        let map = |host: u32| {
            let m = LinuxIdMappingBuilder::default().container_id(0u32).host_id(host).size(1u32).build();
            m.map(|m| vec![m]).unwrap_or_default()
        };
        linux.set_uid_mappings(Some(map(uid)));
        linux.set_gid_mappings(Some(map(gid)));
        linux.set_resources(None);
    }
    let mut mounts: Vec<Mount> = spec
        .mounts()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|m| !m.destination().starts_with("/sys"))
        .map(|mut m| {
            let opts: Vec<String> = m
                .options()
                .clone()
                .unwrap_or_default()
                .into_iter()
                .filter(|o| !o.starts_with("gid=") && !o.starts_with("uid="))
                .collect();
            m.set_options(Some(opts));
            m
        })
        .collect();
    let mut sys = Mount::default();
    sys.set_destination("/sys".into())
        .set_typ(Some("none".into()))
        .set_source(Some("/sys".into()))
        .set_options(Some(["rbind", "nosuid", "noexec", "nodev", "ro"].map(String::from).to_vec()));
    mounts.push(sys);
    spec.set_mounts(Some(mounts));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rootless_conversion_matches_runc() {
        let mut s = crate::default_spec();
        to_rootless(&mut s, 1000, 1001);
        crate::validate(&s).unwrap();
        let linux = s.linux().as_ref().unwrap();
        let types: Vec<_> = linux.namespaces().as_ref().unwrap().iter().map(|n| n.typ()).collect();
        assert!(types.contains(&LinuxNamespaceType::User));
        assert!(!types.contains(&LinuxNamespaceType::Network));
        assert_eq!(linux.uid_mappings().as_ref().unwrap()[0].host_id(), 1000);
        assert_eq!(linux.gid_mappings().as_ref().unwrap()[0].host_id(), 1001);
        assert!(linux.resources().is_none());
        let mounts = s.mounts().as_ref().unwrap();
        let sys: Vec<_> = mounts.iter().filter(|m| m.destination().starts_with("/sys")).collect();
        assert_eq!(sys.len(), 1);
        assert_eq!(sys[0].typ().as_deref(), Some("none"));
        for m in mounts {
            for o in m.options().iter().flatten() {
                assert!(!o.starts_with("gid=") && !o.starts_with("uid="), "{o}");
            }
        }
    }
}
