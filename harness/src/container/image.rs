//! Server images built locally: `FROM scratch`, the static binary, and the directories the
//! server writes to. Rebuilt only when the binary changes.

use std::path::Path;

use anyhow::{Context, Result};

use super::{Engine, LABEL_BINARY, LABEL_MANAGED};
use crate::server::{Flavour, ServerSpec};

/// A server image and whether it is the project's official one (which has its own entrypoint
/// and user) or authlab's `FROM scratch` build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerImage {
    /// Image reference.
    pub reference: String,
    /// An official `openbao/openbao` or `hashicorp/vault` image.
    pub official: bool,
}

/// The official image of a server version.
pub fn official_tag(spec: &ServerSpec) -> String {
    match spec.flavour {
        Flavour::OpenBao => format!("openbao/openbao:{}", spec.version),
        Flavour::Vault => format!("hashicorp/vault:{}", spec.version),
    }
}

/// The local image tag for a server.
pub fn image_tag(spec: &ServerSpec) -> String {
    format!("authlab/{}:{}", spec.flavour, spec.version)
}

fn add_file(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8], mode: u32) -> Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(mode);
    h.set_cksum();
    b.append_data(&mut h, path, data)
        .with_context(|| format!("adding {path} to the build context"))
}

/// The build context: Dockerfile, binary, and placeholder files for the writable directories.
pub fn build_context(spec: &ServerSpec, binary: &[u8], sha: &str) -> Result<Vec<u8>> {
    let exe = match spec.flavour {
        Flavour::OpenBao => "bao",
        Flavour::Vault => "vault",
    };
    let dockerfile = format!(
        "FROM scratch\nCOPY {exe} /bin/{exe}\nCOPY dirs/ /\nLABEL {LABEL_MANAGED}=\"true\" {LABEL_BINARY}=\"{sha}\"\nENTRYPOINT [\"/bin/{exe}\"]\nCMD [\"server\", \"-config=/openbao/config/server.hcl\"]\n"
    );
    let mut b = tar::Builder::new(Vec::new());
    add_file(&mut b, "Dockerfile", dockerfile.as_bytes(), 0o644)?;
    add_file(&mut b, exe, binary, 0o755)?;
    for dir in ["tmp", "openbao/config", "openbao/audit", "openbao/data"] {
        add_file(&mut b, &format!("dirs/{dir}/.keep"), b"", 0o644)?;
    }
    b.into_inner().context("finishing the build context")
}

/// SHA-256 (hex) of a file, read in chunks.
fn file_sha256(path: &Path) -> Result<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
    }
    Ok(ctx
        .finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// The image for `spec`: the official image when it is present locally (or pulled, when
/// `AUTHLAB_PULL=1`), else authlab's own build, reused when it was built from the same binary.
pub async fn ensure_server_image(
    engine: &Engine,
    spec: &ServerSpec,
    binary: &Path,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<ServerImage> {
    let official = official_tag(spec);
    if engine.image_labels(&official).await?.is_some() {
        return Ok(ServerImage {
            reference: official,
            official: true,
        });
    }
    if std::env::var("AUTHLAB_PULL").is_ok_and(|v| v == "1" || v == "true") {
        match engine.pull_image(&official, progress).await {
            Ok(()) => {
                return Ok(ServerImage {
                    reference: official,
                    official: true,
                });
            }
            Err(e) => progress(&format!("{e:#}; building a local image instead")),
        }
    }
    let tag = build_local_image(engine, spec, binary, progress).await?;
    Ok(ServerImage {
        reference: tag,
        official: false,
    })
}

/// authlab's own image for `spec`, built `FROM scratch` around `binary` when missing or stale.
pub async fn build_local_image(
    engine: &Engine,
    spec: &ServerSpec,
    binary: &Path,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<String> {
    let tag = image_tag(spec);
    let sha = {
        let path = binary.to_path_buf();
        tokio::task::spawn_blocking(move || file_sha256(&path)).await??
    };
    if let Some(labels) = engine.image_labels(&tag).await?
        && labels.get(LABEL_BINARY) == Some(&sha)
    {
        return Ok(tag);
    }
    progress(&format!("building image {tag} from {}", binary.display()));
    let bytes = tokio::fs::read(binary)
        .await
        .with_context(|| format!("reading {}", binary.display()))?;
    let ctx = build_context(spec, &bytes, &sha)?;
    drop(bytes);
    engine.build_image(&tag, ctx, progress).await?;
    Ok(tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_holds_dockerfile_binary_and_dirs() {
        let spec: ServerSpec = "openbao:2.7.2".parse().unwrap();
        let ctx = build_context(&spec, b"bin", "abc").unwrap();
        let mut ar = tar::Archive::new(&ctx[..]);
        let names: Vec<String> = ar
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert!(names.contains(&"Dockerfile".to_string()));
        assert!(names.contains(&"bao".to_string()));
        assert!(names.contains(&"dirs/openbao/audit/.keep".to_string()));
        assert_eq!(image_tag(&spec), "authlab/openbao:2.7.2");
    }
}
