//! Support for the end-to-end tests that run against a real Kubernetes API server: the project's
//! own test server (`scripts/kube-test-server`, see `docs/e2e.md`) or any cluster.
//!
//! - [`cluster`] reads `VMDHCP_E2E_KUBECONFIG`; [`unavailable`] turns a missing prerequisite
//!   into a skip that says why, or, under `CI=true`, into a failure.
//! - [`with_temp_ns`] runs a test body in a fresh namespace, prints the namespace's objects when
//!   the body panics, and deletes it afterwards (unless `VMDHCP_E2E_KEEP` is set).
//! - [`eventually`] polls until a probe answers.
//! - [`TestServer`] starts a private API server from `VMDHCP_KUBE_TEST_SERVER` for tests that
//!   stop and restart it.
//! - [`ensure_stub_crd`], [`apply_vmdhcp_crds`]: the CRDs the suites need.
//! - [`service_account_kubeconfig`]: a kubeconfig that authenticates as a ServiceAccount.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use futures::FutureExt;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

/// The kubeconfig of the API server the e2e suites run against.
pub const KUBECONFIG_ENV: &str = "VMDHCP_E2E_KUBECONFIG";
/// The `kube-test-server` binary, for tests that run a server of their own.
pub const SERVER_BIN_ENV: &str = "VMDHCP_KUBE_TEST_SERVER";
/// Set to keep test namespaces (and private servers' directories) for a look afterwards.
pub const KEEP_ENV: &str = "VMDHCP_E2E_KEEP";

pub use crate::prereq::{in_ci, require_root, unavailable};

/// The API server the suites run against. Tests on the shared server hold it one at a time
/// (across test binaries and runners): they run controllers and webhooks that act on the whole
/// cluster.
#[derive(Clone)]
pub struct Cluster {
    /// Its admin kubeconfig.
    pub kubeconfig: PathBuf,
    /// A client from that kubeconfig.
    pub client: Client,
    _exclusive: Option<std::sync::Arc<nix::fcntl::Flock<std::fs::File>>>,
}

/// Waits for the exclusive lock on the shared API server (a file lock next to its kubeconfig).
async fn exclusive(kubeconfig: &Path) -> nix::fcntl::Flock<std::fs::File> {
    use nix::fcntl::{Flock, FlockArg};
    let path = kubeconfig.with_extension("e2e-lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => return lock,
        Err((file, _)) => file,
    };
    eprintln!("waiting for the shared API server (another e2e test holds it)");
    tokio::task::spawn_blocking(move || {
        Flock::lock(file, FlockArg::LockExclusive)
            .unwrap_or_else(|(_, e)| panic!("lock {}: {e}", path.display()))
    })
    .await
    .expect("lock task")
}

/// The cluster named by `VMDHCP_E2E_KUBECONFIG`, held exclusively until the value (and every
/// clone) is dropped, or `None` after [`unavailable`] said why.
///
/// # Panics
/// When the kubeconfig is set but unusable (a broken set-up is a failure, not a skip).
pub async fn cluster() -> Option<Cluster> {
    let Some(path) = std::env::var_os(KUBECONFIG_ENV) else {
        unavailable(&format!(
            "{KUBECONFIG_ENV} is not set (no API server to test against; scripts/test.sh starts one)"
        ));
        return None;
    };
    let kubeconfig = PathBuf::from(path);
    let client = client_for(&kubeconfig)
        .await
        .unwrap_or_else(|e| panic!("{KUBECONFIG_ENV}={}: {e}", kubeconfig.display()));
    let lock = exclusive(&kubeconfig).await;
    Some(Cluster {
        kubeconfig,
        client,
        _exclusive: Some(std::sync::Arc::new(lock)),
    })
}

/// A client from a kubeconfig file (its current context).
///
/// # Errors
/// The file does not read or does not describe a usable cluster.
pub async fn client_for(kubeconfig: &Path) -> Result<Client, String> {
    let file = Kubeconfig::read_from(kubeconfig).map_err(|e| format!("read kubeconfig: {e}"))?;
    let config = Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
        .await
        .map_err(|e| format!("kubeconfig: {e}"))?;
    Client::try_from(config).map_err(|e| format!("client: {e}"))
}

/// Polls `probe` every 200 ms until it returns `Some`, for at most `timeout`.
///
/// # Panics
/// When `timeout` passes first, naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A fresh namespace name: `prefix` and a random suffix.
pub fn unique_name(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{prefix}-{:06x}",
        (nanos ^ u128::from(std::process::id()) << 20) & 0xff_ffff
    )
}

/// Runs `body` in a new namespace `<prefix>-<random>`. When the body panics, the namespace's
/// objects are printed first; the namespace is deleted either way unless `VMDHCP_E2E_KEEP` is
/// set; then the panic goes on.
///
/// # Panics
/// When the namespace cannot be created, or when `body` panics.
pub async fn with_temp_ns<F, Fut>(client: &Client, prefix: &str, body: F)
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()>,
{
    let name = unique_name(prefix);
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": name}})).expect("a namespace object");
    api.create(&PostParams::default(), &ns)
        .await
        .unwrap_or_else(|e| panic!("create namespace {name}: {e}"));
    let started = std::time::Instant::now();
    let outcome = std::panic::AssertUnwindSafe(body(name.clone()))
        .catch_unwind()
        .await;
    eprintln!(
        "e2e: namespace {name}: {} after {:.1} s",
        if outcome.is_ok() { "passed" } else { "FAILED" },
        started.elapsed().as_secs_f64()
    );
    if outcome.is_err() {
        dump_namespace(client, &name).await;
    }
    if std::env::var_os(KEEP_ENV).is_none() {
        let _ = api.delete(&name, &DeleteParams::default()).await;
    } else {
        eprintln!("{KEEP_ENV}: keeping namespace {name}");
    }
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// The kinds printed for a failed test's namespace.
fn dumped_kinds() -> Vec<ApiResource> {
    let gvk = |g: &str, v: &str, k: &str, plural: &str| {
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(g, v, k), plural)
    };
    vec![
        gvk("network.harvesterhci.io", "v1alpha1", "IPPool", "ippools"),
        gvk(
            "network.harvesterhci.io",
            "v1alpha1",
            "VirtualMachineNetworkConfig",
            "virtualmachinenetworkconfigs",
        ),
        nad_resource(),
        vm_resource(),
        gvk("", "v1", "Pod", "pods"),
        gvk("", "v1", "Event", "events"),
    ]
}

/// Prints every object of the interesting kinds in `ns` to stderr (managed fields left out).
pub async fn dump_namespace(client: &Client, ns: &str) {
    eprintln!("==== objects in namespace {ns} at the failure ====");
    for ar in dumped_kinds() {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
        match api.list(&ListParams::default()).await {
            Ok(list) => {
                for mut obj in list.items {
                    obj.metadata.managed_fields = None;
                    let text = serde_json::to_string_pretty(&obj).unwrap_or_default();
                    eprintln!(
                        "---- {} {}\n{text}",
                        ar.kind,
                        obj.metadata.name.unwrap_or_default()
                    );
                }
            }
            Err(e) => eprintln!("---- {}: cannot list: {e}", ar.kind),
        }
    }
    eprintln!("==== end of namespace {ns} ====");
}

/// The NetworkAttachmentDefinition resource (Multus).
pub fn nad_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("k8s.cni.cncf.io", "v1", "NetworkAttachmentDefinition"),
        "network-attachment-definitions",
    )
}

/// The KubeVirt VirtualMachine resource.
pub fn vm_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("kubevirt.io", "v1", "VirtualMachine"),
        "virtualmachines",
    )
}

/// Installs a schemaless CRD for a kind the suites only store (Multus NADs, KubeVirt VMs) when
/// the cluster has none, and waits until it is served.
///
/// # Panics
/// When the CRD cannot be created or is not established within 30 s.
pub async fn ensure_stub_crd(client: &Client, ar: &ApiResource) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = format!("{}.{}", ar.plural, ar.group);
    if api.get_opt(&name).await.expect("read CRDs").is_none() {
        let crd: CustomResourceDefinition = serde_json::from_value(json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": name},
            "spec": {"group": ar.group, "scope": "Namespaced",
                "names": {"kind": ar.kind, "plural": ar.plural, "singular": ar.kind.to_lowercase()},
                "versions": [{"name": ar.version, "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}
        }))
        .expect("a CRD object");
        match api.create(&PostParams::default(), &crd).await {
            Ok(_) => {}
            // Another suite got there first.
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => panic!("create CRD {name}: {e}"),
        }
    }
    await_established(client, &name).await;
}

/// The NAD and VirtualMachine stub CRDs.
pub async fn ensure_kubevirt_and_multus(client: &Client) {
    ensure_stub_crd(client, &nad_resource()).await;
    ensure_stub_crd(client, &vm_resource()).await;
}

/// Applies vmdhcp's own CRDs (server-side apply, forced) and waits until they are served.
///
/// # Panics
/// When the apply fails or a CRD is not established within 30 s.
pub async fn apply_vmdhcp_crds(client: &Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in vmdhcp_api::crd::crds().expect("vmdhcp CRDs") {
        let name = crd.metadata.name.clone().expect("a named CRD");
        api.patch(
            &name,
            &PatchParams::apply("vmdhcp-e2e").force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap_or_else(|e| panic!("apply CRD {name}: {e}"));
        await_established(client, &name).await;
    }
}

async fn await_established(client: &Client, name: &str) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    tokio::time::timeout(
        Duration::from_secs(30),
        kube::runtime::wait::await_condition(
            api,
            name,
            kube::runtime::wait::conditions::is_crd_established(),
        ),
    )
    .await
    .unwrap_or_else(|_| panic!("CRD {name} not established within 30 s"))
    .unwrap_or_else(|e| panic!("watch CRD {name}: {e}"));
}

/// Writes a kubeconfig to `out` that authenticates as ServiceAccount `namespace/name` with a
/// token from the TokenRequest API (valid one hour), against the cluster of `admin`.
///
/// # Errors
/// The token request or the file write failed.
pub async fn service_account_kubeconfig(
    admin: &Cluster,
    namespace: &str,
    name: &str,
    out: &Path,
) -> Result<PathBuf, String> {
    let sas: Api<ServiceAccount> = Api::namespaced(admin.client.clone(), namespace);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            expiration_seconds: Some(3600),
            ..TokenRequestSpec::default()
        },
        ..TokenRequest::default()
    };
    let token = sas
        .create_token_request(name, &PostParams::default(), &request)
        .await
        .map_err(|e| format!("token for serviceaccount {namespace}/{name}: {e}"))?
        .status
        .ok_or_else(|| format!("no token returned for serviceaccount {namespace}/{name}"))?
        .token;
    let config = Kubeconfig::read_from(&admin.kubeconfig)
        .map_err(|e| format!("read {}: {e}", admin.kubeconfig.display()))?;
    let cluster = config
        .clusters
        .first()
        .and_then(|c| c.cluster.as_ref())
        .ok_or_else(|| format!("{} names no cluster", admin.kubeconfig.display()))?;
    let user = format!("system:serviceaccount:{namespace}:{name}");
    let config = json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "e2e", "cluster": {
            "server": cluster.server,
            "certificate-authority-data": cluster.certificate_authority_data,
        }}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": user}}],
        "current-context": "e2e",
    });
    let text = serde_json::to_string_pretty(&config).map_err(|e| e.to_string())?;
    std::fs::write(out, text).map_err(|e| format!("write {}: {e}", out.display()))?;
    Ok(out.to_path_buf())
}

/// A private `kube-test-server` (from `VMDHCP_KUBE_TEST_SERVER`) in a directory of its own, for
/// tests that stop and restart the API server. A restart keeps the data, the address and the
/// certificates. The process is killed when the value is dropped.
pub struct TestServer {
    bin: PathBuf,
    dir: PathBuf,
    child: Option<tokio::process::Child>,
    /// Its admin kubeconfig.
    pub kubeconfig: PathBuf,
    /// Its address, `https://127.0.0.1:<port>`.
    pub url: String,
}

impl TestServer {
    /// Starts a server in `dir`, or returns `None` after [`unavailable`] said why (no binary).
    ///
    /// # Panics
    /// When the binary is set but the server does not come up.
    pub async fn start(dir: &Path) -> Option<Self> {
        let Some(bin) = std::env::var_os(SERVER_BIN_ENV) else {
            unavailable(&format!(
                "{SERVER_BIN_ENV} is not set (no kube-test-server binary to run a private API server; scripts/test.sh builds one)"
            ));
            return None;
        };
        let mut server = Self {
            bin: PathBuf::from(bin),
            dir: dir.to_path_buf(),
            child: None,
            kubeconfig: PathBuf::new(),
            url: String::new(),
        };
        server.spawn().await;
        Some(server)
    }

    async fn spawn(&mut self) {
        std::fs::create_dir_all(&self.dir).expect("server directory");
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("stderr.log"))
            .expect("server stderr log");
        let mut child = tokio::process::Command::new(&self.bin)
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", self.bin.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(Duration::from_secs(180), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(rest) = line.strip_prefix("kube-test-server ready:") {
                    return Some(rest.to_owned());
                }
            }
            None
        })
        .await;
        let Ok(Some(rest)) = ready else {
            panic!(
                "kube-test-server in {} did not get ready (see its stderr.log and server.log)",
                self.dir.display()
            );
        };
        for field in rest.split_whitespace() {
            if let Some(v) = field.strip_prefix("server=") {
                v.clone_into(&mut self.url);
            } else if let Some(v) = field.strip_prefix("kubeconfig=") {
                self.kubeconfig = PathBuf::from(v);
            }
        }
        // Nothing more is read from stdout: let it drain so the server never blocks on it.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        self.child = Some(child);
    }

    /// An admin client.
    ///
    /// # Panics
    /// When the kubeconfig does not load.
    pub async fn client(&self) -> Client {
        client_for(&self.kubeconfig)
            .await
            .expect("the test server's kubeconfig")
    }

    /// The server as a [`Cluster`].
    pub async fn cluster(&self) -> Cluster {
        Cluster {
            kubeconfig: self.kubeconfig.clone(),
            client: self.client().await,
            _exclusive: None,
        }
    }

    /// Stops the server with SIGTERM (as a control plane shutdown does) and waits for it.
    ///
    /// # Panics
    /// When it does not stop within 60 s.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        tokio::time::timeout(Duration::from_secs(60), child.wait())
            .await
            .expect("kube-test-server stops within 60 s of SIGTERM")
            .expect("wait for kube-test-server");
    }

    /// Starts the stopped server again on the same directory: same data, address and
    /// certificates.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.spawn().await;
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
    }
}
