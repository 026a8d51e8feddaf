//! `index.html`: the matrix as one self-contained page (no external assets) — the case × server
//! table with filters by auth, mode, topology, verdict and name (kept in the address's `#`
//! part, so a filtered view can be linked), a case's observed signatures per server on click,
//! and where servers differ.
//!
//! Written with `write!` and one escaping function ([`esc`]) rather than a template crate: one
//! page, every value passes through `esc` (the report tests feed it hostile names, errors and
//! paths), and the binary ships no template files.

use std::fmt::Write;

use super::{
    changes::changes,
    matrix::{Matrix, Row},
};

/// Escapes text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}\
.wide{overflow-x:auto;max-width:100%}#matrix td:first-child code{word-break:break-all}\
#matrix th{white-space:normal;max-width:9em}#matrix td{white-space:nowrap}\
#matrix td:first-child{white-space:normal;min-width:14em;max-width:28em}\
table{border-collapse:collapse}th,td{border:1px solid #ccc;padding:.25em .5em;vertical-align:top}\
th{background:#f4f4f4;position:sticky;top:0}tr.case{cursor:pointer}tr.case:hover{background:#f8f8ff}\
td.passed{background:#e6f4ea}td.flaky{background:#fff4d6}td.failed{background:#fde7e9}td.differs{background:#fff4d6}\
td.error{background:#f6d5f7}td.ignored{color:#888}code,pre{font:12px ui-monospace,monospace;white-space:pre-wrap}\
form{margin:1em 0}label{margin-right:1em}tr.details>td{background:#fafafa}.sig td{font-size:12px}";

const SCRIPT: &str = r#"(function () {
  const form = document.getElementById('filters');
  const rows = Array.from(document.querySelectorAll('tr.case'));
  function apply() {
    const f = new FormData(form);
    let shown = 0;
    for (const tr of rows) {
      const ok = ['auth', 'mode', 'topology'].every(k => !f.get(k) || tr.dataset[k] === f.get(k))
        && (!f.get('verdict') || tr.dataset.verdicts.split(' ').includes(f.get('verdict')))
        && (!f.get('q') || tr.dataset.case.includes(f.get('q')));
      tr.hidden = !ok;
      if (ok) shown++;
      const d = tr.nextElementSibling;
      if (!ok && d && d.classList.contains('details')) d.hidden = true;
    }
    document.getElementById('shown').textContent = shown + ' of ' + rows.length + ' cases shown';
  }
  function fromHash() {
    const p = new URLSearchParams(location.hash.slice(1));
    for (const el of form.elements) if (el.name) el.value = p.get(el.name) || '';
    apply();
    const open = p.get('open');
    for (const tr of rows) if (open && tr.dataset.case === open && !tr.hidden) tr.nextElementSibling.hidden = false;
  }
  form.addEventListener('input', function () {
    const p = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (v) p.set(k, v);
    history.replaceState(null, '', '#' + p.toString());
    apply();
  });
  for (const tr of rows) tr.addEventListener('click', function () {
    const d = tr.nextElementSibling;
    d.hidden = !d.hidden;
  });
  window.addEventListener('hashchange', fromHash);
  fromHash();
})();"#;

fn select(out: &mut String, name: &str, values: &[String]) {
    let _ = write!(
        out,
        "<label>{name} <select name=\"{name}\"><option value=\"\">all</option>"
    );
    for v in values {
        let _ = write!(out, "<option value=\"{0}\">{0}</option>", esc(v));
    }
    out.push_str("</select></label>");
}

fn distinct(m: &Matrix, f: impl Fn(&Row) -> Option<&str>) -> Vec<String> {
    let mut v: Vec<String> = m
        .trials
        .iter()
        .filter_map(|r| f(r).map(str::to_string))
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Renders the page.
pub fn render(m: &Matrix) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>authlab compatibility matrix</title><style>{STYLE}</style></head><body>\n<h1>authlab compatibility matrix</h1>\n<p id=\"counts\">{}.</p>\n<ul>",
        esc(&m.counts().sentence())
    );
    for r in &m.runs {
        let _ = write!(
            out,
            "<li>run <code>{}</code> at {}: cluster {}{}, servers {}, {:.1} s{}{}</li>",
            esc(&r.run_id),
            esc(&r.started),
            esc(&r.cluster),
            r.kubernetes
                .as_ref()
                .map(|k| format!(" (Kubernetes {})", esc(k)))
                .unwrap_or_default(),
            esc(&r.servers.join(", ")),
            r.wall_ms as f64 / 1000.0,
            if r.authlab.is_empty() {
                String::new()
            } else {
                format!("; authlab {}", esc(&r.authlab))
            },
            if r.cases_digest.is_empty() {
                String::new()
            } else {
                format!(", cases <code>{}</code>", esc(&r.cases_digest))
            },
        );
    }
    out.push_str("</ul>");
    for why in &m.mixed {
        let _ = write!(
            out,
            "<p class=\"mixed\"><strong>Merged from runs that are not alike: {}.</strong></p>",
            esc(why)
        );
    }
    not_passing(&mut out, m);
    out.push_str("\n<form id=\"filters\" onsubmit=\"return false\">");
    select(&mut out, "auth", &distinct(m, |r| Some(&r.auth)));
    select(&mut out, "mode", &distinct(m, |r| r.mode.as_deref()));
    select(&mut out, "topology", &distinct(m, |r| Some(&r.topology)));
    select(
        &mut out,
        "verdict",
        &["passed", "flaky", "failed", "differs", "error", "ignored"].map(String::from),
    );
    out.push_str("<label>case <input name=\"q\" type=\"search\" placeholder=\"part of a name\"></label></form>\n<p id=\"shown\"></p>\n");
    let cols = m.columns();
    out.push_str(
        "<div class=\"wide\"><table id=\"matrix\"><thead><tr><th>case</th><th>auth</th><th>mode</th><th>topology</th>",
    );
    for col in &cols {
        let _ = write!(out, "<th>{}</th>", esc(col));
    }
    out.push_str("</tr></thead><tbody>\n");
    for (case, rows) in m.by_case() {
        let first = rows[0];
        let mut verdicts: Vec<&str> = rows.iter().map(|r| r.shown().class()).collect();
        verdicts.sort();
        verdicts.dedup();
        let _ = write!(
            out,
            "<tr class=\"case\" data-case=\"{}\" data-auth=\"{}\" data-mode=\"{}\" data-topology=\"{}\" data-verdicts=\"{}\"><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td>",
            esc(case),
            esc(&first.auth),
            esc(first.mode.as_deref().unwrap_or("")),
            esc(&first.topology),
            verdicts.join(" "),
            esc(case),
            esc(&first.auth),
            esc(first.mode.as_deref().unwrap_or("-")),
            esc(&first.topology)
        );
        for col in &cols {
            match rows.iter().find(|r| r.column() == *col) {
                Some(r) => {
                    let _ = write!(
                        out,
                        "<td class=\"{}\">{}</td>",
                        r.shown().class(),
                        esc(r.shown().word())
                    );
                }
                None => out.push_str("<td></td>"),
            }
        }
        out.push_str("</tr>\n");
        details(&mut out, &rows, cols.len() + 4);
    }
    out.push_str("</tbody></table></div>\n<h2 id=\"differ\">Where servers differ</h2>\n");
    let changed = changes(m);
    if changed.is_empty() {
        out.push_str("<p>Every case observed the same on every server it ran on.</p>\n");
    }
    for ch in &changed {
        let _ = write!(
            out,
            "<h3><code>{}</code>{}</h3><p>Changed at: {}.</p><table><tr><th>field</th>",
            esc(&ch.case),
            if ch.cluster == "sim" {
                String::new()
            } else {
                format!(" on {}", esc(&ch.cluster))
            },
            esc(&ch.changed.join("; "))
        );
        for (servers, _) in &ch.groups {
            let _ = write!(out, "<th>{}</th>", esc(&servers.join(", ")));
        }
        out.push_str("</tr>");
        for (i, f) in ch.fields.iter().enumerate() {
            let _ = write!(out, "<tr><td><code>{}</code></td>", esc(f));
            for (_, v) in &ch.groups {
                let _ = write!(
                    out,
                    "<td><code>{}</code></td>",
                    esc(v[i].as_deref().unwrap_or("—"))
                );
            }
            out.push_str("</tr>");
        }
        out.push_str("</table>\n");
    }
    let _ = write!(out, "<script>{SCRIPT}</script>\n</body></html>\n");
    out
}

/// First on the page: the trials that did not pass (and the flaky ones), one line each with
/// its first message and a link that opens its case in the matrix; and how many cases
/// observed differently between servers.
fn not_passing(out: &mut String, m: &Matrix) {
    let bad: Vec<&Row> = m
        .trials
        .iter()
        .filter(|r| {
            matches!(
                r.shown(),
                super::matrix::Shown::Failed
                    | super::matrix::Shown::Error
                    | super::matrix::Shown::Differs
                    | super::matrix::Shown::Flaky
            )
        })
        .collect();
    if bad.is_empty() {
        out.push_str("<p id=\"not-passing\">Every trial that ran passed.</p>\n");
    } else {
        let _ = write!(
            out,
            "<h2 id=\"not-passing\">Did not pass ({})</h2><ul>",
            bad.len()
        );
        for r in bad {
            let _ = write!(
                out,
                "<li class=\"{}\"><a href=\"#open={}\">{}</a> on {}: <strong>{}</strong> <code>{}</code></li>",
                r.shown().class(),
                esc(&r.case),
                esc(&r.case),
                esc(&r.column()),
                esc(r.shown().word()),
                esc(r
                    .messages
                    .first()
                    .or(r.earlier.first())
                    .map(String::as_str)
                    .unwrap_or(""))
            );
        }
        out.push_str("</ul>\n");
    }
    let changed = changes(m).len();
    if changed > 0 {
        let _ = writeln!(
            out,
            "<p><a href=\"#differ\">{changed} case(s) observed differently between servers</a> (below the matrix).</p>"
        );
    }
}

/// The hidden row under a case: its observed signature per server, what did not hold, and the
/// paste-ready block of a difference.
fn details(out: &mut String, rows: &[&Row], span: usize) {
    let _ = write!(
        out,
        "<tr class=\"details\" hidden><td colspan=\"{span}\"><table class=\"sig\"><tr><th>field</th>"
    );
    for r in rows {
        let _ = write!(out, "<th>{}</th>", esc(&r.column()));
    }
    out.push_str("</tr>");
    let fields = super::signature::all_fields(rows.iter().filter_map(|r| r.observed.as_ref()));
    for f in &fields {
        let _ = write!(out, "<tr><td><code>{}</code></td>", esc(f));
        for r in rows {
            let v = r.observed.as_ref().and_then(|s| s.get(f)).unwrap_or("—");
            let _ = write!(out, "<td><code>{}</code></td>", esc(v));
        }
        out.push_str("</tr>");
    }
    out.push_str("<tr><td>verdict</td>");
    for r in rows {
        let _ = write!(out, "<td>{}", esc(r.shown().word()));
        for m in r.messages.iter().take(5) {
            let _ = write!(out, "<br><code>{}</code>", esc(m));
        }
        if let Some(d) = &r.difference {
            let _ = write!(out, "<br>{}<pre>{}</pre>", esc(&d.because), esc(&d.block));
        }
        out.push_str("</td>");
    }
    out.push_str("</tr></table></td></tr>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::matrix::tests::row_with;

    /// The page leads with what did not pass, before the filters and the matrix, and the
    /// matrix scrolls inside its own box instead of being cut off.
    #[test]
    fn the_page_leads_with_what_did_not_pass() {
        let mut m: Matrix =
            serde_json::from_value(serde_json::json!({"format": 1, "runs": [], "trials": []}))
                .unwrap();
        m.trials = vec![
            row_with(
                "a",
                "failed",
                serde_json::json!({"messages": ["login.status: expected 200, got <403>"]}),
            ),
            row_with(
                "b",
                "passed",
                serde_json::json!({"earlier": ["FAILED login.status: expected 200, got 500"]}),
            ),
        ];
        let page = render(&m);
        let lead = page.find("id=\"not-passing\"").expect("the section");
        assert!(lead < page.find("id=\"filters\"").unwrap(), "{page}");
        assert!(page.contains("Did not pass (2)"), "{page}");
        assert!(
            page.contains("<a href=\"#open=a\">a</a> on openbao:2.7.2: <strong>FAILED</strong> <code>login.status: expected 200, got &lt;403&gt;</code>"),
            "{page}"
        );
        assert!(page.contains("<strong>FLAKY</strong>"), "{page}");
        assert!(
            page.contains("<div class=\"wide\"><table id=\"matrix\">"),
            "{page}"
        );
    }

    /// Case names, messages, servers and run ids from a run's input come out as text: no tag,
    /// attribute or script of theirs reaches the page.
    #[test]
    fn values_render_as_themselves() {
        let evil = "x\"><img src=x onerror=alert(1)><script>alert(2)</script>'";
        let mut m: Matrix = serde_json::from_value(serde_json::json!({
            "format": 1, "trials": [],
            "runs": [{"run_id": evil, "started": evil, "wall_ms": 1, "servers": [evil], "cluster": evil}],
        }))
        .unwrap();
        m.trials = vec![row_with(
            evil,
            "failed",
            serde_json::json!({"name": evil, "auth": evil, "mode": evil, "topology": evil,
                "server": evil, "messages": [evil], "observed": {"login.error": evil},
                "artifacts": evil, "run_id": evil}),
        )];
        let page = render(&m);
        assert!(!page.contains("<img"), "{page}");
        assert!(!page.contains("<script>alert"), "{page}");
        assert!(page.contains("x&quot;&gt;&lt;img"), "{page}");
        assert!(
            page.contains("&lt;img src=x onerror=alert(1)&gt;"),
            "{page}"
        );
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            esc("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
    }
}
