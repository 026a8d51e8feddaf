//! Decoding of the Kubernetes protobuf envelope for the few kinds typed clients (kubectl's
//! imperative `create` commands) send as protobuf. Responses are always JSON.

use base64::{Engine, engine::general_purpose::STANDARD};
use serde_json::{Map, Value, json};

/// The four magic bytes before every protobuf-encoded object.
const MAGIC: &[u8] = b"k8s\0";

/// How one field is decoded into JSON.
#[derive(Clone, Copy)]
enum F {
    Str,
    Bytes,
    Int,
    Bool,
    RepStr,
    MapStr,
    MapBytes,
    Msg(&'static [Field]),
    RepMsg(&'static [Field]),
}

type Field = (u32, &'static str, F);

const OBJECT_META: &[Field] = &[
    (1, "name", F::Str),
    (2, "generateName", F::Str),
    (3, "namespace", F::Str),
    (5, "uid", F::Str),
    (6, "resourceVersion", F::Str),
    (11, "labels", F::MapStr),
    (12, "annotations", F::MapStr),
    (14, "finalizers", F::RepStr),
];
const OBJECT_REF: &[Field] = &[
    (1, "kind", F::Str),
    (2, "namespace", F::Str),
    (3, "name", F::Str),
    (4, "uid", F::Str),
    (5, "apiVersion", F::Str),
];
const LOCAL_REF: &[Field] = &[(1, "name", F::Str)];
const SERVICE_ACCOUNT: &[Field] = &[
    (1, "metadata", F::Msg(OBJECT_META)),
    (2, "secrets", F::RepMsg(OBJECT_REF)),
    (3, "imagePullSecrets", F::RepMsg(LOCAL_REF)),
    (4, "automountServiceAccountToken", F::Bool),
];
const NAMESPACE: &[Field] = &[(1, "metadata", F::Msg(OBJECT_META))];
const BOUND_REF: &[Field] = &[
    (1, "kind", F::Str),
    (2, "apiVersion", F::Str),
    (3, "name", F::Str),
    (4, "uid", F::Str),
];
const TOKEN_REQUEST_SPEC: &[Field] = &[
    (1, "audiences", F::RepStr),
    (3, "boundObjectRef", F::Msg(BOUND_REF)),
    (4, "expirationSeconds", F::Int),
];
const TOKEN_REQUEST: &[Field] = &[
    (1, "metadata", F::Msg(OBJECT_META)),
    (2, "spec", F::Msg(TOKEN_REQUEST_SPEC)),
];
const SECRET: &[Field] = &[
    (1, "metadata", F::Msg(OBJECT_META)),
    (2, "data", F::MapBytes),
    (3, "type", F::Str),
    (4, "stringData", F::MapStr),
    (5, "immutable", F::Bool),
];
const CONFIG_MAP: &[Field] = &[
    (1, "metadata", F::Msg(OBJECT_META)),
    (2, "data", F::MapStr),
    (3, "binaryData", F::MapBytes),
    (4, "immutable", F::Bool),
];
const SUBJECT: &[Field] = &[
    (1, "kind", F::Str),
    (2, "apiGroup", F::Str),
    (3, "name", F::Str),
    (4, "namespace", F::Str),
];
const ROLE_REF: &[Field] = &[
    (1, "apiGroup", F::Str),
    (2, "kind", F::Str),
    (3, "name", F::Str),
];
const BINDING: &[Field] = &[
    (1, "metadata", F::Msg(OBJECT_META)),
    (2, "subjects", F::RepMsg(SUBJECT)),
    (3, "roleRef", F::Msg(ROLE_REF)),
];
const POLICY_RULE: &[Field] = &[
    (1, "verbs", F::RepStr),
    (2, "apiGroups", F::RepStr),
    (3, "resources", F::RepStr),
    (4, "resourceNames", F::RepStr),
    (5, "nonResourceURLs", F::RepStr),
];
const ROLE: &[Field] = &[
    (1, "metadata", F::Msg(OBJECT_META)),
    (2, "rules", F::RepMsg(POLICY_RULE)),
];
const TYPE_META: &[Field] = &[(1, "apiVersion", F::Str), (2, "kind", F::Str)];
const UNKNOWN: &[Field] = &[(1, "typeMeta", F::Msg(TYPE_META)), (2, "raw", F::Bytes)];

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.buf.get(self.at)?;
            self.at += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    fn bytes(&mut self) -> Option<&[u8]> {
        let len = usize::try_from(self.varint()?).ok()?;
        let end = self.at.checked_add(len)?;
        let out = self.buf.get(self.at..end)?;
        self.at = end;
        Some(out)
    }

    fn skip(&mut self, wire: u64) -> Option<()> {
        match wire {
            0 => self.varint().map(|_| ()),
            1 => (self.at + 8 <= self.buf.len()).then(|| self.at += 8),
            2 => self.bytes().map(|_| ()),
            5 => (self.at + 4 <= self.buf.len()).then(|| self.at += 4),
            _ => None,
        }
    }
}

fn map_entry(raw: &[u8], bytes_value: bool) -> Option<(String, Value)> {
    let mut r = Reader { buf: raw, at: 0 };
    let (mut key, mut value) = (String::new(), Value::String(String::new()));
    while r.at < raw.len() {
        let tag = r.varint()?;
        match (tag >> 3, tag & 7) {
            (1, 2) => key = String::from_utf8(r.bytes()?.to_vec()).ok()?,
            (2, 2) => {
                let b = r.bytes()?;
                value = if bytes_value {
                    json!(STANDARD.encode(b))
                } else {
                    json!(String::from_utf8_lossy(b))
                };
            }
            (_, wire) => r.skip(wire)?,
        }
    }
    Some((key, value))
}

fn decode(raw: &[u8], schema: &[Field]) -> Option<Value> {
    let mut r = Reader { buf: raw, at: 0 };
    let mut out = Map::new();
    while r.at < raw.len() {
        let tag = r.varint()?;
        let (num, wire) = (tag >> 3, tag & 7);
        let Some((_, name, kind)) = schema.iter().find(|(n, _, _)| u64::from(*n) == num) else {
            r.skip(wire)?;
            continue;
        };
        let name = name.to_string();
        match (kind, wire) {
            (F::Int, 0) => {
                out.insert(name, json!(r.varint()? as i64));
            }
            (F::Bool, 0) => {
                out.insert(name, json!(r.varint()? != 0));
            }
            (F::Str, 2) => {
                // Generated messages write empty strings; JSON omits them.
                let text = String::from_utf8_lossy(r.bytes()?).into_owned();
                if !text.is_empty() {
                    out.insert(name, json!(text));
                }
            }
            (F::Bytes, 2) => {
                out.insert(name, json!(STANDARD.encode(r.bytes()?)));
            }
            (F::RepStr, 2) => {
                let s = json!(String::from_utf8_lossy(r.bytes()?));
                push(&mut out, name, s);
            }
            (F::Msg(inner), 2) => {
                out.insert(name, decode(r.bytes()?, inner)?);
            }
            (F::RepMsg(inner), 2) => {
                let v = decode(r.bytes()?, inner)?;
                push(&mut out, name, v);
            }
            (F::MapStr | F::MapBytes, 2) => {
                let (k, v) = map_entry(r.bytes()?, matches!(kind, F::MapBytes))?;
                let m = out.entry(name).or_insert_with(|| json!({}));
                if let Some(m) = m.as_object_mut() {
                    m.insert(k, v);
                }
            }
            (_, wire) => r.skip(wire)?,
        }
    }
    Some(Value::Object(out))
}

fn push(out: &mut Map<String, Value>, name: String, v: Value) {
    let list = out.entry(name).or_insert_with(|| json!([]));
    if let Some(a) = list.as_array_mut() {
        a.push(v);
    }
}

/// Decodes a protobuf-encoded object of a supported kind into its JSON form.
pub(crate) fn decode_object(body: &[u8]) -> Option<Value> {
    let envelope = decode(body.strip_prefix(MAGIC)?, UNKNOWN)?;
    let api_version = envelope
        .pointer("/typeMeta/apiVersion")?
        .as_str()?
        .to_string();
    let kind = envelope.pointer("/typeMeta/kind")?.as_str()?.to_string();
    let raw = STANDARD.decode(envelope.get("raw")?.as_str()?).ok()?;
    let schema = match kind.as_str() {
        "ServiceAccount" => SERVICE_ACCOUNT,
        "Namespace" | "SelfSubjectReview" => NAMESPACE,
        "TokenRequest" => TOKEN_REQUEST,
        "Secret" => SECRET,
        "ConfigMap" => CONFIG_MAP,
        "ClusterRoleBinding" | "RoleBinding" => BINDING,
        "ClusterRole" | "Role" => ROLE,
        _ => return None,
    };
    let mut obj = decode(&raw, schema)?;
    if let Some(o) = obj.as_object_mut() {
        o.insert("apiVersion".into(), json!(api_version));
        o.insert("kind".into(), json!(kind));
    }
    Some(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(num: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![((num << 3) | 2) as u8, payload.len() as u8];
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn token_request_envelope() {
        let meta = field(1, b"web");
        let bound = [field(1, b"Pod"), field(2, b"v1"), field(3, b"p")].concat();
        let spec = [
            field(1, b"vault"),
            field(3, &bound),
            vec![4 << 3, 0xd8, 0x04],
        ]
        .concat();
        let raw = [field(1, &meta), field(2, &spec)].concat();
        let type_meta = [
            field(1, b"authentication.k8s.io/v1"),
            field(2, b"TokenRequest"),
        ]
        .concat();
        let body = [MAGIC.to_vec(), field(1, &type_meta), field(2, &raw)].concat();
        let obj = decode_object(&body).unwrap();
        assert_eq!(
            obj,
            json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                   "metadata": {"name": "web"},
                   "spec": {"audiences": ["vault"], "expirationSeconds": 600,
                            "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "p"}}})
        );
        assert!(decode_object(b"k8s\0\xff").is_none());
        assert!(decode_object(b"{}").is_none());
    }
}
