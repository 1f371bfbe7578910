//! Resolves the pool's NTP host names with the pod's resolver, at start and then on a
//! schedule, so a changed DNS record reaches the VMs without a restart. A failure is logged
//! and counted and the last good addresses stay in use (upstream resolved once per lease and
//! could hand different VMs different answers).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::metrics;
use crate::state::Served;

/// Resolves every NTP host name of the served options now.
pub async fn resolve_all(served: &Served) {
    for host in served.ntp_hosts() {
        match lookup(&host).await {
            Ok(addrs) if !addrs.is_empty() => {
                if served.set_ntp(&host, addrs.clone()) {
                    tracing::info!(host, ?addrs, "NTP server resolved");
                }
            }
            Ok(_) => {
                metrics::ntp_error();
                tracing::warn!(
                    host,
                    "NTP server has no IPv4 address; keeping the last known"
                );
            }
            Err(e) => {
                metrics::ntp_error();
                tracing::warn!(host, error = %e, "cannot resolve NTP server; keeping the last known");
            }
        }
    }
}

/// Re-resolves every `every` until `stop`, and whenever `changed` fires (new options).
pub async fn run(
    served: Arc<Served>,
    every: Duration,
    changed: Arc<tokio::sync::Notify>,
    stop: CancellationToken,
) {
    loop {
        resolve_all(&served).await;
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
            () = changed.notified() => {}
        }
    }
}

async fn lookup(host: &str) -> std::io::Result<Vec<Ipv4Addr>> {
    let mut out = Vec::new();
    for addr in tokio::net::lookup_host((host, 123)).await? {
        if let IpAddr::V4(ip) = addr.ip()
            && !out.contains(&ip)
        {
            out.push(ip);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_name_that_resolves_reaches_the_config_and_a_failure_keeps_it() {
        let served = Served::new();
        let mut pool: crate::pool::Pool = serde_json::from_value(serde_json::json!({
            "apiVersion": "network.harvesterhci.io/v1alpha1", "kind": "IPPool",
            "metadata": {"name": "net-48", "namespace": "default"},
            "spec": {"networkName": "default/net-48", "ipv4Config": {
                "cidr": "192.168.48.0/24", "serverIP": "192.168.48.77",
                "ntp": ["localhost"],
                "pool": {"start": "192.168.48.81", "end": "192.168.48.90"}}}
        }))
        .expect("fixture");
        served.apply(&pool).expect("applies");
        // `localhost` resolves without any network (/etc/hosts).
        resolve_all(&served).await;
        let handle = served.config().expect("configured");
        assert_eq!(
            handle.current().encoded_option(42),
            Some(&[42, 4, 127, 0, 0, 1][..])
        );

        // A name that cannot resolve (RFC 6761 `.invalid`) leaves the config alone.
        pool.spec.ipv4_config.ntp = vec!["localhost".into(), "ntp.vmdhcp.invalid".into()];
        served.apply(&pool).expect("applies");
        resolve_all(&served).await;
        assert_eq!(
            handle.current().encoded_option(42),
            Some(&[42, 4, 127, 0, 0, 1][..])
        );
    }
}
