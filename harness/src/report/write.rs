//! A matrix written as the report's files: `matrix.json`, and `matrix.md` and `index.html`
//! rendered from it.

use std::path::{Path, PathBuf};

use super::{
    html, markdown,
    matrix::{Matrix, ReportError},
};

impl Matrix {
    /// Writes `matrix.json`, `matrix.md` and `index.html` into `dir` (created when missing) and
    /// returns their paths.
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>, ReportError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ReportError::Io { path, source }
        };
        super::files::own_dir(dir, 0o755).map_err(io(dir))?;
        let json = serde_json::to_string_pretty(self).expect("a matrix serializes");
        let files = [
            ("matrix.json", json),
            ("matrix.md", markdown::render(self)),
            ("index.html", html::render(self)),
        ];
        let mut out = Vec::new();
        for (name, text) in files {
            let path = dir.join(name);
            super::files::replace(&path, text.as_bytes(), 0o644).map_err(io(&path))?;
            out.push(path);
        }
        Ok(out)
    }
}
