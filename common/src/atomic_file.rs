//! Replacing a file crash-safely, as both daemons do for their state (the server's snapshot and
//! key log, the agent's state file): the bytes go to a temporary file in the same directory,
//! which is fsynced, renamed over the old file, and the directory is fsynced. A `kill -9` or a
//! power loss at any moment leaves the old or the new file, never a torn or empty one.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

/// Writes `bytes` to `path` crash-safely. The temporary file is named `<temp_prefix><random>`
/// in `path`'s directory, so that the caller can recognise and remove a crash's leftovers.
pub fn write(path: &Path, bytes: &[u8], temp_prefix: &str) -> io::Result<()> {
    let dir = parent_dir(path);
    let mut temp = tempfile::Builder::new()
        .prefix(temp_prefix)
        .tempfile_in(dir)?;
    temp.write_all(bytes)?;
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|e| e.error)?;
    File::open(dir)?.sync_all()
}

/// The directory `path` is in (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.json");
        write(&path, b"old", ".f.json.tmp-").unwrap();
        write(&path, b"new", ".f.json.tmp-").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        assert_eq!(parent_dir(Path::new("f.json")), Path::new("."));
    }
}
