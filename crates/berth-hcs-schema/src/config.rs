//! The compute-system creation document (`hcsshim.ContainerConfig`) and its parts.
//!
//! Field order is the Go struct order of hcsshim v0.6.8 `interface.go`; each field's attribute
//! says whether Go omitted it when empty. Fields without `skip_serializing_if` had no
//! `omitempty` tag and are always written.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{is_false, is_zero_i64, is_zero_u32, is_zero_u64};

/// A read-only image layer: its id (a GUID string) and folder.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Layer {
    /// GUID of the layer, from NameToGuid of the folder's base name.
    #[serde(rename = "ID")]
    pub id: String,
    /// Folder (WCOW) or `layer.vhd` file (LCOW) of the layer.
    #[serde(rename = "Path")]
    pub path: String,
}

/// A host folder mapped into the container (or its utility VM). No field is ever omitted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MappedDir {
    /// Folder on the host.
    #[serde(rename = "HostPath")]
    pub host_path: String,
    /// Path in the container, or in the utility VM when `create_in_utility_vm` is set.
    #[serde(rename = "ContainerPath")]
    pub container_path: String,
    /// Map read-only.
    #[serde(rename = "ReadOnly")]
    pub read_only: bool,
    /// Bandwidth limit in bytes/s (never set by the original).
    #[serde(rename = "BandwidthMaximum")]
    pub bandwidth_maximum: u64,
    /// IOPS limit (never set by the original).
    #[serde(rename = "IOPSMaximum")]
    pub iops_maximum: u64,
    /// The path is in the utility VM (LCOW bind mounts).
    #[serde(rename = "CreateInUtilityVM")]
    pub create_in_utility_vm: bool,
}

/// A host named pipe mapped into the container. Neither field is ever omitted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MappedPipe {
    /// The host pipe (`\\.\pipe\name` or any host path).
    #[serde(rename = "HostPath")]
    pub host_path: String,
    /// The pipe's name in the container, without the `\\.\pipe\` prefix.
    #[serde(rename = "ContainerPipeName")]
    pub container_pipe_name: String,
}

/// How to boot the utility VM of a Hyper-V isolated container. Every field is omitempty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HvRuntime {
    /// UtilityVM folder (WCOW), kernel/initrd folder or boot VHDX (LCOW).
    #[serde(rename = "ImagePath", skip_serializing_if = "String::is_empty")]
    pub image_path: String,
    /// Do not use a VM template.
    #[serde(rename = "SkipTemplate", skip_serializing_if = "is_false")]
    pub skip_template: bool,
    /// LCOW initrd file name (in `image_path`).
    #[serde(rename = "LinuxInitrdFile", skip_serializing_if = "String::is_empty")]
    pub linux_initrd_file: String,
    /// LCOW kernel file name (in `image_path`).
    #[serde(rename = "LinuxKernelFile", skip_serializing_if = "String::is_empty")]
    pub linux_kernel_file: String,
    /// Extra LCOW kernel command line.
    #[serde(rename = "LinuxBootParameters", skip_serializing_if = "String::is_empty")]
    pub linux_boot_parameters: String,
    /// `"Vhd"` to boot from `image_path` as a VHD.
    #[serde(rename = "BootSource", skip_serializing_if = "String::is_empty")]
    pub boot_source: String,
    /// Whether the boot VHD may be written.
    #[serde(rename = "WritableBootSource", skip_serializing_if = "is_false")]
    pub writable_boot_source: bool,
}

/// A VHD attached to the utility VM.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MappedVirtualDisk {
    /// VHD on the host (omitempty).
    #[serde(rename = "HostPath", skip_serializing_if = "String::is_empty")]
    pub host_path: String,
    /// Where it appears (never omitted).
    #[serde(rename = "ContainerPath")]
    pub container_path: String,
    /// Attach in the utility VM (omitempty).
    #[serde(rename = "CreateInUtilityVM", skip_serializing_if = "is_false")]
    pub create_in_utility_vm: bool,
    /// Attach read-only (omitempty).
    #[serde(rename = "ReadOnly", skip_serializing_if = "is_false")]
    pub read_only: bool,
    /// `""`, `Disabled`, `Enabled`, `Private` or `PrivateAllowSharing` (omitempty).
    #[serde(rename = "Cache", skip_serializing_if = "String::is_empty")]
    pub cache: String,
    /// Attach without mounting. hcsshim's tag was `json:",omitempty:"` (sic), which Go does
    /// not recognise as omitempty, so this field is always written.
    #[serde(rename = "AttachOnly")]
    pub attach_only: bool,
}

/// The document given to `HcsCreateComputeSystem` (hcsshim v0.6.8 `ContainerConfig`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ContainerConfig {
    /// `"Container"` (WCOW) or `"container"` (LCOW, as the original spelled it).
    #[serde(rename = "SystemType")]
    pub system_type: String,
    /// The container id.
    #[serde(rename = "Name")]
    pub name: String,
    /// Management stack tag (`"docker"`).
    #[serde(rename = "Owner", skip_serializing_if = "String::is_empty")]
    pub owner: String,
    /// Root volume, `\\?\Volume{GUID}` without the trailing backslash (process isolation).
    #[serde(rename = "VolumePath", skip_serializing_if = "String::is_empty")]
    pub volume_path: String,
    /// Do not flush disk writes while booting.
    #[serde(rename = "IgnoreFlushesDuringBoot", skip_serializing_if = "is_false")]
    pub ignore_flushes_during_boot: bool,
    /// The writable (scratch) layer folder.
    #[serde(rename = "LayerFolderPath", skip_serializing_if = "String::is_empty")]
    pub layer_folder_path: String,
    /// Read-only layers, top first. Not omitempty: `null` when there are none.
    #[serde(rename = "Layers", serialize_with = "null_if_empty", deserialize_with = "empty_if_null")]
    pub layers: Vec<Layer>,
    /// Credential spec (gMSA), as a JSON string.
    #[serde(rename = "Credentials", skip_serializing_if = "String::is_empty")]
    pub credentials: String,
    /// Number of processors.
    #[serde(rename = "ProcessorCount", skip_serializing_if = "is_zero_u32")]
    pub processor_count: u32,
    /// Relative CPU weight, 1..10000 (0 = default).
    #[serde(rename = "ProcessorWeight", skip_serializing_if = "is_zero_u64")]
    pub processor_weight: u64,
    /// CPU cap in percent x 100, 1..10000.
    #[serde(rename = "ProcessorMaximum", skip_serializing_if = "is_zero_i64")]
    pub processor_maximum: i64,
    /// Storage IOPS cap.
    #[serde(rename = "StorageIOPSMaximum", skip_serializing_if = "is_zero_u64")]
    pub storage_iops_maximum: u64,
    /// Storage bandwidth cap in bytes/s.
    #[serde(rename = "StorageBandwidthMaximum", skip_serializing_if = "is_zero_u64")]
    pub storage_bandwidth_maximum: u64,
    /// Sandbox size (never set by the original).
    #[serde(rename = "StorageSandboxSize", skip_serializing_if = "is_zero_u64")]
    pub storage_sandbox_size: u64,
    /// Memory cap in MB.
    #[serde(rename = "MemoryMaximumInMB", skip_serializing_if = "is_zero_i64")]
    pub memory_maximum_in_mb: i64,
    /// Host name.
    #[serde(rename = "HostName", skip_serializing_if = "String::is_empty")]
    pub host_name: String,
    /// Mapped folders.
    #[serde(rename = "MappedDirectories", skip_serializing_if = "Vec::is_empty")]
    pub mapped_directories: Vec<MappedDir>,
    /// Mapped named pipes.
    #[serde(rename = "MappedPipes", skip_serializing_if = "Vec::is_empty")]
    pub mapped_pipes: Vec<MappedPipe>,
    /// Hyper-V isolation. Not omitempty: always written.
    #[serde(rename = "HvPartition")]
    pub hv_partition: bool,
    /// Share the network namespace of this container.
    #[serde(rename = "NetworkSharedContainerName", skip_serializing_if = "String::is_empty")]
    pub network_shared_container_name: String,
    /// HNS endpoint ids.
    #[serde(rename = "EndpointList", skip_serializing_if = "Vec::is_empty")]
    pub endpoint_list: Vec<String>,
    /// Utility VM boot settings (Hyper-V isolation).
    #[serde(rename = "HvRuntime", skip_serializing_if = "Option::is_none")]
    pub hv_runtime: Option<HvRuntime>,
    /// Windows Update servicing mode (legacy).
    #[serde(rename = "Servicing", skip_serializing_if = "is_false")]
    pub servicing: bool,
    /// Allow unqualified DNS names.
    #[serde(rename = "AllowUnqualifiedDNSQuery", skip_serializing_if = "is_false")]
    pub allow_unqualified_dns_query: bool,
    /// DNS search list, comma-joined.
    #[serde(rename = "DNSSearchList", skip_serializing_if = "String::is_empty")]
    pub dns_search_list: String,
    /// `"linux"` for LCOW.
    #[serde(rename = "ContainerType", skip_serializing_if = "String::is_empty")]
    pub container_type: String,
    /// Tear the system down when the last handle closes (LCOW).
    #[serde(rename = "TerminateOnLastHandleClosed", skip_serializing_if = "is_false")]
    pub terminate_on_last_handle_closed: bool,
    /// VHDs attached to the utility VM.
    #[serde(rename = "MappedVirtualDisks", skip_serializing_if = "Vec::is_empty")]
    pub mapped_virtual_disks: Vec<MappedVirtualDisk>,
}

fn null_if_empty<S: Serializer>(v: &[Layer], s: S) -> Result<S::Ok, S::Error> {
    // Go writes a nil slice as null; the original only ever built Layers by appending, so an
    // empty list was always nil.
    if v.is_empty() {
        s.serialize_none()
    } else {
        s.collect_seq(v)
    }
}

fn empty_if_null<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Layer>, D::Error> {
    Ok(Option::<Vec<Layer>>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::to_go_json;

    #[test]
    fn empty_config_matches_go() {
        // json.Marshal(hcsshim.ContainerConfig{}): SystemType, Name, Layers and HvPartition
        // carry no json tag in hcsshim v0.6.8 interface.go, so all four are written. (The
        // research notes quote this output without "Name", but Name has no omitempty tag.)
        assert_eq!(
            to_go_json(&ContainerConfig::default()).unwrap(),
            r#"{"SystemType":"","Name":"","Layers":null,"HvPartition":false}"#
        );
    }

    #[test]
    fn mapped_dir_and_pipe_fields_always_present() {
        assert_eq!(
            to_go_json(&MappedDir::default()).unwrap(),
            r#"{"HostPath":"","ContainerPath":"","ReadOnly":false,"BandwidthMaximum":0,"IOPSMaximum":0,"CreateInUtilityVM":false}"#
        );
        assert_eq!(to_go_json(&MappedPipe::default()).unwrap(), r#"{"HostPath":"","ContainerPipeName":""}"#);
    }

    #[test]
    fn attach_only_always_written_and_hv_runtime_all_omitempty() {
        assert_eq!(to_go_json(&MappedVirtualDisk::default()).unwrap(), r#"{"ContainerPath":"","AttachOnly":false}"#);
        assert_eq!(to_go_json(&HvRuntime::default()).unwrap(), "{}");
    }

    #[test]
    fn full_config_field_order_is_go_struct_order() {
        let c = ContainerConfig {
            system_type: "Container".into(),
            name: "n".into(),
            owner: "docker".into(),
            volume_path: "v".into(),
            ignore_flushes_during_boot: true,
            layer_folder_path: "l".into(),
            layers: vec![Layer { id: "i".into(), path: "p".into() }],
            credentials: "c".into(),
            processor_count: 1,
            processor_weight: 2,
            processor_maximum: 3,
            storage_iops_maximum: 4,
            storage_bandwidth_maximum: 5,
            storage_sandbox_size: 6,
            memory_maximum_in_mb: 7,
            host_name: "h".into(),
            mapped_directories: vec![MappedDir::default()],
            mapped_pipes: vec![MappedPipe::default()],
            hv_partition: true,
            network_shared_container_name: "s".into(),
            endpoint_list: vec!["e".into()],
            hv_runtime: Some(HvRuntime { image_path: "u".into(), ..Default::default() }),
            servicing: true,
            allow_unqualified_dns_query: true,
            dns_search_list: "a,b".into(),
            container_type: "linux".into(),
            terminate_on_last_handle_closed: true,
            mapped_virtual_disks: vec![MappedVirtualDisk::default()],
        };
        let got = to_go_json(&c).unwrap();
        let keys = [
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
        let mut last = 0;
        for k in keys {
            let pos = got.find(&format!("\"{k}\":")).unwrap_or_else(|| panic!("{k} missing in {got}"));
            assert!(pos >= last, "{k} out of order in {got}");
            last = pos;
        }
        let back: ContainerConfig = serde_json::from_str(&got).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn null_layers_parse_as_empty() {
        let c: ContainerConfig =
            serde_json::from_str(r#"{"SystemType":"","Layers":null,"HvPartition":false}"#).unwrap();
        assert!(c.layers.is_empty());
    }
}
