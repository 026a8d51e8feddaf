//! The signature a trial observed: for each field an expectation can name, what this trial saw,
//! with this run's values (ports, mount paths, accessors, tokens) turned back into their
//! `${placeholder}`, so that trials of different servers and runs compare field by field.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{
    case::model::Expect,
    evidence::{Evidence, Observed},
    logs::LogLine,
    matching::find_log_line,
    placeholders::Vars,
};

/// Observed values by field (`login.status`, `login.error`, `server_log.err`, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Signature(pub BTreeMap<String, String>);

/// The order fields are shown in (fields not listed come after, alphabetically).
const ORDER: &[&str] = &[
    "config.status",
    "config.error",
    "config.warnings",
    "role.status",
    "role.error",
    "role.warnings",
    "login.status",
    "login.error",
    "audit.error",
    "audit.data_error",
    "auth.policies",
    "auth.alias_name",
    "server_log.level",
    "server_log.message",
    "server_log.err",
    "cluster.asked",
    "cluster.tokenreview_status",
    "cluster.tokenreview_user",
    "cluster.tokenreview_audiences",
    "cluster.requests",
    "diagnosis",
];

impl Signature {
    /// The value of `field`, if observed.
    pub fn get(&self, field: &str) -> Option<&str> {
        self.0.get(field).map(String::as_str)
    }

    /// The fields this and `other` observed alike, and for each field they differ in, what
    /// each saw (`field: a, then b`; `(none)` where one did not observe it).
    pub fn shared_with(&self, other: &Signature) -> (Signature, Vec<String>) {
        let mut shared = BTreeMap::new();
        let mut varied = Vec::new();
        let keys: std::collections::BTreeSet<&String> =
            self.0.keys().chain(other.0.keys()).collect();
        for k in keys {
            match (self.0.get(k), other.0.get(k)) {
                (Some(a), Some(b)) if a == b => {
                    shared.insert(k.clone(), a.clone());
                }
                (a, b) => varied.push(format!(
                    "{k}: {}, then {}",
                    a.map_or("(none)".into(), |v| format!("{v:?}")),
                    b.map_or("(none)".into(), |v| format!("{v:?}"))
                )),
            }
        }
        (Signature(shared), varied)
    }

    /// Fields in display order.
    pub fn fields(&self) -> Vec<(&str, &str)> {
        let mut out: Vec<(&str, &str)> = self
            .0
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        out.sort_by_key(|(k, _)| (rank(k), k.to_string()));
        out
    }
}

/// Every field any of `sigs` holds, in display order.
pub fn all_fields<'a>(sigs: impl IntoIterator<Item = &'a Signature>) -> Vec<String> {
    let mut fields: Vec<String> = sigs
        .into_iter()
        .flat_map(|s| s.0.keys().cloned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    fields.sort_by_key(|f| (rank(f), f.clone()));
    fields
}

/// The display rank of a field.
pub fn rank(field: &str) -> usize {
    ORDER.iter().position(|f| *f == field).unwrap_or_else(|| {
        match field.strip_prefix("server_log.") {
            // Other fields of the log line sit with it.
            Some(_) => ORDER
                .iter()
                .position(|f| *f == "server_log.err")
                .unwrap_or(0),
            None => ORDER.len(),
        }
    })
}

/// What the trial observed, judged by what `expect` names (the server-log line is the one the
/// expectation matched, else the mount's first line above TRACE).
pub fn observe(expect: &Expect, ev: &Evidence, vars: &Vars) -> Signature {
    let mut s = BTreeMap::new();
    let mut put = |k: &str, v: String| {
        s.insert(k.to_string(), placeholders_back(&v, vars));
    };
    let mut response = |what: &str, r: &Option<Observed>| {
        if let Some(r) = r {
            put(&format!("{what}.status"), r.status.to_string());
            if let Some(e) = r.errors.first() {
                put(&format!("{what}.error"), e.clone());
            }
            if !r.warnings.is_empty() {
                put(
                    &format!("{what}.warnings"),
                    serde_json::to_string(&r.warnings).unwrap_or_default(),
                );
            }
        }
    };
    response("config", &ev.config);
    response("role", &ev.role);
    response("login", &ev.login);
    if let Some(a) = &ev.audit_login {
        if let Some(e) = &a.error {
            put("audit.error", e.clone());
        }
        if let Some(e) = &a.data_error {
            put("audit.data_error", e.clone());
        }
    }
    if let Some(a) = &ev.auth {
        put(
            "auth.policies",
            serde_json::to_string(&a.policies).unwrap_or_default(),
        );
        if let Some(n) = &a.alias_name {
            put("auth.alias_name", n.clone());
        }
    }
    let line: Option<&LogLine> = expect
        .server_log
        .as_ref()
        .and_then(|l| find_log_line(l, &ev.server_log, vars))
        .or_else(|| ev.server_log.iter().find(|l| l.level != "TRACE"));
    if let Some(line) = line {
        put("server_log.level", line.level.clone());
        put("server_log.message", line.message.clone());
        let named: Vec<&String> = expect
            .server_log
            .iter()
            .flat_map(|l| l.fields.keys())
            .collect();
        for (k, v) in &line.fields {
            if k == "err" || named.contains(&k) {
                put(&format!("server_log.{k}"), v.clone());
            }
        }
    }
    let requests = ev.requests_of(None);
    if let Some(c) = ev.only_asked() {
        put(
            "cluster.asked",
            match c {
                crate::case::model::TokenCluster::This => "this",
                crate::case::model::TokenCluster::Other => "other",
            }
            .into(),
        );
    }
    if let Some(r) = requests
        .iter()
        .flatten()
        .find(|r| r.path.contains("/tokenreviews"))
    {
        put("cluster.tokenreview_status", r.status.to_string());
        put(
            "cluster.tokenreview_user",
            r.user.clone().unwrap_or_default(),
        );
        if let Some(review) = &r.review {
            put(
                "cluster.tokenreview_audiences",
                serde_json::to_string(&review.audiences).unwrap_or_default(),
            );
        }
    }
    if let Some(requests) = &requests {
        let other: Vec<String> = requests
            .iter()
            .filter(|r| !r.path.contains("/tokenreviews"))
            .map(|r| {
                format!(
                    "{} {} -> {} as {}",
                    r.method,
                    r.path,
                    r.status,
                    r.user.as_deref().unwrap_or("(unauthenticated)")
                )
            })
            .collect();
        if !other.is_empty() {
            put("cluster.requests", other.join("; "));
        } else if requests.is_empty() && ev.login.is_some() {
            put("cluster.requests", "none".into());
        }
    }
    if let Some(f) = ev
        .diagnosis
        .first()
        .filter(|f| f.score >= crate::diagnose::DETERMINED)
    {
        put("diagnosis", f.cause.as_str().to_string());
    }
    Signature(s)
}

/// What a UUID (an object's `uid`, new in every trial) is written as in a signature.
pub const UUID: &str = "<uuid>";

fn uuid_re() -> &'static regex::Regex {
    static R: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    R.get_or_init(|| {
        regex::Regex::new("[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
            .expect("valid")
    })
}

/// What the local port of a connection (new in every trial) is written as in a signature.
pub const PORT: &str = "<port>";

fn port_re() -> &'static regex::Regex {
    static R: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    // `read tcp 127.0.0.1:50780->127.0.0.1:39807`: the first port is the client's own.
    R.get_or_init(|| regex::Regex::new(r"(tcp \S+?):\d+->").expect("valid"))
}

/// Whether `text` holds a value that changes with every trial ([`UUID`], [`PORT`]).
pub fn varies(text: &str) -> bool {
    text.contains(UUID) || text.contains(PORT)
}

/// A regular expression that matches `text` as observed (with [`UUID`] standing for any UUID
/// and [`PORT`] for any port); `${placeholders}` stay as they are (matching substitutes them,
/// escaped).
pub fn as_regex(text: &str) -> String {
    static TOKENS: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let tokens = TOKENS
        .get_or_init(|| regex::Regex::new(r"<uuid>|<port>|\$\{[A-Za-z0-9._-]+\}").expect("valid"));
    let mut out = String::from("^");
    let mut at = 0;
    for m in tokens.find_iter(text) {
        out.push_str(&regex::escape(&text[at..m.start()]));
        out.push_str(match m.as_str() {
            UUID => "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
            PORT => "[0-9]+",
            placeholder => placeholder,
        });
        at = m.end();
    }
    out.push_str(&regex::escape(&text[at..]));
    out.push('$');
    out
}

/// `text` with every placeholder value of this trial replaced by its `${name}` (longest values
/// first, so a URL wins over the host:port inside it) and every UUID by [`UUID`]. Values
/// shorter than 4 characters are left alone: they would replace unrelated text.
pub fn placeholders_back(text: &str, vars: &Vars) -> String {
    let mut by_len: Vec<(&String, &String)> = vars.iter().filter(|(_, v)| v.len() >= 4).collect();
    by_len.sort_by_key(|(_, v)| std::cmp::Reverse(v.len()));
    let mut out = text.to_string();
    for (k, v) in by_len {
        if out.contains(v.as_str()) {
            out = out.replace(v.as_str(), &format!("${{{k}}}"));
        }
    }
    let out = uuid_re().replace_all(&out, UUID);
    port_re()
        .replace_all(&out, format!("${{1}}:{PORT}->").as_str())
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_observations_share_only_what_both_saw_alike() {
        let sig = |kv: &[(&str, &str)]| {
            Signature(
                kv.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
        };
        let a = sig(&[
            ("login.status", "403"),
            ("server_log.message", "login unauthorized"),
        ]);
        let b = sig(&[("login.status", "403"), ("server_log.err", "x")]);
        let (shared, varied) = a.shared_with(&b);
        assert_eq!(shared, sig(&[("login.status", "403")]));
        assert_eq!(
            varied,
            [
                "server_log.err: (none), then \"x\"",
                "server_log.message: \"login unauthorized\", then (none)"
            ]
        );
        assert_eq!(a.shared_with(&a), (a.clone(), Vec::new()));
    }

    #[test]
    fn run_values_become_placeholders_longest_first() {
        let vars: Vars = [
            ("cluster.url", "https://127.0.0.1:41234"),
            ("cluster.hostport", "127.0.0.1:41234"),
            ("mount", "k8s-7"),
            ("kv", "kv"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let text = "Post \"https://127.0.0.1:41234/apis\": dial 127.0.0.1:41234 at k8s-7 kv";
        assert_eq!(
            placeholders_back(text, &vars),
            "Post \"${cluster.url}/apis\": dial ${cluster.hostport} at ${mount} kv"
        );
        let uid = "UID (0974ec78-9bdb-46d1-ab01-050c33d07500) does not match";
        let seen = placeholders_back(uid, &vars);
        assert_eq!(seen, "UID (<uuid>) does not match");
        let re = regex::Regex::new(&as_regex(&seen)).unwrap();
        assert!(re.is_match(uid));
        assert!(!re.is_match("UID (x) does not match"));
        let reset = "read tcp 127.0.0.1:50780->127.0.0.1:39807: read: connection reset by peer";
        let seen = placeholders_back(reset, &vars);
        assert_eq!(
            seen,
            "read tcp 127.0.0.1:<port>->127.0.0.1:39807: read: connection reset by peer"
        );
        assert!(regex::Regex::new(&as_regex(&seen)).unwrap().is_match(reset));
        assert_eq!(
            as_regex("Post \"${reset.url}/x\" <port>"),
            "^Post \"${reset.url}/x\" [0-9]+$"
        );
    }

    #[test]
    fn fields_come_in_display_order() {
        let s = Signature(
            [
                ("diagnosis", "wrong-ca"),
                ("login.status", "403"),
                ("server_log.role", "r"),
                ("config.status", "204"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        );
        let keys: Vec<&str> = s.fields().into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                "config.status",
                "login.status",
                "server_log.role",
                "diagnosis"
            ]
        );
    }
}
