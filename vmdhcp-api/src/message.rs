//! Upstream's messages that take arguments (docs/upstream-compat.md, "Condition messages" and "Webhook denials").
//!
//! Handler errors end up verbatim in condition messages, which users and the Harvester UI
//! read, so every one is a variant of [`UpstreamError`] whose `Display` is upstream's text.
//! The controller wraps them in its own error type; the webhook wraps validation causes with
//! [`admission_denied`].

use std::fmt;

/// Upstream's handler, IPAM, MAC-cache and lease-store errors, with upstream's wording.
///
/// ```
/// use vmdhcp_api::message::UpstreamError;
///
/// let err = UpstreamError::IpPoolDisabled { namespace: "default".into(), name: "net-48".into() };
/// assert_eq!(err.to_string(), "ippool default/net-48 was administratively disabled");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
#[allow(missing_docs)] // the fields are the `%s` of each message, named for what they hold
pub enum UpstreamError {
    // --- IPPool handlers ---
    /// `spec.paused` is true.
    #[error("ippool {namespace}/{name} was administratively disabled")]
    IpPoolDisabled { namespace: String, name: String },
    /// The NAD has no `network.harvesterhci.io/clusternetwork` label.
    #[error("could not find clusternetwork for nad {network}")]
    NoClusterNetwork { network: String },
    /// The agent Pod is terminating.
    #[error("agent pod {pod} marked for deletion")]
    AgentMarkedForDeletion { pod: String },
    /// The agent Pod's UID differs from `status.agentPodRef.uid`.
    #[error("agent pod {pod} uid mismatch")]
    AgentUidMismatch { pod: String },
    /// `status.agentPodRef` is unset.
    #[error("agent for ippool {namespace}/{name} is not deployed")]
    AgentNotDeployed { namespace: String, name: String },
    /// The agent Pod ran an outdated image or UID and was deleted.
    #[error("agent pod {pod} obsolete and purged")]
    AgentObsolete { pod: String },
    /// The agent Pod is not Ready.
    #[error("agent pod {pod} not ready")]
    AgentNotReady { pod: String },

    // --- vmnetcfg handlers ---
    /// `spec.paused` is true.
    #[error("vmnetcfg {namespace}/{name} was administratively disabled")]
    VmNetCfgDisabled { namespace: String, name: String },
    /// `InSynced` is false.
    #[error("vmnetcfg {namespace}/{name} is out-of-sync; waiting for reconcile")]
    VmNetCfgOutOfSync { namespace: String, name: String },
    /// The IPPool's `CacheReady` is not true.
    #[error("ippool {namespace}/{name} is not ready")]
    IpPoolNotReady { namespace: String, name: String },
    /// `spec.networkConfigs` is empty.
    #[error("no network configs found for vmnetcfg {namespace}/{name}")]
    NoNetworkConfigs { namespace: String, name: String },
    /// The NAD has no labels at all.
    #[error("network attachment definition {namespace}/{name} has no labels")]
    NadNoLabels { namespace: String, name: String },
    /// The NAD lacks one of the IPPool labels.
    #[error("network attachment definition {namespace}/{name} has no label {label}")]
    NadNoLabel {
        namespace: String,
        name: String,
        label: String,
    },
    /// The desired IP of a MAC changed (PR #157).
    #[error("desired IP changed for mac {mac} from {old} to {new}; waiting for sync")]
    DesiredIpChanged {
        mac: String,
        old: String,
        new: String,
    },

    // --- IPAM ---
    /// Range start outside the subnet.
    #[error("start ip address {ip} is not within subnet {subnet} range")]
    StartNotInSubnet { ip: String, subnet: String },
    /// Range end outside the subnet.
    #[error("end ip address {ip} is not within subnet {subnet} range")]
    EndNotInSubnet { ip: String, subnet: String },
    /// Range end before range start.
    #[error("end ip address {end} is less than start ip address {start}")]
    EndBeforeStart { end: String, start: String },
    /// Range end is the broadcast address.
    #[error("end ip address {end} equals broadcast ip address {broadcast}")]
    EndIsBroadcast { end: String, broadcast: String },
    /// No IPAM for the network.
    #[error("network {network} does not exist")]
    NetworkNotFound { network: String },
    /// A designated IP outside the subnet.
    #[error("designated ip {ip} is not in subnet {network}/{prefix_len}")]
    DesignatedNotInSubnet {
        ip: String,
        network: String,
        prefix_len: u8,
    },
    /// A designated IP that is the broadcast address.
    #[error("designated ip {ip} equals broadcast ip address {broadcast}")]
    DesignatedIsBroadcast { ip: String, broadcast: String },
    /// A designated IP already taken.
    #[error("designated ip {ip} is already allocated")]
    DesignatedAllocated { ip: String },
    /// Pool exhausted (also upstream's answer for a reserved or out-of-range designated IP).
    #[error("no more ip addresses left in network {network} ipam")]
    NoMoreAddresses { network: String },
    /// Allocation asked for an empty designated IP.
    #[error("designated ip is empty")]
    DesignatedEmpty,
    /// Deallocation of an address not in the range.
    #[error("to-be-deallocated ip {ip} was not found in network {network} ipam")]
    DeallocateNotFound { ip: String, network: String },
    /// Deallocation of a free address.
    #[error("to-be-deallocated ip {ip} was not allocated")]
    DeallocateNotAllocated { ip: String },
    /// Lookup of an address not in the range.
    #[error("ip {ip} was not found in network {network} ipam")]
    IpNotFound { ip: String, network: String },

    // --- MAC cache ---
    /// MAC not cached for the network.
    #[error("mac {mac} not found in network {network}")]
    MacNotFound { mac: String, network: String },

    // --- agent lease store ---
    /// A lease without MAC.
    #[error("hwaddr is empty")]
    HwAddrEmpty,
    /// A lease whose MAC does not parse.
    #[error("hwaddr {hwaddr} is not valid")]
    HwAddrInvalid { hwaddr: String },
    /// A second lease for a MAC.
    #[error("lease for hwaddr {hwaddr} already exists")]
    LeaseExists { hwaddr: String },
    /// Removing a lease that is not there (upstream's grammar kept).
    #[error("lease for hwaddr {hwaddr} does not exists")]
    LeaseNotFound { hwaddr: String },

    // --- webhook ---
    /// An IPPool still used by vmnetcfgs cannot be deleted.
    #[error(
        "it's still used by VirtualMachineNetworkConfig(s) {}, which must be removed at first",
        vmnetcfgs.join(", ")
    )]
    IpPoolInUse { vmnetcfgs: Vec<String> },
    /// Kubernetes' NotFound text for a NetworkAttachmentDefinition.
    #[error("network-attachment-definitions.k8s.cni.cncf.io \"{name}\" not found")]
    NadNotFound { name: String },
    /// Kubernetes' NotFound text for an IPPool.
    #[error("ippools.network.harvesterhci.io \"{name}\" not found")]
    IpPoolNotFound { name: String },
}

/// An admission operation, for [`admission_denied`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `CREATE`.
    Create,
    /// `UPDATE`.
    Update,
    /// `DELETE`.
    Delete,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Create => "create",
            Self::Update => "update",
            Self::Delete => "delete",
        })
    }
}

/// Upstream's webhook denial text: `cannot <op> <kind> <namespace>/<name> because <cause>`.
///
/// ```
/// use vmdhcp_api::message::{Operation, admission_denied};
///
/// assert_eq!(
///     admission_denied(Operation::Create, "IPPool", "default", "net-48", "invalid pool range"),
///     "cannot create IPPool default/net-48 because invalid pool range"
/// );
/// ```
pub fn admission_denied(
    op: Operation,
    kind: &str,
    namespace: &str,
    name: &str,
    cause: impl fmt::Display,
) -> String {
    format!("cannot {op} {kind} {namespace}/{name} because {cause}")
}

#[cfg(test)]
mod tests {
    use super::UpstreamError as E;
    use super::*;
    use rstest::rstest;

    fn s(v: &str) -> String {
        v.to_owned()
    }

    #[rstest]
    #[case::disabled(E::IpPoolDisabled { namespace: s("ns"), name: s("p") }, "ippool ns/p was administratively disabled")]
    #[case::no_cluster_network(E::NoClusterNetwork { network: s("default/net-48") }, "could not find clusternetwork for nad default/net-48")]
    #[case::marked(E::AgentMarkedForDeletion { pod: s("a") }, "agent pod a marked for deletion")]
    #[case::uid(E::AgentUidMismatch { pod: s("a") }, "agent pod a uid mismatch")]
    #[case::not_deployed(E::AgentNotDeployed { namespace: s("ns"), name: s("p") }, "agent for ippool ns/p is not deployed")]
    #[case::obsolete(E::AgentObsolete { pod: s("a") }, "agent pod a obsolete and purged")]
    #[case::not_ready(E::AgentNotReady { pod: s("a") }, "agent pod a not ready")]
    #[case::vmnetcfg_disabled(E::VmNetCfgDisabled { namespace: s("ns"), name: s("vm") }, "vmnetcfg ns/vm was administratively disabled")]
    #[case::out_of_sync(E::VmNetCfgOutOfSync { namespace: s("ns"), name: s("vm") }, "vmnetcfg ns/vm is out-of-sync; waiting for reconcile")]
    #[case::pool_not_ready(E::IpPoolNotReady { namespace: s("ns"), name: s("p") }, "ippool ns/p is not ready")]
    #[case::no_configs(E::NoNetworkConfigs { namespace: s("ns"), name: s("vm") }, "no network configs found for vmnetcfg ns/vm")]
    #[case::nad_no_labels(E::NadNoLabels { namespace: s("ns"), name: s("n") }, "network attachment definition ns/n has no labels")]
    #[case::nad_no_label(E::NadNoLabel { namespace: s("ns"), name: s("n"), label: s("l") }, "network attachment definition ns/n has no label l")]
    #[case::desired_changed(E::DesiredIpChanged { mac: s("m"), old: s("1.1.1.1"), new: s("1.1.1.2") }, "desired IP changed for mac m from 1.1.1.1 to 1.1.1.2; waiting for sync")]
    #[case::start_subnet(E::StartNotInSubnet { ip: s("a"), subnet: s("b") }, "start ip address a is not within subnet b range")]
    #[case::end_subnet(E::EndNotInSubnet { ip: s("a"), subnet: s("b") }, "end ip address a is not within subnet b range")]
    #[case::end_before(E::EndBeforeStart { end: s("a"), start: s("b") }, "end ip address a is less than start ip address b")]
    #[case::end_broadcast(E::EndIsBroadcast { end: s("a"), broadcast: s("b") }, "end ip address a equals broadcast ip address b")]
    #[case::network(E::NetworkNotFound { network: s("n") }, "network n does not exist")]
    #[case::designated_subnet(E::DesignatedNotInSubnet { ip: s("a"), network: s("10.0.0.0"), prefix_len: 24 }, "designated ip a is not in subnet 10.0.0.0/24")]
    #[case::designated_broadcast(E::DesignatedIsBroadcast { ip: s("a"), broadcast: s("b") }, "designated ip a equals broadcast ip address b")]
    #[case::designated_allocated(E::DesignatedAllocated { ip: s("a") }, "designated ip a is already allocated")]
    #[case::no_more(E::NoMoreAddresses { network: s("n") }, "no more ip addresses left in network n ipam")]
    #[case::designated_empty(E::DesignatedEmpty, "designated ip is empty")]
    #[case::dealloc_not_found(E::DeallocateNotFound { ip: s("a"), network: s("n") }, "to-be-deallocated ip a was not found in network n ipam")]
    #[case::dealloc_free(E::DeallocateNotAllocated { ip: s("a") }, "to-be-deallocated ip a was not allocated")]
    #[case::ip_not_found(E::IpNotFound { ip: s("a"), network: s("n") }, "ip a was not found in network n ipam")]
    #[case::mac_not_found(E::MacNotFound { mac: s("m"), network: s("n") }, "mac m not found in network n")]
    #[case::hw_empty(E::HwAddrEmpty, "hwaddr is empty")]
    #[case::hw_invalid(E::HwAddrInvalid { hwaddr: s("x") }, "hwaddr x is not valid")]
    #[case::lease_exists(E::LeaseExists { hwaddr: s("x") }, "lease for hwaddr x already exists")]
    #[case::lease_missing(E::LeaseNotFound { hwaddr: s("x") }, "lease for hwaddr x does not exists")]
    #[case::in_use(E::IpPoolInUse { vmnetcfgs: vec![s("default/a"), s("default/b")] }, "it's still used by VirtualMachineNetworkConfig(s) default/a, default/b, which must be removed at first")]
    #[case::nad_not_found(E::NadNotFound { name: s("net-48") }, "network-attachment-definitions.k8s.cni.cncf.io \"net-48\" not found")]
    #[case::pool_not_found(E::IpPoolNotFound { name: s("net-48") }, "ippools.network.harvesterhci.io \"net-48\" not found")]
    fn upstream_wording(#[case] err: UpstreamError, #[case] text: &str) {
        assert_eq!(err.to_string(), text);
    }

    #[rstest]
    #[case::create(Operation::Create, "cannot create IPPool ns/p because x")]
    #[case::update(Operation::Update, "cannot update IPPool ns/p because x")]
    #[case::delete(Operation::Delete, "cannot delete IPPool ns/p because x")]
    fn admission_wrapper(#[case] op: Operation, #[case] text: &str) {
        assert_eq!(admission_denied(op, "IPPool", "ns", "p", "x"), text);
    }
}
