//! Behaviour of the in-process sim beyond the §9 checklist: request log, connection faults,
//! settings (token cap, anonymous off), object CRUD, kubeconfig and pretty printing. These
//! start their own sim clusters and are skipped against a real cluster.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use authlab::sim::{ClosedPort, HangListener, SimCluster, SimConfig, SimMode};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::support::*;

fn client(sim: &SimCluster, timeout: Duration) -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(sim.ca_pem().as_bytes())?])
        .user_agent("authlab-conformance")
        .timeout(timeout)
        .pool_max_idle_per_host(0)
        .build()?)
}

async fn post(
    c: &reqwest::Client,
    url: String,
    bearer: &str,
    body: Value,
) -> Result<(u16, Vec<(String, String)>, Value)> {
    let r = c.post(url).bearer_auth(bearer).json(&body).send().await?;
    let r = Resp::read(r).await?;
    let body = r.json();
    Ok((r.status, r.headers, body))
}

/// Starts a private sim unless a real cluster is under test.
async fn own_sim(env: &Env, cfg: SimConfig) -> Result<Option<SimCluster>> {
    if env.sim.is_none() {
        return Ok(None);
    }
    Ok(Some(SimCluster::start(cfg).await?))
}

const REAL: &str = "sim-only behaviour";

pub fn request_log<'a>(env: &'a Env, _s: &'a Scratch) -> Fut<'a> {
    Box::pin(async move {
        let Some(sim) = own_sim(env, SimConfig::default()).await? else {
            return Ok(Done::Ignored(REAL.into()));
        };
        let c = client(&sim, Duration::from_secs(10))?;
        let admin = sim.admin_token();
        let base = sim.url();
        post(
            &c,
            format!("{base}/api/v1/namespaces"),
            &admin,
            json!({"metadata": {"name": "app"}}),
        )
        .await?;
        post(
            &c,
            format!("{base}/api/v1/namespaces/app/serviceaccounts"),
            &admin,
            json!({"metadata": {"name": "web"}}),
        )
        .await?;
        let (_, _, tr) = post(
            &c,
            format!("{base}/api/v1/namespaces/app/serviceaccounts/web/token"),
            &admin,
            json!({"spec": {"audiences": ["vault"]}}),
        )
        .await?;
        let token = tr["status"]["token"].as_str().context("token")?.to_string();
        post(
            &c,
            format!("{base}/apis/authentication.k8s.io/v1/tokenreviews"),
            &admin,
            json!({"spec": {"token": token}}),
        )
        .await?;
        let r = c
            .get(format!("{base}/api/v1/namespaces/app/pods?limit=1"))
            .bearer_auth(&token)
            .send()
            .await?;
        same(r.status().as_u16(), 401, "vault-audience bearer")?;
        let log = sim.request_log();
        same(log.len(), 5, "records")?;
        same(
            log.iter().map(|r| r.seq).collect::<Vec<_>>(),
            vec![1, 2, 3, 4, 5],
            "seq",
        )?;
        same(log[0].user.as_deref(), Some("authlab:admin"), "user")?;
        same(log[2].status, 201, "TokenRequest status")?;
        let review = log[3].review.clone().context("review record")?;
        same(
            review.token_subject.as_deref(),
            Some("system:serviceaccount:app:web"),
            "token_subject",
        )?;
        same(
            review.audiences,
            Vec::<String>::new(),
            "requested audiences",
        )?;
        same(review.authenticated, false, "authenticated")?;
        ensure!(
            log[3]
                .error
                .as_deref()
                .is_some_and(|e| e.contains("token audiences [\"vault\"]")),
            "review error: {:?}",
            log[3].error
        );
        same(
            log[4].path.as_str(),
            "/api/v1/namespaces/app/pods?limit=1",
            "path with query",
        )?;
        same(log[4].user.clone(), None, "user of a 401")?;
        same(log[4].status, 401, "status")?;
        ensure!(
            log[4]
                .error
                .as_deref()
                .is_some_and(|e| e.starts_with("[invalid bearer token, token audiences")),
            "401 detail: {:?}",
            log[4].error
        );
        sim.shutdown().await;
        Ok(Done::Passed)
    })
}

pub fn connection_modes<'a>(env: &'a Env, _s: &'a Scratch) -> Fut<'a> {
    Box::pin(async move {
        let Some(sim) = own_sim(env, SimConfig::default()).await? else {
            return Ok(Done::Ignored(REAL.into()));
        };
        let c = client(&sim, Duration::from_millis(800))?;
        let version = format!("{}/version", sim.url());
        same(
            c.get(&version).send().await?.status().as_u16(),
            200,
            "normal",
        )?;
        sim.set_mode(SimMode::Refuse);
        let t = Instant::now();
        ensure!(
            c.get(&version).send().await.is_err(),
            "refused connection answered"
        );
        ensure!(
            t.elapsed() < Duration::from_millis(700),
            "refuse was not immediate: {:?}",
            t.elapsed()
        );
        sim.set_mode(SimMode::Hang);
        let t = Instant::now();
        let e = c
            .get(&version)
            .send()
            .await
            .err()
            .context("hanging connection answered")?;
        ensure!(
            e.is_timeout() || t.elapsed() >= Duration::from_millis(700),
            "hang ended early: {e:?}"
        );
        sim.set_mode(SimMode::Normal);
        same(
            c.get(&version).send().await?.status().as_u16(),
            200,
            "normal again",
        )?;
        sim.shutdown().await;

        let hang = HangListener::bind().await?;
        let t = Instant::now();
        ensure!(
            c.get(format!("{}/version", hang.url()))
                .send()
                .await
                .is_err(),
            "hang listener answered"
        );
        ensure!(
            t.elapsed() >= Duration::from_millis(700),
            "hang listener failed fast"
        );
        drop(hang);
        let closed = ClosedPort::on("127.0.0.1")?;
        let t = Instant::now();
        ensure!(
            c.get(format!("{}/version", closed.url()))
                .send()
                .await
                .is_err(),
            "unused port answered"
        );
        ensure!(
            t.elapsed() < Duration::from_millis(700),
            "unused port was slow"
        );
        Ok(Done::Passed)
    })
}

pub fn token_settings<'a>(env: &'a Env, _s: &'a Scratch) -> Fut<'a> {
    Box::pin(async move {
        let Some(sim) = own_sim(
            env,
            SimConfig {
                max_token_expiration: Some(3600),
                anonymous_auth: false,
                api_audiences: Some(vec!["api".into(), "other".into()]),
                ..Default::default()
            },
        )
        .await?
        else {
            return Ok(Done::Ignored(REAL.into()));
        };
        let c = client(&sim, Duration::from_secs(10))?;
        let (admin, base) = (sim.admin_token(), sim.url());
        same(
            c.get(format!("{base}/version"))
                .send()
                .await?
                .status()
                .as_u16(),
            401,
            "anonymous off",
        )?;
        post(
            &c,
            format!("{base}/api/v1/namespaces/default/serviceaccounts"),
            &admin,
            json!({"metadata": {"name": "web"}}),
        )
        .await?;
        let url = format!("{base}/api/v1/namespaces/default/serviceaccounts/web/token");
        let (status, headers, body) = post(
            &c,
            url.clone(),
            &admin,
            json!({"spec": {"expirationSeconds": 7200}}),
        )
        .await?;
        same(status, 201, "capped request")?;
        same(
            &body["spec"]["expirationSeconds"],
            &json!(3600),
            "capped expirationSeconds",
        )?;
        same(
            &body["spec"]["audiences"],
            &json!(["api", "other"]),
            "default audiences = API audiences",
        )?;
        let warning = headers
            .iter()
            .find(|(k, _)| k == "warning")
            .map(|(_, v)| v.clone());
        same(
            warning.as_deref(),
            Some("299 - \"requested expiration of 7200 seconds shortened to 3600 seconds\""),
            "Warning",
        )?;
        let (status, _, body) = post(&c, url.clone(), &admin, json!({"spec": {"boundObjectRef": {"kind": "Secret", "apiVersion": "v1", "name": "s"}}})).await?;
        same(
            (status, body["message"].clone()),
            (404, json!("secrets \"s\" not found")),
            "missing secret",
        )?;
        let (status, _, body) = post(&c, url.clone(), &admin, json!({"spec": {"boundObjectRef": {"kind": "Deployment", "apiVersion": "apps/v1", "name": "d"}}})).await?;
        same(
            (status, body["message"].clone()),
            (
                400,
                json!("cannot bind token to object of type apps/v1, Kind=Deployment"),
            ),
            "other kind",
        )?;
        let (_, _, secret) = post(
            &c,
            format!("{base}/api/v1/namespaces/default/secrets"),
            &admin,
            json!({"metadata": {"name": "s"}}),
        )
        .await?;
        let (status, _, body) = post(&c, url.clone(), &admin, json!({"spec": {"boundObjectRef": {"kind": "Secret", "apiVersion": "v1", "name": "s", "uid": "wrong"}}})).await?;
        same(
            (status, body["message"].clone()),
            (
                409,
                json!(
                    "Operation cannot be fulfilled on Secret \"s\": the UID in the bound object reference (wrong) does not match the UID in record. The object might have been deleted and then recreated"
                ),
            ),
            "uid conflict",
        )?;
        let (_, _, body) = post(&c, url, &admin, json!({"spec": {"boundObjectRef": {"kind": "Secret", "apiVersion": "v1", "name": "s"}}})).await?;
        let claims = decode_jwt(body["status"]["token"].as_str().context("token")?)?.1;
        same(
            &claims["kubernetes.io"]["secret"],
            &json!({"name": "s", "uid": secret["metadata"]["uid"]}),
            "secret claim",
        )?;
        same(&claims["aud"], &json!(["api", "other"]), "aud")?;
        sim.shutdown().await;
        Ok(Done::Passed)
    })
}

pub fn objects_and_clients<'a>(env: &'a Env, _s: &'a Scratch) -> Fut<'a> {
    Box::pin(async move {
        let Some(sim) = own_sim(env, SimConfig::default()).await? else {
            return Ok(Done::Ignored(REAL.into()));
        };
        let kc = sim.kubeconfig_yaml(None);
        ensure!(
            kc.contains("current-context: authlab-sim"),
            "kubeconfig context"
        );
        let client = sim.kube_client()?;
        let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
        let mut sa = ServiceAccount::default();
        sa.metadata.name = Some("web".into());
        sas.create(&PostParams::default(), &sa).await?;
        match sas.create(&PostParams::default(), &sa).await {
            Err(kube::Error::Api(s)) => same(s.code, 409, "AlreadyExists")?,
            other => anyhow::bail!("second create: {other:?}"),
        }
        match sas.get("nope").await {
            Err(kube::Error::Api(s)) => same(
                s.message.as_str(),
                "serviceaccounts \"nope\" not found",
                "NotFound",
            )?,
            other => anyhow::bail!("get missing: {other:?}"),
        }
        let applied = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "ssa", "labels": {"a": "1"}}});
        let pp = PatchParams::apply("authlab").force();
        sas.patch("ssa", &pp, &Patch::Apply(&applied)).await?;
        // Applies of one new object at once all succeed, as the API server's guaranteed
        // update makes them (one creates it, the others apply to it).
        let race =
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "race"}});
        let patch = Patch::Apply(&race);
        let applies = (0..64).map(|_| sas.patch("race", &pp, &patch));
        for r in futures_util::future::join_all(applies).await {
            r.context("one of 64 concurrent applies of a new object")?;
        }
        let merged = sas
            .patch(
                "ssa",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {"b": "2"}}})),
            )
            .await?;
        let labels = merged.metadata.labels.clone().unwrap_or_default();
        same(
            (labels.get("a").cloned(), labels.get("b").cloned()),
            (Some("1".into()), Some("2".into())),
            "labels after apply + merge",
        )?;
        let listed = sas
            .list(&kube::api::ListParams::default().labels("b=2"))
            .await?;
        same(listed.items.len(), 1, "label-selected list")?;

        let c = client_for(&sim)?;
        let base = sim.url();
        let admin = sim.admin_token();
        post(
            &c,
            format!("{base}/api/v1/namespaces"),
            &admin,
            json!({"metadata": {"name": "gone"}}),
        )
        .await?;
        post(
            &c,
            format!("{base}/api/v1/namespaces/gone/serviceaccounts"),
            &admin,
            json!({"metadata": {"name": "x"}}),
        )
        .await?;
        let cm = c
            .get(format!(
                "{base}/api/v1/namespaces/gone/configmaps/kube-root-ca.crt"
            ))
            .bearer_auth(&admin)
            .send()
            .await?;
        same(cm.status().as_u16(), 200, "kube-root-ca.crt")?;
        c.delete(format!("{base}/api/v1/namespaces/gone"))
            .bearer_auth(&admin)
            .send()
            .await?;
        let r = c
            .get(format!("{base}/api/v1/namespaces/gone/serviceaccounts/x"))
            .bearer_auth(&admin)
            .send()
            .await?;
        same(r.status().as_u16(), 404, "namespace contents deleted")?;
        let (status, _, body) = post(
            &c,
            format!("{base}/api/v1/namespaces/gone/serviceaccounts"),
            &admin,
            json!({"metadata": {"name": "x"}}),
        )
        .await?;
        same(
            (status, body["message"].clone()),
            (404, json!("namespaces \"gone\" not found")),
            "create in missing namespace",
        )?;
        let r = c
            .get(format!("{base}/no/such/path"))
            .bearer_auth(&admin)
            .send()
            .await?;
        same(r.status().as_u16(), 404, "unknown path")?;
        let body: Value = r.json().await?;
        same(
            body["message"].clone(),
            json!("the server could not find the requested resource"),
            "unknown path message",
        )?;

        // Enough OpenAPI v3 for kubectl's field-validation probe.
        let doc: Value = c
            .get(format!("{base}/openapi/v3/api/v1"))
            .bearer_auth(&admin)
            .send()
            .await?
            .json()
            .await?;
        let patch = &doc["paths"]["/api/v1/namespaces/{namespace}/serviceaccounts/{name}"]["patch"];
        same(
            &patch["x-kubernetes-group-version-kind"]["kind"],
            &json!("ServiceAccount"),
            "openapi gvk",
        )?;

        // Pretty printing: ?pretty=true and curl-like agents get indented JSON.
        let text = c
            .get(format!("{base}/version?pretty=true"))
            .bearer_auth(&admin)
            .send()
            .await?
            .text()
            .await?;
        ensure!(
            text.contains("\n  \"major\""),
            "pretty=true not indented: {text}"
        );
        let text = c
            .get(format!("{base}/version"))
            .header("User-Agent", "curl/8.0")
            .send()
            .await?
            .text()
            .await?;
        ensure!(
            text.contains("\n  \"major\""),
            "curl UA not indented: {text}"
        );
        let text = c
            .get(format!("{base}/version"))
            .send()
            .await?
            .text()
            .await?;
        ensure!(
            !text.trim_end().contains('\n'),
            "default not compact: {text}"
        );
        sim.shutdown().await;
        Ok(Done::Passed)
    })
}

fn client_for(sim: &SimCluster) -> Result<reqwest::Client> {
    client(sim, Duration::from_secs(10))
}

pub fn legacy_sa_deletion<'a>(env: &'a Env, s: &'a Scratch) -> Fut<'a> {
    Box::pin(async move {
        if env.sim.is_none() {
            return Ok(Done::Ignored(REAL.into()));
        }
        // Deleting the service account removes its token Secrets (tokens controller).
        s.service_account(env, "vault-auth").await?;
        s.create(env, "secrets", json!({"metadata": {"name": "tok", "annotations": {"kubernetes.io/service-account.name": "vault-auth"}}, "type": "kubernetes.io/service-account-token"})).await?;
        let path = format!("/api/v1/namespaces/{}/secrets/tok", s.ns);
        poll(10, "token filled", || async {
            Ok(
                env.admin_call("GET", &path, None, None).await?.json()["data"]["token"]
                    .as_str()
                    .map(|_| ()),
            )
        })
        .await?;
        env.admin_call(
            "DELETE",
            &format!("/api/v1/namespaces/{}/serviceaccounts/vault-auth", s.ns),
            None,
            None,
        )
        .await?
        .expect(200)?;
        env.admin_call("GET", &path, None, None)
            .await?
            .expect(404)?;
        Ok(Done::Passed)
    })
}
