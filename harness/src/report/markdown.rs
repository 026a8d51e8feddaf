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
        Shown::Flaky => "🔁",
        Shown::Differs => "⚠️",
        Shown::Failed => "❌",
        Shown::Error => "💥",
        Shown::Ignored => "➖",
        Shown::Observed => "👁",
    };
    let part = if shown == Shown::Ok && !r.not_checked.is_empty() {
        " (part not checked)"
    } else {
        ""
    };
    format!("{mark} {}{part}", shown.word())
}

/// A value as a code span in a table cell: [`code`] with pipes escaped (GitHub splits table
/// cells at a bare `|` even inside code, and drops the backslash there).
pub fn cell(s: &str) -> String {
    code(&s.replace('|', "\\|"))
}

/// A value as an inline code span that stays one: lines joined, delimited by one backtick more
/// than the longest run inside it, so no value ends the span early and nothing in it renders as
/// Markdown or HTML.
pub fn code(s: &str) -> String {
    let s = s.replace(['\n', '\r'], " ");
    let fence = "`".repeat(longest_backtick_run(&s) + 1);
    // A span that starts or ends with a backtick (or is all spaces) needs the padding spaces,
    // which CommonMark strips again.
    if s.starts_with('`') || s.ends_with('`') || (!s.is_empty() && s.trim().is_empty()) {
        format!("{fence} {s} {fence}")
    } else {
        format!("{fence}{s}{fence}")
    }
}

/// Plain text for a line or cell: the characters Markdown or HTML could read as syntax there
/// (emphasis, code, links and images, HTML and entities, table pipes, strikethrough) are
/// backslash-escaped, as CommonMark allows for any ASCII punctuation; lines joined.
pub fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' | '\r' => out.push(' '),
            '\\' | '`' | '*' | '_' | '{' | '}' | '[' | ']' | '<' | '>' | '#' | '|' | '~' | '&'
            | '!' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// A fenced block that no line of `body` closes early.
fn fenced(lang: &str, body: &str) -> String {
    let fence = "`".repeat((longest_backtick_run(body) + 1).max(3));
    let nl = if body.ends_with('\n') { "" } else { "\n" };
    format!("{fence}{lang}\n{body}{nl}{fence}")
}

fn longest_backtick_run(s: &str) -> usize {
    s.split(|c| c != '`').map(str::len).max().unwrap_or(0)
}

/// `; authlab …, cases …` of a run, as far as it recorded them.
pub fn provenance(r: &super::matrix::RunInfo) -> String {
    let mut out = String::new();
    if !r.authlab.is_empty() {
        out.push_str(&format!("; authlab {}", text(&r.authlab)));
    }
    if !r.cases_digest.is_empty() {
        out.push_str(&format!(", cases {}", code(&r.cases_digest)));
    }
    out
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
            k.extend(r.kubernetes.as_deref());
            k.sort();
            k.dedup();
            k
        };
        let _ = writeln!(
            out,
            "- run {} at {}: cluster {}{}, servers {}, {:.1} s{}",
            code(&r.run_id),
            text(&r.started),
            text(&r.cluster),
            if kube.is_empty() {
                String::new()
            } else {
                format!(" (Kubernetes {})", text(&kube.join(", ")))
            },
            text(&r.servers.join(", ")),
            r.wall_ms as f64 / 1000.0,
            provenance(r)
        );
    }
    for why in &m.mixed {
        let _ = writeln!(
            out,
            "\n**Merged from runs that are not alike: {}.**",
            text(why)
        );
    }
    let cols = m.columns();
    let _ = writeln!(out, "\n## Trials\n");
    let heads: Vec<String> = cols.iter().map(|c| text(c)).collect();
    let _ = writeln!(out, "| case | {} |", heads.join(" | "));
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
        let _ = writeln!(out, "| {} | {} |", cell(case), cells.join(" | "));
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
            format!(" on {}", text(&ch.cluster))
        };
        let _ = writeln!(out, "### {}{cluster}\n", code(&ch.case));
        let _ = writeln!(out, "Changed at: {}.\n", text(&ch.changed.join("; ")));
        let heads: Vec<String> = ch.groups.iter().map(|(s, _)| text(&s.join(", "))).collect();
        let _ = writeln!(out, "| field | {} |", heads.join(" | "));
        let _ = writeln!(out, "|---|{}", "---|".repeat(heads.len()));
        for (i, f) in ch.fields.iter().enumerate() {
            let vals: Vec<String> = ch
                .groups
                .iter()
                .map(|(_, v)| v[i].as_deref().map(cell).unwrap_or_else(|| "—".into()))
                .collect();
            let _ = writeln!(out, "| {} | {} |", cell(f), vals.join(" | "));
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
                "### {} on {}, sim vs {}{}
",
                code(&c.case),
                text(&c.server),
                text(&c.cluster),
                c.kubernetes
                    .as_deref()
                    .map(|v| format!(" ({})", text(v)))
                    .unwrap_or_default()
            );
            let _ = writeln!(
                out,
                "| field | sim | {} |
|---|---|---|",
                text(&c.cluster)
            );
            for (f, sim, real) in &c.fields {
                let value =
                    |v: &Option<String>| v.as_deref().map(cell).unwrap_or_else(|| "—".into());
                let _ = writeln!(out, "| {} | {} | {} |", cell(f), value(sim), value(real));
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
                "### {} on {}\n\n{}; {} answered:\n\n{}\n",
                code(&r.case),
                text(&d.servers.join(", ")),
                text(&capital(&d.because)),
                text(&d.servers.join(", ")),
                fenced("yaml", &d.block)
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
            let _ = writeln!(out, "- {} ({}):", code(&r.name), text(&r.verdict));
            for line in r.messages.iter().take(5) {
                let _ = writeln!(out, "  - {}", code(line));
            }
            if let Some(a) = &r.artifacts {
                let _ = writeln!(out, "  - artifacts: {}", code(a));
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

#[cfg(test)]
mod tests {
    use pulldown_cmark::{Event, Options, Parser, Tag};

    use super::*;
    use crate::report::matrix::{Matrix, RunInfo};

    /// What GitHub would render: HTML, images and links found, table rows per table, and the
    /// text of every code span.
    struct Rendered {
        html: Vec<String>,
        images_or_links: usize,
        rows: Vec<usize>,
        code: Vec<String>,
    }

    fn rendered(md: &str) -> Rendered {
        let mut r = Rendered {
            html: Vec::new(),
            images_or_links: 0,
            rows: Vec::new(),
            code: Vec::new(),
        };
        for e in Parser::new_ext(md, Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH) {
            match e {
                Event::Html(h) | Event::InlineHtml(h) => r.html.push(h.to_string()),
                Event::Start(Tag::Image { .. } | Tag::Link { .. }) => r.images_or_links += 1,
                Event::Start(Tag::Table(_)) => r.rows.push(0),
                Event::Start(Tag::TableRow) => *r.rows.last_mut().expect("in a table") += 1,
                Event::Code(c) => r.code.push(c.to_string()),
                _ => {}
            }
        }
        r
    }

    const HOSTILE: &str = "<img src=x onerror=alert(1)> ![i](http://x/i.png) [l](http://x) | fake | row |\n| --- |\n`tick` ``two`` **b** _i_ ~~s~~ &lt; #h";

    fn trial(name: &str, verdict: &str) -> crate::report::matrix::Row {
        crate::report::matrix::tests::row_with(
            name,
            verdict,
            serde_json::json!({"name": name, "messages": [HOSTILE, HOSTILE],
                "artifacts": HOSTILE, "run_id": HOSTILE}),
        )
    }

    /// Case names, run ids, error texts and artifacts paths go into `$GITHUB_STEP_SUMMARY` as
    /// text: no HTML, image, link or extra table row comes out of them, and each code span holds
    /// the value whole.
    #[test]
    fn values_render_as_themselves() {
        let name = format!("c`a`se{HOSTILE}");
        let m = Matrix {
            trials: vec![trial(&name, "failed"), trial("plain", "passed")],
            ..Matrix::of_run(
                RunInfo {
                    run_id: HOSTILE.into(),
                    started: HOSTILE.into(),
                    wall_ms: 0,
                    servers: vec![HOSTILE.into()],
                    cluster: "sim".into(),
                    ..Default::default()
                },
                &[],
            )
        };
        let md = render(&m);
        let r = rendered(&md);
        assert!(r.html.is_empty(), "HTML rendered: {:?}\n{md}", r.html);
        assert_eq!(r.images_or_links, 0, "{md}");
        // One body row per case (the header is not a row in pulldown-cmark's events).
        assert_eq!(r.rows, vec![2], "{md}");
        let flat = |s: &str| s.replace('\n', " ");
        assert!(r.code.contains(&flat(&name)), "{:?}\n{md}", r.code);
        assert!(r.code.contains(&flat(HOSTILE)), "{:?}\n{md}", r.code);
    }

    #[test]
    fn code_spans_and_fences_outlast_backticks_inside() {
        assert_eq!(cell("a|b"), "`a\\|b`");
        assert_eq!(code("a|b"), "`a|b`");
        assert_eq!(code("`x`"), "`` `x` ``");
        assert_eq!(code("a``b"), "```a``b```");
        assert_eq!(fenced("yaml", "a: ```\n"), "````yaml\na: ```\n````");
        assert_eq!(text("<b>*x*</b>"), "\\<b\\>\\*x\\*\\</b\\>");
    }
}
