//! The service-account signing key: RSA generation or import, PEM forms, `kid`, JWK and RS256.

use anyhow::{Context, Result, anyhow, bail};
use aws_lc_rs::{
    digest,
    encoding::AsDer,
    rand::SystemRandom,
    rsa::{KeyPair, KeySize},
    signature::{self, KeyPair as _, RSA_PKCS1_SHA256, UnparsedPublicKey},
};
use base64::{
    Engine,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use serde::Serialize;

/// An RSA key that signs service-account tokens, with its derived public forms.
pub(crate) struct SigningKey {
    pair: KeyPair,
    pkcs8_pem: String,
    public_pem: String,
    /// PKCS#1 `RSAPublicKey` DER, for verification.
    public_pkcs1: Vec<u8>,
    kid: String,
    n: Vec<u8>,
    e: Vec<u8>,
}

/// One entry of the JWKS document, in go-jose's field order.
#[derive(Serialize)]
pub(crate) struct Jwk<'a> {
    #[serde(rename = "use")]
    pub use_: &'static str,
    pub kty: &'static str,
    pub kid: &'a str,
    pub alg: &'static str,
    pub n: String,
    pub e: String,
}

impl SigningKey {
    /// Generates a fresh RSA-2048 key.
    pub fn generate() -> Result<Self> {
        let pair = KeyPair::generate(KeySize::Rsa2048)
            .map_err(|_| anyhow!("RSA-2048 key generation failed"))?;
        Self::from_pair(pair)
    }

    /// Imports a PKCS#8 PEM RSA private key.
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self> {
        let der =
            pem_decode(pem, "PRIVATE KEY").context("reading the service-account signing key")?;
        let pair = KeyPair::from_pkcs8(&der)
            .map_err(|e| anyhow!("the service-account signing key is not a PKCS#8 RSA key: {e}"))?;
        Self::from_pair(pair)
    }

    fn from_pair(pair: KeyPair) -> Result<Self> {
        let pkcs8 = pair
            .as_der()
            .map_err(|_| anyhow!("encoding the signing key as PKCS#8"))?;
        let public = pair.public_key();
        let spki = public
            .as_der()
            .map_err(|_| anyhow!("encoding the public key as SubjectPublicKeyInfo"))?;
        let public_pkcs1 = public.as_ref().to_vec();
        let (n, e) =
            rsa_public_numbers(&public_pkcs1).context("reading the RSA modulus and exponent")?;
        let kid = URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, spki.as_ref()));
        Ok(SigningKey {
            pkcs8_pem: pem_encode("PRIVATE KEY", pkcs8.as_ref()),
            public_pem: pem_encode("PUBLIC KEY", spki.as_ref()),
            public_pkcs1,
            kid,
            n,
            e,
            pair,
        })
    }

    /// PKCS#8 PEM of the private key.
    pub fn pkcs8_pem(&self) -> &str {
        &self.pkcs8_pem
    }

    /// SPKI PEM of the public key.
    pub fn public_pem(&self) -> &str {
        &self.public_pem
    }

    /// `kid`: base64url (no padding) of SHA-256 over the SPKI DER.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// RS256 signature over `msg`.
    pub fn sign(&self, msg: &[u8]) -> Result<Vec<u8>> {
        let mut sig = vec![0u8; self.pair.public_modulus_len()];
        self.pair
            .sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), msg, &mut sig)
            .map_err(|_| anyhow!("RS256 signing failed"))?;
        Ok(sig)
    }

    /// Whether `sig` is a valid RS256 signature of `msg` by this key.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, &self.public_pkcs1)
            .verify(msg, sig)
            .is_ok()
    }

    /// The public key as a JWK.
    pub fn jwk(&self) -> Jwk<'_> {
        Jwk {
            use_: "sig",
            kty: "RSA",
            kid: &self.kid,
            alg: "RS256",
            n: URL_SAFE_NO_PAD.encode(&self.n),
            e: URL_SAFE_NO_PAD.encode(&self.e),
        }
    }
}

/// PEM armour with 64-character lines.
pub(crate) fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The DER inside the first PEM block with the given label.
pub(crate) fn pem_decode(pem: &str, label: &str) -> Result<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem
        .find(&begin)
        .with_context(|| format!("no `{begin}` block"))?
        + begin.len();
    let stop = pem[start..]
        .find(&end)
        .with_context(|| format!("no `{end}` line"))?
        + start;
    let b64: String = pem[start..stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    STANDARD.decode(b64).context("PEM body is not base64")
}

/// Reads one DER TLV at `at`, returning (tag, content range end, content start).
fn der_tlv(der: &[u8], at: usize) -> Result<(u8, usize, usize)> {
    let tag = *der.get(at).context("DER truncated")?;
    let first = *der.get(at + 1).context("DER truncated")? as usize;
    let (len, start) = if first < 0x80 {
        (first, at + 2)
    } else {
        let count = first & 0x7f;
        if count == 0 || count > 4 {
            bail!("unsupported DER length");
        }
        let mut len = 0usize;
        for i in 0..count {
            len = (len << 8) | *der.get(at + 2 + i).context("DER truncated")? as usize;
        }
        (len, at + 2 + count)
    };
    let end = start.checked_add(len).context("DER length overflow")?;
    if end > der.len() {
        bail!("DER truncated");
    }
    Ok((tag, end, start))
}

/// (n, e) as big-endian bytes without leading zeros, from PKCS#1 `RSAPublicKey`.
fn rsa_public_numbers(pkcs1: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    let (tag, _, inner) = der_tlv(pkcs1, 0)?;
    if tag != 0x30 {
        bail!("RSAPublicKey is not a SEQUENCE");
    }
    let (tag, n_end, n_start) = der_tlv(pkcs1, inner)?;
    if tag != 0x02 {
        bail!("modulus is not an INTEGER");
    }
    let (tag, e_end, e_start) = der_tlv(pkcs1, n_end)?;
    if tag != 0x02 {
        bail!("exponent is not an INTEGER");
    }
    let strip = |b: &[u8]| {
        let skip = b.iter().take_while(|x| **x == 0).count();
        b[skip..].to_vec()
    };
    Ok((strip(&pkcs1[n_start..n_end]), strip(&pkcs1[e_start..e_end])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_kid() {
        let k = SigningKey::generate().unwrap();
        let again = SigningKey::from_pkcs8_pem(k.pkcs8_pem()).unwrap();
        assert_eq!(k.kid(), again.kid());
        assert_eq!(k.kid().len(), 43);
        let spki = pem_decode(k.public_pem(), "PUBLIC KEY").unwrap();
        let kid = URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, &spki));
        assert_eq!(kid, k.kid());
        let sig = k.sign(b"abc").unwrap();
        assert!(again.verify(b"abc", &sig));
        assert!(!again.verify(b"abd", &sig));
        let jwk = k.jwk();
        assert_eq!(jwk.e, "AQAB");
        assert_eq!(URL_SAFE_NO_PAD.decode(&jwk.n).unwrap().len(), 256);
    }
}
