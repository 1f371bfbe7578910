//! What a cluster run by Harvester's Go `vm-dhcp-controller` holds: its CRDs (controller-gen
//! output applied by wrangler: same group, versions, names, printer columns, fields and status
//! subresource as vmdhcp's, plus field descriptions and CEL immutability rules on every range
//! field), and objects as the Go controller leaves them (finalizers, wrangler conditions with
//! `lastUpdateTime` only, `EXCLUDED`/`RESERVED` marks, `agentPodRef`, counters, NAD
//! back-labels). Written from the documented shapes for this test.

use serde_json::{Value, json};

/// `lastUpdateTime` of every condition the Go controller wrote (whole seconds, as Go's
/// RFC 3339).
pub const GO_TIME: &str = "2026-01-10T08:00:00Z";
/// The Go controller's agent image.
pub const GO_IMAGE: &str = "rancher/harvester-vm-dhcp-agent:v1.5.1";

fn immutable(what: &str) -> Value {
    json!([{"rule": "self == oldSelf", "message": format!("{what} is immutable")}])
}

fn ipv4_string(description: &str) -> Value {
    json!({"type": "string", "format": "ipv4", "description": description})
}

fn wrangler_metadata(name: &str) -> Value {
    json!({
        "name": name,
        "annotations": {
            "controller-gen.kubebuilder.io/version": "v0.18.0",
            "objectset.rio.cattle.io/id": "vm-dhcp-controller-crd",
        },
        "labels": {"objectset.rio.cattle.io/hash": "1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d"},
    })
}

fn conditions_schema() -> Value {
    json!({"type": "array", "items": {"type": "object", "properties": {
        "type": {"type": "string", "description": "Type of cluster condition."},
        "status": {"type": "string", "description": "Status of the condition, one of True, False, Unknown."},
        "lastUpdateTime": {"type": "string", "description": "The last time this condition was updated."},
        "lastTransitionTime": {"type": "string", "description": "Last time the condition transitioned from one status to another."},
        "reason": {"type": "string", "description": "The reason for the condition's last transition."},
        "message": {"type": "string", "description": "Human-readable message indicating details about last transition"}},
        "required": ["status", "type"]}})
}

fn top_level(spec: &Value, status: &Value) -> Value {
    json!({"type": "object", "properties": {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": {"type": "object"},
        "spec": spec,
        "status": status}})
}

fn ippool_pool() -> Value {
    json!({"type": "object", "required": ["end", "start"],
        "x-kubernetes-validations": [{"rule": "!has(oldSelf.exclude) || has(self.exclude)", "message": "End is required once set"}],
        "properties": {
            "start": {"type": "string", "format": "ipv4", "x-kubernetes-validations": immutable("Start")},
            "end": {"type": "string", "format": "ipv4", "x-kubernetes-validations": immutable("End")},
            "exclude": {"type": "array", "format": "ipv4", "items": {"type": "string"},
                "x-kubernetes-validations": immutable("Exclude")}}})
}

fn ippool_spec() -> Value {
    let ipv4 = json!({"type": "object", "required": ["cidr", "pool", "serverIP"],
        "x-kubernetes-validations": [{"rule": "!has(oldSelf.router) || has(self.router)", "message": "Router is required once set"}],
        "properties": {
            "cidr": {"type": "string", "x-kubernetes-validations": immutable("CIDR")},
            "serverIP": {"type": "string", "format": "ipv4", "x-kubernetes-validations": immutable("ServerIP")},
            "router": {"type": "string", "format": "ipv4", "x-kubernetes-validations": immutable("Router")},
            "pool": ippool_pool(),
            "dns": {"type": "array", "format": "ipv4", "maxItems": 3, "items": {"type": "string"}},
            "domainName": {"type": "string"},
            "domainSearch": {"type": "array", "items": {"type": "string"}},
            "ntp": {"type": "array", "maxItems": 4, "items": {"type": "string"}},
            "leaseTime": {"type": "integer"}}});
    json!({"type": "object", "required": ["networkName"], "properties": {
        "networkName": {"type": "string", "maxLength": 64,
            "x-kubernetes-validations": immutable("NetworkName")},
        "paused": {"type": "boolean"},
        "ipv4Config": ipv4}})
}

fn ippool_status() -> Value {
    json!({"type": "object", "properties": {
        "lastUpdate": {"type": "string", "format": "date-time"},
        "ipv4": {"type": "object", "required": ["available", "used"], "properties": {
            "allocated": {"type": "object", "additionalProperties": {"type": "string"}},
            "used": {"type": "integer"},
            "available": {"type": "integer"}}},
        "agentPodRef": {"type": "object", "properties": {
            "namespace": {"type": "string"}, "name": {"type": "string"},
            "image": {"type": "string"}, "uid": {"type": "string"}}},
        "conditions": conditions_schema()}})
}

fn vmnetcfg_spec() -> Value {
    let nic = json!({"type": "object", "required": ["macAddress", "networkName"], "properties": {
        "networkName": {"type": "string", "maxLength": 64},
        "macAddress": {"type": "string", "maxLength": 17},
        "ipAddress": ipv4_string("Desired IPv4 address")}});
    json!({"type": "object", "required": ["vmName"], "properties": {
        "vmName": {"type": "string", "maxLength": 64, "x-kubernetes-validations": immutable("VMName")},
        "paused": {"type": "boolean"},
        "networkConfigs": {"type": "array", "maxItems": 4, "items": nic}}})
}

fn vmnetcfg_status() -> Value {
    json!({"type": "object", "properties": {
        "networkConfigs": {"type": "array", "items": {"type": "object", "properties": {
            "allocatedIPAddress": {"type": "string"},
            "macAddress": {"type": "string"},
            "networkName": {"type": "string"},
            "state": {"type": "string"}}}},
        "conditions": conditions_schema()}})
}

/// The IPPool CRD as the Go controller installs it.
pub fn ippool_crd() -> Value {
    let cond = |t: &str| format!(".status.conditions[?(@.type=='{t}')].status");
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": wrangler_metadata("ippools.network.harvesterhci.io"),
        "spec": {
            "group": "network.harvesterhci.io",
            "names": {"kind": "IPPool", "listKind": "IPPoolList", "plural": "ippools",
                "singular": "ippool", "shortNames": ["ippl", "ippls"]},
            "scope": "Namespaced",
            "versions": [{
                "name": "v1alpha1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "additionalPrinterColumns": [
                    {"name": "NETWORK", "type": "string", "jsonPath": ".spec.networkName"},
                    {"name": "AVAILABLE", "type": "integer", "jsonPath": ".status.ipv4.available"},
                    {"name": "USED", "type": "integer", "jsonPath": ".status.ipv4.used"},
                    {"name": "REGISTERED", "type": "string", "jsonPath": cond("Registered")},
                    {"name": "CACHEREADY", "type": "string", "jsonPath": cond("CacheReady")},
                    {"name": "AGENTREADY", "type": "string", "jsonPath": cond("AgentReady")},
                    {"name": "AGE", "type": "date", "jsonPath": ".metadata.creationTimestamp"}],
                "schema": {"openAPIV3Schema": top_level(&ippool_spec(), &ippool_status())}
            }]
        }
    })
}

/// The vmnetcfg CRD as the Go controller installs it.
pub fn vmnetcfg_crd() -> Value {
    let cond = |t: &str| format!(".status.conditions[?(@.type=='{t}')].status");
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": wrangler_metadata("virtualmachinenetworkconfigs.network.harvesterhci.io"),
        "spec": {
            "group": "network.harvesterhci.io",
            "names": {"kind": "VirtualMachineNetworkConfig", "listKind": "VirtualMachineNetworkConfigList",
                "plural": "virtualmachinenetworkconfigs", "singular": "virtualmachinenetworkconfig",
                "shortNames": ["vmnetcfg", "vmnetcfgs"]},
            "scope": "Namespaced",
            "versions": [{
                "name": "v1alpha1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "additionalPrinterColumns": [
                    {"name": "VMNAME", "type": "string", "jsonPath": ".spec.vmName"},
                    {"name": "ALLOCATED", "type": "string", "jsonPath": cond("Allocated")},
                    {"name": "DISABLED", "type": "string", "jsonPath": cond("Disabled")},
                    {"name": "INSYNCED", "type": "string", "jsonPath": cond("InSynced")},
                    {"name": "AGE", "type": "date", "jsonPath": ".metadata.creationTimestamp"}],
                "schema": {"openAPIV3Schema": top_level(&vmnetcfg_spec(), &vmnetcfg_status())}
            }]
        }
    })
}

/// A wrangler condition as the Go controller leaves it after success (`True`, no reason, no
/// message) or with `False` and no message (`Disabled`, `Stopped`).
pub fn go_condition(type_: &str, status: &str) -> Value {
    json!({"type": type_, "status": status, "lastUpdateTime": GO_TIME})
}

/// The agent Pod as the Go controller builds it (its agent container keeps `NET_ADMIN` and
/// drops nothing).
pub fn go_agent_pod(pool_ns: &str, pool: &str, nad: &str, agents: &str, server_ip: &str) -> Value {
    let name = vmdhcp_api::agent::agent_pod_name(pool_ns, pool);
    let root = json!({"runAsUser": 0, "runAsGroup": 0, "capabilities": {"add": ["NET_ADMIN"]}});
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": agents, "labels": {
                "network.harvesterhci.io/vm-dhcp-controller": "agent",
                "network.harvesterhci.io/ippool-namespace": pool_ns,
                "network.harvesterhci.io/ippool-name": pool},
            "annotations": {"k8s.v1.cni.cncf.io/networks":
                format!("[{{\"namespace\":\"{pool_ns}\",\"name\":\"{nad}\",\"interface\":\"eth1\"}}]")}},
        "spec": {
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": "network.harvesterhci.io/mgmt", "operator": "In", "values": ["true"]}]}]}}},
            "serviceAccountName": super::AGENT_SA,
            "initContainers": [{"name": "ip-setter", "image": GO_IMAGE, "imagePullPolicy": "IfNotPresent",
                "command": ["/bin/sh", "-c"],
                "args": [format!("\n#!/usr/bin/env sh\nset -ex\n\nip address flush dev eth1\nip address add {server_ip}/24 dev eth1\n")],
                "securityContext": root}],
            "containers": [{"name": "agent", "image": GO_IMAGE,
                "args": ["--ippool-ref", format!("{pool_ns}/{pool}")],
                "env": [{"name": "VM_DHCP_AGENT_NAME", "value": name}],
                "securityContext": root,
                "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}},
                "readinessProbe": {"httpGet": {"path": "/readyz", "port": 8080}}}]
        }
    })
}
