//! Kubernetes mode against a real API server. Gated: runs only when `VMDHCP_E2E_KUBECONFIG`
//! names a kubeconfig (an envtest-style bare API server is enough: no nodes, no kubelet) and
//! the test runs as root (it makes a veth pair between two network namespaces).
//!
//! The agent runs in this process, its Kubernetes client in the host's network (where the API
//! server is reachable), its DHCP socket in the server namespace. The test plays the
//! controller's part: it writes `status.ipv4.allocated` through the status subresource, the way
//! `vmdhcp-controller` does, then a real udhcpc must get that address; moving the address to
//! another MAC in the status must move the lease.

use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use vmdhcp_agent::{Agent, Dhcp, Source};
use vmdhcp_api::ippool::IPPool;
use vmdhcp_examples::netns::{self, SERVER_IF, Topology};

const MANAGER: &str = "vmdhcp-e2e";

fn skip(reason: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "skipping: {reason}");
}

/// A namespace with a random name, deleted when the test ends (unless
/// `VMDHCP_E2E_KEEP` is set, to look at what was left).
struct TempNs {
    api: Api<Namespace>,
    name: String,
}

impl TempNs {
    async fn create(client: &kube::Client) -> Self {
        let name = format!(
            "vmdhcp-e2e-agent-{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos())
        );
        let api: Api<Namespace> = Api::all(client.clone());
        let ns: Namespace =
            serde_json::from_value(json!({"metadata": {"name": name}})).expect("namespace");
        api.create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("create namespace {name}: {e}"));
        Self { api, name }
    }

    async fn delete(self) {
        if std::env::var_os("VMDHCP_E2E_KEEP").is_none() {
            let _ = self.api.delete(&self.name, &DeleteParams::default()).await;
        }
    }
}

async fn install_crds(client: &kube::Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in vmdhcp_api::crd::crds().expect("CRDs") {
        let name = crd.metadata.name.clone().expect("CRD name");
        api.patch(
            &name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap_or_else(|e| panic!("apply CRD {name}: {e}"));
        tokio::time::timeout(
            Duration::from_secs(30),
            await_condition(api.clone(), &name, conditions::is_crd_established()),
        )
        .await
        .unwrap_or_else(|_| panic!("CRD {name} not established in 30 s"))
        .unwrap_or_else(|e| panic!("wait for CRD {name}: {e}"));
    }
}

fn pool(ns: &str) -> IPPool {
    serde_json::from_value(json!({
        "apiVersion": "network.harvesterhci.io/v1alpha1", "kind": "IPPool",
        "metadata": {"name": "net-e2e", "namespace": ns},
        "spec": {"networkName": format!("{ns}/net-e2e"), "ipv4Config": {
            "serverIP": "10.98.0.1", "cidr": "10.98.0.0/24", "router": "10.98.0.1",
            "dns": ["10.98.0.53"], "domainName": "e2e.test", "leaseTime": 600,
            "pool": {"start": "10.98.0.50", "end": "10.98.0.99"}}}
    }))
    .expect("IPPool")
}

/// What the controller writes when it allocates `ip` to `mac`.
async fn allocate(api: &Api<IPPool>, ip: &str, mac: &str) {
    let status = json!({"status": {"ipv4": {
        "allocated": {"10.98.0.1": "EXCLUDED", ip: mac},
        "used": 1, "available": 49
    }}});
    api.patch_status("net-e2e", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap_or_else(|e| panic!("patch IPPool status: {e}"));
}

async fn lease(t: &Topology) -> Option<String> {
    let udhcpc = netns::find("udhcpc")?;
    vmdhcp_examples::client::udhcpc_once(t, &udhcpc)
        .await
        .ok()
        .map(|got| got.address)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_serves_what_the_status_allocates_and_follows_moves() {
    let Some(kubeconfig) = std::env::var_os("VMDHCP_E2E_KUBECONFIG") else {
        return skip("VMDHCP_E2E_KUBECONFIG is not set (no cluster to test against)");
    };
    if let Some(reason) = netns::unsupported() {
        return skip(&reason);
    }
    if netns::find("udhcpc").is_none() {
        return skip("udhcpc (busybox) is not installed");
    }
    let client = vmdhcp_agent::watch::client(Some(kubeconfig.into()), None)
        .await
        .expect("client from VMDHCP_E2E_KUBECONFIG");
    install_crds(&client).await;
    let ns = TempNs::create(&client).await;
    let pools: Api<IPPool> = Api::namespaced(client.clone(), &ns.name);
    pools
        .create(&PostParams::default(), &pool(&ns.name))
        .await
        .expect("create IPPool");
    allocate(&pools, "10.98.0.60", "02:00:00:98:00:01").await;

    let t = Topology::create("vmdhcp-e2e").expect("namespaces").quiet();
    let socket = t
        .bind_server(&dhcp_server::SocketConfig::new().interface(SERVER_IF))
        .expect("DHCP socket in the server namespace");
    let agent = Agent::new(
        Source::Kube {
            client: client.clone(),
            namespace: ns.name.clone(),
            name: "net-e2e".into(),
        },
        Dhcp::Socket(socket),
    );
    let served = agent.served.clone();
    let stop = CancellationToken::new();
    let running = tokio::spawn(agent.run(stop.clone()));

    tokio::time::timeout(Duration::from_secs(30), served.configured())
        .await
        .expect("the agent synced the IPPool within 30 s");
    assert_eq!(lease(&t).await.as_deref(), Some("10.98.0.60"));

    // The controller moves the VM to another address: the next DISCOVER gets the new one.
    allocate(&pools, "10.98.0.61", "02:00:00:98:00:01").await;
    let moved = async {
        while served
            .table()
            .iter()
            .all(|(_, ip)| ip.to_string() != "10.98.0.61")
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), moved)
        .await
        .expect("the agent saw the status change within 30 s");
    assert_eq!(lease(&t).await.as_deref(), Some("10.98.0.61"));

    // Deleting the pool stops the answers.
    pools
        .delete("net-e2e", &DeleteParams::default())
        .await
        .expect("delete IPPool");
    let emptied = async {
        while !served.table().is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), emptied)
        .await
        .expect("the agent dropped the leases of a deleted pool");
    assert_eq!(lease(&t).await, None);

    stop.cancel();
    running
        .await
        .expect("agent task")
        .expect("agent ran cleanly");
    ns.delete().await;
}
