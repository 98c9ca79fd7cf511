//! Reading a bucket library's objects for the server, as fast as from a disk once warm: the
//! memory cache of [`super::files`] in front, then an optional bounded local disk cache
//! ([`super::disk_cache`]), then the bucket. Concurrent misses for one object make one bucket
//! request ([`super::single_flight`]), and each read has a deadline, so a bucket that hangs
//! gives a 503 in seconds, never a request that waits as long as the client's retries.
//!
//! Every object of a bucket library is written create-only and never changes (the rendition
//! directories are named by their inputs, the track's files are written once), so a cached
//! copy never needs revalidation. The disk cache keeps the object's Last-Modified with its
//! body, so a response is the same whichever cache it came from.
//!
//! Bodies are read whole before the response starts: the entity tag is a hash of the content
//! (the same on every origin and for a local library), and a response never starts that could
//! end truncated. Segments are tens of kilobytes, so this costs little latency.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};

use super::disk_cache::{DiskCache, DiskCacheError};
use super::metrics::Metrics;
use super::single_flight::{FlightError, SingleFlight};
use crate::store::Bucket;
use crate::store::bucket::BucketError;

/// Longest a request waits for the bucket before it is answered 503 (the read goes on for
/// requests that join it later, and fills the caches).
pub const READ_DEADLINE: Duration = Duration::from_secs(6);

/// Subdirectory of `--cache-dir` holding cached objects (the catalog sits beside it).
pub const OBJECTS_DIR: &str = "objects";

/// An object as read: its bytes and when it was written.
#[derive(Debug, Clone)]
pub struct Object {
    /// The content.
    pub body: Bytes,
    /// When the bucket says it was written.
    pub last_modified: SystemTime,
}

/// Why an object could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The bucket failed or did not answer in time.
    #[error("{0}")]
    Bucket(String),
    /// The read took longer than [`READ_DEADLINE`].
    #[error("no answer from the bucket within {READ_DEADLINE:?}")]
    Deadline,
}

/// The objects of a bucket library, through the disk cache.
pub struct BucketFiles {
    bucket: Bucket,
    disk: Option<Arc<DiskCache>>,
    flights: SingleFlight<Option<Object>, BucketError>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for BucketFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BucketFiles")
            .field("bucket", &self.bucket.url().to_string())
            .field("disk", &self.disk.is_some())
            .finish_non_exhaustive()
    }
}

impl BucketFiles {
    /// Reads from `bucket`, keeping objects in `cache_dir/objects` too (bounded to
    /// `cache_bytes`) when a directory is given.
    pub fn new(
        bucket: Bucket,
        cache_dir: Option<&Path>,
        cache_bytes: u64,
        metrics: Arc<Metrics>,
    ) -> Result<Self, DiskCacheError> {
        let disk = match cache_dir {
            Some(dir) => Some(Arc::new(DiskCache::open(
                &dir.join(OBJECTS_DIR),
                cache_bytes,
            )?)),
            None => None,
        };
        Ok(BucketFiles {
            bucket,
            disk,
            flights: SingleFlight::new(),
            metrics,
        })
    }

    /// The object at `key` (relative to the library prefix): `Ok(None)` if there is none.
    pub async fn read(&self, key: &str) -> Result<Option<Object>, ReadError> {
        if let Some(object) = self.read_disk(key).await {
            return Ok(Some(object));
        }
        let bucket = self.bucket.clone();
        let disk = self.disk.clone();
        let owned = key.to_string();
        let flight = self.flights.run(key, move || fetch(bucket, disk, owned));
        match tokio::time::timeout(READ_DEADLINE, flight).await {
            Err(_) => Err(ReadError::Deadline),
            Ok(Ok(object)) => Ok(object),
            Ok(Err(FlightError::Load(e))) => Err(ReadError::Bucket(e.to_string())),
            Ok(Err(e @ FlightError::Abandoned)) => Err(ReadError::Bucket(e.to_string())),
        }
    }

    async fn read_disk(&self, key: &str) -> Option<Object> {
        let disk = Arc::clone(self.disk.as_ref()?);
        let owned = key.to_string();
        let read = tokio::task::spawn_blocking(move || {
            // The cache deletes and counts a damaged file and answers `None`, as for a miss;
            // its count tells the two apart for the metrics.
            let corrupt_before = disk.stats().corrupt;
            let stored = disk.get(&owned);
            (stored, disk.stats().corrupt > corrupt_before)
        });
        let (stored, damaged) = read.await.ok()?;
        let object = stored.and_then(decode);
        let event = match (&object, damaged) {
            (Some(_), _) => "hit",
            (None, true) => "corrupt",
            (None, false) => "miss",
        };
        self.metrics.disk_cache_event(event);
        object
    }
}

/// One bucket read, then into the disk cache (its failure only logged: the object is served
/// all the same).
async fn fetch(
    bucket: Bucket,
    disk: Option<Arc<DiskCache>>,
    key: String,
) -> Result<Option<Object>, BucketError> {
    let Some(fetched) = bucket.get(&key).await? else {
        return Ok(None);
    };
    let object = Object {
        body: fetched.body,
        last_modified: fetched.last_modified,
    };
    if let Some(disk) = disk {
        let stored = encode(&object);
        let put = tokio::task::spawn_blocking(move || disk.put(&key, &stored)).await;
        if let Ok(Err(e)) = put {
            tracing::warn!(error = %e, "object not kept in the disk cache");
        }
    }
    Ok(Some(object))
}

/// The disk cache's copy of an object: its Last-Modified (seconds since 1970, 8 bytes big
/// endian), then its body. The cache verifies the whole (length and hash) itself.
fn encode(object: &Object) -> Vec<u8> {
    let seconds = object
        .last_modified
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut stored = BytesMut::with_capacity(8 + object.body.len());
    stored.put_u64(seconds);
    stored.put_slice(&object.body);
    stored.to_vec()
}

fn decode(mut stored: Bytes) -> Option<Object> {
    if stored.len() < 8 {
        return None;
    }
    let seconds = u64::from_be_bytes(stored.split_to(8).as_ref().try_into().ok()?);
    Some(Object {
        body: stored,
        last_modified: UNIX_EPOCH + Duration::from_secs(seconds),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_disk_copy_keeps_body_and_last_modified() {
        let object = Object {
            body: Bytes::from_static(b"segment bytes"),
            last_modified: UNIX_EPOCH + Duration::from_secs(1_780_000_000),
        };
        let back = decode(Bytes::from(encode(&object))).unwrap();
        assert_eq!(back.body, object.body);
        assert_eq!(back.last_modified, object.last_modified);
        assert!(decode(Bytes::from_static(b"short")).is_none());
    }
}
