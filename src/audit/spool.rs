//! The disk spool: events that could not be written to the store, kept as
//! JSON lines in a file (`<data_dir>/audit-spool.jsonl` for the server)
//! until the store answers.
//!
//! Bounded by size; what does not fit is counted as lost (and reported by
//! the writer). Each append is flushed to disk before the writer moves on,
//! so a crash loses at most a torn last line, which replay skips and counts.
//!
//! ```
//! # fn demo() -> std::io::Result<()> {
//! use portcullis::audit::spool::Spool;
//! let dir = tempfile::tempdir()?;
//! let mut spool = Spool::open(&dir.path().join("spool.jsonl"), 1 << 20)?;
//! assert!(spool.is_empty());
//! # Ok(()) }
//! ```

use std::fs::{File, OpenOptions};
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};

use super::EventRecord;

/// File name of the server's spool inside the data directory.
pub const SPOOL_FILE: &str = "audit-spool.jsonl";

/// File name of the command line's spool (administration commands run
/// beside a server and must not replay or clear its spool).
pub const CLI_SPOOL_FILE: &str = "audit-spool-cli.jsonl";

/// The on-disk queue of unwritten events.
#[derive(Debug)]
pub struct Spool {
    path: PathBuf,
    max_bytes: u64,
    bytes: u64,
}

/// What reading the spool back found.
#[derive(Debug, Default)]
pub struct Spooled {
    /// The events, in the order they were spooled.
    pub records: Vec<EventRecord>,
    /// Lines that could not be read (a torn write).
    pub damaged: u64,
}

impl Spool {
    /// Opens (or finds, from an earlier run) the spool file at `path`.
    pub fn open(path: &Path, max_bytes: u64) -> std::io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let path = path.to_path_buf();
        let bytes = std::fs::metadata(&path).map_or(0, |m| m.len());
        Ok(Self { path, max_bytes, bytes })
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.bytes == 0
    }

    /// Bytes waiting.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Appends `records` (flushed to disk); returns how many did not fit.
    pub fn append(&mut self, records: &[EventRecord]) -> std::io::Result<u64> {
        let mut text = Vec::new();
        let mut lost = 0;
        for record in records {
            let Ok(mut line) = serde_json::to_vec(record) else {
                lost += 1;
                continue;
            };
            line.push(b'\n');
            if self.bytes + (text.len() + line.len()) as u64 > self.max_bytes {
                lost += 1;
                continue;
            }
            text.extend_from_slice(&line);
        }
        if !text.is_empty() {
            let mut file = OpenOptions::new().create(true).append(true).open(&self.path)?;
            file.write_all(&text)?;
            file.sync_data()?;
            self.bytes += text.len() as u64;
        }
        Ok(lost)
    }

    /// Everything spooled so far (the file stays until [`Spool::clear`]).
    pub fn read(&self) -> std::io::Result<Spooled> {
        let file = match File::open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Spooled::default()),
            Err(e) => return Err(e),
        };
        let mut spooled = Spooled::default();
        for line in BufReader::new(file).split(b'\n') {
            let line = line?;
            if line.is_empty() {
                continue;
            }
            match serde_json::from_slice(&line) {
                Ok(record) => spooled.records.push(record),
                Err(_) => spooled.damaged += 1,
            }
        }
        Ok(spooled)
    }

    /// Empties the spool once its events are in the store.
    pub fn clear(&mut self) -> std::io::Result<()> {
        match std::fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        self.bytes = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{EventContext, SecurityEvent};

    fn record(path: &str) -> EventRecord {
        let context =
            EventContext { request_id: "r", client_ip: None, method: "GET", path, route: None, subject: None };
        EventRecord::new(&SecurityEvent::PathNormalized, &context)
    }

    #[test]
    fn keeps_events_across_reopening_and_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(&dir.path().join(SPOOL_FILE), 1 << 20).unwrap();
        spool.append(&[record("/a"), record("/b")]).unwrap();
        spool.append(&[record("/c")]).unwrap();
        let reopened = Spool::open(&dir.path().join(SPOOL_FILE), 1 << 20).unwrap();
        assert!(!reopened.is_empty());
        let paths: Vec<String> = reopened.read().unwrap().records.into_iter().map(|r| r.path).collect();
        assert_eq!(paths, ["/a", "/b", "/c"]);
    }

    #[test]
    fn counts_what_does_not_fit_and_skips_torn_lines() {
        let dir = tempfile::tempdir().unwrap();
        let one = serde_json::to_vec(&record("/a")).unwrap().len() as u64 + 1;
        let mut spool = Spool::open(&dir.path().join(SPOOL_FILE), one * 2).unwrap();
        assert_eq!(spool.append(&[record("/a"), record("/b"), record("/c")]).unwrap(), 1);
        let mut file = OpenOptions::new().append(true).open(dir.path().join(SPOOL_FILE)).unwrap();
        file.write_all(b"{\"id\":\"torn").unwrap();
        let spooled = spool.read().unwrap();
        assert_eq!((spooled.records.len(), spooled.damaged), (2, 1));
        spool.clear().unwrap();
        assert!(spool.is_empty() && spool.read().unwrap().records.is_empty());
    }
}
