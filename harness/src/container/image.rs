//! Server images: the official image when present (or pulled on request), else authlab's own,
//! built locally `FROM scratch` around the static binary plus the directories the server writes
//! to. The local build is redone only when the binary changes (label [`LABEL_BINARY`]).

use std::{
    io::{Read, Write},
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};

use super::{Engine, LABEL_BINARY, LABEL_MANAGED};
use crate::server::{Flavour, ServerSpec};

/// A server image and whether it is the project's official one (which has its own entrypoint
/// and user) or authlab's `FROM scratch` build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerImage {
    /// Image reference.
    pub reference: String,
    /// The host binary a local build holds (None for an official image): its host copy is
    /// what the image's containers run.
    pub binary: Option<PathBuf>,
}

impl ServerImage {
    /// An official `openbao/openbao` or `hashicorp/vault` image.
    pub fn official(&self) -> bool {
        self.binary.is_none()
    }
}

/// What [`ensure_local_image`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageOutcome {
    /// An image of that tag built from the same binary was already there.
    Reused,
    /// The image was (re)built.
    Built,
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

/// The Dockerfile of a local image.
fn dockerfile(exe: &str, sha: &str) -> String {
    format!(
        "FROM scratch\nCOPY {exe} /bin/{exe}\nCOPY dirs/ /\n\
         LABEL {LABEL_MANAGED}=\"true\" {LABEL_BINARY}=\"{sha}\"\n\
         ENTRYPOINT [\"/bin/{exe}\"]\nCMD [\"server\", \"-config=/openbao/config/server.hcl\"]\n"
    )
}

/// Directories (and modes) a `FROM scratch` image lacks and the server (or its files) need.
const IMAGE_DIRS: &[(&str, u32)] = &[
    ("tmp", 0o1777),
    ("openbao/config", 0o755),
    ("openbao/audit", 0o777),
    ("openbao/data", 0o777),
];

fn header(size: u64, mode: u32, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(0);
    h.set_cksum();
    h
}

/// Writes the build context (a tar: Dockerfile, the binary read from disk, and the empty
/// writable directories) into `out`, without holding the binary in memory.
pub fn write_build_context(
    out: impl Write,
    flavour: Flavour,
    binary: &Path,
    sha: &str,
) -> Result<()> {
    let exe = flavour.exe();
    let mut b = tar::Builder::new(out);
    let df = dockerfile(exe, sha);
    b.append_data(
        &mut header(df.len() as u64, 0o644, tar::EntryType::Regular),
        "Dockerfile",
        df.as_bytes(),
    )
    .context("adding the Dockerfile to the build context")?;
    let file =
        std::fs::File::open(binary).with_context(|| format!("opening {}", binary.display()))?;
    let len = file
        .metadata()
        .with_context(|| format!("reading the size of {}", binary.display()))?
        .len();
    b.append_data(
        &mut header(len, 0o755, tar::EntryType::Regular),
        exe,
        file.take(len),
    )
    .with_context(|| format!("adding {} to the build context", binary.display()))?;
    for (dir, mode) in IMAGE_DIRS {
        b.append_data(
            &mut header(0, *mode, tar::EntryType::Directory),
            format!("dirs/{dir}/"),
            std::io::empty(),
        )
        .with_context(|| format!("adding directory {dir} to the build context"))?;
    }
    b.into_inner()
        .and_then(|mut w| w.flush())
        .context("finishing the build context")
}

/// The image for `spec`: the official image when it is present locally (or pulled, when `pull`
/// says so: `AUTHLAB_PULL=1`), else authlab's own build, reused when it was built from the
/// same binary.
pub async fn resolve_image(
    engine: &Engine,
    spec: &ServerSpec,
    binary: &Path,
    pull: bool,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<ServerImage> {
    let official = official_tag(spec);
    if engine.image_labels(&official).await?.is_some() {
        return Ok(ServerImage {
            reference: official,
            binary: None,
        });
    }
    if pull {
        match engine.pull_image(&official, progress).await {
            Ok(()) => {
                return Ok(ServerImage {
                    reference: official,
                    binary: None,
                });
            }
            Err(e) => progress(&format!("{e:#}; building a local image instead")),
        }
    }
    let tag = build_local_image(engine, spec, binary, progress).await?;
    Ok(ServerImage {
        reference: tag,
        binary: Some(binary.to_path_buf()),
    })
}

/// authlab's own image for `spec` ([`image_tag`]), built `FROM scratch` around `binary` when
/// missing or stale.
pub async fn build_local_image(
    engine: &Engine,
    spec: &ServerSpec,
    binary: &Path,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<String> {
    let tag = image_tag(spec);
    ensure_local_image(engine, &tag, spec.flavour, binary, progress).await?;
    Ok(tag)
}

/// Makes sure `tag` is a `FROM scratch` image around `binary`: reused when its
/// [`LABEL_BINARY`] matches the binary's SHA-256, built otherwise. The build context is
/// written to a temporary file and streamed to the engine.
pub async fn ensure_local_image(
    engine: &Engine,
    tag: &str,
    flavour: Flavour,
    binary: &Path,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<ImageOutcome> {
    let sha = {
        let path = binary.to_path_buf();
        tokio::task::spawn_blocking(move || crate::server::binary::binary_sha256(&path))
            .await
            .context("hashing the server binary")??
    };
    if let Some(labels) = engine.image_labels(tag).await?
        && labels.get(LABEL_BINARY) == Some(&sha)
    {
        return Ok(ImageOutcome::Reused);
    }
    progress(&format!("building image {tag} from {}", binary.display()));
    let context = {
        let path = binary.to_path_buf();
        tokio::task::spawn_blocking(move || -> Result<tempfile::NamedTempFile> {
            let mut tmp = tempfile::Builder::new()
                .prefix("authlab-build-")
                .suffix(".tar")
                .tempfile()
                .context("creating a temporary file for the build context")?;
            write_build_context(
                std::io::BufWriter::new(tmp.as_file_mut()),
                flavour,
                &path,
                &sha,
            )?;
            Ok(tmp)
        })
        .await
        .context("writing the build context")??
    };
    engine.build_image(tag, context.path(), progress).await?;
    Ok(ImageOutcome::Built)
}

impl Engine {
    /// The image reference for a server given as `flavour:version` (e.g. `openbao:2.7.2`):
    /// the official image if present (or pulled when `pull`), else the local `FROM scratch`
    /// build around `binary`, reused while the binary is unchanged.
    pub async fn ensure_server_image(
        &self,
        flavour_and_version: &str,
        binary: &Path,
        pull: bool,
        progress: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<String> {
        let spec: ServerSpec = flavour_and_version.parse()?;
        Ok(resolve_image(self, &spec, binary, pull, progress)
            .await?
            .reference)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_holds_dockerfile_binary_and_dirs() {
        let spec: ServerSpec = "openbao:2.7.2".parse().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bao");
        std::fs::write(&bin, b"binary").unwrap();
        let mut ctx = Vec::new();
        write_build_context(&mut ctx, spec.flavour, &bin, "abc").unwrap();
        let mut ar = tar::Archive::new(&ctx[..]);
        let mut names = Vec::new();
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let name = e.path().unwrap().display().to_string();
            if name == "bao" {
                let mut body = Vec::new();
                e.read_to_end(&mut body).unwrap();
                assert_eq!(body, b"binary");
                assert_eq!(e.header().mode().unwrap(), 0o755);
            }
            if name == "Dockerfile" {
                let mut body = String::new();
                e.read_to_string(&mut body).unwrap();
                assert!(body.starts_with("FROM scratch\n"));
                assert!(body.contains("authlab.binary-sha256=\"abc\""));
            }
            names.push(name);
        }
        assert!(names.contains(&"Dockerfile".to_string()));
        assert!(names.contains(&"bao".to_string()));
        assert!(names.contains(&"dirs/openbao/audit/".to_string()));
        assert!(names.contains(&"dirs/tmp/".to_string()));
        assert_eq!(image_tag(&spec), "authlab/openbao:2.7.2");
    }

    #[test]
    fn a_missing_binary_is_named() {
        let err = write_build_context(Vec::new(), Flavour::OpenBao, Path::new("/no/such"), "x")
            .unwrap_err();
        assert!(format!("{err:#}").contains("/no/such"), "{err:#}");
    }
}
