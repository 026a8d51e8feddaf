//! Writing report and artifact files without following links: a symbolic link planted where
//! authlab writes (a shared temp or CI workspace) must not make it chmod, truncate or fill
//! another file with tokens. Each file is replaced (the old entry unlinked, a new one created
//! exclusively, which fails on a link); each directory must be a real directory.

use std::{
    io::Write,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::Path,
};

/// Creates `dir` (and its parents) with `mode` when missing; refuses a `dir` that is a
/// symbolic link or not a directory.
pub fn own_dir(dir: &Path, mode: u32) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)?;
    refuse_link(dir)?;
    let meta = std::fs::symlink_metadata(dir)?;
    if !meta.is_dir() {
        return Err(std::io::Error::other(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    Ok(())
}

/// Writes `bytes` to `path` as a new file of `mode`: what was at `path` (a file, or a link to
/// anything) is removed first, never written through.
pub fn replace(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            return Err(std::io::Error::other(format!(
                "{} is a directory",
                path.display()
            )));
        }
        Ok(_) => std::fs::remove_file(path)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    f.write_all(bytes)
}

fn refuse_link(path: &Path) -> std::io::Result<()> {
    if std::fs::symlink_metadata(path)?.file_type().is_symlink() {
        return Err(std::io::Error::other(format!(
            "{} is a symbolic link; authlab writes only into directories of its own (remove the link or choose another path)",
            path.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// A planted link to a victim file or directory: the victim keeps its content and mode.
    #[test]
    fn links_are_replaced_or_refused_never_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let victim = tmp.path().join("victim.txt");
        std::fs::write(&victim, "precious").unwrap();
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).unwrap();
        let out = tmp.path().join("out");
        std::fs::create_dir(&out).unwrap();
        std::os::unix::fs::symlink(&victim, out.join("matrix.json")).unwrap();
        replace(&out.join("matrix.json"), b"{}", 0o600).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        let m = std::fs::metadata(&victim).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o644);
        assert_eq!(
            std::fs::read_to_string(out.join("matrix.json")).unwrap(),
            "{}"
        );
        assert!(
            !std::fs::symlink_metadata(out.join("matrix.json"))
                .unwrap()
                .file_type()
                .is_symlink()
        );

        let victim_dir = tmp.path().join("victim-dir");
        std::fs::create_dir(&victim_dir).unwrap();
        std::fs::set_permissions(&victim_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let linked = tmp.path().join("artifacts");
        std::os::unix::fs::symlink(&victim_dir, &linked).unwrap();
        let e = own_dir(&linked, 0o700).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        let m = std::fs::metadata(&victim_dir).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o755);
    }
}
