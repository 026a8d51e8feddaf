//! The matrix report, JUnit and the command line's conventions, driven through the `authlab`
//! binary as a maintainer or CI uses it: a run against OpenBao 2.6.1 and 2.7.2 whose case
//! lacks its 2.6 block is reported as a difference with a block that makes it pass; two runs'
//! reports merge into one matrix; JUnit carries trial names and properties; `authlab list`
//! into a closed pipe exits 0.
//!
//! The runs need the OpenBao 2.6.1 and 2.7.2 binaries (`authlab provision`); without them the
//! tests say so and pass, except under CI=true, where that fails.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

mod common;

use serde_json::Value;

const CASE: &str = "jwt/discovery-issuer-mismatch.yaml";
const CASE_NAME: &str = "jwt::discovery_issuer_mismatch";

fn authlab() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_authlab"));
    c.env_remove("AUTHLAB_SERVERS")
        .env_remove("AUTHLAB_CLUSTER")
        .env_remove("AUTHLAB_REPORT")
        .env_remove("AUTHLAB_JUNIT")
        .env("NO_COLOR", "1");
    c
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Provisions both servers' binaries if need be (a test that cannot have them fails).
fn servers_available() {
    provision("openbao:2.6.1,openbao:2.7.2");
}

/// Provisions the binaries of `servers` (a comma-separated list) if need be; a test that cannot
/// have them fails.
fn provision(servers: &str) {
    let out = authlab()
        .args(["provision", "--servers", servers])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{servers} cannot be provisioned: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Copies the repository's `manifests` (paths relative to it) into `root`, as a scratch catalog
/// beside its `cases` needs them.
fn copy_manifests(root: &Path, manifests: &[&str]) {
    for m in manifests {
        let to = root.join(m);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(repo().join(m), to).unwrap();
    }
}

/// A cases directory holding the discovery case without its `flavours` block (so 2.6 is
/// judged by what 2.7 says), with the manifests it applies.
fn case_without_flavours(root: &Path) -> PathBuf {
    let text = std::fs::read_to_string(repo().join("cases").join(CASE)).unwrap();
    let start = text
        .find("\nflavours:")
        .expect("the case has a flavours block");
    let end = text.find("\nobserved_on:").unwrap();
    let stripped = format!("{}{}", &text[..start], &text[end..]);
    let file = root.join("cases").join(CASE);
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, stripped).unwrap();
    copy_manifests(
        root,
        &[
            "manifests/sa/internal-app.yaml",
            "manifests/rbac/anonymous-issuer-discovery.yaml",
        ],
    );
    file
}

fn run(args: &[&str]) -> Output {
    let mut c = authlab();
    if args.contains(&"--bless") {
        // Refused under CI=true, where nobody would review what it writes.
        c.env_remove("CI");
    }
    let out = c.args(args).output().unwrap();
    eprintln!(
        "authlab {}: {}\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `authlab run -q --cases CASES --servers SERVERS`, then `extra`.
fn run_cases(cases: &Path, servers: &str, extra: &[&str]) -> Output {
    let cases = cases.to_str().unwrap();
    let mut args = vec!["run", "-q", "--cases", cases, "--servers", servers];
    args.extend_from_slice(extra);
    run(&args)
}

fn matrix(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("matrix.json")).unwrap()).unwrap()
}

fn trial<'a>(m: &'a Value, server: &str) -> &'a Value {
    m["trials"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["server"] == server)
        .unwrap_or_else(|| panic!("no trial on {server} in {m}"))
}

fn a_version_difference_is_reported_with_a_block_that_makes_the_case_pass() {
    servers_available();
    let tmp = tempfile::tempdir().unwrap();
    let file = case_without_flavours(tmp.path());
    let cases = tmp.path().join("cases");
    let report = tmp.path().join("report");
    let junit = tmp.path().join("junit.xml");
    let out = run_cases(
        &cases,
        "openbao:2.6.1,openbao:2.7.2",
        &[
            "--report",
            report.to_str().unwrap(),
            "--junit",
            junit.to_str().unwrap(),
            "--artifacts",
            tmp.path().join("artifacts").to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "the 2.6.1 trial must fail");
    // The terminal summary says what the report says: a difference, not a plain failure.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let row = stdout
        .lines()
        .find(|l| l.starts_with(&format!("{CASE_NAME}::openbao-2.6.1 ")))
        .unwrap_or_else(|| panic!("no summary row for 2.6.1:\n{stdout}"));
    assert!(row.contains("DIFFERS"), "{row}");
    assert!(
        stdout.contains(
            "1 failed (1 of them differ from the server their expectations were written for)"
        ),
        "{stdout}"
    );
    let m = matrix(&report);
    let old = trial(&m, "openbao:2.6.1");
    assert_eq!(old["verdict"], "failed");
    let d = &old["difference"];
    assert_eq!(d["key"], "openbao:2.6", "{d}");
    assert!(
        d["because"]
            .as_str()
            .unwrap()
            .contains("passed on openbao:2.7.2"),
        "{d}"
    );
    assert_eq!(trial(&m, "openbao:2.7.2")["verdict"], "passed");
    assert!(trial(&m, "openbao:2.7.2")["difference"].is_null());
    // Markdown: the difference, both signatures side by side, the block.
    let md = std::fs::read_to_string(report.join("matrix.md")).unwrap();
    assert!(md.contains("⚠️ DIFFERS"), "{md}");
    assert!(md.contains(&format!("### `{CASE_NAME}`")), "{md}");
    assert!(
        md.contains("| `config.error` | `error checking oidc discovery URL` | `error checking oidc discovery URL: issuer did not match"),
        "{md}"
    );
    assert!(md.contains("openbao:2.7.2 (after openbao:2.6.1)"), "{md}");
    let block = d["block"].as_str().unwrap();
    assert!(md.contains(block), "{md}");

    // JUnit: whole trial names, properties, the artifacts folder in system-out.
    let suites = junit_parser::from_reader(std::io::BufReader::new(
        std::fs::File::open(&junit).unwrap(),
    ))
    .expect("a JUnit parser reads the file");
    let suite = &suites.suites[0];
    assert_eq!(suite.tests, 2);
    assert!(suite.timestamp.is_some(), "the suite has a timestamp");
    let failed = suite
        .cases
        .iter()
        .find(|c| c.original_name == format!("{CASE_NAME}::openbao-2.6.1"))
        .expect("the testcase is named by the whole trial name");
    assert_eq!(failed.classname.as_deref(), Some("authlab"));
    assert!(failed.status.is_failure());
    let props: Vec<(String, String)> = failed.properties.vec.clone();
    for (k, v) in [
        ("case", CASE_NAME),
        ("server", "openbao:2.6.1"),
        ("version", "2.6.1"),
        ("cluster", "sim"),
        ("kubernetes", authlab::sim::KUBERNETES_VERSION),
    ] {
        assert!(
            props.iter().any(|(pk, pv)| pk == k && pv == v),
            "property {k}={v} in {props:?}"
        );
    }
    assert!(
        failed
            .system_out
            .as_deref()
            .is_some_and(|o| o.contains("artifacts: ") && o.contains("diagnosis")),
        "{:?}",
        failed.system_out
    );

    // The block pasted into the case makes it pass on both servers.
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push_str(block);
    std::fs::write(&file, text).unwrap();
    let out = run_cases(&cases, "openbao:2.6.1,openbao:2.7.2", &[]);
    assert_eq!(out.status.code(), Some(0), "the pasted block holds");
}

fn two_runs_merge_into_one_matrix_that_sees_the_difference() {
    servers_available();
    let tmp = tempfile::tempdir().unwrap();
    case_without_flavours(tmp.path());
    let cases = tmp.path().join("cases");
    let (a, b, merged) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("merged"),
    );
    for (server, dir, code) in [("openbao:2.6.1", &a, 1), ("openbao:2.7.2", &b, 0)] {
        let out = run_cases(
            &cases,
            server,
            &[
                "--report",
                dir.to_str().unwrap(),
                "--artifacts",
                tmp.path().join("artifacts").to_str().unwrap(),
            ],
        );
        assert_eq!(out.status.code(), Some(code), "{server}");
    }
    // Alone, the 2.6.1 run has no server whose answer its expectations hold for.
    assert!(trial(&matrix(&a), "openbao:2.6.1")["difference"].is_null());
    let out = run(&[
        "report",
        a.to_str().unwrap(),
        b.join("matrix.json").to_str().unwrap(),
        "--out",
        merged.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let m = matrix(&merged);
    assert_eq!(m["runs"].as_array().unwrap().len(), 2);
    assert_eq!(m["trials"].as_array().unwrap().len(), 2);
    assert_eq!(
        trial(&m, "openbao:2.6.1")["difference"]["key"],
        "openbao:2.6"
    );
    let html = std::fs::read_to_string(merged.join("index.html")).unwrap();
    assert!(html.contains("data-case=\"jwt::discovery_issuer_mismatch\""));
    // Self-contained: nothing is loaded from elsewhere.
    for attr in ["src=\"http", "href=\"http", "@import"] {
        assert!(!html.contains(attr), "{attr}");
    }
    // Bad input: a folder without a matrix.json names it.
    let out = run(&["report", tmp.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("matrix.json"));
}

/// The nightly's Kind jobs for three Kubernetes versions, merged: every job keeps its cells (the
/// 1.33 failure was overwritten by the 1.34 pass when trials were keyed by name), the version is
/// a column, and a job of other case files is refused unless `--mixed`.
fn a_merged_nightly_of_three_kubernetes_versions_keeps_every_failure() {
    provision("openbao:2.7.2");
    let tmp = tempfile::tempdir().unwrap();
    let one = tmp.path().join("one");
    let out = run(&[
        "run",
        "-q",
        "--servers",
        "openbao:2.7.2",
        "--report",
        one.to_str().unwrap(),
        "--artifacts",
        tmp.path().join("artifacts").to_str().unwrap(),
        "kubernetes::role::audience_mismatch",
    ]);
    assert_eq!(out.status.code(), Some(0));
    // As the Kind jobs write it: the same trials, on Kind, each job its Kubernetes version.
    let job = |version: &str, verdict: &str, digest: Option<&str>| {
        let mut m = matrix(&one);
        for t in m["trials"].as_array_mut().unwrap() {
            t["name"] = format!("{}::kind", t["name"].as_str().unwrap()).into();
            t["cluster"] = "kind".into();
            t["kubernetes"] = version.into();
            t["verdict"] = verdict.into();
        }
        m["runs"][0]["cluster"] = "kind".into();
        m["runs"][0]["run_id"] = format!("r-{version}").into();
        if let Some(d) = digest {
            m["runs"][0]["cases_digest"] = d.into();
        }
        let dir = tmp.path().join(version);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("matrix.json"), m.to_string()).unwrap();
        dir
    };
    let jobs = [
        job("v1.32.2", "passed", None),
        job("v1.33.1", "failed", None),
        job("v1.34.0", "passed", None),
    ];
    let merged = tmp.path().join("merged");
    let mut args = vec!["report"];
    args.extend(jobs.iter().map(|j| j.to_str().unwrap()));
    args.extend(["--out", merged.to_str().unwrap()]);
    let out = run(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m = matrix(&merged);
    let trials = m["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 3);
    assert_eq!(
        trials.iter().filter(|t| t["verdict"] == "failed").count(),
        1
    );
    let md = std::fs::read_to_string(merged.join("matrix.md")).unwrap();
    for col in ["v1.32.2", "v1.33.1", "v1.34.0"] {
        assert!(
            md.contains(&format!("openbao:2.7.2 on kind {col}")),
            "{col}: {md}"
        );
    }
    assert!(md.contains("FAILED"), "{md}");
    assert!(md.contains("authlab 0.1.0 ("), "provenance: {md}");
    // A job of other case files.
    let other = job("v1.31.0", "passed", Some("sha256:0000000000000000"));
    let out = run(&[
        "report",
        jobs[0].to_str().unwrap(),
        other.to_str().unwrap(),
        "--out",
        merged.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("case files differ") && err.contains("--mixed"),
        "{err}"
    );
    let out = run(&[
        "report",
        jobs[0].to_str().unwrap(),
        other.to_str().unwrap(),
        "--mixed",
        "--out",
        merged.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let md = std::fs::read_to_string(merged.join("matrix.md")).unwrap();
    assert!(md.contains("Merged from runs that are not alike"), "{md}");
}

fn the_shipped_discovery_cases_differ_between_2_6_and_2_7() {
    servers_available();
    let tmp = tempfile::tempdir().unwrap();
    let out = run(&[
        "run",
        "-q",
        "jwt::discovery",
        "--servers",
        "openbao:2.6.1,openbao:2.7.2",
        "--report",
        tmp.path().to_str().unwrap(),
        "--artifacts",
        tmp.path().join("artifacts").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0));
    let md = std::fs::read_to_string(tmp.path().join("matrix.md")).unwrap();
    let section = md.split("## Where servers differ").nth(1).unwrap();
    for case in [
        "jwt::discovery_issuer_mismatch",
        "jwt::discovery_anonymous_not_bound",
    ] {
        let part = section
            .split("### ")
            .find(|s| s.starts_with(&format!("`{case}`")))
            .unwrap_or_else(|| panic!("{case} is not among the cases that differ: {section}"));
        assert!(
            part.contains("| field | openbao:2.6.1 | openbao:2.7.2 |"),
            "{part}"
        );
        assert!(
            part.contains("| `config.error` | `error checking oidc discovery URL` | `error checking oidc discovery URL: "),
            "{part}"
        );
    }
}

fn no_trial_ran_is_not_success() {
    let out = run(&["run", "no-such-trial-name"]);
    assert_eq!(out.status.code(), Some(4));
    let out = run(&["run", "no-such-trial-name", "--allow-empty"]);
    assert_eq!(out.status.code(), Some(0));
}

fn list_into_a_closed_pipe_exits_0() {
    let mut child = authlab()
        .args(["list"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The reader goes away before authlab writes anything.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// `check` on the shipped catalog is clean: no error, and no warning either.
fn the_shipped_catalog_checks_without_warnings() {
    let out = authlab().args(["check"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("warning"), "{err}");
    assert!(err.contains("case files are valid"), "{err}");
}

fn list_and_check_speak_json() {
    let out = authlab()
        .args(["list", "--format", "json"])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let first = &v.as_array().unwrap()[0];
    for k in ["name", "file", "auth", "topology", "expect"] {
        assert!(first.get(k).is_some(), "{k} in {first}");
    }
    let out = authlab()
        .args(["check", "--format", "json"])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], true);
    let bad = repo().join("harness/tests/bad-cases");
    let out = authlab()
        .args([
            "check",
            "--format",
            "json",
            "--cases",
            bad.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], false);
    let errors = v["errors"].as_array().unwrap();
    assert!(!errors.is_empty());
    for k in ["file", "line", "column", "field", "message", "fix"] {
        assert!(errors[0].get(k).is_some(), "{k} in {}", errors[0]);
    }
}

/// `authlab check --format json` on `cases`, which must refuse them (exit 2): each error's line
/// and field, and the document as printed.
fn check_errors(cases: &Path) -> (Vec<(u64, String)>, String) {
    let out = authlab()
        .args(["check", "--format", "json", "--cases"])
        .arg(cases)
        .env_remove("GITHUB_ACTIONS")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    let v: Value = serde_json::from_str(&printed).unwrap();
    let got = v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["line"].as_u64().unwrap_or(0),
                e["field"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    (got, printed)
}

/// A case written in one pass from a bug report, with nine problems: `check` names every one,
/// each with its own line, field and fix, so one round fixes them all (it named one, and with
/// two errors the wrong field). Under GitHub Actions each is also an annotation.
fn check_names_every_problem_of_a_file() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = tmp.path().join("cases");
    std::fs::create_dir_all(&cases).unwrap();
    let file = cases.join("from-a-report.yaml");
    std::fs::write(
        &file,
        "about: a report, written in one pass
auth: kubernetes
mode: client-tokn
topolgy: inside
cluster:
  objects:
    - manifests/nope.yaml
client:
  service_acount: default/app
  expiration_seconds: many
login:
  mount: elsewhere
expect:
  login: { status: forbidden }
  audit: { eror: permission denied }
  diagnosis: no-such-cause
steps:
  - { kv_read: a, kv_write: b, expect: { status: 200 } }
",
    )
    .unwrap();
    let (got, printed) = check_errors(&cases);
    let want = [
        (3, "mode"),
        (4, "topolgy"),
        (7, "cluster.objects[0]"),
        (9, "client.service_acount"),
        (10, "client.expiration_seconds"),
        (12, "login.mount"),
        (14, "expect.login.status"),
        (15, "expect.audit.eror"),
        (16, "expect.diagnosis"),
        (18, "steps[0]"),
    ];
    assert_eq!(got, want.map(|(l, f)| (l, f.to_string())), "{printed}");
    let out = authlab()
        .args(["check", "--cases", cases.to_str().unwrap()])
        .env("GITHUB_ACTIONS", "true")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let annotations = String::from_utf8_lossy(&out.stdout);
    assert_eq!(annotations.lines().count(), want.len(), "{annotations}");
    let first = annotations.lines().next().unwrap();
    assert!(
        first.starts_with("::error file=")
            && first.contains(",line=3,col=1,title=field mode::unknown variant"),
        "{first}"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("10 problem(s) in 1 invalid case file(s)"),
        "{err}"
    );
}

/// Every problem of one expectation is named in the same round, not the first of them: a bad
/// status, a level no server logs at, a kind typo and an unknown field, beside problems
/// elsewhere in the file.
fn check_names_every_problem_of_an_expectation() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = tmp.path().join("cases");
    std::fs::create_dir_all(&cases).unwrap();
    std::fs::write(
        cases.join("nine.yaml"),
        "about: nine problems
auth: kubernetes
mode: client-tokn
topology: sideways
client:
  service_acount: default/app
server:
  config:
    kubernetes_host: \"${mount.nope}\"
before_login:
  - wait: 20s
  - wait: 20s
expect:
  login: { status: 900 }
  server_log: { level: dbg, message: x }
  cluster_objects:
    - { kind: Secrets, namespace: default, count: 1 }
  bogus: 1
",
    )
    .unwrap();
    let (got, printed) = check_errors(&cases);
    let want = [
        (3, "mode"),
        (4, "topology"),
        (6, "client.service_acount"),
        (9, ""),
        (12, "before_login[1].wait"),
        (14, "expect.login.status"),
        (15, "expect.server_log.level"),
        (17, "expect.cluster_objects[0].kind"),
        (18, "expect.bogus"),
    ];
    assert_eq!(got, want.map(|(l, f)| (l, f.to_string())), "{printed}");
}

fn completions_are_generated() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = authlab().args(["completions", shell]).output().unwrap();
        assert!(out.status.success(), "{shell}: {out:?}");
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(script.contains("AUTHLAB_COMPLETE"), "{shell}: {script}");
    }
    // What the bash script asks at a Tab after `authlab run kubernetes::role::un`: case names.
    let ask = |words: &[&str]| {
        let out = authlab()
            .env("AUTHLAB_COMPLETE", "bash")
            .env("_CLAP_COMPLETE_INDEX", (words.len() - 1).to_string())
            .env("_CLAP_COMPLETE_COMP_TYPE", "9")
            .env("_CLAP_IFS", "\n")
            .env("AUTHLAB_CASES", repo().join("cases"))
            .arg("--")
            .args(words)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let got = ask(&["authlab", "run", "kubernetes::role::un"]);
    assert_eq!(got.trim(), "kubernetes::role::unknown_role", "{got}");
    let got = ask(&["authlab", "export", "terraform", "jwt::discovery_w"]);
    assert_eq!(got.trim(), "jwt::discovery_works", "{got}");
    let got = ask(&["authlab", "bl"]);
    assert_eq!(got.trim(), "bless", "{got}");
}

/// The YAML examples of a Markdown file, with the line each starts at.
fn yaml_examples(path: &Path) -> Vec<(usize, String)> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        match (&mut current, line.trim_start()) {
            (None, l) if l.starts_with("```yaml") => current = Some((i + 2, String::new())),
            (Some(_), l) if l.starts_with("```") => out.push(current.take().unwrap()),
            (Some((_, body)), _) => {
                body.push_str(line);
                body.push('\n');
            }
            _ => {}
        }
    }
    out
}

/// Every YAML example in the docs is checked: a whole case runs and passes on every server
/// its `observed_on` names; a `flavours:` or `kubernetes:` fragment is what a case takes there.
fn the_docs_examples_are_cases_that_pass() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = tmp.path().join("cases");
    std::fs::create_dir_all(&cases).unwrap();
    let mut whole = Vec::new();
    let mut servers: Vec<String> = Vec::new();
    for doc in ["README.md", "cases/README.md"] {
        for (line, body) in yaml_examples(&repo().join(doc)) {
            let v: Value = serde_saphyr::from_str(&body)
                .unwrap_or_else(|e| panic!("{doc}:{line}: the example is not YAML: {e}"));
            if v.get("about").is_some() {
                let name = format!("doc{}_line{line}", whole.len());
                std::fs::write(cases.join(format!("{name}.yaml")), &body).unwrap();
                for s in v["observed_on"].as_array().into_iter().flatten() {
                    let s = s.as_str().unwrap().to_string();
                    if !servers.contains(&s) {
                        servers.push(s);
                    }
                }
                whole.push(format!("{doc}:{line}"));
            } else if v.get("flavours").is_some() {
                #[derive(serde::Deserialize)]
                #[serde(deny_unknown_fields)]
                #[allow(dead_code)]
                struct Part {
                    flavours:
                        std::collections::BTreeMap<String, authlab::case::model::FlavourOverride>,
                }
                serde_saphyr::from_str::<Part>(&body)
                    .unwrap_or_else(|e| panic!("{doc}:{line}: not a `flavours` entry: {e}"));
            } else if v.get("kubernetes").is_some() {
                #[derive(serde::Deserialize)]
                #[serde(deny_unknown_fields)]
                struct Part {
                    kubernetes:
                        std::collections::BTreeMap<String, authlab::case::model::FlavourOverride>,
                }
                let part = serde_saphyr::from_str::<Part>(&body)
                    .unwrap_or_else(|e| panic!("{doc}:{line}: not a `kubernetes` entry: {e}"));
                for key in part.kubernetes.keys() {
                    assert!(
                        authlab::case::model::kubernetes_key_matches(key, (24, true)).is_some(),
                        "{doc}:{line}: `{key}` is not a Kubernetes version key"
                    );
                }
            } else {
                panic!(
                    "{doc}:{line}: an example that is neither a case nor a flavours or kubernetes entry"
                );
            }
        }
    }
    assert!(!whole.is_empty(), "no case example found");
    let list = servers.join(",");
    provision(&list);
    let out = run_cases(
        &cases,
        &list,
        &[
            "--artifacts",
            tmp.path().join("artifacts").to_str().unwrap(),
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "the examples at {whole:?} must pass on {list}:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// `run --bless` turns a case with an empty `expect` into one that passes, with this run's
/// values as placeholders and a `flavours` entry where 2.6 answers differently from 2.7; a
/// second `--bless` changes nothing, and the rest of the file is kept.
fn bless_records_what_the_servers_answered() {
    servers_available();
    let tmp = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo().join("cases").join(CASE)).unwrap();
    let start = text.find("\nexpect:").unwrap();
    let empty = format!("{}\n# recorded by --bless\nexpect: {{}}\n", &text[..start]);
    let file = tmp.path().join("cases").join(CASE);
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, &empty).unwrap();
    let cases = tmp.path().join("cases");
    let artifacts = tmp.path().join("artifacts");
    let artifacts = artifacts.to_str().unwrap();
    let go = |bless: bool| {
        let mut extra = vec!["--artifacts", artifacts];
        if bless {
            extra.extend(["--bless", "--in-place"]);
        }
        run_cases(&cases, "openbao:2.6.1,openbao:2.7.2", &extra)
    };
    assert_eq!(go(false).status.code(), Some(1), "an empty expect fails");
    let first = go(true);
    assert_eq!(first.status.code(), Some(0));
    // What a bless run says: what it observed and what it recorded, never that trials failed.
    let (stdout, stderr) = (
        String::from_utf8_lossy(&first.stdout),
        String::from_utf8_lossy(&first.stderr),
    );
    assert!(
        !stdout.contains("FAILED") && !stderr.contains("FAILED"),
        "{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("2 observed for --bless, 0 passed, 0 failed"),
        "{stdout}"
    );
    assert!(
        stderr.contains("it now records:\n    expect:\n"),
        "{stderr}"
    );
    assert!(stderr.contains("    flavours: openbao:2.6\n"), "{stderr}");
    let blessed = std::fs::read_to_string(&file).unwrap();
    assert!(
        blessed.starts_with(&text[..start]),
        "the rest is kept:\n{blessed}"
    );
    assert!(
        blessed.contains("# recorded by --bless\nexpect:\n"),
        "{blessed}"
    );
    assert!(
        blessed.contains(r#"expected "${cluster.url}" got "${cluster.issuer}"'"#),
        "this run's values are placeholders again:\n{blessed}"
    );
    assert!(!blessed.contains("127.0.0.1"), "{blessed}");
    assert!(
        blessed.contains("flavours:\n  \"openbao:2.6\":\n"),
        "{blessed}"
    );
    assert!(
        blessed.contains("config: { status: 400, error: error checking oidc discovery URL }\n"),
        "2.6's shorter error: {blessed}"
    );
    assert!(
        blessed.ends_with("observed_on: [openbao:2.6.1, openbao:2.7.2]\n"),
        "{blessed}"
    );
    assert_eq!(go(false).status.code(), Some(0), "the blessed case passes");
    assert_eq!(go(true).status.code(), Some(0));
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        blessed,
        "a second --bless changes nothing"
    );
}

/// A requirement `AUTHLAB_REQUIRE` asks for fails the trial that lacked it: the progress line,
/// the summary and the exit code all say FAILED, none says ignored.
fn a_required_cluster_that_is_missing_is_a_failure_everywhere_it_is_shown() {
    let empty = tempfile::tempdir().unwrap();
    let missing = empty.path().join("kube-apiserver");
    let out = authlab()
        .args(["run", "kubernetes::token::garbage_jwt::"])
        .args(["--servers", "openbao:2.7.2", "--cluster", "apiserver"])
        .env("AUTHLAB_REQUIRE", "apiserver")
        .env("KUBEBUILDER_ASSETS", empty.path())
        .env("AUTHLAB_KUBE_APISERVER_BIN", &missing)
        .env("AUTHLAB_ETCD_BIN", empty.path().join("etcd"))
        .env("AUTHLAB_ARTIFACTS", empty.path().join("artifacts"))
        .env_remove("CI")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let lines: Vec<&str> = stdout
        .lines()
        .chain(stderr.lines())
        .filter(|l| l.contains("garbage_jwt"))
        .collect();
    // Its progress line and its row in the summary.
    let failed = lines.iter().filter(|l| l.contains("FAILED")).count();
    assert!(failed >= 2, "{stdout}\n{stderr}");
    for l in &lines {
        assert!(
            !l.to_lowercase().contains("ignored"),
            "shown as ignored: {l}"
        );
    }
    assert!(
        stdout.contains("required but not available (apiserver"),
        "{stdout}"
    );
    assert!(stdout.contains("0 passed, 1 failed"), "{stdout}");
}

/// Blessing waits for every kind of evidence, so blessing the same case from `expect: {}`
/// again and again gives the same file (it once recorded whatever server-log lines had been
/// flushed: 0, 2, 1 and 0 `flavours` entries in four blesses of this case).
fn blessing_a_case_again_and_again_gives_the_same_file() {
    const PINNED: &str = "reported/server-pod-restarted-with-pinned-token.yaml";
    let servers = "openbao:2.6.1,openbao:2.6.2,openbao:2.7.0,openbao:2.7.1,openbao:2.7.2";
    provision(servers);
    let tmp = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo().join("cases").join(PINNED)).unwrap();
    let start = text.find("\nexpect:").unwrap();
    let empty = format!("{}\nexpect: {{}}\n", &text[..start]);
    let file = tmp.path().join("cases").join(PINNED);
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    copy_manifests(
        tmp.path(),
        &[
            "manifests/sa/internal-app.yaml",
            "manifests/sa/vault-auth.yaml",
            "manifests/rbac/vault-auth-delegator.yaml",
        ],
    );
    let cases = tmp.path().join("cases");
    let artifacts = tmp.path().join("artifacts");
    let mut blessed = Vec::new();
    // Three in CI's time; five by hand gave five identical files too.
    for _ in 0..3 {
        std::fs::write(&file, &empty).unwrap();
        let out = run_cases(
            &cases,
            servers,
            &[
                "--bless",
                "--in-place",
                "--artifacts",
                artifacts.to_str().unwrap(),
            ],
        );
        assert_eq!(out.status.code(), Some(0));
        blessed.push(std::fs::read_to_string(&file).unwrap());
    }
    for b in &blessed[1..] {
        assert_eq!(b, &blessed[0], "two blesses of one case differ");
    }
    // Every server wrote its log line: one `expect` for all, no flavours.
    assert!(blessed[0].contains("server_log:"), "{}", blessed[0]);
    assert!(!blessed[0].contains("flavours:"), "{}", blessed[0]);
}

/// A mount configured for the case's second cluster: its requests are recorded and judged
/// (they were invisible: `expected a TokenReview during login, got []`, and `--bless` recorded
/// `cluster_requests: { none: true }`, which then passed).
fn the_second_clusters_requests_are_judged_and_blessed() {
    const CASE: &str = "reported/login-at-the-wrong-mount.yaml";
    provision("openbao:2.7.2");
    let tmp = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo().join("cases").join(CASE)).unwrap();
    let head = &text[..text.find("\nexpect:").unwrap()];
    let file = tmp.path().join("cases").join(CASE);
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    copy_manifests(
        tmp.path(),
        &[
            "manifests/sa/internal-app.yaml",
            "manifests/rbac/internal-app-auth-delegator.yaml",
        ],
    );
    let cases = tmp.path().join("cases");
    let artifacts = tmp.path().join("artifacts");
    let with = |requests: &str| {
        std::fs::write(
            &file,
            format!(
                "{head}\nexpect:\n  login: {{ status: 403, error: permission denied }}\n  cluster_requests: {requests}\n"
            ),
        )
        .unwrap();
        run_cases(
            &cases,
            "openbao:2.7.2",
            &["--artifacts", artifacts.to_str().unwrap()],
        )
    };
    // B's API server rejected A's token: the TokenReview is there to be judged.
    let out = with("{ tokenreview_status: 401 }");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = with("{ cluster: other, tokenreview_status: 401 }");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = with("{ none: true }");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("cluster_requests.none"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // The trial's own cluster was not asked.
    let out = with("{ cluster: this, none: true }");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let log = std::fs::read_to_string(
        artifacts.join("reported.login_at_the_wrong_mount.openbao-2.7.2/cluster-requests.txt"),
    )
    .unwrap();
    let second = log.find("# the second cluster").expect(&log);
    assert!(log[second..].contains("/tokenreviews"), "{log}");
    assert!(!log[..second].contains("/tokenreviews"), "{log}");
    // Blessed from nothing: what was observed, with the cluster it was observed on.
    std::fs::write(&file, format!("{head}\nexpect: {{}}\n")).unwrap();
    let out = run_cases(
        &cases,
        "openbao:2.7.2",
        &[
            "--bless",
            "--in-place",
            "--artifacts",
            artifacts.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0));
    let blessed = std::fs::read_to_string(&file).unwrap();
    assert!(blessed.contains("cluster: other"), "{blessed}");
    assert!(blessed.contains("tokenreview_status: 401"), "{blessed}");
    assert!(!blessed.contains("none: true"), "{blessed}");
}

/// The habits of test runners: `run --list` lists and runs nothing; `--format json` is a JSON
/// document also when nothing matched; the summary lists only what did not pass (progress
/// showed the rest), with the diagnosis of a failure; colour is decided per stream, so
/// `authlab run > out.txt` from a terminal writes no escape codes into the file.
fn run_speaks_as_test_runners_do() {
    provision("openbao:2.7.2");
    let out = run(&[
        "run",
        "--list",
        "kubernetes::role::",
        "--servers",
        "openbao:2.7.2",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        listed
            .lines()
            .any(|l| l == "kubernetes::role::unknown_role::openbao-2.7.2"),
        "{listed}"
    );
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("authlab: run "),
        "--list ran something"
    );
    let out = run(&["run", "nosuch", "--format", "json"]);
    assert_eq!(out.status.code(), Some(4));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["trials"].as_array().unwrap().len(), 0);
    // A failing case, run from a terminal with standard output into a file.
    let tmp = tempfile::tempdir().unwrap();
    let cases = tmp.path().join("cases");
    std::fs::create_dir_all(&cases).unwrap();
    let text =
        std::fs::read_to_string(repo().join("cases/kubernetes/role/namespace-not-bound.yaml"))
            .unwrap()
            .replace(
                "status: 403, error: \"namespace not authorized\"",
                "status: 200",
            );
    std::fs::write(cases.join("namespace-not-bound.yaml"), text).unwrap();
    copy_manifests(
        tmp.path(),
        &[
            "manifests/sa/internal-app.yaml",
            "manifests/rbac/internal-app-auth-delegator.yaml",
        ],
    );
    let file = tmp.path().join("out.txt");
    let cmd = format!(
        "{} run --cases {} --servers openbao:2.7.2 --artifacts {} kubernetes::role::unknown_role namespace_not_bound > {}",
        env!("CARGO_BIN_EXE_authlab"),
        cases.display(),
        tmp.path().join("artifacts").display(),
        file.display()
    );
    let tty = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env_remove("NO_COLOR")
        .env_remove("CI")
        .output()
        .expect("util-linux's `script`, to give the run a terminal");
    let summary = std::fs::read_to_string(&file).unwrap();
    assert!(summary.contains("FAILED"), "{summary}");
    assert!(
        !summary.contains('\x1b'),
        "escape codes in a file: {summary:?}"
    );
    assert!(
        summary.contains("    diagnosis: namespace: "),
        "the failure's diagnosis: {summary}"
    );
    assert_eq!(
        summary.matches("::openbao-2.7.2").count(),
        1 + summary.matches("longest trial").count(),
        "only the failed trial is listed: {summary}"
    );
    let progress = String::from_utf8_lossy(&tty.stdout);
    assert!(
        progress.contains('\x1b'),
        "the terminal gets colour: {progress:?}"
    );
}

/// The shipped `kubernetes/role/unknown-role.yaml`.
fn unknown_role() -> String {
    std::fs::read_to_string(repo().join("cases/kubernetes/role/unknown-role.yaml")).unwrap()
}

/// A scratch catalog of `files` (name, text) under `cases/`, beside the manifests the
/// `unknown-role` case applies: the folder (removed when dropped) and its `cases`.
fn unknown_role_catalog(files: &[(String, String)]) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let cases = tmp.path().join("cases");
    std::fs::create_dir_all(&cases).unwrap();
    for (name, text) in files {
        std::fs::write(cases.join(name), text).unwrap();
    }
    copy_manifests(
        tmp.path(),
        &[
            "manifests/sa/internal-app.yaml",
            "manifests/sa/vault-auth.yaml",
            "manifests/rbac/vault-auth-delegator.yaml",
        ],
    );
    (tmp, cases)
}

/// `--retries` runs a failed trial again and keeps what each earlier attempt ended with;
/// `--fail-fast` starts nothing after the first failure and reports the rest as not run.
fn retries_and_fail_fast_as_nextest_has_them() {
    provision("openbao:2.7.2");
    // Names no earlier run has timed, so the order is the catalog's: the failing one first.
    let tag = std::process::id();
    let base = unknown_role();
    let (tmp, cases) = unknown_role_catalog(&[
        (
            format!("a-fails-{tag}.yaml"),
            base.replace(
                "status: 400, error: 'invalid role name \"nope\"'",
                "status: 200, error: 'invalid role name \"nope\" on this mount, which holds no role of that name'",
            ),
        ),
        (format!("b-passes-{tag}.yaml"), base.clone()),
        (format!("c-passes-{tag}.yaml"), base.clone()),
    ]);
    let artifacts = tmp.path().join("artifacts");
    let artifacts = artifacts.to_str().unwrap();
    // First, while no run has timed these names and the catalog's order holds.
    let out = run_cases(
        &cases,
        "openbao:2.7.2",
        &[
            "--fail-fast",
            "-j",
            "1",
            "--format",
            "json",
            "--artifacts",
            artifacts,
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let m: Value = serde_json::from_slice(&out.stdout).unwrap();
    let verdicts: Vec<(&str, &str)> = m["trials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["verdict"].as_str().unwrap(),
                t["messages"][0].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(verdicts[0].0, "failed", "{m}");
    // A long expected text is shown once, with what differs marked.
    let messages = m["trials"][0]["messages"].to_string();
    assert!(
        messages.contains(
            r#"login.error: differs from the expected text ([-expected-]{+got+}): invalid role name \"nope\"[- on this mount, which holds no role of that name-]"#
        ),
        "{messages}"
    );
    for (verdict, why) in &verdicts[1..] {
        assert_eq!(*verdict, "ignored", "{m}");
        assert!(why.starts_with("not run: --fail-fast"), "{m}");
    }
    // The last of the two flags wins, as with cargo's.
    let out = run_cases(
        &cases,
        "openbao:2.7.2",
        &[
            "--fail-fast",
            "--no-fail-fast",
            "-j",
            "1",
            "--artifacts",
            artifacts,
        ],
    );
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(summary.contains("2 passed, 1 failed"), "{summary}");

    let out = run_cases(
        &cases,
        "openbao:2.7.2",
        &[
            "--retries",
            "2",
            "--format",
            "json",
            "--artifacts",
            artifacts,
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Each retry is announced as it starts, and the trial's one progress line has its final word.
    assert_eq!(
        stderr
            .matches("try 1 of 3 ended FAILED; trying again")
            .count(),
        1,
        "{stderr}"
    );
    assert_eq!(
        stderr
            .matches("try 2 of 3 ended FAILED; trying again")
            .count(),
        1,
        "{stderr}"
    );
    assert_eq!(stderr.matches(" FAILED  a_fails_").count(), 1, "{stderr}");
    let m: Value = serde_json::from_slice(&out.stdout).unwrap();
    let failed: Vec<&Value> = m["trials"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["verdict"] == "failed")
        .collect();
    assert_eq!(failed.len(), 1, "{m}");
    let earlier = failed[0]["earlier"].as_array().expect("earlier attempts");
    assert_eq!(earlier.len(), 2, "{m}");
    assert!(
        earlier[0]
            .as_str()
            .unwrap()
            .starts_with("FAILED login.status: expected 200, got 400"),
        "{m}"
    );
}

/// `--bless` as insta records snapshots: a pending `<file>.new` in the catalog's style, the case
/// file untouched until `authlab bless accept`; `review` shows the diff, `reject` drops it;
/// refused under CI=true.
fn bless_writes_pending_files_to_review() {
    provision("openbao:2.7.2");
    let text = unknown_role();
    let start = text.find("\nexpect:").unwrap();
    let empty = format!("{}\nexpect: {{}}\n", &text[..start]);
    let (_tmp, cases) = unknown_role_catalog(&[("unknown-role.yaml".into(), empty.clone())]);
    let file = cases.join("unknown-role.yaml");
    let dir = cases.to_str().unwrap();
    let out = authlab()
        .env("CI", "true")
        .args([
            "run",
            "--cases",
            dir,
            "--servers",
            "openbao:2.7.2",
            "--bless",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("under CI=true"));
    let out = run_cases(&cases, "openbao:2.7.2", &["--bless"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("1 pending file(s)"),
        "{out:?}"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), empty, "untouched");
    let pending = cases.join("unknown-role.yaml.new");
    let blessed = std::fs::read_to_string(&pending).unwrap();
    assert!(
        blessed.contains("  login: { status: 400, error: 'invalid role name \"nope\"' }\n"),
        "in the catalog's style: {blessed}"
    );
    let bless = |verb: &str| {
        let out = authlab()
            .args(["bless", verb, "--cases", dir])
            .output()
            .unwrap();
        assert!(out.status.success(), "bless {verb}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let diff = bless("review");
    assert!(diff.contains("-expect: {}"), "{diff}");
    assert!(diff.contains("+  login: { status: 400"), "{diff}");
    assert!(pending.exists(), "review without a terminal takes nothing");
    bless("reject");
    assert!(!pending.exists());
    assert_eq!(std::fs::read_to_string(&file).unwrap(), empty);
    run_cases(&cases, "openbao:2.7.2", &["--bless"]);
    bless("accept");
    assert!(!pending.exists());
    assert_eq!(std::fs::read_to_string(&file).unwrap(), blessed);
    let out = run_cases(&cases, "openbao:2.7.2", &[]);
    assert_eq!(out.status.code(), Some(0), "the accepted case passes");
}

/// Mistakes that used to load and then fail late (or never match) are load errors, each
/// naming its field: a server-log level no server logs at, a kind typo in
/// `expect.cluster_objects`, a login expected after a refused role write, and a placeholder of
/// a mount the case does not have.
fn late_mistakes_are_load_errors() {
    let base =
        "about: x\nauth: kubernetes\nmode: client-token\nclient:\n  service_account: default/app\n";
    for (expect, field, says) in [
        (
            "expect:\n  login: { status: 403 }\n  server_log: { level: dbg, message: login unauthorized }\n",
            "expect.server_log.level",
            "no line would ever match",
        ),
        (
            "expect:\n  login: { status: 200 }\n  cluster_objects:\n    - { kind: Secrets, namespace: default, count: 1 }\n",
            "expect.cluster_objects[0].kind",
            "`Secrets` is not a kind",
        ),
        (
            "expect:\n  role: { status: 400 }\n  login: { status: 403 }\n",
            "expect.login",
            "leaves nothing to log in to",
        ),
        (
            "server:\n  config:\n    kubernetes_host: \"${mount.nope}\"\nexpect:\n  login: { status: 200 }\n",
            "",
            "names a mount `nope` the case does not have",
        ),
        (
            "before_login:\n  - wait: 12s\n  - wait: 12s\n  - wait: 12s\nexpect:\n  login: { status: 403 }\n",
            "before_login[2].wait",
            "the waits up to here come to 36s, more than the 30 s a trial may wait in all",
        ),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let cases = tmp.path().join("cases");
        std::fs::create_dir_all(&cases).unwrap();
        std::fs::write(cases.join("c.yaml"), format!("{base}{expect}")).unwrap();
        let out = authlab()
            .args([
                "check",
                "--format",
                "json",
                "--cases",
                cases.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{expect}");
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let e = &v["errors"][0];
        if !field.is_empty() {
            assert_eq!(e["field"], field, "{e}");
        }
        assert!(e["message"].as_str().unwrap().contains(says), "{e}");
    }
}

/// A `kubernetes:` entry that leaves out a field of `expect` is warned about, as a `flavours`
/// one is (it got no warning).
fn a_kubernetes_entry_that_drops_fields_is_warned_about() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = tmp.path().join("cases");
    std::fs::create_dir_all(&cases).unwrap();
    std::fs::write(
        cases.join("c.yaml"),
        "about: x\nauth: kubernetes\nmode: client-token\nclient:\n  service_account: default/app\nexpect:\n  login: { status: 403 }\n  diagnosis: reviewer-rbac\nkubernetes:\n  \"<1.24\":\n    expect:\n      login: { status: 403 }\n",
    )
    .unwrap();
    let out = authlab()
        .args(["check", "--cases", cases.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "warning: kubernetes.\"<1.24\" replaces `expect` as a whole and has no diagnosis"
        ),
        "{err}"
    );
}

fn main() -> std::process::ExitCode {
    common::run(vec![
        common::test(
            "a_version_difference_is_reported_with_a_block_that_makes_the_case_pass",
            common::Needs::Nothing,
            a_version_difference_is_reported_with_a_block_that_makes_the_case_pass,
        ),
        common::test(
            "two_runs_merge_into_one_matrix_that_sees_the_difference",
            common::Needs::Nothing,
            two_runs_merge_into_one_matrix_that_sees_the_difference,
        ),
        common::test(
            "a_merged_nightly_of_three_kubernetes_versions_keeps_every_failure",
            common::Needs::Nothing,
            a_merged_nightly_of_three_kubernetes_versions_keeps_every_failure,
        ),
        common::test(
            "the_shipped_discovery_cases_differ_between_2_6_and_2_7",
            common::Needs::Nothing,
            the_shipped_discovery_cases_differ_between_2_6_and_2_7,
        ),
        common::test(
            "no_trial_ran_is_not_success",
            common::Needs::Nothing,
            no_trial_ran_is_not_success,
        ),
        common::test(
            "list_into_a_closed_pipe_exits_0",
            common::Needs::Nothing,
            list_into_a_closed_pipe_exits_0,
        ),
        common::test(
            "the_shipped_catalog_checks_without_warnings",
            common::Needs::Nothing,
            the_shipped_catalog_checks_without_warnings,
        ),
        common::test(
            "list_and_check_speak_json",
            common::Needs::Nothing,
            list_and_check_speak_json,
        ),
        common::test(
            "check_names_every_problem_of_a_file",
            common::Needs::Nothing,
            check_names_every_problem_of_a_file,
        ),
        common::test(
            "check_names_every_problem_of_an_expectation",
            common::Needs::Nothing,
            check_names_every_problem_of_an_expectation,
        ),
        common::test(
            "completions_are_generated",
            common::Needs::Nothing,
            completions_are_generated,
        ),
        common::test(
            "the_docs_examples_are_cases_that_pass",
            common::Needs::Nothing,
            the_docs_examples_are_cases_that_pass,
        ),
        common::test(
            "bless_records_what_the_servers_answered",
            common::Needs::Nothing,
            bless_records_what_the_servers_answered,
        ),
        common::test(
            "a_required_cluster_that_is_missing_is_a_failure_everywhere_it_is_shown",
            common::Needs::Nothing,
            a_required_cluster_that_is_missing_is_a_failure_everywhere_it_is_shown,
        ),
        common::test(
            "blessing_a_case_again_and_again_gives_the_same_file",
            common::Needs::Docker,
            blessing_a_case_again_and_again_gives_the_same_file,
        ),
        common::test(
            "the_second_clusters_requests_are_judged_and_blessed",
            common::Needs::Nothing,
            the_second_clusters_requests_are_judged_and_blessed,
        ),
        common::test(
            "run_speaks_as_test_runners_do",
            common::Needs::Nothing,
            run_speaks_as_test_runners_do,
        ),
        common::test(
            "retries_and_fail_fast_as_nextest_has_them",
            common::Needs::Nothing,
            retries_and_fail_fast_as_nextest_has_them,
        ),
        common::test(
            "bless_writes_pending_files_to_review",
            common::Needs::Nothing,
            bless_writes_pending_files_to_review,
        ),
        common::test(
            "late_mistakes_are_load_errors",
            common::Needs::Nothing,
            late_mistakes_are_load_errors,
        ),
        common::test(
            "a_kubernetes_entry_that_drops_fields_is_warned_about",
            common::Needs::Nothing,
            a_kubernetes_entry_that_drops_fields_is_warned_about,
        ),
    ])
}
