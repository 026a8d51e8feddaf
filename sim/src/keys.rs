//! The service-account signing key: RSA generation or import, PEM forms, `kid`, JWK and RS256.

use anyhow::{Context, Result, anyhow};
use aws_lc_rs::{
    digest,
    encoding::AsDer,
    rand::SystemRandom,
    rsa::{KeyPair, KeySize, PublicKeyComponents},
    signature::{self, KeyPair as _, RSA_PKCS1_SHA256, UnparsedPublicKey},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
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
    ///
    /// A PKCS#1 key (`-----BEGIN RSA PRIVATE KEY-----`, as kubeadm writes `sa.key`) is read too.
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self> {
        if let Ok(der) = pem_decode(pem, "RSA PRIVATE KEY") {
            let pair = KeyPair::from_der(&der).map_err(|e| {
                anyhow!("the service-account signing key is not a PKCS#1 RSA key: {e}")
            })?;
            return Self::from_pair(pair);
        }
        let der = pem_decode(pem, "PRIVATE KEY").context(
            "reading the service-account signing key (PKCS#8 `PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY`)",
        )?;
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
        let PublicKeyComponents { n, e } = PublicKeyComponents::<Vec<u8>>::from(public);
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
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    pem::encode_config(&pem::Pem::new(label, der), config)
}

/// The DER inside the first PEM block with the given label.
pub(crate) fn pem_decode(text: &str, label: &str) -> Result<Vec<u8>> {
    let blocks = pem::parse_many(text).context("the text is not PEM")?;
    blocks
        .into_iter()
        .find(|b| b.tag() == label)
        .map(pem::Pem::into_contents)
        .with_context(|| format!("no `-----BEGIN {label}-----` block"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_pkcs1_key_as_kubeadm_writes_it() {
        let k = SigningKey::generate().unwrap();
        let pkcs8 = pem_decode(k.pkcs8_pem(), "PRIVATE KEY").unwrap();
        let pair = KeyPair::from_pkcs8(&pkcs8).unwrap();
        // PKCS#1 is the PKCS#8 structure's inner key: re-encode it as kubeadm's sa.key.
        let der =
            aws_lc_rs::encoding::AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&pair).unwrap();
        // SEQUENCE { INTEGER 0, AlgorithmIdentifier (15 bytes), OCTET STRING { PKCS#1 } }:
        // for a 2048-bit key the OCTET STRING's header is at 22, its content at 26.
        let inner = der.as_ref();
        assert_eq!(&inner[22..24], &[0x04, 0x82]);
        let pem = pem_encode("RSA PRIVATE KEY", &inner[26..]);
        let again = SigningKey::from_pkcs8_pem(&pem).unwrap();
        assert_eq!(k.kid(), again.kid());
    }

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
