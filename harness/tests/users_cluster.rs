//! A cluster authlab did not make (`--cluster kubeconfig`), standing in for a user's: a sim
//! served on its own, seeded with objects of "its owners" — among them the names the setup
//! guides use. Real `authlab run`s against it must leave every one of them byte-identical
//! (resourceVersion included) and nothing of their own: after a whole run, after SIGINT,
//! SIGTERM and SIGKILL at random moments, and with two runs at once. Cases whose objects
//! collide with the owners' are not applicable there, saying which object.
//!
//! `AUTHLAB_FAULT_REPEAT=N` signals each run N times per signal (default 8 under `CI`, else 2;
//! the nightly sends 40).
//! `AUTHLAB_USERS_KUBECONFIG=<path>` runs the same tests against a real cluster instead (a
//! kube-apiserver with its controllers): it is seeded the same way, and what its own
//! components renew all the time (their Leases in `kube-system` and `kube-node-lease`) is
//! left out of the comparison.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use authlab::sim::SimCluster;
use serde_json::{Value, json};

/// The collections an inventory reads: everything the sim stores.
const COLLECTIONS: &[&str] = &[
    "/api/v1/namespaces",
    "/api/v1/serviceaccounts",
    "/api/v1/secrets",
    "/api/v1/pods",
    "/api/v1/configmaps",
    "/api/v1/nodes",
    "/api/v1/services",
    "/apis/apps/v1/statefulsets",
    "/apis/rbac.authorization.k8s.io/v1/clusterroles",
    "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
    "/apis/rbac.authorization.k8s.io/v1/roles",
    "/apis/rbac.authorization.k8s.io/v1/rolebindings",
    "/apis/coordination.k8s.io/v1/leases",
];

/// The user's cluster: a sim on its own runtime, its kubeconfig, and its owners' objects.
struct UsersCluster {
    rt: tokio::runtime::Runtime,
    sim: Option<SimCluster>,
    client: kube::Client,
    dir: tempfile::TempDir,
    /// A real cluster's kubeconfig (None: the sim's, in `dir`).
    real: Option<PathBuf>,
    /// One test at a time on a real cluster (each sim is a test's own).
    _turn: Option<std::sync::MutexGuard<'static, ()>>,
}

static REAL_CLUSTER: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl UsersCluster {
    fn start() -> UsersCluster {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let real = std::env::var_os("AUTHLAB_USERS_KUBECONFIG").map(PathBuf::from);
        let turn = real
            .is_some()
            .then(|| REAL_CLUSTER.lock().unwrap_or_else(|p| p.into_inner()));
        let (sim, client) = match &real {
            Some(path) => {
                let client = rt
                    .block_on(authlab::cluster::kubeconfig::client(path, None))
                    .unwrap()
                    .0;
                (None, client)
            }
            None => {
                let sim = rt.block_on(SimCluster::start(Default::default())).unwrap();
                let client = {
                    let _g = rt.enter();
                    sim.kube_client().unwrap()
                };
                std::fs::write(dir.path().join("kubeconfig"), sim.kubeconfig_yaml(None)).unwrap();
                (Some(sim), client)
            }
        };
        let c = UsersCluster {
            rt,
            sim,
            client,
            dir,
            real,
            _turn: turn,
        };
        c.seed();
        if c.real.is_some() {
            // A real cluster's controllers finish with new objects (a namespace's default
            // account and its token) a moment later: start from a settled inventory.
            let mut last = c.inventory();
            loop {
                std::thread::sleep(Duration::from_secs(2));
                let now = c.inventory();
                if now == last {
                    break;
                }
                last = now;
            }
        }
        c
    }

    fn kubeconfig(&self) -> PathBuf {
        self.real
            .clone()
            .unwrap_or_else(|| self.dir.path().join("kubeconfig"))
    }

    /// Creates an object (one a previous test made on a real cluster stays as it is).
    fn post(&self, path: &str, body: Value) {
        let req = http::Request::post(path)
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&body).unwrap())
            .unwrap();
        match self.rt.block_on(self.client.request_text(req)) {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 && self.real.is_some() => {}
            Err(e) => panic!("seeding {path}: {e}"),
        }
    }

    /// What its owners made: a namespace authlab's cases use, the setup guide's reviewer
    /// account, its token Secret and its binding, and an application's ConfigMap.
    fn seed(&self) {
        self.post(
            "/api/v1/namespaces",
            json!({"apiVersion": "v1", "kind": "Namespace",
                   "metadata": {"name": "vault", "labels": {"team": "platform"}}}),
        );
        self.post(
            "/api/v1/namespaces/default/serviceaccounts",
            json!({"apiVersion": "v1", "kind": "ServiceAccount",
                   "metadata": {"name": "vault-auth", "namespace": "default"}}),
        );
        self.post(
            "/api/v1/namespaces/default/secrets",
            json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                   "metadata": {"name": "vault-auth-token", "namespace": "default"},
                   "stringData": {"token": "the user's own"}}),
        );
        self.post(
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                   "metadata": {"name": "role-tokenreview-binding"},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                               "name": "system:auth-delegator"},
                   "subjects": [{"kind": "ServiceAccount", "name": "vault-auth", "namespace": "default"}]}),
        );
        self.post(
            "/api/v1/namespaces/default/configmaps",
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "app-config", "namespace": "default"},
                   "data": {"owner": "the application"}}),
        );
    }

    /// Every object the cluster holds, whole, by `collection namespace/name`.
    fn inventory(&self) -> BTreeMap<String, Value> {
        let mut out = BTreeMap::new();
        for c in COLLECTIONS {
            let req = http::Request::get(*c).body(Vec::new()).unwrap();
            let text = self.rt.block_on(self.client.request_text(req)).unwrap();
            let list: Value = serde_json::from_str(&text).unwrap();
            for item in list["items"].as_array().cloned().unwrap_or_default() {
                let m = &item["metadata"];
                let ns = m["namespace"].as_str().unwrap_or("");
                if self.real.is_some()
                    && c.ends_with("/leases")
                    && matches!(ns, "kube-system" | "kube-node-lease")
                {
                    // Renewed by the cluster's own components every few seconds.
                    continue;
                }
                let key = format!("{c} {ns}/{}", m["name"].as_str().unwrap_or(""));
                out.insert(key, item);
            }
        }
        out
    }
}

impl Drop for UsersCluster {
    fn drop(&mut self) {
        if let Some(sim) = self.sim.take() {
            self.rt.block_on(sim.shutdown());
        }
    }
}

/// How `after` differs from `before`: objects gone, added, or changed in any byte.
fn differences(before: &BTreeMap<String, Value>, after: &BTreeMap<String, Value>) -> Vec<String> {
    let mut out = Vec::new();
    for (k, v) in before {
        match after.get(k) {
            None => out.push(format!("deleted: {k}")),
            Some(a) if a != v => out.push(format!("changed: {k}\n  before {v}\n  after  {a}")),
            Some(_) => {}
        }
    }
    for (k, v) in after {
        if !before.contains_key(k) {
            out.push(format!("left behind: {k} {}", v["metadata"]["labels"]));
        }
    }
    out
}

fn authlab(cluster: &UsersCluster, cases: Option<&Path>, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_authlab"));
    cmd.args([
        "run",
        "--cluster",
        "kubeconfig",
        "--servers",
        "openbao:2.7.2",
    ])
    .args(["--topology", "outside"])
    .args(args)
    .env("AUTHLAB_KUBECONFIG", cluster.kubeconfig())
    .env_remove("AUTHLAB_KUBE_CONTEXT")
    .env_remove("AUTHLAB_DELETE_FOREIGN")
    // Under CI=true a trial this cluster kind cannot make (a `${cluster.unnamed_url}`) would
    // count as a requirement the machine lacks.
    .env_remove("CI")
    .env("AUTHLAB_ARTIFACTS", cluster.dir.path().join("artifacts"));
    if let Some(c) = cases {
        cmd.env("AUTHLAB_CASES", c);
    }
    cmd
}

fn own_cases() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/users-cluster-cases")
}

/// Waits (bounded) until the cluster holds what it held before, returning what still differs.
fn settled(
    cluster: &UsersCluster,
    before: &BTreeMap<String, Value>,
    bound: Duration,
) -> Vec<String> {
    let start = Instant::now();
    loop {
        let left = differences(before, &cluster.inventory());
        if left.is_empty() || start.elapsed() >= bound {
            return left;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The whole outside catalog, and cases written to collide with the owners' objects: every
/// pre-existing object is byte-identical afterwards, nothing of the run is left, and each
/// collision is reported as not applicable, naming the object.
#[test]
fn runs_leave_a_users_cluster_as_they_found_it() {
    let cluster = UsersCluster::start();
    let before = cluster.inventory();
    let out = authlab(&cluster, None, &[]).output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the catalog run failed:\n{text}");
    assert!(
        text.contains("cluster: context ") && text.contains("API server https://"),
        "the run names the cluster before touching it:\n{text}"
    );
    assert!(
        text.contains("not applicable here: ServiceAccount default/vault-auth exists already and authlab did not make it"),
        "the setup guide's case collides with the user's reviewer account:\n{text}"
    );
    let left = differences(&before, &cluster.inventory());
    assert!(
        left.is_empty(),
        "the catalog run changed the cluster:\n{}",
        left.join("\n")
    );

    let out = authlab(&cluster, Some(&own_cases()), &[]).output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    for (case, object) in [
        (
            "overwrites_a_config_map",
            "ConfigMap default/app-config exists already",
        ),
        (
            "rebinds_the_guides_reviewer",
            "ClusterRoleBinding role-tokenreview-binding exists already",
        ),
        (
            "deletes_a_users_secret",
            "Secret default/vault-auth-token exists already",
        ),
        (
            "deletes_foreign_without_consent",
            "the user has not: AUTHLAB_DELETE_FOREIGN=1",
        ),
        (
            "reuses_a_users_token_secret",
            "Secret default/vault-auth-token exists already",
        ),
    ] {
        let line = text
            .lines()
            .skip_while(|l| !(l.contains(case) && l.contains("ignored")))
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            line.contains("not applicable here") && line.contains(object),
            "{case}: expected not applicable for {object:?}, got {line:?}\n{text}"
        );
    }
    assert!(
        text.lines()
            .any(|l| l.contains("works_in_its_own_namespace") && l.contains(" ok ")),
        "a case with objects of its own runs:\n{text}"
    );
    let left = differences(&before, &cluster.inventory());
    assert!(
        left.is_empty(),
        "the hostile cases changed the cluster:\n{}",
        left.join("\n")
    );
}

/// How many times each signal is sent: `AUTHLAB_FAULT_REPEAT`, else 8 under `CI`, else 2.
fn repeat() -> usize {
    std::env::var("AUTHLAB_FAULT_REPEAT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if std::env::var_os("CI").is_some() {
            8
        } else {
            2
        })
}

/// Starts a run in its own process group, with its stderr lines sent to the receiver.
fn spawn(cmd: &mut Command) -> (Child, mpsc::Receiver<String>) {
    let mut child = std::os::unix::process::CommandExt::process_group(cmd, 0)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// A pseudo-random delay below `max_ms` (the moment a signal arrives).
fn jitter(max_ms: u64) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    Duration::from_millis(nanos % max_ms)
}

/// SIGINT and SIGTERM (to the group, as a terminal sends them) and SIGKILL (to the process:
/// its watchdog then cleans up) at a random moment while trials apply objects: the cluster
/// holds what it held before within 30 s.
#[test]
fn interrupted_runs_leave_a_users_cluster_as_they_found_it() {
    let cluster = UsersCluster::start();
    let before = cluster.inventory();
    for _ in 0..repeat() {
        for (sig, group) in [("-INT", true), ("-TERM", true), ("-KILL", false)] {
            let (mut child, rx) = spawn(&mut authlab(&cluster, None, &["kubernetes::"]));
            let pid = child.id();
            let start = Instant::now();
            let mut lines = Vec::new();
            while start.elapsed() < Duration::from_secs(60) {
                let Ok(l) = rx.recv_timeout(Duration::from_millis(500)) else {
                    continue;
                };
                let first_trial = l.starts_with('[');
                lines.push(l);
                if first_trial {
                    break;
                }
            }
            assert!(
                lines.iter().any(|l| l.starts_with('[')),
                "no trial finished within 60 s: {lines:#?}"
            );
            let delay = jitter(3000);
            std::thread::sleep(delay);
            let target = if group {
                format!("-{pid}")
            } else {
                pid.to_string()
            };
            assert!(
                Command::new("kill")
                    .args([sig, "--", &target])
                    .status()
                    .unwrap()
                    .success()
            );
            let deadline = Instant::now() + Duration::from_secs(60);
            while child.try_wait().unwrap().is_none() {
                assert!(
                    Instant::now() < deadline,
                    "the run did not exit within 60 s of {sig}"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            let left = settled(&cluster, &before, Duration::from_secs(30));
            assert!(
                left.is_empty(),
                "{sig} {} ms after the first trial left the cluster changed:\n{}",
                delay.as_millis(),
                left.join("\n")
            );
        }
    }
}

/// Two runs at once on one cluster take turns through its Lease: both pass, the second says
/// whom it waits for, and the cluster is as it was afterwards.
#[test]
fn two_runs_on_one_cluster_take_turns() {
    let cluster = UsersCluster::start();
    let before = cluster.inventory();
    let filter = "kubernetes::client_token::";
    let (mut first, first_rx) = spawn(&mut authlab(&cluster, None, &[filter]));
    // The second starts once the first holds the cluster.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        match first_rx.recv_timeout(Duration::from_millis(500)) {
            Ok(l) if l.starts_with('[') => break,
            _ => {}
        }
    }
    let (mut second, second_rx) = spawn(&mut authlab(&cluster, None, &[filter]));
    let a = first.wait().unwrap();
    let b = second.wait().unwrap();
    let said: Vec<String> = second_rx.try_iter().collect();
    assert!(a.success(), "the first run failed");
    assert!(b.success(), "the second run failed: {said:#?}");
    assert!(
        said.iter()
            .any(|l| l.contains("waiting for the cluster: authlab run r")),
        "the second run says whom it waits for: {said:#?}"
    );
    let left = differences(&before, &cluster.inventory());
    assert!(left.is_empty(), "{}", left.join("\n"));
}

/// The processes labelled with run `run` (the run, its servers and its watchdog).
fn processes_of(run: &str) -> Vec<u32> {
    let needle = format!("AUTHLAB_RUN_ID={run}");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|v| v == needle.as_bytes()))
        })
        .collect()
}

/// A run killed together with its watchdog leaves its objects; `authlab clean`, given the
/// cluster, removes them (and nothing else), while a live run's are kept.
#[test]
fn clean_removes_what_a_run_killed_with_its_watchdog_left() {
    let cluster = UsersCluster::start();
    let before = cluster.inventory();
    let (mut child, rx) = spawn(&mut authlab(&cluster, None, &["kubernetes::"]));
    let start = Instant::now();
    let mut run = None;
    while start.elapsed() < Duration::from_secs(60) {
        let Ok(l) = rx.recv_timeout(Duration::from_millis(500)) else {
            continue;
        };
        if run.is_none() {
            run = l
                .strip_prefix("authlab: run ")
                .and_then(|r| r.split_whitespace().next())
                .map(str::to_string);
        }
        if l.starts_with('[') {
            break;
        }
    }
    let run = run.expect("the run says its id");
    std::thread::sleep(jitter(1000));
    for pid in processes_of(&run).into_iter().chain([child.id()]) {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
    let _ = child.wait();
    let left = differences(&before, &cluster.inventory());
    assert!(
        left.iter().any(|l| l.starts_with("left behind")),
        "the killed run left nothing to clean: {left:?}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_authlab"))
        .arg("clean")
        .env("AUTHLAB_KUBECONFIG", cluster.kubeconfig())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!("(run {run})")),
        "clean names what it removes: {text}"
    );
    let left = settled(&cluster, &before, Duration::from_secs(30));
    assert!(left.is_empty(), "after clean:\n{}", left.join("\n"));
}
