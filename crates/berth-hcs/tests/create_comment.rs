//! The two example documents of the original's `Create` comment, reproduced field for field
//! from equivalent OCI specs.
//!
//! The comment was written by hand (and partly before the code it sits on), so the real
//! serializer differs from it in known ways; each difference is asserted explicitly below:
//!
//! * `"MappedDirectories": []` and `"Servicing": false` are shown, but both fields are
//!   `omitempty` in hcsshim's `ContainerConfig`, so Go never wrote them;
//! * the Hyper-V example has no `LayerFolderPath` (its table says "servicing only"), but the
//!   code under the comment always sets it to the last layer folder, so it is present;
//! * the Hyper-V example lists `DNSSearchList` before `HvRuntime`; Go writes fields in struct
//!   order, where `HvRuntime` comes first.
//!
//! The comment's JSON strings were escaped twice in the source (`\\\\\\\\?`); here they are
//! written with single JSON escaping, i.e. the values are `\\?\Volume{...}` and `C:\control...`.

mod common;

use berth_hcs::translate::{document, translate_container, TranslateContext};
use common::*;
use serde_json::{json, Value};

const PROC_ID: &str = "5e0055c814a6005b8e57ac59f9a522066e0af12b48b3c26a9416e23907698776";
const HV_ID: &str = "475c2c58933b72687a88a441e7e0ca4bd72d76413c5f9d5031fee83b98f6045d";

fn layer_dir(name: &str) -> String {
    format!(r"C:\control\windowsfilter\{name}")
}

/// Go struct order of hcsshim's ContainerConfig, for checking the order of emitted keys.
const GO_ORDER: &[&str] = &[
    "SystemType",
    "Name",
    "Owner",
    "VolumePath",
    "IgnoreFlushesDuringBoot",
    "LayerFolderPath",
    "Layers",
    "Credentials",
    "ProcessorCount",
    "ProcessorWeight",
    "ProcessorMaximum",
    "StorageIOPSMaximum",
    "StorageBandwidthMaximum",
    "StorageSandboxSize",
    "MemoryMaximumInMB",
    "HostName",
    "MappedDirectories",
    "MappedPipes",
    "HvPartition",
    "NetworkSharedContainerName",
    "EndpointList",
    "HvRuntime",
    "Servicing",
    "AllowUnqualifiedDNSQuery",
    "DNSSearchList",
    "ContainerType",
    "TerminateOnLastHandleClosed",
    "MappedVirtualDisks",
];

fn keys_in_go_order(doc: &str) {
    // Checked on the raw text: a parsed map would not keep the order.
    let mut last = 0;
    for k in GO_ORDER {
        if let Some(pos) = doc.find(&format!("\"{k}\":")) {
            assert!(pos >= last, "{k} out of Go struct order in {doc}");
            last = pos;
        }
    }
}

#[test]
fn process_isolation_example() {
    // The comment's document, as written.
    let mut comment = json!({
        "SystemType": "Container",
        "Name": PROC_ID,
        "Owner": "docker",
        "VolumePath": r"\\?\Volume{66d1ef4c-7a00-11e6-8948-00155ddbef9d}",
        "IgnoreFlushesDuringBoot": true,
        "LayerFolderPath": layer_dir(PROC_ID),
        "Layers": [{"ID": COMMENT_LAYER_GUID, "Path": layer_dir(COMMENT_LAYER)}],
        "HostName": "5e0055c814a6",
        "MappedDirectories": [],
        "HvPartition": false,
        "EndpointList": ["eef2649d-bb17-4d53-9937-295a8efe6f2c"],
        "Servicing": false
    });
    let s = spec(json!({
        "ociVersion": "1.0.1",
        "hostname": "5e0055c814a6",
        "root": {"path": r"\\?\Volume{66d1ef4c-7a00-11e6-8948-00155ddbef9d}\"},
        "process": {"cwd": "C:\\", "args": ["cmd"], "user": {"uid": 0, "gid": 0}},
        "windows": {
            "layerFolders": [layer_dir(COMMENT_LAYER), layer_dir(PROC_ID)],
            "ignoreFlushesDuringBoot": true,
            "network": {"endpointList": ["eef2649d-bb17-4d53-9937-295a8efe6f2c"]}
        }
    }));
    let n2g = TestNameToGuid::default();
    let host = FakeHost::new();
    let t = translate_container(PROC_ID, &s, None, None, TranslateContext { name_to_guid: &n2g, host: &host }).unwrap();
    let doc = document(&t.config).unwrap();

    // The real serializer omits the comment's empty MappedDirectories and false Servicing.
    let obj = comment.as_object_mut().unwrap();
    assert_eq!(obj.remove("MappedDirectories"), Some(json!([])));
    assert_eq!(obj.remove("Servicing"), Some(json!(false)));
    let got: Value = serde_json::from_str(&doc).unwrap();
    assert_eq!(got, comment, "field for field");

    // And byte for byte, in Go's field order.
    assert_eq!(
        doc,
        format!(
            r#"{{"SystemType":"Container","Name":"{PROC_ID}","Owner":"docker","VolumePath":"\\\\?\\Volume{{66d1ef4c-7a00-11e6-8948-00155ddbef9d}}","IgnoreFlushesDuringBoot":true,"LayerFolderPath":"C:\\control\\windowsfilter\\{PROC_ID}","Layers":[{{"ID":"{COMMENT_LAYER_GUID}","Path":"C:\\control\\windowsfilter\\{COMMENT_LAYER}"}}],"HostName":"5e0055c814a6","HvPartition":false,"EndpointList":["eef2649d-bb17-4d53-9937-295a8efe6f2c"]}}"#
        )
    );
    keys_in_go_order(&doc);
    // The layer id came from the base name of the read-only layer folder only.
    assert_eq!(*n2g.asked.lock().unwrap(), vec![COMMENT_LAYER.to_string()]);
}

#[test]
fn hyper_v_example() {
    let mut comment = json!({
        "SystemType": "Container",
        "Name": HV_ID,
        "Owner": "docker",
        "IgnoreFlushesDuringBoot": true,
        "Layers": [{"ID": COMMENT_LAYER_GUID, "Path": layer_dir(COMMENT_LAYER)}],
        "HostName": "475c2c58933b",
        "MappedDirectories": [],
        "HvPartition": true,
        "EndpointList": ["e1bb1e61-d56f-405e-b75d-fd520cefa0cb"],
        "DNSSearchList": "a.com,b.com,c.com",
        "HvRuntime": {"ImagePath": format!(r"{}\UtilityVM", layer_dir(COMMENT_LAYER))},
        "Servicing": false
    });
    let s = spec(json!({
        "ociVersion": "1.0.1",
        "hostname": "475c2c58933b",
        "process": {"cwd": "C:\\", "args": ["cmd"], "user": {"uid": 0, "gid": 0}},
        "windows": {
            "layerFolders": [layer_dir(COMMENT_LAYER), layer_dir(HV_ID)],
            "ignoreFlushesDuringBoot": true,
            "hyperv": {},
            "network": {
                "endpointList": ["e1bb1e61-d56f-405e-b75d-fd520cefa0cb"],
                "DNSSearchList": ["a.com", "b.com", "c.com"]
            }
        }
    }));
    let n2g = TestNameToGuid::default();
    let host = FakeHost::new().with(&format!(r"{}\UtilityVM", layer_dir(COMMENT_LAYER)));
    let t = translate_container(HV_ID, &s, None, None, TranslateContext { name_to_guid: &n2g, host: &host }).unwrap();
    let doc = document(&t.config).unwrap();

    let obj = comment.as_object_mut().unwrap();
    // Omitted by the real serializer (omitempty).
    assert_eq!(obj.remove("MappedDirectories"), Some(json!([])));
    assert_eq!(obj.remove("Servicing"), Some(json!(false)));
    // Always set by the code under the comment (the comment predates it).
    obj.insert("LayerFolderPath".into(), json!(layer_dir(HV_ID)));
    let got: Value = serde_json::from_str(&doc).unwrap();
    assert_eq!(got, comment, "field for field");

    assert_eq!(
        doc,
        format!(
            r#"{{"SystemType":"Container","Name":"{HV_ID}","Owner":"docker","IgnoreFlushesDuringBoot":true,"LayerFolderPath":"C:\\control\\windowsfilter\\{HV_ID}","Layers":[{{"ID":"{COMMENT_LAYER_GUID}","Path":"C:\\control\\windowsfilter\\{COMMENT_LAYER}"}}],"HostName":"475c2c58933b","HvPartition":true,"EndpointList":["e1bb1e61-d56f-405e-b75d-fd520cefa0cb"],"HvRuntime":{{"ImagePath":"C:\\control\\windowsfilter\\{COMMENT_LAYER}\\UtilityVM"}},"DNSSearchList":"a.com,b.com,c.com"}}"#
        )
    );
    keys_in_go_order(&doc);
}
