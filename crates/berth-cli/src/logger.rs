//! The CLI's logger: `--log FILE --log-format text|json --log-level LEVEL --debug`.
//!
//! JSON lines carry `level`, `msg` and `time`, which the containerd runc shim reads back from
//! `log.json` to build its error messages. Without `--log`, messages go to stderr as text.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::SystemTime;

use berth_core::time::format_rfc3339_nanos;

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `time="..." level=warning msg="..."`-like text.
    Text,
    /// One JSON object per line.
    Json,
}

struct Logger {
    level: log::LevelFilter,
    format: Format,
    file: Option<Mutex<File>>,
}

fn level_name(l: log::Level) -> &'static str {
    match l {
        log::Level::Error => "error",
        log::Level::Warn => "warning",
        log::Level::Info => "info",
        log::Level::Debug => "debug",
        log::Level::Trace => "trace",
    }
}

/// One formatted line.
pub fn line(format: Format, level: log::Level, msg: &str) -> String {
    let time = format_rfc3339_nanos(SystemTime::now());
    match format {
        Format::Json => {
            let v = serde_json::json!({ "level": level_name(level), "msg": msg, "time": time });
            format!("{v}\n")
        }
        Format::Text => format!("time={time:?} level={} msg={msg:?}\n", level_name(level)),
    }
}

impl log::Log for Logger {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= self.level
    }

    fn log(&self, r: &log::Record<'_>) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let text = line(self.format, r.level(), &r.args().to_string());
        match &self.file {
            Some(f) => {
                if let Ok(mut f) = f.lock() {
                    let _ = f.write_all(text.as_bytes());
                }
            }
            None => {
                let _ = std::io::stderr().write_all(text.as_bytes());
            }
        }
    }

    fn flush(&self) {}
}

/// Installs the logger. Returns the opened log file path's format for error reporting.
pub fn init(path: Option<&Path>, format: Format, level: log::LevelFilter) -> anyhow::Result<()> {
    let file = match path {
        Some(p) => Some(Mutex::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| anyhow::anyhow!("--log {}: {e}", p.display()))?,
        )),
        None => None,
    };
    let logger = Logger { level, format, file };
    log::set_max_level(level);
    log::set_boxed_logger(Box::new(logger)).map_err(|e| anyhow::anyhow!("installing the logger: {e}"))
}
