//! Query-string parameters with moby's parsing rules.

use super::error::ApiError;

/// The decoded query string of a request.
#[derive(Debug, Clone, Default)]
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn parse(raw: Option<&str>) -> Query {
        Query(
            url::form_urlencoded::parse(raw.unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key`, in order.
    pub fn get_all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// moby's `BoolValue`: false for a missing key and for "", "0", "no", "false", "none".
    pub fn bool(&self, key: &str) -> bool {
        self.get(key).is_some_and(|v| {
            !matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "" | "0" | "no" | "false" | "none"
            )
        })
    }

    /// moby's `BoolValueOrDefault`: `default` when the key is absent.
    pub fn bool_or(&self, key: &str, default: bool) -> bool {
        if self.get(key).is_none() {
            default
        } else {
            self.bool(key)
        }
    }

    /// An integer parameter; absent or empty is `None`, anything else that is not an integer
    /// is a 400 naming the parameter.
    pub fn int(&self, key: &str) -> Result<Option<i64>, ApiError> {
        match self.get(key).map(str::trim).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => v.parse::<i64>().map(Some).map_err(|_| {
                ApiError::invalid(format!("invalid value for {key}: {v:?} is not an integer"))
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bools_follow_moby() {
        let q = Query::parse(Some("a=1&b=false&c=&d=True&e=none&f=yes"));
        assert!(q.bool("a"));
        assert!(!q.bool("b"));
        assert!(!q.bool("c"));
        assert!(q.bool("d"));
        assert!(!q.bool("e"));
        assert!(q.bool("f"));
        assert!(!q.bool("missing"));
        assert!(q.bool_or("missing", true));
        assert!(!q.bool_or("b", true));
    }

    #[test]
    fn ints_and_decoding() {
        let q = Query::parse(Some("n=12&bad=x&s=a%20b&s=c"));
        assert_eq!(q.int("n").unwrap(), Some(12));
        assert_eq!(q.int("none").unwrap(), None);
        assert_eq!(q.int("bad").unwrap_err().status(), 400);
        assert_eq!(q.get("s"), Some("a b"));
        assert_eq!(q.get_all("s").collect::<Vec<_>>(), vec!["a b", "c"]);
    }
}
