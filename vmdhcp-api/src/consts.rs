//! Every fixed string the Go `vm-dhcp-controller` puts on the wire, as constants.
//!
//! These are the compatibility contract (docs/upstream-compat.md, "Kept identical"):
//! existing objects, dashboards, alerts and the Harvester UI depend on them, so they are spelled
//! exactly as upstream spells them — typos included ([`MSG_NETWORK_CONFIG_CHANGED`]). Messages
//! that take arguments live in [`crate::message`].

/// API group of both kinds.
pub const GROUP: &str = "network.harvesterhci.io";
/// The only API version.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` of both kinds.
pub const API_VERSION: &str = "network.harvesterhci.io/v1alpha1";
/// Kind of the pool resource.
pub const KIND_IPPOOL: &str = "IPPool";
/// Kind of the per-VM resource.
pub const KIND_VMNETCFG: &str = "VirtualMachineNetworkConfig";
/// Plural resource name of [`KIND_IPPOOL`].
pub const PLURAL_IPPOOL: &str = "ippools";
/// Plural resource name of [`KIND_VMNETCFG`].
pub const PLURAL_VMNETCFG: &str = "virtualmachinenetworkconfigs";

// ---------------------------------------------------------------------------------------------
// Labels
// ---------------------------------------------------------------------------------------------

/// NAD label (and agent Pod label): namespace of the IPPool serving the network.
pub const LABEL_IPPOOL_NAMESPACE: &str = "network.harvesterhci.io/ippool-namespace";
/// NAD label (and agent Pod label): name of the IPPool serving the network.
pub const LABEL_IPPOOL_NAME: &str = "network.harvesterhci.io/ippool-name";
/// NAD label set by Harvester: the cluster network the NAD belongs to. An agent cannot be
/// scheduled without it.
pub const LABEL_CLUSTER_NETWORK: &str = "network.harvesterhci.io/clusternetwork";
/// Prefix of the node label `network.harvesterhci.io/<clusterNetwork>: "true"` that the agent's
/// node affinity selects; see [`crate::agent::cluster_network_node_label`].
pub const NODE_LABEL_CLUSTER_NETWORK_PREFIX: &str = "network.harvesterhci.io/";
/// Value of the node label selected by the agent's node affinity.
pub const NODE_LABEL_CLUSTER_NETWORK_VALUE: &str = "true";
/// Agent Pod label key selecting every agent.
pub const LABEL_VM_DHCP_CONTROLLER: &str = "network.harvesterhci.io/vm-dhcp-controller";
/// Value of [`LABEL_VM_DHCP_CONTROLLER`] on agent Pods.
pub const LABEL_VALUE_AGENT: &str = "agent";
/// vmnetcfg label naming the VirtualMachine it belongs to.
pub const LABEL_VM_NAME: &str = "harvesterhci.io/vmName";

// ---------------------------------------------------------------------------------------------
// Annotations
// ---------------------------------------------------------------------------------------------

/// Agent Pod annotation: the Multus network list (see [`crate::agent::multus_networks`]).
pub const ANNOTATION_MULTUS_NETWORKS: &str = "k8s.v1.cni.cncf.io/networks";
/// IPPool annotation (presence only): keep the recorded agent image, do not upgrade the agent.
pub const ANNOTATION_HOLD_AGENT_UPGRADE: &str = "network.harvesterhci.io/hold-ippool-agent-upgrade";
/// VirtualMachine annotation (Harvester ≥ 1.6): JSON map NIC name → MAC address.
pub const ANNOTATION_MAC_ADDRESS: &str = "harvesterhci.io/mac-address";
/// Prefix of the VirtualMachine annotation `static-ip.harvesterhci.io/<nic>`: desired IPv4 of a
/// NIC (upstream PR #157).
pub const ANNOTATION_STATIC_IP_PREFIX: &str = "static-ip.harvesterhci.io/";

// ---------------------------------------------------------------------------------------------
// Finalizers, controller and handler names
// ---------------------------------------------------------------------------------------------

/// Finalizer on IPPools (wrangler's `OnRemove` naming).
pub const FINALIZER_IPPOOL: &str = "wrangler.cattle.io/vm-dhcp-ippool-controller";
/// Finalizer on vmnetcfgs.
pub const FINALIZER_VMNETCFG: &str = "wrangler.cattle.io/vm-dhcp-vmnetcfg-controller";
/// Name of the IPPool controller (also the `OnChange`/`OnRemove` handler name).
pub const CONTROLLER_IPPOOL: &str = "vm-dhcp-ippool-controller";
/// Name of the VirtualMachine controller.
pub const CONTROLLER_VM: &str = "vm-dhcp-vm-controller";
/// Name of the vmnetcfg controller.
pub const CONTROLLER_VMNETCFG: &str = "vm-dhcp-vmnetcfg-controller";
/// IPPool status handler writing [`COND_REGISTERED`].
pub const HANDLER_IPPOOL_REGISTER: &str = "ippool-register";
/// IPPool status handler writing [`COND_CACHE_READY`].
pub const HANDLER_IPPOOL_CACHE_BUILDER: &str = "ippool-cache-builder";
/// IPPool status handler writing [`COND_AGENT_READY`].
pub const HANDLER_IPPOOL_AGENT_MONITOR: &str = "ippool-agent-monitor";
/// Related-resource trigger re-queueing IPPools on agent Pod changes.
pub const HANDLER_IPPOOL_TRIGGER: &str = "ippool-trigger";
/// vmnetcfg status handler writing [`COND_ALLOCATED`].
pub const HANDLER_VMNETCFG_ALLOCATE: &str = "vmnetcfg-allocate";
/// vmnetcfg status handler writing [`COND_IN_SYNCED`].
pub const HANDLER_VMNETCFG_SYNC: &str = "vmnetcfg-sync";
/// Informer index of vmnetcfgs by each `spec.networkConfigs[].networkName`.
pub const INDEX_VMNETCFG_BY_NETWORK: &str = "network.harvesterhci.io/vmnetcfg-by-network";

// ---------------------------------------------------------------------------------------------
// Conditions
// ---------------------------------------------------------------------------------------------

/// Condition status `True`.
pub const STATUS_TRUE: &str = "True";
/// Condition status `False`.
pub const STATUS_FALSE: &str = "False";
/// Condition status `Unknown` (what wrangler gives a condition it creates).
pub const STATUS_UNKNOWN: &str = "Unknown";

/// IPPool condition: the agent Pod is deployed.
pub const COND_REGISTERED: &str = "Registered";
/// IPPool condition: the in-memory IPAM and MAC cache are built.
pub const COND_CACHE_READY: &str = "CacheReady";
/// IPPool condition: the agent Pod is ready.
pub const COND_AGENT_READY: &str = "AgentReady";
/// IPPool condition: the pool is paused (`spec.paused`).
pub const COND_STOPPED: &str = "Stopped";
/// vmnetcfg condition: every NIC got its address.
pub const COND_ALLOCATED: &str = "Allocated";
/// vmnetcfg condition: the vmnetcfg is paused.
pub const COND_DISABLED: &str = "Disabled";
/// vmnetcfg condition: spec and status agree with the VirtualMachine.
pub const COND_IN_SYNCED: &str = "InSynced";

/// Reason of a condition set `False` by a failing handler.
pub const REASON_ERROR: &str = "Error";
/// Reason of `CacheReady=False` after a controller restart (forces a rebuild).
pub const REASON_NOT_INITIALIZED: &str = "NotInitialized";
/// Reason of `InSynced=False` when the VirtualMachine's NICs changed.
pub const REASON_NETWORK_CONFIG_CHANGED: &str = "NetworkConfigChanged";
/// Message of `InSynced=False` when the VirtualMachine's NICs changed (upstream typo kept).
pub const MSG_NETWORK_CONFIG_CHANGED: &str =
    "Network configuration of the upstrem virtual machine has been changed";

// ---------------------------------------------------------------------------------------------
// Status values
// ---------------------------------------------------------------------------------------------

/// `status.ipv4.allocated` value for every `pool.exclude` entry.
pub const MARK_EXCLUDED: &str = "EXCLUDED";
/// `status.ipv4.allocated` value for the server and router when inside the range.
pub const MARK_RESERVED: &str = "RESERVED";
/// `status.ipv4.allocated` value (vmdhcp's, not upstream's) for an address a DHCP client
/// declined because another host uses it: counted as used, held by no MAC, never handed out,
/// until an operator removes the entry. The Go controller reads it as a MAC that holds the
/// address, which keeps it out of use there too. See [`crate::conflict`].
pub const MARK_CONFLICT: &str = "CONFLICT";
/// vmnetcfg `status.networkConfigs[].state`: the NIC holds its address.
pub const STATE_ALLOCATED: &str = "Allocated";
/// vmnetcfg state: paused, the address is kept for resume.
pub const STATE_PENDING: &str = "Pending";
/// vmnetcfg state: the NIC left the spec; its address is being released.
pub const STATE_STALE: &str = "Stale";

// ---------------------------------------------------------------------------------------------
// Address conflicts (vmdhcp's; upstream had none). See [`crate::conflict`].
// ---------------------------------------------------------------------------------------------

/// Reason of the Warning Events about an address conflict: the agent's on the IPPool when a
/// client declines its address, the controller's on the vmnetcfg it moves.
pub const REASON_ADDRESS_CONFLICT: &str = "AddressConflict";
/// Action of the agent's conflict Event.
pub const ACTION_DECLINE: &str = "Decline";
/// Action of the controller's conflict Event on the vmnetcfg.
pub const ACTION_REALLOCATE: &str = "Reallocate";
/// Annotation of the agent's conflict Event: the declined address.
pub const ANNOTATION_CONFLICT_IP: &str = "network.harvesterhci.io/conflict-ip";
/// Annotation of the agent's conflict Event: the MAC that declined it.
pub const ANNOTATION_CONFLICT_MAC: &str = "network.harvesterhci.io/conflict-mac";
/// Annotation the controller puts on an agent's conflict Event once it has acted on it
/// (value: what it did), so that a restart does not act twice.
pub const ANNOTATION_CONFLICT_HANDLED: &str = "network.harvesterhci.io/conflict-handled";
/// `reportingController` of the agent's Events.
pub const AGENT_REPORTING_CONTROLLER: &str = "vm-dhcp-agent";

// ---------------------------------------------------------------------------------------------
// Agent Pod
// ---------------------------------------------------------------------------------------------

/// Suffix of agent Pod names (`<ns>-<name>-agent`).
pub const AGENT_NAME_SUFFIX: &str = "agent";
/// The pool's NIC inside the agent Pod (Multus `interface`, agent `--nic` default).
pub const AGENT_INTERFACE: &str = "eth1";
/// Name of the init container that puts the server address on [`AGENT_INTERFACE`].
pub const AGENT_INIT_CONTAINER: &str = "ip-setter";
/// Name of the agent container.
pub const AGENT_CONTAINER: &str = "agent";
/// Capability both agent containers add.
pub const AGENT_CAPABILITY: &str = "NET_ADMIN";
/// Agent flag naming its pool, `--ippool-ref <ns>/<name>`.
pub const AGENT_ARG_IPPOOL_REF: &str = "--ippool-ref";
/// Agent flag added when the controller runs with `--no-dhcp`.
pub const AGENT_ARG_DRY_RUN: &str = "--dry-run";
/// Image pull policy of the init container.
pub const AGENT_INIT_PULL_POLICY: &str = "IfNotPresent";

// ---------------------------------------------------------------------------------------------
// HTTP, webhook, leader election
// ---------------------------------------------------------------------------------------------

/// Port of the controller's and agent's HTTP server (hard-coded upstream).
pub const HTTP_PORT: u16 = 8080;
/// Liveness path.
pub const PATH_HEALTHZ: &str = "/healthz";
/// Readiness path.
pub const PATH_READYZ: &str = "/readyz";
/// Prometheus path.
pub const PATH_METRICS: &str = "/metrics";
/// Controller cache-dump path prefix (`/ipams/<ns>/<nad>`).
pub const PATH_IPAMS: &str = "/ipams/";
/// Controller cache-dump path prefix (`/caches/<ns>/<nad>`).
pub const PATH_CACHES: &str = "/caches/";
/// Agent lease-dump path.
pub const PATH_LEASES: &str = "/leases";
/// Body of the health endpoints.
pub const HEALTH_BODY: &str = r#"{"ok":true}"#;

/// Default HTTPS port of the webhook.
pub const WEBHOOK_HTTPS_PORT: u16 = 8443;
/// Validating admission path.
pub const WEBHOOK_PATH_VALIDATION: &str = "/v1/webhook/validation";
/// Mutating admission path.
pub const WEBHOOK_PATH_MUTATION: &str = "/v1/webhook/mutation";
/// Conversion path (registered upstream, unused).
pub const WEBHOOK_PATH_CONVERSION: &str = "/v1/webhook/conversion";
/// Suffix of the secret holding the webhook CA (`<name>-ca`).
pub const WEBHOOK_SECRET_CA_SUFFIX: &str = "-ca";
/// Suffix of the secret holding the serving certificate (`<name>-tls`).
pub const WEBHOOK_SECRET_TLS_SUFFIX: &str = "-tls";
/// Default `--service-cidr` of the webhook.
pub const DEFAULT_SERVICE_CIDR: &str = "10.53.0.0/16";

/// Namespace of the leader-election Lease.
pub const LEASE_NAMESPACE: &str = "kube-system";
/// Name of the leader-election Lease.
pub const LEASE_NAME: &str = "vm-dhcp-controllers";
/// Default lease duration, seconds.
pub const LEASE_DURATION_SECS: u64 = 45;
/// Default renew deadline, seconds.
pub const LEASE_RENEW_DEADLINE_SECS: u64 = 30;
/// Default retry period, seconds.
pub const LEASE_RETRY_PERIOD_SECS: u64 = 2;

// ---------------------------------------------------------------------------------------------
// Environment variables (flag defaults and leader-election overrides)
// ---------------------------------------------------------------------------------------------

/// Controller `--name`.
pub const ENV_CONTROLLER_NAME: &str = "VM_DHCP_CONTROLLER_NAME";
/// Controller `--namespace` (where agent Pods go).
pub const ENV_AGENT_NAMESPACE: &str = "AGENT_NAMESPACE";
/// Controller `--image` (agent image).
pub const ENV_AGENT_IMAGE: &str = "AGENT_IMAGE";
/// Controller `--service-account-name` (agent service account).
pub const ENV_AGENT_SERVICE_ACCOUNT_NAME: &str = "AGENT_SERVICE_ACCOUNT_NAME";
/// Controller `--debug`.
pub const ENV_CONTROLLER_DEBUG: &str = "VM_DHCP_CONTROLLER_DEBUG";
/// Controller `--trace`.
pub const ENV_CONTROLLER_TRACE: &str = "VM_DHCP_CONTROLLER_TRACE";
/// Agent `--ippool-ref`.
pub const ENV_IPPOOL_REF: &str = "IPPOOL_REF";
/// Agent `--name`; also set on agent Pods to the Pod name. The webhook's `--name` reads it too
/// (upstream copy-paste, kept).
pub const ENV_AGENT_NAME: &str = "VM_DHCP_AGENT_NAME";
/// Agent `--debug`.
pub const ENV_AGENT_DEBUG: &str = "VM_DHCP_AGENT_DEBUG";
/// Agent `--trace`.
pub const ENV_AGENT_TRACE: &str = "VM_DHCP_AGENT_TRACE";
/// Agent `--kubeconfig`.
pub const ENV_KUBECONFIG: &str = "KUBECONFIG";
/// Agent `--kubecontext`.
pub const ENV_KUBECONTEXT: &str = "KUBECONTEXT";
/// Webhook `--namespace`.
pub const ENV_NAMESPACE: &str = "NAMESPACE";
/// Webhook `--debug`.
pub const ENV_WEBHOOK_DEBUG: &str = "VM_DHCP_WEBHOOK_DEBUG";
/// Webhook `--trace`.
pub const ENV_WEBHOOK_TRACE: &str = "VM_DHCP_WEBHOOK_TRACE";
/// Leader-election lease duration override.
pub const ENV_ELECTION_LEASE_DURATION: &str = "CATTLE_ELECTION_LEASE_DURATION";
/// Leader-election renew deadline override.
pub const ENV_ELECTION_RENEW_DEADLINE: &str = "CATTLE_ELECTION_RENEW_DEADLINE";
/// Leader-election retry period override.
pub const ENV_ELECTION_RETRY_PERIOD: &str = "CATTLE_ELECTION_RETRY_PERIOD";
/// Development mode: leader-election durations in hours instead of seconds.
pub const ENV_DEV_MODE: &str = "CATTLE_DEV_MODE";

// ---------------------------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------------------------

/// Gauge: addresses in use per pool.
pub const METRIC_IPPOOL_USED: &str = "vmdhcpcontroller_ippool_used";
/// Help text of [`METRIC_IPPOOL_USED`].
pub const METRIC_IPPOOL_USED_HELP: &str = "Amount of IP addresses which are in use";
/// Gauge: free addresses per pool.
pub const METRIC_IPPOOL_AVAILABLE: &str = "vmdhcpcontroller_ippool_available";
/// Help text of [`METRIC_IPPOOL_AVAILABLE`].
pub const METRIC_IPPOOL_AVAILABLE_HELP: &str = "Amount of IP addresses which are available";
/// Gauge: 1 per allocated NIC.
pub const METRIC_VMNETCFG_STATUS: &str = "vmdhcpcontroller_vmnetcfg_status";
/// Help text of [`METRIC_VMNETCFG_STATUS`].
pub const METRIC_VMNETCFG_STATUS_HELP: &str = "Status of the vmnetcfg objects";
/// Label: `<namespace>/<name>` of the IPPool.
pub const METRIC_LABEL_IPPOOL: &str = "ippool";
/// Label: the pool's CIDR.
pub const METRIC_LABEL_CIDR: &str = "cidr";
/// Label: the network name.
pub const METRIC_LABEL_NETWORK: &str = "network";
/// Label: `<namespace>/<name>` of the vmnetcfg.
pub const METRIC_LABEL_VMNETCFG: &str = "vmnetcfg";
/// Label: the NIC's MAC address.
pub const METRIC_LABEL_MAC: &str = "mac";
/// Label: the NIC's address.
pub const METRIC_LABEL_IP: &str = "ip";
/// Label: the NIC's state ([`STATE_ALLOCATED`]).
pub const METRIC_LABEL_STATE: &str = "state";

// ---------------------------------------------------------------------------------------------
// DHCP
// ---------------------------------------------------------------------------------------------

/// Lease time, seconds, when `spec.ipv4Config.leaseTime` is unset or not positive: one year.
pub const DEFAULT_LEASE_TIME_SECS: u32 = 31_536_000;
