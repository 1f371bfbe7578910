//! What a test that needs root, a tool or a server says when it cannot run: a skip naming the
//! reason, or under `CI=true` a failure, so that a CI run never passes a test that did not run.

/// Whether this run is CI's (`CI=true`), where a missing prerequisite must fail, not skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| matches!(v.as_str(), "true" | "1" | "yes"))
}

/// Says that a test cannot run here: a skip naming `reason`, or under `CI=true` a panic, so a
/// CI run never passes a test that did not run.
///
/// # Panics
/// Under `CI=true`.
pub fn unavailable(reason: &str) {
    assert!(
        !in_ci(),
        "{reason} (CI=true: a missing prerequisite fails instead of skipping)"
    );
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "skipping: {reason}");
}

/// Whether the test runs as root; otherwise [`unavailable`] says so.
pub fn require_root(why: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    unavailable(&format!("needs root ({why})"));
    false
}
