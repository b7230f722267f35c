//! The file sink: one JSON line per event, appended to `AUDIT_FILE`.
//!
//! The file is created with mode 0600 (events name clients' addresses) and opened with
//! `O_APPEND`; each line goes out in a single `write`, so lines of concurrent writers and of a
//! crash never interleave. Before every write the sink compares the device and inode of the
//! configured path with those of the open file: when logrotate (or an operator) renamed or
//! removed the file, the next event creates a new file at the configured path.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::{Event, Sink, SinkError};

/// Appends events to a file, following rotation.
pub struct FileSink {
    path: PathBuf,
    file: File,
    /// Device and inode of `file`.
    id: (u64, u64),
}

impl FileSink {
    /// Opens (creating with mode 0600 if needed) the file at `path` for appending.
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)?;
        let meta = file.metadata()?;
        Ok(Self {
            path: path.to_owned(),
            file,
            id: (meta.dev(), meta.ino()),
        })
    }

    /// Reopens the path when it no longer names the open file.
    fn follow_rotation(&mut self) -> io::Result<()> {
        match std::fs::metadata(&self.path) {
            Ok(meta) if (meta.dev(), meta.ino()) == self.id => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        // Whatever was written to the old file stays there, durable.
        let _ = self.file.sync_data();
        *self = Self::open(&self.path)?;
        log::info!(
            "audit file {} was rotated away; writing to a new file",
            self.path.display()
        );
        Ok(())
    }
}

impl Sink for FileSink {
    fn name(&self) -> &str {
        "file"
    }

    fn deliver(&mut self, event: &Event) -> Result<(), SinkError> {
        let mut line = String::with_capacity(event.json().len() + 1);
        line.push_str(event.json());
        line.push('\n');
        self.follow_rotation()
            .and_then(|()| self.file.write_all(line.as_bytes()))
            .map_err(|e| SinkError(format!("{}: {e}", self.path.display())))
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.file
            .sync_data()
            .map_err(|e| SinkError(format!("{}: {e}", self.path.display())))
    }
}
