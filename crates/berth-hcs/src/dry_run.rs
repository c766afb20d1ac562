//! The `berth hcs-config` dry run: the HCS document berth would send for a bundle, without
//! talking to HCS.
//!
//! On Windows, layer ids come from vmcompute's `NameToGuid` and paths are checked for real.
//! Elsewhere layer ids come from [`StandInNameToGuid`] (**not** the real algorithm: ids of
//! layers other than the published examples differ from what Windows computes) and paths are
//! looked up locally with `\` read as `/` ([`crate::host::SlashHost`]).

use std::path::Path;
use std::sync::Arc;

use berth_core::{Error, ErrorKind};

use crate::guid::{NameToGuid, StandInNameToGuid};
use crate::host::HostInfo;
use crate::lcow::{LcowConfig, LcowEnv};
use crate::translate::{
    document, init_process_config, is_windows_spec, parse_spec, translate_container, ParsedSpec, TranslateContext,
};

/// Which document to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Document {
    /// The `ContainerConfig` for `HcsCreateComputeSystem`.
    Container,
    /// The init's `ProcessConfig` for `HcsCreateProcess`.
    InitProcess,
}

/// Renders the document for an already parsed spec with the given layer-id source and host.
/// `lcow_options` are opengcs `lcow.*=value` options, used for Linux specs only.
pub fn render(
    parsed: &ParsedSpec,
    id: &str,
    lcow_options: &[String],
    lcow_env: &LcowEnv,
    which: Document,
    name_to_guid: &dyn NameToGuid,
    host: &dyn HostInfo,
) -> Result<String, Error> {
    let lcow = if is_windows_spec(&parsed.spec) {
        None
    } else {
        Some(LcowConfig::from_options(lcow_options, lcow_env, host)?)
    };
    let t = translate_container(
        id,
        &parsed.spec,
        parsed.credential_spec.as_deref(),
        lcow.as_ref(),
        TranslateContext { name_to_guid, host },
    )?;
    match which {
        Document::Container => document(&t.config),
        Document::InitProcess => document(&init_process_config(&t.spec, t.is_windows)?),
    }
}

/// Reads `<bundle>/config.json` and renders the document with this host's facts (see the
/// module docs).
pub fn hcs_config(bundle: &Path, id: &str, lcow_options: &[String], which: Document) -> Result<String, Error> {
    if id.is_empty() {
        return Err(Error::invalid_parameter("container id must not be empty"));
    }
    let path = bundle.join("config.json");
    let bytes = std::fs::read(&path).map_err(|e| {
        let kind = if e.kind() == std::io::ErrorKind::NotFound { ErrorKind::NotFound } else { ErrorKind::System };
        Error::with_source(kind, format!("reading {}", path.display()), e)
    })?;
    let parsed = parse_spec(&bytes)?;
    let (n2g, host) = host_services();
    render(&parsed, id, lcow_options, &LcowEnv::from_process(), which, n2g.as_ref(), host.as_ref())
}

#[cfg(windows)]
fn host_services() -> (Arc<dyn NameToGuid>, Arc<dyn HostInfo>) {
    let n2g: Arc<dyn NameToGuid> = match crate::hcs::HcsApi::load_default() {
        Ok(api) => Arc::new(crate::hcs::VmcomputeNameToGuid(api)),
        Err(e) => {
            log::warn!("{e}; layer ids come from the stand-in NameToGuid");
            Arc::new(StandInNameToGuid)
        }
    };
    (n2g, Arc::new(crate::host::RealHost))
}

#[cfg(not(windows))]
fn host_services() -> (Arc<dyn NameToGuid>, Arc<dyn HostInfo>) {
    (Arc::new(StandInNameToGuid), Arc::new(crate::host::SlashHost))
}
