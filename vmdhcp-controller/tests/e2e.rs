//! Against a real API server; skipped unless `VMDHCP_E2E_KUBECONFIG` names a kubeconfig.
//! A bare API server is enough (no scheduler, no kubelet: agent Pods stay Pending). How to run
//! it against kind, k3s or a Harvester cluster: docs/e2e.md.
//!
//! The test creates a namespace with a NetworkAttachmentDefinition, an IPPool and a KubeVirt
//! VirtualMachine (installing minimal NAD and VirtualMachine CRDs when the cluster has none),
//! runs the controller in this process, and checks what it wrote against what upstream writes:
//! the vmnetcfg with the VM's NIC, its `Allocated` status, `status.ipv4.allocated` of the pool,
//! the agent Pod. Then it restarts the controller and checks that nothing changed.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, PostParams};
use kube::runtime::wait::Condition;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use vmdhcp_api::ippool::IPPool;
use vmdhcp_api::vmnetcfg::VirtualMachineNetworkConfig;
use vmdhcp_controller::cli::Args;

fn skip(reason: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "skipping: {reason}");
}

const MAC: &str = "52:54:00:aa:bb:01";

/// A CRD for a kind this test only needs to store (NAD, VirtualMachine), when the cluster
/// lacks it.
async fn ensure_crd(client: &Client, group: &str, kind: &str, plural: &str, version: &str) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = format!("{plural}.{group}");
    if api.get_opt(&name).await.expect("read CRDs").is_some() {
        return;
    }
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": name},
        "spec": {"group": group, "scope": "Namespaced",
            "names": {"kind": kind, "plural": plural, "singular": kind.to_lowercase()},
            "versions": [{"name": version, "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}
    }))
    .expect("CRD");
    api.create(&PostParams::default(), &crd)
        .await
        .expect("create CRD");
    tokio::time::timeout(
        Duration::from_secs(30),
        kube::runtime::wait::await_condition(
            api,
            &name,
            kube::runtime::wait::conditions::is_crd_established(),
        ),
    )
    .await
    .expect("CRD established in 30 s")
    .expect("watch CRD");
}

async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    mut probe: impl FnMut() -> F,
) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn controller(
    kubeconfig: &str,
    agents: &str,
) -> (
    CancellationToken,
    tokio::task::JoinHandle<Result<(), vmdhcp_controller::Error>>,
) {
    use clap::Parser;
    let args = Args::try_parse_from([
        "vmdhcp-controller",
        "--no-leader-election",
        "--kubeconfig",
        kubeconfig,
        "--namespace",
        agents,
        "--image",
        "rancher/harvester-vm-dhcp-agent:e2e",
        "--metrics-bind",
        "127.0.0.1:0",
    ])
    .expect("arguments");
    let stop = CancellationToken::new();
    let run = tokio::spawn(vmdhcp_controller::run::run(args, stop.clone()));
    (stop, run)
}

fn nad_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("k8s.cni.cncf.io", "v1", "NetworkAttachmentDefinition"),
        "network-attachment-definitions",
    )
}

fn vm_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("kubevirt.io", "v1", "VirtualMachine"),
        "virtualmachines",
    )
}

/// The NAD, the IPPool on it and a VM with one Multus NIC whose MAC is in Harvester's
/// annotation (as Harvester >= 1.6 writes it) and one pod-network NIC.
async fn create_objects(client: &Client, ns: &str) {
    let nads: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &nad_resource());
    let nad: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
        "metadata": {"name": "net-e2e", "labels": {"network.harvesterhci.io/clusternetwork": "mgmt"}},
        "spec": {"config": "{\"cniVersion\":\"0.3.1\",\"type\":\"bridge\"}"}
    }))
    .expect("nad");
    nads.create(&PostParams::default(), &nad)
        .await
        .expect("create NAD");
    let pools: Api<IPPool> = Api::namespaced(client.clone(), ns);
    let pool: IPPool = serde_json::from_value(json!({
        "apiVersion": "network.harvesterhci.io/v1alpha1", "kind": "IPPool",
        "metadata": {"name": "net-e2e"},
        "spec": {"networkName": format!("{ns}/net-e2e"), "ipv4Config": {
            "cidr": "10.99.0.0/24", "serverIP": "10.99.0.2", "router": "10.99.0.1",
            "pool": {"start": "10.99.0.10", "end": "10.99.0.20", "exclude": ["10.99.0.10"]}}}
    }))
    .expect("pool");
    pools
        .create(&PostParams::default(), &pool)
        .await
        .expect("create IPPool");
    let vms: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &vm_resource());
    let vm: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
        "metadata": {"name": "vm-e2e", "annotations": {"harvesterhci.io/mac-address": format!("{{\"nic-1\":\"{MAC}\"}}")}},
        "spec": {"runStrategy": "Halted", "template": {"spec": {
            "domain": {"devices": {"interfaces": [{"name": "default", "masquerade": {}}, {"name": "nic-1", "bridge": {}}]}},
            "networks": [{"name": "default", "pod": {}}, {"name": "nic-1", "multus": {"networkName": "net-e2e"}}]}}}
    }))
    .expect("vm");
    vms.create(&PostParams::default(), &vm)
        .await
        .expect("create VM");
}

/// What upstream would have written for that VM and pool.
async fn check_allocated(client: &Client, ns: &str) {
    let cfgs: Api<VirtualMachineNetworkConfig> = Api::namespaced(client.clone(), ns);
    let (cfg, entry) = eventually("the vmnetcfg to be Allocated", || async {
        let cfg = cfgs.get_opt("vm-e2e").await.ok().flatten()?;
        let entry = cfg.status.as_ref()?.network_configs.first()?.clone();
        (entry.state == "Allocated").then_some((cfg, entry))
    })
    .await;
    assert_eq!(cfg.spec.network_configs[0].network_name, "net-e2e");
    assert_eq!(cfg.spec.network_configs[0].mac_address, MAC);
    assert_eq!(
        cfg.metadata
            .owner_references
            .as_ref()
            .map(|o| o[0].kind.as_str()),
        Some("VirtualMachine")
    );
    assert_eq!(
        entry.allocated_ip_address, "10.99.0.11",
        "lowest free address after the exclusion"
    );
    let pools: Api<IPPool> = Api::namespaced(client.clone(), ns);
    let pool = pools.get("net-e2e").await.expect("pool");
    let v4 = pool
        .status
        .as_ref()
        .and_then(|s| s.ipv4.clone())
        .expect("ipv4 status");
    assert_eq!(
        v4.allocated.get("10.99.0.11").map(String::as_str),
        Some(MAC)
    );
    assert_eq!(
        v4.allocated.get("10.99.0.10").map(String::as_str),
        Some("EXCLUDED")
    );
    assert_eq!((v4.used, v4.available), (1, 9));
    let nads: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &nad_resource());
    let nad = nads.get("net-e2e").await.expect("nad");
    let back = nad
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("network.harvesterhci.io/ippool-name"));
    assert_eq!(back.map(String::as_str), Some("net-e2e"));
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let agent = eventually("the agent pod", || async {
        pods.get_opt(&format!("{ns}-net-e2e-agent"))
            .await
            .ok()
            .flatten()
    })
    .await;
    let args = agent
        .spec
        .as_ref()
        .and_then(|s| s.containers[0].args.clone());
    assert_eq!(
        args,
        Some(vec!["--ippool-ref".to_owned(), format!("{ns}/net-e2e")])
    );
}

type Snapshot = (
    Option<vmdhcp_api::ippool::IPv4Status>,
    Option<Vec<vmdhcp_api::vmnetcfg::NetworkConfigStatus>>,
);

async fn snapshot(client: &Client, ns: &str) -> Snapshot {
    let pools: Api<IPPool> = Api::namespaced(client.clone(), ns);
    let cfgs: Api<VirtualMachineNetworkConfig> = Api::namespaced(client.clone(), ns);
    (
        pools
            .get("net-e2e")
            .await
            .expect("pool")
            .status
            .and_then(|s| s.ipv4),
        cfgs.get("vm-e2e")
            .await
            .expect("cfg")
            .status
            .map(|s| s.network_configs),
    )
}

/// Deletes the objects while the controller runs, so its finalizers release everything (a
/// bare API server has no garbage collector: the vmnetcfg is deleted by hand).
async fn clean_up(client: &Client, ns: &str) {
    let vms: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &vm_resource());
    let cfgs: Api<VirtualMachineNetworkConfig> = Api::namespaced(client.clone(), ns);
    let pools: Api<IPPool> = Api::namespaced(client.clone(), ns);
    let _ = vms.delete("vm-e2e", &DeleteParams::default()).await;
    let _ = cfgs.delete("vm-e2e", &DeleteParams::default()).await;
    eventually("the vmnetcfg to be released and gone", || async {
        cfgs.get_opt("vm-e2e")
            .await
            .ok()
            .and_then(|c| c.is_none().then_some(()))
    })
    .await;
    let pool = pools.get("net-e2e").await.expect("pool");
    let released = pool
        .status
        .and_then(|s| s.ipv4)
        .is_some_and(|v4| !v4.allocated.contains_key("10.99.0.11"));
    assert!(released, "the address went back to the pool");
    let _ = pools.delete("net-e2e", &DeleteParams::default()).await;
    eventually("the IPPool to be gone", || async {
        pools
            .get_opt("net-e2e")
            .await
            .ok()
            .and_then(|p| p.is_none().then_some(()))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vm_to_vmnetcfg_to_allocation_and_a_restart_changes_nothing() {
    let Ok(kubeconfig) = std::env::var("VMDHCP_E2E_KUBECONFIG") else {
        return skip("VMDHCP_E2E_KUBECONFIG is not set (no cluster to test against)");
    };
    let file = kube::config::Kubeconfig::read_from(&kubeconfig).expect("kubeconfig");
    let config =
        kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
            .await
            .expect("config");
    let client = Client::try_from(config).expect("client");
    ensure_crd(
        &client,
        "k8s.cni.cncf.io",
        "NetworkAttachmentDefinition",
        "network-attachment-definitions",
        "v1",
    )
    .await;
    ensure_crd(
        &client,
        "kubevirt.io",
        "VirtualMachine",
        "virtualmachines",
        "v1",
    )
    .await;
    let ns = format!("vmdhcp-e2e-ctl-{}", std::process::id());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace = serde_json::from_value(json!({"metadata": {"name": ns}})).expect("namespace");
    namespaces
        .create(&PostParams::default(), &namespace)
        .await
        .expect("create namespace");

    // The controller applies vmdhcp's CRDs itself; start it before creating pools.
    let (stop, run) = controller(&kubeconfig, &ns);
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    eventually("the IPPool CRD to be established", || async {
        let crd = crds
            .get_opt("ippools.network.harvesterhci.io")
            .await
            .ok()
            .flatten()?;
        kube::runtime::wait::conditions::is_crd_established()
            .matches_object(Some(&crd))
            .then_some(())
    })
    .await;
    create_objects(&client, &ns).await;
    check_allocated(&client, &ns).await;

    // Restart: same state, nothing rewritten.
    stop.cancel();
    run.await
        .expect("controller task")
        .expect("controller ran cleanly");
    let before = snapshot(&client, &ns).await;
    let (stop, run) = controller(&kubeconfig, &ns);
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        snapshot(&client, &ns).await,
        before,
        "a restart must not change allocations"
    );

    clean_up(&client, &ns).await;
    stop.cancel();
    run.await
        .expect("controller task")
        .expect("controller ran cleanly");
    if std::env::var_os("VMDHCP_E2E_KEEP").is_none() {
        let _ = namespaces.delete(&ns, &DeleteParams::default()).await;
    }
}
