//! Random identifiers.

/// `n` random lower-case hex characters.
pub fn random_hex(n: usize) -> String {
    let mut s = uuid::Uuid::new_v4().simple().to_string();
    while s.len() < n {
        s.push_str(&uuid::Uuid::new_v4().simple().to_string());
    }
    s.truncate(n);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_hex_has_the_asked_length() {
        for n in [0, 12, 32, 64, 100] {
            let s = random_hex(n);
            assert_eq!(s.len(), n);
            assert!(s
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        }
    }
}
