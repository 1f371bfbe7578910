//! Fixture builders for tests (feature `testutil`; always on in this crate's own tests).
//!
//! ```
//! use vmdhcp_api::ippool::IPPool;
//!
//! let pool = IPPool::test("default", "net-48")
//!     .with_cidr("192.168.48.0/24")
//!     .with_server("192.168.48.77")
//!     .with_range("192.168.48.81", "192.168.48.90")
//!     .with_exclude(&["192.168.48.81", "192.168.48.90"])
//!     .with_allocated("192.168.48.84", "ca:70:82:e6:84:6e");
//! assert_eq!(pool.spec.network_name, "default/net-48");
//! ```

use jiff::Timestamp;

use crate::condition;
use crate::ippool::{IPPool, IPPoolSpec, IPPoolStatus, IPv4Status, PodReference};
use crate::vmnetcfg::{
    NetworkConfig, NetworkConfigStatus, VirtualMachineNetworkConfig,
    VirtualMachineNetworkConfigSpec, VirtualMachineNetworkConfigStatus,
};

/// The timestamp builders use for conditions: fixed, so fixtures compare equal.
pub const FIXED_TIME: &str = "2024-01-01T00:00:00Z";

fn fixed_time() -> Timestamp {
    FIXED_TIME.parse().expect("FIXED_TIME is a valid timestamp")
}

impl IPPool {
    /// An IPPool `namespace/name` serving the NAD of the same name and namespace, with an empty
    /// `ipv4Config`.
    pub fn test(namespace: &str, name: &str) -> Self {
        let mut pool = IPPool::new(
            name,
            IPPoolSpec {
                network_name: format!("{namespace}/{name}"),
                ..IPPoolSpec::default()
            },
        );
        pool.metadata.namespace = Some(namespace.to_owned());
        pool
    }

    /// Sets `spec.networkName`.
    #[must_use]
    pub fn with_network(mut self, network_name: &str) -> Self {
        network_name.clone_into(&mut self.spec.network_name);
        self
    }

    /// Sets `spec.ipv4Config.cidr`.
    #[must_use]
    pub fn with_cidr(mut self, cidr: &str) -> Self {
        cidr.clone_into(&mut self.spec.ipv4_config.cidr);
        self
    }

    /// Sets `spec.ipv4Config.serverIP`.
    #[must_use]
    pub fn with_server(mut self, ip: &str) -> Self {
        ip.clone_into(&mut self.spec.ipv4_config.server_ip);
        self
    }

    /// Sets `spec.ipv4Config.router`.
    #[must_use]
    pub fn with_router(mut self, ip: &str) -> Self {
        self.spec.ipv4_config.router = Some(ip.to_owned());
        self
    }

    /// Sets `spec.ipv4Config.pool.start` and `.end`.
    #[must_use]
    pub fn with_range(mut self, start: &str, end: &str) -> Self {
        start.clone_into(&mut self.spec.ipv4_config.pool.start);
        end.clone_into(&mut self.spec.ipv4_config.pool.end);
        self
    }

    /// Sets `spec.ipv4Config.pool.exclude` (present, possibly empty).
    #[must_use]
    pub fn with_exclude(mut self, ips: &[&str]) -> Self {
        self.spec.ipv4_config.pool.exclude = Some(ips.iter().map(ToString::to_string).collect());
        self
    }

    /// Sets `spec.ipv4Config.dns`.
    #[must_use]
    pub fn with_dns(mut self, servers: &[&str]) -> Self {
        self.spec.ipv4_config.dns = servers.iter().map(ToString::to_string).collect();
        self
    }

    /// Sets `spec.ipv4Config.ntp`.
    #[must_use]
    pub fn with_ntp(mut self, servers: &[&str]) -> Self {
        self.spec.ipv4_config.ntp = servers.iter().map(ToString::to_string).collect();
        self
    }

    /// Sets `spec.ipv4Config.domainName`.
    #[must_use]
    pub fn with_domain_name(mut self, domain: &str) -> Self {
        self.spec.ipv4_config.domain_name = Some(domain.to_owned());
        self
    }

    /// Sets `spec.ipv4Config.domainSearch`.
    #[must_use]
    pub fn with_domain_search(mut self, domains: &[&str]) -> Self {
        self.spec.ipv4_config.domain_search = domains.iter().map(ToString::to_string).collect();
        self
    }

    /// Sets `spec.ipv4Config.leaseTime`.
    #[must_use]
    pub fn with_lease_time(mut self, secs: i64) -> Self {
        self.spec.ipv4_config.lease_time = Some(secs);
        self
    }

    /// Sets `spec.paused`.
    #[must_use]
    pub fn with_paused(mut self, paused: bool) -> Self {
        self.spec.paused = Some(paused);
        self
    }

    /// Adds `status.ipv4.allocated[ip] = value` (a MAC or a mark).
    #[must_use]
    pub fn with_allocated(mut self, ip: &str, value: &str) -> Self {
        self.ipv4_status()
            .allocated
            .insert(ip.to_owned(), value.to_owned());
        self
    }

    /// Sets `status.ipv4.used` and `.available`.
    #[must_use]
    pub fn with_counts(mut self, used: i64, available: i64) -> Self {
        let v4 = self.ipv4_status();
        v4.used = used;
        v4.available = available;
        self
    }

    /// Sets a condition as wrangler would at [`FIXED_TIME`].
    #[must_use]
    pub fn with_condition(
        mut self,
        type_: &str,
        status: &str,
        reason: &str,
        message: &str,
    ) -> Self {
        let st = self.status.get_or_insert_with(IPPoolStatus::default);
        condition::set(
            &mut st.conditions,
            type_,
            status,
            reason,
            message,
            fixed_time(),
        );
        self
    }

    /// Sets `status.agentPodRef`.
    #[must_use]
    pub fn with_agent_pod_ref(
        mut self,
        namespace: &str,
        name: &str,
        image: &str,
        uid: &str,
    ) -> Self {
        self.status
            .get_or_insert_with(IPPoolStatus::default)
            .agent_pod_ref = Some(PodReference {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            image: image.to_owned(),
            uid: uid.to_owned(),
        });
        self
    }

    fn ipv4_status(&mut self) -> &mut IPv4Status {
        self.status
            .get_or_insert_with(IPPoolStatus::default)
            .ipv4
            .get_or_insert_with(IPv4Status::default)
    }
}

impl VirtualMachineNetworkConfig {
    /// A vmnetcfg `namespace/name` for the VM of the same name, without NICs.
    pub fn test(namespace: &str, name: &str) -> Self {
        let mut cfg = VirtualMachineNetworkConfig::new(
            name,
            VirtualMachineNetworkConfigSpec {
                vm_name: name.to_owned(),
                ..VirtualMachineNetworkConfigSpec::default()
            },
        );
        cfg.metadata.namespace = Some(namespace.to_owned());
        cfg
    }

    /// Adds a NIC without desired address.
    #[must_use]
    pub fn with_nic(mut self, network_name: &str, mac: &str) -> Self {
        self.spec.network_configs.push(NetworkConfig {
            network_name: network_name.to_owned(),
            mac_address: mac.to_owned(),
            ip_address: None,
        });
        self
    }

    /// Adds a NIC with a desired address.
    #[must_use]
    pub fn with_nic_ip(mut self, network_name: &str, mac: &str, ip: &str) -> Self {
        self.spec.network_configs.push(NetworkConfig {
            network_name: network_name.to_owned(),
            mac_address: mac.to_owned(),
            ip_address: Some(ip.to_owned()),
        });
        self
    }

    /// Sets `spec.paused`.
    #[must_use]
    pub fn with_paused(mut self, paused: bool) -> Self {
        self.spec.paused = Some(paused);
        self
    }

    /// Adds a `status.networkConfigs` entry.
    #[must_use]
    pub fn with_status_nic(mut self, network_name: &str, mac: &str, ip: &str, state: &str) -> Self {
        self.status
            .get_or_insert_with(VirtualMachineNetworkConfigStatus::default)
            .network_configs
            .push(NetworkConfigStatus {
                allocated_ip_address: ip.to_owned(),
                mac_address: mac.to_owned(),
                network_name: network_name.to_owned(),
                state: state.to_owned(),
            });
        self
    }

    /// Sets a condition as wrangler would at [`FIXED_TIME`].
    #[must_use]
    pub fn with_condition(
        mut self,
        type_: &str,
        status: &str,
        reason: &str,
        message: &str,
    ) -> Self {
        let st = self
            .status
            .get_or_insert_with(VirtualMachineNetworkConfigStatus::default);
        condition::set(
            &mut st.conditions,
            type_,
            status,
            reason,
            message,
            fixed_time(),
        );
        self
    }
}
