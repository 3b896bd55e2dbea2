//! Image references with Docker's normalisation: `busybox` is
//! `docker.io/library/busybox:latest`, `localhost:5000/x` keeps its registry, digests are
//! `sha256:<64 hex>`.

use std::fmt;

use super::ImageError;

pub const DEFAULT_DOMAIN: &str = "docker.io";
const LEGACY_DOMAIN: &str = "index.docker.io";
const OFFICIAL_PREFIX: &str = "library/";
pub const DEFAULT_TAG: &str = "latest";
const NAME_TOTAL_MAX: usize = 255;

/// A normalised reference: a repository with a tag, a digest, or both.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    /// Registry host, with port: `docker.io`, `localhost:5000`.
    pub domain: String,
    /// Path in the registry: `library/busybox`.
    pub path: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl Reference {
    /// Parse a reference as the docker CLI accepts it; a missing tag and digest become `latest`.
    pub fn parse(s: &str) -> Result<Reference, ImageError> {
        let mut r = Self::parse_any(s)?;
        if r.tag.is_none() && r.digest.is_none() {
            r.tag = Some(DEFAULT_TAG.to_string());
        }
        Ok(r)
    }

    /// Parse a repository name alone (no tag, no digest), as `repo` parameters are.
    pub fn parse_repository(s: &str) -> Result<Reference, ImageError> {
        let r = Self::parse_any(s)?;
        if r.tag.is_some() || r.digest.is_some() {
            return Err(ImageError::invalid(format!(
                "invalid reference format: {s:?} must be a repository name without tag or digest"
            )));
        }
        Ok(r)
    }

    /// Parse without defaulting the tag.
    pub fn parse_any(s: &str) -> Result<Reference, ImageError> {
        let invalid = || ImageError::invalid("invalid reference format".to_string());
        if s.is_empty() {
            return Err(invalid());
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                validate_digest(d)?;
                (r, Some(d.to_string()))
            }
            None => (s, None),
        };
        // A tag follows the last ':' that is after the last '/'.
        let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let i = last_slash + i;
                (&rest[..i], Some(rest[i + 1..].to_string()))
            }
            None => (rest, None),
        };
        if let Some(t) = &tag {
            validate_tag(t)?;
        }
        if name.is_empty() {
            return Err(invalid());
        }
        let (mut domain, mut path) = match name.split_once('/') {
            Some((first, remainder))
                if first.contains('.')
                    || first.contains(':')
                    || first == "localhost"
                    || first.chars().any(|c| c.is_ascii_uppercase()) =>
            {
                (first.to_string(), remainder.to_string())
            }
            _ => (DEFAULT_DOMAIN.to_string(), name.to_string()),
        };
        if domain == LEGACY_DOMAIN {
            domain = DEFAULT_DOMAIN.to_string();
        }
        if domain == DEFAULT_DOMAIN && !path.contains('/') {
            path = format!("{OFFICIAL_PREFIX}{path}");
        }
        if path.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(ImageError::invalid(format!(
                "invalid reference format: repository name ({path}) must be lowercase"
            )));
        }
        validate_domain(&domain)?;
        for component in path.split('/') {
            if !valid_path_component(component) {
                return Err(invalid());
            }
        }
        // distribution/reference checks the length of the normalised name
        // (`docker.io/library/busybox`), not of the name as written: a name that fits only
        // without its domain is refused (found by the `reference` fuzz target).
        if domain.len() + 1 + path.len() > NAME_TOTAL_MAX {
            return Err(ImageError::invalid(format!(
                "invalid reference format: repository name must not be more than {NAME_TOTAL_MAX} characters"
            )));
        }
        Ok(Reference {
            domain,
            path,
            tag,
            digest,
        })
    }

    /// `docker.io/library/busybox`.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// `busybox`, `localhost:5000/x`: the short form the CLI shows.
    pub fn familiar_repository(&self) -> String {
        if self.domain == DEFAULT_DOMAIN {
            // distribution/reference's `familiarizeName`: `library/` goes only before a
            // single component (`docker.io/library/a/b` is `library/a/b`, as `a/b` would
            // name `docker.io/a/b`). Found by the `reference` fuzz target.
            match self.path.strip_prefix(OFFICIAL_PREFIX) {
                Some(rest) if !rest.contains('/') => rest.to_string(),
                _ => self.path.clone(),
            }
        } else {
            self.repository()
        }
    }

    /// The same repository with another tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Reference {
        Reference {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        }
    }

    /// The same repository with a digest and no tag.
    pub fn with_digest(&self, digest: &str) -> Reference {
        Reference {
            tag: None,
            digest: Some(digest.to_string()),
            ..self.clone()
        }
    }

    /// `busybox:latest`, `localhost:5000/x@sha256:...`.
    pub fn familiar(&self) -> String {
        self.format(&self.familiar_repository())
    }

    fn format(&self, repo: &str) -> String {
        let mut s = repo.to_string();
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d);
        }
        s
    }
}

impl fmt::Display for Reference {
    /// The fully qualified form, `docker.io/library/busybox:latest`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.format(&self.repository()))
    }
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*`
fn valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__" or any number of "-".
        let start = i;
        while i < b.len() && !is_alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

fn validate_domain(d: &str) -> Result<(), ImageError> {
    let invalid = || ImageError::invalid("invalid reference format".to_string());
    let (host, port) = if let Some(rest) = d.strip_prefix('[') {
        let (h, p) = rest.split_once(']').ok_or_else(invalid)?;
        if h.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(invalid());
        }
        (None, p.strip_prefix(':'))
    } else {
        match d.split_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(d), None),
        }
    };
    if let Some(h) = host {
        let ok = !h.is_empty()
            && h.split('.').all(|l| {
                !l.is_empty()
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            });
        if !ok {
            return Err(invalid());
        }
    }
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
    }
    Ok(())
}

/// `[\w][\w.-]{0,127}`
pub fn validate_tag(t: &str) -> Result<(), ImageError> {
    let b = t.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    if b.is_empty()
        || b.len() > 128
        || !word(b[0])
        || !b.iter().all(|&c| word(c) || c == b'.' || c == b'-')
    {
        return Err(ImageError::invalid("invalid reference format".to_string()));
    }
    Ok(())
}

/// `sha256:<64 lower-case hex>` (other algorithms are refused).
pub fn validate_digest(d: &str) -> Result<(), ImageError> {
    match d.split_once(':') {
        Some(("sha256", hex))
            if hex.len() == 64
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
        {
            Ok(())
        }
        Some(("sha256", _)) => Err(ImageError::invalid(format!(
            "invalid reference format: invalid checksum digest length or format in {d:?}"
        ))),
        Some((alg, _)) => Err(ImageError::invalid(format!(
            "invalid reference format: unsupported digest algorithm {alg:?}"
        ))),
        None => Err(ImageError::invalid("invalid reference format".to_string())),
    }
}

/// Whether `s` looks like an image ID or a prefix of one (`sha256:` optional, hex only).
pub fn is_id_prefix(s: &str) -> bool {
    let hex = s.strip_prefix("sha256:").unwrap_or(s);
    !hex.is_empty()
        && hex.len() <= 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// An image name without its tag or digest, in its familiar form (`localhost:5000/app:1` is
/// `localhost:5000/app`, `docker.io/library/busybox:latest` is `busybox`); a name that does not
/// parse is returned as it is. The event bus matches the `image` filter with it.
pub fn familiar_repository(name: &str) -> String {
    match Reference::parse_any(name) {
        Ok(r) => r.familiar_repository(),
        Err(_) => name.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_length_bound_is_on_the_normalised_name() {
        // 245 characters: with `docker.io/` 255, with `docker.io/library/` more.
        let two = format!("a/{}", "b".repeat(243));
        assert!(Reference::parse(&two).is_ok());
        assert!(Reference::parse(&format!("a{two}")).is_err());
        let one = "c".repeat(237);
        assert!(Reference::parse(&one).is_ok());
        let e = Reference::parse(&format!("c{one}")).unwrap_err();
        assert!(e.to_string().contains("must not be more than 255"), "{e}");
    }

    #[test]
    fn familiar_form_keeps_library_before_a_nested_path() {
        let r = Reference::parse("docker.io/library/a/b").unwrap();
        assert_eq!(r.familiar_repository(), "library/a/b");
        assert_eq!(Reference::parse(&r.familiar()).unwrap(), r);
        assert_eq!(
            Reference::parse("library/busybox")
                .unwrap()
                .familiar_repository(),
            "busybox"
        );
    }

    #[test]
    fn familiar_repository_drops_tag_and_default_domain() {
        assert_eq!(
            familiar_repository("docker.io/library/busybox:latest"),
            "busybox"
        );
        assert_eq!(
            familiar_repository("localhost:5000/app:1"),
            "localhost:5000/app"
        );
    }

    fn p(s: &str) -> Reference {
        Reference::parse(s).unwrap()
    }

    #[test]
    fn normalises_like_docker() {
        assert_eq!(p("busybox").to_string(), "docker.io/library/busybox:latest");
        assert_eq!(p("busybox").familiar(), "busybox:latest");
        assert_eq!(
            p("library/busybox:1").to_string(),
            "docker.io/library/busybox:1"
        );
        assert_eq!(
            p("index.docker.io/library/busybox").to_string(),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(p("user/app:v2").familiar(), "user/app:v2");
        assert_eq!(p("user/app:v2").to_string(), "docker.io/user/app:v2");
        assert_eq!(p("localhost:5000/x").to_string(), "localhost:5000/x:latest");
        assert_eq!(p("localhost/x").familiar(), "localhost/x:latest");
        assert_eq!(
            p("127.0.0.1:5000/a/b/c:t").familiar_repository(),
            "127.0.0.1:5000/a/b/c"
        );
        assert_eq!(p("[::1]:5000/x").domain, "[::1]:5000");
        let d = format!("sha256:{}", "a".repeat(64));
        let r = p(&format!("busybox@{d}"));
        assert_eq!(r.tag, None);
        assert_eq!(r.digest.as_deref(), Some(d.as_str()));
        assert_eq!(r.familiar(), format!("busybox@{d}"));
        let r = p(&format!("busybox:1@{d}"));
        assert_eq!(r.tag.as_deref(), Some("1"));
        assert_eq!(p("a_b-c__d/f---g.h").path, "a_b-c__d/f---g.h");
    }

    #[test]
    fn refuses_bad_references() {
        for bad in [
            "",
            "Busybox",
            "busy box",
            "a:b:c",
            "x@sha256:abc",
            "x@md5:abc",
            "-x",
            "x-",
            "a//b",
            "a:",
            ":a",
            "a..b",
            "host:port/x",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            Reference::parse("BusyBox").unwrap_err().to_string(),
            "invalid reference format: repository name (library/BusyBox) must be lowercase"
        );
        assert!(Reference::parse_repository("busybox:1").is_err());
        assert!(Reference::parse_repository("busybox").is_ok());
    }

    #[test]
    fn id_prefixes() {
        assert!(is_id_prefix("abc123"));
        assert!(is_id_prefix(&format!("sha256:{}", "0".repeat(64))));
        assert!(!is_id_prefix("busybox"));
        assert!(!is_id_prefix("sha256:"));
    }
}
