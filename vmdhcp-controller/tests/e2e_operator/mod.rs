//! Operator safety on the real API server:
//!
//! - the agent Pod against Pod Security admission at each level, in both network set-ups, and
//!   the controller running agents in a `restricted` namespace with `static-ipam`;
//! - deleting an IPPool while its NAD keeps changing: a conflict on the NAD never loses the
//!   finalizer, so the back-labels always go;
//! - orphan collection: an allocation whose vmnetcfg vanished without its finalizer is
//!   released after the grace period, with an Event naming it; an entry written by hand is
//!   kept.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use vmdhcp_api::agent::agent_pod_name;
use vmdhcp_api::network::NamespacedName;
use vmdhcp_controller::agent_pod::{self, AgentOptions, AgentPodParams, NetworkSetup};
use vmdhcp_examples::e2e;

use crate::e2e_support::{
    AGENT_SA, Controller, IMAGE, allocated, api_requests, condition, create_agent_sa, create_nad,
    create_pool, create_vm, events_about, ippool_resource, is_true, leases, prepare, raw, raw_pool,
    secs, teardown, vm, vmnetcfg_resource,
};

/// The agent Pod of pool `ns/pool` (on NAD `ns/pool`) in `setup`, its agents in `ns`.
fn agent(ns: &str, pool: &str, setup: NetworkSetup) -> Pod {
    let key = NamespacedName::new(ns, pool);
    agent_pod::build(&AgentPodParams {
        pool: &key,
        nad: &key,
        cluster_network: "mgmt",
        server_ip: "10.97.0.2".parse().expect("server IP"),
        prefix_len: 24,
        namespace: ns,
        image: IMAGE,
        service_account: AGENT_SA,
        dry_run: false,
        options: &AgentOptions {
            network_setup: setup,
            ..AgentOptions::default()
        },
    })
}

/// Sets the namespace's enforced Pod Security level and waits until admission enforces it
/// (its namespace cache follows the label change): a Pod on the host network, which only
/// `privileged` admits, is refused.
async fn enforce(client: &Client, ns: &str, level: &str) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .patch(
            ns,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {
                "pod-security.kubernetes.io/enforce": level,
                "pod-security.kubernetes.io/enforce-version": "latest"}}})),
        )
        .await
        .unwrap_or_else(|e| panic!("label namespace {ns}: {e}"));
    if level == "privileged" {
        return;
    }
    let mut host: Pod = serde_json::from_value(json!({
        "metadata": {"name": "host-probe"},
        "spec": {"hostNetwork": true, "serviceAccountName": AGENT_SA, "containers": [{"name": "c", "image": IMAGE}]}
    }))
    .expect("a Pod");
    host.metadata.namespace = Some(ns.to_owned());
    e2e::eventually(
        &format!("PodSecurity to enforce {level} in {ns}"),
        Duration::from_secs(30),
        || async { dry_run(client, ns, &host).await.err() },
    )
    .await;
}

/// What admission says to `pod` in `ns` now (a dry run): `Ok`, or the refusal's message.
async fn dry_run(client: &Client, ns: &str, pod: &Pod) -> Result<(), String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    match pods.create(&dry, pod).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 403 => Err(status.message),
        Err(e) => panic!("dry run of {} in {ns}: {e}", pod.name_any()),
    }
}

#[tokio::test(flavor = "multi_thread")]
#[allow(clippy::too_many_lines, reason = "one scenario, read top to bottom")]
async fn agent_pods_meet_the_pod_security_level_their_network_setup_claims() {
    let Some(cluster) = e2e::cluster().await else {
        return;
    };
    let client = cluster.client.clone();
    prepare(&client).await;

    // Admission's verdict on the Pod the controller builds, per level and set-up. The
    // set-ups claim `privileged` (init-container) and `restricted` (static-ipam): a change to
    // a security context that breaks the claim is refused here, whatever the fields say.
    let verdicts = Arc::new(std::sync::Mutex::new(BTreeMap::new()));
    for level in ["privileged", "baseline", "restricted"] {
        let verdicts = verdicts.clone();
        let admin = client.clone();
        let client = client.clone();
        e2e::with_temp_ns(&admin, &format!("psa-{level}"), |ns| async move {
            create_agent_sa(&client, &ns).await;
            enforce(&client, &ns, level).await;
            for setup in [NetworkSetup::InitContainer, NetworkSetup::StaticIpam] {
                let verdict = dry_run(&client, &ns, &agent(&ns, "net-p", setup)).await;
                verdicts
                    .lock()
                    .expect("verdicts")
                    .insert((level, setup.pod_security_level()), verdict);
            }
        })
        .await;
    }
    let verdicts = verdicts.lock().expect("verdicts").clone();
    let admitted = |level: &'static str, claim: &'static str| {
        verdicts
            .get(&(level, claim))
            .unwrap_or_else(|| panic!("no verdict for {claim} in {level}"))
    };
    for (level, claim, admit) in [
        ("privileged", "privileged", true),
        ("privileged", "restricted", true),
        ("baseline", "privileged", false),
        ("baseline", "restricted", true),
        ("restricted", "privileged", false),
        ("restricted", "restricted", true),
    ] {
        let verdict = admitted(level, claim);
        assert_eq!(
            verdict.is_ok(),
            admit,
            "the agent Pod claiming {claim} in a namespace enforcing {level}: {verdict:?}"
        );
    }
    let refusal = admitted("restricted", "privileged")
        .clone()
        .expect_err("refused");
    assert!(
        refusal.contains("violates PodSecurity \"restricted:latest\"")
            && refusal.contains("ip-setter"),
        "only the init container is privileged: {refusal}"
    );
    let refusal = admitted("baseline", "privileged")
        .clone()
        .expect_err("refused");
    assert!(
        refusal.contains("non-default capabilities") && refusal.contains("\"NET_ADMIN\""),
        "{refusal}"
    );

    // The controller with static-ipam, its agents in a namespace that enforces restricted:
    // the NAD copy carries the server address, the Pod is admitted and attaches the copy.
    let admin = client.clone();
    e2e::with_temp_ns(&admin, "psa-ctl", |ns| async move {
        create_agent_sa(&client, &ns).await;
        enforce(&client, &ns, "restricted").await;
        create_nad(&client, &ns, "net-r").await;
        create_pool(&client, &ns, "net-r", "10.97.0", (10, 20), &[]).await;
        let started = Instant::now();
        let ctl = Controller::start(
            &cluster.kubeconfig,
            &ns,
            &["--agent-network-setup", "static-ipam"],
        );
        let name = agent_pod_name(&ns, "net-r");
        let pod = e2e::eventually("the agent Pod", Duration::from_secs(60), || {
            crate::e2e_support::agent_pod(&client, &ns, &name)
        })
        .await;
        let deployed = secs(started);
        let spec = pod.spec.as_ref().expect("spec");
        assert!(spec.init_containers.is_none(), "no init container");
        assert_eq!(
            pod.annotations()["k8s.v1.cni.cncf.io/networks"],
            format!(r#"[{{"namespace":"{ns}","name":"{name}","interface":"eth1"}}]"#)
        );
        let copy = raw(&client, &ns, &e2e::nad_resource(), &name)
            .await
            .expect("the NAD copy");
        let config: Value = serde_json::from_str(
            copy.data["spec"]["config"].as_str().expect("spec.config"),
        )
        .expect("a CNI configuration");
        assert_eq!(
            config,
            json!({"cniVersion": "0.3.1", "type": "bridge", "bridge": "mgmt-br",
                "ipam": {"type": "static", "addresses": [{"address": "10.97.0.2/24"}]}})
        );
        assert_eq!(
            copy.labels().get("network.harvesterhci.io/vm-dhcp-controller").map(String::as_str),
            Some("agent-network")
        );
        let status = e2e::eventually("Registered=True", Duration::from_secs(60), || async {
            let status = raw_pool(&client, &ns, "net-r").await.data["status"].clone();
            (condition(&status, "Registered")? == is_true()).then_some(status)
        })
        .await;
        assert_eq!(status["agentPodRef"]["uid"], json!(pod.uid().expect("uid")));

        // Deleting the pool takes its Pod and its NAD copy.
        let pools: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), &ns, &ippool_resource());
        pools
            .delete("net-r", &DeleteParams::default())
            .await
            .expect("delete the pool");
        e2e::eventually(
            "the pool, its agent Pod and its NAD copy to go",
            Duration::from_secs(60),
            || async {
                let pool = raw(&client, &ns, &ippool_resource(), "net-r").await;
                let nad = raw(&client, &ns, &e2e::nad_resource(), &name).await;
                let pod = crate::e2e_support::agent_pod(&client, &ns, &name).await;
                let terminating = pod.is_some_and(|p| p.metadata.deletion_timestamp.is_some());
                (pool.is_none() && nad.is_none()).then_some(terminating)
            },
        )
        .await;
        ctl.stop().await;
        eprintln!(
            "e2e (pod security): verdicts {verdicts:?}; static-ipam agent deployed {deployed:.1} s after start"
        );
    })
    .await;
}

/// Changes a label of NAD `ns/name` as fast as the API server takes it, with a merge patch
/// (which never conflicts itself), until `stop`: every read-modify-write of the NAD in
/// between conflicts.
async fn churn(client: Client, ns: String, name: String, stop: Arc<AtomicBool>) -> u64 {
    let nads: Api<DynamicObject> = Api::namespaced_with(client, &ns, &e2e::nad_resource());
    let mut edits = 0u64;
    while !stop.load(Ordering::Relaxed) {
        edits += 1;
        nads.patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"e2e/tick": edits.to_string()}}})),
        )
        .await
        .unwrap_or_else(|e| panic!("label NAD {ns}/{name}: {e}"));
    }
    edits
}

/// 409s the API server answered to NAD updates (`PUT`) so far.
async fn nad_update_conflicts(client: &Client) -> u64 {
    let (_, conflicts) = api_requests(client).await;
    conflicts
        .get(&(
            "PUT".to_owned(),
            "network-attachment-definitions".to_owned(),
        ))
        .copied()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_conflict_on_the_nad_while_a_pool_is_deleted_keeps_the_finalizer_until_the_labels_go() {
    /// Rounds before giving up on forcing a conflict (one round forces one in most runs).
    const ROUNDS: u32 = 10;
    let Some(cluster) = e2e::cluster().await else {
        return;
    };
    let client = cluster.client.clone();
    prepare(&client).await;
    let admin = client.clone();
    e2e::with_temp_ns(&admin, "ctl-unlabel", |ns| async move {
        let ctl = Controller::start(&cluster.kubeconfig, &ns, &["--no-agent"]);
        let nads: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), &ns, &e2e::nad_resource());
        let pools: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), &ns, &ippool_resource());
        let back_labels = |nad: &DynamicObject| {
            let labels = nad.labels();
            (
                labels.get("network.harvesterhci.io/ippool-namespace").cloned(),
                labels.get("network.harvesterhci.io/ippool-name").cloned(),
            )
        };
        let mut round = 0;
        let (conflicts, edits, conflicted_after) = loop {
            round += 1;
            assert!(
                round <= ROUNDS,
                "no NAD update of the cleanup conflicted in {ROUNDS} rounds: nothing was proven"
            );
            let name = format!("net-u{round}");
            create_nad(&client, &ns, &name).await;
            create_pool(&client, &ns, &name, &format!("10.94.{round}"), (10, 20), &[]).await;
            e2e::eventually("the NAD's back-labels", Duration::from_secs(60), || async {
                let nad = nads.get(&name).await.ok()?;
                (back_labels(&nad) == (Some(ns.clone()), Some(name.clone()))).then_some(())
            })
            .await;

            // The pool goes while the NAD changes all the time: the cleanup's read-modify-write
            // of the NAD conflicts unless it falls between two edits.
            let before = nad_update_conflicts(&client).await;
            let stop = Arc::new(AtomicBool::new(false));
            let churners: Vec<_> = (0..6)
                .map(|_| tokio::spawn(churn(client.clone(), ns.clone(), name.clone(), stop.clone())))
                .collect();
            let deleted = Instant::now();
            pools.delete(&name, &DeleteParams::default()).await.expect("delete the pool");
            let conflicted = e2e::eventually(
                "the cleanup's NAD update to conflict, or the pool to go",
                Duration::from_secs(90),
                || async {
                    let n = nad_update_conflicts(&client).await.saturating_sub(before);
                    if n > 0 {
                        return Some(Some(n));
                    }
                    let gone = raw(&client, &ns, &ippool_resource(), &name).await.is_none();
                    gone.then_some(None)
                },
            )
            .await;
            let conflicted_after = secs(deleted);
            stop.store(true, Ordering::Relaxed);
            let mut edits = 0;
            for churner in churners {
                edits += churner.await.expect("churn");
            }
            // After a conflict the finalizer stayed: the retry removes the labels, then the
            // pool goes. Had the conflict counted as done, the pool would be gone, labels left.
            e2e::eventually("the pool to go", Duration::from_secs(120), || async {
                raw(&client, &ns, &ippool_resource(), &name).await.is_none().then_some(())
            })
            .await;
            let nad = nads.get(&name).await.expect("the NAD");
            assert_eq!(back_labels(&nad), (None, None), "the back-labels went with the pool");
            assert!(nad.labels().contains_key("e2e/tick"), "the other labels stay");
            if let Some(n) = conflicted {
                break (n, edits, conflicted_after);
            }
        };
        ctl.stop().await;
        eprintln!(
            "e2e (NAD conflict): {conflicts} conflicting NAD update(s) in round {round}, the first {conflicted_after:.1} s after the deletion, under {edits} label edits"
        );
    })
    .await;
}

/// A `ValidatingAdmissionPolicy` (and its binding) that refuses every IPPool status update in
/// `ns`: the controller cannot release anything there while it exists.
async fn freeze_pool_status(client: &Client, ns: &str) -> (Api<DynamicObject>, Api<DynamicObject>) {
    let gvk = |kind: &str, plural: &str| {
        kube::api::ApiResource::from_gvk_with_plural(
            &kube::api::GroupVersionKind::gvk("admissionregistration.k8s.io", "v1", kind),
            plural,
        )
    };
    let policies: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &gvk("ValidatingAdmissionPolicy", "validatingadmissionpolicies"),
    );
    let bindings: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &gvk(
            "ValidatingAdmissionPolicyBinding",
            "validatingadmissionpolicybindings",
        ),
    );
    let name = format!("e2e-freeze-{ns}");
    let policy: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {"failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{"apiGroups": ["network.harvesterhci.io"],
                "apiVersions": ["*"], "operations": ["UPDATE"], "resources": ["ippools/status"]}]},
            "validations": [{"expression": "false", "message": "e2e: IPPool status frozen"}]}
    }))
    .expect("a policy");
    let binding: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {"policyName": name, "validationActions": ["Deny"],
            "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}}}
    }))
    .expect("a binding");
    policies
        .create(&PostParams::default(), &policy)
        .await
        .expect("create the policy");
    bindings
        .create(&PostParams::default(), &binding)
        .await
        .expect("create the binding");
    (policies, bindings)
}

/// Whether an IPPool status update in `ns` is refused now (a dry run of a no-op update).
async fn pool_status_frozen(client: &Client, ns: &str, pool: &str) -> bool {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ippool_resource());
    let current = api.get(pool).await.expect("the pool");
    let mut touched = current.clone();
    touched.data["status"]["lastUpdate"] = json!("2000-01-01T00:00:00Z");
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    matches!(
        api.replace_status(pool, &dry, &touched).await,
        Err(kube::Error::Api(status)) if status.message.contains("IPPool status frozen")
    )
}

/// Writes `allocated[ip] = mac` into pool `ns/name` by hand, leaving the counters as they
/// were: the controller's next pass over the pool recounts them.
async fn write_allocation(client: &Client, ns: &str, name: &str, ip: &str, mac: &str) -> u64 {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ippool_resource());
    let mut pool = api.get(name).await.expect("the pool");
    pool.data["status"]["ipv4"]["allocated"][ip] = json!(mac);
    let used = pool.data["status"]["ipv4"]["used"].as_u64().unwrap_or(0);
    api.replace_status(name, &PostParams::default(), &pool)
        .await
        .expect("write the allocation by hand");
    used
}

#[tokio::test(flavor = "multi_thread")]
#[allow(clippy::too_many_lines, reason = "one scenario, read top to bottom")]
async fn an_orphan_is_released_after_the_grace_and_a_hand_written_entry_is_kept() {
    let Some(cluster) = e2e::cluster().await else {
        return;
    };
    let client = cluster.client.clone();
    prepare(&client).await;
    let admin = client.clone();
    e2e::with_temp_ns(&admin, "ctl-orphan", |ns| async move {
        const MAC: &str = "52:54:00:aa:cc:01";
        create_nad(&client, &ns, "net-o").await;
        create_pool(&client, &ns, "net-o", "10.95.0", (10, 20), &[]).await;
        let ctl = Controller::start(
            &cluster.kubeconfig,
            &ns,
            &["--no-agent", "--orphan-grace-secs", "3"],
        );
        create_vm(&client, &ns, &vm("vm-o", &[("nic-1", "net-o", MAC)])).await;
        let nics = e2e::eventually("vm-o to be allocated", Duration::from_secs(60), || {
            allocated(&client, &ns, "vm-o")
        })
        .await;
        let ip = nics[0].1.clone();
        let uid = raw(&client, &ns, &vmnetcfg_resource(), "vm-o")
            .await
            .expect("the vmnetcfg")
            .uid()
            .expect("uid");

        // The vmnetcfg vanishes without its finalizer's release: while pool status updates
        // are refused, the VM (and with it the vmnetcfg) is deleted and the finalizer removed
        // by hand, as a force deletion does.
        let (policies, bindings) = freeze_pool_status(&client, &ns).await;
        e2e::eventually(
            "the policy to refuse pool status updates",
            Duration::from_secs(30),
            || async {
                pool_status_frozen(&client, &ns, "net-o")
                    .await
                    .then_some(())
            },
        )
        .await;
        let vms: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), &ns, &e2e::vm_resource());
        vms.delete("vm-o", &DeleteParams::default())
            .await
            .expect("delete the VM");
        let cfgs: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), &ns, &vmnetcfg_resource());
        e2e::eventually(
            "the vmnetcfg to be deleted",
            Duration::from_secs(60),
            || async {
                let cfg = cfgs.get_opt("vm-o").await.ok()??;
                cfg.metadata.deletion_timestamp.is_some().then_some(())
            },
        )
        .await;
        cfgs.patch(
            "vm-o",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .expect("remove the finalizer");
        e2e::eventually("the vmnetcfg to go", Duration::from_secs(30), || async {
            cfgs.get_opt("vm-o").await.ok()?.is_none().then_some(())
        })
        .await;
        let name = format!("e2e-freeze-{ns}");
        bindings
            .delete(&name, &DeleteParams::default())
            .await
            .expect("delete the binding");
        policies
            .delete(&name, &DeleteParams::default())
            .await
            .expect("delete the policy");
        e2e::eventually(
            "pool status updates to pass again",
            Duration::from_secs(30),
            || async { (!pool_status_frozen(&client, &ns, "net-o").await).then_some(()) },
        )
        .await;
        assert_eq!(
            leases(&raw_pool(&client, &ns, "net-o").await),
            BTreeMap::from([(ip.clone(), MAC.to_owned())]),
            "the address outlived its vmnetcfg"
        );

        // A hand-written entry for a device no VM has: the same pass must keep it. Writing it
        // also wakes the pool's reconciler, which finds the orphan.
        let hand_ip = "10.95.0.20";
        let hand_mac = "02:00:00:00:00:99";
        let used_before = write_allocation(&client, &ns, "net-o", hand_ip, hand_mac).await;
        let gone = Instant::now();
        let released = e2e::eventually(
            "the orphan to be released after the grace",
            Duration::from_secs(90),
            || async {
                let pool = raw_pool(&client, &ns, "net-o").await;
                (!leases(&pool).contains_key(&ip)).then_some(pool)
            },
        )
        .await;
        let released_after = secs(gone);
        assert_eq!(
            leases(&released),
            BTreeMap::from([(hand_ip.to_owned(), hand_mac.to_owned())]),
            "the hand-written entry stays"
        );
        assert_eq!(
            released.data["status"]["ipv4"]["used"],
            json!(used_before),
            "one released, one written by hand: counted again"
        );
        let event = e2e::eventually(
            "the OrphanReleased Event",
            Duration::from_secs(30),
            || async {
                events_about(&client, &ns, "IPPool", "net-o")
                    .await
                    .into_iter()
                    .find(|(_, reason, _)| reason == "OrphanReleased")
            },
        )
        .await;
        assert_eq!(event.0, "Normal");
        assert!(
            event.2.starts_with(&format!(
                "released {ip} of mac {MAC}: vmnetcfg {ns}/vm-o (uid {uid}) has been gone since "
            )),
            "{event:?}"
        );
        assert_eq!(
            events_about(&client, &ns, "IPPool", "net-o")
                .await
                .iter()
                .filter(|(_, reason, _)| reason == "OrphanReleased")
                .count(),
            1,
            "one Event per release, none for the hand-written entry"
        );
        teardown(&client, &ns).await;
        ctl.stop().await;
        eprintln!(
            "e2e (orphans): released {released_after:.1} s after the vmnetcfg went (grace 3 s)"
        );
    })
    .await;
}
