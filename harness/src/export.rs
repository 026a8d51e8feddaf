//! `authlab export terraform`: a case's server-side configuration as Terraform (the Vault
//! provider's resources, which OpenBao accepts too), for users to apply to their own server.
//!
//! Lab placeholders become input variables: `${cluster.url}` → `var.kubernetes_host`,
//! `${cluster.ca}` → `var.kubernetes_ca_cert`, `${reviewer.jwt}` → `var.token_reviewer_jwt`, ...

use anyhow::{Context, Result};
use hcl::{
    Body, Expression,
    expr::{Heredoc, TemplateExpr, Traversal, Variable},
    structure::{Attribute, Block},
};
use serde_json::Value;

use crate::case::{
    Case, effective,
    model::{AuthMethod, KubeMode},
};

/// Placeholder → Terraform variable, with the variable's description and sensitivity.
pub const VARIABLES: &[(&str, &str, &str, bool)] = &[
    (
        "cluster.url",
        "kubernetes_host",
        "API server URL as the server reaches it",
        false,
    ),
    (
        "cluster.ca",
        "kubernetes_ca_cert",
        "PEM of the CA that signed the API server's certificate",
        false,
    ),
    (
        "reviewer.jwt",
        "token_reviewer_jwt",
        "token of a service account bound to system:auth-delegator",
        true,
    ),
    (
        "cluster.jwks_url",
        "jwks_url",
        "the cluster's /openid/v1/jwks URL",
        false,
    ),
    (
        "cluster.pubkey",
        "jwt_validation_pubkey",
        "PEM of the service-account signing public key",
        false,
    ),
    (
        "cluster.issuer",
        "issuer",
        "the cluster's service-account issuer",
        false,
    ),
    (
        "other.ca",
        "other_ca_cert",
        "a CA PEM (the case uses another cluster's CA)",
        false,
    ),
    (
        "unrelated.ca",
        "unrelated_ca_cert",
        "a CA PEM (the case uses a CA unrelated to the cluster)",
        false,
    ),
    (
        "unreachable.url",
        "kubernetes_host",
        "API server URL as the server reaches it",
        false,
    ),
    (
        "hang.url",
        "kubernetes_host",
        "API server URL as the server reaches it",
        false,
    ),
    ("kv", "kv_mount", "KV v2 mount the policy refers to", false),
];

/// The variable a placeholder becomes: the named ones above, the role's policy and the mount
/// path, and every other placeholder a case may hold (`${other.url}` → `var.other_url`, a
/// further mount's `${mount.b}` → `var.mount_b`), so none is written literally to a server.
fn var_for(placeholder: &str) -> Option<String> {
    if let Some((_, v, ..)) = VARIABLES.iter().find(|(p, ..)| *p == placeholder) {
        return Some(v.to_string());
    }
    match placeholder {
        "policy" => return Some("policy_name".into()),
        "mount" => return Some("mount_path".into()),
        _ => {}
    }
    let known = crate::placeholders::KNOWN
        .iter()
        .any(|(k, _)| *k == placeholder)
        || ["mount.", "accessor."].iter().any(|pre| {
            placeholder.strip_prefix(pre).is_some_and(|n| {
                !n.is_empty()
                    && n.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            })
        });
    known.then(|| placeholder.replace(['.', '-'], "_"))
}

/// The placeholder a variable stands for (the first, where several share one).
fn placeholder_of(var: &str) -> String {
    if let Some((p, ..)) = VARIABLES.iter().find(|(_, v, ..)| *v == var) {
        return p.to_string();
    }
    match var {
        "policy_name" => return "policy".into(),
        "mount_path" => return "mount".into(),
        _ => {}
    }
    crate::placeholders::KNOWN
        .iter()
        .map(|(k, _)| k.to_string())
        .find(|k| var_for(k).as_deref() == Some(var))
        .or_else(|| {
            ["mount", "accessor"].iter().find_map(|pre| {
                var.strip_prefix(pre)
                    .and_then(|r| r.strip_prefix('_'))
                    .map(|n| format!("{pre}.{n}"))
            })
        })
        .unwrap_or_else(|| var.to_string())
}

fn var_ref(name: &str) -> Expression {
    Expression::Traversal(Box::new(
        Traversal::builder(Variable::unchecked("var"))
            .attr(name)
            .build(),
    ))
}

/// Converts a case value into an HCL expression, placeholders into variable references.
pub fn expr_for(key: &str, v: &Value) -> Expression {
    match v {
        Value::String(s) => {
            if key.ends_with("_ttl")
                && let Ok(d) = humantime::parse_duration(s)
            {
                return Expression::Number(d.as_secs().into());
            }
            if let Some(p) = s.strip_prefix("${").and_then(|r| r.strip_suffix('}'))
                && let Some(var) = var_for(p)
            {
                return var_ref(&var);
            }
            if s.contains("${") {
                return Expression::TemplateExpr(Box::new(TemplateExpr::QuotedString(
                    to_template(s, true),
                )));
            }
            Expression::String(s.clone())
        }
        Value::Bool(b) => Expression::Bool(*b),
        Value::Number(n) => n
            .as_i64()
            .map(|i| Expression::Number(i.into()))
            .or_else(|| {
                n.as_f64()
                    .and_then(hcl::Number::from_f64)
                    .map(Expression::Number)
            })
            .unwrap_or(Expression::Null),
        Value::Array(a) => Expression::Array(a.iter().map(|x| expr_for(key, x)).collect()),
        Value::Null => Expression::Null,
        Value::Object(o) => Expression::Object(
            o.iter()
                .map(|(k, x)| (hcl::ObjectKey::from(k.as_str()), expr_for(k, x)))
                .collect(),
        ),
    }
}

/// Writes `s` as HCL template text (for a quoted string when `quoted`, else for a heredoc):
/// `${placeholder}` becomes `${var.name}`; every literal `$` and `%` becomes an interpolation
/// of itself (`${"$"}`), which no neighbouring character can turn into an escape or a
/// directive, unlike `$${` and `%%{` next to a literal `$` or `%`; in quoted strings
/// backslashes, quotes and control characters are escaped.
fn to_template(s: &str, quoted: bool) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(c) = rest.chars().next() {
        if let Some(after) = rest.strip_prefix("${")
            && let Some(j) = after.find('}')
            && let Some(var) = var_for(&after[..j])
        {
            out.push_str(&format!("${{var.{var}}}"));
            rest = &after[j + 1..];
            continue;
        }
        match c {
            '$' => out.push_str("${\"$\"}"),
            '%' => out.push_str("${\"%\"}"),
            '\\' if quoted => out.push_str("\\\\"),
            '"' if quoted => out.push_str("\\\""),
            '\n' if quoted => out.push_str("\\n"),
            '\r' if quoted => out.push_str("\\r"),
            '\t' if quoted => out.push_str("\\t"),
            c if quoted && c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// A heredoc delimiter that no line of `text` equals (`EOT`, else `EOT_1`, `EOT_2`, ...): a
/// line `EOT` in a policy would otherwise end the heredoc and let the rest be read as HCL.
fn heredoc_delimiter(text: &str) -> String {
    let taken = |d: &str| text.lines().any(|l| l.trim() == d);
    std::iter::once("EOT".to_string())
        .chain((1..).map(|i| format!("EOT_{i}")))
        .find(|d| !taken(d))
        .unwrap_or_else(|| "EOT".into())
}

/// Reads template text back into the value it stands for: literals as parsed, `${var.name}`
/// back into its placeholder, interpolated string literals as their text.
fn untemplate(t: &TemplateExpr) -> String {
    let template = match hcl::Template::from_expr(t) {
        Ok(t) => t,
        Err(e) => return format!("<template does not parse: {e}>"),
    };
    let mut out = String::new();
    for element in template.elements() {
        match element {
            hcl::template::Element::Literal(l) => out.push_str(l),
            hcl::template::Element::Interpolation(i) => match value_of(&i.expr) {
                Value::String(s) => out.push_str(&s),
                other => out.push_str(&other.to_string()),
            },
            hcl::template::Element::Directive(d) => out.push_str(&format!("<directive {d:?}>")),
        }
    }
    out
}

/// Resource types for the case's method: (backend, config or None, role).
fn resource_types(case: &Case) -> (&'static str, Option<&'static str>, &'static str) {
    match case.auth {
        AuthMethod::Kubernetes => (
            "vault_auth_backend",
            Some("vault_kubernetes_auth_backend_config"),
            "vault_kubernetes_auth_backend_role",
        ),
        AuthMethod::Jwt => (
            "vault_jwt_auth_backend",
            None,
            "vault_jwt_auth_backend_role",
        ),
    }
}

/// Names of the resources the export writes (type, name): the config lives in the backend block
/// for JWT auth.
pub fn config_resource(case: &Case) -> &'static str {
    let (backend, config, _) = resource_types(case);
    config.unwrap_or(backend)
}

/// The role resource type.
pub fn role_resource(case: &Case) -> &'static str {
    resource_types(case).2
}

/// Renders the case's server-side configuration as a self-contained Terraform file.
pub fn terraform(name: &str, case: &Case) -> Result<String> {
    let config = effective::config(case);
    let role = effective::role(case, "${policy}");
    let policy = effective::policy(case);
    let (backend_t, config_t, role_t) = resource_types(case);
    let method = match case.auth {
        AuthMethod::Kubernetes => "kubernetes",
        AuthMethod::Jwt => "jwt",
    };
    let all_text = format!(
        "{} {} {policy}",
        serde_json::to_string(&config)?,
        serde_json::to_string(&role)?
    );
    // Every placeholder in the text, as the variable it becomes (in order, once each).
    let mut used: Vec<String> = Vec::new();
    let mut rest = all_text.as_str();
    while let Some(i) = rest.find("${") {
        let after = &rest[i + 2..];
        let Some(j) = after.find('}') else { break };
        if let Some(v) = var_for(&after[..j])
            && !used.contains(&v)
            && v != "mount_path"
            && v != "policy_name"
        {
            used.push(v);
        }
        rest = &after[j + 1..];
    }

    let mut body = Body::builder();
    body = body.add_block(
        Block::builder("terraform")
            .add_block(
                Block::builder("required_providers")
                    .add_attribute(Attribute::new(
                        "vault",
                        Expression::Object(
                            [
                                (
                                    hcl::ObjectKey::from("source"),
                                    Expression::String("hashicorp/vault".into()),
                                ),
                                (
                                    hcl::ObjectKey::from("version"),
                                    Expression::String(">= 4.0".into()),
                                ),
                            ]
                            .into_iter()
                            .collect(),
                        ),
                    ))
                    .build(),
            )
            .build(),
    );
    let mut variables = vec![
        ("mount_path".to_string(), method.to_string()),
        ("policy_name".to_string(), "app".to_string()),
    ];
    for v in used {
        variables.push((v, String::new()));
    }
    for (v, default) in &variables {
        let placeholder = placeholder_of(v);
        let (desc, sensitive) = VARIABLES
            .iter()
            .find(|(_, n, ..)| n == v)
            .map(|(_, _, d, s)| (d.to_string(), *s))
            .unwrap_or_else(|| {
                if !default.is_empty() {
                    return (format!("{v} (default {default})"), false);
                }
                let what = crate::placeholders::KNOWN
                    .iter()
                    .find(|(k, _)| *k == placeholder)
                    .map_or("the value", |(_, d)| *d);
                (
                    format!("{what} (the case's ${{{placeholder}}})"),
                    placeholder.ends_with(".jwt"),
                )
            });
        let mut b = Block::builder("variable")
            .add_label(v.as_str())
            .add_attribute(("type", var_ref_type()))
            .add_attribute(("description", desc));
        if !default.is_empty() {
            b = b.add_attribute(("default", default.clone()));
        }
        if sensitive {
            b = b.add_attribute(("sensitive", true));
        }
        body = body.add_block(b.build());
    }

    // Backend (for JWT auth it carries the config too).
    let mut backend = Block::builder("resource")
        .add_label(backend_t)
        .add_label("this");
    match case.auth {
        AuthMethod::Kubernetes => {
            backend = backend
                .add_attribute(("type", "kubernetes"))
                .add_attribute(Attribute::new("path", var_ref("mount_path")));
        }
        AuthMethod::Jwt => {
            backend = backend
                .add_attribute(("type", "jwt"))
                .add_attribute(Attribute::new("path", var_ref("mount_path")));
            for (k, v) in &config {
                backend = backend.add_attribute(Attribute::new(k.as_str(), expr_for(k, v)));
            }
        }
    }
    body = body.add_block(backend.build());
    let backend_path = Expression::Traversal(Box::new(
        Traversal::builder(Variable::unchecked(backend_t))
            .attr("this")
            .attr("path")
            .build(),
    ));
    if let Some(config_t) = config_t {
        let mut b = Block::builder("resource")
            .add_label(config_t)
            .add_label("this")
            .add_attribute(Attribute::new("backend", backend_path.clone()));
        for (k, v) in &config {
            b = b.add_attribute(Attribute::new(k.as_str(), expr_for(k, v)));
        }
        body = body.add_block(b.build());
    }
    let policy_template = to_template(&policy, false);
    body = body.add_block(
        Block::builder("resource")
            .add_label("vault_policy")
            .add_label("this")
            .add_attribute(Attribute::new("name", var_ref("policy_name")))
            .add_attribute(Attribute::new(
                "policy",
                Expression::TemplateExpr(Box::new(TemplateExpr::Heredoc(Heredoc::new(
                    hcl::Identifier::unchecked(heredoc_delimiter(&policy_template)),
                    policy_template,
                )))),
            ))
            .build(),
    );
    let role_name = case
        .server
        .role_name
        .clone()
        .unwrap_or_else(|| "app".into());
    let mut rb = Block::builder("resource")
        .add_label(role_t)
        .add_label("this")
        .add_attribute(Attribute::new("backend", backend_path))
        .add_attribute(("role_name", role_name));
    for (k, v) in &role {
        let expr = if k == "token_policies" {
            Expression::Array(
                v.as_array()
                    .map(|a| {
                        a.iter()
                            .map(|p| {
                                if p.as_str() == Some("${policy}") {
                                    Expression::Traversal(Box::new(
                                        Traversal::builder(Variable::unchecked("vault_policy"))
                                            .attr("this")
                                            .attr("name")
                                            .build(),
                                    ))
                                } else {
                                    expr_for(k, p)
                                }
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            )
        } else {
            expr_for(k, v)
        };
        rb = rb.add_attribute(Attribute::new(k.as_str(), expr));
    }
    body = body.add_block(rb.build());

    let header = format!(
        "# Server-side configuration of authlab case {name}\n# {}\n# mode: {}\n\n",
        case.about.split_whitespace().collect::<Vec<_>>().join(" "),
        case.mode
            .map(|m| match m {
                KubeMode::LocalToken => "local-token",
                KubeMode::ClientToken => "client-token",
                KubeMode::ReviewerJwt => "reviewer-jwt",
            })
            .unwrap_or("jwt"),
    );
    let text = hcl::to_string(&body.build()).context("rendering Terraform")?;
    Ok(format!("{header}{text}"))
}

fn var_ref_type() -> Expression {
    Expression::Variable(Variable::unchecked("string"))
}

/// Reads a parsed attribute expression back into a case value (variables back into
/// placeholders), for round-trip checks.
pub fn value_of(expr: &Expression) -> Value {
    match expr {
        Expression::String(s) => Value::String(s.clone()),
        Expression::Bool(b) => Value::Bool(*b),
        Expression::Number(n) => n
            .as_i64()
            .map(Value::from)
            .or_else(|| n.as_f64().map(Value::from))
            .unwrap_or(Value::Null),
        Expression::Array(a) => Value::Array(a.iter().map(value_of).collect()),
        Expression::Traversal(t) => {
            let var = match t.operators.first() {
                Some(hcl::expr::TraversalOperator::GetAttr(id)) => id.as_str().to_string(),
                other => format!("{other:?}"),
            };
            Value::String(format!("${{{}}}", placeholder_of(&var)))
        }
        Expression::TemplateExpr(t) => Value::String(untemplate(t)),
        Expression::Null => Value::Null,
        other => Value::String(format!("{other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    /// Every shipped case exports to Terraform that parses, and whose config and role
    /// attributes give back the case's config and role field by field.
    #[test]
    fn every_case_round_trips() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../cases");
        let cases = crate::case::load::load_dir(&dir).expect("shipped cases load");
        for lc in cases {
            let text = terraform(&lc.name, &lc.case).unwrap();
            let body = hcl::parse(&text).unwrap_or_else(|e| panic!("{}: {e}\n{text}", lc.name));
            let find = |t: &str| -> &Block {
                body.blocks()
                    .find(|b| {
                        b.identifier() == "resource"
                            && b.labels().first().map(|l| l.as_str()) == Some(t)
                    })
                    .unwrap_or_else(|| panic!("{}: no resource {t}", lc.name))
            };
            let cfg_block = find(config_resource(&lc.case));
            for (k, v) in effective::config(&lc.case) {
                let attr = cfg_block
                    .body()
                    .attributes()
                    .find(|a| a.key() == k)
                    .unwrap_or_else(|| panic!("{}: config field {k} missing", lc.name));
                let back = value_of(attr.expr());
                let want = match (k.ends_with("_ttl"), &v) {
                    (true, Value::String(s)) => {
                        Value::from(humantime::parse_duration(s).unwrap().as_secs())
                    }
                    // The lab's fault endpoints are the user's own kubernetes_host in Terraform.
                    (_, Value::String(s)) if s == "${hang.url}" || s == "${unreachable.url}" => {
                        Value::from("${cluster.url}")
                    }
                    _ => v.clone(),
                };
                assert_eq!(back, want, "{}: config field {k}", lc.name);
            }
            let role_block = find(role_resource(&lc.case));
            for (k, v) in effective::role(&lc.case, "${policy}") {
                if k == "token_policies" {
                    continue;
                }
                let attr = role_block
                    .body()
                    .attributes()
                    .find(|a| a.key() == k)
                    .unwrap_or_else(|| panic!("{}: role field {k} missing", lc.name));
                let want = match (k.ends_with("_ttl"), &v) {
                    (true, Value::String(s)) => {
                        Value::from(humantime::parse_duration(s).unwrap().as_secs())
                    }
                    _ => v.clone(),
                };
                assert_eq!(value_of(attr.expr()), want, "{}: role field {k}", lc.name);
            }
        }
    }

    /// A case pasted from a bug report may hold anything: a policy with an `EOT` line (which
    /// used to end the heredoc and let the rest be read as HCL: a sudo-on-`*` policy and a
    /// `local-exec` provisioner), backslashes, quotes, `%{` directives and literal `${`. Each
    /// comes back from the parsed Terraform as written, and nothing is added to the file.
    #[test]
    fn hostile_values_round_trip() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../cases");
        let mut lc = crate::case::load::load_dir(&dir)
            .unwrap()
            .into_iter()
            .find(|c| c.case.auth == AuthMethod::Kubernetes)
            .unwrap();
        let policy = "path \"x\" {\n  capabilities = [\"read\"]\n}\nEOT\nresource \"null_resource\" \"x\" {\n  provisioner \"local-exec\" { command = \"id\" }\n}\npath \"*\" { capabilities = [\"sudo\"] }\n  EOT_1\n%{ if true }${kv}$${x}%%{ \\ \"q\"\n";
        lc.case.server.policy = Some(policy.into());
        let hostile = "a\\n \\\" %{ if 1 }x%{ endif } $${y} ${cluster.url} \"\n\tEOT\n";
        lc.case
            .server
            .role
            .insert("alias_metadata".into(), Value::String(hostile.into()));
        let text = terraform(&lc.name, &lc.case).unwrap();
        let body = hcl::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let resources: Vec<_> = body
            .blocks()
            .filter(|b| b.identifier() == "resource")
            .map(|b| b.labels()[0].as_str().to_string())
            .collect();
        assert_eq!(
            resources,
            [
                "vault_auth_backend",
                "vault_kubernetes_auth_backend_config",
                "vault_policy",
                "vault_kubernetes_auth_backend_role"
            ],
            "{text}"
        );
        let attr = |t: &str, k: &str| {
            let b = body
                .blocks()
                .find(|b| b.labels().first().map(|l| l.as_str()) == Some(t))
                .unwrap();
            value_of(b.body().attributes().find(|a| a.key() == k).unwrap().expr())
        };
        assert_eq!(
            attr("vault_policy", "policy"),
            Value::from(policy),
            "{text}"
        );
        assert_eq!(
            attr("vault_kubernetes_auth_backend_role", "alias_metadata"),
            Value::from(hostile),
            "{text}"
        );
    }

    #[test]
    fn heredoc_delimiter_is_not_a_line_of_the_text() {
        assert_eq!(heredoc_delimiter("a\nb"), "EOT");
        assert_eq!(heredoc_delimiter("a\n  EOT\nEOT_1\n"), "EOT_2");
    }

    #[test]
    fn policy_placeholders_become_variables() {
        assert_eq!(
            to_template("path \"${kv}/data/*\" ${x}", false),
            "path \"${var.kv_mount}/data/*\" ${\"$\"}{x}"
        );
    }
}

#[cfg(test)]
mod module_tests {
    use super::{Expression, terraform};
    use std::path::{Path, PathBuf};

    fn tf_files(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                tf_files(&p, out);
            } else if p.extension().is_some_and(|x| x == "tf") {
                out.push(p);
            }
        }
    }

    /// No placeholder of a shipped case reaches a server literally: each is a variable, which
    /// the file declares (`${other.url}`, `${policy}`, `${reset.url}` were once written as text).
    #[test]
    fn every_placeholder_becomes_a_declared_variable() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../cases");
        let cases = crate::case::load::load_dir(&dir).expect("shipped cases load");
        let mut checked = 0;
        for lc in cases {
            let text = terraform(&lc.name, &lc.case).unwrap();
            let body = hcl::parse(&text).unwrap();
            let declared: Vec<String> = body
                .blocks()
                .filter(|b| b.identifier() == "variable")
                .filter_map(|b| b.labels().first().map(|l| l.as_str().to_string()))
                .collect();
            // What each resource attribute evaluates to, as text, with variables left as
            // references: a literal placeholder would read back as `${...}` text.
            for b in body.blocks().filter(|b| b.identifier() == "resource") {
                for a in b.body().attributes() {
                    let literal = match a.expr() {
                        Expression::String(s) => s.contains("${"),
                        Expression::TemplateExpr(t) => {
                            let tpl = hcl::Template::from_expr(t).unwrap();
                            tpl.elements().iter().any(|e| {
                                matches!(e, hcl::template::Element::Literal(l) if l.contains("${"))
                                    || matches!(e, hcl::template::Element::Interpolation(i)
                                        if matches!(&i.expr, Expression::String(s) if s == "$"))
                            })
                        }
                        _ => false,
                    };
                    assert!(
                        !literal,
                        "{}: {} is written literally:\n{text}",
                        lc.name,
                        a.key()
                    );
                }
            }
            for v in text.match_indices("var.") {
                let name: String = text[v.0 + 4..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                assert!(
                    declared.contains(&name),
                    "{}: var.{name} undeclared",
                    lc.name
                );
            }
            checked += 1;
        }
        assert!(checked > 80, "{checked}");
    }

    /// Every shipped Terraform file parses.
    #[test]
    fn shipped_terraform_parses() {
        let mut files = Vec::new();
        tf_files(
            &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../terraform"),
            &mut files,
        );
        assert!(files.len() >= 6, "{files:?}");
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            hcl::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        }
    }
}
