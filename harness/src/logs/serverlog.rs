//! The server's log in hclog's standard format:
//! `2026-11-22T19:00:00.000Z [DEBUG] auth.kubernetes.auth_kubernetes_90a2cd19: login unauthorized: err="..."`,
//! with multi-line values written as `  key=` followed by `  | line` continuation lines.

use std::sync::OnceLock;

use regex::Regex;

/// One log entry (possibly spanning several lines).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Timestamp as written.
    pub time: String,
    /// `TRACE`, `DEBUG`, `INFO`, `WARN` or `ERROR`.
    pub level: String,
    /// Logger name, e.g. `auth.kubernetes.auth_kubernetes_90a2cd19`.
    pub module: Option<String>,
    /// Message text before the key/value pairs (without the trailing colon).
    pub message: String,
    /// Key/value pairs, values unquoted and unescaped.
    pub fields: Vec<(String, String)>,
    /// The entry as written.
    pub raw: String,
}

impl LogLine {
    /// The message and its key/value pairs as one line (`login unauthorized err=...`), what
    /// diagnose reads.
    pub fn text(&self) -> String {
        let f: Vec<String> = self
            .fields
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!("{} {}", self.message, f.join(" "))
    }
}

fn head_re() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    R.get_or_init(|| {
        Regex::new(r"^(\d{4}-\d\d-\d\dT[0-9:.]+(?:Z|[+-]\d\d:?\d\d)) \[([A-Z]+)\]\s+(.*)$")
            .expect("static regex")
    })
}

fn field_line_re() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    R.get_or_init(|| Regex::new(r"^\s+([A-Za-z_][A-Za-z0-9_.\-]*)=(.*)$").expect("static regex"))
}

/// Parses log text into entries; lines before the first entry and banner lines are kept as
/// continuation text of the entry they follow and otherwise ignored.
pub fn parse_server_log(text: &str) -> Vec<LogLine> {
    let mut out: Vec<LogLine> = Vec::new();
    // Multi-line field being collected: (index in fields, lines).
    let mut pending: Option<(usize, Vec<String>)> = None;
    let flush = |entry: &mut LogLine, pending: &mut Option<(usize, Vec<String>)>| {
        if let Some((i, lines)) = pending.take() {
            let mut v = lines.join("\n");
            while v.ends_with('\n') || v.ends_with(' ') {
                v.pop();
            }
            entry.fields[i].1 = v;
        }
    };
    for line in text.lines() {
        if let Some(c) = head_re().captures(line) {
            if let Some(last) = out.last_mut() {
                flush(last, &mut pending);
            }
            out.push(parse_head(&c[1], &c[2], &c[3], line));
            continue;
        }
        let Some(entry) = out.last_mut() else {
            continue;
        };
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix('|') {
            if let Some((_, lines)) = pending.as_mut() {
                lines.push(rest.strip_prefix(' ').unwrap_or(rest).to_string());
                entry.raw.push('\n');
                entry.raw.push_str(line);
            }
            continue;
        }
        if let Some(c) = field_line_re().captures(line) {
            flush(entry, &mut pending);
            let key = c[1].to_string();
            let value = c[2].to_string();
            entry.raw.push('\n');
            entry.raw.push_str(line);
            if value.is_empty() {
                entry.fields.push((key, String::new()));
                pending = Some((entry.fields.len() - 1, Vec::new()));
            } else if let Some(pairs) = parse_pairs(&format!("{key}={value}")) {
                entry.fields.extend(pairs);
            }
        }
    }
    if let Some(last) = out.last_mut() {
        flush(last, &mut pending);
    }
    out
}

fn parse_head(time: &str, level: &str, rest: &str, raw: &str) -> LogLine {
    let (module, body) = match rest.split_once(": ") {
        Some((m, b)) if !m.contains(' ') && !m.is_empty() => (Some(m.to_string()), b),
        _ => match rest.strip_suffix(':') {
            Some(m) if !m.contains(' ') => (Some(m.to_string()), ""),
            _ => (None, rest),
        },
    };
    // The message ends where a `: key=value ...` tail parses completely.
    let mut message = body.to_string();
    let mut fields = Vec::new();
    let mut search = 0;
    while let Some(pos) = body[search..].find(": ") {
        let at = search + pos;
        if let Some(pairs) = parse_pairs(&body[at + 2..]) {
            message = body[..at].to_string();
            fields = pairs;
            break;
        }
        search = at + 2;
    }
    let message = message.trim_end().trim_end_matches(':').to_string();
    LogLine {
        time: time.to_string(),
        level: level.to_string(),
        module,
        message,
        fields,
        raw: raw.to_string(),
    }
}

/// Parses `k=v k2="quoted \"value\""`; None unless the whole text is pairs.
fn parse_pairs(text: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    let n = chars.len();
    while i < n {
        while i < n && chars[i] == ' ' {
            i += 1;
        }
        if i >= n {
            break;
        }
        // A key is one or more words joined by single spaces (`sanitized config=…`).
        let start = i;
        let is_key_char = |c: char| c.is_ascii_alphanumeric() || "_.-/".contains(c);
        loop {
            let word = i;
            while i < n && is_key_char(chars[i]) {
                i += 1;
            }
            if i == word {
                return None;
            }
            if i + 1 < n && chars[i] == ' ' && is_key_char(chars[i + 1]) {
                i += 1;
                continue;
            }
            break;
        }
        if i >= n || chars[i] != '=' {
            return None;
        }
        let key: String = chars[start..i].iter().collect();
        i += 1;
        let value = if i < n && chars[i] == '"' {
            // hclog escapes only double quotes (`"` → `\"`); every other character, backslashes
            // included, is written as is.
            i += 1;
            let mut v = String::new();
            let mut closed = false;
            while i < n {
                match chars[i] {
                    '\\' if i + 1 < n && chars[i + 1] == '"' => {
                        v.push('"');
                        i += 2;
                    }
                    '"' => {
                        closed = true;
                        i += 1;
                        break;
                    }
                    c => {
                        v.push(c);
                        i += 1;
                    }
                }
            }
            if !closed {
                return None;
            }
            v
        } else {
            let s = i;
            while i < n && chars[i] != ' ' {
                i += 1;
            }
            chars[s..i].iter().collect()
        };
        out.push((key, value));
    }
    (!out.is_empty()).then_some(out)
}

/// The log formats [`parse_any_server_log`] reads.
pub const LOG_FORMATS: &str = "hclog text (the default log_format), hclog JSON (log_format = \"json\"), \
either as written, behind journalctl's prefix (`Dec 01 13:40:30 host bao[812]: `, also -o short-iso), \
in journalctl -o json, behind kubectl logs --timestamps (and --prefix), in a CRI container log \
(/var/log/pods: `<time> stderr F <line>`), or in a Docker json-file log";

/// A CRI container log line (`/var/log/pods/…/0.log`): time, stream, `F` (full) or `P`
/// (partial: continued on the next line), the content.
fn cri_re() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    R.get_or_init(|| {
        Regex::new(r"^\d{4}-\d\d-\d\dT[0-9:.]+(?:Z|[+-]\d\d:\d\d) (?:stdout|stderr) ([FP]) ?(.*)$")
            .expect("static regex")
    })
}

/// The server's own line inside a container runtime's or the journal's JSON record: Docker's
/// json-file `{"log": …, "stream": …}`, `journalctl -o json`'s `{"MESSAGE": …}`.
fn unwrap_record(line: &str) -> Option<String> {
    if !line.starts_with('{') {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let o = v.as_object()?;
    let inner = if o.contains_key("stream") {
        o.get("log")?.as_str()?
    } else {
        o.get("MESSAGE")?.as_str()?
    };
    Some(inner.trim_end_matches(['\n', '\r']).to_string())
}

fn journal_re() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    R.get_or_init(|| {
        // journalctl (short, short-iso, short-precise): time, host, identifier[pid]:
        Regex::new(r"^(?:[A-Z][a-z]{2} [ 0-9]\d \d\d:\d\d:\d\d(?:\.\d+)?|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:[.,]\d+)?[+-]\d\d:?\d\d) \S+ [^\s:]+: ")
            .expect("static regex")
    })
}

fn stamp_re() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    R.get_or_init(|| Regex::new(r"^\d{4}-\d\d-\d\dT[0-9:.]+Z ").expect("static regex"))
}

/// The line without a kubectl `--prefix`, a journalctl prefix or a kubectl `--timestamps` time.
fn without_prefix(line: &str) -> &str {
    let mut line = line;
    if line.starts_with("[pod/")
        && let Some(end) = line.find("] ")
    {
        line = &line[end + 2..];
    }
    if let Some(m) = journal_re().find(line) {
        return &line[m.end()..];
    }
    if let Some(m) = stamp_re().find(line) {
        let rest = &line[m.end()..];
        // Only when a log line follows: hclog text starts with its own time.
        if rest.starts_with('{') || stamp_re().is_match(rest) || head_re().is_match(rest) {
            return rest;
        }
    }
    line
}

/// One hclog JSON entry (`{"@level":"debug","@message":…,"@module":…,"@timestamp":…,"err":…}`).
fn parse_json_line(line: &str) -> Option<LogLine> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let o = v.as_object()?;
    let text = |k: &str| o.get(k).and_then(|x| x.as_str()).map(str::to_string);
    let message = text("@message")?;
    let fields = o
        .iter()
        .filter(|(k, _)| !k.starts_with('@'))
        .map(|(k, v)| {
            (
                k.clone(),
                v.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string()),
            )
        })
        .collect();
    Some(LogLine {
        time: text("@timestamp").unwrap_or_default(),
        level: text("@level").unwrap_or_default().to_uppercase(),
        module: text("@module"),
        message,
        fields,
        raw: line.to_string(),
    })
}

/// Parses a server log in any of [`LOG_FORMATS`], also mixed: each line loses a journalctl
/// or kubectl prefix, JSON lines are read as hclog JSON, the rest as hclog text.
pub fn parse_any_server_log(text: &str) -> Vec<LogLine> {
    let mut out = Vec::new();
    let mut plain = String::new();
    let mut partial = String::new();
    for line in text.lines() {
        // A CRI line's content (partial ones joined), or a JSON record's line.
        let unwrapped = match cri_re().captures(line) {
            Some(c) if &c[1] == "P" => {
                partial.push_str(&c[2]);
                continue;
            }
            Some(c) => Some(std::mem::take(&mut partial) + &c[2]),
            None => unwrap_record(line),
        };
        let line = unwrapped.as_deref().unwrap_or(line);
        let line = without_prefix(line);
        if line.starts_with('{')
            && let Some(entry) = parse_json_line(line)
        {
            out.extend(parse_server_log(&plain));
            plain.clear();
            out.push(entry);
            continue;
        }
        plain.push_str(line);
        plain.push('\n');
    }
    out.extend(parse_server_log(&plain));
    out
}

/// Entries whose logger name ends with the mount accessor.
pub fn log_for_accessor(lines: &[LogLine], accessor: &str) -> Vec<LogLine> {
    lines
        .iter()
        .filter(|l| l.module.as_deref().is_some_and(|m| m.ends_with(accessor)))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field<'a>(l: &'a LogLine, key: &str) -> &'a str {
        &l.fields.iter().find(|(k, _)| k == key).unwrap().1
    }

    /// Captured from OpenBao 2.7.2 with `-log-format=json -log-level=debug`.
    const JSON: &str = r#"{"@level":"debug","@message":"login unauthorized","@module":"auth.kubernetes.auth_kubernetes_515761f3","@timestamp":"2026-12-01T13:40:30.880033Z","err":"error verifying token signature: illegal base64 data at input byte 0"}"#;

    /// As the container runtimes and the journal store the same two entries (one hclog text,
    /// one hclog JSON): each reads as written.
    #[test]
    fn container_and_journal_records_read_as_their_lines() {
        let want: Vec<LogLine> = parse_any_server_log(&format!("{REFUSED}\n{JSON}\n"));
        assert_eq!(want.len(), 2);
        let esc = |s: &str| serde_json::to_string(s).unwrap();
        let (half, rest) = REFUSED.split_at(20);
        for text in [
            // CRI (/var/log/pods), the text line split into a partial and a full one.
            format!(
                "2026-12-01T13:40:30.880033123Z stderr P {half}\n2026-12-01T13:40:30.880033123Z stderr F {rest}\n2026-12-01T13:40:30.9Z stderr F {JSON}\n"
            ),
            // Docker json-file.
            format!(
                "{{\"log\":{},\"stream\":\"stderr\",\"time\":\"2026-12-01T13:40:30.88Z\"}}\n{{\"log\":{},\"stream\":\"stderr\",\"time\":\"2026-12-01T13:40:30.9Z\"}}\n",
                esc(&format!("{REFUSED}\n")),
                esc(&format!("{JSON}\n"))
            ),
            // journalctl -o json.
            format!(
                "{{\"__REALTIME_TIMESTAMP\":\"1764596430880033\",\"_SYSTEMD_UNIT\":\"openbao.service\",\"MESSAGE\":{}}}\n{{\"MESSAGE\":{}}}\n",
                esc(REFUSED),
                esc(JSON)
            ),
        ] {
            let got = parse_any_server_log(&text);
            assert_eq!(got.len(), 2, "{text}");
            for (g, w) in got.iter().zip(&want) {
                assert_eq!(
                    (&g.level, &g.message, &g.fields),
                    (&w.level, &w.message, &w.fields),
                    "{text}"
                );
            }
        }
    }

    #[test]
    fn every_format_reads_the_same_entry() {
        let plain = REFUSED.to_string();
        let want = &parse_server_log(&plain)[0];
        for text in [
            plain.clone(),
            format!("Dec 01 13:40:30 vault-0 bao[812]: {plain}"),
            format!("2026-12-01T13:40:30+0000 vault-0 bao[812]: {plain}"),
            format!("2026-12-01T13:40:30.123456789Z {plain}"),
            format!("[pod/openbao-0/openbao] 2026-12-01T13:40:30.123456789Z {plain}"),
        ] {
            let got = parse_any_server_log(&text);
            assert_eq!(got.len(), 1, "{text}");
            assert_eq!(got[0].message, want.message, "{text}");
            assert_eq!(got[0].fields, want.fields, "{text}");
            assert_eq!(got[0].module, want.module, "{text}");
        }
        for text in [
            JSON.to_string(),
            format!("2026-12-01T13:40:30.880033Z {JSON}"),
            format!("Dec 01 13:40:30 vault-0 bao[812]: {JSON}"),
        ] {
            let got = parse_any_server_log(&text);
            assert_eq!(got.len(), 1, "{text}");
            let l = &got[0];
            assert_eq!(l.level, "DEBUG");
            assert_eq!(l.message, "login unauthorized");
            assert_eq!(
                l.module.as_deref(),
                Some("auth.kubernetes.auth_kubernetes_515761f3")
            );
            assert_eq!(
                field(l, "err"),
                "error verifying token signature: illegal base64 data at input byte 0"
            );
        }
        assert!(parse_any_server_log("not a log line\nnor this").is_empty());
    }

    /// Captured from OpenBao 2.7.2 (`server -config`, log level debug): a TokenReview that could
    /// not connect.
    const REFUSED: &str = r#"2026-11-22T23:47:53.528Z [DEBUG] auth.kubernetes.auth_kubernetes_21adb6bf: login unauthorized: err="Post \"https://127.0.0.1:43545/apis/authentication.k8s.io/v1/tokenreviews\": dial tcp 127.0.0.1:43545: connect: connection refused""#;

    #[test]
    fn login_unauthorized_connection_refused() {
        let lines = parse_server_log(REFUSED);
        assert_eq!(lines.len(), 1);
        let l = &lines[0];
        assert_eq!(l.time, "2026-11-22T23:47:53.528Z");
        assert_eq!(l.level, "DEBUG");
        assert_eq!(
            l.module.as_deref(),
            Some("auth.kubernetes.auth_kubernetes_21adb6bf")
        );
        assert_eq!(l.message, "login unauthorized");
        assert_eq!(
            l.fields,
            vec![(
                "err".to_string(),
                "Post \"https://127.0.0.1:43545/apis/authentication.k8s.io/v1/tokenreviews\": dial tcp 127.0.0.1:43545: connect: connection refused".to_string()
            )]
        );
        assert_eq!(l.raw, REFUSED);
    }

    /// Captured from OpenBao 2.7.2: the apiserver's 403 Status body, verbatim inside `err`. hclog
    /// escapes only the double quotes, so the body's own `\"` appears as `\\"`.
    #[test]
    fn login_unauthorized_with_a_status_body() {
        let t = r#"2026-11-22T23:48:31.878Z [DEBUG] auth.kubernetes.auth_kubernetes_d1659b52: login unauthorized: err="{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"forbidden: User \\"system:anonymous\\" cannot get path \\"/.well-known/openid-configuration\\"\",\"reason\":\"Forbidden\",\"details\":{},\"code\":403}""#;
        let l = &parse_server_log(t)[0];
        assert_eq!(l.message, "login unauthorized");
        let err = field(l, "err");
        assert_eq!(
            err,
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"forbidden: User \"system:anonymous\" cannot get path \"/.well-known/openid-configuration\"","reason":"Forbidden","details":{},"code":403}"#
        );
        let status: serde_json::Value = serde_json::from_str(err).unwrap();
        assert_eq!(status["code"], 403);
    }

    /// Captured from OpenBao 2.7.2: an error ending in a newline is written as a multi-line
    /// value, followed by a line of two spaces, then the next entry.
    #[test]
    fn multi_line_value() {
        let t = "2026-11-22T23:48:31.553Z [ERROR] auth.jwt.auth_jwt_01fdc654: error checking oidc discovery URL:\n  error=\n  | 403 Forbidden: {\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"forbidden: User \\\"system:anonymous\\\" cannot get path \\\"/.well-known/openid-configuration\\\"\",\"reason\":\"Forbidden\",\"details\":{},\"code\":403}\n  \n2026-11-22T23:48:31.571Z [INFO]  core: enabled credential backend: namespace=\"\" path=kubernetes/ type=kubernetes version=\"\"\n";
        let lines = parse_server_log(t);
        assert_eq!(lines.len(), 2);
        let l = &lines[0];
        assert_eq!(l.level, "ERROR");
        assert_eq!(l.module.as_deref(), Some("auth.jwt.auth_jwt_01fdc654"));
        assert_eq!(l.message, "error checking oidc discovery URL");
        assert_eq!(
            field(l, "error"),
            "403 Forbidden: {\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"forbidden: User \\\"system:anonymous\\\" cannot get path \\\"/.well-known/openid-configuration\\\"\",\"reason\":\"Forbidden\",\"details\":{},\"code\":403}"
        );
        assert!(l.raw.ends_with("\"code\":403}"), "{}", l.raw);
        let next = &lines[1];
        assert_eq!(next.message, "enabled credential backend");
        assert_eq!(
            next.fields,
            [
                ("namespace", ""),
                ("path", "kubernetes/"),
                ("type", "kubernetes"),
                ("version", "")
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
        );
        assert_eq!(log_for_accessor(&lines, "auth_jwt_01fdc654").len(), 1);
        assert!(log_for_accessor(&lines, "auth_kubernetes_d1659b52").is_empty());
    }

    /// Captured from OpenBao 2.7.2 start-up: banner text, an entry without a logger name, keys
    /// with spaces, quoted values holding `: `, and the info-level padding after `[INFO]`.
    #[test]
    fn start_up_output() {
        let t = r#"2026-11-22T23:47:53.400Z [INFO]  proxy environment: http_proxy="" https_proxy="" no_proxy=""

WARNING: storage configured to use "inmem" which should NOT be used in
production

2026-11-22T23:47:53.402Z [DEBUG] cluster listener addresses synthesized: cluster_addresses=[127.0.0.1:36870]

==> OpenBao server configuration:

             Api Address: http://127.0.0.1:36869
                 Storage: inmem
                 Version: OpenBao v2.7.2, committed 2026-10-26T20:32:27Z

2026-11-22T23:47:53.403Z [DEBUG] would have sent systemd notification (systemd not present): notification=READY=1
==> OpenBao server started!
2026-11-22T23:47:53.416Z [INFO]  core: security barrier not initialized
2026-11-22T23:47:53.428Z [INFO]  core: successfully mounted: type=cubbyhole version="v2.7.2+builtin.bao" path=cubbyhole/ namespace="ID: root. Path: "
2026-11-22T23:47:53.435Z [INFO]  core: Recorded vault version: vault version=2.7.2 upgrade time="2026-11-22 23:47:53.435206271 +0000 UTC" commit date=2026-10-26T20:32:27Z
2026-11-22T23:47:53.437Z [INFO]  core.cluster-listener.tcp: starting listener: listener_address=127.0.0.1:36870
2026-11-22T23:47:53.442Z [INFO]  core: vault is unsealed"#;
        let lines = parse_server_log(t);
        let summary: Vec<(&str, Option<&str>, &str)> = lines
            .iter()
            .map(|l| (l.level.as_str(), l.module.as_deref(), l.message.as_str()))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("INFO", None, "proxy environment"),
                ("DEBUG", None, "cluster listener addresses synthesized"),
                (
                    "DEBUG",
                    None,
                    "would have sent systemd notification (systemd not present)"
                ),
                ("INFO", Some("core"), "security barrier not initialized"),
                ("INFO", Some("core"), "successfully mounted"),
                ("INFO", Some("core"), "Recorded vault version"),
                (
                    "INFO",
                    Some("core.cluster-listener.tcp"),
                    "starting listener"
                ),
                ("INFO", Some("core"), "vault is unsealed"),
            ]
        );
        assert_eq!(field(&lines[0], "https_proxy"), "");
        assert_eq!(field(&lines[1], "cluster_addresses"), "[127.0.0.1:36870]");
        assert_eq!(field(&lines[2], "notification"), "READY=1");
        assert_eq!(field(&lines[4], "namespace"), "ID: root. Path: ");
        assert_eq!(field(&lines[4], "version"), "v2.7.2+builtin.bao");
        assert_eq!(field(&lines[5], "vault version"), "2.7.2");
        assert_eq!(
            field(&lines[5], "upgrade time"),
            "2026-11-22 23:47:53.435206271 +0000 UTC"
        );
        assert_eq!(field(&lines[5], "commit date"), "2026-10-26T20:32:27Z");
        // Banner lines belong to no entry.
        assert!(lines.iter().all(|l| !l.raw.contains("Api Address")));
    }

    #[test]
    fn partial_and_foreign_text_is_skipped() {
        assert!(parse_server_log("").is_empty());
        assert!(parse_server_log("==> OpenBao server started!\n  | stray\n").is_empty());
        // A line still being written parses as far as it goes.
        let l = &parse_server_log(
            "2026-11-22T23:47:53.528Z [DEBUG] auth.kubernetes.auth_kubernetes_21adb6bf: login unauthorized: err=\"Post",
        )[0];
        assert_eq!(l.level, "DEBUG");
        assert!(l.fields.is_empty());
    }
}
