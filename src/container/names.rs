//! TEMP
pub fn generate(_retry: u32) -> String { format!("c_{}", crate::image::store::random_hex(8)) }
pub fn valid(n: &str) -> bool { !n.is_empty() }
