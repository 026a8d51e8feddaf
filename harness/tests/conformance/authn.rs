//! §9 items 10–13: authentication on ordinary API requests.

use anyhow::Result;
use serde_json::{Value, json};

use crate::support::*;

/// A validly signed token for `sa` whose exp/iat/nbf lie an hour in the past (where the
/// cluster's key is known).
pub async fn expired_token(
    env: &Env,
    s: &Scratch,
    sa: &str,
) -> Result<std::result::Result<String, Done>> {
    if env.signing_key.is_none() {
        return Ok(Err(Done::Ignored(
            "needs the cluster's signing key: a cluster never mints an expired token".into(),
        )));
    }
    let (token, _) = s.mint(env, sa, json!({})).await?;
    let mut claims = decode_jwt(&token)?.1;
    let now = now_unix();
    claims["iat"] = json!(now - 7200);
    claims["nbf"] = json!(now - 7200);
    claims["exp"] = json!(now - 3600);
    Ok(env.sign(&claims, "an expired token"))
}

fn pods_path(s: &Scratch) -> String {
    format!("/api/v1/namespaces/{}/pods", s.ns)
}

pub fn t10_expired_token_401<'a>(env: &'a Env, s: &'a Scratch) -> Fut<'a> {
    Box::pin(async move {
        s.service_account(env, "web").await?;
        let token = match expired_token(env, s, "web").await? {
            Ok(t) => t,
            Err(done) => return Ok(done),
        };
        let r = env.call("GET", &pods_path(s), Some(&token), None).await?;
        r.expect(401)?;
        // Byte layout is the point: the fixed Unauthorized Status.
        same(r.text.trim_end(), UNAUTHORIZED_BODY, "401 body")?;
        Ok(Done::Passed)
    })
}

pub fn t11_vault_audience_401<'a>(env: &'a Env, s: &'a Scratch) -> Fut<'a> {
    Box::pin(async move {
        s.service_account(env, "web").await?;
        let (token, _) = s.mint(env, "web", json!({"audiences": ["vault"]})).await?;
        let r = env.call("GET", &pods_path(s), Some(&token), None).await?;
        r.expect(401)?;
        same(
            r.json(),
            serde_json::from_str::<Value>(UNAUTHORIZED_BODY)?,
            "401 body",
        )?;
        Ok(Done::Passed)
    })
}

pub fn t12_anonymous_forbidden<'a>(env: &'a Env, s: &'a Scratch) -> Fut<'a> {
    Box::pin(async move {
        let r = env.call("GET", &pods_path(s), None, None).await?;
        r.expect(403)?;
        same(
            r.json()["message"].clone(),
            json!(format!(
                "pods is forbidden: User \"system:anonymous\" cannot list resource \"pods\" in API group \"\" in the namespace \"{}\"",
                s.ns
            )),
            "message",
        )?;
        Ok(Done::Passed)
    })
}

pub fn t13_version_anonymous_and_garbage<'a>(env: &'a Env, _s: &'a Scratch) -> Fut<'a> {
    Box::pin(async move {
        env.call("GET", "/version", None, None).await?.expect(200)?;
        env.call("GET", "/version", Some("x"), None)
            .await?
            .expect(401)?;
        Ok(Done::Passed)
    })
}

/// A plain HTTP request on the TLS port is answered as Go's HTTPS server answers it — a bare
/// `HTTP/1.0 400` naming the mistake — and the connection is closed with the request unread.
pub fn t14_plain_http_on_the_tls_port<'a>(env: &'a Env, _s: &'a Scratch) -> Fut<'a> {
    Box::pin(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let hostport = env
            .base
            .trim_start_matches("https://")
            .trim_end_matches('/')
            .to_string();
        let mut conn = tokio::net::TcpStream::connect(&hostport).await?;
        conn.write_all(b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n")
            .await?;
        let mut answer = Vec::new();
        // The answer, then the close (or a reset, for the unread request).
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            conn.read_to_end(&mut answer),
        )
        .await;
        same(
            String::from_utf8_lossy(&answer).into_owned(),
            "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"
                .to_string(),
            "the answer to plain HTTP",
        )?;
        Ok(Done::Passed)
    })
}
