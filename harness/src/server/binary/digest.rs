//! Checksums of binaries, and copying one out of an archive while hashing it.

use std::{
    io::{Read, Write},
    path::Path,
};

use anyhow::{Context, Result};

use super::*;

/// The hex sha256 of a cached binary: the one its `manifest.json` recorded when it was
/// installed (checked then), as long as the binary has not changed since; else computed.
pub fn binary_sha256(path: &Path) -> Result<String> {
    let recorded = path
        .parent()
        .map(|d| d.join("manifest.json"))
        .and_then(|m| {
            let bin = std::fs::metadata(path).ok()?.modified().ok()?;
            let written = std::fs::metadata(&m).ok()?.modified().ok()?;
            let manifest: Manifest = serde_json::from_slice(&std::fs::read(&m).ok()?).ok()?;
            (written >= bin && !manifest.sha256.is_empty()).then_some(manifest.sha256)
        });
    match recorded {
        Some(sha) => Ok(sha),
        None => sha256_file(path),
    }
}

/// The hex sha256 of a file, read in chunks.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
    }
    Ok(hex(ctx.finish().as_ref()))
}

/// Copies `reader` into a new executable file at `out`, returning the hex sha256 of the bytes.
pub(super) fn copy_executable(reader: &mut dyn Read, out: &Path) -> Result<String> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o755)
        .open(out)
        .with_context(|| format!("creating {}", out.display()))?;
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = reader.read(&mut buf).context("reading the archive")?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
        f.write_all(&buf[..n])
            .with_context(|| format!("writing {}", out.display()))?;
    }
    f.sync_all()
        .with_context(|| format!("flushing {}", out.display()))?;
    Ok(hex(ctx.finish().as_ref()))
}
