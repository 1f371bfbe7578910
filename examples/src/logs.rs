//! Checks that a binary's `--log-format` reaches its logger.

use std::process::Command;

fn run(bin: &str, args: &[&str], format: &str) -> (bool, String) {
    let out = Command::new(bin)
        .args(args)
        .args(["--log-format", format])
        // Neither a kubeconfig nor a Pod's service account: the start fails, and says so.
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("RUST_LOG")
        .output()
        .unwrap_or_else(|e| panic!("{bin}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Runs `bin` with `args` that make its start fail on a path under `/nonexistent/`, once with
/// `--log-format json` and once with `text`: the JSON run must fail and log one JSON object per
/// line on stdout (what log collectors read), with an `ERROR` naming the path; the text run must
/// log plain lines.
///
/// # Panics
/// When either run logs otherwise.
pub fn assert_json_and_text_logs(bin: &str, args: &[&str]) {
    let (ok, stdout) = run(bin, args, "json");
    assert!(!ok, "a start without configuration fails");
    let errors: Vec<serde_json::Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}")))
        .filter(|v: &serde_json::Value| v["level"] == "ERROR")
        .collect();
    assert!(
        errors.iter().any(|v| v["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("/nonexistent/"))),
        "{stdout}"
    );
    let (_, text) = run(bin, args, "text");
    assert!(text.lines().any(|l| l.contains("ERROR")), "{text}");
    assert!(
        text.lines()
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_err()),
        "{text}"
    );
}
