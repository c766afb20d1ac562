//! Compute-system property queries and results: statistics (`docker stats`) and the process
//! list (`docker top`), as hcsshim v0.6.8 `container.go` defined them.
//!
//! Go `time.Time` values travel as RFC 3339 strings; they are kept as strings here (the
//! engine only forwards them). Go never omits a `time.Time` or a struct field, even with
//! `omitempty`, so those are always written, as the zero time when unset.

use serde::{Deserialize, Serialize};

use crate::{is_false, is_zero_u32, is_zero_u64};

/// Go's zero `time.Time` in JSON.
pub const GO_ZERO_TIME: &str = "0001-01-01T00:00:00Z";
/// Property type selecting [`Statistics`].
pub const PROPERTY_TYPE_STATISTICS: &str = "Statistics";
/// Property type selecting the process list.
pub const PROPERTY_TYPE_PROCESS_LIST: &str = "ProcessList";

fn zero_time() -> String {
    GO_ZERO_TIME.to_string()
}

/// The query given to `HcsGetComputeSystemProperties`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PropertyQuery {
    /// Which properties to return.
    #[serde(rename = "PropertyTypes", skip_serializing_if = "Vec::is_empty")]
    pub property_types: Vec<String>,
}

/// Memory counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MemoryStats {
    /// Committed bytes.
    #[serde(rename = "MemoryUsageCommitBytes", skip_serializing_if = "is_zero_u64")]
    pub usage_commit_bytes: u64,
    /// Peak committed bytes.
    #[serde(rename = "MemoryUsageCommitPeakBytes", skip_serializing_if = "is_zero_u64")]
    pub usage_commit_peak_bytes: u64,
    /// Private working set.
    #[serde(rename = "MemoryUsagePrivateWorkingSetBytes", skip_serializing_if = "is_zero_u64")]
    pub usage_private_working_set_bytes: u64,
}

/// CPU counters, in 100 ns units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProcessorStats {
    /// Total run time.
    #[serde(rename = "TotalRuntime100ns", skip_serializing_if = "is_zero_u64")]
    pub total_runtime_100ns: u64,
    /// User-mode run time.
    #[serde(rename = "RuntimeUser100ns", skip_serializing_if = "is_zero_u64")]
    pub runtime_user_100ns: u64,
    /// Kernel-mode run time.
    #[serde(rename = "RuntimeKernel100ns", skip_serializing_if = "is_zero_u64")]
    pub runtime_kernel_100ns: u64,
}

/// Storage counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StorageStats {
    /// Reads, normalized.
    #[serde(rename = "ReadCountNormalized", skip_serializing_if = "is_zero_u64")]
    pub read_count_normalized: u64,
    /// Bytes read.
    #[serde(rename = "ReadSizeBytes", skip_serializing_if = "is_zero_u64")]
    pub read_size_bytes: u64,
    /// Writes, normalized.
    #[serde(rename = "WriteCountNormalized", skip_serializing_if = "is_zero_u64")]
    pub write_count_normalized: u64,
    /// Bytes written.
    #[serde(rename = "WriteSizeBytes", skip_serializing_if = "is_zero_u64")]
    pub write_size_bytes: u64,
}

/// Network counters of one endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkStats {
    /// Bytes received.
    #[serde(rename = "BytesReceived", skip_serializing_if = "is_zero_u64")]
    pub bytes_received: u64,
    /// Bytes sent.
    #[serde(rename = "BytesSent", skip_serializing_if = "is_zero_u64")]
    pub bytes_sent: u64,
    /// Packets received.
    #[serde(rename = "PacketsReceived", skip_serializing_if = "is_zero_u64")]
    pub packets_received: u64,
    /// Packets sent.
    #[serde(rename = "PacketsSent", skip_serializing_if = "is_zero_u64")]
    pub packets_sent: u64,
    /// Incoming packets dropped.
    #[serde(rename = "DroppedPacketsIncoming", skip_serializing_if = "is_zero_u64")]
    pub dropped_packets_incoming: u64,
    /// Outgoing packets dropped.
    #[serde(rename = "DroppedPacketsOutgoing", skip_serializing_if = "is_zero_u64")]
    pub dropped_packets_outgoing: u64,
    /// HNS endpoint id.
    #[serde(rename = "EndpointId", skip_serializing_if = "String::is_empty")]
    pub endpoint_id: String,
    /// Instance id.
    #[serde(rename = "InstanceId", skip_serializing_if = "String::is_empty")]
    pub instance_id: String,
}

/// Statistics of a compute system (hcsshim `Statistics`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Statistics {
    /// When HCS took the sample (RFC 3339).
    #[serde(rename = "Timestamp")]
    pub timestamp: String,
    /// When the container started (RFC 3339).
    #[serde(rename = "ContainerStartTime")]
    pub container_start_time: String,
    /// Up time in 100 ns units.
    #[serde(rename = "Uptime100ns", skip_serializing_if = "is_zero_u64")]
    pub uptime_100ns: u64,
    /// Memory counters (a struct: never omitted).
    #[serde(rename = "Memory")]
    pub memory: MemoryStats,
    /// CPU counters (never omitted).
    #[serde(rename = "Processor")]
    pub processor: ProcessorStats,
    /// Storage counters (never omitted).
    #[serde(rename = "Storage")]
    pub storage: StorageStats,
    /// Per-endpoint network counters.
    #[serde(rename = "Network", skip_serializing_if = "Vec::is_empty")]
    pub network: Vec<NetworkStats>,
}

impl Default for Statistics {
    fn default() -> Self {
        Statistics {
            timestamp: zero_time(),
            container_start_time: zero_time(),
            uptime_100ns: 0,
            memory: MemoryStats::default(),
            processor: ProcessorStats::default(),
            storage: StorageStats::default(),
            network: Vec::new(),
        }
    }
}

/// One process of a compute system (hcsshim `ProcessListItem`), the row of `docker top`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProcessListItem {
    /// Creation time (RFC 3339).
    #[serde(rename = "CreateTimestamp")]
    pub create_timestamp: String,
    /// Image (executable) name.
    #[serde(rename = "ImageName", skip_serializing_if = "String::is_empty")]
    pub image_name: String,
    /// Kernel time in 100 ns units.
    #[serde(rename = "KernelTime100ns", skip_serializing_if = "is_zero_u64")]
    pub kernel_time_100ns: u64,
    /// Committed bytes.
    #[serde(rename = "MemoryCommitBytes", skip_serializing_if = "is_zero_u64")]
    pub memory_commit_bytes: u64,
    /// Private working set.
    #[serde(rename = "MemoryWorkingSetPrivateBytes", skip_serializing_if = "is_zero_u64")]
    pub memory_working_set_private_bytes: u64,
    /// Shared working set.
    #[serde(rename = "MemoryWorkingSetSharedBytes", skip_serializing_if = "is_zero_u64")]
    pub memory_working_set_shared_bytes: u64,
    /// Pid.
    #[serde(rename = "ProcessId", skip_serializing_if = "is_zero_u32")]
    pub process_id: u32,
    /// User time in 100 ns units.
    #[serde(rename = "UserTime100ns", skip_serializing_if = "is_zero_u64")]
    pub user_time_100ns: u64,
}

impl Default for ProcessListItem {
    fn default() -> Self {
        ProcessListItem {
            create_timestamp: zero_time(),
            image_name: String::new(),
            kernel_time_100ns: 0,
            memory_commit_bytes: 0,
            memory_working_set_private_bytes: 0,
            memory_working_set_shared_bytes: 0,
            process_id: 0,
            user_time_100ns: 0,
        }
    }
}

/// The document `HcsGetComputeSystemProperties` returns (the parts berth reads).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ContainerProperties {
    /// Compute system id.
    #[serde(rename = "Id")]
    pub id: String,
    /// Name.
    #[serde(rename = "Name")]
    pub name: String,
    /// System type.
    #[serde(rename = "SystemType")]
    pub system_type: String,
    /// Owner.
    #[serde(rename = "Owner")]
    pub owner: String,
    /// Whether it stopped.
    #[serde(rename = "Stopped", skip_serializing_if = "is_false")]
    pub stopped: bool,
    /// How it exited.
    #[serde(rename = "ExitType", skip_serializing_if = "String::is_empty")]
    pub exit_type: String,
    /// Statistics, when asked for.
    #[serde(rename = "Statistics")]
    pub statistics: Statistics,
    /// Process list, when asked for.
    #[serde(rename = "ProcessList", skip_serializing_if = "Vec::is_empty")]
    pub process_list: Vec<ProcessListItem>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::to_go_json;

    #[test]
    fn zero_statistics_match_go() {
        // Go: json.Marshal(hcsshim.Statistics{}) — time.Time and struct fields stay.
        assert_eq!(
            to_go_json(&Statistics::default()).unwrap(),
            r#"{"Timestamp":"0001-01-01T00:00:00Z","ContainerStartTime":"0001-01-01T00:00:00Z","Memory":{},"Processor":{},"Storage":{}}"#
        );
        assert_eq!(to_go_json(&ProcessListItem::default()).unwrap(), r#"{"CreateTimestamp":"0001-01-01T00:00:00Z"}"#);
    }

    #[test]
    fn properties_parse_from_hcs() {
        let doc = r#"{"Id":"c1","Name":"c1","SystemType":"Container","Owner":"docker",
            "Statistics":{"Timestamp":"2017-12-07T20:52:14.1Z","Uptime100ns":5,
            "Memory":{"MemoryUsageCommitBytes":7},"Processor":{"TotalRuntime100ns":9},
            "Storage":{"ReadSizeBytes":3},"Network":[{"BytesSent":1,"EndpointId":"e"}]},
            "ProcessList":[{"ImageName":"cmd.exe","ProcessId":4,"CreateTimestamp":"2017-12-07T20:52:14Z"}]}"#;
        let p: ContainerProperties = serde_json::from_str(doc).unwrap();
        assert_eq!(p.statistics.memory.usage_commit_bytes, 7);
        assert_eq!(p.statistics.network[0].endpoint_id, "e");
        assert_eq!(p.statistics.container_start_time, GO_ZERO_TIME);
        assert_eq!(p.process_list[0].image_name, "cmd.exe");
        assert_eq!(p.process_list[0].process_id, 4);
    }

    #[test]
    fn query_document() {
        let q = PropertyQuery { property_types: vec![PROPERTY_TYPE_STATISTICS.into()] };
        assert_eq!(to_go_json(&q).unwrap(), r#"{"PropertyTypes":["Statistics"]}"#);
    }
}
