//! An IPPool's options as a `dhcp-server` configuration. Pure: the agent rebuilds the
//! configuration from the latest spec (and the latest NTP resolution) and swaps it into the
//! running server, so the next reply carries the new values — upstream snapshotted options per
//! lease until the pod restarted (issue #7015).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use dhcp_server::{Config, LeaseTime};
use vmdhcp_api::convert::{LeaseOptions, NtpServer};

/// NTP host name → its IPv4 addresses, as last resolved.
pub type Resolved = BTreeMap<String, Vec<Ipv4Addr>>;

/// The server configuration for `opts`.
///
/// Sent: server identifier (`serverIP`), subnet mask (from `cidr`), router only when one is
/// set (never a zero-length option 3, which broke clients under upstream), DNS, domain name,
/// domain search, NTP (addresses as written, host names as resolved in `ntp`; a host that has
/// not resolved yet is left out) and the lease time. The server is not authoritative: a VM
/// network may have other DHCP servers for MACs this pool does not know.
///
/// # Errors
/// What `dhcp-server` rejects (e.g. a server identifier outside the subnet).
pub fn config(opts: &LeaseOptions, ntp: &Resolved) -> Result<Config, dhcp_server::Error> {
    let mut builder = Config::builder(opts.server_ip, opts.network)
        .routers(opts.router)
        .dns(opts.dns.iter().copied())
        .domain_search(opts.domain_search.iter().cloned())
        .ntp(ntp_addresses(&opts.ntp, ntp))
        .lease_time(LeaseTime::from_secs(opts.lease_time_secs))
        .authoritative(false);
    if let Some(domain) = &opts.domain_name {
        builder = builder.domain_name(domain.clone());
    }
    builder.build()
}

/// The NTP host names `opts` asks the agent to resolve.
pub fn ntp_hosts(opts: &LeaseOptions) -> Vec<String> {
    opts.ntp
        .iter()
        .filter_map(|s| match s {
            NtpServer::Host(h) => Some(h.clone()),
            NtpServer::Ip(_) => None,
        })
        .collect()
}

/// NTP servers in spec order, host names expanded, duplicates dropped.
fn ntp_addresses(servers: &[NtpServer], resolved: &Resolved) -> Vec<Ipv4Addr> {
    let mut out: Vec<Ipv4Addr> = Vec::new();
    let mut push = |ip: Ipv4Addr| {
        if !out.contains(&ip) {
            out.push(ip);
        }
    };
    for server in servers {
        match server {
            NtpServer::Ip(ip) => push(*ip),
            NtpServer::Host(host) => {
                for ip in resolved.get(host).into_iter().flatten() {
                    push(*ip);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmdhcp_api::ippool::IPv4Config;

    fn opts(f: impl FnOnce(&mut IPv4Config)) -> LeaseOptions {
        let mut cfg = IPv4Config {
            cidr: "192.168.48.0/24".into(),
            server_ip: "192.168.48.77".into(),
            ..Default::default()
        };
        f(&mut cfg);
        LeaseOptions::from_spec(&cfg).expect("valid fixture spec")
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().expect("fixture IP")
    }

    /// The option's value, without its code and length octets.
    fn payload(config: &Config, code: u8) -> Option<&[u8]> {
        config.encoded_option(code).map(|o| &o[2..])
    }

    #[test]
    fn every_spec_option_reaches_the_config() {
        let o = opts(|c| {
            c.router = Some("192.168.48.1".into());
            c.dns = vec!["1.1.1.1".into(), "8.8.8.8".into()];
            c.domain_name = Some("example.test".into());
            c.domain_search = vec!["a.example.test".into()];
            c.ntp = vec!["192.168.48.2".into()];
            c.lease_time = Some(600);
        });
        let config = config(&o, &Resolved::new()).expect("builds");
        assert_eq!(config.server_id(), ip("192.168.48.77"));
        assert_eq!(config.subnet().to_string(), "192.168.48.0/24");
        assert_eq!(config.routers(), [ip("192.168.48.1")]);
        assert_eq!(config.lease_time().as_secs(), 600);
        assert!(!config.authoritative());
        assert_eq!(payload(&config, 6), Some(&[1, 1, 1, 1, 8, 8, 8, 8][..]));
        assert_eq!(payload(&config, 15), Some(&b"example.test"[..]));
        assert_eq!(payload(&config, 42), Some(&[192, 168, 48, 2][..]));
        assert!(payload(&config, 119).is_some());
    }

    #[test]
    fn no_router_means_no_option_3_and_the_default_lease_is_a_year() {
        let config = config(&opts(|_| {}), &Resolved::new()).expect("builds");
        assert!(config.routers().is_empty());
        assert_eq!(payload(&config, 3), None);
        assert_eq!(config.lease_time().as_secs(), 31_536_000);
    }

    #[test]
    fn ntp_host_names_use_the_latest_resolution_in_spec_order() {
        let o = opts(|c| c.ntp = vec!["pool.ntp.test".into(), "192.168.48.2".into()]);
        assert_eq!(ntp_hosts(&o), ["pool.ntp.test"]);
        // Not resolved yet: only the literal is sent.
        let before = config(&o, &Resolved::new()).expect("builds");
        assert_eq!(payload(&before, 42), Some(&[192, 168, 48, 2][..]));
        let resolved = Resolved::from([(
            "pool.ntp.test".to_owned(),
            vec![ip("10.0.0.1"), ip("192.168.48.2")],
        )]);
        let after = config(&o, &resolved).expect("builds");
        assert_eq!(
            payload(&after, 42),
            Some(&[10, 0, 0, 1, 192, 168, 48, 2][..]),
            "host first (spec order), duplicate dropped"
        );
    }
}
