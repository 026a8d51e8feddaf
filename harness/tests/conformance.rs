//! Conformance suite for the Kubernetes authentication surface (§9 of
//! `kubernetes-auth-semantics.md`). Every case talks to a cluster through a kubeconfig:
//! `AUTHLAB_CONFORMANCE_KUBECONFIG` names a real cluster's, `AUTHLAB_CONFORMANCE_CLUSTER=kind`
//! creates a Kind cluster and `AUTHLAB_CONFORMANCE_CLUSTER=apiserver` starts a real API server; otherwise an in-process sim cluster is started and its kubeconfig
//! is used. Checks whose answer changed between Kubernetes versions judge by the server's
//! `/version`. Each case works in its own namespace.

#[path = "conformance/authn.rs"]
mod authn;
#[path = "conformance/legacy.rs"]
mod legacy;
#[path = "conformance/oidc.rs"]
mod oidc;
#[path = "conformance/sim.rs"]
mod sim;
#[path = "conformance/support.rs"]
mod support;
#[path = "conformance/tokenrequest.rs"]
mod tokenrequest;
#[path = "conformance/tokenreview.rs"]
mod tokenreview;

use std::{process::ExitCode, sync::Arc};

use anyhow::{Context, Result};
use authlab::{
    case::matrix::ClusterKind,
    lab::{Lab, LabOptions},
    sim::{SimCluster, SimConfig},
};
use libtest_mimic::{Arguments, Completion, Failed, Trial};
use support::{Done, Env, Scratch, TestFn};

/// The lab of an API server the suite started.
type LabCell = Arc<tokio::sync::OnceCell<Lab>>;

const CASES: &[(&str, TestFn)] = &[
    (
        "conformance::tokenrequest::01_defaults",
        tokenrequest::t01_defaults,
    ),
    (
        "conformance::tokenrequest::02_claims",
        tokenrequest::t02_claims,
    ),
    (
        "conformance::tokenrequest::03_min_expiration",
        tokenrequest::t03_min_expiration,
    ),
    (
        "conformance::tokenrequest::04_audiences",
        tokenrequest::t04_audiences,
    ),
    (
        "conformance::tokenrequest::05_missing_sa",
        tokenrequest::t05_missing_sa,
    ),
    (
        "conformance::tokenrequest::06_pod_other_sa",
        tokenrequest::t06_pod_other_sa,
    ),
    (
        "conformance::tokenrequest::07_pod_bound_claims",
        tokenrequest::t07_pod_bound_claims,
    ),
    (
        "conformance::tokenrequest::08_warn_only_extension",
        tokenrequest::t08_warn_only_extension,
    ),
    (
        "conformance::tokenrequest::09_forbidden",
        tokenrequest::t09_forbidden,
    ),
    (
        "conformance::authn::10_expired_token_401",
        authn::t10_expired_token_401,
    ),
    (
        "conformance::authn::11_vault_audience_401",
        authn::t11_vault_audience_401,
    ),
    (
        "conformance::authn::12_anonymous_forbidden",
        authn::t12_anonymous_forbidden,
    ),
    (
        "conformance::authn::13_version_anonymous_and_garbage",
        authn::t13_version_anonymous_and_garbage,
    ),
    (
        "conformance::authn::14_plain_http_on_the_tls_port",
        authn::t14_plain_http_on_the_tls_port,
    ),
    (
        "conformance::authn::14b_serving_pki_as_kubeadm_makes_it",
        authn::t14b_serving_pki_as_kubeadm_makes_it,
    ),
    (
        "conformance::tokenreview::14_valid_unbound",
        tokenreview::t14_valid_unbound,
    ),
    (
        "conformance::tokenreview::15_pod_bound_extra",
        tokenreview::t15_pod_bound_extra,
    ),
    (
        "conformance::tokenreview::16_vault_audience",
        tokenreview::t16_vault_audience,
    ),
    (
        "conformance::tokenreview::17_audience_intersection",
        tokenreview::t17_audience_intersection,
    ),
    (
        "conformance::tokenreview::18_audience_mismatch_default",
        tokenreview::t18_audience_mismatch_default,
    ),
    (
        "conformance::tokenreview::19_requested_vault",
        tokenreview::t19_requested_vault,
    ),
    (
        "conformance::tokenreview::20_expired",
        tokenreview::t20_expired,
    ),
    (
        "conformance::tokenreview::21_pod_deleted",
        tokenreview::t21_pod_deleted,
    ),
    (
        "conformance::tokenreview::21b_pod_terminating",
        tokenreview::t21b_pod_terminating,
    ),
    (
        "conformance::tokenreview::22_sa_recreated",
        tokenreview::t22_sa_recreated,
    ),
    (
        "conformance::tokenreview::23_sa_deleted",
        tokenreview::t23_sa_deleted,
    ),
    (
        "conformance::tokenreview::24_foreign_key",
        tokenreview::t24_foreign_key,
    ),
    (
        "conformance::tokenreview::25_flipped_signature",
        tokenreview::t25_flipped_signature,
    ),
    (
        "conformance::tokenreview::26_garbage",
        tokenreview::t26_garbage,
    ),
    (
        "conformance::tokenreview::27_empty_token",
        tokenreview::t27_empty_token,
    ),
    (
        "conformance::tokenreview::28_reviewer_forbidden",
        tokenreview::t28_reviewer_forbidden,
    ),
    (
        "conformance::tokenreview::29_invalid_reviewer_401",
        tokenreview::t29_invalid_reviewer_401,
    ),
    (
        "conformance::tokenreview::30_reviewer_vault_audience_401",
        tokenreview::t30_reviewer_vault_audience_401,
    ),
    (
        "conformance::tokenreview::31_anonymous_review_403",
        tokenreview::t31_anonymous_review_403,
    ),
    (
        "conformance::legacy::32_missing_annotation",
        legacy::t32_missing_annotation,
    ),
    (
        "conformance::legacy::33_controller_fills",
        legacy::t33_controller_fills,
    ),
    (
        "conformance::legacy::34_missing_sa_deletes_secret",
        legacy::t34_missing_sa_deletes_secret,
    ),
    (
        "conformance::legacy::35_review_legacy",
        legacy::t35_review_legacy,
    ),
    (
        "conformance::legacy::36_legacy_vault_audience",
        legacy::t36_legacy_vault_audience,
    ),
    (
        "conformance::legacy::37_secret_deleted",
        legacy::t37_secret_deleted,
    ),
    (
        "conformance::legacy::38_sa_creates_no_secret",
        legacy::t38_sa_creates_no_secret,
    ),
    ("conformance::oidc::39_discovery", oidc::t39_discovery),
    ("conformance::oidc::40_jwks", oidc::t40_jwks),
    (
        "conformance::oidc::41_anonymous_forbidden",
        oidc::t41_anonymous_forbidden,
    ),
    (
        "conformance::oidc::42_unauthenticated_binding",
        oidc::t42_unauthenticated_binding,
    ),
    (
        "conformance::oidc::43_bootstrap_policy",
        oidc::t43_bootstrap_policy,
    ),
    (
        "conformance::oidc::44_content_negotiation",
        oidc::t44_content_negotiation,
    ),
    ("conformance::sim::request_log", sim::request_log),
    ("conformance::sim::connection_modes", sim::connection_modes),
    ("conformance::sim::token_settings", sim::token_settings),
    (
        "conformance::sim::objects_and_clients",
        sim::objects_and_clients,
    ),
    (
        "conformance::sim::legacy_sa_deletion",
        sim::legacy_sa_deletion,
    ),
];

/// Connects to the cluster under test (started lazily, once): `AUTHLAB_CONFORMANCE_KUBECONFIG`
/// (with `AUTHLAB_CONFORMANCE_SIGNING_KEY`, a PEM file of its service-account key, PKCS#8 or
/// PKCS#1 as kubeadm writes it, when known), `AUTHLAB_CONFORMANCE_CLUSTER=kind` (a Kind
/// cluster authlab creates and deletes, its key read from the node, kind and the node image as
/// for `--cluster kind`), `AUTHLAB_CONFORMANCE_CLUSTER=apiserver` (a real API server authlab
/// starts, binaries as for `--cluster apiserver`), else an in-process sim.
async fn connect(scratch_dir: &std::path::Path, lab: &LabCell) -> Result<Env> {
    if let Ok(path) = std::env::var("AUTHLAB_CONFORMANCE_KUBECONFIG") {
        let mut env = Env::from_kubeconfig(std::path::Path::new(&path), None).await?;
        env.users = true;
        if let Ok(key) = std::env::var("AUTHLAB_CONFORMANCE_SIGNING_KEY") {
            env.signing_key = Some(
                std::fs::read_to_string(&key)
                    .with_context(|| format!("reading AUTHLAB_CONFORMANCE_SIGNING_KEY={key}"))?,
            );
        }
        return Ok(env);
    }
    if std::env::var("AUTHLAB_CONFORMANCE_CLUSTER").as_deref() == Ok("kind") {
        let made =
            Lab::new(LabOptions::new(ClusterKind::Kind, settings())).context("creating the lab")?;
        let made = lab.get_or_init(|| async { made }).await;
        let ext = made
            .clusters()
            .external(ClusterKind::Kind, &Default::default())
            .await
            .context("creating the Kind cluster")?;
        return env_of(ext.owned.context("the Kind cluster is authlab's")?).await;
    }
    if std::env::var("AUTHLAB_CONFORMANCE_CLUSTER").as_deref() == Ok("apiserver") {
        let opts = LabOptions::new(ClusterKind::Apiserver, settings());
        let made = Lab::new(opts).context("creating the lab")?;
        let made = lab.get_or_init(|| async { made }).await;
        let settings = Default::default();
        // The suite is the lab's only user: the server stays up after its turn is given back.
        let turn = made
            .clusters()
            .apiserver_turn(&settings, "127.0.0.1")
            .await?;
        let ext = made
            .clusters()
            .apiserver(&turn, &settings, "127.0.0.1")
            .await
            .context("starting the API server")?;
        return env_of(ext.owned.context("the API server is authlab's")?).await;
    }
    let sim = SimCluster::start(SimConfig::default())
        .await
        .context("starting the sim cluster")?;
    let path = scratch_dir.join("kubeconfig");
    std::fs::write(&path, sim.kubeconfig_yaml(None)).context("writing the sim kubeconfig")?;
    Env::from_kubeconfig(&path, Some(sim)).await
}

/// The suite's view of a cluster authlab made: its kubeconfig, and its signing key.
async fn env_of(owned: authlab::cluster::external::Owned) -> Result<Env> {
    let mut env = Env::from_kubeconfig(&owned.kubeconfig, None).await?;
    env.signing_key = Some(owned.signing_key_pem);
    Ok(env)
}

fn run_case(rt: &tokio::runtime::Handle, env: &Env, f: TestFn) -> Result<Completion, Failed> {
    rt.block_on(async {
        let scratch = Scratch::new_in(env)
            .await
            .map_err(|e| Failed::from(format!("{e:?}")))?;
        let result = f(env, &scratch).await;
        scratch.cleanup(env).await;
        match result {
            Ok(Done::Passed) => Ok(Completion::Completed),
            Ok(Done::Ignored(why)) => Ok(Completion::ignored_with(why)),
            Err(e) => Err(Failed::from(format!("{e:?}"))),
        }
    })
}

fn main() -> ExitCode {
    let args = Arguments::from_args();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot build the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let handle = runtime.handle().clone();
    let scratch_dir = match tempfile::Builder::new()
        .prefix("authlab-conformance-")
        .tempdir()
    {
        Ok(d) => d,
        Err(e) => {
            eprintln!("cannot create a scratch directory: {e}");
            return ExitCode::FAILURE;
        }
    };
    let dir = scratch_dir.path().to_path_buf();
    let env: Arc<tokio::sync::OnceCell<Result<Env, String>>> =
        Arc::new(tokio::sync::OnceCell::new());
    let lab: LabCell = Arc::new(tokio::sync::OnceCell::new());
    let trials: Vec<Trial> = CASES
        .iter()
        .map(|(name, f)| {
            let (env, handle, dir, f) = (Arc::clone(&env), handle.clone(), dir.clone(), *f);
            let lab = Arc::clone(&lab);
            Trial::ignorable_test(*name, move || {
                let env = handle.block_on(env.get_or_init(|| async {
                    connect(&dir, &lab).await.map_err(|e| format!("{e:?}"))
                }));
                match env {
                    Ok(env) => run_case(&handle, env, f),
                    Err(e) => Err(Failed::from(format!("cluster unavailable: {e}"))),
                }
            })
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    if let Some(Ok(env)) = Arc::try_unwrap(env).ok().and_then(|cell| cell.into_inner())
        && let Some(sim) = env.sim
    {
        runtime.block_on(sim.shutdown());
    }
    if let Some(lab) = lab.get() {
        runtime.block_on(lab.shutdown());
    }
    conclusion.exit_code()
}

/// The settings of this test process, read from the environment once.
fn settings() -> &'static authlab::settings::Settings {
    static S: std::sync::OnceLock<authlab::settings::Settings> = std::sync::OnceLock::new();
    S.get_or_init(authlab::settings::Settings::from_env)
}
