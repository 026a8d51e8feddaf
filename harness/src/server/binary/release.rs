//! The `release` source: the official release archive, checked against the release's
//! published SHA-256 list.

use std::{
    io::Write,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, Result, bail};

use super::*;

impl BinaryCache {
    pub(super) async fn fetch_release(
        &self,
        spec: &ServerSpec,
        progress: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<PathBuf> {
        let scratch = self.scratch(spec)?;
        let result = self.fetch_release_into(spec, &scratch, progress).await;
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&scratch);
        }
        result
    }

    async fn fetch_release_into(
        &self,
        spec: &ServerSpec,
        scratch: &Path,
        progress: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<PathBuf> {
        let release = ReleaseAsset::for_spec(spec);
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(DOWNLOAD_TIMEOUT)
            .build()
            .context("building the download client")?;
        let sums_url = format!("{}/{}", release.base, release.sums);
        let sums_text = http
            .get(&sums_url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .with_context(|| format!("fetching {sums_url}"))?
            .text()
            .await
            .with_context(|| format!("reading {sums_url}"))?;
        let want = checksum_for(&sums_text, &release.archive).with_context(|| {
            format!("{} lists no checksum for {}", release.sums, release.archive)
        })?;
        let archive_url = format!("{}/{}", release.base, release.archive);
        let mut resp = http
            .get(&archive_url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .with_context(|| format!("fetching {archive_url}"))?;
        let total = resp.content_length();
        let archive_path = scratch.join(&release.archive);
        let mut file = std::fs::File::create(&archive_path)
            .with_context(|| format!("creating {}", archive_path.display()))?;
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        let (mut written, mut reported) = (0u64, 0u64);
        while let Some(chunk) = resp
            .chunk()
            .await
            .with_context(|| format!("downloading {archive_url}"))?
        {
            ctx.update(&chunk);
            file.write_all(&chunk)
                .with_context(|| format!("writing {}", archive_path.display()))?;
            written += chunk.len() as u64;
            if written >> 23 != reported {
                reported = written >> 23;
                progress(&match total {
                    Some(t) => format!("{}: {} of {} MiB", release.archive, written >> 20, t >> 20),
                    None => format!("{}: {} MiB", release.archive, written >> 20),
                });
            }
        }
        drop(file);
        let got = hex(ctx.finish().as_ref());
        if got != want {
            bail!(
                "{} has sha256 {got}, but {} says {want}",
                release.archive,
                release.sums
            );
        }
        progress(&format!(
            "extracting {} from {}",
            spec.flavour.exe(),
            release.archive
        ));
        let out = scratch.join("bin.part");
        let (flavour, ap, o) = (spec.flavour, archive_path.clone(), out.clone());
        let bin_sha = tokio::task::spawn_blocking(move || extract_from_release(flavour, &ap, &o))
            .await
            .context("the extraction task failed")??;
        let manifest = Manifest {
            source: "release".into(),
            sha256: bin_sha,
            archive_sha256: got,
            archive: release.archive,
        };
        self.install(spec, scratch, &out, &manifest)
    }
}

/// Where a flavour's official release archive and its checksum list live.
pub(super) struct ReleaseAsset {
    base: String,
    pub(super) archive: String,
    pub(super) sums: String,
}

impl ReleaseAsset {
    pub(super) fn for_spec(spec: &ServerSpec) -> Self {
        let v = &spec.version;
        match spec.flavour {
            // OpenBao's Linux release job publishes one checksum list for all Linux archives.
            Flavour::OpenBao => ReleaseAsset {
                base: format!("https://github.com/openbao/openbao/releases/download/v{v}"),
                archive: format!("bao_{v}_Linux_x86_64.tar.gz"),
                sums: "checksums-linux.txt".into(),
            },
            Flavour::Vault => ReleaseAsset {
                base: format!("https://releases.hashicorp.com/vault/{v}"),
                archive: format!("vault_{v}_linux_amd64.zip"),
                sums: format!("vault_{v}_SHA256SUMS"),
            },
        }
    }
}

/// The hex sha256 that a `sha256sum`-style list gives for `archive`.
pub(super) fn checksum_for(sums: &str, archive: &str) -> Option<String> {
    sums.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        let (h, n) = (it.next()?, it.next()?);
        (n.trim_start_matches('*') == archive).then(|| h.to_lowercase())
    })
}

/// Extracts the server binary from a verified release archive; returns its hex sha256.
fn extract_from_release(flavour: Flavour, archive: &Path, out: &Path) -> Result<String> {
    let name = flavour.exe();
    let file =
        std::fs::File::open(archive).with_context(|| format!("opening {}", archive.display()))?;
    match flavour {
        Flavour::OpenBao => {
            let mut ar =
                tar::Archive::new(flate2::read::GzDecoder::new(std::io::BufReader::new(file)));
            for entry in ar.entries().context("reading the tar archive")? {
                let mut entry = entry.context("reading the tar archive")?;
                if entry.path()?.file_name().is_some_and(|n| n == name) {
                    return copy_executable(&mut entry, out);
                }
            }
            bail!("{} has no {name}", archive.display())
        }
        Flavour::Vault => {
            let mut z = zip::ZipArchive::new(std::io::BufReader::new(file))
                .context("the release archive is not a zip archive")?;
            let mut f = z
                .by_name(name)
                .with_context(|| format!("{} has no {name}", archive.display()))?;
            copy_executable(&mut f, out)
        }
    }
}
