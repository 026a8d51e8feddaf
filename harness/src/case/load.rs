//! Loading case files: YAML → [`Case`], with one-paragraph errors naming file, line, field and fix.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    path::{Path, PathBuf},
};

use super::model::{
    AuthMethod, Case, ClusterAction, Expect, KubeMode, LogExpect, ObjectSource, ResponseExpect,
    TextMatch, TokenKind, TokenSpec, Topology,
};

/// A case file that was read and validated.
#[derive(Debug, Clone)]
pub struct LoadedCase {
    /// `::`-separated name derived from the path under the cases directory.
    pub name: String,
    /// The file it came from.
    pub path: PathBuf,
    /// The directory manifest paths are resolved against (the cases directory's parent).
    pub base_dir: PathBuf,
    /// The parsed case.
    pub case: Case,
    /// The file's text (kept for artifacts).
    pub text: String,
    /// The placeholders the file refers to (each one [`crate::placeholders::KNOWN`]).
    pub placeholders: BTreeSet<String>,
    /// The objects of every manifest the case names, read and parsed once at load.
    pub manifests: BTreeMap<String, Vec<serde_json::Value>>,
}

impl LoadedCase {
    /// True when the case refers to placeholder `name`.
    pub fn uses(&self, name: &str) -> bool {
        self.placeholders.contains(name)
    }

    /// The objects `obj` stands for (a manifest read at load, or one inline object).
    pub fn objects_of(&self, obj: &ObjectSource) -> Vec<serde_json::Value> {
        match obj {
            ObjectSource::Path(p) => self.manifests.get(p).cloned().unwrap_or_default(),
            ObjectSource::Inline(m) => vec![serde_json::Value::Object(m.inline.clone())],
        }
    }
}

/// A problem with a case file, rendered as one paragraph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<u32>,
    /// 1-based column, when known.
    pub column: Option<u32>,
    /// Dotted field path (e.g. `expect.login.status`), when known.
    pub field: Option<String>,
    /// What is wrong and what was expected.
    pub problem: String,
    /// How to fix it.
    pub fix: String,
}

impl fmt::Display for CaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        write!(f, ": ")?;
        if let Some(field) = &self.field {
            write!(f, "field `{field}`: ")?;
        }
        write!(
            f,
            "{} Fix: {}",
            self.problem.trim_end(),
            self.fix.trim_end()
        )
    }
}

impl std::error::Error for CaseError {}

impl CaseError {
    /// As `check --format json` prints it: `{file, line, column, field, message, fix}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "file": self.file.display().to_string(),
            "line": self.line,
            "column": self.column,
            "field": self.field,
            "message": self.problem.trim_end(),
            "fix": self.fix.trim_end(),
        })
    }

    /// As a GitHub Actions workflow command (`::error file=…,line=…::…`), escaped as the
    /// runner reads it.
    pub fn github_annotation(&self) -> String {
        let data = |s: &str| {
            s.replace('%', "%25")
                .replace('\r', "%0D")
                .replace('\n', "%0A")
        };
        let prop = |s: &str| data(s).replace(':', "%3A").replace(',', "%2C");
        let mut props = vec![format!("file={}", prop(&self.file.display().to_string()))];
        if let Some(l) = self.line {
            props.push(format!("line={l}"));
        }
        if let Some(c) = self.column {
            props.push(format!("col={c}"));
        }
        if let Some(f) = &self.field {
            props.push(format!("title={}", prop(&format!("field {f}"))));
        }
        format!(
            "::error {}::{}",
            props.join(","),
            data(&format!(
                "{} Fix: {}",
                self.problem.trim_end(),
                self.fix.trim_end()
            ))
        )
    }
}

/// Finds the case files below `dir` (`*.yaml`, `*.yml`), sorted.
pub fn find_case_files(dir: &Path) -> Result<Vec<PathBuf>, CaseError> {
    let mut out = Vec::new();
    walk(dir, &mut out).map_err(|e| CaseError {
        file: dir.to_path_buf(),
        line: None,
        column: None,
        field: None,
        problem: format!("cannot read the cases directory: {e}."),
        fix: "pass an existing directory with --cases (or AUTHLAB_CASES).".into(),
    })?;
    out.sort();
    Ok(out)
}

/// A digest of the case files below `dir` (their paths and contents): two runs with the same
/// digest ran the same catalog. `sha256:` and 16 hex digits.
pub fn digest(dir: &Path) -> Result<String, CaseError> {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for f in find_case_files(dir)? {
        let rel = f.strip_prefix(dir).unwrap_or(&f);
        ctx.update(rel.to_string_lossy().as_bytes());
        ctx.update(&[0]);
        ctx.update(read_case_text(&f)?.as_bytes());
        ctx.update(&[0]);
    }
    let hex: String = ctx
        .finish()
        .as_ref()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(format!("sha256:{hex}"))
}

/// How deep case directories may nest.
const MAX_DEPTH: usize = 16;
/// The largest case file read.
pub const MAX_CASE_BYTES: u64 = 1 << 20;

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut seen = std::collections::HashSet::new();
    walk_from(dir, 0, &mut seen, out)
}

/// Walks `dir`, following symbolic links but never into a directory twice (a link loop) nor
/// deeper than [`MAX_DEPTH`]. Every `*.yaml`/`*.yml` entry is listed, whatever it is: loading
/// then refuses what is not a regular file.
fn walk_from(
    dir: &Path,
    depth: usize,
    seen: &mut std::collections::HashSet<(u64, u64)>,
    out: &mut Vec<PathBuf>,
) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(dir)?;
    if depth > MAX_DEPTH || !seen.insert((meta.dev(), meta.ino())) {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let is_case = matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        );
        match std::fs::metadata(&path) {
            Ok(m) if m.is_dir() => walk_from(&path, depth + 1, seen, out)?,
            _ if is_case => out.push(path),
            _ => {}
        }
    }
    Ok(())
}

/// Reads a case file: a regular file (not a FIFO, device or directory), at most
/// [`MAX_CASE_BYTES`], UTF-8.
fn read_case_text(file: &Path) -> Result<String, CaseError> {
    use std::io::Read;
    let err = |problem: String, fix: &str| CaseError {
        file: file.to_path_buf(),
        line: None,
        column: None,
        field: None,
        problem,
        fix: fix.into(),
    };
    let meta = std::fs::metadata(file).map_err(|e| {
        err(
            format!("cannot read the file: {e}."),
            "check the path and its permissions (a symbolic link must point at a file).",
        )
    })?;
    if !meta.is_file() {
        return Err(err(
            "this is not a regular file (a FIFO, device, socket or directory named like a case)."
                .into(),
            "remove it from the cases directory, or rename it so it does not end in .yaml.",
        ));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(file)
        .and_then(|f| f.take(MAX_CASE_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| {
            err(
                format!("cannot read the file: {e}."),
                "check the path and its permissions.",
            )
        })?;
    if bytes.len() as u64 > MAX_CASE_BYTES {
        return Err(err(
            format!("the file is larger than {} KiB.", MAX_CASE_BYTES / 1024),
            "a case is a short YAML document; split it, or move large objects into manifests.",
        ));
    }
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..at].iter().filter(|b| **b == b'\n').count() as u32 + 1;
        CaseError {
            line: Some(line),
            ..err(
                format!("the file is not UTF-8 text (invalid byte at offset {at})."),
                "save the file as UTF-8.",
            )
        }
    })
}

/// Derives the case name from its path under `cases_dir`: `kubernetes/client-token/x.yaml` →
/// `kubernetes::client_token::x`.
pub fn case_name(cases_dir: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(cases_dir).unwrap_or(file);
    let rel = rel.with_extension("");
    rel.components()
        .map(|c| normalize(&c.as_os_str().to_string_lossy()))
        .collect::<Vec<_>>()
        .join("::")
}

/// Maps a case name back to its file (the `--exact` fast path), if such a file exists.
pub fn file_for_name(cases_dir: &Path, name: &str) -> Option<PathBuf> {
    let parts: Vec<&str> = name.split("::").collect();
    let (last, dirs) = parts.split_last()?;
    let mut dir = cases_dir.to_path_buf();
    for part in dirs {
        dir = find_entry(&dir, part, None)?;
    }
    find_entry(&dir, last, Some("yaml")).or_else(|| find_entry(&dir, last, Some("yml")))
}

fn normalize(s: &str) -> String {
    s.replace(['-', '.', ' '], "_")
}

fn find_entry(dir: &Path, want: &str, ext: Option<&str>) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| match ext {
            None => {
                p.is_dir()
                    && p.file_name()
                        .is_some_and(|n| normalize(&n.to_string_lossy()) == want)
            }
            Some(ext) => {
                p.is_file()
                    && p.extension().is_some_and(|e| e == ext)
                    && p.file_stem()
                        .is_some_and(|n| normalize(&n.to_string_lossy()) == want)
            }
        })
}

/// Loads every case below `cases_dir`. Returns all cases or every error found.
pub fn load_dir(cases_dir: &Path) -> Result<Vec<LoadedCase>, Vec<CaseError>> {
    let files = find_case_files(cases_dir).map_err(|e| vec![e])?;
    let mut cases = Vec::new();
    let mut errors = Vec::new();
    for file in files {
        match load_file_all(cases_dir, &file) {
            Ok(c) => cases.push(c),
            Err(e) => errors.extend(e),
        }
    }
    let mut by_name: BTreeMap<&str, &Path> = BTreeMap::new();
    for c in &cases {
        if let Some(first) = by_name.insert(&c.name, &c.path) {
            errors.push(CaseError {
                file: c.path.clone(),
                line: None,
                column: None,
                field: None,
                problem: format!(
                    "its case name `{}` is also the name of {} (`-`, `.` and ` ` read as `_`).",
                    c.name,
                    first.display()
                ),
                fix: "rename one of the two files.".into(),
            });
        }
    }
    if errors.is_empty() {
        Ok(cases)
    } else {
        Err(errors)
    }
}

/// Loads and validates one case file (its first problem, in file order).
pub fn load_file(cases_dir: &Path, file: &Path) -> Result<LoadedCase, CaseError> {
    load_file_all(cases_dir, file).map_err(|mut e| e.remove(0))
}

/// Loads and validates one case file, or names every problem it has (in file order, each with
/// its own line, field and fix).
pub fn load_file_all(cases_dir: &Path, file: &Path) -> Result<LoadedCase, Vec<CaseError>> {
    let text = read_case_text(file).map_err(|e| vec![e])?;
    let (case, mut problems) = match parse_all(file, &text) {
        Ok(case) => (case, Vec::new()),
        Err((Some(rest), problems)) => (*rest, problems),
        Err((None, problems)) => return Err(problems),
    };
    // The checks below see a case without the nodes refused above: what they say of those
    // fields (or of what lies under them) is a consequence, not another problem.
    let refused: Vec<String> = problems.iter().filter_map(|p| p.field.clone()).collect();
    let base_dir = cases_dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let placeholders = crate::placeholders::used_in(&text);
    let mut loaded = LoadedCase {
        name: case_name(cases_dir, file),
        path: file.to_path_buf(),
        base_dir,
        case,
        text,
        placeholders,
        manifests: BTreeMap::new(),
    };
    let mut more = validate(&loaded);
    more.extend(check_placeholders(&loaded).err());
    // A manifest named above as not found is not read (nor reported again).
    if !more.iter().any(|p| p.problem.contains("was not found")) {
        match read_manifests(&loaded) {
            Ok(m) => loaded.manifests = m,
            Err(e) => more.push(e),
        }
    }
    problems.extend(more.into_iter().filter(|p| {
        !p.field.as_ref().is_some_and(|f| {
            refused.iter().any(|r| {
                f == r || f.starts_with(&format!("{r}.")) || r.starts_with(&format!("{f}."))
            })
        })
    }));
    if problems.is_empty() {
        return Ok(loaded);
    }
    problems.sort_by_key(|e| e.line.unwrap_or(u32::MAX));
    problems.dedup_by(|a, b| a.field == b.field && a.problem == b.problem);
    Err(problems)
}

/// The most problems of one file named: past it, the rest are likely its consequences.
const MAX_PROBLEMS: usize = 32;

/// Parses case text, naming every field the types refuse: each problem is recorded and its
/// node taken out, and the rest parsed again (a YAML syntax error ends it: nothing after it
/// can be read). With the problems, the case without those nodes, when it then parses (its
/// other checks can still run).
pub fn parse_all(file: &Path, text: &str) -> Result<Case, (Option<Box<Case>>, Vec<CaseError>)> {
    let first = match parse(file, text) {
        Ok(case) => return Ok(case),
        Err(e) => e,
    };
    let Ok(mut value) = serde_saphyr::from_str::<serde_json::Value>(text) else {
        return Err((None, vec![first]));
    };
    let mut problems = Vec::new();
    let mut rest = None;
    while problems.len() < MAX_PROBLEMS {
        let e = match serde_path_to_error::deserialize::<_, Case>(value.clone()) {
            Ok(case) => {
                rest = Some(Box::new(case));
                break;
            }
            Err(e) => e,
        };
        let path: Vec<serde_path_to_error::Segment> = e.path().iter().cloned().collect();
        let field = e.path().to_string();
        let message = first_line(&e.inner().to_string());
        let line = line_of_field(text, &field).or(first.line);
        // A field missing where one was just taken out (misspelt, or of the wrong type): a
        // consequence of that one, not another problem.
        let consequence = missing_field(&message).is_some()
            && problems.iter().any(|p: &CaseError| {
                p.field
                    .as_ref()
                    .is_some_and(|f| f.starts_with(&format!("{field}.")))
            });
        if !consequence {
            problems.push(CaseError {
                file: file.to_path_buf(),
                line,
                column: line.map(|_| 1),
                field: (field != ".").then_some(field),
                fix: fix_for(&message),
                problem: format!("{message}."),
            });
        }
        let recovered = match missing_field(&message) {
            // A required field: a stand-in where a minimal case has one, else the node
            // that lacks it goes.
            Some(name) => fill_in(&mut value, &path, name) || remove_at(&mut value, &path),
            None => remove_at(&mut value, &path),
        };
        if !recovered {
            break;
        }
    }
    if problems.is_empty() {
        problems.push(first);
    }
    problems.sort_by_key(|e| e.line.unwrap_or(u32::MAX));
    Err((rest, problems))
}

/// The field a `missing field `x`` message names.
fn missing_field(message: &str) -> Option<&str> {
    message
        .strip_prefix("missing field `")
        .and_then(|m| m.split('`').next())
}

/// Puts the stand-in of a minimal case for the required field `name` of the node at `path`
/// (true when the minimal case has one there).
fn fill_in(
    value: &mut serde_json::Value,
    path: &[serde_path_to_error::Segment],
    name: &str,
) -> bool {
    use serde_path_to_error::Segment;
    let minimal = serde_json::json!({
        "about": "",
        "auth": "kubernetes",
        "client": { "service_account": "default/stand-in" },
        "expect": {},
    });
    let mut stand_in = &minimal;
    let mut node = value;
    for seg in path {
        let Segment::Map { key } = seg else {
            return false;
        };
        stand_in = &stand_in[key.as_str()];
        node = match node.get_mut(key.as_str()) {
            Some(n) => n,
            None => return false,
        };
    }
    match (&stand_in[name], node.as_object_mut()) {
        (serde_json::Value::Null, _) | (_, None) => false,
        (v, Some(m)) => m.insert(name.to_string(), v.clone()).is_none(),
    }
}

/// Takes out the node at `path` (true when there was one).
fn remove_at(value: &mut serde_json::Value, path: &[serde_path_to_error::Segment]) -> bool {
    use serde_path_to_error::Segment;
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut node = value;
    for seg in parents {
        node = match (seg, node) {
            (Segment::Map { key }, serde_json::Value::Object(m)) => match m.get_mut(key) {
                Some(n) => n,
                None => return false,
            },
            (Segment::Seq { index }, serde_json::Value::Array(a)) => match a.get_mut(*index) {
                Some(n) => n,
                None => return false,
            },
            _ => return false,
        };
    }
    match (last, node) {
        (Segment::Map { key }, serde_json::Value::Object(m)) => m.remove(key).is_some(),
        (Segment::Seq { index }, serde_json::Value::Array(a)) if *index < a.len() => {
            a.remove(*index);
            true
        }
        _ => false,
    }
}

/// Parses case text; errors carry the YAML location and the field path.
pub fn parse(file: &Path, text: &str) -> Result<Case, CaseError> {
    match serde_saphyr::from_str::<Case>(text) {
        Ok(case) => Ok(case),
        Err(err) => {
            let loc = err.location();
            let (line, column) = match loc {
                Some(l) if l.line() > 0 => {
                    (u32::try_from(l.line()).ok(), u32::try_from(l.column()).ok())
                }
                _ => (None, None),
            };
            // A second pass through a JSON value names the field path of type errors.
            let field = serde_saphyr::from_str::<serde_json::Value>(text)
                .ok()
                .and_then(|v| {
                    serde_path_to_error::deserialize::<_, Case>(v)
                        .err()
                        .map(|e| e.path().to_string())
                })
                .filter(|p| p != ".");
            let message = first_line(&err.to_string());
            Err(CaseError {
                file: file.to_path_buf(),
                line,
                column,
                field,
                fix: fix_for(&message),
                problem: format!("{message}."),
            })
        }
    }
}

fn first_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or(s).trim();
    let line = line.trim_start_matches("error: ");
    // The position is already in front of the message: drop serde-saphyr's own copy.
    let line = regex::Regex::new(r"^line \d+ column \d+: ")
        .map(|re| re.replace(line, "").into_owned())
        .unwrap_or_else(|_| line.to_string());
    line.trim_end_matches('.').to_string()
}

fn fix_for(message: &str) -> String {
    if message.contains("unknown field") {
        "remove the field or correct its spelling; cases/README.md lists every field.".into()
    } else if message.contains(crate::case::sa_ref::NOT_A_REF) {
        "write the service account as `<namespace>/<name>`, e.g. `default/internal-app`.".into()
    } else if message.contains("unknown variant") {
        "use one of the listed values.".into()
    } else if message.contains("missing field") {
        "add the field; cases/README.md shows an example.".into()
    } else if message.contains("invalid type")
        || message.starts_with("invalid u")
        || message.starts_with("invalid i")
        || message.starts_with("invalid bool")
        || message.starts_with("expected ")
    {
        "give the value the type cases/README.md names for this field (a number, a string, a list, true/false), and check the indentation.".into()
    } else {
        "correct the YAML syntax at that position (indentation, quoting, colons).".into()
    }
}

/// Checks contradictions and references that the types cannot express.
fn validate(lc: &LoadedCase) -> Vec<CaseError> {
    let mut bad = Vec::new();
    let case = &lc.case;
    let err = |field: &str, problem: String, fix: &str| {
        let line = line_of_field(&lc.text, field);
        CaseError {
            file: lc.path.clone(),
            line,
            column: line.map(|_| 1),
            field: Some(field.to_string()),
            problem,
            fix: fix.to_string(),
        }
    };
    match (case.auth, case.mode) {
        (AuthMethod::Kubernetes, None) => {
            bad.push(err(
                "mode",
                "kubernetes auth needs a mode; none was given.".into(),
                "add `mode: local-token`, `mode: client-token` or `mode: reviewer-jwt`.",
            ));
        }
        (AuthMethod::Jwt, Some(_)) => {
            bad.push(err(
                "mode",
                "`mode` applies to kubernetes auth only, but `auth` is jwt.".into(),
                "remove `mode`, or set `auth: kubernetes`.",
            ));
        }
        _ => {}
    }
    match (case.mode, &case.reviewer) {
        (Some(KubeMode::ReviewerJwt), None) => {
            bad.push(err(
                "reviewer",
                "mode reviewer-jwt needs a `reviewer` token, but none was given.".into(),
                "add `reviewer: { service_account: <namespace>/<name> }`.",
            ));
        }
        (Some(KubeMode::ClientToken | KubeMode::LocalToken) | None, Some(_)) => {
            bad.push(err(
                "reviewer",
                "a `reviewer` token is only used in mode reviewer-jwt.".into(),
                "remove `reviewer`, or set `mode: reviewer-jwt`.",
            ));
        }
        _ => {}
    }
    if case.mode == Some(KubeMode::LocalToken) && case.topology != Topology::Inside {
        bad.push(err(
            "topology",
            "mode local-token needs the server inside the cluster (it reviews with its own pod token), but topology is outside.".into(),
            "set `topology: inside`, or use `mode: client-token` / `mode: reviewer-jwt`.",
        ));
    }
    if let Some(m) = &case.login.mount
        && !case.server.mounts.contains_key(m)
    {
        bad.push(err(
            "login.mount",
            format!("`{m}` is not one of the case's server.mounts."),
            "name a mount of `server.mounts`, or leave `login.mount` out to log in at the trial's own mount.",
        ));
    }
    bad.extend(check_token(lc, "client", &case.client, &err).err());
    if let Some(r) = &case.reviewer {
        bad.extend(check_token(lc, "reviewer", r, &err).err());
    }
    for (i, obj) in case.cluster.objects.iter().enumerate() {
        bad.extend(check_object(lc, &format!("cluster.objects[{i}]"), obj, &err).err());
    }
    for (i, obj) in case
        .cluster
        .other
        .iter()
        .flat_map(|o| &o.objects)
        .enumerate()
    {
        bad.extend(check_object(lc, &format!("cluster.other.objects[{i}]"), obj, &err).err());
    }
    for (field, t) in std::iter::once(("client", &case.client))
        .chain(case.reviewer.iter().map(|r| ("reviewer", r)))
    {
        if t.cluster == crate::case::model::TokenCluster::Other && case.cluster.other.is_none() {
            bad.push(err(
                &format!("{field}.cluster"),
                "the token comes from the second cluster, but the case has none.".into(),
                "add `cluster: { other: { objects: [...] } }` with the token's service account.",
            ));
        }
    }
    // The waits of a trial share one budget: three `wait: 30s` are 90 s, not three times 30.
    let mut waited = std::time::Duration::ZERO;
    for (i, action) in case.before_login.iter().enumerate() {
        let field = format!("before_login[{i}]");
        match action {
            ClusterAction::Apply(obj) => bad.extend(check_object(lc, &field, obj, &err).err()),
            ClusterAction::Delete(what) => {
                if let Err(why) = super::manifest::DeleteSpec::parse(what) {
                    bad.push(err(
                        &field,
                        format!("`delete: {what}`: {why}."),
                        "write e.g. `delete: ServiceAccount default/internal-app`, or `delete: Pod default/app-0 --grace-period=0 --force`.",
                    ));
                }
            }
            // Parsed as a `ServiceAccountRef` at load.
            ClusterAction::RecreateServiceAccount(_) => {}
            ClusterAction::Wait(d) => match humantime::parse_duration(d) {
                Ok(t) if waited + t <= crate::case::model::MAX_WAIT => waited += t,
                Ok(t) => {
                    waited += t;
                    bad.push(err(
                        &format!("{field}.wait"),
                        format!(
                            "the waits up to here come to {}, more than the {} s a trial may wait in all.",
                            humantime::format_duration(waited),
                            crate::case::model::MAX_WAIT.as_secs()
                        ),
                        "wait at most 30s in all: give the token a shorter lifetime (expiration_seconds) instead.",
                    ));
                }
                Err(e) => {
                    bad.push(err(
                        &format!("{field}.wait"),
                        format!("`{d}` is not a duration ({e})."),
                        "write a duration such as `5s` or `1500ms`.",
                    ));
                }
            },
            ClusterAction::ReplaceServerPod {} | ClusterAction::RotateServerToken {} => {
                if case.topology != crate::case::model::Topology::Inside {
                    bad.push(err(
                        &field,
                        "only a server inside the cluster has a pod to replace or a token file to rotate.".into(),
                        "add `topology: inside`, or drop the action.",
                    ));
                }
            }
        }
    }
    for (i, step) in case.steps.iter().enumerate() {
        if step.kv_read.is_some() == step.kv_write.is_some() {
            bad.push(err(
                &format!("steps[{i}]"),
                "a step needs exactly one of `kv_read` and `kv_write`.".into(),
                "write e.g. `- { kv_read: allowed/config, expect: { status: 200 } }`.",
            ));
        }
        bad.extend(check_response(&format!("steps[{i}].expect"), &step.expect, &err).err());
    }
    let second =
        case.cluster.other.is_some() || lc.placeholders.iter().any(|p| p.starts_with("other."));
    for (field, e) in std::iter::once(("expect".to_string(), &case.expect)).chain(
        case.flavours
            .iter()
            .map(|(k, o)| (format!("flavours.{k}.expect"), &o.expect)),
    ) {
        if e.cluster_requests.as_ref().and_then(|c| c.cluster)
            == Some(crate::case::model::TokenCluster::Other)
            && !second
        {
            bad.push(err(
                &format!("{field}.cluster_requests.cluster"),
                "the expectation is about the second cluster, but the case has none.".into(),
                "add `cluster: { other: { objects: [...] } }`, or leave `cluster` out.",
            ));
        }
    }
    for (flavour, o) in &case.flavours {
        let f = flavour.split(':').next().unwrap_or_default();
        if f != "openbao" && f != "vault" {
            bad.push(err(
                &format!("flavours.{flavour}"),
                format!(
                    "unknown flavour `{flavour}`; expected `openbao`, `vault`, or one of them with a version such as `openbao:2.6`."
                ),
                "use `flavours: { \"openbao:2.6\": { expect: ... } }` or `vault:`.",
            ));
        }
        check_expect(
            &format!("flavours.{flavour}.expect"),
            &o.expect,
            &err,
            &mut bad,
        );
    }
    for (key, o) in &case.kubernetes {
        if super::model::kubernetes_key_matches(key, (0, true)).is_none() {
            bad.push(err(
                &format!("kubernetes.{key}"),
                format!(
                    "`{key}` is not a Kubernetes version key; expected a minor version (`1.24`), `<1.31` or `>=1.31`."
                ),
                "use e.g. `kubernetes: { \"<1.31\": { expect: ... } }`.",
            ));
        }
        check_expect(
            &format!("kubernetes.{key}.expect"),
            &o.expect,
            &err,
            &mut bad,
        );
    }
    check_expect("expect", &case.expect, &err, &mut bad);
    let sim_only = case.client.token == TokenKind::HandMade
        || case
            .reviewer
            .as_ref()
            .is_some_and(|r| r.token == TokenKind::HandMade)
        || case.cluster.settings != Default::default();
    if sim_only && case.applies.clusters.iter().any(|c| !c.owns_keys()) {
        bad.push(err(
            "applies.clusters",
            "hand-made tokens and cluster settings need a cluster whose key and flags authlab owns (the sim, or the API server it starts), but the case also lists another cluster.".into(),
            "set `applies: { clusters: [sim, apiserver] }`.",
        ));
    }
    if sim_only && case.applies.clusters.is_empty() {
        bad.push(err(
            "applies.clusters",
            "hand-made tokens and cluster settings need a cluster whose key and flags authlab owns (the sim, or the API server it starts), but `applies.clusters` is empty (all clusters).".into(),
            "add `applies: { clusters: [sim, apiserver], reason: \"...\" }`.",
        ));
    }
    bad.extend(check_eso(case, &err).err());
    bad
}

type ErrFn<'a> = dyn Fn(&str, String, &str) -> CaseError + 'a;

fn check_token(
    lc: &LoadedCase,
    field: &str,
    t: &TokenSpec,
    err: &ErrFn<'_>,
) -> Result<(), CaseError> {
    let _ = lc;
    let hand_made_only = !t.claims.is_empty() || t.time_shift.is_some() || t.foreign_key;
    if hand_made_only && t.token != TokenKind::HandMade {
        return Err(err(
            &format!("{field}.token"),
            "`claims`, `time_shift` and `foreign_key` apply to hand-made tokens only.".into(),
            "set `token: hand-made`, or remove those fields.",
        ));
    }
    if t.token == TokenKind::LegacySecret
        && (t.audiences.is_some() || t.expiration_seconds.is_some() || t.bound_pod.is_some())
    {
        return Err(err(
            &format!("{field}.token"),
            "legacy secret tokens have no audiences, expiry or bound pod.".into(),
            "remove `audiences`/`expiration_seconds`/`bound_pod`, or use `token: projected`.",
        ));
    }
    if let Some(exp) = t.expiration_seconds
        && t.token == TokenKind::Projected
        && exp < 600
    {
        return Err(err(
            &format!("{field}.expiration_seconds"),
            format!("{exp} is below the API server's minimum of 600 seconds for TokenRequest."),
            "use 600 or more, or a hand-made token with `time_shift` for an expired token.",
        ));
    }
    if let Some(exp) = t.expiration_seconds
        && exp > MAX_TOKEN_SECONDS
    {
        return Err(err(
            &format!("{field}.expiration_seconds"),
            format!(
                "{exp} is more than the {MAX_TOKEN_SECONDS} seconds (about 136 years) a token can last here."
            ),
            "use a realistic lifetime, e.g. 3600.",
        ));
    }
    if let Some(shift) = t.time_shift
        && shift.unsigned_abs() > MAX_TOKEN_SECONDS
    {
        return Err(err(
            &format!("{field}.time_shift"),
            format!(
                "{shift} moves the token's times by more than {MAX_TOKEN_SECONDS} seconds (about 136 years)."
            ),
            "use e.g. `time_shift: -7200` for a token that expired an hour ago.",
        ));
    }
    Ok(())
}

/// The longest token lifetime or time shift a case may ask for (2^32 s, about 136 years).
const MAX_TOKEN_SECONDS: u64 = 1 << 32;

fn check_object(
    lc: &LoadedCase,
    field: &str,
    obj: &ObjectSource,
    err: &ErrFn<'_>,
) -> Result<(), CaseError> {
    match obj {
        ObjectSource::Path(p) => {
            if resolve_manifest(lc, p).is_none() {
                return Err(err(
                    field,
                    format!(
                        "manifest `{p}` was not found (looked in {}; a manifest is a relative `.yaml`, `.yml` or `.json` path that stays inside one of them).",
                        manifest_roots(lc)
                            .iter()
                            .map(|r| r.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    "correct the path (e.g. `manifests/sa/internal-app.yaml`) or inline the object.",
                ));
            }
        }
        ObjectSource::Inline(obj) => {
            let map = &obj.inline;
            for key in ["apiVersion", "kind", "metadata"] {
                if !map.contains_key(key) {
                    return Err(err(
                        field,
                        format!("the inline object has no `{key}`."),
                        "give every inline object apiVersion, kind and metadata.name.",
                    ));
                }
            }
            if let Some(problem) =
                super::manifest::check_object(&serde_json::Value::Object(map.clone()), 1)
            {
                return Err(err(
                    field,
                    format!(
                        "the inline object: {}.",
                        problem.trim_start_matches("document 1 ")
                    ),
                    "use one of the kinds listed, with apiVersion, kind and metadata.name.",
                ));
            }
        }
    }
    Ok(())
}

/// The 1-based line where `needle` first appears.
fn line_of_text(text: &str, needle: &str) -> Option<u32> {
    text.lines()
        .position(|l| l.contains(needle))
        .map(|i| i as u32 + 1)
}

/// Every placeholder must be one a trial fills.
fn check_placeholders(lc: &LoadedCase) -> Result<(), CaseError> {
    let mounts = &lc.case.server.mounts;
    // `${mount.<name>}` and `${accessor.<name>}` of the case's further mounts.
    let of_mount = |p: &str| {
        ["mount.", "accessor."]
            .iter()
            .any(|pre| p.strip_prefix(pre).is_some_and(|n| mounts.contains_key(n)))
    };
    let known = |p: &String| crate::placeholders::KNOWN.iter().any(|(k, _)| k == p) || of_mount(p);
    // Placeholders that have no value in this case's trials: sent literally they would look like
    // a real finding (a 401 for a `token_reviewer_jwt` of `${pod.jwt}`).
    let valueless = |p: &str| -> Option<(&'static str, &'static str)> {
        if p == "pod.jwt" && lc.case.topology == crate::case::model::Topology::Outside {
            return Some((
                "only a server inside the cluster has a pod token, and this case's server is outside it (topology: outside)",
                "set `topology: inside`, or use `${reviewer.jwt}` for a reviewer account's token.",
            ));
        }
        // `${other.ca}` alone is any other cluster's CA; the rest are the second cluster's.
        if p.starts_with("other.") && p != "other.ca" && lc.case.cluster.other.is_none() {
            return Some((
                "the trial has no second cluster",
                "add `cluster: { other: {} }` to the case, or use the `${cluster.…}` placeholder.",
            ));
        }
        None
    };
    if let Some((p, (why, fix))) = lc
        .placeholders
        .iter()
        .find_map(|p| valueless(p).map(|w| (p, w)))
    {
        let needle = format!("${{{p}}}");
        return Err(CaseError {
            file: lc.path.clone(),
            line: line_of_text(&lc.text, &needle),
            column: None,
            field: None,
            problem: format!("`{needle}` has no value here: {why}."),
            fix: fix.into(),
        });
    }
    match lc.placeholders.iter().find(|p| !known(p)) {
        None => Ok(()),
        Some(p) => {
            let needle = format!("${{{p}}}");
            let line = lc
                .text
                .lines()
                .position(|l| l.contains(&needle))
                .map(|i| i as u32 + 1);
            Err(CaseError {
                file: lc.path.clone(),
                line,
                column: None,
                field: None,
                problem: match p.split_once('.') {
                    Some((pre @ ("mount" | "accessor"), name)) => format!(
                        "`${{{p}}}` names a mount `{name}` the case does not have ({}).",
                        if mounts.is_empty() {
                            "it has no `server.mounts`".to_string()
                        } else {
                            format!(
                                "its `server.mounts`: {}",
                                mounts.keys().cloned().collect::<Vec<_>>().join(", ")
                            )
                        }
                    )
                    .replace(
                        "names a mount",
                        if pre == "mount" {
                            "names a mount"
                        } else {
                            "names the accessor of a mount"
                        },
                    ),
                    _ => format!("`${{{p}}}` is not a placeholder authlab fills."),
                },
                fix: format!(
                    "use one of {}{}.",
                    crate::placeholders::KNOWN
                        .iter()
                        .map(|(k, _)| format!("${{{k}}}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    mounts
                        .keys()
                        .map(|n| format!(", ${{mount.{n}}}, ${{accessor.{n}}}"))
                        .collect::<String>()
                ),
            })
        }
    }
}

/// Reads and parses every manifest the case names, once.
fn read_manifests(lc: &LoadedCase) -> Result<BTreeMap<String, Vec<serde_json::Value>>, CaseError> {
    let case = &lc.case;
    let applied = case.before_login.iter().filter_map(|a| match a {
        ClusterAction::Apply(o) => Some(o),
        _ => None,
    });
    let mut out = BTreeMap::new();
    let other = case.cluster.other.iter().flat_map(|o| &o.objects);
    for obj in case.cluster.objects.iter().chain(other).chain(applied) {
        let ObjectSource::Path(p) = obj else {
            continue;
        };
        if out.contains_key(p) {
            continue;
        }
        let objects = resolve_manifest(lc, p)
            .ok_or_else(|| anyhow::anyhow!("not found"))
            .and_then(|path| super::manifest::read_manifest(&path))
            .and_then(|objs| {
                match objs
                    .iter()
                    .enumerate()
                    .find_map(|(i, o)| super::manifest::check_object(o, i + 1))
                {
                    Some(problem) => Err(anyhow::anyhow!("{problem}")),
                    None => Ok(objs),
                }
            })
            .map_err(|e| CaseError {
                file: lc.path.clone(),
                line: line_of_text(&lc.text, p),
                column: None,
                field: None,
                problem: format!("manifest `{p}` cannot be used: {e:#}."),
                fix: "correct the manifest (YAML documents of Kubernetes objects of the kinds listed).".into(),
            })?;
        out.insert(p.clone(), objects);
    }
    Ok(out)
}

/// Where manifest paths are looked up, in order: the cases directory's parent, the case file's
/// directory, and the repository authlab was built from (so a shipped case copied elsewhere
/// still finds the shipped `manifests/`).
pub fn manifest_roots(lc: &LoadedCase) -> Vec<PathBuf> {
    let dot = |p: PathBuf| {
        if p.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            p
        }
    };
    let mut roots = vec![
        dot(lc.base_dir.clone()),
        dot(lc.path.parent().map(Path::to_path_buf).unwrap_or_default()),
    ];
    if let Some(shipped) = crate::shipped::located() {
        roots.push(shipped);
    }
    roots
}

/// Resolves a manifest path against each of [`manifest_roots`] in turn. Only relative paths
/// that stay inside the root they are found in and end in `.yaml`, `.yml` or `.json` are
/// manifests.
pub fn resolve_manifest(lc: &LoadedCase, p: &str) -> Option<PathBuf> {
    let rel = Path::new(p);
    let yaml = matches!(
        rel.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    );
    if rel.is_absolute() || !yaml {
        return None;
    }
    manifest_roots(lc).into_iter().find_map(|root| {
        let root = root.canonicalize().ok()?;
        let found = root.join(rel).canonicalize().ok()?;
        (found.starts_with(&root) && found.is_file()).then_some(found)
    })
}

/// Every problem of one expectation (`field`), into `bad`.
fn check_expect(field: &str, e: &Expect, err: &ErrFn<'_>, bad: &mut Vec<CaseError>) {
    // `expect: {}` is a case whose expectations are still to be recorded (`run --bless`).
    if field == "expect" && e.is_empty() {
        return;
    }
    if e.login.is_none()
        && e.config.as_ref().is_none_or(|c| c.status < 300)
        && e.role.as_ref().is_none_or(|r| r.status < 300)
    {
        bad.push(err(
            &format!("{field}.login"),
            "no login expectation, and the config write is expected to succeed.".into(),
            "add `login: { status: 200 }` (or the failure you expect).",
        ));
    }
    if let Some(l) = &e.login {
        bad.extend(check_response(&format!("{field}.login"), l, err).err());
    }
    if let Some(c) = &e.config {
        bad.extend(check_response(&format!("{field}.config"), c, err).err());
    }
    if let Some(r) = &e.role {
        bad.extend(check_response(&format!("{field}.role"), r, err).err());
    }
    if let Some(a) = &e.audit {
        for (name, m) in [("error", &a.error), ("data_error", &a.data_error)] {
            if let Some(m) = m {
                bad.extend(check_text(&format!("{field}.audit.{name}"), m, err).err());
            }
        }
    }
    if let (Some(role), Some(_)) = (&e.role, &e.login)
        && role.status >= 300
    {
        bad.push(err(
            &format!("{field}.login"),
            format!(
                "the role write is expected to be refused ({}), which leaves nothing to log in to: no login is made.",
                role.status
            ),
            "remove `login` from this expectation (the refused write is the finding), or expect the role write to succeed.",
        ));
    }
    for (i, o) in e.cluster_objects.iter().enumerate() {
        if super::manifest::api_version_of(&o.kind).is_none() {
            bad.push(err(
                &format!("{field}.cluster_objects[{i}].kind"),
                format!("`{}` is not a kind authlab lists.", o.kind),
                &format!(
                    "use one of {} (singular, as in a manifest's `kind`).",
                    super::manifest::known_kinds().join(", ")
                ),
            ));
        }
    }
    if let Some(LogExpect {
        message,
        fields,
        level,
    }) = &e.server_log
    {
        const LEVELS: [&str; 5] = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"];
        if let Some(l) = level
            && !LEVELS.iter().any(|x| x.eq_ignore_ascii_case(l))
        {
            bad.push(err(
                &format!("{field}.server_log.level"),
                format!("`{l}` is not a level the servers log at, so no line would ever match."),
                "use one of TRACE, DEBUG, INFO, WARN, ERROR (or leave `level` out).",
            ));
        }
        bad.extend(check_text(&format!("{field}.server_log.message"), message, err).err());
        for (k, v) in fields {
            bad.extend(check_text(&format!("{field}.server_log.fields.{k}"), v, err).err());
        }
    }
}

/// ESO logs in from inside a Kind cluster with a token it requests itself.
fn check_eso(case: &Case, err: &ErrFn<'_>) -> Result<(), CaseError> {
    let expects_eso =
        case.expect.eso.is_some() || case.flavours.values().any(|o| o.expect.eso.is_some());
    if case.eso.is_none() {
        if expects_eso {
            return Err(err(
                "expect.eso",
                "an `eso` expectation without an `eso` client.".into(),
                "add `eso: {}` (a ClusterSecretStore with the client's service account), or remove `expect.eso`.",
            ));
        }
        return Ok(());
    }
    if !case.applies.clusters.is_empty()
        && !case
            .applies
            .clusters
            .contains(&super::cluster_kind::ClusterKind::Kind)
    {
        return Err(err(
            "applies.clusters",
            "the `eso` client runs only on a Kind cluster (ESO is installed into it with helm), but the case excludes kind.".into(),
            "add `kind` to `applies.clusters`, or remove `eso`.",
        ));
    }
    if case.auth != AuthMethod::Kubernetes {
        return Err(err(
            "eso",
            "the ESO client logs in with kubernetes auth; this case uses another method.".into(),
            "remove `eso`, or set `auth: kubernetes`.",
        ));
    }
    if case.client.token != TokenKind::Projected || case.client.literal.is_some() {
        return Err(err(
            "client.token",
            "ESO requests its own projected token for the client's service account, so the client token must be `projected`.".into(),
            "remove `token:`/`literal:` from `client`, or remove `eso`.",
        ));
    }
    if !case.before_login.is_empty() {
        return Err(err(
            "before_login",
            "ESO requests its token after the harness's login, so cluster changes before login would not apply to it.".into(),
            "remove `before_login`, or remove `eso` and keep the case to the harness's own login.",
        ));
    }
    if case.expect.eso.is_none() {
        return Err(err(
            "expect.eso",
            "an `eso` client needs an expectation of what ESO reports.".into(),
            "add e.g. `eso: { ready: true }` under `expect`.",
        ));
    }
    let all = std::iter::once(("expect".to_string(), &case.expect)).chain(
        case.flavours
            .iter()
            .map(|(k, o)| (format!("flavours.{k}.expect"), &o.expect)),
    );
    for (field, e) in all {
        if let Some(x) = &e.eso {
            for (name, m) in [
                ("reason", &x.reason),
                ("controller_error", &x.controller_error),
            ] {
                if let Some(m) = m {
                    check_text(&format!("{field}.eso.{name}"), m, err)?;
                }
            }
        }
    }
    Ok(())
}

fn check_response(field: &str, r: &ResponseExpect, err: &ErrFn<'_>) -> Result<(), CaseError> {
    if !(100..600).contains(&r.status) {
        return Err(err(
            &format!("{field}.status"),
            format!("{} is not an HTTP status.", r.status),
            "use a status such as 200, 204, 400 or 403.",
        ));
    }
    if let Some(m) = &r.error {
        check_text(&format!("{field}.error"), m, err)?;
    }
    for (i, m) in r.warnings.iter().flatten().enumerate() {
        check_text(&format!("{field}.warnings[{i}]"), m, err)?;
    }
    Ok(())
}

fn check_text(field: &str, m: &TextMatch, err: &ErrFn<'_>) -> Result<(), CaseError> {
    if let TextMatch::Pattern(p) = m {
        if p.contains.is_none() && p.regex.is_none() {
            return Err(err(
                field,
                "a pattern needs `contains` or `regex`.".into(),
                "write `{ contains: \"...\" }` or `{ regex: \"...\" }`, or a plain string for an exact match.",
            ));
        }
        // Placeholders (`${cluster.url}`) are filled in at run time; check the rest.
        let placeholder = regex::Regex::new(r"\$\{[^}]*\}").expect("static regex");
        if let Some(re) = &p.regex
            && let Err(e) = regex::Regex::new(&placeholder.replace_all(re, "x"))
        {
            let e = e
                .to_string()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            return Err(err(
                field,
                format!("the regular expression does not compile: {e}."),
                "escape special characters (`\\\\.`, `\\\\[`) or use `contains`.",
            ));
        }
    }
    Ok(())
}

/// Best-effort line of a dotted field path in YAML text (the line of its last key).
pub fn line_of_field(text: &str, field: &str) -> Option<u32> {
    let mut start = 0usize;
    let mut found = None;
    for part in field.split('.') {
        let key = part.split('[').next().unwrap_or(part);
        if key.is_empty() {
            continue;
        }
        let lines: Vec<&str> = text.lines().collect();
        let pos = lines.iter().enumerate().skip(start).find(|(_, l)| {
            let t = l.trim_start().trim_start_matches("- ");
            t.starts_with(&format!("{key}:")) || t.starts_with(&format!("{{ {key}:"))
        });
        if let Some((i, l)) = pos {
            start = i;
            found = u32::try_from(i + 1).ok();
            // `steps[2]`: the third `- ` item of the block list below the key.
            if let Some(n) = part
                .split_once('[')
                .and_then(|(_, r)| r.trim_end_matches(']').parse::<usize>().ok())
            {
                let indent = |s: &str| s.len() - s.trim_start().len();
                let key_indent = indent(l);
                let mut seen = 0;
                for (j, item) in lines.iter().enumerate().skip(i + 1) {
                    if item.trim().is_empty() || item.trim_start().starts_with('#') {
                        continue;
                    }
                    let is_item = item.trim_start().starts_with("- ");
                    if indent(item) < key_indent || (indent(item) == key_indent && !is_item) {
                        break;
                    }
                    if is_item && indent(item) <= key_indent + 2 {
                        if seen == n {
                            start = j;
                            found = u32::try_from(j + 1).ok();
                            break;
                        }
                        seen += 1;
                    }
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err_of(text: &str) -> CaseError {
        let dir = tempfile::tempdir().unwrap();
        let cases = dir.path().join("cases");
        std::fs::create_dir_all(&cases).unwrap();
        let f = cases.join("bad.yaml");
        std::fs::write(&f, text).unwrap();
        load_file(&cases, &f).unwrap_err()
    }

    const OK: &str = "about: x\nauth: kubernetes\nmode: client-token\nclient:\n  service_account: default/app\nexpect:\n  login: { status: 200 }\n";

    #[test]
    fn valid_case_loads() {
        let dir = tempfile::tempdir().unwrap();
        let cases = dir.path().join("cases/kubernetes");
        std::fs::create_dir_all(&cases).unwrap();
        let f = cases.join("client-token-ok.yaml");
        std::fs::write(&f, OK).unwrap();
        let lc = load_file(&dir.path().join("cases"), &f).unwrap();
        assert_eq!(lc.name, "kubernetes::client_token_ok");
    }

    #[test]
    fn unknown_field_names_field_and_line() {
        let e = err_of(&OK.replace("about: x\n", "about: x\nabuot: y\n"));
        let s = e.to_string();
        assert!(s.contains("bad.yaml:2"), "{s}");
        assert!(s.contains("abuot"), "{s}");
        assert!(s.contains("Fix:"), "{s}");
    }

    #[test]
    fn wrong_type_names_field_path() {
        let e = err_of(&OK.replace("status: 200", "status: ok"));
        assert_eq!(e.field.as_deref(), Some("expect.login.status"), "{e}");
        assert_eq!(e.line, Some(7), "{e}");
    }

    #[test]
    fn bad_yaml_has_location() {
        let e = err_of("about: [x\nauth: kubernetes\n");
        assert!(e.line.is_some(), "{e}");
    }

    #[test]
    fn contradiction_is_reported() {
        let e = err_of(&OK.replace("mode: client-token", "mode: local-token"));
        assert_eq!(e.field.as_deref(), Some("topology"));
        assert!(e.to_string().contains("set `topology: inside`"));
    }

    /// `${pod.jwt}` outside the cluster was sent literally as the reviewer JWT, and the 401
    /// that followed looked like a finding; `${other.url}` without a second cluster pointed
    /// at some other API server.
    #[test]
    fn placeholders_without_a_value_in_the_topology_are_load_errors() {
        let e = err_of(&OK.replace(
            "client:\n",
            "server:\n  config:\n    token_reviewer_jwt: ${pod.jwt}\nclient:\n",
        ));
        let s = e.to_string();
        assert!(s.contains("bad.yaml:6"), "{s}");
        assert!(s.contains("`${pod.jwt}` has no value here"), "{s}");
        assert!(s.contains("topology: inside"), "{s}");
        let e = err_of(&OK.replace(
            "client:\n",
            "server:\n  config:\n    kubernetes_host: ${other.url}\nclient:\n",
        ));
        assert!(e.to_string().contains("no second cluster"), "{e}");
        let ok = OK.replace(
            "client:\n",
            "server:\n  config:\n    kubernetes_ca_cert: ${other.ca}\nclient:\n",
        );
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("ok.yaml");
        std::fs::write(&f, ok).unwrap();
        load_file(dir.path(), &f).expect("${other.ca} needs no second cluster");
    }

    #[test]
    fn an_expectation_about_a_second_cluster_needs_one() {
        let e = err_of(&OK.replace(
            "login: { status: 200 }",
            "login: { status: 403 }\n  cluster_requests: { cluster: other, none: true }",
        ));
        assert_eq!(e.field.as_deref(), Some("expect.cluster_requests.cluster"));
        assert!(e.to_string().contains("the case has none"), "{e}");
    }

    #[test]
    fn missing_manifest_is_reported() {
        let e = err_of(&format!("{OK}cluster:\n  objects: [manifests/nope.yaml]\n"));
        assert_eq!(e.field.as_deref(), Some("cluster.objects[0]"));
        assert!(e.to_string().contains("manifests/nope.yaml"));
    }

    #[test]
    fn name_round_trips_to_file() {
        let dir = tempfile::tempdir().unwrap();
        let cases = dir.path().join("cases");
        std::fs::create_dir_all(cases.join("kubernetes/client-token")).unwrap();
        let f = cases.join("kubernetes/client-token/missing-api-audience.yaml");
        std::fs::write(&f, OK).unwrap();
        let name = case_name(&cases, &f);
        assert_eq!(name, "kubernetes::client_token::missing_api_audience");
        assert_eq!(file_for_name(&cases, &name), Some(f));
    }

    #[test]
    fn eso_client_is_validated() {
        let with_eso = OK.replace(
            "client:",
            "eso: {}
client:",
        );
        let e = err_of(&with_eso);
        assert_eq!(e.field.as_deref(), Some("expect.eso"), "{e}");
        let full = format!("{with_eso}  eso: {{ ready: true }}\n");
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("ok.yaml");
        std::fs::write(&f, &full).unwrap();
        load_file(dir.path(), &f).unwrap();
        let e = err_of(&format!("{full}applies: {{ clusters: [sim] }}\n"));
        assert_eq!(e.field.as_deref(), Some("applies.clusters"), "{e}");
        assert!(e.to_string().contains("only on a Kind cluster"), "{e}");
        let e = err_of(&full.replace("default/app", "default/app\n  token: legacy-secret"));
        assert_eq!(e.field.as_deref(), Some("client.token"), "{e}");
        let e = err_of(&OK.replace("status: 200 }", "status: 200 }\n  eso: { ready: false }"));
        assert_eq!(e.field.as_deref(), Some("expect.eso"), "{e}");
        assert!(e.to_string().contains("without an `eso` client"), "{e}");
    }

    /// Every file of `tests/bad-cases` is refused with the error its first line names.
    #[test]
    fn the_bad_case_corpus_is_refused_file_by_file() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad-cases");
        let mut n = 0;
        for file in find_case_files(&dir).unwrap() {
            let text = std::fs::read_to_string(&file).unwrap();
            let want = text
                .lines()
                .next()
                .and_then(|l| l.strip_prefix("# expect: "))
                .unwrap_or_else(|| panic!("{}: no `# expect:` line", file.display()));
            let err = load_file(&dir, &file).expect_err(&file.display().to_string());
            let shown = err.to_string();
            assert!(shown.contains(want), "{}: {shown}", file.display());
            assert!(shown.contains("Fix:"), "{shown}");
            n += 1;
        }
        assert!(n >= 9, "{n} corpus files");
    }

    /// What hangs or exhausts a naive loader: a FIFO, a link loop, a link to /dev/zero, a huge
    /// file, non-UTF-8 text, two files with one case name. Each is refused, quickly.
    #[test]
    fn hostile_case_directories_are_refused_without_hanging() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("cases");
        std::fs::create_dir_all(d.join("sub")).unwrap();
        let ok = "about: x\nauth: kubernetes\nmode: client-token\nclient:\n  service_account: default/app\nexpect:\n  login: { status: 200 }\n";
        std::fs::write(d.join("a-b.yaml"), ok).unwrap();
        std::fs::write(d.join("a_b.yaml"), ok).unwrap();
        std::fs::write(d.join("latin1.yaml"), b"about: caf\xe9\n").unwrap();
        std::fs::write(d.join("huge.yaml"), vec![b'#'; 2 << 20]).unwrap();
        std::os::unix::fs::symlink("/dev/zero", d.join("zero.yaml")).unwrap();
        std::os::unix::fs::symlink(&d, d.join("sub/loop")).unwrap();
        let fifo = std::process::Command::new("mkfifo")
            .arg(d.join("fifo.yaml"))
            .status()
            .is_ok_and(|s| s.success());
        let (tx, rx) = std::sync::mpsc::channel();
        let dir = d.clone();
        std::thread::spawn(move || {
            let _ = tx.send(load_dir(&dir));
        });
        let errs = rx
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("loading did not finish within 20 s")
            .expect_err("every file here is bad");
        let all: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        let has = |file: &str, text: &str| {
            assert!(
                all.iter().any(|e| e.contains(file) && e.contains(text)),
                "{file}: {text:?} not in {all:#?}"
            )
        };
        has("a_b.yaml", "is also the name of");
        has("latin1.yaml", "is not UTF-8 text");
        has("huge.yaml", "larger than 1024 KiB");
        has("zero.yaml", "not a regular file");
        if fifo {
            has("fifo.yaml", "not a regular file");
        }
        // The loop is walked once: the two good files are not listed twice.
        assert_eq!(
            all.iter()
                .filter(|e| e.contains("is also the name of"))
                .count(),
            1,
            "{all:#?}"
        );
    }
}
