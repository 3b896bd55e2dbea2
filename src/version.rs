//! Versions: berth's own, the API versions it speaks, and build facts.

use std::cmp::Ordering;
use std::fmt;

/// berth's release version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The API version berth implements (Docker Engine 28.5).
pub const API_VERSION: ApiVersion = ApiVersion::new(1, 51);
/// The oldest API version berth accepts.
pub const MIN_API_VERSION: ApiVersion = ApiVersion::new(1, 24);
/// The git commit berth was built from (`unknown` outside a checkout).
pub const GIT_COMMIT: &str = env!("BERTH_GIT_COMMIT");
/// The `rustc --version` that built berth.
pub const RUSTC_VERSION: &str = env!("BERTH_RUSTC_VERSION");
/// What `berthd --version` prints after the program name.
pub const VERSION_LINE: &str = concat!(
    "version ",
    env!("CARGO_PKG_VERSION"),
    ", build ",
    env!("BERTH_GIT_COMMIT")
);
/// When berth was built, RFC 3339 (honours `SOURCE_DATE_EPOCH`).
pub const BUILD_TIME: &str = env!("BERTH_BUILD_TIME");

/// The `Server` header value.
pub fn server_header() -> String {
    format!("berth/{VERSION} (linux)")
}

/// An Engine API version such as `1.41`.
///
/// Comparison follows moby's `versions.Compare`: components are compared numerically and a
/// missing component counts as 0, so `1.4` < `1.24` and `1` == `1.0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ApiVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl ApiVersion {
    pub const fn new(major: u32, minor: u32) -> Self {
        ApiVersion {
            major,
            minor,
            patch: 0,
        }
    }

    /// Parse the digits-and-dots form that the `/vX.Y` prefix allows. Components that do not
    /// parse count as 0, as in moby; more than three components are refused.
    pub fn parse(s: &str) -> Option<Self> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            return None;
        }
        let mut parts = [0u32; 3];
        for (i, p) in s.split('.').enumerate() {
            if i >= 3 {
                return None;
            }
            parts[i] = p.parse().unwrap_or(0);
        }
        Some(ApiVersion {
            major: parts[0],
            minor: parts[1],
            patch: parts[2],
        })
    }
}

impl Ord for ApiVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.major, self.minor, self.patch).cmp(&(other.major, other.minor, other.patch))
    }
}

impl PartialOrd for ApiVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.patch != 0 {
            write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
        } else {
            write!(f, "{}.{}", self.major, self.minor)
        }
    }
}

/// Go's name for this machine's architecture, as Docker reports it (`amd64`, `arm64`, ...).
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_orders_like_moby() {
        let v = |s| ApiVersion::parse(s).unwrap();
        assert!(v("1.4") < v("1.24"));
        assert!(v("1.24") < v("1.51"));
        assert_eq!(v("1"), v("1.0"));
        assert!(v("1.51.1") > API_VERSION);
        assert_eq!(v("1.51").to_string(), "1.51");
        assert_eq!(
            v("1..2"),
            ApiVersion {
                major: 1,
                minor: 0,
                patch: 2
            }
        );
        assert_eq!(ApiVersion::parse("1.a"), None);
        assert_eq!(ApiVersion::parse(""), None);
        assert_eq!(ApiVersion::parse("1.2.3.4"), None);
    }
}
