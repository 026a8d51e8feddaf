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
        let start = i;
        while i < n && (chars[i].is_ascii_alphanumeric() || "_.-".contains(chars[i])) {
            i += 1;
        }
        if i == start || i >= n || chars[i] != '=' {
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

    #[test]
    fn single_line_with_quoted_value() {
        // As OpenBao 2.7.2 wrote it for a forbidden TokenReview: hclog escapes quotes only.
        let t = r#"2026-11-22T23:28:22.554Z [DEBUG] auth.kubernetes.auth_kubernetes_90a2cd19: login unauthorized: err="{\"kind\":\"Status\",\"message\":\"User \\"x\\" cannot\"}""#;
        let l = &parse_server_log(t)[0];
        assert_eq!(l.level, "DEBUG");
        assert_eq!(
            l.module.as_deref(),
            Some("auth.kubernetes.auth_kubernetes_90a2cd19")
        );
        assert_eq!(l.message, "login unauthorized");
        assert_eq!(l.fields[0].0, "err");
        assert_eq!(
            l.fields[0].1,
            r#"{"kind":"Status","message":"User \"x\" cannot"}"#
        );
    }

    #[test]
    fn multi_line_value_and_no_module() {
        let t = "2026-11-22T23:40:01.489Z [INFO]  proxy environment: http_proxy=\"\" https_proxy=\"\"\n2026-11-22T23:40:02.000Z [ERROR] auth.jwt.auth_jwt_800c45e4: error checking oidc discovery URL:\n  error=\n  | 403 Forbidden: {\"kind\":\"Status\"}\n  | \n  \n2026-11-22T23:40:03.000Z [TRACE] core: done";
        let lines = parse_server_log(t);
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0].module, None);
        assert_eq!(lines[0].message, "proxy environment");
        assert_eq!(lines[0].fields.len(), 2);
        assert_eq!(lines[1].message, "error checking oidc discovery URL");
        assert_eq!(
            lines[1].fields,
            vec![(
                "error".to_string(),
                "403 Forbidden: {\"kind\":\"Status\"}".to_string()
            )]
        );
        assert_eq!(lines[2].module.as_deref(), Some("core"));
        assert_eq!(log_for_accessor(&lines, "auth_jwt_800c45e4").len(), 1);
    }
}
