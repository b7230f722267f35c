//! Periodic snapshots (`STORE_INTERVAL=N>0`): a [`Ticker`] thread named `snapshot` that writes
//! the tables every interval when something changed. Writes are acknowledged before they reach
//! the file; what the last interval (or a failed snapshot) left out goes with the next snapshot
//! and with the final one at shutdown.

use std::sync::Arc;
use std::time::Duration;

use super::file::SnapshotFile;
use crate::ticker::{FirstRun, Ticker};

/// Starts the periodic snapshot thread.
pub(super) fn start(file: Arc<SnapshotFile>, interval: Duration) -> std::io::Result<Ticker> {
    Ticker::spawn("snapshot", interval, FirstRun::AfterInterval, move || {
        file.write_if_changed("periodic");
    })
}
