//! Checks that need no server text: the token against the role and the config, decided the
//! way the server decides (the Kubernetes method's bound names, namespaces and audience before
//! its TokenReview; the JWT method's issuer, audiences, subject, times with their leeways and
//! user claim). A rejection the server is bound to make is a finding of score 90; what only
//! might be the cause is a hint below the score that determines a cause.

use serde_json::Value;

use super::{API_AUDIENCE, Cause, Finding, Input, strs};
use crate::jwt::DecodedJwt;

/// The score of a rejection the server is bound to make.
const BOUND: u8 = 90;
/// The score of what may be the cause.
const HINT: u8 = 45;

/// Whether a bound value (`*`, a glob with any number of `*`, or a name) admits `v`, as the
/// servers decide it (`strutil.StrListContainsGlob`).
fn admits(bound: &[String], v: &str) -> bool {
    bound.iter().any(|b| go_glob(b, v))
}

/// The servers' glob (`github.com/ryanuber/go-glob`): `*` matches any run of characters and
/// nothing else is special (no `?`, no classes, no escapes), each inner part is taken at its
/// first occurrence. Written out because the glob crates give `?` or `[` a meaning these
/// servers do not, and so would admit names the servers refuse.
fn go_glob(pattern: &str, subject: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return subject == pattern;
    }
    let leading = pattern.starts_with('*');
    let trailing = pattern.ends_with('*');
    let last = parts.len() - 1;
    let mut rest = subject;
    for (i, part) in parts[..last].iter().enumerate() {
        match rest.find(part) {
            Some(0) => {}
            Some(_) if i == 0 && !leading => return false,
            Some(idx) => rest = &rest[idx..],
            None => return false,
        }
        rest = &rest[part.len()..];
    }
    trailing || rest.ends_with(parts[last])
}

fn num(v: &Value) -> Option<i64> {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

/// Adds the findings of comparing the token with the role and the config.
pub fn check(input: &Input, out: &mut Vec<Finding>) {
    let mut add = super::adder(out);
    let when = if input.at_login { "the login" } else { "now" };
    if let Some(why) = &input.jwt_error {
        add(
            Cause::MalformedToken,
            BOUND,
            "the token is not a JWT".into(),
            why.clone(),
            "send the service-account token itself (the file's content at /var/run/secrets/kubernetes.io/serviceaccount/token)",
        );
        return;
    }
    if input.role_missing
        && let Some(name) = &input.role_name
    {
        add(
            Cause::UnknownRole,
            BOUND,
            format!("the role {name:?} does not exist on this mount"),
            format!("reading role {name:?} answered 404"),
            "fix the role name in the client's configuration, or create the role (list them: LIST auth/<mount>/role)",
        );
    }
    let jwt_method = input.method.as_deref() == Some("jwt")
        || input.role.as_ref().is_some_and(|r| {
            !r["role_type"].is_null()
                || !r["bound_audiences"].is_null()
                || !r["user_claim"].is_null()
        });
    let kube_method = !jwt_method
        && (input.method.as_deref() == Some("kubernetes")
            || input
                .role
                .as_ref()
                .is_some_and(|r| !r["bound_service_account_names"].is_null()));
    if kube_method && let Some(config) = &input.config {
        reviewer(config, (input.now as i64, when), &mut add);
    }
    let Some(jwt) = &input.jwt else {
        return;
    };
    if let Some(role) = &input.role {
        if kube_method {
            kubernetes_role(jwt, role, &mut add);
        }
        if jwt_method {
            jwt_role(jwt, role, (input.now as i64, when), &mut add);
        }
    }
    if kube_method {
        times(jwt, (input.now as i64, when), 60, 60, &mut add);
    } else if !jwt_method {
        // Method unknown: the most lenient leeways of the two (the JWT method's defaults).
        times(jwt, (input.now as i64, when), 210, 210, &mut add);
    }
    if let Some(config) = &input.config {
        if kube_method {
            kubernetes_config(jwt, config, input.role.as_ref(), &mut add);
        }
        if jwt_method && let Some(bound) = config["bound_issuer"].as_str().filter(|b| !b.is_empty())
        {
            let iss = jwt.claims["iss"].as_str().unwrap_or("");
            if iss != bound {
                add(
                    Cause::Issuer,
                    BOUND,
                    format!(
                        "the token's issuer {iss:?} is not the configured bound_issuer {bound:?}"
                    ),
                    format!("iss {iss:?}, config bound_issuer {bound:?}"),
                    "set bound_issuer to the cluster's service-account issuer (kubectl get --raw /.well-known/openid-configuration)",
                );
            }
        }
    }
    // What the token itself says, whatever the role.
    if let Some(pod) = jwt.claims["kubernetes.io"]["pod"]["name"].as_str() {
        add(
            Cause::TokenInvalidated,
            HINT,
            format!("the token is bound to pod {pod:?}: it is valid only while that pod exists"),
            format!("kubernetes.io.pod {}", jwt.claims["kubernetes.io"]["pod"]),
            "if the pod is gone, use the token of a running pod (kubectl get pod <name> -o jsonpath='{.metadata.uid}' against the claim's uid)",
        );
    }
}

type Add<'a> = dyn FnMut(Cause, u8, String, String, &str) + 'a;

/// What of a Kubernetes config decides the TokenReview's bearer: whether a reviewer JWT is
/// set (as written, or as the server reads it back), and `disable_local_ca_jwt`.
fn bearer_settings(config: &Value) -> (bool, bool) {
    let reviewer = config["token_reviewer_jwt_set"].as_bool() == Some(true)
        || config["token_reviewer_jwt"]
            .as_str()
            .is_some_and(|s| !s.is_empty());
    (
        reviewer,
        config["disable_local_ca_jwt"].as_bool() == Some(true),
    )
}

/// Whether a client error is `permission denied` and nothing else, also as CLIs wrap it
/// (`Code: 403. Errors:` / `* permission denied`, `1 error occurred:`).
fn bare(error: &str) -> bool {
    let lines: Vec<&str> = error
        .lines()
        .map(|l| l.trim().trim_start_matches('*').trim())
        .filter(|l| !l.is_empty() && !l.ends_with("error occurred:") && !l.ends_with("Errors:"))
        .collect();
    lines == ["permission denied"]
}

/// The causes of a Kubernetes-auth `permission denied` that the evidence given excludes, each
/// with the evidence that excludes it (decided as the server decides: the bound names,
/// namespaces and audience, the token's times with the method's leeway of 60 s, who the
/// TokenReview's bearer is, and whether the API server answered at all).
pub fn ruled_out(input: &Input) -> Vec<(Cause, String)> {
    let mut out = Vec::new();
    let now = input.now as i64;
    if let Some(jwt) = &input.jwt {
        if let (Some(role), Some((ns, name))) = (&input.role, jwt.service_account()) {
            let names = strs(&role["bound_service_account_names"]);
            if admits(&names, &name) {
                out.push((
                    Cause::SaName,
                    format!("the role's bound_service_account_names {names:?} admit the token's {name:?}"),
                ));
            }
            let namespaces = strs(&role["bound_service_account_namespaces"]);
            let selector = role["bound_service_account_namespace_selector"]
                .as_str()
                .unwrap_or("");
            if selector.is_empty() && admits(&namespaces, &ns) {
                out.push((
                    Cause::Namespace,
                    format!("the role's bound_service_account_namespaces {namespaces:?} admit the token's {ns:?}"),
                ));
            }
            let audience = role["audience"].as_str().unwrap_or("");
            if audience.is_empty() {
                out.push((Cause::RoleAudience, "the role sets no audience".into()));
            } else if jwt.audiences().iter().any(|a| a == audience) {
                out.push((
                    Cause::RoleAudience,
                    format!("the token's audiences hold the role's {audience:?}"),
                ));
            }
        }
        let c = &jwt.claims;
        let started = num(&c["nbf"]).or_else(|| num(&c["iat"]));
        if let Some(exp) = num(&c["exp"])
            && now <= exp + 60
            && started.is_none_or(|s| s <= now + 60)
        {
            out.push((
                Cause::ClientTokenTime,
                format!(
                    "the token is valid at {} (exp {exp})",
                    if input.at_login { "the login" } else { "now" }
                ),
            ));
        }
    }
    if let Some(config) = &input.config {
        let (reviewer, no_local) = bearer_settings(config);
        if reviewer {
            out.push((
                Cause::BearerAudience,
                "a token_reviewer_jwt is set: it is the TokenReview's bearer, not the client's token".into(),
            ));
        } else if input.server_in_pod == Some(true) && !no_local {
            out.push((
                Cause::BearerAudience,
                "the server runs in a pod with no token_reviewer_jwt: its own token is the TokenReview's bearer".into(),
            ));
        }
        if !reviewer && (input.server_in_pod == Some(false) || no_local) {
            out.push((
                Cause::ReviewerToken,
                "no token_reviewer_jwt is set, and no pod token stands in for one".into(),
            ));
        }
    }
    // A line of the API server's answer (a 401, `authenticated: false`, a 403, another
    // user): the server reached it, over TLS it trusted. (A TLS or connection failure names
    // the TokenReview URL too, but never these.)
    if let Some(line) = input.log.iter().find(|l| {
        l.contains("lookup failed")
            || l.contains("is forbidden")
            || l.contains("JWT names did not match")
    }) {
        let why = format!("the server's log holds the API server's answer ({line:?})");
        out.push((Cause::WrongCa, why.clone()));
        out.push((Cause::Unreachable, why));
    }
    // The checks the server makes itself before its TokenReview answer with their own error.
    if bare(input.client_error()) {
        for (cause, own) in [
            (Cause::SaName, "service account name not authorized"),
            (Cause::Namespace, "namespace not authorized"),
            (Cause::RoleAudience, "invalid audience (aud) claim: …"),
            (
                Cause::ClientTokenTime,
                "invalid expiration time (exp) claim: token is expired, or invalid not before (nbf) claim: …",
            ),
        ] {
            out.push((
                cause,
                format!("the error is a bare `permission denied`; this one is answered `{own}`"),
            ));
        }
    }
    out
}

fn kubernetes_role(jwt: &DecodedJwt, role: &Value, add: &mut Add<'_>) {
    let Some((ns, name)) = jwt.service_account() else {
        return;
    };
    let names = strs(&role["bound_service_account_names"]);
    if !names.is_empty() && !admits(&names, &name) {
        add(
            Cause::SaName,
            BOUND,
            "the token's service-account name is not in the role's bound_service_account_names"
                .into(),
            format!("token service account {name:?}, role binds {names:?}"),
            "add the name to bound_service_account_names, or log in with the intended service account's token",
        );
    }
    let namespaces = strs(&role["bound_service_account_namespaces"]);
    let selector = role["bound_service_account_namespace_selector"]
        .as_str()
        .unwrap_or("");
    if selector.is_empty() && !namespaces.is_empty() && !admits(&namespaces, &ns) {
        add(
            Cause::Namespace,
            BOUND,
            "the token's namespace is not in the role's bound_service_account_namespaces".into(),
            format!("token namespace {ns:?}, role binds {namespaces:?}"),
            "add the namespace to bound_service_account_namespaces (or a namespace selector)",
        );
    }
    let audience = role["audience"].as_str().unwrap_or("");
    let aud = jwt.audiences();
    if !audience.is_empty() && !aud.iter().any(|a| a == audience) {
        add(
            Cause::RoleAudience,
            BOUND,
            format!(
                "the token's audiences {aud:?} do not include the role's audience {audience:?}"
            ),
            format!("aud {aud:?}, role audience {audience:?}"),
            "request the token for the role's audience (kubectl create token --audience, or the projected volume's audience), or change the role",
        );
    }
}

fn kubernetes_config(jwt: &DecodedJwt, config: &Value, role: Option<&Value>, add: &mut Add<'_>) {
    let (reviewer, no_local) = bearer_settings(config);
    let ca = config["kubernetes_ca_cert"].as_str().unwrap_or("");
    let host = config["kubernetes_host"].as_str().unwrap_or("");
    if no_local && ca.trim().is_empty() && host.starts_with("https://") {
        add(
            Cause::MissingCa,
            BOUND - 5,
            "the config has disable_local_ca_jwt=true but no kubernetes_ca_cert".into(),
            format!("kubernetes_host {host:?}, kubernetes_ca_cert empty"),
            "give kubernetes_ca_cert: the cluster CA (kubeconfig certificate-authority-data, base64-decoded, or ca.crt of any service-account token Secret)",
        );
    }
    let selector = role
        .and_then(|r| r["bound_service_account_namespace_selector"].as_str())
        .unwrap_or("");
    if !reviewer && !selector.is_empty() {
        add(
            Cause::Namespace,
            BOUND,
            "the role binds namespaces by selector, which needs a token_reviewer_jwt to read the client's namespace with".into(),
            format!("bound_service_account_namespace_selector {selector:?}, token_reviewer_jwt not set"),
            "configure token_reviewer_jwt (an account that may create tokenreviews and get namespaces), or bind namespaces by name (bound_service_account_namespaces)",
        );
    }
    if !reviewer {
        // The client's own token is the TokenReview's bearer: the API server accepts it only
        // for one of its API audiences (by default its issuer, or the in-cluster service name).
        let aud = jwt.audiences();
        let iss = jwt.claims["iss"].as_str().unwrap_or("");
        let api = aud.iter().any(|a| a == API_AUDIENCE || a == iss);
        if !aud.is_empty() && !api {
            let role_aud = role.and_then(|r| r["audience"].as_str()).unwrap_or("");
            add(
                Cause::BearerAudience,
                if no_local { BOUND - 5 } else { HINT },
                format!(
                    "no reviewer JWT is configured{}, so the client's token is the TokenReview bearer, but its audiences {aud:?} hold no API audience",
                    if no_local {
                        " and disable_local_ca_jwt=true"
                    } else {
                        ""
                    }
                ),
                format!(
                    "aud {aud:?}, iss {iss:?}, token_reviewer_jwt not set{}{}",
                    if no_local {
                        ", disable_local_ca_jwt=true"
                    } else {
                        " (a server inside the cluster reviews with its own token instead)"
                    },
                    if role_aud.is_empty() {
                        String::new()
                    } else {
                        format!(", role audience {role_aud:?}")
                    }
                ),
                "request the client token with both audiences (e.g. [vault, https://kubernetes.default.svc.cluster.local]), or configure token_reviewer_jwt",
            );
        }
    }
    if config["disable_iss_validation"].as_bool() == Some(false)
        && let Some(want) = config["issuer"].as_str().filter(|i| !i.is_empty())
    {
        let iss = jwt.claims["iss"].as_str().unwrap_or("");
        if iss != want {
            add(
                Cause::Issuer,
                BOUND,
                format!("the token's issuer {iss:?} is not the config's issuer {want:?}"),
                format!("iss {iss:?}, issuer {want:?}, disable_iss_validation=false"),
                "set issuer to the cluster's service-account issuer, or leave issuer validation off (disable_iss_validation=true, the default)",
            );
        }
    }
}

/// The reviewer JWT, when the config holds it (a config as written; the server never returns
/// it): expired, or without an API audience, the API server answers the TokenReview 401.
fn reviewer(config: &Value, (now, when): (i64, &str), add: &mut Add<'_>) {
    let Some(r) = config["token_reviewer_jwt"]
        .as_str()
        .filter(|t| !t.is_empty())
        .and_then(|t| crate::jwt::decode_unverified(t).ok())
    else {
        return;
    };
    let fix = "issue a fresh reviewer token for the API audience (kubectl create token <sa> -n <ns>, no --audience) or a long-lived token Secret, and write it as token_reviewer_jwt";
    if let Some(exp) = num(&r.claims["exp"])
        && now > exp + 60
    {
        add(
            Cause::ReviewerToken,
            BOUND,
            format!("the reviewer JWT expired {} s before {when}", now - exp),
            format!("token_reviewer_jwt exp {exp}, {when} {now}"),
            fix,
        );
    }
    let aud = r.audiences();
    let iss = r.claims["iss"].as_str().unwrap_or("");
    if !aud.is_empty() && !aud.iter().any(|a| a == API_AUDIENCE || a == iss) {
        add(
            Cause::ReviewerToken,
            BOUND - 5,
            format!(
                "the reviewer JWT's audiences {aud:?} hold no API audience, so the API server rejects it as a bearer"
            ),
            format!("token_reviewer_jwt aud {aud:?}, iss {iss:?}"),
            fix,
        );
    }
}

fn jwt_role(jwt: &DecodedJwt, role: &Value, now: (i64, &str), add: &mut Add<'_>) {
    if role["role_type"].as_str() == Some("oidc") {
        add(
            Cause::RoleType,
            BOUND,
            "the role has role_type=oidc, which a JWT login cannot use".into(),
            "role_type \"oidc\"".into(),
            "write the role with role_type=jwt for logins that send a JWT",
        );
    }
    let aud = jwt.audiences();
    let bound = strs(&role["bound_audiences"]);
    if bound.is_empty() && !aud.is_empty() {
        add(
            Cause::Audience,
            BOUND,
            "the token has an aud claim and the role binds no audiences".into(),
            format!("aud {aud:?}, role bound_audiences empty"),
            "set bound_audiences on the role to the token's audience",
        );
    } else if !bound.is_empty() && !aud.iter().any(|a| bound.contains(a)) {
        add(
            Cause::Audience,
            BOUND,
            format!(
                "the token's audiences {aud:?} do not include the role's bound_audiences {bound:?}"
            ),
            format!("aud {aud:?}, role bound_audiences {bound:?}"),
            "request the token for the role's audience (kubectl create token --audience, or the projected volume's audience), or change the role",
        );
    }
    if let Some(want) = role["bound_subject"].as_str().filter(|s| !s.is_empty()) {
        let sub = jwt.claims["sub"].as_str().unwrap_or("");
        if sub != want {
            add(
                Cause::Subject,
                BOUND,
                format!("the token's subject {sub:?} is not the role's bound_subject {want:?}"),
                format!("sub {sub:?}, role bound_subject {want:?}"),
                "set bound_subject to system:serviceaccount:<namespace>:<name> of the client",
            );
        }
    }
    let user_claim = role["user_claim"].as_str().unwrap_or("sub");
    if !user_claim.contains('/') && jwt.claims[user_claim].is_null() {
        add(
            Cause::UserClaim,
            BOUND,
            format!("the token has no {user_claim:?} claim, the role's user_claim"),
            format!(
                "claims {:?}",
                jwt.claims
                    .as_object()
                    .map(|o| o.keys().collect::<Vec<_>>())
                    .unwrap_or_default()
            ),
            "set user_claim to a claim every token carries (sub for service-account tokens)",
        );
    }
    let leeway = |k: &str, default: i64| num(&role[k]).filter(|v| *v >= 0).unwrap_or(default);
    let skew = leeway("clock_skew_leeway", 60);
    times(
        jwt,
        now,
        leeway("expiration_leeway", 150) + skew,
        leeway("not_before_leeway", 150) + skew,
        add,
    );
}

/// Expiry and not-before against `now`, with the server's leeways.
fn times(
    jwt: &DecodedJwt,
    (now, when): (i64, &str),
    exp_leeway: i64,
    nbf_leeway: i64,
    add: &mut Add<'_>,
) {
    let c = &jwt.claims;
    let fix = "use a fresh token (projected tokens rotate; re-read the file instead of caching it) and check clock skew between server and cluster";
    if let Some(exp) = num(&c["exp"])
        && now > exp + exp_leeway
    {
        add(
            Cause::ClientTokenTime,
            BOUND,
            format!("the token expired {} s before {when}", now - exp),
            format!("exp {exp}, {when} {now}, leeway {exp_leeway} s"),
            fix,
        );
    }
    if let Some(nbf) = num(&c["nbf"]).or_else(|| num(&c["iat"]))
        && nbf > now + nbf_leeway
    {
        add(
            Cause::ClientTokenTime,
            BOUND,
            format!("the token is valid only from {} s after {when}", nbf - now),
            format!(
                "nbf/iat {nbf}, {when} {now}, leeway {nbf_leeway} s (a clock ahead of the server's issues tokens from its future)"
            ),
            fix,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_permission_denied_is_recognised_as_clients_print_it() {
        assert!(bare("permission denied"));
        assert!(bare("Code: 403. Errors:\n\n* permission denied\n"));
        assert!(bare("1 error occurred:\n\t* permission denied\n\n"));
        assert!(!bare("namespace not authorized"));
        assert!(!bare("permission denied: namespace not authorized"));
    }

    #[test]
    fn globs_and_stars_admit() {
        let b = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(admits(&b(&["*"]), "x"));
        assert!(admits(&b(&["app-*"]), "app-1"));
        assert!(admits(&b(&["*-sa"]), "web-sa"));
        assert!(!admits(&b(&["app-*"]), "web"));
        assert!(!admits(&b(&["internal-app"]), "other"));
    }

    /// Any number of `*`, as the servers match it: a role bound to `inter*-a*p` admits
    /// `internal-app`, and `?` means itself.
    #[test]
    fn globs_with_several_stars_match_as_the_servers_do() {
        let b = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(admits(&b(&["inter*-a*p"]), "internal-app"));
        assert!(admits(&b(&["*-*"]), "a-b"));
        assert!(admits(&b(&["a**b"]), "ab"));
        assert!(admits(&b(&["*a*"]), "xay"));
        assert!(!admits(&b(&["inter*-a*p"]), "internal-apx"));
        assert!(!admits(&b(&["x*y*z"]), "xzy"));
        assert!(!admits(&b(&["app-?"]), "app-1"));
        assert!(admits(&b(&["app-?"]), "app-?"));
        assert!(!admits(&b(&["b*"]), "ab"));
        // go-glob takes each inner part at its first occurrence.
        assert!(admits(&b(&["a*b*c"]), "abbc"));
        assert!(!admits(&b(&[""]), "x"));
        assert!(admits(&b(&[""]), ""));
    }
}
