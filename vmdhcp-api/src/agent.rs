//! Names and strings of the agent Pod the controller creates per IPPool (docs/upstream-compat.md, "Agent Pods").
//!
//! The Pod itself is built by the controller; what must match upstream byte for byte (so that a
//! Pod created by the Go controller is recognised and vice versa) lives here.

use std::net::Ipv4Addr;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::consts::{
    AGENT_ARG_DRY_RUN, AGENT_ARG_IPPOOL_REF, AGENT_INTERFACE, AGENT_NAME_SUFFIX,
    NODE_LABEL_CLUSTER_NETWORK_PREFIX,
};

/// Longest `<ns>-<name>` used as is; longer ones are cut and hashed (upstream's `< 58`).
const MAX_PLAIN: usize = 57;

/// The agent Pod name for the IPPool `namespace/name`, exactly as upstream's
/// `SafeAgentConcatName`: `<ns>-<name>-agent` when `<ns>-<name>` is shorter than 58 bytes;
/// otherwise its first 51 bytes, `-`, the first 5 hex digits of its SHA-256 and `-agent` when
/// byte 50 is `[a-z0-9]`, else the first 50 bytes, `-`, 6 hex digits and `-agent`. The result
/// is at most 63 bytes, a valid DNS label for valid inputs.
///
/// ```
/// use vmdhcp_api::agent::agent_pod_name;
///
/// assert_eq!(agent_pod_name("default", "net-48"), "default-net-48-agent");
/// let long = agent_pod_name("default", &"x".repeat(60));
/// assert_eq!(long.len(), 63);
/// assert!(long.starts_with("default-xxxxxxxx") && long.ends_with("-agent"));
/// ```
pub fn agent_pod_name(namespace: &str, name: &str) -> String {
    let full = format!("{namespace}-{name}");
    if full.len() <= MAX_PLAIN {
        return format!("{full}-{AGENT_NAME_SUFFIX}");
    }
    let digest = Sha256::digest(full.as_bytes());
    let hex = format!("{:02x}{:02x}{:02x}", digest[0], digest[1], digest[2]);
    let bytes = full.as_bytes();
    // Go slices bytes; names are ASCII, `from_utf8_lossy` only guards against a cut character.
    let (cut, hex_len) = if bytes[50].is_ascii_lowercase() || bytes[50].is_ascii_digit() {
        (51, 5)
    } else {
        (50, 6)
    };
    let prefix = String::from_utf8_lossy(&bytes[..cut]);
    format!("{prefix}-{}-{AGENT_NAME_SUFFIX}", &hex[..hex_len])
}

/// The node label the agent's node affinity requires (value `"true"`):
/// `network.harvesterhci.io/<clusterNetwork>`.
///
/// ```
/// assert_eq!(vmdhcp_api::agent::cluster_network_node_label("mgmt"), "network.harvesterhci.io/mgmt");
/// ```
pub fn cluster_network_node_label(cluster_network: &str) -> String {
    format!("{NODE_LABEL_CLUSTER_NETWORK_PREFIX}{cluster_network}")
}

/// The agent Pod's `k8s.v1.cni.cncf.io/networks` annotation: the pool's NAD on `eth1`, as
/// upstream serialises it.
///
/// ```
/// assert_eq!(
///     vmdhcp_api::agent::multus_networks("default", "net-48"),
///     r#"[{"namespace":"default","name":"net-48","interface":"eth1"}]"#
/// );
/// ```
pub fn multus_networks(nad_namespace: &str, nad_name: &str) -> String {
    // Field order matters to byte-for-byte comparison: upstream's struct order, which
    // `preserve_order`-less serde_json maps would sort, so the object is written by hand.
    format!(
        "[{{\"namespace\":{},\"name\":{},\"interface\":{}}}]",
        Value::from(nad_namespace),
        Value::from(nad_name),
        Value::from(AGENT_INTERFACE)
    )
}

/// The script of the `ip-setter` init container (run with `/bin/sh -c`), byte for byte
/// upstream's: it puts the server address on `eth1`.
///
/// ```
/// let script = vmdhcp_api::agent::ip_setter_script("192.168.48.77".parse().unwrap(), 24);
/// assert!(script.contains("ip address add 192.168.48.77/24 dev eth1"));
/// ```
pub fn ip_setter_script(server_ip: Ipv4Addr, prefix_len: u8) -> String {
    format!(
        "\n#!/usr/bin/env sh\nset -ex\n\nip address flush dev {AGENT_INTERFACE}\nip address add {server_ip}/{prefix_len} dev {AGENT_INTERFACE}\n"
    )
}

/// The agent container's arguments: `--ippool-ref <ns>/<name>`, plus `--dry-run` when the
/// controller runs with `--no-dhcp`.
///
/// ```
/// assert_eq!(vmdhcp_api::agent::agent_args("default", "net-48", true), ["--ippool-ref", "default/net-48", "--dry-run"]);
/// ```
pub fn agent_args(pool_namespace: &str, pool_name: &str, dry_run: bool) -> Vec<String> {
    let mut args = vec![
        AGENT_ARG_IPPOOL_REF.to_owned(),
        format!("{pool_namespace}/{pool_name}"),
    ];
    if dry_run {
        args.push(AGENT_ARG_DRY_RUN.to_owned());
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn sha_hex(s: &str) -> String {
        Sha256::digest(s.as_bytes())
            .iter()
            .fold(String::new(), |mut hex, b| {
                use std::fmt::Write as _;
                let _ = write!(hex, "{b:02x}");
                hex
            })
    }

    #[rstest]
    #[case::short("default", "net-48", "default-net-48-agent")]
    #[case::just_under_limit("ns", &"a".repeat(54), &format!("ns-{}-agent", "a".repeat(54)))]
    fn short_names_are_plain(#[case] ns: &str, #[case] name: &str, #[case] want: &str) {
        assert_eq!(agent_pod_name(ns, name), want);
    }

    #[test]
    fn length_58_is_hashed_and_57_is_not() {
        let at_57 = agent_pod_name("ns", &"a".repeat(54)); // "ns-" + 54 = 57
        assert!(!at_57.contains(&sha_hex(&format!("ns-{}", "a".repeat(54)))[..5]));
        let full = format!("ns-{}", "a".repeat(55)); // 58
        let name = agent_pod_name("ns", &"a".repeat(55));
        assert_eq!(
            name,
            format!("{}-{}-agent", &full[..51], &sha_hex(&full)[..5])
        );
        assert_eq!(name.len(), 63);
    }

    #[test]
    fn cut_at_non_alphanumeric_keeps_fifty_bytes_and_six_hex() {
        // Byte 50 of "<ns>-<name>" is '-', which must not end the cut.
        let ns = "n".repeat(50);
        let full = format!("{ns}-{}", "z".repeat(20));
        assert_eq!(full.as_bytes()[50], b'-');
        let name = agent_pod_name(&ns, &"z".repeat(20));
        assert_eq!(
            name,
            format!("{}-{}-agent", &full[..50], &sha_hex(&full)[..6])
        );
        assert_eq!(name.len(), 63);
    }

    #[test]
    fn long_names_match_a_known_digest() {
        // sha256("default-" + 60 × 'x') computed independently (coreutils sha256sum).
        let name = agent_pod_name("default", &"x".repeat(60));
        let full = format!("default-{}", "x".repeat(60));
        assert_eq!(&sha_hex(&full)[..5], "bfa6e");
        assert_eq!(
            name,
            "default-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx-bfa6e-agent"
        );
    }

    #[test]
    fn non_ascii_does_not_panic() {
        let name = agent_pod_name("ns", &"é".repeat(40));
        assert!(name.ends_with("-agent"));
    }

    #[test]
    fn script_is_upstreams() {
        assert_eq!(
            ip_setter_script(Ipv4Addr::new(10, 0, 0, 2), 29),
            "\n#!/usr/bin/env sh\nset -ex\n\nip address flush dev eth1\nip address add 10.0.0.2/29 dev eth1\n"
        );
    }
}
