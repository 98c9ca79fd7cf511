//! The values a [`super::bucket::Bucket`] deals in: its errors, what its requests come to
//! (for metrics and health), and the objects and listings it returns.

use std::time::{Duration, SystemTime};

use bytes::Bytes;

/// Errors of bucket operations.
#[derive(Debug, thiserror::Error)]
pub enum BucketError {
    /// The client could not be configured (a bad variable, no region...).
    #[error("bucket {url}: configuration: {source}")]
    Config {
        /// The library location.
        url: String,
        /// object_store's reason (names the variable, never a secret's value).
        #[source]
        source: object_store::Error,
    },
    /// The bucket did not answer as a bucket (unreachable, refused credentials, missing).
    #[error("bucket {url} at {endpoint} is not usable: {reason}")]
    Unusable {
        /// The library location.
        url: String,
        /// Where the client sends requests.
        endpoint: String,
        /// What went wrong, from the first failing request.
        reason: String,
    },
    /// A request failed.
    #[error("bucket {op} {key}: {source}")]
    Request {
        /// What was being done.
        op: &'static str,
        /// The full object key.
        key: String,
        /// object_store's error.
        #[source]
        source: object_store::Error,
    },
    /// The runtime that drives requests could not start.
    #[error("start the bucket client's runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

impl BucketError {
    /// Whether the error is the object's absence.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            BucketError::Request {
                source: object_store::Error::NotFound { .. },
                ..
            }
        )
    }
}

/// What one bucket request came to, for metrics and health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done as asked.
    Ok,
    /// No such object (an answer: the bucket works).
    NotFound,
    /// A create-only put found the object there (an answer: the bucket works).
    Exists,
    /// Failed: unreachable, timed out, refused, or an error status.
    Error,
}

impl Outcome {
    /// The label of the outcome in metrics.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::NotFound => "not_found",
            Outcome::Exists => "exists",
            Outcome::Error => "error",
        }
    }
}

/// Told of every request a [`super::bucket::Bucket`] makes (metrics, health); called on the request's task,
/// so it must be quick.
pub trait BucketObserver: Send + Sync + std::fmt::Debug {
    /// Request `op` (`get`, `put`, `head`, `list`, `delete`) ended as `outcome` after
    /// `elapsed`, having moved `bytes` of object data.
    fn request(&self, op: &'static str, outcome: Outcome, bytes: u64, elapsed: Duration);
}

/// One object's listing entry, its key relative to the library prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The key under the library prefix (`tracks/<id>/...`).
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// When the object was written.
    pub last_modified: SystemTime,
}

/// An object read whole, with what identifies it.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The bytes.
    pub body: Bytes,
    /// The bucket's entity tag (quoted as S3 sends it), if any.
    pub e_tag: Option<String>,
    /// When the object was written.
    pub last_modified: SystemTime,
}

/// What a GET's response head says of an object, before its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// Size in bytes.
    pub size: u64,
    /// When the object was written.
    pub last_modified: SystemTime,
    /// The content tag segue wrote with the object ([`super::layout::content_tag`]), if any.
    pub content_tag: Option<String>,
}
