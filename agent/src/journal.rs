//! The poll journal (`<STATE_FILE>.polls`): how many polls the running process has made, so
//! that after a `kill -9` the next start can say exactly how many polls were lost.
//!
//! The state file is written at every report interval, so a crash loses the polls made since
//! the last write — they were only in memory. The journal is one fixed-length line,
//! `<run id> <polls>`, overwritten in place after every poll: no fsync, because the page cache
//! survives the death of the process (only a crash of the machine loses it, and with it the
//! exactness of the account). At start, when the state file says its run did not stop cleanly,
//! the journal's count for that run is the polls it made and the state file's the polls that
//! were saved; the difference is lost, and logged.
//!
//! The journal is overwritten only after the new run's first state write, which has taken over
//! the old run's account: a crash in between leaves a journal naming an older run, read as "the
//! run in the state file made no poll it did not save".

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::state::Run;

/// `<STATE_FILE>.polls`.
pub fn path_for(state_file: &Path) -> PathBuf {
    let mut name = state_file.file_name().unwrap_or_default().to_os_string();
    name.push(".polls");
    state_file.with_file_name(name)
}

/// A new run id: 64 random bits as 16 lowercase hex characters.
pub fn new_run_id() -> String {
    format!("{:016x}", fastrand::u64(..))
}

/// The open journal of the running process.
#[derive(Debug)]
pub struct Journal {
    file: File,
    run_id: String,
}

impl Journal {
    /// Creates (or truncates) the journal for run `run_id`, recording 0 polls.
    pub fn create(path: &Path, run_id: &str) -> io::Result<Self> {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        let journal = Self {
            file,
            run_id: run_id.to_owned(),
        };
        journal.record(0)?;
        Ok(journal)
    }

    /// Overwrites the line with `polls` (one `pwrite`, same length every time).
    pub fn record(&self, polls: u64) -> io::Result<()> {
        self.file
            .write_all_at(line(&self.run_id, polls).as_bytes(), 0)
    }

    /// The run id and count of a journal; `None` when missing or unreadable.
    pub fn read(path: &Path) -> Option<(String, u64)> {
        parse(&std::fs::read_to_string(path).ok()?)
    }
}

fn line(run_id: &str, polls: u64) -> String {
    format!("{run_id} {polls:020}\n")
}

fn parse(text: &str) -> Option<(String, u64)> {
    let (id, polls) = text.trim_end().split_once(' ')?;
    Some((id.to_owned(), polls.parse().ok()?))
}

/// The account of a run that did not stop cleanly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loss {
    /// Polls the run made.
    pub made: u64,
    /// Of those, the polls made after its last state write.
    pub lost: u64,
}

/// What the previous run (`saved`, from the state file) lost, given the journal it left.
pub fn previous_loss(saved: &Run, journal: Option<&(String, u64)>) -> Loss {
    let made = match journal {
        Some((id, polls)) if *id == saved.id => (*polls).max(saved.polls),
        // No journal line of that run: it made no poll after its last write.
        _ => saved.polls,
    };
    Loss {
        made,
        lost: made - saved.polls,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(id: &str, polls: u64) -> Run {
        Run {
            id: id.into(),
            polls,
            clean: false,
        }
    }

    #[test]
    fn the_journal_is_overwritten_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_for(&dir.path().join("state.json"));
        assert!(path.ends_with("state.json.polls"));
        let journal = Journal::create(&path, "00000000000000aa").unwrap();
        assert_eq!(Journal::read(&path), Some(("00000000000000aa".into(), 0)));
        for polls in [1, 2, 10, 12345] {
            journal.record(polls).unwrap();
        }
        assert_eq!(
            Journal::read(&path),
            Some(("00000000000000aa".into(), 12345))
        );
        let len = std::fs::metadata(&path).unwrap().len();
        journal.record(7).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), len);
        assert_eq!(Journal::read(&path), Some(("00000000000000aa".into(), 7)));
        // A new run starts its own line.
        drop(journal);
        Journal::create(&path, "00000000000000bb").unwrap();
        assert_eq!(Journal::read(&path), Some(("00000000000000bb".into(), 0)));
        assert_eq!(Journal::read(&dir.path().join("missing")), None);
        std::fs::write(&path, "garbage").unwrap();
        assert_eq!(Journal::read(&path), None);
    }

    #[test]
    fn the_loss_is_what_the_journal_counted_past_the_last_write() {
        let saved = run("aa", 40);
        let same = ("aa".to_owned(), 43);
        assert_eq!(
            previous_loss(&saved, Some(&same)),
            Loss { made: 43, lost: 3 }
        );
        // Killed right after a write: nothing lost.
        let exact = ("aa".to_owned(), 40);
        assert_eq!(previous_loss(&saved, Some(&exact)).lost, 0);
        // A journal of another run (the new run never got past its first write) or none.
        let other = ("bb".to_owned(), 99);
        for journal in [Some(&other), None] {
            assert_eq!(previous_loss(&saved, journal), Loss { made: 40, lost: 0 });
        }
        // A journal behind the state file (a machine crash lost the page cache): never negative.
        let behind = ("aa".to_owned(), 30);
        assert_eq!(previous_loss(&saved, Some(&behind)).lost, 0);
    }
}
