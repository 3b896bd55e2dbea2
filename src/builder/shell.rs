//! Docker's variable expansion for Dockerfile words (moby/buildkit
//! `frontend/dockerfile/shell/lex.go`): `$V`, `${V}`, `${V:-w}`, `${V-w}`, `${V:+w}`,
//! `${V+w}`, `${V:?w}`, `${V?w}`, `${V#p}`, `${V##p}`, `${V%p}`, `${V%%p}`, `${V/p/r}`,
//! `${V//p/r}`, single and double quotes and the escape token.

use super::BuilderError;

/// A lexer for one Dockerfile (its escape token: `\` or `` ` ``).
#[derive(Debug, Clone, Copy)]
pub struct ShellLex {
    pub escape: char,
}

impl ShellLex {
    pub fn new(escape: char) -> ShellLex {
        ShellLex { escape }
    }

    /// moby's `ProcessWord`: `word` with its variables expanded from `env` (`None`: unset)
    /// and its quotes and escapes removed, as one word.
    pub fn process_word(
        &self,
        word: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<String, BuilderError> {
        let _ = (word, env);
        Err(BuilderError::internal("shell lexer not implemented"))
    }

    /// moby's `ProcessWords`: like [`ShellLex::process_word`], split into words at unquoted
    /// white space (for EXPOSE, VOLUME's and ADD/COPY's shell form, …).
    pub fn process_words(
        &self,
        word: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Vec<String>, BuilderError> {
        let _ = (word, env);
        Err(BuilderError::internal("shell lexer not implemented"))
    }
}
