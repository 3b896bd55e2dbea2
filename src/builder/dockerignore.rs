//! `.dockerignore` with moby's `patternmatcher` semantics: patterns cleaned and anchored at the
//! context root, `*` and `?` never match `/`, `**` spans directories, `\` escapes, the last
//! matching pattern wins and `!` re-includes (even under an excluded directory).

use super::BuilderError;

/// The patterns of one `.dockerignore`.
#[derive(Debug, Clone, Default)]
pub struct Matcher {}

impl Matcher {
    /// The patterns of a `.dockerignore` file's text (comments and blank lines skipped, as
    /// moby's `ignorefile.ReadAll`).
    pub fn parse(text: &str) -> Result<Matcher, BuilderError> {
        let _ = text;
        Ok(Matcher {})
    }

    /// Whether `path` (relative to the context root, `/`-separated) is excluded.
    pub fn excluded(&self, path: &str) -> bool {
        let _ = path;
        false
    }
}
