//! Images: references, the content and layer stores, import / load / save, pull / push over
//! the registry client (`crate::registry`), and the image router's backend (`backend`). Nothing
//! here knows HTTP: request bodies arrive as byte channels, responses leave as values, JSON
//! progress messages or byte channels.

pub mod apply;
pub mod archive;
pub mod backend;
pub mod changes;
pub mod commit;
pub mod config;
pub mod distribution;
pub mod reference;
pub mod service;
pub mod store;
pub mod tarsplit;

use crate::errors::Kinded;

pub use service::ImageService;

crate::module_error! {
    /// An image-side failure, with Docker's wording where clients parse it.
    pub struct ImageError;
}

impl ImageError {
    /// `No such image: NAME`.
    pub fn no_such_image(name: &str) -> Self {
        Self::not_found(format!("No such image: {name}"))
    }
}

impl From<apply::ApplyError> for ImageError {
    fn from(e: apply::ApplyError) -> Self {
        ImageError::new(e.kind(), e.to_string())
    }
}

pub use crate::util::digest::sha256_digest;

/// The hex part of a `sha256:` digest.
pub fn digest_hex(d: &str) -> &str {
    d.strip_prefix("sha256:").unwrap_or(d)
}

/// The 12-character short form of an ID, as the CLI prints it.
pub fn short_id(id: &str) -> &str {
    let hex = digest_hex(id);
    match hex.char_indices().nth(12) {
        Some((i, _)) => &hex[..i],
        None => hex,
    }
}
