//! vmnetcfg admission checks (spec/upstream.md §5.4 and PR #157's desired-IP checks).
//!
//! Deviation from upstream: a NIC whose network no IPPool serves (the NAD has no IPPool
//! labels, or they name a pool that is gone) is **accepted** and simply not managed. Upstream
//! rejected the whole vmnetcfg, so a VM with one managed and one unmanaged NIC got no address
//! at all. A NIC on a NAD that does not exist is still rejected, as upstream: the VM cannot
//! start either, and the message points at the typo.
//!
//! Also ours: MACs are compared normalised ([`crate::MacAddr`]), a bare network name is
//! resolved in the vmnetcfg's namespace, unparsable MACs are rejected, and the pool's server,
//! router and exclusions are "not allocatable" even before the controller has marked them in
//! the pool's status.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};

use super::Violation;
use crate::addr::{parse_cidr, parse_ip};
use crate::consts::{MARK_EXCLUDED, MARK_RESERVED};
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
    /// The NAD exists but no IPPool serves it: no IPPool labels
    /// ([`pool_ref_from_nad_labels`](crate::network::pool_ref_from_nad_labels) is `None`), or
    /// the pool they name does not exist.
    Unmanaged,
    /// The IPPool serving the network.
    Managed(&'a IPPool),
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

/// Checks an update (PR #157 semantics): only desired addresses that are new or changed — per
/// (network, MAC) — are checked, against the others; unchanged NICs are not looked up again.
/// Nothing is checked once `new` is being deleted.
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
    let previous = |nc: &NetworkConfig| {
        let (network, mac) = (new.network_of(nc).ok(), mac_key(&nc.mac_address));
        old_nics
            .iter()
            .find(|(n, m, _)| *n == network && *m == mac)
            .map(|(_, _, ip)| *ip)
    };
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut changed = Vec::new();
    for (i, nic) in new.spec.network_configs.iter().enumerate() {
        let before = previous(nic);
        if before.is_none() {
            check_mac(i, nic, &mut out);
        }
        let Some(ip) = nic.ip_address.as_deref() else {
            continue;
        };
        match (before, ip.parse::<Ipv4Addr>(), new.network_of(nic)) {
            (Some(Some(old_ip)), Ok(addr), Ok(network)) if old_ip == ip => {
                seen.insert((network, addr));
            }
            (Some(Some(old_ip)), _, _) if old_ip == ip => {}
            _ => changed.push((i, nic)),
        }
    }
    for (i, nic) in changed {
        check_nic(new, i, nic, &lookup, &mut seen, &mut out);
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

/// PR #157's checks in its order, then ours (the spec's reserved addresses).
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
        Some(mac) if !same_mac(mac, &nic.mac_address) => {
            Err(format!("ip address {ip} is already allocated to mac {mac}"))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
