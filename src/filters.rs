//! Docker's `filters` query parameter: a JSON map from a filter name to values.
//!
//! Both encodings clients send are accepted: `{"label":{"a=b":true}}` (current) and
//! `{"label":["a=b"]}` (legacy). Matching follows moby's `filters.Args`: a filter that is not
//! given matches everything; several values of one filter are alternatives.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::Value;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters(BTreeMap<String, BTreeSet<String>>);

impl Filters {
    /// Parse the JSON text of a `filters` parameter; empty text means no filters.
    pub fn parse(text: &str) -> Result<Filters, FilterError> {
        if text.trim().is_empty() {
            return Ok(Filters::default());
        }
        let value: Value = serde_json::from_str(text)
            .map_err(|e| FilterError::invalid(format!("invalid filter: {e}")))?;
        let Value::Object(map) = value else {
            return Err(FilterError::invalid(
                "invalid filter: filters must be a JSON object".to_string(),
            ));
        };
        let mut out = BTreeMap::new();
        for (key, v) in map {
            let mut values = BTreeSet::new();
            match v {
                Value::Object(m) => {
                    for (val, flag) in m {
                        if flag.as_bool().unwrap_or(false) {
                            values.insert(val);
                        }
                    }
                }
                Value::Array(a) => {
                    for val in a {
                        match val {
                            Value::String(s) => {
                                values.insert(s);
                            }
                            _ => return Err(invalid(&key, None)),
                        }
                    }
                }
                _ => return Err(invalid(&key, None)),
            }
            out.insert(key, values);
        }
        Ok(Filters(out))
    }

    /// Refuse filter names outside `accepted`, as `invalid filter 'name'`.
    pub fn validate(&self, accepted: &[&str]) -> Result<(), FilterError> {
        match self.0.keys().find(|k| !accepted.contains(&k.as_str())) {
            Some(k) => Err(invalid(k, None)),
            None => Ok(()),
        }
    }

    /// Refuse values of `key` outside `allowed`, as `invalid filter 'key=value'`.
    pub fn validate_values(&self, key: &str, allowed: &[&str]) -> Result<(), FilterError> {
        match self.get(key).find(|v| !allowed.contains(v)) {
            Some(v) => Err(invalid(key, Some(v))),
            None => Ok(()),
        }
    }

    /// moby's `GetBoolOrDefault`: `default` when `key` is not given, else whether its values
    /// say true (`1`, `true`) rather than false (`0`, `false`); none of them, or both, is
    /// `invalid filter 'key=[v1 v2]'` (Go's rendering of the values; here in sorted order).
    pub fn get_bool_or_default(&self, key: &str, default: bool) -> Result<bool, FilterError> {
        let Some(values) = self.0.get(key) else {
            return Ok(default);
        };
        if values.is_empty() {
            return Err(invalid(key, None));
        }
        let is_false = values.contains("0") || values.contains("false");
        let is_true = values.contains("1") || values.contains("true");
        if is_false == is_true {
            let listed: Vec<&str> = values.iter().map(String::as_str).collect();
            return Err(invalid(key, Some(&format!("[{}]", listed.join(" ")))));
        }
        Ok(is_true)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, key: &str) -> bool {
        self.0.get(key).is_some_and(|v| !v.is_empty())
    }

    /// The values given for `key`.
    pub fn get<'a>(&'a self, key: &str) -> impl Iterator<Item = &'a str> + 'a {
        self.0.get(key).into_iter().flatten().map(String::as_str)
    }

    /// True when `key` is not given or one of its values equals `source`.
    pub fn exact_match(&self, key: &str, source: &str) -> bool {
        !self.contains(key) || self.get(key).any(|v| v == source)
    }

    /// True when `key` is not given or one of its values equals or prefixes `source`.
    pub fn fuzzy_match(&self, key: &str, source: &str) -> bool {
        !self.contains(key) || self.get(key).any(|v| source.starts_with(v))
    }

    /// For label-style filters: every value (`k` or `k=v`) must be present in `labels`.
    pub fn match_kv_list(&self, key: &str, labels: &HashMap<String, String>) -> bool {
        self.match_kv(key, |k| labels.get(k).map(String::as_str))
    }

    /// [`Filters::match_kv_list`] over any lookup of a label's value.
    pub fn match_kv<'a>(&self, key: &str, label: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.get(key).all(|v| match v.split_once('=') {
            Some((k, want)) => label(k).is_some_and(|have| have == want),
            None => label(v).is_some(),
        })
    }
}

fn invalid(key: &str, value: Option<&str>) -> FilterError {
    match value {
        Some(v) => FilterError::invalid(format!("invalid filter '{key}={v}'")),
        None => FilterError::invalid(format!("invalid filter '{key}'")),
    }
}

crate::module_error! {
    /// A malformed or unknown filter.
    pub struct FilterError;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_encodings() {
        let a = Filters::parse(r#"{"label":{"a=b":true,"c":false}}"#).unwrap();
        let b = Filters::parse(r#"{"label":["a=b"]}"#).unwrap();
        assert_eq!(a, b);
        assert!(Filters::parse("").unwrap().is_empty());
        assert!(Filters::parse("{").is_err());
        assert!(Filters::parse("[1]").is_err());
        assert_eq!(
            Filters::parse(r#"{"label":[1]}"#).unwrap_err().to_string(),
            "invalid filter 'label'"
        );
    }

    #[test]
    fn matching() {
        let f = Filters::parse(r#"{"type":["container"],"label":["a=b","c"],"container":["ab"]}"#)
            .unwrap();
        assert!(f.exact_match("type", "container"));
        assert!(!f.exact_match("type", "image"));
        assert!(f.exact_match("missing", "anything"));
        assert!(f.fuzzy_match("container", "abcdef"));
        assert!(!f.fuzzy_match("container", "xabc"));
        let mut labels = HashMap::new();
        labels.insert("a".to_string(), "b".to_string());
        assert!(!f.match_kv_list("label", &labels));
        labels.insert("c".to_string(), String::new());
        assert!(f.match_kv_list("label", &labels));
        assert_eq!(
            f.validate(&["type", "label"]).unwrap_err().to_string(),
            "invalid filter 'container'"
        );
        assert_eq!(
            f.validate_values("type", &["image"])
                .unwrap_err()
                .to_string(),
            "invalid filter 'type=container'"
        );
    }

    #[test]
    fn booleans_as_mobys_get_bool_or_default() {
        let b = |text: &str, default: bool| {
            Filters::parse(text)
                .unwrap()
                .get_bool_or_default("dangling", default)
                .map_err(|e| e.to_string())
        };
        assert_eq!(b("", true), Ok(true));
        assert_eq!(b(r#"{"dangling":["1"]}"#, false), Ok(true));
        assert_eq!(b(r#"{"dangling":["false"]}"#, true), Ok(false));
        // An unknown value beside a known one is ignored, as moby does.
        assert_eq!(b(r#"{"dangling":["true","x"]}"#, false), Ok(true));
        assert_eq!(
            b(r#"{"dangling":["x"]}"#, false),
            Err("invalid filter 'dangling=[x]'".to_string())
        );
        assert_eq!(
            b(r#"{"dangling":["true","0"]}"#, false),
            Err("invalid filter 'dangling=[0 true]'".to_string())
        );
        assert_eq!(
            b(r#"{"dangling":[]}"#, false),
            Err("invalid filter 'dangling'".to_string())
        );
    }
}
