//! Records the git commit and the build date for `--version`.
//!
//! The commit must follow the checkout: the script asks cargo to rerun it when `HEAD` moves to
//! another branch or commit (`<git-dir>/HEAD`) and when the branch it points at gets a new commit
//! (the loose ref file in the common git directory, or `packed-refs` once refs are packed).
//! Paths come from git itself, so linked worktrees — where `.git` is a file and the refs live
//! in the main repository — work too. Outside a git checkout the commit is `unknown`.
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest_dir =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let git = |args: &[&str]| -> Option<String> {
        Command::new("git")
            .arg("-C")
            .arg(&manifest_dir)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    };
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".to_owned());
    // Reproducible builds set SOURCE_DATE_EPOCH; otherwise the build time is used.
    let epoch = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map(|s| std::time::UNIX_EPOCH + std::time::Duration::from_secs(s))
        .unwrap_or_else(std::time::SystemTime::now);
    let date = humantime::format_rfc3339_seconds(epoch).to_string();
    println!("cargo:rustc-env=GOLECTRA_COMMIT={commit}");
    println!("cargo:rustc-env=GOLECTRA_BUILD_DATE={date}");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    println!("cargo:rerun-if-changed=build.rs");

    // `--absolute-git-dir` is this worktree's own directory (HEAD lives there);
    // `--git-common-dir` holds refs/ and packed-refs, shared by every worktree.
    let (Some(git_dir), Some(common_dir)) = (
        git(&["rev-parse", "--absolute-git-dir"]),
        git(&["rev-parse", "--git-common-dir"]),
    ) else {
        return;
    };
    let git_dir = PathBuf::from(git_dir);
    let common_dir = absolute(&manifest_dir, Path::new(&common_dir));
    let mut watched = vec![git_dir.join("HEAD"), common_dir.join("packed-refs")];
    if let Some(reference) = git(&["symbolic-ref", "-q", "HEAD"]) {
        // e.g. refs/heads/main. Watching it also catches the moment `git pack-refs` deletes it.
        watched.push(common_dir.join(reference));
    }
    // A path that does not exist would make cargo rerun the script on every build (and rebuild
    // everything after it), so only existing files are watched; a later `git pack-refs` removes
    // the loose ref, which is itself a change that reruns the script and picks up packed-refs.
    for path in watched.iter().filter(|p| p.exists()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

fn absolute(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_owned()
    } else {
        base.join(path)
    }
}
