//! Failures that are differences between servers: a trial whose expectations were written for
//! another server (they pass there, or the case says they were observed there) and that fails
//! here because this server answers differently. Each gets a `flavours:` block, ready to paste
//! into the case, that holds what this server said.

use serde_json::{Map, Value, json};

use super::{
    matrix::{Difference, Row},
    signature::Signature,
};
use crate::{
    case::model::{TextMatch, override_matches},
    matching::text_matches,
    placeholders::Vars,
};

/// Marks every failed row that is a difference (and clears the mark of every other row).
///
/// Each row is compared with the rows of its own case, cluster and Kubernetes version only
/// (grouped once), so a merged nightly of many runs takes time in proportion to its rows.
pub fn classify(rows: &mut [Row]) {
    type Group<'a> = (&'a str, &'a str, Option<&'a str>);
    let mut groups: std::collections::HashMap<Group<'_>, Vec<&Row>> = Default::default();
    for r in rows.iter() {
        groups
            .entry((r.case.as_str(), r.cluster.as_str(), r.kubernetes.as_deref()))
            .or_default()
            .push(r);
    }
    let found: Vec<Option<Difference>> = rows
        .iter()
        .map(|r| {
            of(
                &groups[&(r.case.as_str(), r.cluster.as_str(), r.kubernetes.as_deref())],
                r,
            )
        })
        .collect();
    for (row, d) in rows.iter_mut().zip(found) {
        row.difference = d;
    }
}

/// The difference `r` is, if it is one; `rows` are those of its case and cluster.
fn of(rows: &[&Row], r: &Row) -> Option<Difference> {
    if r.verdict != "failed" {
        return None;
    }
    let observed = r.observed.as_ref()?;
    let expect = r.expect.as_ref()?;
    // Expectations keyed by the Kubernetes version are not a server's flavour.
    if r.expect_key
        .as_deref()
        .is_some_and(|k| k.starts_with("kubernetes:"))
    {
        return None;
    }
    let passed_same: Vec<&str> = rows
        .iter()
        .filter(|o| o.verdict == "passed" && o.expect_key == r.expect_key)
        .map(|o| o.server.as_str())
        .collect();
    let observed_elsewhere =
        !r.observed_on.is_empty() && !r.observed_on.iter().any(|s| covers(s, &r.server));
    let because = if !passed_same.is_empty() {
        format!("the same expectations passed on {}", passed_same.join(", "))
    } else if observed_elsewhere {
        format!(
            "the expectations were observed on {}, not on {}",
            r.observed_on.join(", "),
            r.server
        )
    } else {
        return None;
    };
    // The servers of this case that answered exactly like this one and failed the same way.
    let alike: Vec<&Row> = rows
        .iter()
        .copied()
        .filter(|o| {
            o.verdict == "failed"
                && o.expect_key == r.expect_key
                && o.observed.as_ref() == Some(observed)
        })
        .collect();
    let keep_out: Vec<&str> = rows
        .iter()
        .filter(|o| !alike.iter().any(|a| a.key() == o.key()))
        .map(|o| o.server.as_str())
        .collect();
    let key = key_for(
        &r.server,
        r.expect_key.as_deref(),
        &alike.iter().map(|a| a.server.as_str()).collect::<Vec<_>>(),
        &keep_out,
    );
    Some(Difference {
        because,
        servers: alike.iter().map(|a| a.server.clone()).collect(),
        block: block(&key, expect, observed),
        key,
    })
}

/// Whether an `observed_on` entry (`openbao:2.7.2`, or a key like `openbao:2.7`) covers `server`.
pub fn covers(entry: &str, server: &str) -> bool {
    let (flavour, version) = server.split_once(':').unwrap_or((server, ""));
    override_matches(entry, flavour, version)
}

/// The widest `flavours` key that matches `server` and every server in `alike`, none in
/// `keep_out`, and is at least as specific as the key that applied (`applied`), so it takes
/// precedence; else the server itself.
pub fn key_for(server: &str, applied: Option<&str>, alike: &[&str], keep_out: &[&str]) -> String {
    let (flavour, version) = server.split_once(':').unwrap_or((server, ""));
    let parts: Vec<&str> = version.split('.').collect();
    let mut candidates = vec![flavour.to_string()];
    for n in 1..=parts.len() {
        candidates.push(format!("{flavour}:{}", parts[..n].join(".")));
    }
    let min_len = applied.map(str::len).unwrap_or(0);
    candidates
        .into_iter()
        .filter(|k| k.len() >= min_len)
        .find(|k| alike.iter().all(|s| covers(k, s)) && !keep_out.iter().any(|s| covers(k, s)))
        .unwrap_or_else(|| server.to_string())
}

/// The `flavours:` block: the expectations that applied, each field that did not hold replaced
/// by what was observed.
pub fn block(key: &str, expect: &Value, observed: &Signature) -> String {
    let updated = with_observed(expect, observed);
    let doc = json!({ "flavours": { key: { "expect": updated } } });
    super::catalog_yaml::render(&doc)
}

/// `expect` (the JSON of an [`crate::case::model::Expect`]) with every field the observation
/// contradicts set to the observed value.
pub fn with_observed(expect: &Value, observed: &Signature) -> Value {
    let mut out = Map::new();
    let Some(obj) = expect.as_object() else {
        return expect.clone();
    };
    for (k, v) in obj {
        if v.is_null() {
            continue;
        }
        let new = match k.as_str() {
            "config" | "role" | "login" => response(k, v, observed),
            "audit" => section(v, observed, |f| format!("audit.{f}")),
            "auth" => auth(v, observed),
            "server_log" => server_log(v, observed),
            "cluster_requests" => cluster(v, observed),
            "diagnosis" => observed
                .get("diagnosis")
                .map(|d| Value::String(d.into()))
                .unwrap_or(Value::Null),
            _ => v.clone(),
        };
        if !new.is_null() {
            out.insert(k.clone(), new);
        }
    }
    Value::Object(out)
}

/// A matcher kept when it matches the observed text, else the observed text itself.
fn text(want: &Value, got: Option<&str>) -> Value {
    let Some(got) = got else {
        return Value::Null;
    };
    let holds = serde_json::from_value::<TextMatch>(want.clone())
        .is_ok_and(|m| text_matches(&m, got, &Vars::new()));
    if holds {
        want.clone()
    } else {
        matcher_for(got)
    }
}

/// The matcher of an observed text: the text itself, or a pattern where it holds a value that
/// changes with every trial.
pub fn matcher_for(got: &str) -> Value {
    if super::signature::varies(got) {
        json!({ "regex": super::signature::as_regex(got) })
    } else {
        Value::String(got.into())
    }
}

fn response(what: &str, v: &Value, observed: &Signature) -> Value {
    let mut out = Map::new();
    let status = observed
        .get(&format!("{what}.status"))
        .and_then(|s| s.parse::<u16>().ok());
    out.insert(
        "status".into(),
        status
            .map(Value::from)
            .unwrap_or_else(|| v["status"].clone()),
    );
    if let Some(e) = v.get("error").filter(|e| !e.is_null()) {
        let t = text(e, observed.get(&format!("{what}.error")));
        if !t.is_null() {
            out.insert("error".into(), t);
        }
    }
    if v.get("warnings").is_some_and(|w| !w.is_null()) {
        let got: Vec<String> = observed
            .get(&format!("{what}.warnings"))
            .and_then(|w| serde_json::from_str(w).ok())
            .unwrap_or_default();
        out.insert("warnings".into(), json!(got));
    }
    Value::Object(out)
}

fn section(v: &Value, observed: &Signature, field: impl Fn(&str) -> String) -> Value {
    let mut out = Map::new();
    for (k, want) in v.as_object().into_iter().flatten() {
        if want.is_null() {
            continue;
        }
        let t = text(want, observed.get(&field(k)));
        if !t.is_null() {
            out.insert(k.clone(), t);
        }
    }
    Value::Object(out)
}

fn auth(v: &Value, observed: &Signature) -> Value {
    let mut out = v.as_object().cloned().unwrap_or_default();
    if out.get("policies").is_some_and(|p| !p.is_null())
        && let Some(p) = observed
            .get("auth.policies")
            .and_then(|p| serde_json::from_str::<Value>(p).ok())
    {
        out.insert("policies".into(), p);
    }
    if let Some(want) = v.get("alias_name").filter(|a| !a.is_null()) {
        let t = text(want, observed.get("auth.alias_name"));
        out.insert("alias_name".into(), t);
    }
    Value::Object(out)
}

fn server_log(v: &Value, observed: &Signature) -> Value {
    let mut out = Map::new();
    if v.get("level").is_some_and(|l| !l.is_null())
        && let Some(l) = observed.get("server_log.level")
    {
        out.insert("level".into(), Value::String(l.into()));
    }
    let message = text(&v["message"], observed.get("server_log.message"));
    out.insert("message".into(), message);
    let fields = section(&v["fields"], observed, |f| format!("server_log.{f}"));
    if fields.as_object().is_some_and(|f| !f.is_empty()) {
        out.insert("fields".into(), fields);
    }
    Value::Object(out)
}

fn cluster(v: &Value, observed: &Signature) -> Value {
    let mut out = Map::new();
    for (k, want) in v.as_object().into_iter().flatten() {
        if want.is_null() || want == &Value::Bool(false) {
            continue;
        }
        let got = observed.get(&format!("cluster.{k}"));
        let new = match (k.as_str(), got) {
            // Only while no request was made.
            ("none", _) if observed.get("cluster.requests") != Some("none") => continue,
            // Which cluster was asked: as observed (no longer one alone: left out).
            ("cluster", _) => match observed.get("cluster.asked") {
                Some(c) => Some(Value::from(c)),
                None => continue,
            },
            ("tokenreview_status", Some(s)) => s.parse::<u16>().map(Value::from).ok(),
            ("tokenreview_audiences", Some(s)) => serde_json::from_str(s).ok(),
            ("tokenreview_user", Some(_)) => Some(text(want, got)),
            // `none`, or a request this trial did not make: as written.
            _ => Some(want.clone()),
        };
        out.insert(k.clone(), new.unwrap_or_else(|| want.clone()));
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_as_wide_as_the_servers_that_answered_alike() {
        let alike = ["openbao:2.6.1", "openbao:2.6.2"];
        let passed = ["openbao:2.7.0", "openbao:2.7.2"];
        assert_eq!(
            key_for("openbao:2.6.1", None, &alike, &passed),
            "openbao:2.6"
        );
        // Only 2.6.1 answered this way: its own key.
        assert_eq!(
            key_for("openbao:2.6.1", None, &alike[..1], &["openbao:2.6.2"]),
            "openbao:2.6.1"
        );
        // A Vault server where only OpenBao passed: the flavour.
        assert_eq!(
            key_for("vault:1.21.1", None, &["vault:1.21.1"], &passed),
            "vault"
        );
        // Never wider than the key that applied, or it would not take over.
        assert_eq!(
            key_for("vault:1.21.1", Some("vault:1.21"), &["vault:1.21.1"], &[]),
            "vault:1.21"
        );
    }

    fn row(server: &str, verdict: &str, observed_on: &[&str]) -> Row {
        Row {
            name: format!("c::{server}"),
            case: "c".into(),
            auth: "jwt".into(),
            mode: None,
            topology: "outside".into(),
            server: server.into(),
            cluster: "sim".into(),
            kubernetes: None,
            verdict: verdict.into(),
            messages: Vec::new(),
            not_checked: Vec::new(),
            observed: Some(Signature(
                [("login.status".to_string(), "400".to_string())].into(),
            )),
            expect_key: None,
            expect: Some(json!({"login": {"status": 403}})),
            observed_on: observed_on.iter().map(|s| s.to_string()).collect(),
            total_ms: 1,
            phases: Default::default(),
            artifacts: None,
            run_id: "r".into(),
            difference: None,
            earlier: Vec::new(),
        }
    }

    /// Vault on its first night: the expectations were observed on OpenBao only.
    #[test]
    fn a_failure_on_a_server_the_case_was_never_observed_on_is_a_difference() {
        let on = ["openbao:2.7.2"];
        let mut rows = vec![row("vault:1.21.1", "failed", &on)];
        classify(&mut rows);
        let d = rows[0].difference.as_ref().expect("a difference");
        assert_eq!(d.key, "vault");
        assert!(
            d.because
                .contains("observed on openbao:2.7.2, not on vault:1.21.1")
        );
        assert!(d.block.contains("status: 400"), "{}", d.block);
        // A failure where the case was observed is a failure, not a difference.
        let mut rows = vec![row("openbao:2.7.2", "failed", &on)];
        classify(&mut rows);
        assert!(rows[0].difference.is_none());
        // So is an error.
        let mut rows = vec![row("vault:1.21.1", "error", &on)];
        classify(&mut rows);
        assert!(rows[0].difference.is_none());
    }

    #[test]
    fn the_block_keeps_what_held_and_takes_what_was_observed() {
        let expect = json!({
            "login": {"status": 403, "error": "permission denied"},
            "server_log": {"level": "DEBUG", "message": "login unauthorized",
                           "fields": {"err": {"contains": "issuer"}}},
            "diagnosis": "discovery-issuer",
        });
        let observed = Signature(
            [
                ("login.status", "400"),
                ("login.error", "error checking oidc discovery URL"),
                ("server_log.level", "DEBUG"),
                ("server_log.message", "login unauthorized"),
                ("server_log.err", "oidc: issuer did not match"),
                ("diagnosis", "discovery-issuer"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        );
        let got = with_observed(&expect, &observed);
        assert_eq!(
            got,
            json!({
                "login": {"status": 400, "error": "error checking oidc discovery URL"},
                "server_log": {"level": "DEBUG", "message": "login unauthorized",
                               "fields": {"err": {"contains": "issuer"}}},
                "diagnosis": "discovery-issuer",
            })
        );
        let yaml = block("openbao:2.6", &expect, &observed);
        assert!(yaml.starts_with("flavours:\n"), "{yaml}");
        assert!(yaml.contains("openbao:2.6"), "{yaml}");
        // The block is a valid `flavours` entry of a case.
        #[derive(serde::Deserialize)]
        struct Part {
            flavours: std::collections::BTreeMap<String, crate::case::model::FlavourOverride>,
        }
        let part: Part = serde_saphyr::from_str(&yaml).unwrap();
        let e = &part.flavours["openbao:2.6"].expect;
        assert_eq!(e.login.as_ref().unwrap().status, 400);
    }
}
