//! Registry configuration: mirrors and insecure registries, validated and normalised as dockerd
//! does, and the `RegistryConfig` that `/info` reports. The registry client itself (pull, push,
//! auth) builds on this.

pub mod client;

use std::collections::HashMap;
use std::net::IpAddr;

use bollard_stubs::models::{IndexInfo, RegistryServiceConfig};
use ipnet::IpNet;

/// The registry that unqualified image names belong to.
pub const DEFAULT_INDEX: &str = "docker.io";
/// What `/info` reports as `IndexServerAddress`.
pub const INDEX_SERVER_ADDRESS: &str = "https://index.docker.io/v1/";
/// Networks that are always treated as insecure (plain HTTP allowed), as in dockerd.
const DEFAULT_INSECURE_CIDRS: &[&str] = &["::1/128", "127.0.0.0/8"];

/// `--registry-mirror` and `--insecure-registry`, validated.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RegistryOptions {
    /// Normalised mirror URLs (`https://host/`), in order, without duplicates.
    pub mirrors: Vec<String>,
    /// The insecure registries as given (scheme prefixes removed).
    pub insecure: Vec<String>,
    insecure_cidrs: Vec<IpNet>,
    insecure_hosts: Vec<String>,
}

impl RegistryOptions {
    pub fn new(mirrors: Vec<String>, insecure: Vec<String>) -> Result<Self, RegistryError> {
        let mut out = RegistryOptions::default();
        for m in mirrors {
            let m = validate_mirror(&m)?;
            if !out.mirrors.contains(&m) {
                out.mirrors.push(m);
            }
        }
        for r in insecure {
            let r = validate_insecure(&r)?;
            if out.insecure.contains(&r) {
                continue;
            }
            match r.parse::<IpNet>() {
                Ok(net) => {
                    if !out.insecure_cidrs.contains(&net) {
                        out.insecure_cidrs.push(net);
                    }
                }
                Err(_) => out.insecure_hosts.push(r.clone()),
            }
            out.insecure.push(r);
        }
        for cidr in DEFAULT_INSECURE_CIDRS {
            if let Ok(net) = cidr.parse::<IpNet>() {
                if !out.insecure_cidrs.contains(&net) {
                    out.insecure_cidrs.push(net);
                }
            }
        }
        Ok(out)
    }

    /// Whether `host` (`name`, `name:port`, `ip:port`) may be spoken to over plain HTTP.
    pub fn is_insecure(&self, host: &str) -> bool {
        if self.insecure_hosts.iter().any(|h| h == host) {
            return true;
        }
        let name = split_port(host);
        let ip = match name.parse::<IpAddr>() {
            Ok(ip) => Some(ip),
            Err(_) if name == "localhost" => Some(IpAddr::from([127, 0, 0, 1])),
            Err(_) => None,
        };
        ip.is_some_and(|ip| self.insecure_cidrs.iter().any(|n| n.contains(&ip)))
    }

    /// The `RegistryConfig` object of `/info`.
    pub fn service_config(&self) -> RegistryServiceConfig {
        let mut index = HashMap::new();
        index.insert(
            DEFAULT_INDEX.to_string(),
            IndexInfo {
                name: Some(DEFAULT_INDEX.to_string()),
                mirrors: Some(self.mirrors.clone()),
                secure: Some(true),
                official: Some(true),
            },
        );
        for h in &self.insecure_hosts {
            index.insert(
                h.clone(),
                IndexInfo {
                    name: Some(h.clone()),
                    mirrors: Some(Vec::new()),
                    secure: Some(false),
                    official: Some(false),
                },
            );
        }
        RegistryServiceConfig {
            insecure_registry_cidrs: Some(
                self.insecure_cidrs.iter().map(|n| n.to_string()).collect(),
            ),
            index_configs: Some(index),
            mirrors: (!self.mirrors.is_empty()).then(|| self.mirrors.clone()),
        }
    }
}

/// The host part of `host[:port]`, handling `[v6]:port`.
fn split_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') && p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

fn validate_mirror(m: &str) -> Result<String, RegistryError> {
    let invalid = |msg: String| RegistryError::invalid(format!("invalid mirror: {msg}"));
    if !m.contains("://") {
        return Err(invalid(format!(
            "no scheme specified for {m:?}: must use either 'https://' or 'http://'"
        )));
    }
    let u = url::Url::parse(m).map_err(|e| invalid(format!("{m:?} is not a valid URI: {e}")))?;
    if u.scheme() != "http" && u.scheme() != "https" {
        return Err(invalid(format!(
            "unsupported scheme {:?} in {m:?}: must use either 'https://' or 'http://'",
            u.scheme()
        )));
    }
    if u.query().is_some() || u.fragment().is_some() {
        return Err(invalid(format!(
            "query or fragment at end of the URI {m:?}"
        )));
    }
    if !u.username().is_empty() || u.password().is_some() {
        let mut shown = u.clone();
        let _ = shown.set_password(Some("xxxxx"));
        return Err(invalid(format!(
            "username/password not allowed in URI {:?}",
            shown.as_str()
        )));
    }
    Ok(format!("{}/", m.trim_end_matches('/')))
}

fn validate_insecure(r: &str) -> Result<String, RegistryError> {
    let mut r = r.to_string();
    for scheme in ["http://", "https://"] {
        if let Some(rest) = r.strip_prefix(scheme) {
            tracing::warn!(
                "insecure registry {r} should not contain '{scheme}' and '{scheme}' has been removed from the insecure registry config"
            );
            r = rest.to_string();
        }
    }
    if r.contains("://") {
        return Err(RegistryError::invalid(format!(
            "insecure registry {r} should not contain '://'"
        )));
    }
    if r.parse::<IpNet>().is_ok() {
        return Ok(r);
    }
    if r.starts_with('-') || r.ends_with('-') {
        return Err(RegistryError::invalid(format!(
            "invalid index name ({r}). Cannot begin or end with a hyphen"
        )));
    }
    let (host, port) = if let Some(rest) = r.strip_prefix('[') {
        match rest.split_once(']') {
            Some((h, p)) => (h.to_string(), p.strip_prefix(':').map(str::to_string)),
            None => {
                return Err(RegistryError::invalid(format!(
                    "insecure registry {r} is not valid: invalid host {r:?}"
                )))
            }
        }
    } else {
        match r.split_once(':') {
            Some((h, p)) => (h.to_string(), Some(p.to_string())),
            None => (r.clone(), None),
        }
    };
    let host_ok = host.parse::<IpAddr>().is_ok()
        || (!host.is_empty()
            && host.split('.').all(|l| {
                !l.is_empty()
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            }));
    if !host_ok {
        return Err(RegistryError::invalid(format!(
            "insecure registry {r} is not valid: invalid host {host:?}"
        )));
    }
    if let Some(p) = port {
        if p.parse::<u16>().map(|p| p == 0).unwrap_or(true) {
            return Err(RegistryError::invalid(format!(
                "insecure registry {r} is not valid: invalid port {p:?}"
            )));
        }
    }
    Ok(if r == "index.docker.io" {
        DEFAULT_INDEX.to_string()
    } else {
        r
    })
}

crate::module_error! {
    /// A registry configuration or protocol error.
    pub struct RegistryError;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_are_normalised_and_checked() {
        let o = RegistryOptions::new(
            vec!["https://m.example".into(), "https://m.example/".into()],
            vec![],
        )
        .unwrap();
        assert_eq!(o.mirrors, vec!["https://m.example/".to_string()]);
        let e = RegistryOptions::new(vec!["m.example".into()], vec![]).unwrap_err();
        assert!(e.to_string().contains("no scheme specified"), "{e}");
        let e = RegistryOptions::new(vec!["ftp://m.example".into()], vec![]).unwrap_err();
        assert!(e.to_string().contains("unsupported scheme \"ftp\""), "{e}");
        let e = RegistryOptions::new(vec!["https://u:p@m.example".into()], vec![]).unwrap_err();
        assert!(
            e.to_string().contains("username/password not allowed"),
            "{e}"
        );
        assert!(!e.to_string().contains(":p@"));
    }

    #[test]
    fn insecure_registries() {
        let o = RegistryOptions::new(
            vec![],
            vec!["http://myreg:5000".into(), "10.0.0.0/8".into()],
        )
        .unwrap();
        assert!(o.is_insecure("myreg:5000"));
        assert!(o.is_insecure("10.1.2.3:5000"));
        assert!(o.is_insecure("127.0.0.1:5000"));
        assert!(o.is_insecure("localhost:5000"));
        assert!(o.is_insecure("[::1]:5000"));
        assert!(!o.is_insecure("registry.example:5000"));
        let cfg = o.service_config();
        assert_eq!(
            cfg.insecure_registry_cidrs.unwrap(),
            vec!["10.0.0.0/8", "::1/128", "127.0.0.0/8"]
        );
        let idx = cfg.index_configs.unwrap();
        assert_eq!(idx["myreg:5000"].secure, Some(false));
        assert_eq!(idx["docker.io"].official, Some(true));
        assert_eq!(cfg.mirrors, None);
        assert!(RegistryOptions::new(vec![], vec!["ftp://x".into()]).is_err());
        assert!(RegistryOptions::new(vec![], vec!["-bad".into()]).is_err());
        assert!(RegistryOptions::new(vec![], vec!["host:99999".into()]).is_err());
    }
}
