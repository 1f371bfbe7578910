//! vmnetcfg admission checks: every NIC's network, and the desired ("static") addresses of
//! upstream's pending static-IP change (its checks, order and messages).
//!
//! Deviations from upstream:
//!
//! - A NIC's IPPool is the pool whose `spec.networkName` names the NIC's network
//!   ([`pool_for_network`]), not the one the NAD's `ippool-namespace`/`ippool-name` labels
//!   point to. The controller allocates by network name, and the labels are written by the
//!   controller after the pool exists: checking through them let desired addresses in
//!   unchecked while they were missing, and checked them against the wrong pool while they
//!   were stale.
//! - A NIC whose network no IPPool serves is **accepted** and simply not managed. Upstream
//!   rejected the whole vmnetcfg (`… label not found`), so a VM with one managed and one
//!   unmanaged NIC got no address at all. A NIC on a NAD that does not exist is still
//!   rejected, with upstream's message: the VM cannot start either, and the message points at
//!   the typo.
//! - A bare network name (`net-48`) is resolved in the vmnetcfg's namespace, which is the
//!   VM's: KubeVirt attaches the NIC to the NAD of that namespace. Upstream's webhook looked in
//!   `default` and its controller in the empty namespace, where it never found a NAD, so a
//!   bare name only ever worked upstream for VMs in `default`, where both agree.
//! - MACs are compared normalised ([`crate::MacAddr`]) and unparsable MACs are rejected; the
//!   pool's server, router and exclusions are "not allocatable" even before the controller
//!   has marked them in the pool's status.
//! - Updates: a NIC that is new, or whose desired address is new or changed, gets the create
//!   checks (upstream's pending change only checks desired addresses on update).

use std::borrow::Borrow;
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};

use super::Violation;
use crate::addr::{parse_cidr, parse_ip};
use crate::consts::{MARK_CONFLICT, MARK_EXCLUDED, MARK_RESERVED};
use crate::ippool::IPPool;
use crate::mac::{MacAddr, same_mac};
use crate::message::UpstreamError;
use crate::network::NamespacedName;
use crate::vmnetcfg::{NetworkConfig, VirtualMachineNetworkConfig};

/// What the caller found for one NIC's network (resolved with
/// [`VirtualMachineNetworkConfig::network_of`]).
#[derive(Debug, Clone, Copy)]
pub enum Network<'a> {
    /// No NetworkAttachmentDefinition of that name exists.
    NadNotFound,
    /// The NAD exists but no IPPool serves it ([`pool_for_network`] found none).
    Unmanaged,
    /// The IPPool serving the network.
    Managed(&'a IPPool),
}

/// The IPPool serving `network`, chosen as vmdhcp's controller chooses the pool it allocates
/// from: a pool not being deleted whose `spec.networkName` resolves to `network`
/// ([`IPPool::network`]); of several (the validator refuses a second pool, but objects may
/// predate it), the oldest, then the first by name.
///
/// ```
/// use vmdhcp_api::ippool::IPPool;
/// use vmdhcp_api::network::NamespacedName;
/// use vmdhcp_api::validate::vmnetcfg::pool_for_network;
///
/// let mut pool = IPPool::new("my-pool", Default::default());
/// pool.metadata.namespace = Some("pools".into());
/// pool.spec.network_name = "default/net-48".into();
/// let pools = [pool];
/// let found = pool_for_network(&NamespacedName::new("default", "net-48"), &pools);
/// assert_eq!(found.and_then(|p| p.metadata.name.as_deref()), Some("my-pool"));
/// assert!(pool_for_network(&NamespacedName::new("pools", "net-48"), &pools).is_none());
/// ```
pub fn pool_for_network<'a, P>(
    network: &NamespacedName,
    pools: impl IntoIterator<Item = &'a P>,
) -> Option<&'a IPPool>
where
    P: Borrow<IPPool> + 'a,
{
    pools
        .into_iter()
        .map(Borrow::borrow)
        .filter(|p| {
            p.metadata.deletion_timestamp.is_none() && p.network().is_ok_and(|n| n == *network)
        })
        .min_by_key(|p| {
            (
                p.metadata.creation_timestamp.as_ref().map(|t| t.0),
                p.metadata.name.as_deref().unwrap_or_default(),
                p.metadata.namespace.as_deref().unwrap_or_default(),
            )
        })
}

/// Checks a vmnetcfg being created: every NIC's network, and every desired address.
///
/// ```
/// use vmdhcp_api::validate::vmnetcfg::{Network, validate_create};
/// use vmdhcp_api::vmnetcfg::VirtualMachineNetworkConfig;
///
/// let cfg: VirtualMachineNetworkConfig = serde_json::from_value(serde_json::json!({
///     "apiVersion": "network.harvesterhci.io/v1alpha1", "kind": "VirtualMachineNetworkConfig",
///     "metadata": {"name": "vm", "namespace": "default"},
///     "spec": {"vmName": "vm", "networkConfigs": [
///         {"networkName": "default/unmanaged", "macAddress": "fa:cf:8e:50:82:fc"}]}
/// }))?;
/// // A NIC on a network without IPPool is fine (upstream rejected the whole VM).
/// assert!(validate_create(&cfg, |_| Network::Unmanaged).is_empty());
/// let found = validate_create(&cfg, |_| Network::NadNotFound);
/// assert_eq!(found[0].to_string(), r#"network-attachment-definitions.k8s.cni.cncf.io "unmanaged" not found"#);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn validate_create<'a>(
    cfg: &VirtualMachineNetworkConfig,
    lookup: impl Fn(&NamespacedName) -> Network<'a>,
) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for (i, nic) in cfg.spec.network_configs.iter().enumerate() {
        check_nic(cfg, i, nic, &lookup, &mut seen, &mut out);
        check_mac(i, nic, &mut out);
    }
    out
}

/// Checks an update of `old` into `new`. A NIC is matched to its old self by (network, MAC);
/// nothing is checked once `new` is being deleted.
///
/// - A **new** NIC (a network and MAC the old object did not have, so also a NIC whose MAC or
///   network changed) gets every create check: its NAD exists, its MAC parses, its desired
///   address is allocatable.
/// - A NIC whose desired address was **added or changed** gets the network and address
///   checks.
/// - Other NICs are not looked up again: an edit elsewhere (the controller following the VM,
///   or removing a desired address) is not refused because their NAD or pool changed since.
///   Their desired addresses still count when looking for duplicates.
///
/// ```
/// use vmdhcp_api::validate::vmnetcfg::{Network, validate_update};
/// use vmdhcp_api::vmnetcfg::VirtualMachineNetworkConfig;
///
/// let cfg = |nics: serde_json::Value| -> VirtualMachineNetworkConfig {
///     serde_json::from_value(serde_json::json!({
///         "apiVersion": "network.harvesterhci.io/v1alpha1", "kind": "VirtualMachineNetworkConfig",
///         "metadata": {"name": "vm", "namespace": "default"},
///         "spec": {"vmName": "vm", "networkConfigs": nics}
///     })).unwrap()
/// };
/// let old = cfg(serde_json::json!([{"networkName": "default/net-a", "macAddress": "fa:cf:8e:50:82:fc"}]));
/// let new = cfg(serde_json::json!([
///     {"networkName": "default/net-a", "macAddress": "fa:cf:8e:50:82:fc"},
///     {"networkName": "default/typo", "macAddress": "fa:cf:8e:50:82:fd"}]));
/// let lookup = |n: &vmdhcp_api::network::NamespacedName| match n.name.as_str() {
///     "net-a" => Network::Unmanaged,
///     _ => Network::NadNotFound,
/// };
/// // The added NIC is checked as on create; the unchanged one is not looked up again.
/// let found = validate_update(&old, &new, lookup);
/// assert_eq!(found[0].field, "spec.networkConfigs[1].networkName");
/// assert_eq!(found[0].to_string(), r#"network-attachment-definitions.k8s.cni.cncf.io "typo" not found"#);
/// ```
pub fn validate_update<'a>(
    old: &VirtualMachineNetworkConfig,
    new: &VirtualMachineNetworkConfig,
    lookup: impl Fn(&NamespacedName) -> Network<'a>,
) -> Vec<Violation> {
    if new.metadata.deletion_timestamp.is_some() {
        return Vec::new();
    }
    let old_nics: Vec<(Option<NamespacedName>, String, Option<&str>)> = old
        .spec
        .network_configs
        .iter()
        .map(|nc| {
            (
                old.network_of(nc).ok(),
                mac_key(&nc.mac_address),
                nc.ip_address.as_deref(),
            )
        })
        .collect();
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut to_check = Vec::new();
    for (i, nic) in new.spec.network_configs.iter().enumerate() {
        let network = new.network_of(nic).ok();
        let mac = mac_key(&nic.mac_address);
        let before = old_nics
            .iter()
            .find(|(n, m, _)| *n == network && *m == mac)
            .map(|(_, _, ip)| *ip);
        let ip = nic.ip_address.as_deref();
        match before {
            None => to_check.push((i, nic, true)),
            Some(old_ip) if ip.is_some() && ip != old_ip => to_check.push((i, nic, false)),
            Some(_) => {
                // Unchanged (or its desired address removed): only claims its address.
                if let (Some(network), Some(Ok(addr))) = (network, ip.map(str::parse)) {
                    seen.insert((network, addr));
                }
            }
        }
    }
    for (i, nic, is_new) in to_check {
        check_nic(new, i, nic, &lookup, &mut seen, &mut out);
        if is_new {
            check_mac(i, nic, &mut out);
        }
    }
    out
}

fn mac_key(mac: &str) -> String {
    mac.parse::<MacAddr>()
        .map_or_else(|_| mac.to_owned(), |m| m.to_string())
}

fn nic_field(i: usize, name: &str) -> String {
    format!("spec.networkConfigs[{i}].{name}")
}

fn check_mac(i: usize, nic: &NetworkConfig, out: &mut Vec<Violation>) {
    if nic.mac().is_err() {
        let mac = &nic.mac_address;
        out.push(Violation::new(
            nic_field(i, "macAddress"),
            mac,
            format!("mac address {mac} is not a valid MAC address"),
        ));
    }
}

fn check_nic<'a>(
    cfg: &VirtualMachineNetworkConfig,
    i: usize,
    nic: &NetworkConfig,
    lookup: &impl Fn(&NamespacedName) -> Network<'a>,
    seen: &mut HashSet<(NamespacedName, Ipv4Addr)>,
    out: &mut Vec<Violation>,
) {
    let network = match cfg.network_of(nic) {
        Ok(network) => network,
        Err(e) => {
            out.push(Violation::new(
                nic_field(i, "networkName"),
                &nic.network_name,
                e.to_string(),
            ));
            return;
        }
    };
    let pool = match lookup(&network) {
        Network::NadNotFound => {
            let msg = UpstreamError::NadNotFound {
                name: network.name.clone(),
            }
            .to_string();
            out.push(Violation::new(
                nic_field(i, "networkName"),
                &nic.network_name,
                msg,
            ));
            return;
        }
        Network::Unmanaged => return,
        Network::Managed(pool) => pool,
    };
    if let Some(ip) = &nic.ip_address
        && let Err(msg) = check_desired_ip(ip, nic, &network, pool, seen)
    {
        out.push(Violation::new(nic_field(i, "ipAddress"), ip, msg));
    }
}

/// Upstream's desired-address checks (its pending static-IP change, PR #157) in its order,
/// then ours (the spec's reserved addresses).
fn check_desired_ip(
    value: &str,
    nic: &NetworkConfig,
    network: &NamespacedName,
    pool: &IPPool,
    seen: &mut HashSet<(NamespacedName, Ipv4Addr)>,
) -> Result<(), String> {
    let ip = match value.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => ip,
        Ok(IpAddr::V6(_)) => return Err(format!("ip address {value} is not an IPv4 address")),
        Err(_) => return Err(format!("ParseAddr({value:?}): unable to parse IP")),
    };
    if !seen.insert((network.clone(), ip)) {
        return Err(format!("duplicate desired ip {ip} on network {network}"));
    }
    let cfg = &pool.spec.ipv4_config;
    let net = parse_cidr(&cfg.cidr).map_err(|e| e.to_string())?;
    let parse = |name, v: &str| {
        parse_ip(name, v).map_err(|_| format!("ParseAddr({v:?}): unable to parse IP"))
    };
    let start = Some(cfg.pool.start.as_str())
        .filter(|s| !s.is_empty())
        .map(|s| parse("start", s))
        .transpose()?;
    let end = Some(cfg.pool.end.as_str())
        .filter(|s| !s.is_empty())
        .map(|s| parse("end", s))
        .transpose()?;
    if !net.contains(&ip) {
        return Err(format!("ip address {ip} is not within subnet {}", cfg.cidr));
    }
    if start.is_some_and(|s| ip < s) || end.is_some_and(|e| ip > e) {
        let show =
            |a: Option<Ipv4Addr>| a.map_or_else(|| "invalid IP".to_owned(), |a| a.to_string());
        return Err(format!(
            "ip address {ip} is not within pool range {}-{}",
            show(start),
            show(end)
        ));
    }
    if ip == net.network() {
        return Err(format!("ip address {ip} is the same as network ip"));
    }
    if ip == net.broadcast() {
        return Err(format!("ip address {ip} is the same as broadcast ip"));
    }
    let mut reserved = std::iter::once(cfg.server_ip.as_str())
        .chain(cfg.router.as_deref())
        .chain(cfg.pool.excludes().iter().map(String::as_str));
    let mut allocated = pool
        .allocated()
        .filter(|(k, _)| k.parse() == Ok(ip))
        .map(|(_, v)| v);
    if reserved.any(|r| r.parse() == Ok(ip)) {
        return Err(format!("ip address {ip} is not allocatable"));
    }
    match allocated.next() {
        Some(MARK_EXCLUDED | MARK_RESERVED) => Err(format!("ip address {ip} is not allocatable")),
        Some(MARK_CONFLICT) => Err(format!(
            "ip address {ip} is not allocatable: it is marked {MARK_CONFLICT} (a DHCP client \
             found it in use by another host); remove the mark from the IPPool's status once \
             the conflict is resolved"
        )),
        Some(mac) if !same_mac(mac, &nic.mac_address) => {
            Err(format!("ip address {ip} is already allocated to mac {mac}"))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
