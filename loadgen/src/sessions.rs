//! Signed-up users saved to a file (`starling-load run --sessions FILE`) so consecutive runs
//! against one server skip the setup: a sign-up hashes a password with argon2id (19 MiB, tens
//! of milliseconds of a core), which for thousands of users is most of a short benchmark run.
//!
//! The file holds one JSON object per line: `index`, `handle`, `id`, `token`, `target`.

use crate::LoadError;
use crate::users::User;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;

#[derive(Debug, Serialize, Deserialize)]
struct Saved {
    index: usize,
    handle: String,
    id: String,
    token: String,
    target: String,
}

/// Writes the users' sessions to `path`.
pub fn save(path: &Path, users: &[User]) -> Result<(), LoadError> {
    let mut out = String::new();
    for u in users {
        let s = Saved {
            index: u.index,
            handle: u.handle.clone(),
            id: u.id.clone(),
            token: u.token.clone(),
            target: u.target.clone(),
        };
        let line = serde_json::to_string(&s).map_err(|source| LoadError::Json {
            path: path.into(),
            line: u.index + 1,
            source,
        })?;
        out.push_str(&line);
        out.push('\n');
    }
    std::fs::write(path, out).map_err(|e| LoadError::io(path, e))
}

/// The first `n` users of a file written by [`save`], or `None` when it does not exist or holds
/// fewer.
pub fn load(path: &Path, n: usize) -> Result<Option<Vec<User>>, LoadError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(LoadError::io(path, e)),
    };
    let mut users = Vec::with_capacity(n);
    for (i, line) in text.lines().take(n).enumerate() {
        let s: Saved = serde_json::from_str(line).map_err(|source| LoadError::Json {
            path: path.into(),
            line: i + 1,
            source,
        })?;
        users.push(User {
            index: s.index,
            handle: s.handle,
            id: s.id,
            token: s.token,
            target: s.target,
            conv: None,
            group: None,
            live: Arc::default(),
        });
    }
    Ok((users.len() == n).then_some(users))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.jsonl");
        assert!(load(&path, 1).unwrap().is_none());
        let users = crate::centrifugo::users(3, &["http://127.0.0.1:1".into()], Some("k"));
        save(&path, &users).unwrap();
        assert_eq!(load(&path, 3).unwrap().unwrap(), users);
        assert_eq!(load(&path, 2).unwrap().unwrap()[..], users[..2]);
        assert!(load(&path, 4).unwrap().is_none());
    }
}
