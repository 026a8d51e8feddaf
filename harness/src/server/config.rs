//! The server's config file, rendered the same way for both flavours.
//!
//! Servers run from a real config file (not `-dev`) and are initialised and unsealed through the
//! API like a production server (see [`super::process`]), so every trial meets the server as
//! users run it. Choices, each checked against the real binaries:
//! - Storage is `inmem`: OpenBao 2.7.0 removed the `file` backend (`unknown storage type file`;
//!   2.6.x only warns that it is deprecated), Vault accepts `inmem` too, and a lab's data need
//!   not outlive the run.
//! - `log_level = "debug"`: the cause of a failed TokenReview is only logged there
//!   (`login unauthorized: err=…`).
//! - OpenBao refuses to enable audit devices through the API, so its file audit device (with
//!   `log_raw`, so error texts stay readable) is declared here. Vault takes no audit stanza in
//!   its config; its device is enabled through `sys/audit` after unseal.
//! - `disable_mlock = true` only for Vault, which refuses to start without it where it cannot
//!   lock memory. OpenBao no longer knows the option and warns about it
//!   (`unknown or unsupported field disable_mlock`).

use std::{net::SocketAddr, path::PathBuf};

use super::Flavour;

/// What the config file sets.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Listener address (loopback).
    pub listen: SocketAddr,
    /// Audit log file.
    pub audit_file: PathBuf,
    /// `log_level` (default `debug`).
    pub log_level: String,
    /// Server flavour.
    pub flavour: Flavour,
}

/// A string literal for the servers' config parser (HCL 1, whose escapes are JSON's and which
/// has no `${…}` templates). Written by hand, not with `hcl-rs`: that writes HCL 2, which
/// escapes `${` as `$${`, and HCL 1 would read those two dollars literally.
fn quote(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// Renders the HCL config file.
pub fn render(cfg: &ServerConfig) -> String {
    let mut s = String::new();
    s.push_str("storage \"inmem\" {}\n\n");
    s.push_str(&format!(
        "listener \"tcp\" {{\n  address     = {}\n  tls_disable = true\n}}\n\n",
        quote(&cfg.listen.to_string())
    ));
    s.push_str(&format!(
        "api_addr  = {}\nlog_level = {}\n",
        quote(&format!("http://{}", cfg.listen)),
        quote(&cfg.log_level)
    ));
    match cfg.flavour {
        Flavour::Vault => s.push_str("disable_mlock = true\n"),
        Flavour::OpenBao => s.push_str(&format!(
            "\naudit \"file\" \"authlab\" {{\n  options {{\n    file_path = {}\n    log_raw   = \"true\"\n  }}\n}}\n",
            quote(&cfg.audit_file.display().to_string())
        )),
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openbao_declares_audit_vault_disables_mlock() {
        let mut cfg = ServerConfig {
            listen: "127.0.0.1:8200".parse().unwrap(),
            audit_file: "/tmp/a \"b\".log".into(),
            log_level: "debug".into(),
            flavour: Flavour::OpenBao,
        };
        let t = render(&cfg);
        assert!(t.contains("audit \"file\" \"authlab\""));
        assert!(t.contains(r#"file_path = "/tmp/a \"b\".log""#));
        assert!(t.contains("log_level = \"debug\""));
        assert!(!t.contains("disable_mlock"));
        hcl::parse(&t).unwrap();
        cfg.flavour = Flavour::Vault;
        let t = render(&cfg);
        assert!(t.contains("disable_mlock = true") && !t.contains("audit \"file\""));
        hcl::parse(&t).unwrap();
    }

    #[test]
    fn renders_the_exact_openbao_config() {
        let cfg = ServerConfig {
            listen: "127.0.0.1:41234".parse().unwrap(),
            audit_file: "/w/audit.log".into(),
            log_level: "debug".into(),
            flavour: Flavour::OpenBao,
        };
        assert_eq!(
            render(&cfg),
            r#"storage "inmem" {}

listener "tcp" {
  address     = "127.0.0.1:41234"
  tls_disable = true
}

api_addr  = "http://127.0.0.1:41234"
log_level = "debug"

audit "file" "authlab" {
  options {
    file_path = "/w/audit.log"
    log_raw   = "true"
  }
}
"#
        );
    }
}
