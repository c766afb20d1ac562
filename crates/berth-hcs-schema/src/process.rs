//! Process documents: creation (`ProcessConfig`), modification requests and process status.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::is_false;

/// `ProcessModifyRequest.Operation` to resize the console.
pub const MODIFY_CONSOLE_SIZE: &str = "ConsoleSize";
/// `ProcessModifyRequest.Operation` to close one of the process's std handles.
pub const MODIFY_CLOSE_HANDLE: &str = "CloseHandle";
/// `CloseHandle.Handle` for stdin.
pub const STD_IN: &str = "StdIn";
/// `CloseHandle.Handle` for stdout.
pub const STD_OUT: &str = "StdOut";
/// `CloseHandle.Handle` for stderr.
pub const STD_ERR: &str = "StdErr";

/// The document given to `HcsCreateProcess` (hcsshim v0.6.8 `ProcessConfig`).
///
/// Every field was `omitempty` in Go; `ConsoleSize` is nevertheless always written because Go
/// never considers a fixed-size array empty.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ProcessConfig {
    /// Executable (unused by the original).
    #[serde(rename = "ApplicationName", skip_serializing_if = "String::is_empty")]
    pub application_name: String,
    /// Windows command line (WCOW).
    #[serde(rename = "CommandLine", skip_serializing_if = "String::is_empty")]
    pub command_line: String,
    /// argv (LCOW).
    #[serde(rename = "CommandArgs", skip_serializing_if = "Vec::is_empty")]
    pub command_args: Vec<String>,
    /// User name to run as.
    #[serde(rename = "User", skip_serializing_if = "String::is_empty")]
    pub user: String,
    /// Working directory.
    #[serde(rename = "WorkingDirectory", skip_serializing_if = "String::is_empty")]
    pub working_directory: String,
    /// Environment; Go wrote map keys sorted, as a BTreeMap does.
    #[serde(rename = "Environment", skip_serializing_if = "BTreeMap::is_empty")]
    pub environment: BTreeMap<String, String>,
    /// Give the process a console (a terminal).
    #[serde(rename = "EmulateConsole", skip_serializing_if = "is_false")]
    pub emulate_console: bool,
    /// Create a stdin pipe.
    #[serde(rename = "CreateStdInPipe", skip_serializing_if = "is_false")]
    pub create_std_in_pipe: bool,
    /// Create a stdout pipe.
    #[serde(rename = "CreateStdOutPipe", skip_serializing_if = "is_false")]
    pub create_std_out_pipe: bool,
    /// Create a stderr pipe.
    #[serde(rename = "CreateStdErrPipe", skip_serializing_if = "is_false")]
    pub create_std_err_pipe: bool,
    /// `[height, width]` of the console; always written.
    #[serde(rename = "ConsoleSize")]
    pub console_size: [u64; 2],
    /// Run in the utility VM rather than the container (sic: lower-case `m`).
    #[serde(rename = "CreateInUtilityVm", skip_serializing_if = "is_false")]
    pub create_in_utility_vm: bool,
    /// The OCI spec passed through to the Linux guest (LCOW init only), embedded verbatim.
    #[serde(rename = "OCISpecification", skip_serializing_if = "Option::is_none")]
    pub oci_specification: Option<Box<RawValue>>,
}

impl PartialEq for ProcessConfig {
    fn eq(&self, o: &Self) -> bool {
        self.application_name == o.application_name
            && self.command_line == o.command_line
            && self.command_args == o.command_args
            && self.user == o.user
            && self.working_directory == o.working_directory
            && self.environment == o.environment
            && self.emulate_console == o.emulate_console
            && self.create_std_in_pipe == o.create_std_in_pipe
            && self.create_std_out_pipe == o.create_std_out_pipe
            && self.create_std_err_pipe == o.create_std_err_pipe
            && self.console_size == o.console_size
            && self.create_in_utility_vm == o.create_in_utility_vm
            && self.oci_specification.as_ref().map(|r| r.get()) == o.oci_specification.as_ref().map(|r| r.get())
    }
}

/// `{"Height":h,"Width":w}` of a console-size modification.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConsoleSize {
    /// Rows.
    #[serde(rename = "Height")]
    pub height: u16,
    /// Columns.
    #[serde(rename = "Width")]
    pub width: u16,
}

/// `{"Handle":"StdIn"}` of a close-handle modification.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CloseHandle {
    /// [`STD_IN`], [`STD_OUT`] or [`STD_ERR`].
    #[serde(rename = "Handle")]
    pub handle: String,
}

/// The document given to `HcsModifyProcess`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProcessModifyRequest {
    /// [`MODIFY_CONSOLE_SIZE`] or [`MODIFY_CLOSE_HANDLE`].
    #[serde(rename = "Operation")]
    pub operation: String,
    /// Set for a console resize.
    #[serde(rename = "ConsoleSize", skip_serializing_if = "Option::is_none")]
    pub console_size: Option<ConsoleSize>,
    /// Set for a handle close.
    #[serde(rename = "CloseHandle", skip_serializing_if = "Option::is_none")]
    pub close_handle: Option<CloseHandle>,
}

impl ProcessModifyRequest {
    /// A resize request; HCS takes width and height, the document lists height first.
    pub fn console_size(width: u16, height: u16) -> Self {
        ProcessModifyRequest {
            operation: MODIFY_CONSOLE_SIZE.into(),
            console_size: Some(ConsoleSize { height, width }),
            close_handle: None,
        }
    }

    /// A request to close the process's stdin.
    pub fn close_stdin() -> Self {
        ProcessModifyRequest {
            operation: MODIFY_CLOSE_HANDLE.into(),
            console_size: None,
            close_handle: Some(CloseHandle { handle: STD_IN.into() }),
        }
    }
}

/// The document `HcsGetProcessProperties` returns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProcessStatus {
    /// Pid in the container.
    #[serde(rename = "ProcessId")]
    pub process_id: u32,
    /// Whether it has exited.
    #[serde(rename = "Exited")]
    pub exited: bool,
    /// Exit code, valid once exited.
    #[serde(rename = "ExitCode")]
    pub exit_code: u32,
    /// Non-zero if HCS could not wait for the process.
    #[serde(rename = "LastWaitResult")]
    pub last_wait_result: i32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{to_go_json, to_go_json_raw};

    #[test]
    fn empty_process_config_keeps_console_size() {
        assert_eq!(to_go_json(&ProcessConfig::default()).unwrap(), r#"{"ConsoleSize":[0,0]}"#);
    }

    #[test]
    fn process_config_order_and_spelling() {
        let mut env = BTreeMap::new();
        env.insert("b".to_string(), "2".to_string());
        env.insert("a".to_string(), "1=x".to_string());
        let p = ProcessConfig {
            application_name: "app".into(),
            command_line: "cmd /c echo".into(),
            command_args: vec!["sh".into()],
            user: "u".into(),
            working_directory: "C:\\".into(),
            environment: env,
            emulate_console: true,
            create_std_in_pipe: true,
            create_std_out_pipe: true,
            create_std_err_pipe: true,
            console_size: [24, 80],
            create_in_utility_vm: true,
            oci_specification: Some(to_go_json_raw(&serde_json::json!({"a": "<"})).unwrap()),
        };
        assert_eq!(
            to_go_json(&p).unwrap(),
            r#"{"ApplicationName":"app","CommandLine":"cmd /c echo","CommandArgs":["sh"],"User":"u","WorkingDirectory":"C:\\","Environment":{"a":"1=x","b":"2"},"EmulateConsole":true,"CreateStdInPipe":true,"CreateStdOutPipe":true,"CreateStdErrPipe":true,"ConsoleSize":[24,80],"CreateInUtilityVm":true,"OCISpecification":{"a":"\u003c"}}"#
        );
        let back: ProcessConfig = serde_json::from_str(&to_go_json(&p).unwrap()).unwrap();
        assert_eq!(back, p);
    }

    #[test]
    fn modify_requests_match_hcsshim() {
        assert_eq!(
            to_go_json(&ProcessModifyRequest::console_size(80, 24)).unwrap(),
            r#"{"Operation":"ConsoleSize","ConsoleSize":{"Height":24,"Width":80}}"#
        );
        assert_eq!(
            to_go_json(&ProcessModifyRequest::close_stdin()).unwrap(),
            r#"{"Operation":"CloseHandle","CloseHandle":{"Handle":"StdIn"}}"#
        );
    }
}
