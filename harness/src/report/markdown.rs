//! `matrix.md`: the matrix as Markdown fit for `$GITHUB_STEP_SUMMARY` — the case × server table,
//! where servers differ, where the sim and a real cluster differ, the differences from
//! expectations with their blocks, the failures.

use std::fmt::Write;

use super::{
    changes::changes,
    matrix::{Matrix, Row, Shown},
};

/// The mark and word a cell shows for a trial.
pub fn cell_word(r: &Row) -> String {
    let shown = r.shown();
    let mark = match shown {
        Shown::Ok => "✅",
        Shown::Differs => "⚠️",
        Shown::Failed => "❌",
        Shown::Error => "💥",
        Shown::Ignored => "➖",
    };
    let part = if shown == Shown::Ok && !r.not_checked.is_empty() {
        " (part not checked)"
    } else {
        ""
    };
    format!("{mark} {}{part}", shown.word())
}

/// A value as a table cell: code, with pipes escaped and lines joined.
pub fn code(s: &str) -> String {
    let s = s.replace('|', "\\|").replace(['\n', '\r'], " ");
    if s.contains('`') { s } else { format!("`{s}`") }
}

/// Renders the whole report.
pub fn render(m: &Matrix) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# authlab compatibility matrix\n");
    let _ = writeln!(out, "**{}.**\n", m.counts().sentence());
    for r in &m.runs {
        let kube: Vec<&str> = {
            let mut k: Vec<&str> = m
                .trials
                .iter()
                .filter(|t| t.run_id == r.run_id)
                .filter_map(|t| t.kubernetes.as_deref())
                .collect();
            k.sort();
            k.dedup();
            k
        };
        let _ = writeln!(
            out,
            "- run `{}` at {}: cluster {}{}, servers {}, {:.1} s",
            r.run_id,
            r.started,
            r.cluster,
            if kube.is_empty() {
                String::new()
            } else {
                format!(" (Kubernetes {})", kube.join(", "))
            },
            r.servers.join(", "),
            r.wall_ms as f64 / 1000.0
        );
    }
    let cols = m.columns();
    let _ = writeln!(out, "\n## Trials\n");
    let _ = writeln!(out, "| case | {} |", cols.join(" | "));
    let _ = writeln!(out, "|---|{}", "---|".repeat(cols.len()));
    for (case, rows) in m.by_case() {
        let cells: Vec<String> = cols
            .iter()
            .map(|col| {
                rows.iter()
                    .find(|r| r.column() == *col)
                    .map(|r| cell_word(r))
                    .unwrap_or_default()
            })
            .collect();
        let _ = writeln!(out, "| `{case}` | {} |", cells.join(" | "));
    }
    let changed = changes(m);
    let _ = writeln!(out, "\n## Where servers differ\n");
    if changed.is_empty() {
        let _ = writeln!(
            out,
            "Every case observed the same on every server it ran on."
        );
    }
    for ch in &changed {
        let cluster = if ch.cluster == "sim" {
            String::new()
        } else {
            format!(" on {}", ch.cluster)
        };
        let _ = writeln!(out, "### `{}`{cluster}\n", ch.case);
        let _ = writeln!(out, "Changed at: {}.\n", ch.changed.join("; "));
        let heads: Vec<String> = ch.groups.iter().map(|(s, _)| s.join(", ")).collect();
        let _ = writeln!(out, "| field | {} |", heads.join(" | "));
        let _ = writeln!(out, "|---|{}", "---|".repeat(heads.len()));
        for (i, f) in ch.fields.iter().enumerate() {
            let vals: Vec<String> = ch
                .groups
                .iter()
                .map(|(_, v)| v[i].as_deref().map(code).unwrap_or_else(|| "—".into()))
                .collect();
            let _ = writeln!(out, "| `{f}` | {} |", vals.join(" | "));
        }
        let _ = writeln!(out);
    }
    if m.trials.iter().any(|t| t.cluster == "sim") && m.trials.iter().any(|t| t.cluster != "sim") {
        let between = super::changes::between_clusters(m);
        let _ = writeln!(
            out,
            "## Where the sim and a real cluster differ
"
        );
        if between.is_empty() {
            let _ = writeln!(
                out,
                "Every case that ran on both observed the same on the sim and on the real cluster."
            );
        }
        for c in &between {
            let _ = writeln!(
                out,
                "### `{}` on {}, sim vs {}{}
",
                c.case,
                c.server,
                c.cluster,
                c.kubernetes
                    .as_deref()
                    .map(|v| format!(" ({v})"))
                    .unwrap_or_default()
            );
            let _ = writeln!(
                out,
                "| field | sim | {} |
|---|---|---|",
                c.cluster
            );
            for (f, sim, real) in &c.fields {
                let cell =
                    |v: &Option<String>| v.as_deref().map(code).unwrap_or_else(|| "—".into());
                let _ = writeln!(out, "| `{f}` | {} | {} |", cell(sim), cell(real));
            }
            let _ = writeln!(out);
        }
    }
    let diffs: Vec<&Row> = m.trials.iter().filter(|t| t.difference.is_some()).collect();
    if !diffs.is_empty() {
        let _ = writeln!(out, "## Differences from the expectations\n");
        let _ = writeln!(
            out,
            "These trials failed only because the server answered differently from the one the expectations were written for. Paste the block into the case file once the answer is confirmed to be correct.\n"
        );
        let mut shown: Vec<(&str, &str)> = Vec::new();
        for r in diffs {
            let d = r.difference.as_ref().expect("filtered");
            if shown.contains(&(r.case.as_str(), d.key.as_str())) {
                continue;
            }
            shown.push((&r.case, &d.key));
            let _ = writeln!(
                out,
                "### `{}` on {}\n\n{}; {} answered:\n\n```yaml\n{}```\n",
                r.case,
                d.servers.join(", "),
                capital(&d.because),
                d.servers.join(", "),
                d.block
            );
        }
    }
    let failures: Vec<&Row> = m
        .trials
        .iter()
        .filter(|t| (t.verdict == "failed" && t.difference.is_none()) || t.verdict == "error")
        .collect();
    if !failures.is_empty() {
        let _ = writeln!(out, "## Failures and errors\n");
        for r in failures {
            let _ = writeln!(out, "- `{}` ({}):", r.name, r.verdict);
            for line in r.messages.iter().take(5) {
                let _ = writeln!(out, "  - {}", code(line));
            }
            if let Some(a) = &r.artifacts {
                let _ = writeln!(out, "  - artifacts: `{a}`");
            }
        }
    }
    out
}

fn capital(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}
