//! One table row per translation rule and per error of the original's createWindows,
//! createLinux, Start and Exec (plus the upstream fixes).

mod common;

use berth_core::ErrorKind;
use berth_hcs::lcow::{ActualMode, LcowConfig, LcowOptions};
use berth_hcs::translate::{
    document, environment, exec_process_config, init_process_config, is_volume_guid_path, parse_spec,
    translate_container, ContainerTranslation, TranslateContext, TranslateError,
};
use berth_hcs_schema::ContainerConfig;
use common::*;
use oci_spec::runtime::Process;
use serde_json::{json, Value};

fn run_with(v: Value, host: &FakeHost, lcow: Option<&LcowConfig>) -> Result<ContainerTranslation, TranslateError> {
    let n2g = TestNameToGuid::default();
    translate_container("cid", &spec(v), None, lcow, TranslateContext { name_to_guid: &n2g, host })
}

fn run(v: Value) -> Result<ContainerTranslation, TranslateError> {
    run_with(v, &FakeHost::new(), None)
}

fn cfg(v: Value) -> ContainerConfig {
    run(v).unwrap().config
}

fn err(v: Value) -> TranslateError {
    run(v).unwrap_err()
}

fn kernel_lcow() -> LcowConfig {
    LcowConfig {
        options: LcowOptions {
            kird_path: r"C:\Program Files\Linux Containers".into(),
            kernel_file: "bootx64.efi".into(),
            initrd_file: "initrd.img".into(),
            vhdx: r"C:\Program Files\Linux Containers\uvm.vhdx".into(),
            timeout_seconds: 0,
            boot_parameters: "console=ttyS0".into(),
        },
        actual_mode: ActualMode::KernelInitrd,
        ..Default::default()
    }
}

fn vhdx_lcow() -> LcowConfig {
    LcowConfig { actual_mode: ActualMode::Vhdx, ..kernel_lcow() }
}

fn lcow_run(v: Value) -> Result<ContainerTranslation, TranslateError> {
    run_with(v, &FakeHost::new(), Some(&kernel_lcow()))
}

// ------------------------------------------------------------------ WCOW: resources

#[test]
fn cpu_count_clamped_to_host_with_warning() {
    let mut v = wcow();
    set(&mut v, "windows/resources/cpu/count", json!(8));
    let t = run(v).unwrap();
    assert_eq!(t.config.processor_count, 4);
    assert_eq!(t.warnings, vec!["Changing requested CPUCount of 8 to current number of processors, 4".to_string()]);

    let mut v = wcow();
    set(&mut v, "windows/resources/cpu/count", json!(2));
    let t = run(v).unwrap();
    assert_eq!(t.config.processor_count, 2);
    assert!(t.warnings.is_empty());
}

#[test]
fn cpu_shares_and_maximum() {
    let mut v = wcow();
    set(&mut v, "windows/resources/cpu/shares", json!(500));
    set(&mut v, "windows/resources/cpu/maximum", json!(7500));
    let c = cfg(v);
    assert_eq!(c.processor_weight, 500);
    assert_eq!(c.processor_maximum, 7500);
    let d = document(&c).unwrap();
    assert!(d.contains(r#""ProcessorWeight":500,"ProcessorMaximum":7500"#), "{d}");
}

#[test]
fn memory_bytes_to_mb() {
    for (bytes, mb) in [
        (2_147_483_648u64, 2048i64),
        (1_048_575, 0),
        (1_572_864, 1),
        // Go's int64(limit) wraps above i64::MAX; the original sent the negative result.
        (u64::MAX, 0),
        (1u64 << 63, -(1i64 << 43)),
    ] {
        let mut v = wcow();
        set(&mut v, "windows/resources/memory/limit", json!(bytes));
        assert_eq!(cfg(v).memory_maximum_in_mb, mb, "{bytes}");
    }
}

#[test]
fn storage_iops_and_bps() {
    let mut v = wcow();
    set(&mut v, "windows/resources/storage/iops", json!(300));
    set(&mut v, "windows/resources/storage/bps", json!(1_000_000));
    let c = cfg(v);
    assert_eq!(c.storage_iops_maximum, 300);
    assert_eq!(c.storage_bandwidth_maximum, 1_000_000);
    assert_eq!(c.storage_sandbox_size, 0, "the original never set it");
}

// ------------------------------------------------------------------ WCOW: basics

#[test]
fn windows_basics() {
    let mut v = wcow();
    set(&mut v, "windows/ignoreFlushesDuringBoot", json!(true));
    set(&mut v, "windows/servicing", json!(true));
    let c = cfg(v);
    assert_eq!(c.system_type, "Container");
    assert_eq!(c.name, "cid");
    assert_eq!(c.owner, "docker");
    assert_eq!(c.host_name, "host");
    assert!(c.ignore_flushes_during_boot);
    assert!(c.servicing);
    assert!(!c.hv_partition);
    assert!(c.hv_runtime.is_none());
    assert!(c.container_type.is_empty());
    assert!(!c.terminate_on_last_handle_closed);
}

#[test]
fn missing_windows_section() {
    let mut v = wcow();
    remove(&mut v, "windows");
    let e = err(v);
    assert!(matches!(e, TranslateError::MissingWindows(_)));
    assert_eq!(e.kind(), ErrorKind::InvalidParameter);
}

// ------------------------------------------------------------------ WCOW: network

#[test]
fn network_rules() {
    let mut v = wcow();
    set(
        &mut v,
        "windows/network",
        json!({
            "endpointList": ["e1", "e2"],
            "allowUnqualifiedDNSQuery": true,
            "DNSSearchList": ["a.com", "b.com"],
            "networkSharedContainerName": "other"
        }),
    );
    let c = cfg(v);
    assert_eq!(c.endpoint_list, vec!["e1", "e2"]);
    assert!(c.allow_unqualified_dns_query);
    assert_eq!(c.dns_search_list, "a.com,b.com");
    assert_eq!(c.network_shared_container_name, "other");

    let mut v = wcow();
    set(&mut v, "windows/network", json!({"DNSSearchList": []}));
    let d = document(&cfg(v)).unwrap();
    assert!(!d.contains("DNSSearchList") && !d.contains("EndpointList"), "{d}");
}

#[test]
fn credential_spec_string_only() {
    let n2g = TestNameToGuid::default();
    let host = FakeHost::new();
    let ctx = TranslateContext { name_to_guid: &n2g, host: &host };
    let t = translate_container("cid", &spec(wcow()), Some(r#"{"a":1}"#), None, ctx).unwrap();
    assert_eq!(t.config.credentials, r#"{"a":1}"#);

    // The object form (all oci-spec can hold) was ignored by the original.
    let mut v = wcow();
    set(&mut v, "windows/credentialSpec", json!({"a": 1}));
    let t = run(v).unwrap();
    assert!(t.config.credentials.is_empty());
    assert_eq!(t.warnings.len(), 1);

    // parse_spec takes a string credentialSpec out before oci-spec parses the rest.
    let mut v = wcow();
    set(&mut v, "windows/credentialSpec", json!("{\"CmsPlugins\":[\"ActiveDirectory\"]}"));
    let p = parse_spec(v.to_string().as_bytes()).unwrap();
    assert_eq!(p.credential_spec.as_deref(), Some("{\"CmsPlugins\":[\"ActiveDirectory\"]}"));
}

// ------------------------------------------------------------------ WCOW: layers

#[test]
fn layer_folder_count() {
    for folders in [json!([]), json!([BASE]), Value::Null] {
        let mut v = wcow();
        if folders.is_null() {
            remove(&mut v, "windows/layerFolders");
        } else {
            set(&mut v, "windows/layerFolders", folders);
        }
        let e = err(v);
        assert_eq!(e.to_string(), "OCI spec is invalid - at least two LayerFolders must be supplied to the runtime");
        assert_eq!(e.kind(), ErrorKind::InvalidParameter);
    }
}

#[test]
fn top_folder_is_scratch_and_layer_ids_use_base_names() {
    let mut v = wcow();
    set(&mut v, "windows/layerFolders", json!([r"C:\wf\top", format!(r"C:\wf\{COMMENT_LAYER}"), r"C:\wf\scratch"]));
    let n2g = TestNameToGuid::default();
    let host = FakeHost::new();
    let t =
        translate_container("cid", &spec(v), None, None, TranslateContext { name_to_guid: &n2g, host: &host }).unwrap();
    assert_eq!(t.config.layer_folder_path, r"C:\wf\scratch");
    assert_eq!(t.config.layers.len(), 2);
    assert_eq!(t.config.layers[0].path, r"C:\wf\top");
    assert_eq!(t.config.layers[1].id, COMMENT_LAYER_GUID);
    assert_eq!(t.config.layers[1].path, format!(r"C:\wf\{COMMENT_LAYER}"));
    assert_eq!(*n2g.asked.lock().unwrap(), vec!["top", COMMENT_LAYER]);
}

#[test]
fn layer_id_failure_is_a_system_error() {
    let mut v = wcow();
    set(&mut v, "windows/layerFolders", json!([r"C:\wf\fail", SCRATCH]));
    let e = err(v);
    assert!(matches!(e, TranslateError::LayerId { .. }));
    assert_eq!(e.kind(), ErrorKind::System);
}

// ------------------------------------------------------------------ WCOW: Hyper-V and root

fn hyperv() -> Value {
    let mut v = wcow();
    remove(&mut v, "root");
    set(&mut v, "windows/hyperv", json!({}));
    set(&mut v, "windows/layerFolders", json!([r"C:\wf\a", r"C:\wf\b", r"C:\wf\c", SCRATCH]));
    v
}

#[test]
fn first_layer_with_utility_vm_wins() {
    let host = FakeHost::new().with(r"C:\wf\b\UtilityVM").with(r"C:\wf\c\UtilityVM");
    let t = run_with(hyperv(), &host, None).unwrap();
    assert!(t.config.hv_partition);
    assert_eq!(t.config.hv_runtime.unwrap().image_path, r"C:\wf\b\UtilityVM");
    // The search stopped at the first hit (the lost `break`), and never looked at scratch.
    assert_eq!(*host.stats.lock().unwrap(), vec![r"C:\wf\a\UtilityVM", r"C:\wf\b\UtilityVM"]);
}

#[test]
fn utility_vm_errors() {
    let e = run_with(hyperv(), &FakeHost::new(), None).unwrap_err();
    assert_eq!(e.to_string(), "utility VM image could not be found");
    assert_eq!(e.kind(), ErrorKind::InvalidParameter);

    let mut host = FakeHost::new().with(r"C:\wf\b\UtilityVM");
    host.errors.insert(r"C:\wf\a\UtilityVM".into(), std::io::ErrorKind::PermissionDenied);
    let e = run_with(hyperv(), &host, None).unwrap_err();
    assert!(matches!(e, TranslateError::Stat { .. }), "{e}");
    assert_eq!(e.kind(), ErrorKind::System);

    let mut v = hyperv();
    set(&mut v, "windows/hyperv/utilityVMPath", json!(r"C:\uvm"));
    let e = err(v);
    assert_eq!(e.to_string(), "runtime does not support an explicit utility VM path for Hyper-V containers");
    assert_eq!(e.kind(), ErrorKind::NotImplemented);
}

#[test]
fn hyper_v_refuses_root_path() {
    let host = FakeHost::new().with(r"C:\wf\a\UtilityVM");
    let mut v = hyperv();
    set(&mut v, "root", json!({"path": VOLUME}));
    let e = run_with(v, &host, None).unwrap_err();
    assert_eq!(e.to_string(), "OCI spec is invalid - Root.Path must be omitted for a Hyper-V container");
    let mut v = hyperv();
    set(&mut v, "root", json!({"path": ""}));
    assert!(run_with(v, &host, None).is_ok());
}

#[test]
fn root_path_must_be_a_volume_guid_path() {
    for bad in [
        "",
        r"C:\",
        r"\\?\Volume{66d1ef4c-7a00-11e6-8948-00155ddbef9d}",
        r"\\?\volume{66d1ef4c-7a00-11e6-8948-00155ddbef9d}\",
        r"\\?\Volume{66d1ef4c-7a00-11e6-8948-00155ddbef9}\",
        r"\\?\Volume{66d1ef4c-7a00-11e6-8948-00155ddbef9g}\",
        r"\\?\VolumeX66d1ef4c-7a00-11e6-8948-00155ddbef9d}\",
        r"\\?\Volume{66d1ef4c-7a00-11e6-8948-00155ddbef9d}\x",
        r"\\?\Volume66d1ef4c-7a00-11e6-8948-00155ddbef9d\",
    ] {
        let mut v = wcow();
        set(&mut v, "root/path", json!(bad));
        let e = err(v);
        assert_eq!(
            e.to_string(),
            format!(
                r"OCI spec is invalid - Root.Path '{bad}' must be a volume GUID path in the format '\\?\Volume{{GUID}}\'"
            )
        );
        assert_eq!(e.kind(), ErrorKind::InvalidParameter);
        assert!(!is_volume_guid_path(bad));
    }
    // Without root at all, the path is empty: refused for process isolation.
    let mut v = wcow();
    remove(&mut v, "root");
    assert!(matches!(err(v), TranslateError::RootPathNotVolumeGuid(_)));
}

#[test]
fn volume_path_strips_trailing_backslash() {
    assert_eq!(cfg(wcow()).volume_path, r"\\?\Volume{66d1ef4c-7a00-11e6-8948-00155ddbef9d}");
    // The original pattern's odd forms are accepted exactly as it accepted them.
    for odd in
        [r"\\?\Volume66d1ef4c-7a00-11e6-8948-00155ddbef9d}\", r"\\?\Volume{66D1EF4C-7A00-11E6-8948-00155DDBEF9D}}\"]
    {
        assert!(is_volume_guid_path(odd), "{odd}");
        let mut v = wcow();
        set(&mut v, "root/path", json!(odd));
        assert_eq!(cfg(v).volume_path, odd.strip_suffix('\\').unwrap());
    }
}

#[test]
fn root_readonly_refused_for_both_isolations() {
    let mut v = wcow();
    set(&mut v, "root/readonly", json!(true));
    let e = err(v);
    assert_eq!(e.to_string(), "OCI spec is invalid - Root.Readonly must not be set on Windows");
    let host = FakeHost::new().with(r"C:\wf\a\UtilityVM");
    let mut v = hyperv();
    set(&mut v, "root", json!({"path": "", "readonly": true}));
    assert!(matches!(run_with(v, &host, None).unwrap_err(), TranslateError::RootReadonly));
    let mut v = wcow();
    set(&mut v, "root/readonly", json!(false));
    assert!(run(v).is_ok());
}

// ------------------------------------------------------------------ WCOW: mounts

#[test]
fn mounts_become_mapped_dirs_and_pipes() {
    let mut v = wcow();
    set(
        &mut v,
        "mounts",
        json!([
            {"destination": r"C:\data", "source": r"D:\data", "options": ["RO"]},
            {"destination": r"C:\rw", "source": r"D:\rw", "type": "", "options": ["rw"]},
            {"destination": r"\\.\pipe\docker_engine", "source": r"\\.\pipe\docker_engine"}
        ]),
    );
    let c = cfg(v);
    assert_eq!(c.mapped_directories.len(), 2);
    assert!(c.mapped_directories[0].read_only, "ro matched case-insensitively");
    assert!(!c.mapped_directories[1].read_only);
    assert_eq!(c.mapped_pipes.len(), 1);
    assert_eq!(c.mapped_pipes[0].container_pipe_name, "docker_engine");
    assert_eq!(c.mapped_pipes[0].host_path, r"\\.\pipe\docker_engine");
    let d = document(&c).unwrap();
    assert!(
        d.contains(r#""MappedDirectories":[{"HostPath":"D:\\data","ContainerPath":"C:\\data","ReadOnly":true,"BandwidthMaximum":0,"IOPSMaximum":0,"CreateInUtilityVM":false},"#),
        "{d}"
    );
    assert!(
        d.contains(r#""MappedPipes":[{"HostPath":"\\\\.\\pipe\\docker_engine","ContainerPipeName":"docker_engine"}]"#),
        "{d}"
    );
}

#[test]
fn mount_type_must_be_empty() {
    let mut v = wcow();
    set(&mut v, "mounts", json!([{"destination": r"C:\d", "source": r"D:\d", "type": "bind"}]));
    let e = err(v);
    assert_eq!(e.to_string(), "OCI spec is invalid - Mount.Type 'bind' must not be set");
    assert_eq!(e.kind(), ErrorKind::InvalidParameter);
}

#[test]
fn named_pipes_need_build_16299() {
    let mounts = json!([{"destination": r"\\.\pipe\p", "source": r"\\.\pipe\p"}]);
    for (build, ok) in [(Some(16298), false), (Some(16299), true), (None, true)] {
        let mut v = wcow();
        set(&mut v, "mounts", mounts.clone());
        let mut host = FakeHost::new();
        host.build = build;
        let r = run_with(v, &host, None);
        assert_eq!(r.is_ok(), ok, "build {build:?}");
        if let Err(e) = r {
            assert_eq!(e.to_string(), "named pipe mounts are not supported on this version of Windows");
            assert_eq!(e.kind(), ErrorKind::NotImplemented);
        }
    }
    // Only pipes are gated.
    let mut v = wcow();
    set(&mut v, "mounts", json!([{"destination": r"C:\d", "source": r"D:\d"}]));
    let mut host = FakeHost::new();
    host.build = Some(14393);
    assert!(run_with(v, &host, None).is_ok());
}

// ------------------------------------------------------------------ LCOW

#[test]
fn lcow_requires_options() {
    let e = run(lcow()).unwrap_err();
    assert_eq!(e.to_string(), "lcow option must be supplied to the runtime");
    assert_eq!(e.kind(), ErrorKind::InvalidParameter);
}

#[test]
fn lcow_basics_and_kernel_runtime() {
    let t = lcow_run(lcow()).unwrap();
    assert!(!t.is_windows);
    let c = &t.config;
    assert_eq!(c.system_type, "container");
    assert_eq!(c.container_type, "linux");
    assert_eq!(c.owner, "docker");
    assert!(c.hv_partition);
    assert!(c.terminate_on_last_handle_closed);
    assert!(c.host_name.is_empty(), "the original set no host name for LCOW");
    let hv = c.hv_runtime.as_ref().unwrap();
    assert_eq!(hv.image_path, r"C:\Program Files\Linux Containers");
    assert_eq!(hv.linux_kernel_file, "bootx64.efi");
    assert_eq!(hv.linux_initrd_file, "initrd.img");
    assert_eq!(hv.linux_boot_parameters, "console=ttyS0");
    assert!(hv.boot_source.is_empty());
    assert_eq!(
        document(c).unwrap(),
        r#"{"SystemType":"container","Name":"cid","Owner":"docker","LayerFolderPath":"C:\\control\\windowsfilter\\scratch","Layers":[{"ID":"e5a8b5b5-0a8d-5c5c-a6b4-f6f4f5e1c3f4","Path":"C:\\control\\windowsfilter\\base\\layer.vhd"}],"HvPartition":true,"HvRuntime":{"ImagePath":"C:\\Program Files\\Linux Containers","LinuxInitrdFile":"initrd.img","LinuxKernelFile":"bootx64.efi","LinuxBootParameters":"console=ttyS0"},"ContainerType":"linux","TerminateOnLastHandleClosed":true}"#
            .replace(
                "e5a8b5b5-0a8d-5c5c-a6b4-f6f4f5e1c3f4",
                &c.layers[0].id
            )
    );
}

#[test]
fn lcow_vhdx_runtime() {
    let t = run_with(lcow(), &FakeHost::new(), Some(&vhdx_lcow())).unwrap();
    let hv = t.config.hv_runtime.unwrap();
    assert_eq!(hv.image_path, r"C:\Program Files\Linux Containers\uvm.vhdx");
    assert_eq!(hv.boot_source, "Vhd");
    assert!(!hv.writable_boot_source);
    assert!(hv.linux_kernel_file.is_empty() && hv.linux_boot_parameters.is_empty());
}

#[test]
fn lcow_layers() {
    let mut v = lcow();
    remove(&mut v, "windows");
    assert_eq!(lcow_run(v).unwrap_err().to_string(), "spec.Windows must not be nil for LCOW containers");
    let mut v = lcow();
    set(&mut v, "windows/layerFolders", json!([]));
    assert_eq!(
        lcow_run(v).unwrap_err().to_string(),
        "OCI spec is invalid - at least one LayerFolders must be supplied to the runtime"
    );
    // One folder: it is the scratch, there are no read-only layers, Layers is null.
    let mut v = lcow();
    set(&mut v, "windows/layerFolders", json!([SCRATCH]));
    let c = lcow_run(v).unwrap().config;
    assert_eq!(c.layer_folder_path, SCRATCH);
    assert!(document(&c).unwrap().contains(r#""Layers":null"#));
    let c = lcow_run(lcow()).unwrap().config;
    assert_eq!(c.layers[0].path, format!(r"{BASE}\layer.vhd"));
}

#[test]
fn lcow_network() {
    let mut v = lcow();
    set(
        &mut v,
        "windows/network",
        json!({"endpointList": ["e"], "DNSSearchList": ["x", "y"], "allowUnqualifiedDNSQuery": true, "networkSharedContainerName": "n"}),
    );
    let c = lcow_run(v).unwrap().config;
    assert_eq!(c.endpoint_list, vec!["e"]);
    assert_eq!(c.dns_search_list, "x,y");
    assert!(c.allow_unqualified_dns_query);
    assert_eq!(c.network_shared_container_name, "n");
}

#[test]
fn lcow_bind_mounts() {
    let mut v = lcow();
    set(
        &mut v,
        "mounts",
        json!([
            {"destination": "/target", "type": "bind", "source": r"C:\host",
             "options": ["rbind", "uvmpath=/tmp/gcs/cid/binds", "ro"]},
            {"destination": "/rw", "type": "bind", "source": r"C:\rw",
             "options": ["rw", "uvmpath=/tmp/gcs/cid/binds"]},
            {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid"]}
        ]),
    );
    let t = lcow_run(v).unwrap();
    let md = &t.config.mapped_directories;
    assert_eq!(md.len(), 2, "only bind mounts are mapped");
    assert_eq!(md[0].host_path, r"C:\host");
    assert_eq!(md[0].container_path, "/tmp/gcs/cid/binds/target");
    assert!(md[0].create_in_utility_vm);
    assert!(md[0].read_only);
    assert!(!md[1].read_only);

    let mounts = t.spec.mounts().clone().unwrap();
    assert_eq!(mounts[0].source().as_deref().unwrap().to_str(), Some("/tmp/gcs/cid/binds/target"));
    // The original stripped uvmpath only from its loop copy: the guest sees all options.
    assert_eq!(mounts[0].options().clone().unwrap(), vec!["rbind", "uvmpath=/tmp/gcs/cid/binds", "ro"]);
    assert_eq!(mounts[2].source().as_deref().unwrap().to_str(), Some("proc"));
    assert_eq!(mounts[2].options().clone().unwrap(), vec!["nosuid"]);
}

#[test]
fn lcow_bind_mount_errors() {
    let mut v = lcow();
    set(
        &mut v,
        "mounts",
        json!([{"destination": "/t", "type": "bind", "source": r"C:\h", "options": ["uvmpath=/u", "nosuid"]}]),
    );
    let e = lcow_run(v).unwrap_err();
    assert_eq!(e.to_string(), r#"unsupported option "nosuid""#);
    assert_eq!(e.kind(), ErrorKind::InvalidParameter);

    let mut v = lcow();
    set(
        &mut v,
        "mounts",
        json!([{"destination": "/t", "type": "bind", "source": r"C:\h", "options": ["rbind", "ro"]}]),
    );
    assert_eq!(
        lcow_run(v).unwrap_err().to_string(),
        r"no uvmpath for bind mount {Destination:/t Type:bind Source:C:\h Options:[rbind ro]}"
    );

    // A bare `uvmpath` (the original indexed past the end and panicked) counts as empty.
    let mut v = lcow();
    set(&mut v, "mounts", json!([{"destination": "/t", "type": "bind", "source": r"C:\h", "options": ["uvmpath"]}]));
    assert!(matches!(lcow_run(v).unwrap_err(), TranslateError::NoUvmPath(_)));
}

// ------------------------------------------------------------------ process documents

fn process(v: Value) -> Process {
    serde_json::from_value(v).unwrap()
}

#[test]
fn environment_map_rules() {
    let env: Vec<String> =
        ["foo=bar", "car=hat", "a=b=c", "noequals", "foo=baz", "=x"].iter().map(|s| s.to_string()).collect();
    let m = environment(&env);
    assert_eq!(m.get("foo").map(String::as_str), Some("baz"), "later wins");
    assert_eq!(m.get("car").map(String::as_str), Some("hat"));
    assert_eq!(m.get("a").map(String::as_str), Some("b=c"));
    assert_eq!(m.get("").map(String::as_str), Some("x"));
    assert!(!m.contains_key("noequals"));
    assert_eq!(m.len(), 4);
}

#[test]
fn init_process_without_terminal() {
    let mut v = wcow();
    set(
        &mut v,
        "process",
        json!({"cwd": r"C:\work", "args": ["cmd", "/c", "echo hi"], "env": ["A=1"],
               "user": {"uid": 0, "gid": 0, "username": "ContainerUser"},
               "consoleSize": {"height": 24, "width": 80}}),
    );
    let p = init_process_config(&spec(v), true).unwrap();
    assert!(!p.emulate_console);
    assert!(p.create_std_in_pipe && p.create_std_out_pipe && p.create_std_err_pipe);
    assert_eq!(p.command_line, r#"cmd /c "echo hi""#);
    assert_eq!(p.user, "ContainerUser");
    assert_eq!(p.working_directory, r"C:\work");
    // hcsshim zeroed the console size of a process without a console.
    assert_eq!(p.console_size, [0, 0]);
    assert_eq!(
        document(&p).unwrap(),
        r#"{"CommandLine":"cmd /c \"echo hi\"","User":"ContainerUser","WorkingDirectory":"C:\\work","Environment":{"A":"1"},"CreateStdInPipe":true,"CreateStdOutPipe":true,"CreateStdErrPipe":true,"ConsoleSize":[0,0]}"#
    );
}

#[test]
fn init_process_with_terminal_and_command_line() {
    let mut v = wcow();
    set(
        &mut v,
        "process",
        json!({"terminal": true, "cwd": "C:\\", "args": ["ignored"], "commandLine": "cmd.exe /s /c dir",
               "user": {"uid": 0, "gid": 0}, "consoleSize": {"height": 24, "width": 80}}),
    );
    let p = init_process_config(&spec(v), true).unwrap();
    assert!(p.emulate_console);
    assert!(!p.create_std_err_pipe, "no stderr with a terminal");
    assert_eq!(p.console_size, [24, 80], "[height, width]");
    assert_eq!(p.command_line, "cmd.exe /s /c dir");
}

#[test]
fn servicing_init_has_no_pipes() {
    let mut v = wcow();
    set(&mut v, "windows/servicing", json!(true));
    let p = init_process_config(&spec(v), true).unwrap();
    assert!(!p.create_std_in_pipe && !p.create_std_out_pipe && !p.create_std_err_pipe);
}

#[test]
fn init_process_requires_process() {
    let mut v = wcow();
    remove(&mut v, "process");
    let e = init_process_config(&spec(v), true).unwrap_err();
    assert_eq!(e.to_string(), "OCI spec is invalid - Process must be set");
}

#[test]
fn lcow_init_process_carries_the_rewritten_spec() {
    let mut v = lcow();
    set(&mut v, "mounts", json!([{"destination": "/t", "type": "bind", "source": r"C:\h", "options": ["uvmpath=/u"]}]));
    let t = lcow_run(v).unwrap();
    let p = init_process_config(&t.spec, false).unwrap();
    assert!(p.command_line.is_empty());
    assert_eq!(p.command_args, vec!["sh", "-c", "echo hi"]);
    let oci: Value = serde_json::from_str(p.oci_specification.as_ref().unwrap().get()).unwrap();
    assert_eq!(oci["mounts"][0]["source"], json!("/u/t"));
    assert_eq!(oci["hostname"], json!("host"));
}

#[test]
fn exec_process_rules() {
    let container = spec(wcow());
    let p = exec_process_config(
        &container,
        true,
        &process(json!({"cwd": "", "args": ["ping", "-t", "a b"], "user": {"uid": 0, "gid": 0}, "env": ["X=1"]})),
    )
    .unwrap();
    assert!(p.create_std_in_pipe && p.create_std_out_pipe && p.create_std_err_pipe);
    assert!(!p.emulate_console);
    assert_eq!(p.working_directory, "C:\\", "falls back to the container's cwd");
    assert_eq!(p.command_line, r#"ping -t "a b""#);
    assert_eq!(p.environment.get("X").map(String::as_str), Some("1"));

    let p = exec_process_config(
        &container,
        true,
        &process(
            json!({"terminal": true, "cwd": r"D:\x", "args": ["cmd"], "user": {"uid": 0, "gid": 0, "username": "u"},
                        "consoleSize": {"height": 30, "width": 100}}),
        ),
    )
    .unwrap();
    assert!(p.emulate_console && !p.create_std_err_pipe && p.create_std_in_pipe);
    assert_eq!(p.working_directory, r"D:\x");
    assert_eq!(p.console_size, [30, 100]);
    assert_eq!(p.user, "u");

    // LCOW exec: argv, and no OCI spec.
    let p = exec_process_config(
        &spec(lcow()),
        false,
        &process(json!({"cwd": "/", "args": ["ls", "-l"], "user": {"uid": 0, "gid": 0}})),
    )
    .unwrap();
    assert_eq!(p.command_args, vec!["ls", "-l"]);
    assert!(p.oci_specification.is_none() && p.command_line.is_empty());
}

#[test]
fn errors_map_to_core_classes() {
    let e: berth_core::Error = err({
        let mut v = wcow();
        set(&mut v, "root/readonly", json!(true));
        v
    })
    .into();
    assert_eq!(e.kind(), ErrorKind::InvalidParameter);
    assert_eq!(e.message(), "OCI spec is invalid - Root.Readonly must not be set on Windows");
}

#[test]
fn parse_spec_errors_are_invalid_parameter() {
    assert_eq!(parse_spec(b"{").unwrap_err().kind(), ErrorKind::InvalidParameter);
    assert_eq!(parse_spec(br#"{"process": 5}"#).unwrap_err().kind(), ErrorKind::InvalidParameter);
}
