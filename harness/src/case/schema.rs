//! The JSON Schema of case files, generated from the Rust types.

use super::model::Case;

/// The schema as pretty JSON (what `cases/schema.json` holds).
pub fn case_schema_json() -> String {
    let schema = schemars::schema_for!(Case);
    let mut s = serde_json::to_string_pretty(&schema).unwrap_or_default();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn repo() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    /// `cases/schema.json` must be what the types generate; `AUTHLAB_BLESS=1` rewrites it.
    #[test]
    fn committed_schema_is_current() {
        let path = repo().join("cases/schema.json");
        let want = case_schema_json();
        if crate::settings::Settings::from_env().bless {
            std::fs::write(&path, &want).unwrap();
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            have == want,
            "cases/schema.json is out of date with the case types; run `AUTHLAB_BLESS=1 cargo test -p harness --lib schema` and commit the result"
        );
    }

    /// Every shipped case file loads and validates.
    #[test]
    fn shipped_cases_are_valid() {
        let cases = crate::case::load::load_dir(&repo().join("cases")).unwrap_or_else(|errs| {
            panic!(
                "{}",
                errs.iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        });
        assert!(cases.len() >= 45, "only {} cases", cases.len());
    }
}
