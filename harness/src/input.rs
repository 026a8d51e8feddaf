//! Reading what users hand in (files, `-` for standard input), bounded: a device like
//! `/dev/zero`, a FIFO that never ends or a huge file is refused (or, for a log, only its end
//! is read), never read until memory runs out.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// Bound on a token (`--jwt @file`, `-`).
pub const TOKEN_BYTES: u64 = 1 << 20;
/// Bound on a JSON document (a config, a role, a CA, a report's matrix.json).
pub const DOCUMENT_BYTES: u64 = 256 << 20;
/// How much of the end of a log is read.
pub const LOG_TAIL_BYTES: u64 = 32 << 20;

/// Errors reading an input.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// It could not be read.
    #[error("{what}: reading {path}: {source}")]
    Io {
        /// The flag or input.
        what: String,
        /// Its path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// It is larger than the bound.
    #[error("{what}: {path} is larger than {limit} MiB; pass only the part that matters")]
    TooLarge {
        /// The flag or input.
        what: String,
        /// Its path.
        path: String,
        /// The bound, MiB.
        limit: u64,
    },
}

fn lossless(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Reads at most `limit` bytes of `reader`; more is [`InputError::TooLarge`].
fn bounded(
    mut reader: impl Read,
    what: &str,
    path: &str,
    limit: u64,
) -> Result<String, InputError> {
    let mut bytes = Vec::new();
    reader
        .by_ref()
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| InputError::Io {
            what: what.into(),
            path: path.into(),
            source,
        })?;
    if bytes.len() as u64 > limit {
        return Err(InputError::TooLarge {
            what: what.into(),
            path: path.into(),
            limit: limit >> 20,
        });
    }
    Ok(lossless(bytes))
}

/// Reads `path` (`-`: standard input), at most `limit` bytes.
pub fn read(what: &str, path: &Path, limit: u64) -> Result<String, InputError> {
    let shown = path.display().to_string();
    if path == Path::new("-") {
        return bounded(std::io::stdin().lock(), what, "standard input", limit);
    }
    let io = |source| InputError::Io {
        what: what.into(),
        path: shown.clone(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    bounded(file, what, &shown, limit)
}

/// Reads a log: a regular file's last [`LOG_TAIL_BYTES`] (from the first whole line), saying
/// so when it left the start out; anything else bounded as [`read`] is.
pub fn read_log(what: &str, path: &Path) -> Result<String, InputError> {
    let shown = path.display().to_string();
    let io = |source| InputError::Io {
        what: what.into(),
        path: shown.clone(),
        source,
    };
    if path == Path::new("-") {
        return read(what, path, LOG_TAIL_BYTES);
    }
    let mut file = std::fs::File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() || meta.len() <= LOG_TAIL_BYTES {
        return bounded(file, what, &shown, LOG_TAIL_BYTES);
    }
    file.seek(SeekFrom::Start(meta.len() - LOG_TAIL_BYTES))
        .map_err(io)?;
    let text = bounded(file, what, &shown, LOG_TAIL_BYTES)?;
    tracing::info!(
        "{what}: {shown} is {} MiB; reading its last {} MiB",
        meta.len() >> 20,
        LOG_TAIL_BYTES >> 20
    );
    // The first line is most likely cut.
    Ok(text
        .split_once('\n')
        .map_or(String::new(), |(_, rest)| rest.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endless_and_huge_inputs_are_bounded() {
        let e = read("--jwt", Path::new("/dev/zero"), TOKEN_BYTES).unwrap_err();
        assert!(e.to_string().contains("larger than 1 MiB"), "{e}");
        let e = read_log("--server-log", Path::new("/dev/zero")).unwrap_err();
        assert!(e.to_string().contains("larger than 32 MiB"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.log");
        let line = b"{\"@level\":\"debug\",\"@message\":\"filler\"}\n";
        let mut f = std::fs::File::create(&big).unwrap();
        let n = (LOG_TAIL_BYTES as usize / line.len()) + 1000;
        for _ in 0..n {
            std::io::Write::write_all(&mut f, line).unwrap();
        }
        std::io::Write::write_all(&mut f, b"{\"@message\":\"the last one\"}\n").unwrap();
        drop(f);
        let text = read_log("--server-log", &big).unwrap();
        assert!(text.len() as u64 <= LOG_TAIL_BYTES);
        assert!(text.starts_with("{\"@level\""), "starts at a whole line");
        assert!(text.ends_with("the last one\"}\n"));
    }
}
