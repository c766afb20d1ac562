//! Stdio handles given to the engine, and the drain latch that orders output before exits.
//!
//! Readers: plain pipe (or PTY master) descriptors. Each reader handed out for a process holds
//! one count of the process's [`Drain`]; the count is released when the reader returns end of
//! file (or an error) or is dropped. The process's exit event is delivered once every count is
//! released, or after the client's drain grace period, whichever comes first (see
//! docs/embedding.md, "Output before exit"). A PTY master returns `EIO` once the terminal's
//! last slave descriptor closes; the reader reports that as end of file.
//!
//! Writer: the engine's stdin writer shares one slot with the client, so `close_stdin` on the
//! client closes it even while the engine still holds the writer. Closing (or dropping) also
//! tells the monitor to drop its own copy, which it keeps only so a restarted engine can
//! reattach; without that second step the process would never see EOF.

use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use berth_core::{Result, StdinWriter};

use crate::conn::Conn;
use crate::wire::Request;

/// Counts the output readers of one process that have not reached end of file yet.
#[derive(Debug, Default)]
pub(crate) struct Drain {
    open: Mutex<usize>,
    cv: Condvar,
}

impl Drain {
    pub(crate) fn new(readers: usize) -> Arc<Self> {
        Arc::new(Drain { open: Mutex::new(readers), cv: Condvar::new() })
    }

    fn release(&self) {
        let mut n = self.open.lock().unwrap_or_else(|p| p.into_inner());
        *n = n.saturating_sub(1);
        if *n == 0 {
            self.cv.notify_all();
        }
    }

    /// Waits until every reader is done or `grace` passes. Returns true if drained.
    pub(crate) fn wait(&self, grace: Duration) -> bool {
        let deadline = Instant::now() + grace;
        let mut n = self.open.lock().unwrap_or_else(|p| p.into_inner());
        while *n > 0 {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            n = match self.cv.wait_timeout(n, deadline - now) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
        true
    }
}

/// stdout/stderr (or the terminal) of a process, as given to the engine.
pub(crate) struct OutputReader {
    fd: OwnedFd,
    drain: Option<Arc<Drain>>,
    terminal: bool,
}

impl OutputReader {
    pub(crate) fn new(fd: OwnedFd, drain: Arc<Drain>, terminal: bool) -> Self {
        OutputReader { fd, drain: Some(drain), terminal }
    }

    fn done(&mut self) {
        if let Some(d) = self.drain.take() {
            d.release();
        }
    }
}

impl Read for OutputReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            match rustix::io::read(&self.fd, &mut *buf) {
                Ok(0) => {
                    self.done();
                    return Ok(0);
                }
                Ok(n) => return Ok(n),
                Err(rustix::io::Errno::INTR) => continue,
                Err(rustix::io::Errno::IO) if self.terminal => {
                    self.done();
                    return Ok(0);
                }
                Err(e) => {
                    self.done();
                    return Err(e.into());
                }
            }
        }
    }
}

impl Drop for OutputReader {
    fn drop(&mut self) {
        self.done();
    }
}

/// The slot holding the write end of a process's stdin, shared by the engine's writer and
/// the client.
#[derive(Debug, Default)]
pub(crate) struct StdinSlot {
    fd: Mutex<Option<Arc<OwnedFd>>>,
}

impl StdinSlot {
    pub(crate) fn new(fd: OwnedFd) -> Arc<Self> {
        Arc::new(StdinSlot { fd: Mutex::new(Some(Arc::new(fd))) })
    }

    fn get(&self) -> Option<Arc<OwnedFd>> {
        self.fd.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Drops the client's reference. A write in progress keeps the descriptor open until it
    /// returns, so data already accepted is read before EOF.
    pub(crate) fn close(&self) {
        self.fd.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}

/// The engine's stdin writer.
pub(crate) struct InputWriter {
    slot: Arc<StdinSlot>,
    conn: Weak<Conn>,
    process_id: String,
    closed: bool,
}

impl InputWriter {
    pub(crate) fn new(slot: Arc<StdinSlot>, conn: &Arc<Conn>, process_id: &str) -> Self {
        InputWriter { slot, conn: Arc::downgrade(conn), process_id: process_id.to_string(), closed: false }
    }

    fn shut(&mut self) -> Result<()> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        self.slot.close();
        match self.conn.upgrade() {
            Some(c) => c.notify(Request::CloseStdin { process_id: self.process_id.clone() }),
            None => Ok(()),
        }
    }
}

impl Write for InputWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let fd = self.slot.get().ok_or_else(|| io::Error::new(io::ErrorKind::BrokenPipe, "stdin is closed"))?;
        loop {
            match rustix::io::write(&*fd, buf) {
                Ok(n) => return Ok(n),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl StdinWriter for InputWriter {
    fn close(mut self: Box<Self>) -> Result<()> {
        self.shut()
    }
}

impl Drop for InputWriter {
    fn drop(&mut self) {
        let _ = self.shut();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drain_releases_on_eof_and_on_drop() {
        let d = Drain::new(2);
        let (r1, w1) = rustix::pipe::pipe().unwrap();
        let (r2, _w2) = rustix::pipe::pipe().unwrap();
        let mut a = OutputReader::new(r1, d.clone(), false);
        let b = OutputReader::new(r2, d.clone(), false);
        rustix::io::write(&w1, b"hi").unwrap();
        drop(w1);
        let mut s = String::new();
        a.read_to_string(&mut s).unwrap();
        assert_eq!(s, "hi");
        assert!(!d.wait(Duration::from_millis(1)), "one reader is still open");
        drop(b);
        assert!(d.wait(Duration::from_secs(5)));
        drop(a); // A second release must not underflow or matter.
        assert!(d.wait(Duration::ZERO));
    }

    #[test]
    fn closed_slot_refuses_writes_and_delivers_eof() {
        let (r, w) = rustix::pipe::pipe().unwrap();
        let slot = StdinSlot::new(w);
        let conn = Arc::new(Conn::detached());
        let mut writer = InputWriter::new(slot.clone(), &conn, "p");
        writer.write_all(b"x").unwrap();
        slot.close();
        assert_eq!(writer.write(b"y").unwrap_err().kind(), io::ErrorKind::BrokenPipe);
        let mut buf = Vec::new();
        std::fs::File::from(r).read_to_end(&mut buf).unwrap();
        assert_eq!(buf, b"x");
    }
}
