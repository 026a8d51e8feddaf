//! Real OpenBao and Vault servers: binary provisioning, config rendering, the process runtime.

pub mod binary;
pub mod config;
pub mod process;
pub mod ready;

use std::{fmt, str::FromStr};

use anyhow::{Result, bail};

/// Server flavour.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Deserialize,
    serde::Serialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Flavour {
    /// OpenBao (`bao`).
    OpenBao,
    /// HashiCorp Vault (`vault`).
    Vault,
}

impl Flavour {
    /// The executable's name (`bao`, `vault`).
    pub fn exe(self) -> &'static str {
        match self {
            Flavour::OpenBao => "bao",
            Flavour::Vault => "vault",
        }
    }
}

impl fmt::Display for Flavour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Flavour::OpenBao => "openbao",
            Flavour::Vault => "vault",
        })
    }
}

/// A server flavour and version, written `openbao:2.7.2` / `vault:1.21.1`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerSpec {
    /// Flavour.
    pub flavour: Flavour,
    /// Version without a leading `v`.
    pub version: String,
}

impl fmt::Display for ServerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.flavour, self.version)
    }
}

impl FromStr for ServerSpec {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        let (f, v) = s
            .split_once(':')
            .ok_or_else(|| anyhow::anyhow!("`{s}` is not flavour:version"))?;
        let flavour = match f.trim() {
            "openbao" | "bao" => Flavour::OpenBao,
            "vault" => Flavour::Vault,
            other => bail!("unknown server flavour `{other}`: expected openbao or vault"),
        };
        let version = v.trim().trim_start_matches('v').to_string();
        let valid = !version.is_empty()
            && version
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-+".contains(c));
        if !valid {
            bail!("`{v}` is not a version (e.g. 2.7.2)");
        }
        Ok(ServerSpec { flavour, version })
    }
}

/// OpenBao versions the project supports.
pub const OPENBAO_VERSIONS: &[&str] = &["2.6.1", "2.6.2", "2.7.0", "2.7.1", "2.7.2"];

/// Vault version used when none is given.
pub const DEFAULT_VAULT_VERSION: &str = "1.21.1";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_print() {
        let s: ServerSpec = "openbao:v2.7.2".parse().unwrap();
        assert_eq!(s.to_string(), "openbao:2.7.2");
        assert_eq!(
            "vault:1.21.1".parse::<ServerSpec>().unwrap().flavour,
            Flavour::Vault
        );
        assert!("consul:1".parse::<ServerSpec>().is_err());
        assert!("openbao".parse::<ServerSpec>().is_err());
        assert!("openbao:../x".parse::<ServerSpec>().is_err());
    }
}
