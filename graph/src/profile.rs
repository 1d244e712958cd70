//! The parts of a profile beyond the user record: a bio and an avatar (a media id). They live in
//! a register of their own (`gp/user`, LWW), not in the user record: records are postcard, which
//! is not self-describing, so a field added to the record would not read the records already
//! stored.

use crate::{Graph, GraphError};
use serde::{Deserialize, Serialize};
use starling_store::{Key, Keyspace, StoreExt};

/// `gp/user` → [`Profile`].
const PROFILES: Keyspace = Keyspace::new("gp");

/// Longest bio, in characters.
pub const MAX_BIO: usize = 300;

/// A user's bio and avatar (empty and none until set).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// Up to [`MAX_BIO`] characters; line breaks allowed, no other control characters.
    pub bio: String,
    /// A media id the user uploaded.
    pub avatar: Option<u64>,
}

fn key(id: u64) -> Key {
    PROFILES.key().u64(id).finish()
}

/// Checks a bio: at most [`MAX_BIO`] characters, no control characters but line breaks.
pub fn check_bio(bio: &str) -> Result<(), GraphError> {
    if bio.chars().count() > MAX_BIO {
        return Err(GraphError::Invalid("a bio is at most 300 characters"));
    }
    if bio.chars().any(|c| c.is_control() && c != '\n') {
        return Err(GraphError::Invalid(
            "a bio has no control characters but line breaks",
        ));
    }
    Ok(())
}

impl Graph {
    /// `id`'s bio and avatar.
    pub async fn profile(&self, id: u64) -> Result<Profile, GraphError> {
        Ok(self
            .store
            .get_typed::<Profile>(&key(id))
            .await?
            .and_then(|v| v.value)
            .unwrap_or_default())
    }

    /// Sets what is given of `id`'s bio and avatar (`Some(None)` clears the avatar). The caller
    /// checks that the avatar is media `id` uploaded.
    pub async fn set_profile(
        &self,
        id: u64,
        bio: Option<&str>,
        avatar: Option<Option<u64>>,
    ) -> Result<Profile, GraphError> {
        if let Some(b) = bio {
            check_bio(b)?;
        }
        let mut p = self.profile(id).await?;
        if let Some(b) = bio {
            p.bio = b.to_string();
        }
        if let Some(a) = avatar {
            p.avatar = a;
        }
        self.store.put_typed(&key(id), &p).await?;
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::users::tests::graph;

    #[tokio::test]
    async fn a_profile_is_set_in_parts_and_checked() {
        let g = graph();
        let (a, _) = g.sign_up("alice", "password1", None, None).await.unwrap();
        assert_eq!(g.profile(a.id).await.unwrap(), Profile::default());
        g.set_profile(a.id, Some("hi\nthere"), None).await.unwrap();
        let p = g.set_profile(a.id, None, Some(Some(7))).await.unwrap();
        assert_eq!((p.bio.as_str(), p.avatar), ("hi\nthere", Some(7)));
        assert_eq!(g.profile(a.id).await.unwrap(), p);
        assert_eq!(
            g.set_profile(a.id, None, Some(None)).await.unwrap().avatar,
            None
        );
        for bad in ["a\u{7}b", &"b".repeat(MAX_BIO + 1)] {
            assert!(matches!(
                g.set_profile(a.id, Some(bad), None).await,
                Err(GraphError::Invalid(_))
            ));
        }
        assert_eq!(g.profile(a.id).await.unwrap().bio, "hi\nthere");
    }
}
