//! Where the bearer token comes from: a file (`--bearer-token-file`) or
//! the `REST_BEARER_TOKEN` environment variable, never both. `api-rest`
//! and `agent-core` read it the same way, so one secret guards the public
//! API and the core agent's HTTP API behind it.

use std::path::{Path, PathBuf};

/// Environment variable holding the bearer token (instead of a file).
pub const TOKEN_ENV: &str = "REST_BEARER_TOKEN";

/// Why the token could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("give the bearer token either with --bearer-token-file or {TOKEN_ENV}, not both")]
    Both,
    #[error("cannot read the bearer token file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the bearer token is empty")]
    Empty,
}

/// The token from `file` or [`TOKEN_ENV`] (trimmed); `None` when neither
/// is given.
pub fn load_bearer_token(file: Option<&Path>) -> Result<Option<String>, TokenError> {
    let from_env = std::env::var(TOKEN_ENV).ok();
    let token = match (file, from_env) {
        (Some(_), Some(_)) => return Err(TokenError::Both),
        (Some(path), None) => std::fs::read_to_string(path).map_err(|source| TokenError::Read {
            path: path.to_path_buf(),
            source,
        })?,
        (None, Some(token)) => token,
        (None, None) => return Ok(None),
    };
    let token = token.trim().to_string();
    if token.is_empty() {
        return Err(TokenError::Empty);
    }
    Ok(Some(token))
}
