//! The Helm chart in `deploy/chart`, checked through its renders in `deploy/chart-tests`.
//!
//! Each scenario `deploy/chart-tests/<name>.values.yaml` has its `helm template` output checked
//! in beside it as `<name>.yaml` (written by `python3 deploy/chart-tests/render.py`). The tests
//! here:
//!
//! - check that every render was made from the current chart sources (its `chart-digest`
//!   header), and, where Helm is installed (the `helm` CLI or the `helm-python-sdk` wheel),
//!   that Helm renders the same objects today and lints the chart clean (else they say they
//!   skip that part);
//! - check each render: every Kubernetes API call the three programs make is allowed by the
//!   rendered RBAC and nothing else is ([`CALLS`]); flags, names, ports, probes and images are
//!   wired consistently and name flags the binaries declare; Pods are hardened; the
//!   `ServiceMonitor` exists only when enabled; the defaults keep the names of the chart
//!   Harvester ships;
//! - check that `deploy/chart/crds` holds exactly the CRDs the types generate.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, PodSpec, Probe, Service};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sha2::{Digest, Sha256};
use vmdhcp_api::consts::{
    DEFAULT_SERVICE_CIDR, GROUP, HTTP_PORT, LEASE_NAME, LEASE_NAMESPACE, PATH_HEALTHZ, PATH_READYZ,
    PLURAL_IPPOOL, PLURAL_VMNETCFG, WEBHOOK_HTTPS_PORT, WEBHOOK_SECRET_CA_SUFFIX,
    WEBHOOK_SECRET_TLS_SUFFIX,
};
use vmdhcp_api::image::ImageRef;

/// How to regenerate the renders.
const RENDER_COMMAND: &str = "python3 deploy/chart-tests/render.py";
/// `render.py`'s exit status when neither the helm CLI nor the Helm SDK wheel is installed.
const NO_RENDERER: i32 = 3;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn chart_dir() -> PathBuf {
    workspace().join("deploy/chart")
}

fn tests_dir() -> PathBuf {
    workspace().join("deploy/chart-tests")
}

/// The scenarios: every `deploy/chart-tests/<name>.values.yaml`.
fn scenarios() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(tests_dir())
        .expect("deploy/chart-tests exists")
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".values.yaml").map(str::to_owned)
        })
        .collect();
    names.sort();
    assert!(!names.is_empty(), "no scenario in deploy/chart-tests");
    names
}

// ---------------------------------------------------------------------------------------------
// Renders

/// One checked-in render.
struct Render {
    scenario: String,
    namespace: String,
    digest: String,
    docs: Vec<Value>,
}

/// A `# key: value` line of a file's leading comment block.
fn header(text: &str, key: &str) -> Option<String> {
    let prefix = format!("# {key}:");
    text.lines()
        .take_while(|line| line.starts_with('#'))
        .find_map(|line| line.strip_prefix(&prefix).map(|v| v.trim().to_owned()))
}

/// The YAML documents of a multi-document stream, empty ones left out.
fn parse_docs(yaml: &str, what: &str) -> Vec<Value> {
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(yaml).unwrap_or_else(|e| panic!("{what} is not YAML: {e}"));
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

impl Render {
    fn load(scenario: &str) -> Self {
        let path = tests_dir().join(format!("{scenario}.yaml"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!("{}: {e}; render it with `{RENDER_COMMAND}`", path.display())
        });
        let field = |key: &str| {
            header(&text, key).unwrap_or_else(|| {
                panic!(
                    "{} has no `# {key}:` header; re-render it with `{RENDER_COMMAND}`",
                    path.display()
                )
            })
        };
        Self {
            scenario: scenario.to_owned(),
            namespace: field("namespace"),
            digest: field("chart-digest"),
            docs: parse_docs(&text, &path.display().to_string()),
        }
    }

    fn all() -> Vec<Self> {
        scenarios().iter().map(|s| Self::load(s)).collect()
    }

    fn objects<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.docs.iter().filter(move |d| d["kind"] == kind)
    }

    /// Every object of `kind`, as its typed Kubernetes struct (which also checks its shape).
    fn typed<K: DeserializeOwned>(&self, kind: &str) -> Vec<K> {
        self.objects(kind)
            .map(|d| {
                serde_json::from_value(d.clone()).unwrap_or_else(|e| {
                    panic!(
                        "{}: {kind} {} does not parse: {e}",
                        self.scenario, d["metadata"]["name"]
                    )
                })
            })
            .collect()
    }

    /// `(kind, namespace, name)` of every object.
    fn inventory(&self) -> BTreeSet<(String, String, String)> {
        self.docs
            .iter()
            .map(|d| {
                let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
                (
                    s(&d["kind"]),
                    s(&d["metadata"]["namespace"]),
                    s(&d["metadata"]["name"]),
                )
            })
            .collect()
    }

    /// The controller's and the webhook's Deployments, told apart by their one container's name.
    fn workloads(&self) -> Workloads {
        let deployments: Vec<Deployment> = self.typed("Deployment");
        assert_eq!(deployments.len(), 2, "{}: two Deployments", self.scenario);
        let pick = |container: &str| {
            deployments
                .iter()
                .find(|d| pod(d).containers.iter().any(|c| c.name == container))
                .unwrap_or_else(|| panic!("{}: no Deployment runs `{container}`", self.scenario))
                .clone()
        };
        Workloads {
            controller: pick("controller"),
            webhook: pick("webhook"),
        }
    }

    fn service(&self, name: &str) -> Service {
        self.typed::<Service>("Service")
            .into_iter()
            .find(|s| s.metadata.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("{}: no Service {name}", self.scenario))
    }
}

struct Workloads {
    controller: Deployment,
    webhook: Deployment,
}

fn pod(deployment: &Deployment) -> &PodSpec {
    deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("a Deployment has a Pod spec")
}

fn pod_labels(deployment: &Deployment) -> BTreeMap<String, String> {
    deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default()
}

fn only_container(deployment: &Deployment) -> &Container {
    let containers = &pod(deployment).containers;
    assert_eq!(
        containers.len(),
        1,
        "{:?}: one container",
        deployment.metadata.name
    );
    &containers[0]
}

fn name(deployment: &Deployment) -> &str {
    deployment.metadata.name.as_deref().unwrap_or_default()
}

/// A container's `--flag value` arguments; a flag followed by another flag (or nothing) maps
/// to `""`. The chart writes every flag and its value as two arguments.
fn flags(container: &Container) -> BTreeMap<String, String> {
    let args = container.args.clone().unwrap_or_default();
    let mut out = BTreeMap::new();
    let mut i = 0;
    while i < args.len() {
        let flag = args[i]
            .strip_prefix("--")
            .unwrap_or_else(|| panic!("{}: stray argument {:?}", container.name, args[i]));
        let value = args.get(i + 1).filter(|v| !v.starts_with("--"));
        let previous = out.insert(flag.to_owned(), value.cloned().unwrap_or_default());
        assert!(previous.is_none(), "{}: --{flag} twice", container.name);
        i += if value.is_some() { 2 } else { 1 };
    }
    out
}

fn flag<'a>(flags: &'a BTreeMap<String, String>, flag: &str, whose: &str) -> &'a str {
    flags
        .get(flag)
        .unwrap_or_else(|| panic!("{whose} gets no --{flag}"))
}

/// The container port a probe or Service port names (by name or number).
fn container_port(container: &Container, port: &IntOrString) -> i32 {
    let ports = container.ports.clone().unwrap_or_default();
    match port {
        IntOrString::Int(n) => {
            assert!(
                ports.iter().any(|p| p.container_port == *n),
                "{}: port {n} is not declared",
                container.name
            );
            *n
        }
        IntOrString::String(s) => {
            ports
                .iter()
                .find(|p| p.name.as_deref() == Some(s.as_str()))
                .unwrap_or_else(|| panic!("{}: no port named {s}", container.name))
                .container_port
        }
    }
}

/// `(scheme, path, container port)` of an HTTP probe.
fn probe(container: &Container, probe: Option<&Probe>, which: &str) -> (String, String, i32) {
    let get = probe
        .and_then(|p| p.http_get.as_ref())
        .unwrap_or_else(|| panic!("{}: no HTTP {which} probe", container.name));
    (
        get.scheme.clone().unwrap_or_else(|| "HTTP".into()),
        get.path.clone().unwrap_or_default(),
        container_port(container, &get.port),
    )
}

fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

// ---------------------------------------------------------------------------------------------
// Freshness: the renders against the chart sources, Helm, and the generated CRDs

/// What `render.py` hashes into `chart-digest`: the chart's files except `crds/`, sorted by
/// `/`-separated path, each as path NUL content NUL, then `values` NUL and the values file.
fn chart_digest(scenario: &str) -> String {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<(String, PathBuf)>) {
        for entry in std::fs::read_dir(dir).expect("readable chart dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                walk(&path, root, out);
            } else {
                let rel = path.strip_prefix(root).expect("under the chart");
                let rel = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("/");
                out.push((rel, path));
            }
        }
    }
    let root = chart_dir();
    let mut files = Vec::new();
    walk(&root, &root, &mut files);
    files.retain(|(rel, _)| !rel.starts_with("crds/"));
    files.sort();
    let mut hash = Sha256::new();
    for (rel, path) in &files {
        hash.update(rel.as_bytes());
        hash.update(b"\0");
        hash.update(std::fs::read(path).expect("readable chart file"));
        hash.update(b"\0");
    }
    hash.update(b"values\0");
    hash.update(
        std::fs::read(tests_dir().join(format!("{scenario}.values.yaml"))).expect("values"),
    );
    let hex = hash.finalize().iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    });
    format!("sha256:{hex}")
}

#[test]
fn renders_were_made_from_the_current_chart() {
    for render in Render::all() {
        assert!(
            render.digest == chart_digest(&render.scenario),
            "deploy/chart-tests/{}.yaml was rendered from another version of the chart or its \
             values; re-render with `{RENDER_COMMAND}` (needs the helm CLI or \
             `pip install helm-python-sdk`)",
            render.scenario
        );
    }
}

/// Runs `render.py` with `args`; `None` (after saying so) when no Helm is installed.
fn run_render_py(args: &[&str]) -> Option<std::process::Output> {
    let script = tests_dir().join("render.py");
    match Command::new("python3").arg(&script).args(args).output() {
        Ok(out) if out.status.code() == Some(NO_RENDERER) => {
            println!(
                "skipping: helm not installed (neither the helm CLI nor the helm-python-sdk \
                 wheel): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            None
        }
        Ok(out) => Some(out),
        Err(e) => {
            println!("skipping: helm not installed (cannot run python3: {e})");
            None
        }
    }
}

/// Documents in a stable order, for comparing two renders of the same chart.
fn canonical(mut docs: Vec<Value>) -> Vec<Value> {
    docs.sort_by_key(|d| {
        (
            d["kind"].to_string(),
            d["metadata"]["namespace"].to_string(),
            d["metadata"]["name"].to_string(),
        )
    });
    docs
}

#[test]
fn helm_renders_what_is_checked_in() {
    for render in Render::all() {
        let Some(out) = run_render_py(&["render", &render.scenario]) else {
            return;
        };
        assert!(
            out.status.success(),
            "helm cannot render scenario {}: {}",
            render.scenario,
            String::from_utf8_lossy(&out.stderr)
        );
        let fresh = parse_docs(&String::from_utf8_lossy(&out.stdout), "helm's output");
        assert!(
            canonical(fresh) == canonical(render.docs.clone()),
            "helm renders scenario {} differently from deploy/chart-tests/{0}.yaml; re-render \
             with `{RENDER_COMMAND}` and review the diff",
            render.scenario
        );
    }
}

#[test]
fn helm_lints_the_chart_clean() {
    let Some(out) = run_render_py(&["lint"]) else {
        return;
    };
    assert!(
        out.status.success(),
        "helm lint --strict:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn chart_crds_are_the_generated_crds() {
    let dir = chart_dir().join("crds");
    let mut expected = BTreeSet::new();
    for crd in vmdhcp_api::crd::crds().unwrap() {
        let file = vmdhcp_api::crd::file_name(&crd);
        let checked_in = std::fs::read_to_string(dir.join(&file)).unwrap_or_default();
        assert!(
            checked_in == vmdhcp_api::crd::to_yaml(&crd).unwrap(),
            "deploy/chart/crds/{file} differs from the generated CRD; run `{}` and then \
             `cp deploy/crds/*.yaml deploy/chart/crds/`",
            vmdhcp_api::crd::REGENERATE_COMMAND
        );
        expected.insert(file);
    }
    let present: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(present, expected, "deploy/chart/crds holds other files");
}

// ---------------------------------------------------------------------------------------------
// RBAC: the API calls of the three programs

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Program {
    Controller,
    Agent,
    Webhook,
}

/// Where a call goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scope {
    /// A cluster-scoped object, or a list/watch across all namespaces.
    Cluster,
    /// A namespaced object in a namespace not known in advance (a user's IPPool, VM, NAD).
    AnyNamespace,
    /// The release namespace (the controller's and webhook's `--namespace`).
    Release,
    /// `kube-system` (the leader-election Lease).
    KubeSystem,
    /// `kube-node-lease` (the kubelets' Leases).
    NodeLease,
}

/// Which object names a call is made with.
#[derive(Clone, Copy, Debug)]
enum Names {
    /// Any (or not known in advance, or no name: create, list, watch).
    Any,
    /// Exactly these.
    Fixed(&'static [&'static str]),
    /// The two CRDs.
    Crds,
    /// The webhook's `--name` followed by each of these suffixes.
    Webhook(&'static [&'static str]),
}

/// API calls one program makes, with where the code makes them.
struct Call {
    who: Program,
    verbs: &'static [&'static str],
    group: &'static str,
    resources: &'static [&'static str],
    scope: Scope,
    names: Names,
    why: &'static str,
}

const NAD_GROUP: &str = "k8s.cni.cncf.io";
const NADS: &[&str] = &["network-attachment-definitions"];
const WEBHOOK_CONFIGS: &[&str] = &[
    "validatingwebhookconfigurations",
    "mutatingwebhookconfigurations",
];

/// Every Kubernetes API call of the three programs, with where the code makes it. The chart
/// must allow each, and nothing else: a new call in the code needs a row here and a rule in
/// `deploy/chart/templates/rbac.yaml`.
#[rustfmt::skip]
const CALLS: &[Call] = &[
    // vmdhcp-agent
    Call { who: Program::Agent, verbs: &["list", "watch"], group: GROUP, resources: &[PLURAL_IPPOOL], scope: Scope::AnyNamespace, names: Names::Any,
           why: "vmdhcp-agent/src/watch.rs: watcher on its pool's namespace, metadata.name field selector" },
    Call { who: Program::Agent, verbs: &["create"], group: "events.k8s.io", resources: &["events"], scope: Scope::AnyNamespace, names: Names::Any,
           why: "vmdhcp-agent/src/conflict.rs: an AddressConflict Event on its pool, in the pool's namespace" },
    // vmdhcp-controller
    Call { who: Program::Controller, verbs: &["get", "patch"], group: "apiextensions.k8s.io", resources: &["customresourcedefinitions"], scope: Scope::Cluster, names: Names::Crds,
           why: "vmdhcp-controller/src/crds.rs: get_opt, then server-side apply" },
    Call { who: Program::Controller, verbs: &["create"], group: "apiextensions.k8s.io", resources: &["customresourcedefinitions"], scope: Scope::Cluster, names: Names::Any,
           why: "vmdhcp-controller/src/crds.rs: an apply that creates a CRD is authorised as create" },
    Call { who: Program::Controller, verbs: &["list", "watch"], group: GROUP, resources: &[PLURAL_IPPOOL, PLURAL_VMNETCFG], scope: Scope::Cluster, names: Names::Any,
           why: "vmdhcp-controller/src/run.rs: Controller::new(Api::all) for IPPools and vmnetcfgs" },
    Call { who: Program::Controller, verbs: &["get"], group: GROUP, resources: &[PLURAL_IPPOOL, PLURAL_VMNETCFG], scope: Scope::AnyNamespace, names: Names::Any,
           why: "vmdhcp-controller/src/reconcile/ippool.rs, vm.rs, context.rs: re-read before a write" },
    Call { who: Program::Controller, verbs: &["patch"], group: GROUP, resources: &[PLURAL_IPPOOL, PLURAL_VMNETCFG], scope: Scope::AnyNamespace, names: Names::Any,
           why: "vmdhcp-controller/src/reconcile/ippool.rs, vmnetcfg.rs: kube finalizer() adds/removes wrangler.cattle.io/vm-dhcp-*-controller by JSON patch" },
    Call { who: Program::Controller, verbs: &["create", "update"], group: GROUP, resources: &[PLURAL_VMNETCFG], scope: Scope::AnyNamespace, names: Names::Any,
           why: "vmdhcp-controller/src/reconcile/vm.rs: one vmnetcfg per VirtualMachine, created and replaced" },
    Call { who: Program::Controller, verbs: &["update"], group: GROUP, resources: &["ippools/status", "virtualmachinenetworkconfigs/status"], scope: Scope::AnyNamespace, names: Names::Any,
           why: "vmdhcp-controller/src/reconcile/*.rs, context.rs: replace_status" },
    Call { who: Program::Controller, verbs: &["get", "update"], group: NAD_GROUP, resources: NADS, scope: Scope::AnyNamespace, names: Names::Any,
           why: "vmdhcp-controller/src/reconcile/ippool.rs: read the pool's NAD, replace it with the back-reference labels" },
    Call { who: Program::Controller, verbs: &["list", "watch"], group: "kubevirt.io", resources: &["virtualmachines"], scope: Scope::Cluster, names: Names::Any,
           why: "vmdhcp-controller/src/run.rs: Controller::new(Api::all) for VirtualMachines" },
    Call { who: Program::Controller, verbs: &["get", "list", "watch", "create", "delete"], group: "", resources: &["pods"], scope: Scope::Release, names: Names::Any,
           why: "vmdhcp-controller/src/run.rs, reconcile/ippool.rs: agent Pods in --namespace, watched by label" },
    Call { who: Program::Controller, verbs: &["create"], group: "coordination.k8s.io", resources: &["leases"], scope: Scope::KubeSystem, names: Names::Any,
           why: "vmdhcp-controller/src/leader.rs: create the Lease when missing" },
    Call { who: Program::Controller, verbs: &["get", "update"], group: "coordination.k8s.io", resources: &["leases"], scope: Scope::KubeSystem, names: Names::Fixed(&[LEASE_NAME]),
           why: "vmdhcp-controller/src/leader.rs: get_opt, replace guarded by resourceVersion" },
    Call { who: Program::Controller, verbs: &["create", "patch"], group: "events.k8s.io", resources: &["events"], scope: Scope::AnyNamespace, names: Names::Any,
           why: "vmdhcp-controller/src/run.rs: kube Recorder (events.k8s.io/v1) on pools, vmnetcfgs, VMs" },
    Call { who: Program::Controller, verbs: &["list", "watch"], group: "events.k8s.io", resources: &["events"], scope: Scope::Cluster, names: Names::Any,
           why: "vmdhcp-controller/src/run.rs, reconcile/conflict.rs: agents' AddressConflict Events in all namespaces (field selector); annotated by patch" },
    // vmdhcp-webhook
    Call { who: Program::Webhook, verbs: &["list", "watch"], group: GROUP, resources: &[PLURAL_IPPOOL, PLURAL_VMNETCFG], scope: Scope::Cluster, names: Names::Any,
           why: "vmdhcp-webhook/src/cache.rs: reflectors over all namespaces" },
    Call { who: Program::Webhook, verbs: &["list", "watch"], group: NAD_GROUP, resources: NADS, scope: Scope::Cluster, names: Names::Any,
           why: "vmdhcp-webhook/src/cache.rs: metadata reflector over all namespaces" },
    Call { who: Program::Webhook, verbs: &["create"], group: "admissionregistration.k8s.io", resources: WEBHOOK_CONFIGS, scope: Scope::Cluster, names: Names::Any,
           why: "vmdhcp-webhook/src/registration.rs: create when missing" },
    Call { who: Program::Webhook, verbs: &["list", "update"], group: "admissionregistration.k8s.io", resources: WEBHOOK_CONFIGS, scope: Scope::Cluster, names: Names::Webhook(&[""]),
           why: "vmdhcp-webhook/src/registration.rs: list by metadata.name field selector, replace" },
    Call { who: Program::Webhook, verbs: &["create"], group: "", resources: &["secrets"], scope: Scope::Release, names: Names::Any,
           why: "vmdhcp-webhook/src/secrets.rs: create the CA and serving Secrets when missing" },
    Call { who: Program::Webhook, verbs: &["get", "update"], group: "", resources: &["secrets"], scope: Scope::Release, names: Names::Webhook(&[WEBHOOK_SECRET_CA_SUFFIX, WEBHOOK_SECRET_TLS_SUFFIX]),
           why: "vmdhcp-webhook/src/secrets.rs: get_opt, replace guarded by resourceVersion" },
];

/// The controller's flags, as the chart passes them.
type Flags = BTreeMap<String, String>;

/// Whether the controller, given its flags, makes a call.
type When = fn(&Flags) -> bool;

/// Calls the controller makes only under some of its flags: the chart must grant each exactly
/// when it passes that flag.
#[rustfmt::skip]
const CONDITIONAL_CALLS: &[(When, Call)] = &[
    (fencing, Call { who: Program::Controller, verbs: &["get"], group: "", resources: &["nodes"], scope: Scope::Cluster, names: Names::Any,
           why: "vmdhcp-controller/src/reconcile/ippool.rs: the node of an agent Pod (node-loss fencing, --agent-node-grace-secs > 0)" }),
    (fencing, Call { who: Program::Controller, verbs: &["get"], group: "coordination.k8s.io", resources: &["leases"], scope: Scope::NodeLease, names: Names::Any,
           why: "vmdhcp-controller/src/reconcile/ippool.rs: the Lease of an agent Pod's node (node-loss fencing)" }),
    (static_ipam, Call { who: Program::Controller, verbs: &["create", "delete"], group: NAD_GROUP, resources: NADS, scope: Scope::Release, names: Names::Any,
           why: "vmdhcp-controller/src/reconcile/ippool.rs: the agents' copies of their pools' NADs (--agent-network-setup static-ipam)" }),
];

/// `--agent-node-grace-secs` above 0: agent Pods on lost nodes are fenced.
fn fencing(flags: &Flags) -> bool {
    flags
        .get("agent-node-grace-secs")
        .is_some_and(|v| v.parse::<u64>().is_ok_and(|n| n > 0))
}

/// `--agent-network-setup static-ipam`.
fn static_ipam(flags: &Flags) -> bool {
    flags.get("agent-network-setup").map(String::as_str) == Some("static-ipam")
}

/// A namespace no `RoleBinding` of the chart lives in: where users' objects are.
const USER_NAMESPACE: &str = "vm-tenant";

/// One call, resolved against a render.
#[derive(Debug)]
struct Request {
    verb: &'static str,
    group: &'static str,
    resource: &'static str,
    /// `None`: cluster-scoped, or across all namespaces.
    namespace: Option<String>,
    name: Option<String>,
    scope: Scope,
    why: &'static str,
}

/// The `ServiceAccount` each program runs as, and the webhook's `--name`, read from the render.
struct Identities {
    accounts: BTreeMap<Program, (String, String)>,
    webhook_name: String,
    namespace: String,
    controller_flags: Flags,
}

impl Identities {
    fn of(render: &Render) -> Self {
        let w = render.workloads();
        let ns = render.namespace.clone();
        let sa = |d: &Deployment| {
            pod(d).service_account_name.clone().unwrap_or_else(|| {
                panic!("{}: {} names no ServiceAccount", render.scenario, name(d))
            })
        };
        let controller_flags = flags(only_container(&w.controller));
        let webhook_flags = flags(only_container(&w.webhook));
        let agent_sa = flag(&controller_flags, "service-account-name", "the controller");
        Self {
            accounts: BTreeMap::from([
                (Program::Controller, (ns.clone(), sa(&w.controller))),
                (Program::Agent, (ns.clone(), agent_sa.to_owned())),
                (Program::Webhook, (ns.clone(), sa(&w.webhook))),
            ]),
            webhook_name: flag(&webhook_flags, "name", "the webhook").to_owned(),
            namespace: ns,
            controller_flags,
        }
    }

    fn requests(&self, who: Program) -> Vec<Request> {
        let crd_names: Vec<String> = vmdhcp_api::crd::crds()
            .unwrap()
            .into_iter()
            .map(|c| c.metadata.name.unwrap_or_default())
            .collect();
        let mut out = Vec::new();
        let conditional = CONDITIONAL_CALLS
            .iter()
            .filter(|(when, _)| when(&self.controller_flags))
            .map(|(_, call)| call);
        for call in CALLS.iter().chain(conditional).filter(|c| c.who == who) {
            let namespace = match call.scope {
                Scope::Cluster => None,
                Scope::AnyNamespace => Some(USER_NAMESPACE.to_owned()),
                Scope::Release => Some(self.namespace.clone()),
                Scope::KubeSystem => Some(LEASE_NAMESPACE.to_owned()),
                Scope::NodeLease => Some("kube-node-lease".to_owned()),
            };
            let names: Vec<Option<String>> = match call.names {
                Names::Any => vec![None],
                Names::Fixed(names) => names.iter().map(|n| Some((*n).to_owned())).collect(),
                Names::Crds => crd_names.iter().cloned().map(Some).collect(),
                Names::Webhook(suffixes) => suffixes
                    .iter()
                    .map(|s| Some(format!("{}{s}", self.webhook_name)))
                    .collect(),
            };
            for verb in call.verbs {
                for resource in call.resources {
                    for name in &names {
                        out.push(Request {
                            verb,
                            group: call.group,
                            resource,
                            namespace: namespace.clone(),
                            name: name.clone(),
                            scope: call.scope,
                            why: call.why,
                        });
                    }
                }
            }
        }
        out
    }
}

/// A rule a `ServiceAccount` holds, and where: `None` everywhere (`ClusterRoleBinding`), else
/// in that namespace (`RoleBinding`).
struct Grant {
    rule: PolicyRule,
    namespace: Option<String>,
    via: String,
}

/// The rendered RBAC objects.
struct Rbac {
    cluster_roles: BTreeMap<String, Vec<PolicyRule>>,
    roles: BTreeMap<(String, String), Vec<PolicyRule>>,
    cluster_bindings: Vec<ClusterRoleBinding>,
    bindings: Vec<RoleBinding>,
}

impl Rbac {
    fn of(render: &Render) -> Self {
        let cluster_roles = render
            .typed::<ClusterRole>("ClusterRole")
            .into_iter()
            .map(|r| {
                (
                    r.metadata.name.unwrap_or_default(),
                    r.rules.unwrap_or_default(),
                )
            })
            .collect();
        let roles = render
            .typed::<Role>("Role")
            .into_iter()
            .map(|r| {
                let ns = r.metadata.namespace.clone().unwrap_or_else(|| {
                    panic!(
                        "{}: Role {:?} has no namespace",
                        render.scenario, r.metadata.name
                    )
                });
                (
                    (ns, r.metadata.name.unwrap_or_default()),
                    r.rules.unwrap_or_default(),
                )
            })
            .collect();
        Self {
            cluster_roles,
            roles,
            cluster_bindings: render.typed("ClusterRoleBinding"),
            bindings: render.typed("RoleBinding"),
        }
    }

    /// Every rule the `ServiceAccount` `(namespace, name)` holds.
    fn grants(&self, account: &(String, String)) -> Vec<Grant> {
        let bound = |subjects: &Option<Vec<k8s_openapi::api::rbac::v1::Subject>>| {
            subjects.iter().flatten().any(|s| {
                s.kind == "ServiceAccount"
                    && s.name == account.1
                    && s.namespace.as_deref() == Some(account.0.as_str())
            })
        };
        let mut out = Vec::new();
        for b in self.cluster_bindings.iter().filter(|b| bound(&b.subjects)) {
            assert_eq!(
                b.role_ref.kind, "ClusterRole",
                "a ClusterRoleBinding binds a ClusterRole"
            );
            let rules = self.cluster_roles.get(&b.role_ref.name).unwrap_or_else(|| {
                panic!(
                    "ClusterRoleBinding {:?} names a missing ClusterRole",
                    b.metadata.name
                )
            });
            for rule in rules {
                out.push(Grant {
                    rule: rule.clone(),
                    namespace: None,
                    via: format!("ClusterRole {}", b.role_ref.name),
                });
            }
        }
        for b in self.bindings.iter().filter(|b| bound(&b.subjects)) {
            let ns = b
                .metadata
                .namespace
                .clone()
                .expect("a RoleBinding has a namespace");
            let rules = match b.role_ref.kind.as_str() {
                "Role" => self.roles.get(&(ns.clone(), b.role_ref.name.clone())),
                _ => self.cluster_roles.get(&b.role_ref.name),
            }
            .unwrap_or_else(|| panic!("RoleBinding {:?} names a missing role", b.metadata.name));
            for rule in rules {
                out.push(Grant {
                    rule: rule.clone(),
                    namespace: Some(ns.clone()),
                    via: format!("{} {ns}/{}", b.role_ref.kind, b.role_ref.name),
                });
            }
        }
        out
    }

    /// Every `ServiceAccount` some binding names.
    fn subjects(&self) -> BTreeSet<(String, String)> {
        let cluster = self
            .cluster_bindings
            .iter()
            .flat_map(|b| b.subjects.iter().flatten());
        let namespaced = self
            .bindings
            .iter()
            .flat_map(|b| b.subjects.iter().flatten());
        cluster
            .chain(namespaced)
            .map(|s| {
                assert_eq!(
                    s.kind, "ServiceAccount",
                    "bindings name ServiceAccounts only"
                );
                (s.namespace.clone().unwrap_or_default(), s.name.clone())
            })
            .collect()
    }
}

fn has(list: &[String], item: &str) -> bool {
    list.iter().any(|x| x == item)
}

/// Whether `grant` allows `request` (Kubernetes RBAC semantics; no wildcards needed here).
fn allows(grant: &Grant, request: &Request) -> bool {
    let rule = &grant.rule;
    let in_scope = grant.namespace.is_none() || grant.namespace == request.namespace;
    let allowed_names = rule.resource_names.as_deref().unwrap_or_default();
    let name_ok = allowed_names.is_empty()
        || request
            .name
            .as_deref()
            .is_some_and(|n| has(allowed_names, n));
    in_scope
        && name_ok
        && has(
            rule.api_groups.as_deref().unwrap_or_default(),
            request.group,
        )
        && has(
            rule.resources.as_deref().unwrap_or_default(),
            request.resource,
        )
        && has(&rule.verbs, request.verb)
}

/// Whether `request` needs `grant`'s `(group, resource, verb, name)` at `grant`'s scope.
fn justifies(
    request: &Request,
    grant: &Grant,
    group: &str,
    resource: &str,
    verb: &str,
    name: Option<&str>,
) -> bool {
    let scope_ok = match &grant.namespace {
        None => matches!(request.scope, Scope::Cluster | Scope::AnyNamespace),
        Some(ns) => request.namespace.as_deref() == Some(ns.as_str()),
    };
    scope_ok
        && request.group == group
        && request.resource == resource
        && request.verb == verb
        && request.name.as_deref() == name
}

#[test]
fn rbac_allows_every_call_the_programs_make() {
    for render in Render::all() {
        let ids = Identities::of(&render);
        let rbac = Rbac::of(&render);
        let mut missing = Vec::new();
        for (who, account) in &ids.accounts {
            let grants = rbac.grants(account);
            for request in ids.requests(*who) {
                if !grants.iter().any(|g| allows(g, &request)) {
                    let scope = request
                        .namespace
                        .as_deref()
                        .map_or_else(|| "cluster-wide".to_owned(), |ns| format!("in {ns}"));
                    let named = request
                        .name
                        .as_deref()
                        .map(|n| format!(" named {n}"))
                        .unwrap_or_default();
                    missing.push(format!(
                        "{who:?} ({}/{}): {} {}/{}{named} {scope} ({:?}) - {}",
                        account.0,
                        account.1,
                        request.verb,
                        request.group,
                        request.resource,
                        request.scope,
                        request.why
                    ));
                }
            }
        }
        assert!(
            missing.is_empty(),
            "{}: RBAC does not allow:\n  {}",
            render.scenario,
            missing.join("\n  ")
        );
    }
}

#[test]
fn rbac_allows_nothing_else() {
    for render in Render::all() {
        let ids = Identities::of(&render);
        let rbac = Rbac::of(&render);
        let mut extra = Vec::new();
        for (who, account) in &ids.accounts {
            let requests = ids.requests(*who);
            for grant in rbac.grants(account) {
                extra.extend(unjustified(&grant, &requests, *who));
            }
        }
        assert!(
            extra.is_empty(),
            "{}: RBAC grants what no call in CALLS needs (least privilege):\n  {}",
            render.scenario,
            extra.join("\n  ")
        );
        let accounts: BTreeSet<_> = ids.accounts.values().cloned().collect();
        assert_eq!(
            rbac.subjects(),
            accounts,
            "{}: bindings name other ServiceAccounts than the three programs'",
            render.scenario
        );
    }
}

/// Each `(group, resource, verb, name)` of `grant` that none of `requests` needs.
fn unjustified(grant: &Grant, requests: &[Request], who: Program) -> Vec<String> {
    let rule = &grant.rule;
    let names: Vec<Option<&str>> = match rule.resource_names.as_deref() {
        None | Some([]) => vec![None],
        Some(names) => names.iter().map(|n| Some(n.as_str())).collect(),
    };
    let mut out = Vec::new();
    for group in rule.api_groups.iter().flatten() {
        for resource in rule.resources.iter().flatten() {
            for verb in &rule.verbs {
                for name in &names {
                    let needed = requests
                        .iter()
                        .any(|r| justifies(r, grant, group, resource, verb, *name));
                    if !needed {
                        out.push(format!(
                            "{who:?} via {}: {verb} {group}/{resource}{} {}",
                            grant.via,
                            name.map(|n| format!(" named {n}")).unwrap_or_default(),
                            grant
                                .namespace
                                .as_ref()
                                .map_or_else(|| "cluster-wide".to_owned(), |ns| format!("in {ns}")),
                        ));
                    }
                }
            }
        }
    }
    out
}

#[test]
fn every_call_says_why() {
    for call in CALLS.iter().chain(CONDITIONAL_CALLS.iter().map(|(_, c)| c)) {
        assert!(!call.why.is_empty() && !call.verbs.is_empty() && !call.resources.is_empty());
    }
    // The table is what the test trusts: it must at least cover each program.
    for who in [Program::Controller, Program::Agent, Program::Webhook] {
        assert!(CALLS.iter().any(|c| c.who == who), "{who:?} has no call");
    }
}

// ---------------------------------------------------------------------------------------------
// Wiring: flags, names, ports, probes, images

/// The long flags a crate's clap `Parser` structs declare, read from its sources: each
/// `#[arg(...)]` that contains `long` names the flag `long = "..."` or, by default, the next
/// `pub field:` in kebab case. A text scan, not a compile: it keeps this test free of a
/// dependency on the binaries.
fn declared_flags(krate: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut files = vec![workspace().join(krate).join("src")];
    let mut sources = Vec::new();
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else if path.extension().is_some_and(|e| e == "rs") {
            sources.push(std::fs::read_to_string(&path).unwrap());
        }
    }
    for source in sources {
        // Set by an `#[arg(...)]` with `long`, taken by the next `pub field:`.
        let mut pending: Option<Long> = None;
        let mut attribute = String::new();
        for line in source.lines().map(str::trim) {
            if !attribute.is_empty() || line.starts_with("#[arg(") {
                attribute.push_str(line);
                if line.ends_with(")]") {
                    pending = long_of(&attribute).or(pending);
                    attribute.clear();
                }
                continue;
            }
            if let Some(long) = &pending
                && let Some((field, _)) = line.strip_prefix("pub ").and_then(|l| l.split_once(':'))
            {
                out.insert(match long {
                    Long::Named(name) => name.clone(),
                    Long::FromField => field.trim().replace('_', "-"),
                });
                pending = None;
            }
        }
    }
    out
}

/// How an `#[arg(...)]` names its long flag.
enum Long {
    /// `long`: the field's name in kebab case.
    FromField,
    /// `long = "name"`.
    Named(String),
}

/// The long flag of an `#[arg(...)]` attribute, `None` when it has no `long`.
fn long_of(attribute: &str) -> Option<Long> {
    let inner = attribute.strip_prefix("#[arg(")?.strip_suffix(")]")?;
    inner.split(',').map(str::trim).find_map(|part| {
        if part == "long" {
            Some(Long::FromField)
        } else {
            part.strip_prefix("long")
                .map(str::trim_start)
                .and_then(|p| p.strip_prefix('='))
                .map(|v| Long::Named(v.trim().trim_matches('"').to_owned()))
        }
    })
}

#[test]
fn flags_the_chart_passes_exist() {
    let controller = declared_flags("vmdhcp-controller");
    let webhook = declared_flags("vmdhcp-webhook");
    for (krate, declared) in [
        ("vmdhcp-controller", &controller),
        ("vmdhcp-webhook", &webhook),
    ] {
        // Guards the scan itself: both CLIs declare --name and --namespace.
        assert!(
            declared.contains("name") && declared.contains("namespace"),
            "cannot read the flags of {krate}: found {declared:?}"
        );
    }
    for render in Render::all() {
        let w = render.workloads();
        for (deployment, declared) in [(&w.controller, &controller), (&w.webhook, &webhook)] {
            for flag in flags(only_container(deployment)).keys() {
                assert!(
                    declared.contains(flag),
                    "{}: {} is passed --{flag}, which its CLI does not declare ({declared:?})",
                    render.scenario,
                    name(deployment)
                );
            }
        }
    }
}

#[test]
fn controller_is_wired_to_its_namespace_agents_and_port() {
    for render in Render::all() {
        let w = render.workloads();
        let c = only_container(&w.controller);
        let f = flags(c);
        let whose = format!("{}: the controller", render.scenario);
        assert_eq!(
            w.controller.metadata.namespace.as_deref(),
            Some(render.namespace.as_str())
        );
        assert_eq!(
            flag(&f, "namespace", &whose),
            render.namespace,
            "{whose}: agents go to the release namespace"
        );
        assert_eq!(
            flag(&f, "name", &whose),
            name(&w.controller),
            "{whose}: --name is the Deployment's name"
        );
        let agent_image = flag(&f, "image", &whose);
        agent_image
            .parse::<ImageRef>()
            .unwrap_or_else(|e| panic!("{whose}: --image {agent_image:?}: {e}"));
        c.image
            .as_deref()
            .unwrap_or_default()
            .parse::<ImageRef>()
            .unwrap_or_else(|e| panic!("{whose}: image: {e}"));
        // The binary serves on :8080 unless --metrics-bind says otherwise.
        let port = f.get("metrics-bind").map_or(i32::from(HTTP_PORT), |b| {
            b.rsplit(':').next().unwrap().parse().unwrap()
        });
        assert_eq!(
            container_port(c, &IntOrString::String("metrics".into())),
            port,
            "{whose}: metrics port"
        );
        assert_eq!(
            probe(c, c.liveness_probe.as_ref(), "liveness"),
            ("HTTP".into(), PATH_HEALTHZ.into(), port)
        );
        assert_eq!(
            probe(c, c.readiness_probe.as_ref(), "readiness"),
            ("HTTP".into(), PATH_READYZ.into(), port)
        );

        let service = render.service(name(&w.controller));
        let spec = service.spec.expect("Service spec");
        let selector = spec.selector.unwrap_or_default();
        assert!(
            selects(&selector, &pod_labels(&w.controller)),
            "{whose}: its Service selects its Pods"
        );
        assert!(
            !selects(&selector, &pod_labels(&w.webhook)),
            "{whose}: its Service must not select webhook Pods"
        );
        let ports = spec.ports.unwrap_or_default();
        assert!(
            ports.iter().any(|p| p.name.as_deref() == Some("metrics")
                && container_port(
                    c,
                    p.target_port.as_ref().unwrap_or(&IntOrString::Int(p.port))
                ) == port),
            "{whose}: the Service's `metrics` port reaches the metrics port"
        );
    }
}

#[test]
fn webhook_is_wired_to_its_service_secrets_and_port() {
    for render in Render::all() {
        let w = render.workloads();
        let c = only_container(&w.webhook);
        let f = flags(c);
        let whose = format!("{}: the webhook", render.scenario);
        let webhook_name = flag(&f, "name", &whose);
        assert_eq!(
            flag(&f, "namespace", &whose),
            render.namespace,
            "{whose}: --namespace (its Secrets, its Service)"
        );
        assert_eq!(
            name(&w.webhook),
            webhook_name,
            "{whose}: Deployment name = --name"
        );
        let https: i32 = f
            .get("https-port")
            .map_or(i32::from(WEBHOOK_HTTPS_PORT), |p| p.parse().unwrap());
        assert_eq!(
            container_port(c, &IntOrString::String("https".into())),
            https,
            "{whose}: https port = --https-port"
        );
        assert_eq!(
            probe(c, c.liveness_probe.as_ref(), "liveness"),
            ("HTTPS".into(), "/healthz".into(), https)
        );
        assert_eq!(
            probe(c, c.readiness_probe.as_ref(), "readiness"),
            ("HTTPS".into(), "/readyz".into(), https)
        );

        // The API server calls the Service named --name, in --namespace, on --webhook-service-port.
        let service = render.service(webhook_name);
        assert_eq!(
            service.metadata.namespace.as_deref(),
            Some(render.namespace.as_str())
        );
        let spec = service.spec.expect("Service spec");
        let selector = spec.selector.unwrap_or_default();
        assert!(
            selects(&selector, &pod_labels(&w.webhook)),
            "{whose}: its Service selects its Pods"
        );
        assert!(
            !selects(&selector, &pod_labels(&w.controller)),
            "{whose}: its Service must not select controller Pods"
        );
        let service_port: i32 = f
            .get("webhook-service-port")
            .map_or(443, |p| p.parse().unwrap());
        let ports = spec.ports.unwrap_or_default();
        let port = ports
            .iter()
            .find(|p| p.port == service_port)
            .unwrap_or_else(|| panic!("{whose}: the Service has no port {service_port}"));
        assert_eq!(
            container_port(c, port.target_port.as_ref().expect("targetPort")),
            https
        );

        let cidr = flag(&f, "service-cidr", &whose);
        assert!(
            cidr.is_empty() || cidr.parse::<ipnet::Ipv4Net>().is_ok(),
            "{whose}: --service-cidr {cidr:?} is neither empty nor an IPv4 prefix"
        );
        assert!(
            webhook_name.len() <= 63,
            "{whose}: the Service name {webhook_name} is not a DNS label"
        );
    }
}

#[test]
fn pods_are_hardened_and_sized() {
    for render in Render::all() {
        let w = render.workloads();
        for d in [&w.controller, &w.webhook] {
            let whose = format!("{}: {}", render.scenario, name(d));
            let pod_spec = pod(d);
            let psc = pod_spec.security_context.clone().unwrap_or_default();
            let c = only_container(d);
            let sc = c.security_context.clone().unwrap_or_default();
            assert_eq!(
                sc.run_as_non_root.or(psc.run_as_non_root),
                Some(true),
                "{whose}: runAsNonRoot"
            );
            assert_ne!(
                sc.run_as_user.or(psc.run_as_user),
                Some(0),
                "{whose}: not root"
            );
            assert_eq!(
                sc.allow_privilege_escalation,
                Some(false),
                "{whose}: allowPrivilegeEscalation"
            );
            assert_eq!(
                sc.read_only_root_filesystem,
                Some(true),
                "{whose}: readOnlyRootFilesystem"
            );
            assert_ne!(sc.privileged, Some(true), "{whose}: privileged");
            let caps = sc.capabilities.unwrap_or_default();
            assert!(
                has(caps.drop.as_deref().unwrap_or_default(), "ALL"),
                "{whose}: drops ALL capabilities"
            );
            assert!(
                caps.add.unwrap_or_default().is_empty(),
                "{whose}: adds no capability"
            );
            let seccomp = sc.seccomp_profile.or(psc.seccomp_profile).map(|p| p.type_);
            assert_eq!(
                seccomp.as_deref(),
                Some("RuntimeDefault"),
                "{whose}: seccomp"
            );
            assert_ne!(pod_spec.host_network, Some(true), "{whose}: hostNetwork");
            let requests = c
                .resources
                .as_ref()
                .and_then(|r| r.requests.clone())
                .unwrap_or_default();
            assert!(
                requests.contains_key("cpu") && requests.contains_key("memory"),
                "{whose}: resource requests"
            );
        }
    }
}

#[test]
fn every_namespaced_object_names_its_namespace() {
    const CLUSTER_SCOPED: &[&str] = &["ClusterRole", "ClusterRoleBinding"];
    for render in Render::all() {
        for (kind, ns, name) in render.inventory() {
            if CLUSTER_SCOPED.contains(&kind.as_str()) {
                assert!(
                    ns.is_empty(),
                    "{}: {kind} {name} has a namespace",
                    render.scenario
                );
            } else {
                assert!(
                    ns == render.namespace
                        || ((ns == LEASE_NAMESPACE || ns == "kube-node-lease")
                            && kind.starts_with("Role")),
                    "{}: {kind} {name} is in {ns:?}, not the release namespace",
                    render.scenario
                );
            }
        }
    }
}

#[test]
fn service_monitor_only_when_enabled_and_pointing_at_metrics() {
    for render in Render::all() {
        let values =
            std::fs::read_to_string(tests_dir().join(format!("{}.values.yaml", render.scenario)))
                .unwrap();
        let values: Value = serde_saphyr::from_str(&values).unwrap();
        let enabled = values["serviceMonitor"]["enabled"] == Value::Bool(true);
        let monitors: Vec<&Value> = render.objects("ServiceMonitor").collect();
        assert_eq!(
            monitors.len(),
            usize::from(enabled),
            "{}: ServiceMonitor iff serviceMonitor.enabled",
            render.scenario
        );
        let Some(monitor) = monitors.first() else {
            continue;
        };
        let w = render.workloads();
        let selector: BTreeMap<String, String> =
            serde_json::from_value(monitor["spec"]["selector"]["matchLabels"].clone()).unwrap();
        let labels = |name: &str| render.service(name).metadata.labels.unwrap_or_default();
        assert!(
            selects(&selector, &labels(name(&w.controller))),
            "{}: selects the metrics Service",
            render.scenario
        );
        assert!(
            !selects(&selector, &labels(name(&w.webhook))),
            "{}: not the webhook Service",
            render.scenario
        );
        assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
        assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
        assert_eq!(
            monitor["spec"]["namespaceSelector"]["matchNames"][0],
            render.namespace.as_str()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Scenario expectations

/// The chart's appVersion (the images' default tag).
fn app_version() -> String {
    let chart = std::fs::read_to_string(chart_dir().join("Chart.yaml")).unwrap();
    let chart: Value = serde_saphyr::from_str(&chart).unwrap();
    chart["appVersion"].as_str().expect("appVersion").to_owned()
}

/// Installed with its defaults as Harvester installs its chart, every object keeps the name it
/// had under the chart Harvester ships, and the Deployments keep their (immutable) selectors.
#[test]
fn defaults_keep_harvesters_names() {
    let render = Render::load("default");
    let (ns, n) = ("harvester-system", "harvester-vm-dhcp-controller");
    let webhook = format!("{n}-webhook");
    let obj = |kind: &str, ns: &str, name: &str| (kind.to_owned(), ns.to_owned(), name.to_owned());
    let expected: BTreeSet<_> = [
        obj("Deployment", ns, n),
        obj("Deployment", ns, &webhook),
        obj("Service", ns, n),
        obj("Service", ns, &webhook),
        obj("ServiceAccount", ns, n),
        obj("ServiceAccount", ns, &format!("{n}-agent")),
        obj("ServiceAccount", ns, &webhook),
        obj("ClusterRole", "", n),
        obj("ClusterRole", "", &format!("{n}-agent")),
        obj("ClusterRole", "", &webhook),
        obj("ClusterRoleBinding", "", n),
        obj("ClusterRoleBinding", "", &format!("{n}-agent")),
        obj("ClusterRoleBinding", "", &webhook),
        obj("Role", "kube-system", &format!("{n}-lease-manager")),
        obj("RoleBinding", "kube-system", &format!("{n}-manage-leases")),
        obj("Role", ns, &format!("{n}-pod-manager")),
        obj("RoleBinding", ns, &format!("{n}-manage-pods")),
        obj("Role", ns, &format!("{n}-webhook-secret-manager")),
        obj("RoleBinding", ns, &format!("{n}-webhook-manage-secrets")),
    ]
    .into_iter()
    .collect();
    assert_eq!(render.inventory(), expected);

    let w = render.workloads();
    let selector = |d: &Deployment| {
        d.spec
            .as_ref()
            .unwrap()
            .selector
            .match_labels
            .clone()
            .unwrap_or_default()
    };
    let labels = |name: &str| {
        BTreeMap::from([
            ("app.kubernetes.io/name".to_owned(), name.to_owned()),
            ("app.kubernetes.io/instance".to_owned(), n.to_owned()),
        ])
    };
    assert_eq!(selector(&w.controller), labels(n));
    assert_eq!(selector(&w.webhook), labels(&webhook));

    let version = app_version();
    let controller = flags(only_container(&w.controller));
    assert_eq!(
        controller["image"],
        format!("ghcr.io/vmdhcp/vmdhcp-agent:{version}")
    );
    assert_eq!(controller["service-account-name"], format!("{n}-agent"));
    assert_eq!(
        only_container(&w.controller).image.as_deref(),
        Some(format!("ghcr.io/vmdhcp/vmdhcp-controller:{version}").as_str())
    );
    assert_eq!(
        only_container(&w.webhook).image.as_deref(),
        Some(format!("ghcr.io/vmdhcp/vmdhcp-webhook:{version}").as_str())
    );
    let hook = flags(only_container(&w.webhook));
    assert_eq!(hook["name"], webhook);
    assert_eq!(hook["https-port"], WEBHOOK_HTTPS_PORT.to_string());
    assert_eq!(hook["webhook-service-port"], "443");
    assert_eq!(hook["service-cidr"], DEFAULT_SERVICE_CIDR);
    let ids = Identities::of(&render);
    assert_eq!(ids.webhook_name, webhook);
}

#[test]
fn service_cidr_values() {
    for (scenario, cidr) in [
        ("default", DEFAULT_SERVICE_CIDR),
        ("auto-service-cidr", DEFAULT_SERVICE_CIDR), // no cluster under `helm template`: fallback
        ("no-service-cidr", ""),
        ("full", "10.96.0.0/12"),
    ] {
        let w = Render::load(scenario).workloads();
        assert_eq!(
            flags(only_container(&w.webhook))["service-cidr"],
            cidr,
            "{scenario}"
        );
    }
}

/// Every optional value reaches the objects it is for: names, images, flags, ports.
#[test]
fn full_values_wire_names_images_and_ports() {
    let render = Render::load("full");
    let w = render.workloads();
    let fullname = "dhcp-harvester-vm-dhcp-controller";
    assert_eq!(name(&w.controller), fullname);
    assert_eq!(name(&w.webhook), format!("{fullname}-webhook"));
    assert_eq!(w.controller.spec.as_ref().unwrap().replicas, Some(2));
    assert_eq!(w.webhook.spec.as_ref().unwrap().replicas, Some(3));
    let controller = flags(only_container(&w.controller));
    assert_eq!(
        controller["image"],
        "registry.example.test:5000/vmdhcp/agent:v9.9.9@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    );
    assert_eq!(controller["service-account-name"], "vmdhcp-agent");
    assert_eq!(
        controller.get("enable-cache-dump-api").map(String::as_str),
        Some("")
    );
    // The agent values reach the controller, which builds the agent Pods from them.
    assert_eq!(controller["agent-network-setup"], "static-ipam");
    assert_eq!(controller["agent-node-grace-secs"], "120");
    assert_eq!(controller["orphan-grace-secs"], "1800");
    assert_eq!(
        controller["agent-priority-class-name"],
        "system-node-critical"
    );
    assert_eq!(
        controller
            .get("agent-enable-cache-dump-api")
            .map(String::as_str),
        Some("")
    );
    let resources: k8s_openapi::api::core::v1::ResourceRequirements =
        serde_json::from_str(&controller["agent-resources"]).expect("--agent-resources is JSON");
    assert_eq!(resources.limits.expect("limits")["memory"].0, "64Mi");
    let tolerations: Vec<k8s_openapi::api::core::v1::Toleration> =
        serde_json::from_str(&controller["agent-tolerations"])
            .expect("--agent-tolerations is JSON");
    assert_eq!(tolerations[0].toleration_seconds, Some(30));
    assert_eq!(
        pod(&w.controller).service_account_name.as_deref(),
        Some("vmdhcp")
    );
    assert_eq!(
        pod(&w.webhook).service_account_name.as_deref(),
        Some("vmdhcp-webhook")
    );
    let hook = flags(only_container(&w.webhook));
    assert_eq!(
        (
            hook["https-port"].as_str(),
            hook["webhook-service-port"].as_str()
        ),
        ("9443", "8443")
    );
    assert!(hook.contains_key("debug"));
    let metrics = render.service(fullname).spec.unwrap().ports.unwrap();
    assert_eq!(metrics[0].port, 9090);
}

/// Every optional value reaches the objects it is for: scheduling and Pod metadata.
#[test]
fn full_values_reach_both_deployments() {
    let render = Render::load("full");
    let w = render.workloads();
    for d in [&w.controller, &w.webhook] {
        let p = pod(d);
        let whose = name(d);
        assert_eq!(
            p.priority_class_name.as_deref(),
            Some("system-cluster-critical"),
            "{whose}"
        );
        assert_eq!(
            p.tolerations.as_ref().map(Vec::len),
            Some(1),
            "{whose}: tolerations"
        );
        assert!(
            p.node_selector
                .as_ref()
                .is_some_and(|s| s.contains_key("node-role.kubernetes.io/control-plane")),
            "{whose}"
        );
        assert!(
            p.affinity
                .as_ref()
                .and_then(|a| a.pod_anti_affinity.as_ref())
                .is_some(),
            "{whose}: affinity"
        );
        assert_eq!(
            p.image_pull_secrets.as_ref().map(|s| s[0].name.clone()),
            Some("regcred".into()),
            "{whose}"
        );
        assert_eq!(
            pod_labels(d).get("example.test/team").map(String::as_str),
            Some("network"),
            "{whose}"
        );
    }
    assert_eq!(
        only_container(&w.controller).image_pull_policy.as_deref(),
        Some("Always")
    );
    assert_eq!(
        only_container(&w.webhook).image.as_deref(),
        Some("registry.example.test/vmdhcp/webhook:v9.9.8")
    );
    let env = only_container(&w.controller)
        .env
        .clone()
        .unwrap_or_default();
    assert!(
        env.iter()
            .any(|e| e.name == "CATTLE_ELECTION_LEASE_DURATION")
    );
    assert!(
        pod(&w.controller)
            .volumes
            .as_ref()
            .is_some_and(|v| v[0].name == "scratch")
    );
    let accounts: Vec<Value> = render.objects("ServiceAccount").cloned().collect();
    assert_eq!(accounts.len(), 3);
    for sa in accounts {
        assert_eq!(
            sa["metadata"]["annotations"]["example.test/owner"],
            "network-team"
        );
        assert_eq!(sa["automountServiceAccountToken"], true);
    }
}

/// By default the agents keep upstream's network set-up, lost nodes are not fenced, and
/// orphans are released after ten minutes; nothing of the optional grants is there.
#[test]
fn default_agent_flags_and_no_optional_grant() {
    let render = Render::load("default");
    let controller = flags(only_container(&render.workloads().controller));
    assert_eq!(controller["agent-network-setup"], "init-container");
    assert_eq!(controller["agent-node-grace-secs"], "0");
    assert_eq!(controller["orphan-grace-secs"], "600");
    for absent in [
        "agent-resources",
        "agent-tolerations",
        "agent-priority-class-name",
        "agent-enable-cache-dump-api",
    ] {
        assert!(!controller.contains_key(absent), "--{absent}");
    }
    assert!(
        !render
            .inventory()
            .iter()
            .any(|(_, ns, _)| ns == "kube-node-lease"),
        "no node Lease grant without fencing"
    );
}
