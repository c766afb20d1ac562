//! Stdio handles given to the engine for a container's init and each exec.
//!
//! The original handed the daemon a `cio.DirectIO` (a stdin writer and stdout/stderr readers)
//! through a callback. The same shape is kept: the engine's [`AttachStdio`] callback receives a
//! [`ProcessIo`] and takes ownership of the handles (typically spawning copy threads). With a
//! terminal, stdout reads the terminal's output and stdin writes to it; there is no stderr.

use std::io::{Read, Write};

use crate::error::Result;

/// The writing end of a process's stdin.
///
/// Closing delivers EOF to the process. Dropping closes too, but ignores errors. Backends must
/// make close reach the process even when other copies of the pipe exist (the HCS backend sends
/// CloseStdin to HCS; the Linux backend tells its monitor to drop its copy) — upstream bugs
/// (hcsshim #1899) came from a close that stayed local.
pub trait StdinWriter: Write + Send {
    /// Closes stdin; the process reads EOF once it drained what was written.
    fn close(self: Box<Self>) -> Result<()>;
}

/// Stdio of one process, handed to the engine's [`AttachStdio`] callback.
pub struct ProcessIo {
    /// The process's stdin, if it was requested (`with_stdin`, or always with a terminal).
    pub stdin: Option<Box<dyn StdinWriter>>,
    /// The process's stdout (or the terminal's output).
    pub stdout: Option<Box<dyn Read + Send>>,
    /// The process's stderr; `None` with a terminal.
    pub stderr: Option<Box<dyn Read + Send>>,
    /// True if the process has a terminal.
    pub terminal: bool,
}

impl std::fmt::Debug for ProcessIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessIo")
            .field("stdin", &self.stdin.is_some())
            .field("stdout", &self.stdout.is_some())
            .field("stderr", &self.stderr.is_some())
            .field("terminal", &self.terminal)
            .finish()
    }
}

/// The engine's stdio callback (the original's `StdioCallback`). Called at most once per
/// process, synchronously, before `start`/`exec` returns. An error aborts the operation, and
/// the backend then kills and reaps the process (the upstream bug fixed in moby afa3aec024 /
/// 55b664046c was a process left running after a failed attach).
pub type AttachStdio<'a> = &'a mut dyn FnMut(ProcessIo) -> Result<()>;
