//! Build information printed by `--version`: package version, git commit and build date, all
//! recorded by `build.rs` at compile time.

/// The package version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Short git commit the binary was built from, or `unknown` outside a git checkout.
pub const COMMIT: &str = env!("GOLECTRA_COMMIT");
/// Build date (RFC 3339, UTC); honours `SOURCE_DATE_EPOCH`.
pub const BUILD_DATE: &str = env!("GOLECTRA_BUILD_DATE");

/// The `--version` line, e.g. `golectra-server 0.1.0 (commit 1a2b3c4d5e6f, built 2026-11-25T01:34:17Z)`.
pub fn line(program: &str) -> String {
    format!("{program} {VERSION} (commit {COMMIT}, built {BUILD_DATE})")
}
