//! `-H` addresses: `unix://PATH`, `tcp://HOST:PORT`, `fd://`, `fd://NAME`.

use std::path::PathBuf;

use super::ConfigError;

/// Default port of a plain TCP listener.
pub const DEFAULT_TCP_PORT: u16 = 2375;
/// Default port of a TLS listener.
pub const DEFAULT_TLS_PORT: u16 = 2376;

/// One listening address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// A Unix socket at this path.
    Unix(PathBuf),
    /// A TCP address; `port` is `None` when the address gave none (2375, or 2376 with TLS).
    Tcp { host: String, port: Option<u16> },
    /// Sockets handed over by systemd: all of them (`None`), or those named by number or by
    /// `FileDescriptorName=`.
    Fd(Option<String>),
}

impl Host {
    pub fn parse(s: &str) -> Result<Host, ConfigError> {
        let bad = |why: &str| ConfigError::invalid(format!("invalid bind address ({s}): {why}"));
        let s_trim = s.trim();
        if s_trim.is_empty() {
            return Ok(Host::Unix(PathBuf::from("/var/run/docker.sock")));
        }
        if s_trim.starts_with('/') {
            return Ok(Host::Unix(PathBuf::from(s_trim)));
        }
        let (proto, addr) = s_trim
            .split_once("://")
            .ok_or_else(|| bad("expected PROTO://ADDR"))?;
        match proto {
            "unix" => {
                if addr.is_empty() {
                    Ok(Host::Unix(PathBuf::from("/var/run/docker.sock")))
                } else if addr.starts_with('/') {
                    Ok(Host::Unix(PathBuf::from(addr)))
                } else {
                    Err(bad("the socket path must be absolute"))
                }
            }
            "fd" => Ok(Host::Fd(match addr {
                "" | "*" => None,
                name => Some(name.to_string()),
            })),
            "tcp" => {
                if addr.contains('/') {
                    return Err(bad("should not contain a path element"));
                }
                let (host, port) = if let Some(rest) = addr.strip_prefix('[') {
                    let (h, p) = rest
                        .split_once(']')
                        .ok_or_else(|| bad("invalid IPv6 address"))?;
                    (h.to_string(), p.strip_prefix(':').unwrap_or(p))
                } else {
                    match addr.rsplit_once(':') {
                        Some((h, p)) => (h.to_string(), p),
                        None => (addr.to_string(), ""),
                    }
                };
                let port = if port.is_empty() {
                    None
                } else {
                    Some(
                        port.parse::<u16>()
                            .map_err(|_| bad(&format!("invalid port: {port}")))?,
                    )
                };
                let host = if host.is_empty() {
                    "127.0.0.1".to_string()
                } else {
                    host
                };
                Ok(Host::Tcp { host, port })
            }
            other => Err(bad(&format!("unsupported proto '{other}'"))),
        }
    }
}

impl std::fmt::Display for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Host::Unix(p) => write!(f, "unix://{}", p.display()),
            Host::Tcp { host, port } => {
                let h = if host.contains(':') {
                    format!("[{host}]")
                } else {
                    host.clone()
                };
                match port {
                    Some(p) => write!(f, "tcp://{h}:{p}"),
                    None => write!(f, "tcp://{h}"),
                }
            }
            Host::Fd(None) => write!(f, "fd://"),
            Host::Fd(Some(n)) => write!(f, "fd://{n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hosts() {
        assert_eq!(
            Host::parse("unix:///run/x.sock").unwrap(),
            Host::Unix("/run/x.sock".into())
        );
        assert_eq!(
            Host::parse("unix://").unwrap(),
            Host::Unix("/var/run/docker.sock".into())
        );
        assert_eq!(
            Host::parse("tcp://0.0.0.0:2376").unwrap(),
            Host::Tcp {
                host: "0.0.0.0".into(),
                port: Some(2376)
            }
        );
        assert_eq!(
            Host::parse("tcp://:2375").unwrap(),
            Host::Tcp {
                host: "127.0.0.1".into(),
                port: Some(2375)
            }
        );
        assert_eq!(
            Host::parse("tcp://[::1]:9").unwrap(),
            Host::Tcp {
                host: "::1".into(),
                port: Some(9)
            }
        );
        assert_eq!(Host::parse("fd://").unwrap(), Host::Fd(None));
        assert_eq!(
            Host::parse("fd://api").unwrap(),
            Host::Fd(Some("api".into()))
        );
        assert!(Host::parse("udp://x:1").is_err());
        assert!(Host::parse("tcp://x:port").is_err());
        assert!(Host::parse("tcp://x:1/path").is_err());
        assert!(Host::parse("unix://relative").is_err());
        assert!(Host::parse("nonsense").is_err());
        assert_eq!(
            Host::parse("tcp://[::1]:9").unwrap().to_string(),
            "tcp://[::1]:9"
        );
    }
}
