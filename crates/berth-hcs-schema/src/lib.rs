//! The Windows Host Compute Service (HCS) v1 schema, as hcsshim v0.6.8 spoke it.
//!
//! HCS takes and returns JSON documents. hcsshim described them as Go structs and let
//! `encoding/json` write them; what HCS received was therefore shaped by Go's rules:
//!
//! * keys are the Go field names verbatim (`HvPartition`, `DNSSearchList`), in struct order;
//! * a field without a `json` tag is **always** written, even when empty: `Layers` is `null`
//!   when there are no layers, `HvPartition` is always `false`/`true`, every `MappedDir` field
//!   is present;
//! * `omitempty` drops `""`, `0`, `false`, empty slices and maps, and nil pointers — but never a
//!   fixed-size array (`ConsoleSize` is always `[h,w]`) or a struct (`Statistics.Memory`);
//! * `MappedVirtualDisk.AttachOnly` has the typo tag `json:",omitempty:"`, which Go reads as
//!   "no omitempty", so it is always written;
//! * strings escape `<`, `>`, `&`, U+2028 and U+2029 as `\u003c`-style sequences (HTML-safe
//!   output), and control characters other than `\n`, `\r`, `\t` as `\u00XX` (Go before 1.22
//!   wrote `\b` and `\f` that way too; hcsshim of that era was built with such a Go).
//!
//! The types here reproduce exactly that: [`to_go_json`] writes them byte-for-byte as Go did.
//! Every type also deserializes (missing fields take their zero value, as in Go), so HCS result
//! documents (statistics, process lists, process status, error results) parse with the same
//! types.
#![forbid(unsafe_code)]

mod config;
mod gojson;
mod process;
mod properties;
mod result;

pub use config::{ContainerConfig, HvRuntime, Layer, MappedDir, MappedPipe, MappedVirtualDisk};
pub use gojson::{to_go_json, to_go_json_raw, GoFormatter};
pub use process::{
    CloseHandle, ConsoleSize, ProcessConfig, ProcessModifyRequest, ProcessStatus, MODIFY_CLOSE_HANDLE,
    MODIFY_CONSOLE_SIZE, STD_ERR, STD_IN, STD_OUT,
};
pub use properties::{
    ContainerProperties, MemoryStats, NetworkStats, ProcessListItem, ProcessorStats, PropertyQuery, Statistics,
    StorageStats, GO_ZERO_TIME, PROPERTY_TYPE_PROCESS_LIST, PROPERTY_TYPE_STATISTICS,
};
pub use result::{ErrorEvent, HcsResult};

/// `ContainerConfig.SystemType` for a Windows container (process or Hyper-V isolated).
pub const SYSTEM_TYPE_CONTAINER: &str = "Container";
/// `ContainerConfig.SystemType` the original used for Linux containers (lower case, sic).
pub const SYSTEM_TYPE_CONTAINER_LCOW: &str = "container";
/// `ContainerConfig.ContainerType` for Linux containers on Windows.
pub const CONTAINER_TYPE_LINUX: &str = "linux";
/// `ContainerConfig.Owner`: lets HCS tell container management stacks apart.
pub const DEFAULT_OWNER: &str = "docker";
/// `HvRuntime.BootSource` to boot a Linux utility VM from a VHD(X).
pub const BOOT_SOURCE_VHD: &str = "Vhd";

// Go's `omitempty` predicates, shared by the modules.
pub(crate) fn is_false(b: &bool) -> bool {
    !*b
}
pub(crate) fn is_zero_u16(v: &u16) -> bool {
    *v == 0
}
pub(crate) fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}
pub(crate) fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}
pub(crate) fn is_zero_i64(v: &i64) -> bool {
    *v == 0
}
