//! Whether observed text satisfies a case's text and log-line expectations (placeholders
//! substituted first). Pure: used by the verdict and by evidence waits alike.

use crate::{
    case::model::{LogExpect, TextMatch},
    evidence::LogLine,
    placeholders::{Vars, substitute, substitute_escaped},
};

/// True when `actual` satisfies `m`.
pub fn text_matches(m: &TextMatch, actual: &str, vars: &Vars) -> bool {
    match m {
        TextMatch::Exact(s) => substitute(s, vars) == actual,
        TextMatch::Pattern(p) => {
            p.contains
                .as_ref()
                .is_none_or(|c| actual.contains(&substitute(c, vars)))
                && p.regex.as_ref().is_none_or(|r| {
                    regex::Regex::new(&substitute_escaped(r, vars))
                        .is_ok_and(|re| re.is_match(actual))
                })
        }
    }
}

/// `m` as a reader sees it, placeholders filled in.
pub fn describe(m: &TextMatch, vars: &Vars) -> String {
    match m {
        TextMatch::Exact(s) => format!("{:?}", substitute(s, vars)),
        TextMatch::Pattern(p) => {
            let mut parts = Vec::new();
            if let Some(c) = &p.contains {
                parts.push(format!("containing {:?}", substitute(c, vars)));
            }
            if let Some(r) = &p.regex {
                parts.push(format!("matching /{}/", substitute_escaped(r, vars)));
            }
            parts.join(" and ")
        }
    }
}

/// The first server-log line that satisfies `l`.
pub fn find_log_line<'a>(l: &LogExpect, lines: &'a [LogLine], vars: &Vars) -> Option<&'a LogLine> {
    lines.iter().find(|line| {
        l.level
            .as_ref()
            .is_none_or(|lv| lv.eq_ignore_ascii_case(&line.level))
            && text_matches(&l.message, &line.message, vars)
            && l.fields.iter().all(|(k, m)| {
                line.fields
                    .iter()
                    .any(|(lk, lv)| lk == k && text_matches(m, lv, vars))
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::case::model::PatternMatch;

    #[test]
    fn exact_and_pattern_matching() {
        let mut vars = Vars::new();
        vars.insert("cluster.url".to_string(), "https://127.0.0.1:9".to_string());
        assert!(text_matches(
            &TextMatch::Exact("Post \"${cluster.url}/x\"".into()),
            "Post \"https://127.0.0.1:9/x\"",
            &vars
        ));
        let p = TextMatch::Pattern(PatternMatch {
            contains: Some("denied".into()),
            regex: Some("^perm".into()),
        });
        assert!(text_matches(&p, "permission denied", &vars));
        assert!(!text_matches(&p, "denied permission", &vars));
    }
}
