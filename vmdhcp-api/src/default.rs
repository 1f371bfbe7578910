//! IPPool defaulting: what the mutating webhook does on CREATE, as upstream's mutator.
//!
//! Same decisions and messages as upstream; the one change is the patch: upstream emits
//! `replace` operations, which fail when the request omits the key. We emit `add`, which on an
//! object member replaces an existing value and creates a missing one (RFC 6902 §4.1), so the
//! patch applies whether or not the user wrote the field.

use std::net::Ipv4Addr;

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation};
use serde_json::json;

use crate::Error;
use crate::addr::{field, indexed, parse_cidr, parse_ip};
use crate::ippool::{IPPool, Pool};

/// The JSON patch that fills in a missing or unparsable `serverIP`, `pool.start` and
/// `pool.end`; empty when nothing is missing.
///
/// - `serverIP`: the first address after the network address that is neither the router, an
///   exclusion nor the broadcast address (it may fall inside the range; it is then `RESERVED`).
/// - `pool.start`: network + 1; `pool.end`: broadcast − 1.
///
/// Operations, in upstream's order: `add /spec/ipv4Config/pool` (the whole pool object,
/// exclusions kept, an empty exclusion list dropped as upstream) when the range changed, then
/// `add /spec/ipv4Config/serverIP`. Nothing else is touched: `leaseTime`, `domainName`, … keep
/// their values, zero or not.
///
/// # Errors
/// [`Error::InvalidCidr`]; [`Error::InvalidIp`] for an unparsable exclusion;
/// [`Error::NoServerIp`] (`fail to assign ip for dhcp server`, e.g. /31, /32 or every address
/// taken); [`Error::InvalidPoolRange`] (`invalid pool range`) when start > end — also when both
/// were given, as upstream.
///
/// ```
/// use vmdhcp_api::ippool::IPPool;
///
/// let mut pool = IPPool::new("net-48", Default::default());
/// pool.spec.ipv4_config.cidr = "192.168.0.0/24".into();
/// let patch = vmdhcp_api::default::default_ippool(&pool)?;
/// assert_eq!(
///     serde_json::to_value(&patch).unwrap(),
///     serde_json::json!([
///         {"op": "add", "path": "/spec/ipv4Config/pool", "value": {"start": "192.168.0.1", "end": "192.168.0.254"}},
///         {"op": "add", "path": "/spec/ipv4Config/serverIP", "value": "192.168.0.1"},
///     ])
/// );
/// # Ok::<(), vmdhcp_api::Error>(())
/// ```
pub fn default_ippool(pool: &IPPool) -> Result<Patch, Error> {
    let cfg = &pool.spec.ipv4_config;
    let server = server_ip(
        &cfg.server_ip,
        &cfg.cidr,
        cfg.router.as_deref(),
        cfg.pool.excludes(),
    )?;
    let range = pool_range(&cfg.pool, &cfg.cidr)?;

    let mut ops = Vec::new();
    if let Some(range) = range {
        let mut value = json!({ "start": range.start, "end": range.end });
        // An empty list is left out, as Go's `omitempty` did in upstream's patch: stored
        // without the key, exclusions can still be added later (the CRD freezes the list
        // once it is present).
        if let Some(exclude) = range.exclude.filter(|e| !e.is_empty()) {
            value["exclude"] = json!(exclude);
        }
        ops.push(add(&["spec", "ipv4Config", "pool"], value));
    }
    if let Some(server) = server {
        ops.push(add(
            &["spec", "ipv4Config", "serverIP"],
            server.to_string().into(),
        ));
    }
    Ok(Patch(ops))
}

fn add(tokens: &[&str], value: serde_json::Value) -> PatchOperation {
    PatchOperation::Add(AddOperation {
        path: PointerBuf::from_tokens(tokens.iter().copied()),
        value,
    })
}

/// `Some(address)` when `server` must be defaulted.
fn server_ip(
    server: &str,
    cidr: &str,
    router: Option<&str>,
    excludes: &[String],
) -> Result<Option<Ipv4Addr>, Error> {
    let net = parse_cidr(cidr)?;
    // An unparsable router is ignored here, as upstream; the validator reports it.
    let mut masked: Vec<Ipv4Addr> = router.and_then(|r| r.parse().ok()).into_iter().collect();
    for (i, exclude) in excludes.iter().enumerate() {
        masked.push(parse_ip(&indexed(field::EXCLUDE, i), exclude)?);
    }
    if server.parse::<Ipv4Addr>().is_ok() {
        return Ok(None);
    }
    let first = u32::from(net.network()).saturating_add(1);
    let candidate = (first..=u32::from(net.broadcast()))
        .map(Ipv4Addr::from)
        .find(|ip| !masked.contains(ip));
    match candidate {
        Some(ip) if ip != net.broadcast() => Ok(Some(ip)),
        _ => Err(Error::NoServerIp {
            cidr: cidr.to_owned(),
        }),
    }
}

/// `Some(pool)` when start or end must be defaulted.
fn pool_range(pool: &Pool, cidr: &str) -> Result<Option<Pool>, Error> {
    let net = parse_cidr(cidr)?;
    let given_start = pool.start.parse::<Ipv4Addr>().ok();
    let given_end = pool.end.parse::<Ipv4Addr>().ok();
    let range_error = |start, end| Error::InvalidPoolRange { start, end };
    // network + 1 and broadcast − 1 can only overflow for 255.255.255.255/32 and 0.0.0.0/32,
    // whose range is empty anyway.
    let start = match given_start {
        Some(ip) => ip,
        None => u32::from(net.network())
            .checked_add(1)
            .map(Ipv4Addr::from)
            .ok_or(range_error(net.network(), net.broadcast()))?,
    };
    let end = match given_end {
        Some(ip) => ip,
        None => u32::from(net.broadcast())
            .checked_sub(1)
            .map(Ipv4Addr::from)
            .ok_or(range_error(net.network(), net.broadcast()))?,
    };
    if start > end {
        return Err(range_error(start, end));
    }
    if given_start.is_some() && given_end.is_some() {
        return Ok(None);
    }
    Ok(Some(Pool {
        start: start.to_string(),
        end: end.to_string(),
        exclude: pool.exclude.clone(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ippool::IPPoolSpec;
    use rstest::rstest;
    use serde_json::Value;

    fn pool(
        cidr: &str,
        server: &str,
        router: Option<&str>,
        range: (&str, &str),
        exclude: Option<&[&str]>,
    ) -> IPPool {
        let mut p = IPPool::new("net", IPPoolSpec::default());
        let cfg = &mut p.spec.ipv4_config;
        cfg.cidr = cidr.into();
        cfg.server_ip = server.into();
        cfg.router = router.map(Into::into);
        cfg.pool.start = range.0.into();
        cfg.pool.end = range.1.into();
        cfg.pool.exclude = exclude.map(|e| e.iter().map(ToString::to_string).collect());
        p
    }

    fn patch(pool_value: Option<Value>, server: Option<&str>) -> Value {
        let mut ops = Vec::new();
        if let Some(v) = pool_value {
            ops.push(json!({"op": "add", "path": "/spec/ipv4Config/pool", "value": v}));
        }
        if let Some(s) = server {
            ops.push(json!({"op": "add", "path": "/spec/ipv4Config/serverIP", "value": s}));
        }
        Value::Array(ops)
    }

    #[rstest]
    // Upstream's mutator tests.
    #[case::no_router_all_undefined(
        pool("192.168.0.0/24", "", None, ("", ""), None),
        patch(Some(json!({"start": "192.168.0.1", "end": "192.168.0.254"})), Some("192.168.0.1")))]
    #[case::router_29_all_undefined(
        pool("172.19.64.128/29", "", Some("172.19.64.129"), ("", ""), None),
        patch(Some(json!({"start": "172.19.64.129", "end": "172.19.64.134"})), Some("172.19.64.130")))]
    #[case::all_defined(
        pool("172.19.64.128/29", "172.19.64.130", Some("172.19.64.129"), ("172.19.64.131", "172.19.64.133"), None),
        patch(None, None))]
    #[case::slash30_with_router(
        pool("172.19.64.128/30", "", Some("172.19.64.129"), ("", ""), None),
        patch(Some(json!({"start": "172.19.64.129", "end": "172.19.64.130"})), Some("172.19.64.130")))]
    #[case::slash30_without_router(
        pool("172.19.64.128/30", "", None, ("", ""), None),
        patch(Some(json!({"start": "172.19.64.129", "end": "172.19.64.130"})), Some("172.19.64.129")))]
    #[case::slash30_start_given(
        pool("172.19.64.128/30", "", None, ("172.19.64.130", ""), None),
        patch(Some(json!({"start": "172.19.64.130", "end": "172.19.64.130"})), Some("172.19.64.129")))]
    // Ours.
    #[case::server_skips_router_and_excludes(
        pool("10.0.0.0/24", "", Some("10.0.0.1"), ("10.0.0.10", "10.0.0.20"), Some(&["10.0.0.2", "10.0.0.3"])),
        patch(None, Some("10.0.0.4")))]
    #[case::excludes_kept_in_pool_patch(
        pool("10.0.0.0/24", "10.0.0.1", None, ("", "10.0.0.20"), Some(&["10.0.0.5"])),
        patch(Some(json!({"start": "10.0.0.1", "end": "10.0.0.20", "exclude": ["10.0.0.5"]})), None))]
    #[case::empty_exclude_dropped_as_upstream(
        pool("10.0.0.0/24", "10.0.0.1", None, ("", ""), Some(&[])),
        patch(Some(json!({"start": "10.0.0.1", "end": "10.0.0.254"})), None))]
    #[case::unparsable_server_is_replaced(
        pool("10.0.0.0/24", "nope", None, ("10.0.0.10", "10.0.0.20"), None),
        patch(None, Some("10.0.0.1")))]
    #[case::unparsable_end_is_replaced(
        pool("10.0.0.0/24", "10.0.0.1", None, ("10.0.0.10", "x"), None),
        patch(Some(json!({"start": "10.0.0.10", "end": "10.0.0.254"})), None))]
    #[case::host_bits_in_cidr(
        pool("192.168.30.77/24", "", None, ("", ""), None),
        patch(Some(json!({"start": "192.168.30.1", "end": "192.168.30.254"})), Some("192.168.30.1")))]
    #[case::unparsable_router_ignored(
        pool("10.0.0.0/24", "", Some("bad"), ("10.0.0.10", "10.0.0.20"), None),
        patch(None, Some("10.0.0.1")))]
    fn defaults(#[case] input: IPPool, #[case] want: Value) {
        let got = default_ippool(&input).unwrap();
        assert_eq!(serde_json::to_value(&got).unwrap(), want);
    }

    #[rstest]
    #[case::bad_cidr(pool("10.0.0.0", "", None, ("", ""), None), "invalid CIDR address: 10.0.0.0")]
    #[case::ipv6_cidr(pool("fd00::/64", "", None, ("", ""), None), "invalid CIDR address: fd00::/64")]
    #[case::slash32_no_server(pool("10.0.0.5/32", "", None, ("", ""), None), "fail to assign ip for dhcp server")]
    #[case::slash31_no_server(pool("10.0.0.0/31", "", None, ("", ""), None), "fail to assign ip for dhcp server")]
    #[case::all_taken(pool("10.0.0.0/30", "", Some("10.0.0.1"), ("", ""), Some(&["10.0.0.2"])), "fail to assign ip for dhcp server")]
    #[case::slash31_range(pool("10.0.0.0/31", "10.0.0.0", None, ("", ""), None), "invalid pool range")]
    #[case::start_after_end(pool("10.0.0.0/24", "10.0.0.1", None, ("10.0.0.9", "10.0.0.8"), None), "invalid pool range")]
    #[case::start_after_default_end(pool("10.0.0.0/24", "10.0.0.1", None, ("10.0.1.9", ""), None), "invalid pool range")]
    #[case::bad_exclude(pool("10.0.0.0/24", "10.0.0.1", None, ("", ""), Some(&["10.0.0.2", "x"])), "spec.ipv4Config.pool.exclude[1]: ParseAddr(\"x\"): unable to parse IP")]
    fn rejects_with_upstream_message(#[case] input: IPPool, #[case] message: &str) {
        assert_eq!(default_ippool(&input).unwrap_err().to_string(), message);
    }

    #[test]
    fn patch_applies_when_keys_are_absent() {
        // A request that omits serverIP and the whole pool object: `replace` would fail here.
        let mut doc =
            json!({"spec": {"networkName": "default/net", "ipv4Config": {"cidr": "10.0.0.0/29"}}});
        let input: IPPool = serde_json::from_value(json!({
            "apiVersion": "network.harvesterhci.io/v1alpha1", "kind": "IPPool",
            "metadata": {"name": "net"}, "spec": doc["spec"].clone()
        }))
        .unwrap();
        let ops = default_ippool(&input).unwrap();
        json_patch::patch(&mut doc, &ops).unwrap();
        assert_eq!(
            doc,
            json!({"spec": {"networkName": "default/net", "ipv4Config": {
                "cidr": "10.0.0.0/29", "serverIP": "10.0.0.1",
                "pool": {"start": "10.0.0.1", "end": "10.0.0.6"}}}})
        );
        // And again on the patched document: nothing left to default.
        let patched: IPPool = serde_json::from_value(json!({
            "apiVersion": "network.harvesterhci.io/v1alpha1", "kind": "IPPool",
            "metadata": {"name": "net"}, "spec": doc["spec"].clone()
        }))
        .unwrap();
        assert!(default_ippool(&patched).unwrap().0.is_empty());
    }

    #[test]
    fn zero_values_are_left_as_written() {
        // Upstream accepted these and treats them as unset; defaulting must not touch them.
        let mut doc = json!({"spec": {"networkName": "default/net", "ipv4Config": {
            "cidr": "10.0.0.0/29", "leaseTime": 0, "domainName": "", "dns": [],
            "pool": {"exclude": []}}}});
        let input: IPPool = serde_json::from_value(json!({
            "apiVersion": "network.harvesterhci.io/v1alpha1", "kind": "IPPool",
            "metadata": {"name": "net"}, "spec": doc["spec"].clone()
        }))
        .unwrap();
        json_patch::patch(&mut doc, &default_ippool(&input).unwrap()).unwrap();
        assert_eq!(
            doc,
            json!({"spec": {"networkName": "default/net", "ipv4Config": {
                "cidr": "10.0.0.0/29", "serverIP": "10.0.0.1", "leaseTime": 0, "domainName": "",
                "dns": [], "pool": {"start": "10.0.0.1", "end": "10.0.0.6"}}}})
        );
    }
}
