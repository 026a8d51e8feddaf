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

/// The cluster CA and the serving certificate as kubeadm makes them (and Kind with it): the
/// server sends its certificate alone; names are encoded as Go encodes them (PrintableString),
/// so the leaf's issuer is byte for byte the CA's subject; the CA has a subject key identifier
/// and the leaf an authority key identifier naming it, and no subject key identifier of its
/// own. Go's verifier picks candidate issuers by those bytes, so they decide which errors it
/// reports (`ca_from_other_cluster`'s "possibly because of ..." hint).
pub fn t14b_serving_pki_as_kubeadm_makes_it<'a>(env: &'a Env, _s: &'a Scratch) -> Fut<'a> {
    Box::pin(async move {
        use x509_parser::prelude::*;
        let hostport = env
            .base
            .trim_start_matches("https://")
            .trim_end_matches('/')
            .to_string();
        let ca_pem = env.ca_pem.clone();
        let chain = tokio::task::spawn_blocking(move || served_chain(&hostport, &ca_pem)).await??;
        same(chain.len(), 1, "certificates the server sends")?;
        let ca_der = ::pem::parse(env.ca_pem.as_bytes())?.into_contents();
        let (_, ca) = parse_x509_certificate(&ca_der).map_err(|e| anyhow::anyhow!("{e}"))?;
        let (_, leaf) = parse_x509_certificate(&chain[0]).map_err(|e| anyhow::anyhow!("{e}"))?;
        same(
            leaf.issuer().as_raw().to_vec(),
            ca.subject().as_raw().to_vec(),
            "the leaf's issuer bytes, against the CA's subject bytes",
        )?;
        let cn = ca
            .subject()
            .iter_common_name()
            .next()
            .ok_or_else(|| anyhow::anyhow!("the CA has no common name"))?;
        same(
            (
                cn.as_str().unwrap_or_default().to_string(),
                cn.attr_value().header.tag(),
            ),
            (
                "kubernetes".to_string(),
                x509_parser::der_parser::asn1_rs::Tag::PrintableString,
            ),
            "the CA's common name and its string type",
        )?;
        let ski = |c: &X509Certificate<'_>| {
            c.extensions()
                .iter()
                .find_map(|e| match e.parsed_extension() {
                    ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
                    _ => None,
                })
        };
        let aki = leaf
            .extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::AuthorityKeyIdentifier(a) => {
                    a.key_identifier.as_ref().map(|k| k.0.to_vec())
                }
                _ => None,
            });
        let ca_ski = ski(&ca);
        same(ca_ski.is_some(), true, "a subject key identifier on the CA")?;
        same(aki, ca_ski, "the leaf's authority key identifier")?;
        same(
            ski(&leaf).is_some(),
            false,
            "a subject key identifier on the leaf",
        )?;
        let usage = ca.key_usage().ok().flatten().map(|u| {
            (
                u.value.digital_signature(),
                u.value.key_encipherment(),
                u.value.key_cert_sign(),
            )
        });
        same(
            usage,
            Some((true, true, true)),
            "the CA's key usages (digital signature, key encipherment, certificate signing)",
        )?;
        Ok(Done::Passed)
    })
}

/// The certificates a TLS server at `hostport` sends, verified against `ca_pem`.
fn served_chain(hostport: &str, ca_pem: &str) -> anyhow::Result<Vec<Vec<u8>>> {
    use std::io::Write;
    let mut roots = rustls::RootCertStore::empty();
    for block in ::pem::parse_many(ca_pem.as_bytes())? {
        roots.add(rustls::pki_types::CertificateDer::from(
            block.into_contents(),
        ))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let host = hostport.rsplit_once(':').map_or(hostport, |(h, _)| h);
    let name = rustls::pki_types::ServerName::try_from(host.to_string())?;
    let mut conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name)?;
    let mut sock = std::net::TcpStream::connect(hostport)?;
    sock.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
    tls.write_all(b"GET /version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
    tls.flush()?;
    Ok(conn
        .peer_certificates()
        .unwrap_or_default()
        .iter()
        .map(|c| c.as_ref().to_vec())
        .collect())
}
