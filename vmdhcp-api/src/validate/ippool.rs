//! IPPool admission checks: upstream's, plus the ones upstream lacks.
//!
//! Order of the findings: parse errors (`cidr`, `pool.start`, `pool.end`, `serverIP`,
//! `router`), NAD existence, service-CIDR overlap, range, server, router — upstream's order
//! and messages — then ours: range order, exclusions, DNS, NTP, domain name and search list,
//! one pool per network, and on update the immutable fields and the resize check.
//!
//! Our extra checks are *ratcheting* on update: they only look at fields the update changes,
//! so objects written before (by upstream or an older vmdhcp) stay editable.
//!
//! Zero values mean what they mean upstream and are accepted: `leaseTime` 0 or negative is
//! the default lease (one year), `domainName: ""` sends no domain name, empty lists send
//! nothing. `leaseTime` is never refused (upstream accepted every integer); values that are
//! served differently than written, or that make clients renew constantly, get a warning
//! instead ([`warnings`]).

use std::net::Ipv4Addr;
use std::sync::Arc;

use ipnet::Ipv4Net;

use super::{MAX_LEASE_TIME_SECS, MIN_LEASE_TIME_SECS, Violation, is_dns_name};
use crate::addr::{field, indexed, parse_cidr, parse_ip};
use crate::consts::{DEFAULT_LEASE_TIME_SECS, MARK_RESERVED};
use crate::ippool::{IPPool, IPv4Config};
use crate::message::UpstreamError;
use crate::status::is_mark;
use crate::vmnetcfg::VirtualMachineNetworkConfig;

/// What the checks need from the cluster, looked up by the caller.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The cluster's service network (`--service-cidr`); no overlap check when `None`.
    pub service_cidr: Option<Ipv4Net>,
    /// Whether the NetworkAttachmentDefinition named by `spec.networkName` exists, resolved
    /// with [`IPPool::network`].
    pub nad_exists: bool,
    /// The IPPools that exist (the validated one may be among them; it is skipped). `Arc`s,
    /// as a reflector store hands them out: a pool's status can be large.
    pub pools: &'a [Arc<IPPool>],
}

/// Checks an IPPool being created (after defaulting).
///
/// ```
/// use vmdhcp_api::ippool::IPPool;
/// use vmdhcp_api::validate::ippool::{Context, validate_create};
///
/// let mut pool: IPPool = serde_json::from_value(serde_json::json!({
///     "apiVersion": "network.harvesterhci.io/v1alpha1", "kind": "IPPool",
///     "metadata": {"name": "net-48", "namespace": "default"},
///     "spec": {"networkName": "default/net-48", "ipv4Config": {
///         "cidr": "192.168.48.0/24", "serverIP": "192.168.48.77",
///         "pool": {"start": "192.168.48.81", "end": "192.168.48.90"}}}
/// }))?;
/// let ctx = Context { service_cidr: Some("10.53.0.0/16".parse()?), nad_exists: true, pools: &[] };
/// assert!(validate_create(&pool, &ctx).is_empty());
///
/// pool.spec.ipv4_config.pool.start = "192.168.49.1".into();
/// let found = validate_create(&pool, &ctx);
/// assert_eq!(found[0].to_string(), "start ip 192.168.49.1 is not within subnet");
/// assert_eq!(found[0].field, "spec.ipv4Config.pool.start");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn validate_create(pool: &IPPool, ctx: &Context<'_>) -> Vec<Violation> {
    let mut out = Vec::new();
    let addrs = parse(&pool.spec.ipv4_config, &mut out);
    let mut occupied = status_occupied(pool);
    let cfg = &pool.spec.ipv4_config;
    occupied.extend(
        cfg.pool
            .excludes()
            .iter()
            .filter_map(|e| e.parse::<Ipv4Addr>().ok()),
    );
    upstream_checks(pool, ctx, &addrs, &occupied, &mut out);
    extra_checks(pool, None, &addrs, &mut out);
    duplicate_network(pool, ctx.pools, &mut out);
    out
}

/// Checks an update of `old` into `new`. Nothing is checked once `new` is being deleted.
///
/// Besides the create checks: the fields upstream's CEL rules freeze (same messages), range
/// order, and that a range change keeps every allocation inside the new range.
pub fn validate_update(old: &IPPool, new: &IPPool, ctx: &Context<'_>) -> Vec<Violation> {
    if new.metadata.deletion_timestamp.is_some() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let addrs = parse(&new.spec.ipv4_config, &mut out);
    upstream_checks(new, ctx, &addrs, &status_occupied(new), &mut out);
    immutable_fields(&old.spec, &new.spec, &mut out);
    extra_checks(new, Some(&old.spec.ipv4_config), &addrs, &mut out);
    resize_keeps_allocations(old, new, &addrs, &mut out);
    out
}

/// Checks the deletion of an IPPool: refused while a vmnetcfg has a NIC on its network.
///
/// Upstream looked the vmnetcfgs up by the pool's *own* namespace/name instead of its
/// `spec.networkName` (issue #10380); we compare resolved network names.
pub fn validate_delete(pool: &IPPool, vmnetcfgs: &[VirtualMachineNetworkConfig]) -> Vec<Violation> {
    let Ok(network) = pool.network() else {
        return Vec::new();
    };
    let users: Vec<String> = vmnetcfgs
        .iter()
        .filter(|cfg| {
            cfg.spec
                .network_configs
                .iter()
                .any(|nc| cfg.network_of(nc).is_ok_and(|n| n == network))
        })
        .map(|cfg| {
            format!(
                "{}/{}",
                cfg.metadata.namespace.as_deref().unwrap_or_default(),
                cfg.metadata.name.as_deref().unwrap_or_default()
            )
        })
        .collect();
    if users.is_empty() {
        return Vec::new();
    }
    let name = pool.metadata.name.clone().unwrap_or_default();
    vec![Violation::new(
        "metadata.name",
        name,
        UpstreamError::IpPoolInUse { vmnetcfgs: users }.to_string(),
    )]
}

/// Advice on an IPPool being created (`old` is `None`) or updated: values that are accepted,
/// as upstream accepted them, but are served differently than written or are likely
/// mistakes. The webhook returns them as admission warnings (`kubectl` prints `Warning: …`).
/// On update only changed fields are looked at, as for the checks.
///
/// `leaseTime`: 0 means the default (one year), silently, as upstream; a negative value means
/// the default too; below [`MIN_LEASE_TIME_SECS`] clients renew several times a minute; above
/// [`MAX_LEASE_TIME_SECS`] the longest finite lease is sent (upstream's 32-bit conversion
/// wrapped around instead).
///
/// ```
/// use vmdhcp_api::ippool::IPPool;
/// use vmdhcp_api::validate::ippool::warnings;
///
/// let mut pool = IPPool::new("net-48", Default::default());
/// pool.spec.ipv4_config.lease_time = Some(0);
/// assert!(warnings(None, &pool).is_empty());
/// pool.spec.ipv4_config.lease_time = Some(-1);
/// assert_eq!(
///     warnings(None, &pool)[0].to_string(),
///     "lease time -1 is not positive: leases last the default 31536000 seconds (one year)"
/// );
/// ```
pub fn warnings(old: Option<&IPPool>, new: &IPPool) -> Vec<Violation> {
    let mut out = Vec::new();
    if new.metadata.deletion_timestamp.is_some() {
        return out;
    }
    let lease = new.spec.ipv4_config.lease_time;
    if let Some(secs) = lease
        && old.is_none_or(|o| o.spec.ipv4_config.lease_time != lease)
    {
        // 0 is upstream's documented "unset": no advice.
        let msg = if secs < 0 {
            format!(
                "lease time {secs} is not positive: leases last the default \
                 {DEFAULT_LEASE_TIME_SECS} seconds (one year)"
            )
        } else if (1..MIN_LEASE_TIME_SECS).contains(&secs) {
            format!(
                "lease time {secs} is shorter than {MIN_LEASE_TIME_SECS} seconds: clients renew \
                 several times a minute"
            )
        } else if secs > MAX_LEASE_TIME_SECS {
            format!(
                "lease time {secs} is longer than the longest finite DHCP lease: \
                 {MAX_LEASE_TIME_SECS} seconds are sent"
            )
        } else {
            return out;
        };
        out.push(Violation::new(field::LEASE_TIME, secs.to_string(), msg));
    }
    out
}

/// The addresses of the spec that parsed; `None` for empty or unparsable ones.
#[derive(Debug, Default)]
struct Addrs {
    net: Option<Ipv4Net>,
    start: Option<Ipv4Addr>,
    end: Option<Ipv4Addr>,
    server: Option<Ipv4Addr>,
    router: Option<Ipv4Addr>,
}

/// Upstream's `LoadPool`: empty values are skipped, others must parse.
fn parse(cfg: &IPv4Config, out: &mut Vec<Violation>) -> Addrs {
    let net = match parse_cidr(&cfg.cidr) {
        Ok(net) => Some(net),
        Err(e) => {
            out.push(Violation::new(field::CIDR, &cfg.cidr, e.to_string()));
            None
        }
    };
    let mut ip = |name: &str, value: &str| {
        if value.is_empty() {
            return None;
        }
        parse_ip(name, value)
            .map_err(|_| {
                out.push(Violation::new(
                    name,
                    value,
                    format!("ParseAddr({value:?}): unable to parse IP"),
                ));
            })
            .ok()
    };
    Addrs {
        net,
        start: ip(field::START, &cfg.pool.start),
        end: ip(field::END, &cfg.pool.end),
        server: ip(field::SERVER_IP, &cfg.server_ip),
        router: ip(field::ROUTER, cfg.router.as_deref().unwrap_or_default()),
    }
}

/// Allocated (MAC), `EXCLUDED` and `CONFLICT` addresses of the status: what the server IP must
/// not be.
fn status_occupied(pool: &IPPool) -> Vec<Ipv4Addr> {
    pool.allocated()
        .filter(|(_, mac)| *mac != MARK_RESERVED)
        .filter_map(|(ip, _)| ip.parse().ok())
        .collect()
}

fn upstream_checks(
    pool: &IPPool,
    ctx: &Context<'_>,
    a: &Addrs,
    occupied: &[Ipv4Addr],
    out: &mut Vec<Violation>,
) {
    let cfg = &pool.spec.ipv4_config;
    match pool.network() {
        Err(e) => out.push(Violation::new(
            field::NETWORK_NAME,
            &pool.spec.network_name,
            e.to_string(),
        )),
        Ok(nad) if !ctx.nad_exists => {
            let msg = UpstreamError::NadNotFound { name: nad.name }.to_string();
            out.push(Violation::new(
                field::NETWORK_NAME,
                &pool.spec.network_name,
                msg,
            ));
        }
        Ok(_) => {}
    }
    let Some(net) = a.net else { return };
    if let Some(svc) = ctx.service_cidr.map(|s| s.trunc())
        && (net.contains(&svc.network()) || svc.contains(&net.network()))
    {
        let msg = format!("cidr {} overlaps cluster service cidr {svc}", cfg.cidr);
        out.push(Violation::new(field::CIDR, &cfg.cidr, msg));
    }
    let position = |name: &str, label: &str, ip: Option<Ipv4Addr>, out: &mut Vec<Violation>| {
        let Some(ip) = ip else { return true };
        let msg = if !net.contains(&ip) {
            format!("{label} ip {ip} is not within subnet")
        } else if ip == net.network() {
            format!("{label} ip {ip} is the same as network ip")
        } else if ip == net.broadcast() {
            format!("{label} ip {ip} is the same as broadcast ip")
        } else {
            return true;
        };
        out.push(Violation::new(name, ip.to_string(), msg));
        false
    };
    position(field::START, "start", a.start, out);
    position(field::END, "end", a.end, out);
    if position(field::SERVER_IP, "server", a.server, out)
        && let Some(server) = a.server
    {
        if a.router == Some(server) {
            out.push(Violation::new(
                field::SERVER_IP,
                server.to_string(),
                format!("server ip {server} is the same as router ip"),
            ));
        } else if occupied.contains(&server) {
            out.push(Violation::new(
                field::SERVER_IP,
                server.to_string(),
                format!("server ip {server} is already occupied"),
            ));
        }
    }
    position(field::ROUTER, "router", a.router, out);
}

/// Mirrors the CEL transition rules, so the messages are the same whichever layer rejects.
/// `pool.start`/`pool.end` are deliberately absent: see [`crate::ippool`].
fn immutable_fields(
    old: &crate::ippool::IPPoolSpec,
    new: &crate::ippool::IPPoolSpec,
    out: &mut Vec<Violation>,
) {
    let (o, n) = (&old.ipv4_config, &new.ipv4_config);
    let mut frozen = |changed: bool, name: &str, value: &str, msg: &str| {
        if changed {
            out.push(Violation::new(name, value, msg));
        }
    };
    frozen(
        old.network_name != new.network_name,
        field::NETWORK_NAME,
        &new.network_name,
        "NetworkName is immutable",
    );
    frozen(o.cidr != n.cidr, field::CIDR, &n.cidr, "CIDR is immutable");
    frozen(
        o.server_ip != n.server_ip,
        field::SERVER_IP,
        &n.server_ip,
        "ServerIP is immutable",
    );
    match (&o.router, &n.router) {
        (Some(_), None) => frozen(true, field::ROUTER, "", "Router is required once set"),
        (Some(a), Some(b)) => frozen(a != b, field::ROUTER, b, "Router is immutable"),
        _ => {}
    }
    match (&o.pool.exclude, &n.pool.exclude) {
        (Some(_), None) => frozen(true, field::EXCLUDE, "", "End is required once set"),
        (Some(a), Some(b)) => frozen(a != b, field::EXCLUDE, &b.join(","), "Exclude is immutable"),
        _ => {}
    }
}

/// Our checks; on update (`old` given) only for the fields that changed.
fn extra_checks(pool: &IPPool, old: Option<&IPv4Config>, a: &Addrs, out: &mut Vec<Violation>) {
    let cfg = &pool.spec.ipv4_config;
    let differs = |o: &IPv4Config| o.pool.start != cfg.pool.start || o.pool.end != cfg.pool.end;
    // Only between two addresses of the subnet: otherwise the position check said it all.
    if let (Some(start), Some(end), Some(net)) = (a.start, a.end, a.net)
        && start > end
        && net.contains(&start)
        && net.contains(&end)
        && old.is_none_or(differs)
    {
        let msg = format!("end ip {end} is less than start ip {start}");
        out.push(Violation::new(field::END, end.to_string(), msg));
    }
    if old.is_none_or(|o| o.pool.exclude != cfg.pool.exclude) {
        for (i, exclude) in cfg.pool.excludes().iter().enumerate() {
            let name = indexed(field::EXCLUDE, i);
            match (exclude.parse::<Ipv4Addr>(), a.net) {
                (Err(_), _) => out.push(Violation::new(
                    name,
                    exclude,
                    format!("exclude ip {exclude} is not an IPv4 address"),
                )),
                (Ok(ip), Some(net)) if !net.contains(&ip) => {
                    out.push(Violation::new(
                        name,
                        exclude,
                        format!("exclude ip {ip} is not within subnet"),
                    ));
                }
                (Ok(ip), _) => {
                    if let Some((_, mac)) = pool
                        .allocated()
                        .find(|(k, v)| k.parse() == Ok(ip) && !is_mark(v))
                    {
                        out.push(Violation::new(
                            name,
                            exclude,
                            format!("exclude ip {ip} is already allocated to mac {mac}"),
                        ));
                    }
                }
            }
        }
    }
    if old.is_none_or(|o| o.dns != cfg.dns) {
        for (i, dns) in cfg.dns.iter().enumerate() {
            if dns.parse::<Ipv4Addr>().is_err() {
                out.push(Violation::new(
                    indexed(field::DNS, i),
                    dns,
                    format!("dns server {dns} is not an IPv4 address"),
                ));
            }
        }
    }
    if old.is_none_or(|o| o.ntp != cfg.ntp) {
        for (i, ntp) in cfg.ntp.iter().enumerate() {
            if ntp.parse::<Ipv4Addr>().is_err() && !is_dns_name(ntp) {
                let msg = format!("ntp server {ntp} is neither an IPv4 address nor a host name");
                out.push(Violation::new(indexed(field::NTP, i), ntp, msg));
            }
        }
    }
    // An empty domain name is no domain name (option 15 is not sent), as upstream.
    if let Some(domain) = cfg.domain_name.as_deref().filter(|d| !d.is_empty())
        && old.is_none_or(|o| o.domain_name != cfg.domain_name)
        && !is_dns_name(domain)
    {
        out.push(Violation::new(
            field::DOMAIN_NAME,
            domain,
            format!("domain name {domain} is not a valid domain name"),
        ));
    }
    if old.is_none_or(|o| o.domain_search != cfg.domain_search) {
        for (i, domain) in cfg.domain_search.iter().enumerate() {
            if !is_dns_name(domain) {
                let msg = format!("domain search {domain} is not a valid domain name");
                out.push(Violation::new(
                    indexed(field::DOMAIN_SEARCH, i),
                    domain,
                    msg,
                ));
            }
        }
    }
}

/// Upstream let two pools serve one network; their IPAM entries clobbered each other.
fn duplicate_network(pool: &IPPool, pools: &[Arc<IPPool>], out: &mut Vec<Violation>) {
    let Ok(network) = pool.network() else { return };
    let same_object = |other: &IPPool| {
        other.metadata.namespace == pool.metadata.namespace
            && other.metadata.name == pool.metadata.name
    };
    if let Some(other) = pools
        .iter()
        .map(AsRef::as_ref)
        .find(|o| !same_object(o) && o.network().is_ok_and(|n| n == network))
    {
        let msg = format!(
            "network {network} is already served by IPPool {}/{}",
            other.metadata.namespace.as_deref().unwrap_or_default(),
            other.metadata.name.as_deref().unwrap_or_default()
        );
        out.push(Violation::new(
            field::NETWORK_NAME,
            &pool.spec.network_name,
            msg,
        ));
    }
}

/// A range change is the resize `ipam` supports: allowed when every allocation stays inside.
fn resize_keeps_allocations(old: &IPPool, new: &IPPool, a: &Addrs, out: &mut Vec<Violation>) {
    let (o, n) = (&old.spec.ipv4_config.pool, &new.spec.ipv4_config.pool);
    let (Some(start), Some(end)) = (a.start, a.end) else {
        return;
    };
    if (o.start == n.start && o.end == n.end) || start > end {
        return;
    }
    let mut conflicts: Vec<Ipv4Addr> = new
        .allocated()
        .filter(|(_, v)| !is_mark(v))
        .filter_map(|(ip, _)| ip.parse().ok())
        .filter(|ip| !(start..=end).contains(ip))
        .collect();
    if conflicts.is_empty() {
        return;
    }
    conflicts.sort_unstable();
    let msg = ipam::Error::ResizeConflict {
        start,
        end,
        conflicts,
    }
    .to_string();
    out.push(Violation::new(field::POOL, format!("{start}-{end}"), msg));
}

#[cfg(test)]
mod tests;
