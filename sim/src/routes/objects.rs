//! REST verbs on stored objects: get, list, create, update, patch (merge, strategic as
//! merge, JSON patch, server-side apply) and delete, with per-kind admission.

use std::sync::Arc;

use axum::http::{Method, header};
use base64::{Engine, engine::general_purpose::STANDARD};
use serde_json::{Map, Value, json};

use super::{Ctx, Reply, request_info::query_value};
use crate::{
    core::{self, Core, SA_NAME_ANNOTATION, SA_TOKEN_TYPE},
    status::{ApiError, Details, success_status},
    store::{Kind, Store, meta_str},
};

/// Serves a request on a stored kind.
pub(crate) fn handle(core: &Arc<Core>, ctx: &Ctx<'_>) -> Result<Reply, ApiError> {
    let info = ctx.info;
    let kind =
        Kind::lookup(&info.group, &info.version, &info.resource).ok_or_else(ApiError::no_route)?;
    let rt = kind.info();
    // `/api/v1/namespaces/x` names the namespace itself; other kinds take the path namespace.
    let ns = if rt.namespaced {
        info.namespace.as_str()
    } else {
        ""
    };
    if !info.subresource.is_empty() && info.subresource != "status" {
        return Err(ApiError::no_route());
    }
    if !rt.namespaced && kind != Kind::NAMESPACE && !info.namespace.is_empty() {
        return Err(ApiError::no_route());
    }
    let name = info.name.as_str();
    let method = ctx.method;
    if *method == Method::GET || *method == Method::HEAD {
        let store = core.store();
        if name.is_empty() {
            if info.verb == "watch" {
                return Err(ApiError::method_not_allowed());
            }
            return Ok(list(&store, kind, (!ns.is_empty()).then_some(ns), ctx));
        }
        let obj = store
            .get(kind, ns, name)
            .ok_or_else(|| ApiError::not_found(rt.group, rt.plural, name))?;
        return Ok(Reply::json(200, obj, ctx.pretty));
    }
    if *method == Method::POST && name.is_empty() {
        let obj = parse_body(ctx)?;
        let created = create(core, kind, ns, obj)?;
        return Ok(Reply::json(201, &created, ctx.pretty));
    }
    if name.is_empty() && *method == Method::DELETE {
        let mut store = core.store();
        let names: Vec<String> = store
            .list(kind, (!ns.is_empty()).then_some(ns))
            .iter()
            .filter_map(|o| meta_str(o, "name").map(str::to_string))
            .collect();
        let mut items = Vec::new();
        for n in names {
            if let Ok(o) = delete(&mut store, kind, ns, &n) {
                items.push(o);
            }
        }
        return Ok(Reply::json(
            200,
            &list_doc(kind, items, &store.resource_version()),
            ctx.pretty,
        ));
    }
    if name.is_empty() {
        return Err(ApiError::method_not_allowed());
    }
    match *method {
        Method::PUT => {
            let obj = parse_body(ctx)?;
            let updated = update(core, kind, ns, name, obj)?;
            Ok(Reply::json(200, &updated, ctx.pretty))
        }
        Method::PATCH => patch(core, kind, ns, name, ctx),
        Method::DELETE => {
            let mut store = core.store();
            if let Some(pod) = delete_gracefully(&mut store, kind, ns, name, ctx)? {
                return Ok(Reply::json(200, &pod, ctx.pretty));
            }
            let removed = delete(&mut store, kind, ns, name)?;
            let details = Details {
                name: name.into(),
                group: rt.group.into(),
                kind: rt.plural.into(),
                uid: meta_str(&removed, "uid").unwrap_or("").into(),
                ..Default::default()
            };
            Ok(Reply::raw(200, success_status(details, ctx.pretty)))
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

fn parse_body(ctx: &Ctx<'_>) -> Result<Value, ApiError> {
    parse_document(ctx.body)
}

/// JSON, or YAML for apply patches and kubectl bodies.
fn parse_document(body: &[u8]) -> Result<Value, ApiError> {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        return Ok(v);
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::bad_request("the request body is not UTF-8"))?;
    serde_saphyr::from_str::<Value>(text).map_err(|e| {
        ApiError::bad_request(format!("the request body is neither JSON nor YAML: {e}"))
    })
}

fn list_doc(kind: Kind, items: Vec<Value>, rv: &str) -> Value {
    let rt = kind.info();
    json!({
        "kind": format!("{}List", rt.kind),
        "apiVersion": rt.api_version(),
        "metadata": {"resourceVersion": rv},
        "items": items,
    })
}

fn list(store: &Store, kind: Kind, ns: Option<&str>, ctx: &Ctx<'_>) -> Reply {
    let labels = query_value(ctx.query, "labelSelector").unwrap_or_default();
    let fields = query_value(ctx.query, "fieldSelector").unwrap_or_default();
    let items: Vec<Value> = store
        .list(kind, ns)
        .into_iter()
        .filter(|o| {
            selector_matches(&labels, |k| {
                o.pointer("/metadata/labels")
                    .and_then(|l| l.get(k))
                    .and_then(Value::as_str)
            })
        })
        .filter(|o| {
            selector_matches(&fields, |k| match k {
                "metadata.name" => meta_str(o, "name"),
                "metadata.namespace" => meta_str(o, "namespace"),
                "type" => o.get("type").and_then(Value::as_str),
                "spec.nodeName" => o.pointer("/spec/nodeName").and_then(Value::as_str),
                _ => None,
            })
        })
        .cloned()
        .collect();
    Reply::json(
        200,
        &list_doc(kind, items, &store.resource_version()),
        ctx.pretty,
    )
}

/// Equality-based selectors: `k=v`, `k==v`, `k!=v`, `k`, `!k`, comma-separated.
fn selector_matches<'a>(selector: &str, get: impl Fn(&str) -> Option<&'a str>) -> bool {
    selector
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .all(|term| {
            if let Some((k, v)) = term.split_once("!=") {
                get(k.trim()) != Some(v.trim())
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                get(k.trim()) == Some(v.trim())
            } else if let Some(k) = term.strip_prefix('!') {
                get(k.trim()).is_none()
            } else {
                get(term).is_some()
            }
        })
}

/// Admission and defaulting before a create or update.
fn admit(
    core: &Core,
    store: &Store,
    kind: Kind,
    ns: &str,
    obj: &mut Value,
) -> Result<(), ApiError> {
    let rt = kind.info();
    if rt.namespaced && store.get(Kind::NAMESPACE, "", ns).is_none() {
        return Err(ApiError::not_found("", "namespaces", ns));
    }
    let Some(o) = obj.as_object_mut() else {
        return Err(ApiError::bad_request(
            "the body of the request is not a JSON object",
        ));
    };
    match kind {
        Kind::SECRET => {
            if let Some(Value::Object(sd)) = o.remove("stringData") {
                let data = o.entry("data").or_insert_with(|| json!({}));
                if let Some(d) = data.as_object_mut() {
                    for (k, v) in sd {
                        let text = v
                            .as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| v.to_string());
                        d.insert(k, json!(STANDARD.encode(text)));
                    }
                }
            }
            let ty = o.entry("type").or_insert_with(|| json!("Opaque"));
            if ty.as_str() == Some(SA_TOKEN_TYPE) {
                let has_sa = o
                    .get("metadata")
                    .and_then(|m| m.get("annotations"))
                    .and_then(|a| a.get(SA_NAME_ANNOTATION))
                    .and_then(Value::as_str)
                    .is_some_and(|s| !s.is_empty());
                if !has_sa {
                    let name = o
                        .get("metadata")
                        .and_then(|m| m.get("name"))
                        .and_then(Value::as_str)
                        .unwrap_or("");
                    return Err(ApiError::invalid(
                        "",
                        "Secret",
                        name,
                        vec![(
                            format!("metadata.annotations[{SA_NAME_ANNOTATION}]"),
                            "FieldValueRequired",
                            "Required value".into(),
                        )],
                    ));
                }
            }
        }
        Kind::POD => {
            let spec = o.entry("spec").or_insert_with(|| json!({}));
            if let Some(s) = spec.as_object_mut() {
                let sa = s
                    .get("serviceAccountName")
                    .and_then(Value::as_str)
                    .filter(|x| !x.is_empty())
                    .or_else(|| {
                        s.get("serviceAccount")
                            .and_then(Value::as_str)
                            .filter(|x| !x.is_empty())
                    })
                    .unwrap_or("default")
                    .to_string();
                s.insert("serviceAccountName".into(), json!(sa));
                s.insert("serviceAccount".into(), json!(sa));
                let scheduled = s
                    .get("nodeName")
                    .and_then(Value::as_str)
                    .is_some_and(|n| !n.is_empty());
                o.entry("status").or_insert_with(
                    || json!({"phase": if scheduled { "Running" } else { "Pending" }}),
                );
            }
        }
        Kind::NAMESPACE => {
            o.entry("spec")
                .or_insert_with(|| json!({"finalizers": ["kubernetes"]}));
            o.entry("status")
                .or_insert_with(|| json!({"phase": "Active"}));
            let name = o
                .get("metadata")
                .and_then(|m| m.get("name"))
                .and_then(Value::as_str)
                .map(str::to_string);
            if let (Some(name), Some(meta)) =
                (name, o.get_mut("metadata").and_then(Value::as_object_mut))
            {
                let labels = meta.entry("labels").or_insert_with(|| json!({}));
                if let Some(l) = labels.as_object_mut() {
                    l.insert("kubernetes.io/metadata.name".into(), json!(name));
                }
            }
        }
        _ => {}
    }
    let _ = core;
    Ok(())
}

/// Reactions after a successful write (tokens controller, namespace contents).
fn after_write(
    core: &Arc<Core>,
    store: &mut Store,
    kind: Kind,
    ns: &str,
    obj: &Value,
    created: bool,
) {
    let name = meta_str(obj, "name").unwrap_or("").to_string();
    match kind {
        Kind::NAMESPACE if created => core.create_namespace_contents(store, &name),
        Kind::SECRET if core::needs_token(obj) => {
            core::schedule_token_fill(core, ns.to_string(), name)
        }
        _ => {}
    }
}

fn create(core: &Arc<Core>, kind: Kind, ns: &str, mut obj: Value) -> Result<Value, ApiError> {
    let mut store = core.store();
    admit(core, &store, kind, ns, &mut obj)?;
    let created = store.create(kind, ns, obj)?;
    after_write(core, &mut store, kind, ns, &created, true);
    Ok(created)
}

fn update(
    core: &Arc<Core>,
    kind: Kind,
    ns: &str,
    name: &str,
    mut obj: Value,
) -> Result<Value, ApiError> {
    let mut store = core.store();
    admit(core, &store, kind, ns, &mut obj)?;
    let updated = store.update(kind, ns, name, obj)?;
    after_write(core, &mut store, kind, ns, &updated, false);
    Ok(updated)
}

/// The grace period a DELETE asks for: `gracePeriodSeconds` of the query or of the body's
/// DeleteOptions.
fn grace_period(ctx: &Ctx<'_>) -> Option<i64> {
    let from_query = ctx.query.split('&').find_map(|kv| {
        kv.strip_prefix("gracePeriodSeconds=")
            .and_then(|v| v.parse().ok())
    });
    from_query.or_else(|| {
        serde_json::from_slice::<Value>(ctx.body)
            .ok()
            .and_then(|b| b["gracePeriodSeconds"].as_i64())
    })
}

/// A Pod scheduled to a node is deleted gracefully: it gets a `deletionTimestamp` (now plus its
/// grace period, 30 s by default) and stays until its kubelet confirms — which no sim kubelet
/// does; a grace period of 0 (`kubectl delete --grace-period=0 --force`) or an unscheduled pod
/// is removed at once (None). A pod already being deleted keeps its earlier deadline.
fn delete_gracefully(
    store: &mut Store,
    kind: Kind,
    ns: &str,
    name: &str,
    ctx: &Ctx<'_>,
) -> Result<Option<Value>, ApiError> {
    if kind != Kind::POD {
        return Ok(None);
    }
    let info = kind.info();
    let pod = store
        .get(kind, ns, name)
        .ok_or_else(|| ApiError::not_found(info.group, info.plural, name))?
        .clone();
    let scheduled = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty());
    let grace = grace_period(ctx).unwrap_or_else(|| {
        pod.pointer("/spec/terminationGracePeriodSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(30)
    });
    if !scheduled || grace <= 0 {
        return Ok(None);
    }
    if pod.pointer("/metadata/deletionTimestamp").is_some() {
        return Ok(Some(pod));
    }
    let at = std::time::SystemTime::now() + std::time::Duration::from_secs(grace as u64);
    Ok(Some(store.mark_deleting(
        kind,
        ns,
        name,
        &humantime::format_rfc3339_seconds(at).to_string(),
        grace,
    )?))
}

fn delete(store: &mut Store, kind: Kind, ns: &str, name: &str) -> Result<Value, ApiError> {
    let removed = store.delete(kind, ns, name)?;
    if kind == Kind::SERVICE_ACCOUNT {
        core::delete_sa_token_secrets(store, ns, name, meta_str(&removed, "uid").unwrap_or(""));
    }
    Ok(removed)
}

/// RFC 7386 JSON merge patch.
pub(crate) fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            if let Some(t) = target.as_object_mut() {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// RFC 6902 JSON patch (add, remove, replace, test, copy, move).
fn json_patch(target: &mut Value, ops: &Value) -> Result<(), ApiError> {
    let bad = |m: &str| ApiError::bad_request(format!("invalid JSON patch: {m}"));
    for op in ops.as_array().ok_or_else(|| bad("not an array"))? {
        let kind = op
            .get("op")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("missing op"))?;
        let path = op
            .get("path")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("missing path"))?;
        let value = || op.get("value").cloned().ok_or_else(|| bad("missing value"));
        match kind {
            "add" | "replace" => {
                set_pointer(target, path, value()?, kind == "add").map_err(|m| bad(&m))?
            }
            "remove" => {
                remove_pointer(target, path)
                    .ok_or_else(|| bad(&format!("path {path} not found")))?;
            }
            "test" => {
                if target.pointer(path) != Some(&value()?) {
                    return Err(ApiError::invalid(
                        "",
                        "Patch",
                        "",
                        vec![(path.into(), "FieldValueInvalid", "test failed".into())],
                    ));
                }
            }
            "copy" | "move" => {
                let from = op
                    .get("from")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad("missing from"))?;
                let v = if kind == "move" {
                    remove_pointer(target, from)
                } else {
                    target.pointer(from).cloned()
                }
                .ok_or_else(|| bad(&format!("path {from} not found")))?;
                set_pointer(target, path, v, true).map_err(|m| bad(&m))?;
            }
            other => return Err(bad(&format!("unknown op {other}"))),
        }
    }
    Ok(())
}

fn split_pointer(path: &str) -> Option<(String, String)> {
    let (parent, last) = path.rsplit_once('/')?;
    Some((
        parent.to_string(),
        last.replace("~1", "/").replace("~0", "~"),
    ))
}

fn set_pointer(target: &mut Value, path: &str, v: Value, insert: bool) -> Result<(), String> {
    if path.is_empty() {
        *target = v;
        return Ok(());
    }
    let (parent, key) = split_pointer(path).ok_or_else(|| format!("bad path {path}"))?;
    match target.pointer_mut(&parent) {
        Some(Value::Object(m)) => {
            m.insert(key, v);
            Ok(())
        }
        Some(Value::Array(a)) => {
            let idx = if key == "-" {
                a.len()
            } else {
                key.parse().map_err(|_| format!("bad index {key}"))?
            };
            if insert && idx <= a.len() {
                a.insert(idx, v);
                Ok(())
            } else if idx < a.len() {
                a[idx] = v;
                Ok(())
            } else {
                Err(format!("index {idx} out of range"))
            }
        }
        _ => Err(format!("path {parent} not found")),
    }
}

fn remove_pointer(target: &mut Value, path: &str) -> Option<Value> {
    let (parent, key) = split_pointer(path)?;
    match target.pointer_mut(&parent)? {
        Value::Object(m) => m.remove(&key),
        Value::Array(a) => {
            let idx: usize = key.parse().ok()?;
            (idx < a.len()).then(|| a.remove(idx))
        }
        _ => None,
    }
}

fn patch(
    core: &Arc<Core>,
    kind: Kind,
    ns: &str,
    name: &str,
    ctx: &Ctx<'_>,
) -> Result<Reply, ApiError> {
    let rt = kind.info();
    let content_type = ctx
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    match content_type.as_str() {
        "application/apply-patch+yaml" | "application/apply-patch+cbor" => {
            let applied = parse_document(ctx.body)?;
            // As the API server's guaranteed update: an object another request created or
            // changed between the read and the write is read again and applied to (two
            // concurrent applies of one object both succeed, neither with a conflict).
            let mut tries = 0;
            loop {
                tries += 1;
                let existing = core.store().get(kind, ns, name).cloned();
                let written = match existing {
                    None => {
                        let mut obj = applied.clone();
                        if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                            meta.insert("name".into(), json!(name));
                        }
                        create(core, kind, ns, obj).map(|o| (201, o))
                    }
                    Some(mut current) => {
                        let mut applied = applied.clone();
                        if let Some(meta) =
                            applied.get_mut("metadata").and_then(Value::as_object_mut)
                        {
                            meta.remove("resourceVersion");
                        }
                        merge_patch(&mut current, &applied);
                        update(core, kind, ns, name, current).map(|o| (200, o))
                    }
                };
                match written {
                    Err(e) if e.code == 409 && tries < 5 => continue,
                    Err(e) => return Err(e),
                    Ok((code, obj)) => return Ok(Reply::json(code, &obj, ctx.pretty)),
                }
            }
        }
        "application/merge-patch+json"
        | "application/strategic-merge-patch+json"
        | "application/json-patch+json" => {
            let existing = core.store().get(kind, ns, name).cloned();
            let mut current =
                existing.ok_or_else(|| ApiError::not_found(rt.group, rt.plural, name))?;
            let p: Value = serde_json::from_slice(ctx.body)
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            if content_type == "application/json-patch+json" {
                json_patch(&mut current, &p)?;
            } else {
                merge_patch(&mut current, &p);
            }
            let updated = update(core, kind, ns, name, current)?;
            Ok(Reply::json(200, &updated, ctx.pretty))
        }
        other => Err(ApiError::unsupported_media_type(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_and_json_patch() {
        let mut v = json!({"a": {"b": 1, "c": 2}, "l": [1, 2]});
        merge_patch(&mut v, &json!({"a": {"b": null, "d": 3}, "l": [3]}));
        assert_eq!(v, json!({"a": {"c": 2, "d": 3}, "l": [3]}));
        json_patch(
            &mut v,
            &json!([{"op": "add", "path": "/l/-", "value": 4},
                                   {"op": "replace", "path": "/a/c", "value": 9},
                                   {"op": "remove", "path": "/a/d"}]),
        )
        .unwrap();
        assert_eq!(v, json!({"a": {"c": 9}, "l": [3, 4]}));
    }

    #[test]
    fn selectors() {
        let labels = json!({"app": "web", "tier": "x"});
        let get = |k: &str| labels.get(k).and_then(Value::as_str);
        assert!(selector_matches("app=web", get));
        assert!(selector_matches("app==web,tier", get));
        assert!(!selector_matches("app!=web", get));
        assert!(selector_matches("!missing", get));
        assert!(selector_matches("", get));
    }
}
