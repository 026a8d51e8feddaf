//! `authlab run --bless`: writes what the servers answered into the case files, the way
//! snapshot tests record their snapshots. For each case, the expectations of every server that
//! ran it are built from its observed signature (this run's values already turned back into
//! `${placeholders}`, UUIDs into a pattern); matchers of the file that still hold are kept. The
//! expectations the newest server shares become `expect`, the others `flavours` entries under
//! the widest key that covers the servers which answered alike and none that answered
//! otherwise; `observed_on` gains this run's servers. Only the `expect`, `flavours` and
//! `observed_on` blocks of the file change: comments and the order of everything else stay.

use std::path::PathBuf;

use serde_json::{Map, Value, json};

use crate::{
    case::{LoadedCase, load},
    report::{
        difference::{covers, key_for, matcher_for, with_observed},
        matrix::ServerKey,
        signature::Signature,
    },
};

/// Errors of blessing a case file.
#[derive(Debug, thiserror::Error)]
pub enum BlessError {
    /// The blessed text would not load.
    #[error("{path}: the blessed file would not load ({why}); it was left as it was")]
    Invalid {
        /// The case file.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// The file could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The case file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// What blessing did to one case file.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The file was rewritten: with this `expect` block (YAML) and these `flavours` keys.
    Written {
        /// The `expect:` block written.
        expect: String,
        /// The keys of the `flavours:` entries the file now holds.
        flavours: Vec<String>,
    },
    /// What the servers answered is what the file says.
    Unchanged,
}

/// The expectations a signature makes, from nothing.
fn fresh(sig: &Signature) -> Value {
    let g = |k: &str| sig.get(k);
    let status = |k: &str| g(k).and_then(|s| s.parse::<u16>().ok());
    let mut e = Map::new();
    let failed = |k: &str| status(k).is_some_and(|s| s >= 300);
    let response = |what: &str, always: bool| -> Option<Value> {
        let st = status(&format!("{what}.status"))?;
        let warnings: Option<Vec<String>> =
            g(&format!("{what}.warnings")).and_then(|w| serde_json::from_str(w).ok());
        if !always && st < 300 && warnings.is_none() {
            return None;
        }
        let mut r = Map::new();
        r.insert("status".into(), st.into());
        if let Some(err) = g(&format!("{what}.error")) {
            r.insert("error".into(), matcher_for(err));
        }
        if let Some(w) = warnings {
            r.insert("warnings".into(), json!(w));
        }
        Some(Value::Object(r))
    };
    if let Some(c) = response("config", false) {
        e.insert("config".into(), c);
    }
    if let Some(r) = response("role", false) {
        e.insert("role".into(), r);
    }
    if let Some(l) = response("login", true) {
        e.insert("login".into(), l);
    }
    let mut audit = Map::new();
    for f in ["error", "data_error"] {
        if let Some(v) = g(&format!("audit.{f}")) {
            audit.insert(f.into(), matcher_for(v));
        }
    }
    if !audit.is_empty() {
        e.insert("audit".into(), Value::Object(audit));
    }
    if let Some(p) = g("auth.policies").and_then(|p| serde_json::from_str::<Value>(p).ok()) {
        let mut a = json!({ "policies": p });
        // A UID is new in every trial: the default alias name says nothing a case can keep.
        if let Some(n) = g("auth.alias_name").filter(|n| !crate::report::signature::varies(n)) {
            a["alias_name"] = n.into();
        }
        e.insert("auth".into(), a);
    }
    let refused = failed("config.status") || failed("role.status") || failed("login.status");
    if refused && let Some(message) = g("server_log.message") {
        let mut l = Map::new();
        if let Some(level) = g("server_log.level") {
            l.insert("level".into(), level.into());
        }
        l.insert("message".into(), matcher_for(message));
        if let Some(err) = g("server_log.err") {
            l.insert("fields".into(), json!({ "err": matcher_for(err) }));
        }
        e.insert("server_log".into(), Value::Object(l));
    }
    let mut cluster = Map::new();
    if g("cluster.requests") == Some("none") {
        cluster.insert("none".into(), true.into());
    }
    if let Some(s) = status("cluster.tokenreview_status") {
        cluster.insert("tokenreview_status".into(), s.into());
    }
    if let Some(u) = g("cluster.tokenreview_user").filter(|u| !u.is_empty()) {
        cluster.insert("tokenreview_user".into(), u.into());
    }
    let made: Vec<Value> = g("cluster.requests")
        .filter(|r| *r != "none")
        .map(|r| r.split("; ").filter_map(request).collect())
        .unwrap_or_default();
    if !made.is_empty() {
        cluster.insert("made".into(), Value::Array(made));
    }
    if !cluster.is_empty() {
        // Which cluster, when only one of the trial's two was asked.
        if let Some(c) = g("cluster.asked") {
            cluster.insert("cluster".into(), c.into());
        }
        e.insert("cluster_requests".into(), Value::Object(cluster));
    }
    if refused && let Some(d) = g("diagnosis") {
        e.insert("diagnosis".into(), d.into());
    }
    Value::Object(e)
}

/// `GET /path -> 403 as user` back into a request match.
fn request(s: &str) -> Option<Value> {
    let (method, rest) = s.split_once(' ')?;
    let (path, rest) = rest.split_once(" -> ")?;
    let (status, user) = rest.split_once(" as ")?;
    let mut m = json!({ "method": method, "path": path, "status": status.parse::<u16>().ok()? });
    if user != "(unauthenticated)" {
        m["user"] = user.into();
    }
    Some(m)
}

/// Adds to `into` every key of `from` it lacks, recursively.
fn add_missing(into: &mut Value, from: &Value) {
    if let (Some(a), Some(b)) = (into.as_object_mut(), from.as_object()) {
        for (k, v) in b {
            match a.get_mut(k) {
                Some(existing) => add_missing(existing, v),
                None => {
                    a.insert(k.clone(), v.clone());
                }
            }
        }
    }
}

/// Drops empty objects (a section whose every field went away).
fn prune(v: &mut Value) {
    if let Some(o) = v.as_object_mut() {
        for x in o.values_mut() {
            prune(x);
        }
        o.retain(|_, x| !x.as_object().is_some_and(|m| m.is_empty()));
    }
}

/// The expectations for one server: the file's matchers where they hold on `sig`, what `sig`
/// says elsewhere.
pub fn expectation(old: Option<&Value>, sig: &Signature) -> Value {
    let fresh = fresh(sig);
    let mut e = match old.filter(|o| o.as_object().is_some_and(|m| !m.is_empty())) {
        Some(old) => {
            let mut kept = with_observed(old, sig);
            // What `fresh` leaves out is no longer observed (a line, a request, a cause).
            if let (Some(k), Some(f)) = (kept.as_object_mut(), fresh.as_object()) {
                // `eso` and `cluster_objects` are not in signatures: kept as written.
                k.retain(|key, _| f.contains_key(key) || key == "eso" || key == "cluster_objects");
            }
            kept
        }
        None => Value::Object(Map::new()),
    };
    add_missing(&mut e, &fresh);
    prune(&mut e);
    e
}

/// Finds the top-level blocks of a YAML text: (key, first line, one past the last line), the
/// last line excluding blank lines and comments at column 0 that precede the next key.
fn blocks(lines: &[&str]) -> Vec<(String, usize, usize)> {
    let key_of = |l: &str| -> Option<String> {
        let first = l.chars().next()?;
        if !(first.is_ascii_alphabetic() || first == '_' || first == '"') {
            return None;
        }
        let (k, _) = l.split_once(':')?;
        (!k.contains(' ')).then(|| k.trim_matches('"').to_string())
    };
    let starts: Vec<(usize, String)> = lines
        .iter()
        .enumerate()
        .filter_map(|(i, l)| key_of(l).map(|k| (i, k)))
        .collect();
    let mut out = Vec::new();
    for (n, (i, k)) in starts.iter().enumerate() {
        let mut end = starts.get(n + 1).map(|(j, _)| *j).unwrap_or(lines.len());
        while end > i + 1 {
            let l = lines[end - 1].trim_end();
            if l.is_empty() || l.starts_with('#') {
                end -= 1;
            } else {
                break;
            }
        }
        out.push((k.clone(), *i, end));
    }
    out
}

/// `text` with the top-level block `key` replaced by `new` (inserted after the block `after`,
/// else at the end, when the file has none; removed when `new` is None).
fn replace_block(text: &str, key: &str, new: Option<&str>, after: &str) -> String {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let found = blocks(&lines);
    let mut out = String::new();
    let push_new = |out: &mut String| {
        if let Some(n) = new {
            out.push_str(n);
            if !n.ends_with('\n') {
                out.push('\n');
            }
        }
    };
    match found.iter().find(|(k, _, _)| k == key) {
        Some((_, start, end)) => {
            for l in &lines[..*start] {
                out.push_str(l);
            }
            push_new(&mut out);
            for l in &lines[*end..] {
                out.push_str(l);
            }
        }
        None => {
            let at = found
                .iter()
                .find(|(k, _, _)| k == after)
                .map(|(_, _, end)| *end)
                .unwrap_or(lines.len());
            for l in &lines[..at] {
                out.push_str(l);
            }
            if !out.is_empty() && !out.ends_with('\n') {
                out.push('\n');
            }
            push_new(&mut out);
            for l in &lines[at..] {
                out.push_str(l);
            }
        }
    }
    out
}

fn yaml(v: &Value) -> String {
    crate::report::catalog_yaml::render(v)
}

/// The pending file a bless writes beside a case file for review: `<file>.new` (as insta's
/// `.snap.new`).
pub fn pending_path(case: &std::path::Path) -> std::path::PathBuf {
    let mut p = case.as_os_str().to_os_string();
    p.push(".new");
    p.into()
}

/// Blesses one case with what `observed` servers answered (`flavour:version`, signature):
/// into the case file itself with `in_place`, else into its pending file ([`pending_path`]),
/// which is removed when the case already holds what was observed.
pub fn bless(
    lc: &LoadedCase,
    observed: &[(String, Signature)],
    in_place: bool,
) -> Result<Outcome, BlessError> {
    if observed.is_empty() {
        return Ok(Outcome::Unchanged);
    }
    let case = &lc.case;
    let old_for = |server: &str| {
        let (f, v) = server.split_once(':').unwrap_or((server, ""));
        serde_json::to_value(case.expect_for(f, v)).ok()
    };
    let per: Vec<(String, Value)> = observed
        .iter()
        .map(|(s, sig)| (s.clone(), expectation(old_for(s).as_ref(), sig)))
        .collect();
    // Servers by what they are expected to answer; the group of the newest server is `expect`.
    let mut groups: Vec<(Vec<String>, Value)> = Vec::new();
    for (s, e) in &per {
        match groups.iter_mut().find(|(_, g)| g == e) {
            Some((servers, _)) => servers.push(s.clone()),
            None => groups.push((vec![s.clone()], e.clone())),
        }
    }
    let newest = per
        .iter()
        .map(|(s, _)| s)
        .max_by_key(|s| ServerKey::parse(s))
        .cloned()
        .unwrap_or_default();
    groups.sort_by_key(|(servers, _)| !servers.contains(&newest));
    let base = groups[0].1.clone();
    let ran: Vec<&str> = per.iter().map(|(s, _)| s.as_str()).collect();
    // Entries for servers this run did not cover stay as they were.
    let mut flavours = Map::new();
    for (key, o) in &case.flavours {
        let covers_ran = ran.iter().any(|s| covers(key, s));
        if !covers_ran {
            flavours.insert(
                key.clone(),
                json!({ "expect": serde_json::to_value(&o.expect).unwrap_or_default() }),
            );
        }
    }
    for (servers, e) in &groups[1..] {
        let alike: Vec<&str> = servers.iter().map(String::as_str).collect();
        let others: Vec<&str> = ran.iter().copied().filter(|s| !alike.contains(s)).collect();
        // One entry per server when no key covers them all and none of the others.
        let key = key_for(alike[0], None, &alike, &others);
        let keys: Vec<String> = if alike.iter().all(|s| covers(&key, s)) {
            vec![key]
        } else {
            alike.iter().map(|s| s.to_string()).collect()
        };
        for k in keys {
            flavours.insert(k, json!({ "expect": e }));
        }
    }
    let mut observed_on: Vec<String> = case.observed_on.clone();
    for s in &ran {
        if !observed_on.iter().any(|o| o == s) {
            observed_on.push(s.to_string());
        }
    }
    observed_on.sort_by_key(|s| ServerKey::parse(s));
    let expect_text = yaml(&json!({ "expect": base }));
    let mut text = replace_block(&lc.text, "expect", Some(&expect_text), "");
    let flavours_text = (!flavours.is_empty()).then(|| yaml(&json!({ "flavours": flavours })));
    text = replace_block(&text, "flavours", flavours_text.as_deref(), "expect");
    text = replace_block(
        &text,
        "observed_on",
        Some(&format!("observed_on: [{}]\n", observed_on.join(", "))),
        "flavours",
    );
    let pending = pending_path(&lc.path);
    if text == lc.text {
        // A pending file from an earlier bless is out of date now.
        let _ = std::fs::remove_file(&pending);
        return Ok(Outcome::Unchanged);
    }
    load::parse(&lc.path, &text).map_err(|e| BlessError::Invalid {
        path: lc.path.clone(),
        why: e.to_string(),
    })?;
    let target = if in_place { lc.path.clone() } else { pending };
    // Written beside it and renamed over it: a case file is never left half-written.
    let tmp = target.with_extension("blessing");
    crate::report::files::replace(&tmp, text.as_bytes(), 0o644)
        .and_then(|_| std::fs::rename(&tmp, &target))
        .map_err(|source| BlessError::Io {
            path: target.clone(),
            source,
        })?;
    Ok(Outcome::Written {
        expect: expect_text,
        flavours: flavours.keys().cloned().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_keep_what_surrounds_them() {
        let text = "about: x\n# the expectations\nexpect:\n  login: { status: 200 }\n\n# where\nobserved_on: [a]\n";
        let out = replace_block(
            text,
            "expect",
            Some("expect:\n  login:\n    status: 403\n"),
            "",
        );
        assert_eq!(
            out,
            "about: x\n# the expectations\nexpect:\n  login:\n    status: 403\n\n# where\nobserved_on: [a]\n"
        );
        let added = replace_block(&out, "flavours", Some("flavours: {}\n"), "expect");
        assert!(
            added.contains("    status: 403\nflavours: {}\n\n# where"),
            "{added}"
        );
        let removed = replace_block(&added, "flavours", None, "expect");
        assert_eq!(removed, out);
        let appended = replace_block("about: x", "observed_on", Some("observed_on: [b]\n"), "");
        assert_eq!(appended, "about: x\nobserved_on: [b]\n");
    }

    #[test]
    fn an_expectation_from_nothing_and_from_what_held() {
        let sig = Signature(
            [
                ("config.status", "204"),
                ("role.status", "204"),
                ("login.status", "403"),
                ("login.error", "permission denied"),
                ("audit.error", "permission denied"),
                ("server_log.level", "DEBUG"),
                ("server_log.message", "login unauthorized"),
                ("server_log.err", "UID (<uuid>) does not match"),
                ("cluster.tokenreview_status", "201"),
                ("cluster.tokenreview_user", "system:serviceaccount:vault:vault-auth"),
                ("cluster.requests", "GET /api/v1/namespaces/default -> 403 as system:serviceaccount:vault:vault-auth"),
                ("diagnosis", "service-account-gone"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        );
        let e = expectation(None, &sig);
        assert_eq!(
            e["login"],
            json!({"status": 403, "error": "permission denied"})
        );
        assert!(e.get("config").is_none() && e.get("role").is_none());
        assert_eq!(
            e["server_log"]["fields"]["err"]["regex"]
                .as_str()
                .map(|r| r.contains("[0-9a-f]{8}")),
            Some(true)
        );
        assert_eq!(e["cluster_requests"]["made"][0]["status"], 403);
        assert_eq!(e["diagnosis"], "service-account-gone");
        // A matcher of the file that holds is kept; the result parses as expectations.
        let old = json!({"login": {"status": 403, "error": {"contains": "denied"}}});
        let again = expectation(Some(&old), &sig);
        assert_eq!(again["login"]["error"], json!({"contains": "denied"}));
        serde_json::from_value::<crate::case::model::Expect>(again.clone()).unwrap();
        assert_eq!(
            expectation(Some(&again), &sig),
            again,
            "blessing twice changes nothing"
        );
    }
}
