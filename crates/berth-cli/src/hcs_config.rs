//! `berth hcs-config [--bundle B] [--lcow-kernel-dir D ...] [--process] ID`: prints the HCS
//! document berth would send for a bundle — the `ContainerConfig` for
//! `HcsCreateComputeSystem`, or with `--process` the init's `ProcessConfig` — byte for byte as
//! hcsshim wrote it. A dry run: nothing talks to HCS.
//!
//! Off Windows, layer ids come from a stand-in NameToGuid (the real algorithm is vmcompute's
//! and undocumented) and Windows paths are checked against the local file system with `\`
//! read as `/`; see `berth_hcs::dry_run`. Argument parsing stays in `main.rs`.

use std::path::PathBuf;

use anyhow::Context;
use berth_hcs::dry_run::{hcs_config, Document};

/// The parsed arguments of `berth hcs-config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HcsConfigArgs {
    /// Bundle directory holding `config.json` (`--bundle`, default `.`).
    pub bundle: PathBuf,
    /// Container id (the document's `Name`).
    pub id: String,
    /// opengcs utility VM options `lcow.<key>=<value>`, used for Linux specs only; each
    /// `--lcow-kernel-dir D` is [`lcow_kernel_dir`]`(D)`.
    pub lcow_options: Vec<String>,
    /// Print the init's `ProcessConfig` instead of the `ContainerConfig` (`--process`).
    pub process: bool,
}

/// The opengcs option `--lcow-kernel-dir DIR` stands for: the folder holding the utility VM's
/// kernel and initrd (and possibly `uvm.vhdx`).
pub fn lcow_kernel_dir(dir: &str) -> String {
    format!("lcow.kirdpath={dir}")
}

/// Renders the document; the caller prints it followed by a newline.
pub fn run(args: HcsConfigArgs) -> anyhow::Result<String> {
    let which = if args.process { Document::InitProcess } else { Document::Container };
    hcs_config(&args.bundle, &args.id, &args.lcow_options, which)
        .with_context(|| format!("hcs-config {}: bundle {}", args.id, args.bundle.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_container_and_process_documents() {
        let d = std::env::temp_dir().join(format!("berth-hcs-config-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("config.json"),
            r#"{"ociVersion":"1.0.1","root":{"path":"\\\\?\\Volume{66d1ef4c-7a00-11e6-8948-00155ddbef9d}\\"},
                "process":{"cwd":"C:\\","args":["cmd"],"user":{"uid":0,"gid":0}},
                "windows":{"layerFolders":["C:\\l\\4","C:\\l\\scratch"]}}"#,
        )
        .unwrap();
        let args = HcsConfigArgs {
            bundle: d.clone(),
            id: "c1".into(),
            lcow_options: vec![lcow_kernel_dir("C:\\k")],
            process: false,
        };
        let out = run(args.clone()).unwrap();
        assert!(out.starts_with(r#"{"SystemType":"Container","Name":"c1","#), "{out}");
        // "4" is one of the published NameToGuid pairs.
        assert!(out.contains(r#""ID":"bd9c3ef9-f239-59b5-a27e-15c523b1d149""#), "{out}");
        let p = run(HcsConfigArgs { process: true, ..args.clone() }).unwrap();
        assert!(p.starts_with(r#"{"CommandLine":"cmd","#), "{p}");
        let e = run(HcsConfigArgs { bundle: d.join("missing"), ..args }).unwrap_err();
        assert!(format!("{e:#}").contains("config.json"), "{e:#}");
        std::fs::remove_dir_all(&d).unwrap();
        assert_eq!(lcow_kernel_dir("D"), "lcow.kirdpath=D");
    }
}
