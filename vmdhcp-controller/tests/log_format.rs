//! `--log-format json` reaches the binary's logger (a start-up failure is one JSON object per
//! line on stdout); `text` stays plain.

#[test]
fn json_logs_are_one_object_per_line_and_text_is_not_json() {
    vmdhcp_examples::logs::assert_json_and_text_logs(
        env!("CARGO_BIN_EXE_vmdhcp-controller"),
        &[
            "--name",
            "x",
            "--namespace",
            "y",
            "--kubeconfig",
            "/nonexistent/kubeconfig",
        ],
    );
}
