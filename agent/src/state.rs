//! The state file (`STATE_FILE`, docs/agent.md "State file"): what lets a restarted agent go on
//! exactly where the last one stopped — the instance id and next sequence number (so keys never
//! repeat with another body), the pending counter deltas, and the reports in doubt with their
//! keys and bodies (so they are re-sent as they were, never re-keyed).
//!
//! The file is JSON, replaced atomically (temp file in the same directory, fsync, rename, fsync
//! the directory) whenever a report is cut, settles or goes in doubt, at every report interval
//! and at shutdown. A report is written here *before* its first attempt: a report the server
//! may have seen is always either in the file or already settled. Its size is bounded by the
//! number of metric names (pending) and senders (in doubt), never by an outage's length.
//!
//! A file that cannot be read or parsed is moved aside (`<file>.corrupt-<unix secs>`) and the
//! agent starts afresh; a directory the agent cannot write is a configuration error (exit 2).
//! Polls made after the last write are counted by the poll journal ([`crate::journal`]).

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::accumulator::Name;
use crate::journal::{self, Journal};
use crate::report::{self, Keys, Report};
use crate::runtime::POLL_COUNT;
use crate::tagging::is_poll_count;

/// The version of the file's layout; another version is not read (moved aside).
pub const FORMAT: u32 = 1;

/// Everything the file holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// [`FORMAT`].
    pub format: u32,
    /// 32 lowercase hex characters.
    pub instance: String,
    /// The sequence number of the next batch.
    pub next_sequence: u64,
    /// The process that wrote the file.
    pub run: Run,
    /// Counter deltas in no report yet, by the name they were recorded (and are sent) with,
    /// `TAGS` included (gauges are not kept: the next poll has them).
    pub pending: BTreeMap<String, i64>,
    /// Reports sent or about to be sent without a definite answer, oldest first.
    pub in_doubt: Vec<Saved>,
}

/// The writing process's poll accounting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Run {
    /// Random per process; the poll journal names the same id.
    pub id: String,
    /// Polls this process had made when it wrote the file: each is pending, in doubt, or
    /// settled in the file.
    pub polls: u64,
    /// `true` only in the last write of a process that stopped on a signal.
    pub clean: bool,
}

/// A report in doubt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Saved {
    pub key: String,
    pub sequence: u64,
    /// The JSON body exactly as sent, as a string.
    pub body: String,
    /// Unix seconds of its first attempt.
    pub first_sent: u64,
    /// The polls it carries (its `PollCount` delta).
    pub polls: i64,
}

impl Saved {
    pub fn of(report: &Report) -> Self {
        Self {
            key: report.key.clone(),
            sequence: report.sequence,
            body: String::from_utf8_lossy(&report.body).into_owned(),
            first_sent: report.first_sent,
            polls: report.polls,
        }
    }
}

impl State {
    /// Parses and checks a file's content.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let state: State = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if state.format != FORMAT {
            return Err(format!(
                "format {} (this agent reads {FORMAT})",
                state.format
            ));
        }
        if !report::is_instance_id(&state.instance) {
            return Err(format!("invalid instance id {:?}", state.instance));
        }
        for saved in &state.in_doubt {
            if saved.sequence >= state.next_sequence {
                return Err(format!(
                    "report {} is not older than the next sequence {}",
                    saved.key, state.next_sequence
                ));
            }
            saved.to_report()?;
        }
        Ok(state)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).expect("the state always serializes");
        bytes.push(b'\n');
        bytes
    }

    /// Polls in the pending deltas (`PollCount` under any tags).
    pub fn pending_polls(&self) -> i64 {
        self.pending
            .iter()
            .filter(|(name, _)| is_poll_count(name))
            .map(|(_, delta)| delta)
            .sum()
    }

    /// Polls in the reports in doubt.
    pub fn in_doubt_polls(&self) -> i64 {
        self.in_doubt.iter().map(|s| s.polls).sum()
    }
}

impl Saved {
    fn to_report(&self) -> Result<Report, String> {
        Report::from_saved(
            self.key.clone(),
            self.sequence,
            self.body.clone(),
            self.first_sent,
            self.polls,
        )
    }
}

/// What an earlier process left for this one.
#[derive(Debug, Clone, PartialEq)]
pub struct Restored {
    pub keys: Keys,
    pub pending: Vec<(Name, i64)>,
    /// Oldest first: they are re-sent before any new report.
    pub in_doubt: Vec<Report>,
}

impl Restored {
    /// A new instance with nothing left over.
    pub fn fresh() -> Self {
        Self {
            keys: Keys::fresh(),
            pending: Vec::new(),
            in_doubt: Vec::new(),
        }
    }

    /// What a (checked) state holds.
    pub fn of(state: State) -> Self {
        Self {
            keys: Keys::new(state.instance, state.next_sequence),
            pending: state
                .pending
                .into_iter()
                .map(|(name, delta)| (static_name(name), delta))
                .collect(),
            in_doubt: state
                .in_doubt
                .iter()
                .map(|s| s.to_report().expect("checked by decode"))
                .collect(),
        }
    }
}

/// Metric names are `'static` (fixed at start-up); a saved name is mapped onto the agent's own,
/// and one this build does not know (an older version's, or one with other `TAGS`) is leaked
/// once, at start. Saved names are never re-tagged: a delta goes out under the name it was
/// recorded with.
fn static_name(name: String) -> Name {
    if name == POLL_COUNT {
        POLL_COUNT
    } else {
        Box::leak(name.into_boxed_str())
    }
}

/// The state file of a running agent: where it is, the run's id and the poll journal.
#[derive(Debug)]
pub struct StateFile {
    path: PathBuf,
    run_id: String,
    /// Created by the first successful save, so that a previous run's journal is overwritten
    /// only once its account is in the new file.
    journal: Option<Journal>,
    failing: bool,
}

/// Why the state file cannot be used at all (exit code 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unusable(pub String);

/// Opens `path` at start: checks that its directory is writable, restores what it holds (or
/// moves a corrupt file aside), and accounts for the polls a crashed previous run lost.
pub fn open(path: &Path) -> Result<(StateFile, Restored), Unusable> {
    check_writable(path).map_err(Unusable)?;
    let restored = match load(path) {
        Load::Missing => {
            let restored = Restored::fresh();
            log::info!(
                "no state file at {} yet: starting as instance {}",
                path.display(),
                restored.keys.instance()
            );
            restored
        }
        Load::Corrupt(why) => {
            let restored = Restored::fresh();
            let aside = match move_aside(path) {
                Ok(aside) => format!("moved it aside to {}", aside.display()),
                Err(e) => format!("could not move it aside ({e}); it will be overwritten"),
            };
            log::error!(
                "state file {} is unreadable ({why}): {aside}; starting afresh as instance {}",
                path.display(),
                restored.keys.instance()
            );
            restored
        }
        Load::Found(state) => {
            if !state.run.clean {
                let journal = Journal::read(&journal::path_for(path));
                let loss = journal::previous_loss(&state.run, journal.as_ref());
                log::warn!(
                    "the previous run stopped without saving its state: it made {} polls, {} of them were not saved and are lost",
                    loss.made,
                    loss.lost
                );
            }
            log::info!(
                "state restored from {}: instance {}, {} polls pending, {} batches in doubt ({} polls)",
                path.display(),
                state.instance,
                state.pending_polls(),
                state.in_doubt.len(),
                state.in_doubt_polls()
            );
            Restored::of(state)
        }
    };
    let file = StateFile {
        path: path.to_owned(),
        run_id: journal::new_run_id(),
        journal: None,
        failing: false,
    };
    Ok((file, restored))
}

impl StateFile {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// This run's record for a write made after `polls` polls.
    pub fn run(&self, polls: u64, clean: bool) -> Run {
        Run {
            id: self.run_id.clone(),
            polls,
            clean,
        }
    }

    /// Replaces the file with `state`. On failure the old file is removed, so that a crash
    /// cannot replay reports that have settled since (it would lose pending polls instead).
    pub fn save(&mut self, state: &State) -> io::Result<()> {
        let result = write_atomic(&self.path, &state.encode()).and_then(|()| {
            if self.journal.is_none() {
                let journal = journal::path_for(&self.path);
                self.journal = Some(Journal::create(&journal, &self.run_id)?);
            }
            Ok(())
        });
        match &result {
            Ok(()) if self.failing => {
                self.failing = false;
                log::info!("state file {} written again", self.path.display());
            }
            Ok(()) => {}
            Err(e) if !self.failing => {
                self.failing = true;
                let removed = match fs::remove_file(&self.path) {
                    Ok(()) => "removed the old one".to_owned(),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => "there is no old one".into(),
                    Err(e) => format!("cannot remove the old one either ({e})"),
                };
                log::error!(
                    "cannot write the state file {}: {e}; {removed}: until a write succeeds, a crash loses the polls not yet delivered",
                    self.path.display()
                );
            }
            Err(e) => log::debug!("state file {} still not written: {e}", self.path.display()),
        }
        result
    }

    /// Notes in the poll journal that this run has made `polls` polls (no fsync).
    pub fn record_polls(&self, polls: u64) {
        if let Some(journal) = &self.journal
            && let Err(e) = journal.record(polls)
        {
            log::debug!("poll journal of {}: {e}", self.path.display());
        }
    }
}

/// What is at the path.
#[derive(Debug, PartialEq)]
pub enum Load {
    Missing,
    Found(State),
    /// Unreadable or not a state file (the reason).
    Corrupt(String),
}

pub fn load(path: &Path) -> Load {
    match fs::read(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Load::Missing,
        Err(e) => Load::Corrupt(e.to_string()),
        Ok(bytes) => match State::decode(&bytes) {
            Ok(state) => Load::Found(state),
            Err(why) => Load::Corrupt(why),
        },
    }
}

/// Renames a corrupt file to `<file>.corrupt-<unix secs>`.
pub fn move_aside(path: &Path) -> io::Result<PathBuf> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".corrupt-{}", report::unix_now()));
    let aside = path.with_file_name(name);
    fs::rename(path, &aside)?;
    Ok(aside)
}

/// Whether the agent can create files next to `path`: a temporary file is created there and
/// removed. `Err` is the one-line reason.
pub fn check_writable(path: &Path) -> Result<(), String> {
    if path.file_name().is_none() {
        return Err("not a file name".into());
    }
    let dir = golectra_common::atomic_file::parent_dir(path);
    tempfile::Builder::new()
        .prefix(&temp_prefix(path))
        .tempfile_in(dir)
        .map(drop)
        .map_err(|e| format!("cannot write in {}: {e}", dir.display()))
}

/// Writes `bytes` to `path` crash-safely (temp file, fsync, rename, fsync directory).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    golectra_common::atomic_file::write(path, bytes, &temp_prefix(path))
}

fn temp_prefix(path: &Path) -> String {
    format!(
        ".{}.tmp-",
        path.file_name().unwrap_or_default().to_string_lossy()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accumulator::Batch;

    fn sample_state() -> State {
        let mut keys = Keys::new("0123456789abcdef0123456789abcdef".into(), 5);
        let report = keys.cut(&Batch {
            gauges: vec![("Alloc", 12.5), ("RandomValue", 0.1)],
            counters: vec![("PollCount", 4)],
        });
        State {
            format: FORMAT,
            instance: keys.instance().to_owned(),
            next_sequence: keys.next_sequence(),
            run: Run {
                id: "00ff00ff00ff00ff".into(),
                polls: 9,
                clean: false,
            },
            pending: [("PollCount".to_owned(), 5)].into_iter().collect(),
            in_doubt: vec![Saved::of(&report)],
        }
    }

    #[test]
    fn a_state_round_trips_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let state = sample_state();
        write_atomic(&path, &state.encode()).unwrap();
        assert_eq!(load(&path), Load::Found(state.clone()));
        let restored = Restored::of(state.clone());
        assert_eq!(restored.keys.next_sequence(), 6);
        assert_eq!(restored.pending, vec![("PollCount", 5)]);
        let report = &restored.in_doubt[0];
        assert_eq!(report.key, "0123456789abcdef0123456789abcdef:5");
        assert_eq!(report.body, state.in_doubt[0].body.as_bytes());
        assert_eq!((report.polls, report.metrics), (4, 3));
    }

    #[test]
    fn pending_polls_of_any_tags_are_counted_and_keep_their_names() {
        let mut state = sample_state();
        state.pending = [
            ("PollCount;host=old".to_owned(), 5),
            ("PollCount".to_owned(), 2),
            ("Other;host=old".to_owned(), 9),
        ]
        .into_iter()
        .collect();
        assert_eq!(state.pending_polls(), 7);
        let restored = Restored::of(State::decode(&state.encode()).unwrap());
        assert_eq!(
            restored.pending,
            vec![
                ("Other;host=old", 9),
                ("PollCount", 2),
                ("PollCount;host=old", 5)
            ]
        );
    }

    #[test]
    fn the_atomic_write_replaces_the_file_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write_atomic(&path, b"old").unwrap();
        write_atomic(&path, b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["state.json"]);
        // The directory being gone makes the write fail and leaves nothing half-written.
        assert!(write_atomic(&dir.path().join("no/such/dir/s.json"), b"x").is_err());
    }

    #[test]
    fn corrupt_files_are_refused_with_a_reason() {
        let good = sample_state();
        let mut other_format = good.clone();
        other_format.format = 2;
        let mut bad_id = good.clone();
        bad_id.instance = "x".into();
        let mut future_report = good.clone();
        future_report.next_sequence = 5;
        let mut wrong_polls = good.clone();
        wrong_polls.in_doubt[0].polls = 3;
        let mut bad_body = good.clone();
        bad_body.in_doubt[0].body = "[{".into();
        for (state, needle) in [
            (other_format, "format 2"),
            (bad_id, "instance id"),
            (future_report, "next sequence"),
            (wrong_polls, "carries"),
            (bad_body, "JSON"),
        ] {
            let err = State::decode(&state.encode()).unwrap_err();
            assert!(err.contains(needle), "{needle}: {err}");
        }
        for junk in [&b""[..], b"{", b"[]", b"{\"format\":1}", b"\xff\xfe"] {
            assert!(State::decode(junk).is_err());
        }
        assert!(State::decode(&good.encode()).is_ok());
    }

    #[test]
    fn a_corrupt_file_is_moved_aside_and_the_agent_starts_afresh() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        fs::write(&path, "{ half a file").unwrap();
        let (_file, restored) = open(&path).unwrap();
        assert!(restored.in_doubt.is_empty() && restored.pending.is_empty());
        assert_eq!(restored.keys.next_sequence(), 1);
        assert!(!path.exists());
        let aside: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(aside.len(), 1);
        assert!(aside[0].starts_with("state.json.corrupt-"), "{aside:?}");
        assert_eq!(
            fs::read_to_string(dir.path().join(&aside[0])).unwrap(),
            "{ half a file"
        );
    }

    #[test]
    fn an_unwritable_directory_is_unusable() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing/state.json");
        let err = open(&missing).unwrap_err();
        assert!(err.0.contains("cannot write in"), "{err:?}");
        assert!(check_writable(&dir.path().join("state.json")).is_ok());
        let leftovers = fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 0, "the probe file is removed");
    }

    #[test]
    fn saving_creates_the_journal_and_a_failed_save_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let (mut file, restored) = open(&path).unwrap();
        let mut state = sample_state();
        state.instance = restored.keys.instance().to_owned();
        state.run = file.run(0, false);
        file.record_polls(1);
        assert!(
            !journal::path_for(&path).exists(),
            "no journal before the first save"
        );
        file.save(&state).unwrap();
        file.record_polls(3);
        assert_eq!(
            Journal::read(&journal::path_for(&path)),
            Some((state.run.id.clone(), 3))
        );
        // Without its directory the next save fails (and says so; the test runs as root, so a
        // read-only directory would not do).
        fs::remove_dir_all(dir.path()).unwrap();
        assert!(file.save(&state).is_err());
        assert!(file.failing);
    }
}
