//! Prerequisites of a test: missing in CI (`CI=true`) the test fails; missing elsewhere a loud
//! note on stderr and the caller returns (the test is skipped).

/// Whether this run is CI (`CI=true`), where nothing may be skipped.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Checks that a prerequisite of a test is there. Missing in CI: the test fails. Missing
/// elsewhere: a loud note on stderr and `false`, and the caller returns (the test is skipped).
pub fn require(what: &str, present: bool, hint: &str) -> bool {
    if present {
        return true;
    }
    assert!(!in_ci(), "{what} is missing in CI: {hint}");
    eprintln!("NOTE: {what} is missing: this test is SKIPPED ({hint})");
    false
}

/// [`require`] for a program on `PATH`.
pub fn require_tool(tool: &str, package: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()));
    require(
        tool,
        found,
        &format!("install the Debian package {package}"),
    )
}

/// [`require`] for root (mount namespaces, tmpfs, bind mounts); `why` says what for.
pub fn require_root(why: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    // /proc/self belongs to the effective user of the process that reads it.
    let root = std::path::Path::new("/proc/self")
        .metadata()
        .is_ok_and(|m| m.uid() == 0);
    require(
        &format!("root ({why})"),
        root,
        "run the tests as root, as CI does",
    )
}
