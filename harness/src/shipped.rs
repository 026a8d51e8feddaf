//! The shipped catalog (`cases/`) and manifests (`manifests/`), built into the binary so that a
//! binary copied away from its source tree still runs the default matrix.
//!
//! A binary whose source tree is still where it was built reads the tree itself (edits show at
//! once). Elsewhere the built-in copy is written once into the cache directory, under a name
//! that changes with its contents, and read from there: cases and their errors keep naming
//! real files.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use include_dir::{Dir, include_dir};

static CASES: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../cases");
static MANIFESTS: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../manifests");

/// Where the shipped catalog was found, once [`locate`] has run in this process.
static ROOT: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();

/// The directory holding `cases/` and `manifests/` as shipped, found once per process (the
/// copy in the cache directory of `settings` when the source tree is gone).
pub fn locate(settings: &crate::settings::Settings) -> Result<PathBuf> {
    ROOT.get_or_init(|| find_root(settings).map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

/// The shipped root as [`locate`] found it, else the source tree when it is still there (every
/// case's manifests are also resolved against it).
pub fn located() -> Option<PathBuf> {
    match ROOT.get() {
        Some(found) => found.clone().ok(),
        None => source_tree(),
    }
}

/// The source tree the binary was built from, when it still holds the catalog.
fn source_tree() -> Option<PathBuf> {
    let tree = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    (tree.join("cases").is_dir() && tree.join("manifests").is_dir()).then_some(tree)
}

fn find_root(settings: &crate::settings::Settings) -> Result<PathBuf> {
    if let Some(tree) = source_tree() {
        return Ok(tree);
    }
    let cache = crate::server::binary::BinaryCache::new(settings)?;
    let dir = cache.root().join("shipped").join(fingerprint());
    if !dir.join("cases").is_dir() {
        extract_to(&dir)?;
    }
    Ok(dir)
}

/// A short digest of everything built in, naming its copy in the cache.
fn fingerprint() -> String {
    let mut h = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for (top, d) in [("cases", &CASES), ("manifests", &MANIFESTS)] {
        for f in files(d) {
            h.update(top.as_bytes());
            h.update(f.path().to_string_lossy().as_bytes());
            h.update(&[0]);
            h.update(&(f.contents().len() as u64).to_le_bytes());
            h.update(f.contents());
        }
    }
    crate::server::binary::hex(&h.finish().as_ref()[..8])
}

fn files<'a>(d: &'a Dir<'a>) -> Vec<&'a include_dir::File<'a>> {
    let mut out: Vec<_> = d.files().collect();
    for sub in d.dirs() {
        out.extend(files(sub));
    }
    out
}

/// Writes the built-in `cases/` and `manifests/` into `dir`: into a scratch directory beside it
/// first, renamed into place whole, so that a run stopped half-way or a run beside this one
/// never sees half a catalog.
pub fn extract_to(dir: &Path) -> Result<()> {
    let parent = dir
        .parent()
        .context("a shipped-catalog directory needs a parent")?;
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let scratch = tempfile::Builder::new()
        .prefix(".shipped-")
        .tempdir_in(parent)
        .with_context(|| format!("creating a scratch directory in {}", parent.display()))?;
    for (top, d) in [("cases", &CASES), ("manifests", &MANIFESTS)] {
        for f in files(d) {
            let path = scratch.path().join(top).join(f.path());
            if let Some(p) = path.parent() {
                std::fs::create_dir_all(p).with_context(|| format!("creating {}", p.display()))?;
            }
            std::fs::write(&path, f.contents())
                .with_context(|| format!("writing {}", path.display()))?;
        }
    }
    let made = scratch.keep();
    match std::fs::rename(&made, dir) {
        Ok(()) => Ok(()),
        // Another run was quicker: its copy is the same.
        Err(_) if dir.join("cases").is_dir() => {
            let _ = std::fs::remove_dir_all(&made);
            Ok(())
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&made);
            Err(e).with_context(|| format!("moving the shipped catalog into {}", dir.display()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The built-in copy is the whole tree, file for file, and loads as the tree does.
    #[test]
    fn the_built_in_catalog_is_the_tree_and_loads() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("copy");
        extract_to(&dir).unwrap();
        let tree = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        for top in ["cases", "manifests"] {
            let listed = |root: &Path| {
                let mut v: Vec<(PathBuf, Vec<u8>)> = walk(&root.join(top))
                    .into_iter()
                    .map(|p| {
                        (
                            p.strip_prefix(root).unwrap().to_path_buf(),
                            std::fs::read(&p).unwrap(),
                        )
                    })
                    .collect();
                v.sort();
                v
            };
            let (want, got) = (listed(&tree), listed(&dir));
            assert!(!want.is_empty());
            assert_eq!(
                want.iter().map(|w| &w.0).collect::<Vec<_>>(),
                got.iter().map(|g| &g.0).collect::<Vec<_>>()
            );
            assert!(
                want == got,
                "{top}: a file's contents differ from the tree's"
            );
        }
        let loaded = crate::case::load::load_dir(&dir.join("cases")).unwrap();
        assert!(loaded.len() > 50, "{} cases", loaded.len());
        // Once there, extracting again (another run) keeps it.
        extract_to(&dir).unwrap();
        assert!(dir.join("cases").is_dir());
    }

    fn walk(d: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(d).unwrap().map(Result::unwrap) {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
        out
    }
}
