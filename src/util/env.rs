//! `KEY=value` environment lists.

use std::collections::HashMap;

/// moby's `ReplaceOrAppendEnvValues`: `K=V` replaces `K` or is appended; a bare `K` removes it.
pub fn replace_or_append(mut defaults: Vec<String>, overrides: &[String]) -> Vec<String> {
    let key = |e: &str| e.split('=').next().unwrap_or("").to_string();
    let mut index: HashMap<String, usize> = defaults
        .iter()
        .enumerate()
        .map(|(i, e)| (key(e), i))
        .collect();
    let mut removed = vec![false; defaults.len()];
    for value in overrides {
        match value.split_once('=') {
            None => {
                if let Some(&i) = index.get(value.as_str()) {
                    removed[i] = true;
                }
            }
            Some((k, _)) => match index.get(k) {
                Some(&i) => {
                    defaults[i] = value.clone();
                    removed[i] = false;
                }
                None => {
                    index.insert(k.to_string(), defaults.len());
                    defaults.push(value.clone());
                    removed.push(false);
                }
            },
        }
    }
    defaults
        .into_iter()
        .zip(removed)
        .filter(|(_, r)| !r)
        .map(|(e, _)| e)
        .collect()
}

/// The value of `key` in `env` (the last one, if repeated).
pub fn get(env: &[String], key: &str) -> Option<String> {
    env.iter().rev().find_map(|e| {
        let (k, v) = e.split_once('=')?;
        (k == key).then(|| v.to_string())
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn last_value_wins() {
        let env = ["A=1".to_string(), "B=2".to_string(), "A=3".to_string()];
        assert_eq!(super::get(&env, "A").as_deref(), Some("3"));
        assert_eq!(super::get(&env, "C"), None);
    }
}
