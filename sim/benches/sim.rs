//! Sim cluster benchmark: start-up time, TokenReview and TokenRequest latency.
//! Run with `cargo bench -p authlab-sim --bench sim`.

use std::{
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use authlab_sim::{SimCluster, SimConfig};
use serde_json::{Value, json};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:8.3} ms", d.as_secs_f64() * 1000.0)
}

async fn starts(
    n: usize,
    key: Option<String>,
    tls_keys: Option<authlab_sim::TlsKeys>,
) -> Result<Vec<Duration>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let sim = SimCluster::start(SimConfig {
            signing_key_pkcs8_pem: key.clone(),
            tls_keys: tls_keys.clone(),
            ..Default::default()
        })
        .await?;
        out.push(t.elapsed());
        sim.shutdown().await;
    }
    out.sort();
    Ok(out)
}

async fn post(c: &reqwest::Client, url: &str, bearer: &str, body: &Value) -> Result<Value> {
    let r = c.post(url).bearer_auth(bearer).json(body).send().await?;
    anyhow::ensure!(r.status().is_success(), "{url}: HTTP {}", r.status());
    Ok(r.json().await?)
}

async fn run() -> Result<()> {
    let generated = starts(10, None, None)
        .await
        .context("starts with key generation")?;
    let seed = SimCluster::start(SimConfig::default()).await?;
    let key = seed.signing_key_pkcs8_pem();
    seed.shutdown().await;
    // As a lab starts each trial's sim: the signing key and the CA and serving keys supplied.
    let tls = authlab_sim::generate_tls_keys()?;
    let reused = starts(20, Some(key.clone()), Some(tls))
        .await
        .context("starts with supplied keys")?;

    let sim = SimCluster::start(SimConfig {
        signing_key_pkcs8_pem: Some(key),
        ..Default::default()
    })
    .await?;
    let c = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(sim.ca_pem().as_bytes())?])
        .build()?;
    let (base, admin) = (sim.url(), sim.admin_token());
    post(
        &c,
        &format!("{base}/api/v1/namespaces/default/serviceaccounts"),
        &admin,
        &json!({"metadata": {"name": "web"}}),
    )
    .await?;
    let token_url = format!("{base}/api/v1/namespaces/default/serviceaccounts/web/token");
    let mut minted = Vec::new();
    let mut token = String::new();
    for _ in 0..200 {
        let t = Instant::now();
        let r = post(&c, &token_url, &admin, &json!({"spec": {}})).await?;
        minted.push(t.elapsed());
        token = r["status"]["token"].as_str().context("token")?.to_string();
    }
    minted.sort();
    let review_url = format!("{base}/apis/authentication.k8s.io/v1/tokenreviews");
    let body = json!({"metadata": {}, "spec": {"token": token, "audiences": [sim.issuer()]}, "status": {"user": {}}});
    for _ in 0..50 {
        post(&c, &review_url, &admin, &body).await?;
    }
    let mut reviews = Vec::new();
    for _ in 0..1000 {
        let t = Instant::now();
        let r = post(&c, &review_url, &admin, &body).await?;
        reviews.push(t.elapsed());
        anyhow::ensure!(
            r["status"]["authenticated"] == json!(true),
            "review failed: {r}"
        );
    }
    reviews.sort();
    sim.shutdown().await;

    println!("sim cluster benchmark");
    println!("{:<44} {:>11} {:>11}", "measure", "p50", "p99/max");
    println!(
        "{:<44} {} {}",
        "start-up, RSA-2048 keys generated (n=10)",
        ms(percentile(&generated, 0.5)),
        ms(percentile(&generated, 1.0))
    );
    println!(
        "{:<44} {} {}",
        "start-up, keys supplied (n=20)",
        ms(percentile(&reused, 0.5)),
        ms(percentile(&reused, 1.0))
    );
    println!(
        "{:<44} {} {}",
        "TokenRequest, keep-alive (n=200)",
        ms(percentile(&minted, 0.5)),
        ms(percentile(&minted, 0.99))
    );
    println!(
        "{:<44} {} {}",
        "TokenReview, keep-alive (n=1000)",
        ms(percentile(&reviews, 0.5)),
        ms(percentile(&reviews, 0.99))
    );
    Ok(())
}

fn main() -> ExitCode {
    // `cargo bench` passes `--bench`; there are no options to parse.
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
    match runtime.block_on(run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("benchmark failed: {e:?}");
            ExitCode::FAILURE
        }
    }
}
