//! The result document HCS returns alongside a failing HRESULT (hcsshim `hcsResult`).

use serde::{Deserialize, Serialize};

use crate::{is_zero_u16, is_zero_u32};

/// One event of an HCS error result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ErrorEvent {
    /// Formatted message.
    #[serde(rename = "Message", skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Stack trace.
    #[serde(rename = "StackTrace", skip_serializing_if = "String::is_empty")]
    pub stack_trace: String,
    /// Event provider.
    #[serde(rename = "Provider", skip_serializing_if = "String::is_empty")]
    pub provider: String,
    /// Event id.
    #[serde(rename = "EventId", skip_serializing_if = "is_zero_u16")]
    pub event_id: u16,
    /// Flags.
    #[serde(rename = "Flags", skip_serializing_if = "is_zero_u32")]
    pub flags: u32,
    /// Source.
    #[serde(rename = "Source", skip_serializing_if = "String::is_empty")]
    pub source: String,
}

/// The `result` out-parameter of an HCS call.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HcsResult {
    /// The HRESULT.
    #[serde(rename = "Error")]
    pub error: i32,
    /// Its message.
    #[serde(rename = "ErrorMessage")]
    pub error_message: String,
    /// Detail events.
    #[serde(rename = "ErrorEvents", skip_serializing_if = "Vec::is_empty")]
    pub error_events: Vec<ErrorEvent>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hcs_error_result() {
        let r: HcsResult = serde_json::from_str(
            r#"{"Error":-2147024894,"ErrorMessage":"The system cannot find the file specified.","ErrorEvents":[{"Message":"m","EventId":7}]}"#,
        )
        .unwrap();
        assert_eq!(r.error as u32, 0x8007_0002);
        assert_eq!(r.error_events[0].event_id, 7);
    }
}
