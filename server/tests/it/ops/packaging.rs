//! Installation: the install script honours `DESTDIR` and `PREFIX`, keeps the operator's env
//! files, uninstalls and purges; the Debian package holds the same files with the same modes,
//! its conffiles and valid maintainer scripts; `--version` names the commit of the checkout.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use golectra_testkit::{agent_binary, binary_dir, require_tool, workspace_root};

use super::{has_timestamp, read, systemd_dir};
use crate::harness::server_binary;

/// Every file (not directory) under `root`, as `/relative/path -> mode`.
fn tree(root: &Path) -> BTreeMap<String, u32> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(root).unwrap().display().to_string();
                out.insert(format!("/{rel}"), meta.permissions().mode() & 0o7777);
            }
        }
    }
    out
}

const LAYOUT: [(&str, u32); 9] = [
    ("/usr/share/doc/golectra/README.md", 0o644),
    ("/usr/share/doc/golectra/docs/readme-operations.md", 0o644),
    ("/usr/bin/golectra-server", 0o755),
    ("/usr/bin/golectra-agent", 0o755),
    ("/usr/lib/systemd/system/golectra-server.service", 0o644),
    ("/usr/lib/systemd/system/golectra-agent.service", 0o644),
    ("/etc/golectra/server.env", 0o600),
    ("/etc/golectra/agent.env", 0o600),
    ("/usr/share/doc/golectra/copyright", 0o644),
];

fn run_install(destdir: &Path, extra_env: &[(&str, &str)]) -> String {
    run_install_with(destdir, &[], extra_env)
}

fn run_install_with(destdir: &Path, args: &[&str], extra_env: &[(&str, &str)]) -> String {
    let out = Command::new("sh")
        .arg(systemd_dir().join("install.sh"))
        .args(args)
        .env("DESTDIR", destdir)
        .env("GOLECTRA_BIN_DIR", binary_dir())
        .env_remove("PREFIX")
        .envs(extra_env.iter().copied())
        .output()
        .expect("run install.sh");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "install.sh failed: {text}");
    text
}

#[test]
fn install_script_honours_destdir_and_keeps_existing_env_files() {
    if agent_binary().is_none() {
        return;
    }
    let dest = tempfile::tempdir().unwrap();
    run_install(dest.path(), &[]);
    let files = tree(dest.path());
    for (path, mode) in LAYOUT {
        assert_eq!(files.get(path), Some(&mode), "{path} in {files:?}");
    }
    assert_eq!(
        read(
            &dest
                .path()
                .join("usr/lib/systemd/system/golectra-server.service")
        ),
        read(&systemd_dir().join("golectra-server.service")),
        "the default prefix installs the units unchanged"
    );
    // The installed binary is the built one.
    let version = Command::new(dest.path().join("usr/bin/golectra-server"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("golectra-server "));

    // A second run keeps the operator's configuration and leaves the new example beside it.
    let env = dest.path().join("etc/golectra/server.env");
    std::fs::write(&env, "ADDRESS=:9999\n").unwrap();
    run_install(dest.path(), &[]);
    assert_eq!(read(&env), "ADDRESS=:9999\n");
    assert_eq!(
        read(&dest.path().join("etc/golectra/server.env.example")),
        read(&systemd_dir().join("server.env"))
    );

    // Another prefix is written into ExecStart.
    let local = tempfile::tempdir().unwrap();
    run_install(local.path(), &[("PREFIX", "/usr/local")]);
    let unit = read(
        &local
            .path()
            .join("usr/local/lib/systemd/system/golectra-agent.service"),
    );
    assert!(
        unit.contains("\nExecStart=/usr/local/bin/golectra-agent\n"),
        "{unit}"
    );
    assert!(local.path().join("usr/local/bin/golectra-agent").is_file());
}

#[test]
fn install_script_uninstalls_and_purges() {
    if agent_binary().is_none() {
        return;
    }
    let dest = tempfile::tempdir().unwrap();
    run_install(dest.path(), &[]);
    let data = dest.path().join("var/lib/private/golectra/metrics-db.json");
    std::fs::create_dir_all(data.parent().unwrap()).unwrap();
    std::fs::write(&data, "[]").unwrap();
    let agent_state = dest
        .path()
        .join("var/lib/private/golectra-agent/state.json");
    std::fs::create_dir_all(agent_state.parent().unwrap()).unwrap();
    std::fs::write(&agent_state, "{}").unwrap();
    let said = run_install_with(dest.path(), &["--uninstall"], &[]);
    assert!(said.contains("kept"), "{said}");
    let left: BTreeSet<String> = tree(dest.path()).into_keys().collect();
    let kept: BTreeSet<String> = [
        "/etc/golectra/server.env",
        "/etc/golectra/agent.env",
        "/var/lib/private/golectra/metrics-db.json",
        "/var/lib/private/golectra-agent/state.json",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(left, kept, "uninstall keeps the settings and the data only");
    run_install_with(dest.path(), &["--uninstall", "--purge"], &[]);
    assert!(tree(dest.path()).is_empty(), "{:?}", tree(dest.path()));

    let bad = Command::new("sh")
        .arg(systemd_dir().join("install.sh"))
        .arg("--purge")
        .env("DESTDIR", dest.path())
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--uninstall"));
}

#[test]
fn debian_package_holds_binaries_units_and_conffiles() {
    if !require_tool("dpkg-deb", "dpkg")
        || !require_tool("dpkg-shlibdeps", "dpkg-dev")
        || agent_binary().is_none()
    {
        return;
    }
    let out_dir = tempfile::tempdir().unwrap();
    let out = Command::new("sh")
        .arg(systemd_dir().join("build-deb.sh"))
        .arg(out_dir.path())
        .env("GOLECTRA_BIN_DIR", binary_dir())
        // Compressing unoptimised binaries with xz takes half a minute and proves nothing.
        .env("DEB_COMPRESSOR", "none")
        .output()
        .expect("run build-deb.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "build-deb.sh: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deb = PathBuf::from(stdout.trim().lines().last().expect("the package path"));
    assert!(deb.is_file(), "{}", deb.display());

    // dpkg-deb -c: `-rwxr-xr-x root/root 123 2026-01-01 00:00 ./usr/bin/golectra-server`
    let listing = Command::new("dpkg-deb")
        .arg("-c")
        .arg(&deb)
        .output()
        .unwrap();
    assert!(listing.status.success());
    let listing = String::from_utf8_lossy(&listing.stdout).into_owned();
    let mut packaged = BTreeMap::new();
    for line in listing.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (perms, owner, path) = (fields[0], fields[1], *fields.last().unwrap());
        assert_eq!(owner, "root/root", "{line}");
        if !perms.starts_with('d') {
            packaged.insert(path.trim_start_matches('.').to_owned(), perms.to_owned());
        }
    }
    for (path, mode) in LAYOUT {
        let perms = packaged
            .get(path)
            .unwrap_or_else(|| panic!("{path} not in the package:\n{listing}"));
        assert_eq!(perms, &unix_perms(mode), "{path}");
    }
    // Same layout as the install script.
    let dest = tempfile::tempdir().unwrap();
    run_install(dest.path(), &[]);
    let installed: BTreeSet<String> = tree(dest.path()).into_keys().collect();
    let in_package: BTreeSet<String> = packaged.into_keys().collect();
    assert_eq!(in_package, installed);

    let field = |name: &str| {
        let out = Command::new("dpkg-deb")
            .args(["-f"])
            .arg(&deb)
            .arg(name)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert_eq!(field("Package"), "golectra");
    assert_eq!(field("Version"), env!("CARGO_PKG_VERSION"));
    assert!(field("Depends").contains("libc6"), "{}", field("Depends"));
    let conffiles = Command::new("dpkg-deb")
        .arg("-I")
        .arg(&deb)
        .arg("conffiles")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&conffiles.stdout),
        "/etc/golectra/server.env\n/etc/golectra/agent.env\n"
    );
    // The maintainer scripts are valid shell.
    let control = tempfile::tempdir().unwrap();
    assert!(
        Command::new("dpkg-deb")
            .arg("-e")
            .arg(&deb)
            .arg(control.path())
            .status()
            .unwrap()
            .success()
    );
    for script in ["postinst", "prerm", "postrm"] {
        let ok = Command::new("sh")
            .arg("-n")
            .arg(control.path().join(script))
            .status()
            .unwrap()
            .success();
        assert!(ok, "{script} is not valid shell");
    }
    // `apt remove` disables the units (no dangling enable symlinks), an upgrade does not. A
    // stand-in `systemctl` records its calls; the real systemd run is in `real_systemd`.
    for (action, disables) in [("remove", true), ("upgrade", false)] {
        let calls = systemctl_calls(&control.path().join("prerm"), &[action, "0.1.0"]);
        assert_eq!(
            calls
                .iter()
                .any(|c| c == "disable golectra-agent.service golectra-server.service"),
            disables,
            "prerm {action}: {calls:?}"
        );
    }
}

/// The `systemctl` command lines a maintainer script runs, through a stand-in on `PATH`.
fn systemctl_calls(script: &Path, args: &[&str]) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    let bin = tempfile::tempdir().unwrap();
    let log = bin.path().join("calls");
    let fake = bin.path().join("systemctl");
    std::fs::write(
        &fake,
        format!("#!/bin/sh\necho \"$*\" >> '{}'\n", log.display()),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let status = Command::new("sh")
        .arg(script)
        .args(args)
        .env("PATH", path)
        .status()
        .unwrap();
    assert!(status.success(), "{} {args:?}", script.display());
    std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// `0o755` → `-rwxr-xr-x`.
fn unix_perms(mode: u32) -> String {
    let mut s = String::from("-");
    for shift in [6, 3, 0] {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    s
}

#[test]
fn version_reports_the_commit_of_the_checkout() {
    let out = Command::new(server_binary())
        .arg("--version")
        .output()
        .unwrap();
    let line = String::from_utf8_lossy(&out.stdout).into_owned();
    // `golectra-server 0.1.0 (commit 1a2b3c4d5e6f, built 2026-11-25T01:34:17Z)`
    assert!(
        line.starts_with(&format!(
            "golectra-server {} (commit ",
            env!("CARGO_PKG_VERSION")
        )),
        "{line}"
    );
    let built = line
        .split("built ")
        .nth(1)
        .unwrap()
        .trim_end_matches([')', '\n']);
    assert!(has_timestamp(built), "{line}");
    let head = Command::new("git")
        .arg("-C")
        .arg(workspace_root())
        .args(["rev-parse", "--short=12", "HEAD"])
        .output();
    match head {
        Ok(head) if head.status.success() => {
            let head = String::from_utf8_lossy(&head.stdout).trim().to_owned();
            assert!(
                line.contains(&format!("(commit {head},")),
                "the binary was built from another commit than HEAD {head}: {line}"
            );
        }
        _ => eprintln!("NOTE: not a git checkout: the commit check of --version is SKIPPED"),
    }
}
