//! Whether observed text satisfies a case's text and log-line expectations (placeholders
//! substituted first). Pure: used by the verdict and by evidence waits alike.

use crate::{
    case::model::{LogExpect, TextMatch},
    logs::LogLine,
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

/// The mismatch line for `what` when `actual` does not satisfy `m`. Two short texts are shown
/// whole; a long exact text is shown once, as a word diff (`[-expected-]{+got+}`, as `git diff
/// --word-diff` prints it), with long unchanged stretches shortened.
pub fn mismatch(what: &str, m: &TextMatch, actual: &str, vars: &Vars) -> String {
    if let TextMatch::Exact(s) = m {
        let want = substitute(s, vars);
        if want.len().max(actual.len()) > SHORT {
            return format!(
                "{what}: differs from the expected text ([-expected-]{{+got+}}): {}",
                word_diff(&want, actual)
            );
        }
    }
    format!("{what}: expected {}, got {actual:?}", describe(m, vars))
}

/// Texts up to this many bytes are printed whole, side by side.
const SHORT: usize = 60;
/// Unchanged text kept on each side of a change.
const CONTEXT: usize = 24;

/// `want` and `got` as one word diff; unchanged runs longer than twice the context are cut to
/// their ends with `…` between.
pub fn word_diff(want: &str, got: &str) -> String {
    use similar::{ChangeTag, TextDiff};
    let diff = TextDiff::from_words(want, got);
    let changes: Vec<(ChangeTag, String)> = diff
        .iter_all_changes()
        .map(|c| (c.tag(), c.value().to_string()))
        .collect();
    let mut out = String::new();
    let mut i = 0;
    while i < changes.len() {
        let tag = changes[i].0;
        let mut run = String::new();
        while i < changes.len() && changes[i].0 == tag {
            run.push_str(&changes[i].1);
            i += 1;
        }
        match tag {
            ChangeTag::Equal => {
                let first = out.is_empty();
                let last = i == changes.len();
                out.push_str(&shorten(&run, !first, !last));
            }
            ChangeTag::Delete => out.push_str(&format!("[-{run}-]")),
            ChangeTag::Insert => out.push_str(&format!("{{+{run}+}}")),
        }
    }
    out
}

/// An unchanged run with only the context next to the changes kept (`head`: a change
/// precedes it, `tail`: one follows).
fn shorten(run: &str, head: bool, tail: bool) -> String {
    let chars: Vec<char> = run.chars().collect();
    let keep = CONTEXT * (usize::from(head) + usize::from(tail));
    if chars.len() <= keep.max(CONTEXT) + 8 {
        return run.to_string();
    }
    let start: String = chars[..if head { CONTEXT } else { 0 }].iter().collect();
    let end: String = chars[chars.len() - if tail { CONTEXT } else { 0 }..]
        .iter()
        .collect();
    format!("{start}…{end}")
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

    #[test]
    fn long_texts_are_shown_as_a_word_diff() {
        let vars = Vars::new();
        let want = "error validating token: claim \"sub\" does not match any associated bound claim values of the role named app in this mount";
        let got = "error validating token: claim \"aud\" does not match any associated bound claim values of the role named app in this mount";
        let line = mismatch("login.error", &TextMatch::Exact(want.into()), got, &vars);
        assert!(
            line.contains("claim [-\"sub\"-]{+\"aud\"+} does not"),
            "{line}"
        );
        // The long unchanged tail is shortened, and the text is not printed twice.
        assert!(line.contains('…'), "{line}");
        assert_eq!(line.matches("error validating token").count(), 1, "{line}");
        // Short texts stay side by side.
        let short = mismatch("login.error", &TextMatch::Exact("a b".into()), "a c", &vars);
        assert_eq!(short, "login.error: expected \"a b\", got \"a c\"");
    }
}
