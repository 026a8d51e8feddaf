//! Who a request is: the user an authenticator names and RBAC authorizes.

use std::collections::BTreeMap;

use serde::Serialize;

/// Username of anonymous requests.
pub(crate) const ANONYMOUS: &str = "system:anonymous";

/// `authentication/v1.UserInfo` with Go `omitempty` behaviour.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub(crate) struct UserInfo {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub username: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub uid: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    /// `system:anonymous` in group `system:unauthenticated`.
    pub fn anonymous() -> Self {
        UserInfo {
            username: ANONYMOUS.into(),
            groups: vec!["system:unauthenticated".into()],
            ..Default::default()
        }
    }
}
