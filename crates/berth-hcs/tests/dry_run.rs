#![cfg(not(windows))]
//! `berth hcs-config`: the dry run over a bundle directory, on this (non-Windows) host.

mod common;

use berth_core::ErrorKind;
use berth_hcs::dry_run::{hcs_config, Document};
use common::*;
use serde_json::{json, Value};

fn bundle(config: &Value) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("config.json"), config.to_string()).unwrap();
    d
}

#[test]
fn prints_the_process_isolated_comment_document() {
    let id = "5e0055c814a6005b8e57ac59f9a522066e0af12b48b3c26a9416e23907698776";
    let b = bundle(&json!({
        "ociVersion": "1.0.1",
        "hostname": "5e0055c814a6",
        "root": {"path": VOLUME},
        "process": {"cwd": "C:\\", "args": ["cmd", "/c", "echo hi"], "user": {"uid": 0, "gid": 0}},
        "windows": {
            "layerFolders": [format!(r"C:\control\windowsfilter\{COMMENT_LAYER}"), format!(r"C:\control\windowsfilter\{id}")],
            "ignoreFlushesDuringBoot": true,
            "network": {"endpointList": ["eef2649d-bb17-4d53-9937-295a8efe6f2c"]},
            "credentialSpec": "{\"CmsPlugins\":[\"ActiveDirectory\"]}"
        }
    }));
    let out = hcs_config(b.path(), id, &[], Document::Container).unwrap();
    // The stand-in NameToGuid knows the comment's layer, so even off Windows this is the id
    // HCS computes.
    assert_eq!(
        out,
        format!(
            r#"{{"SystemType":"Container","Name":"{id}","Owner":"docker","VolumePath":"\\\\?\\Volume{{66d1ef4c-7a00-11e6-8948-00155ddbef9d}}","IgnoreFlushesDuringBoot":true,"LayerFolderPath":"C:\\control\\windowsfilter\\{id}","Layers":[{{"ID":"{COMMENT_LAYER_GUID}","Path":"C:\\control\\windowsfilter\\{COMMENT_LAYER}"}}],"Credentials":"{{\"CmsPlugins\":[\"ActiveDirectory\"]}}","HostName":"5e0055c814a6","HvPartition":false,"EndpointList":["eef2649d-bb17-4d53-9937-295a8efe6f2c"]}}"#
        )
    );
    let p = hcs_config(b.path(), id, &[], Document::InitProcess).unwrap();
    assert_eq!(
        p,
        r#"{"CommandLine":"cmd /c \"echo hi\"","WorkingDirectory":"C:\\","CreateStdInPipe":true,"CreateStdOutPipe":true,"CreateStdErrPipe":true,"ConsoleSize":[0,0]}"#
    );
}

#[test]
fn hyper_v_with_local_layer_folders() {
    let layers = tempfile::tempdir().unwrap();
    let base = layers.path().join("base");
    std::fs::create_dir_all(base.join("UtilityVM")).unwrap();
    let base = base.to_str().unwrap().to_string();
    let scratch = layers.path().join("scratch").to_str().unwrap().to_string();
    let b = bundle(&json!({
        "ociVersion": "1.0.1",
        "process": {"cwd": "C:\\", "args": ["cmd"], "user": {"uid": 0, "gid": 0}},
        "windows": {"layerFolders": [base, scratch], "hyperv": {}}
    }));
    let out: Value = serde_json::from_str(&hcs_config(b.path(), "hv", &[], Document::Container).unwrap()).unwrap();
    assert_eq!(out["HvPartition"], json!(true));
    // filepath.Join with Windows rules: backslashes.
    assert_eq!(out["HvRuntime"]["ImagePath"], json!(format!(r"{}\UtilityVM", base.replace('/', r"\"))));

    // Without the UtilityVM folder the dry run fails as Windows would.
    std::fs::remove_dir(layers.path().join("base").join("UtilityVM")).unwrap();
    let e = hcs_config(b.path(), "hv", &[], Document::Container).unwrap_err();
    assert_eq!(e.message(), "utility VM image could not be found");
}

#[test]
fn lcow_with_a_kernel_directory() {
    let kernels = tempfile::tempdir().unwrap();
    std::fs::write(kernels.path().join("bootx64.efi"), b"").unwrap();
    std::fs::write(kernels.path().join("initrd.img"), b"").unwrap();
    let kdir = kernels.path().to_str().unwrap().to_string();
    let b = bundle(&lcow());
    let opts = vec![format!("lcow.kirdpath={kdir}")];
    let out: Value = serde_json::from_str(&hcs_config(b.path(), "l", &opts, Document::Container).unwrap()).unwrap();
    assert_eq!(out["ContainerType"], json!("linux"));
    // No uvm.vhdx in the folder: kernel+initrd boot.
    assert_eq!(out["HvRuntime"]["LinuxKernelFile"], json!("bootx64.efi"));
    assert_eq!(out["HvRuntime"]["ImagePath"], json!(kdir));
    let p: Value = serde_json::from_str(&hcs_config(b.path(), "l", &opts, Document::InitProcess).unwrap()).unwrap();
    assert_eq!(p["CommandArgs"], json!(["sh", "-c", "echo hi"]));
    assert_eq!(p["OCISpecification"]["hostname"], json!("host"));

    // With a uvm.vhdx it boots from the VHDX.
    std::fs::write(kernels.path().join("uvm.vhdx"), b"").unwrap();
    let out: Value = serde_json::from_str(&hcs_config(b.path(), "l", &opts, Document::Container).unwrap()).unwrap();
    assert_eq!(out["HvRuntime"]["BootSource"], json!("Vhd"));

    // Without a kernel, the opengcs validation error.
    let empty = tempfile::tempdir().unwrap();
    let opts = vec![format!("lcow.kirdpath={}", empty.path().display())];
    let e = hcs_config(b.path(), "l", &opts, Document::Container).unwrap_err();
    assert!(e.message().starts_with("kernel '"), "{e}");
}

#[test]
fn bundle_errors() {
    let d = tempfile::tempdir().unwrap();
    assert_eq!(hcs_config(d.path(), "x", &[], Document::Container).unwrap_err().kind(), ErrorKind::NotFound);
    std::fs::write(d.path().join("config.json"), "{").unwrap();
    assert_eq!(hcs_config(d.path(), "x", &[], Document::Container).unwrap_err().kind(), ErrorKind::InvalidParameter);
    let b = bundle(&wcow());
    assert_eq!(hcs_config(b.path(), "", &[], Document::Container).unwrap_err().kind(), ErrorKind::InvalidParameter);
}
