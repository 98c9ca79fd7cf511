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
//! A miss is streamed: the response starts when the head of the bucket's GET arrives (the
//! entity tag, a hash of the content, the same on every origin and for a local library, was
//! written with the object as metadata), and each chunk is sent as it comes to every request
//! waiting for the object. A body the bucket cuts short aborts those responses (the client sees
//! the connection end before Content-Length): never a short body presented as whole.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use tokio::sync::watch;

use super::disk_cache::{DiskCache, DiskCacheError};
use super::metrics::Metrics;
use super::single_flight::{FlightError, SingleFlight};
use crate::store::Bucket;
use crate::store::bucket::Head;

/// Longest a request waits for the head of a bucket object before it is answered 503 (the
/// read goes on for requests that join it later, and fills the caches).
pub const READ_DEADLINE: Duration = Duration::from_secs(6);

/// Subdirectory of `--cache-dir` holding cached objects (the catalog sits beside it).
pub const OBJECTS_DIR: &str = "objects";

/// An object as read whole: its bytes and when it was written.
#[derive(Debug, Clone)]
pub struct Object {
    /// The content.
    pub body: Bytes,
    /// When the bucket says it was written.
    pub last_modified: SystemTime,
    /// The disk cache file the body was read from, open, and where the body starts in it (to
    /// send it with `sendfile`, as a local library's files are).
    pub file: Option<Arc<(std::fs::File, u64)>>,
}

/// Why an object could not be read.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReadError {
    /// The bucket failed.
    #[error("{0}")]
    Bucket(String),
    /// The head of the object did not come within [`READ_DEADLINE`].
    #[error("no answer from the bucket within {READ_DEADLINE:?}")]
    Deadline,
}

/// An object being read, or read: whole from a cache, or arriving from the bucket.
#[derive(Debug, Clone)]
pub enum Opened {
    /// Whole, from the disk cache.
    Whole(Object),
    /// Arriving: the response can start now, from [`Download::head`].
    Arriving(Arc<Download>),
}

/// One GET of an object from the bucket, shared by every request that wants the object while
/// it arrives: each reads the chunks already in and waits for the next
/// ([`Download::chunks`]), so the body is sent as it comes, once, to all of them.
#[derive(Debug)]
pub struct Download {
    /// What the response head of the GET said.
    pub head: Head,
    chunks: Mutex<Vec<Bytes>>,
    /// Chunks in, and whether the body ended (and how).
    progress: watch::Sender<Progress>,
}

#[derive(Debug, Clone, Default)]
struct Progress {
    chunks: usize,
    end: Option<Result<(), ReadError>>,
}

impl Download {
    /// The body from its first byte, as it arrives; an `Err` item ends a body cut short (the
    /// response must then be aborted: never a short body presented as whole).
    pub fn chunks(
        self: &Arc<Self>,
    ) -> impl futures_util::Stream<Item = Result<Bytes, ReadError>> + Send + 'static {
        let download = Arc::clone(self);
        let progress = self.progress.subscribe();
        futures_util::stream::unfold(
            (download, progress, 0usize, false),
            |(download, mut progress, next, done)| async move {
                if done {
                    return None;
                }
                let seen = progress
                    .wait_for(|p| p.chunks > next || p.end.is_some())
                    .await
                    .map(|p| p.clone());
                let Ok(seen) = seen else {
                    let lost = ReadError::Bucket("the read of the object was abandoned".into());
                    return Some((Err(lost), (download, progress, next, true)));
                };
                if seen.chunks > next {
                    let chunk = lock(&download.chunks)[next].clone();
                    return Some((Ok(chunk), (download, progress, next + 1, false)));
                }
                match seen.end {
                    Some(Err(e)) => Some((Err(e), (download, progress, next, true))),
                    _ => None,
                }
            },
        )
    }

    /// The whole object, once it has arrived.
    pub async fn whole(&self) -> Result<Object, ReadError> {
        let mut progress = self.progress.subscribe();
        let end = progress
            .wait_for(|p| p.end.is_some())
            .await
            .map_err(|_| ReadError::Bucket("the read of the object was abandoned".into()))?
            .end
            .clone();
        match end {
            Some(Ok(())) => Ok(Object {
                body: concat(&lock(&self.chunks)),
                last_modified: self.head.last_modified,
                file: None,
            }),
            Some(Err(e)) => Err(e),
            None => Err(ReadError::Bucket(
                "the read of the object ended early".into(),
            )),
        }
    }
}

/// The objects of a bucket library, through the disk cache.
pub struct BucketFiles {
    bucket: Bucket,
    disk: Option<Arc<DiskCache>>,
    /// Opening GETs (until their head arrives), coalesced by key.
    opening: SingleFlight<Option<Arc<Download>>, ReadError>,
    /// Bodies arriving, by key, joined by later requests.
    arriving: Arc<Mutex<HashMap<String, Weak<Download>>>>,
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
            opening: SingleFlight::new(),
            arriving: Arc::default(),
            metrics,
        })
    }

    /// The object at `key` (relative to the library prefix), whole: `Ok(None)` if there is
    /// none.
    pub async fn read(&self, key: &str) -> Result<Option<Object>, ReadError> {
        match self.open(key).await? {
            None => Ok(None),
            Some(Opened::Whole(object)) => Ok(Some(object)),
            Some(Opened::Arriving(download)) => {
                let whole = download.whole().await?;
                // It went to the disk cache before the download ended: read it back with its
                // file, so it can be sent from there.
                let on_disk = match self.has_disk() {
                    true => self.read_disk(key).await,
                    false => None,
                };
                Ok(Some(on_disk.unwrap_or(whole)))
            }
        }
    }

    /// The object at `key`, whole from the disk cache or arriving from the bucket (joining a
    /// read of it in progress): `Ok(None)` if there is none.
    pub async fn open(&self, key: &str) -> Result<Option<Opened>, ReadError> {
        if let Some(object) = self.read_disk(key).await {
            return Ok(Some(Opened::Whole(object)));
        }
        if let Some(download) = self.arriving(key) {
            return Ok(Some(Opened::Arriving(download)));
        }
        let start = {
            let (bucket, disk) = (self.bucket.clone(), self.disk.clone());
            let (arriving, owned) = (Arc::clone(&self.arriving), key.to_string());
            move || begin(bucket, disk, arriving, owned)
        };
        let opened = self.opening.run(key, start);
        match tokio::time::timeout(READ_DEADLINE, opened).await {
            Err(_) => Err(ReadError::Deadline),
            Ok(Ok(download)) => Ok(download.map(Opened::Arriving)),
            Ok(Err(FlightError::Load(e))) => Err(ReadError::clone(&e)),
            Ok(Err(e @ FlightError::Abandoned)) => Err(ReadError::Bucket(e.to_string())),
        }
    }

    fn arriving(&self, key: &str) -> Option<Arc<Download>> {
        lock(&self.arriving).get(key).and_then(Weak::upgrade)
    }

    /// Whether objects are kept on disk too.
    pub fn has_disk(&self) -> bool {
        self.disk.is_some()
    }

    /// The object at `key` from the disk cache, verified, with its file; `None` when it is not
    /// there (or was damaged: then it is deleted and counted).
    pub async fn read_disk(&self, key: &str) -> Option<Object> {
        let disk = Arc::clone(self.disk.as_ref()?);
        let owned = key.to_string();
        let read = tokio::task::spawn_blocking(move || {
            // The cache deletes and counts a damaged file and answers `None`, as for a miss;
            // its count tells the two apart for the metrics.
            let corrupt_before = disk.stats().corrupt;
            let stored = disk.get_file(&owned);
            (stored, disk.stats().corrupt > corrupt_before)
        });
        let (stored, damaged) = read.await.ok()?;
        let object = stored.and_then(|stored| {
            let mut object = decode(stored.body)?;
            object.file = Some(Arc::new((
                stored.file,
                stored.body_offset + LAST_MODIFIED_LEN,
            )));
            Some(object)
        });
        let event = match (&object, damaged) {
            (Some(_), _) => "hit",
            (None, true) => "corrupt",
            (None, false) => "miss",
        };
        self.metrics.disk_cache_event(event);
        object
    }
}

/// Starts the GET of `key`: once its head has arrived, the body is read on a task of its own
/// (so no client going away stops it for the others) into the [`Download`], registered under
/// `key` in `arriving` until it ends; then it goes into the disk cache.
async fn begin(
    bucket: Bucket,
    disk: Option<Arc<DiskCache>>,
    arriving: Arc<Mutex<HashMap<String, Weak<Download>>>>,
    key: String,
) -> Result<Option<Arc<Download>>, ReadError> {
    let started = Instant::now();
    let opened = bucket.get_stream(&key).await;
    let Some((head, mut body)) = opened.map_err(|e| ReadError::Bucket(e.to_string()))? else {
        return Ok(None);
    };
    let (progress, _) = watch::channel(Progress::default());
    let download = Arc::new(Download {
        head,
        chunks: Mutex::new(Vec::new()),
        progress,
    });
    lock(&arriving).insert(key.clone(), Arc::downgrade(&download));
    let filling = Arc::clone(&download);
    tokio::spawn(async move {
        let mut bytes = 0u64;
        let end = loop {
            match body.next().await {
                Some(Ok(chunk)) => {
                    bytes += chunk.len() as u64;
                    let count = {
                        let mut chunks = lock(&filling.chunks);
                        chunks.push(chunk);
                        chunks.len()
                    };
                    filling.progress.send_modify(|p| p.chunks = count);
                }
                Some(Err(e)) => break Err(ReadError::Bucket(e.to_string())),
                None if bytes == filling.head.size => break Ok(()),
                None => {
                    let cut = format!(
                        "the body ended after {bytes} of {} bytes",
                        filling.head.size
                    );
                    break Err(ReadError::Bucket(cut));
                }
            }
        };
        bucket.observe_body(started, end.is_ok(), bytes);
        if end.is_ok()
            && let Some(disk) = disk
        {
            let stored = encode(&Object {
                body: concat(&lock(&filling.chunks)),
                last_modified: filling.head.last_modified,
                file: None,
            });
            let owned = key.clone();
            let put = tokio::task::spawn_blocking(move || disk.put(&owned, &stored)).await;
            if let Ok(Err(e)) = put {
                tracing::warn!(error = %e, "object not kept in the disk cache");
            }
        }
        if let Err(e) = &end {
            tracing::warn!(key, error = %e, "bucket object read failed");
        }
        // Unregistered before the end is told, so no request joins a finished read.
        lock(&arriving).remove(&key);
        filling.progress.send_modify(|p| p.end = Some(end));
    });
    Ok(Some(download))
}

fn concat(chunks: &[Bytes]) -> Bytes {
    match chunks {
        [one] => one.clone(),
        many => {
            let mut whole = BytesMut::with_capacity(many.iter().map(Bytes::len).sum());
            for chunk in many {
                whole.put_slice(chunk);
            }
            whole.freeze()
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
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

/// Bytes of the Last-Modified in front of a body in the disk cache.
const LAST_MODIFIED_LEN: u64 = 8;

fn decode(mut stored: Bytes) -> Option<Object> {
    if stored.len() < LAST_MODIFIED_LEN as usize {
        return None;
    }
    let seconds = u64::from_be_bytes(stored.split_to(8).as_ref().try_into().ok()?);
    Some(Object {
        body: stored,
        last_modified: UNIX_EPOCH + Duration::from_secs(seconds),
        file: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn download(size: u64) -> Arc<Download> {
        let (progress, _) = watch::channel(Progress::default());
        Arc::new(Download {
            head: Head {
                size,
                last_modified: UNIX_EPOCH,
                content_tag: Some("00".into()),
            },
            chunks: Mutex::new(Vec::new()),
            progress,
        })
    }

    fn arrive(download: &Download, chunk: &'static [u8]) {
        let count = {
            let mut chunks = lock(&download.chunks);
            chunks.push(Bytes::from_static(chunk));
            chunks.len()
        };
        download.progress.send_modify(|p| p.chunks = count);
    }

    #[tokio::test]
    async fn readers_get_each_chunk_as_it_arrives_and_the_whole_at_the_end() {
        let d = download(6);
        let mut early = Box::pin(d.chunks());
        arrive(&d, b"abc");
        // The first chunk is there before the body ends.
        assert_eq!(early.next().await.unwrap().unwrap(), "abc");
        let late = d.chunks();
        arrive(&d, b"def");
        d.progress.send_modify(|p| p.end = Some(Ok(())));
        assert_eq!(early.next().await.unwrap().unwrap(), "def");
        assert!(early.next().await.is_none());
        let joined: Vec<_> = late.collect().await;
        assert_eq!(
            joined.len(),
            2,
            "a later reader gets every chunk from the first"
        );
        assert_eq!(d.whole().await.unwrap().body, "abcdef");
    }

    #[tokio::test]
    async fn a_body_cut_short_ends_every_reader_with_an_error() {
        let d = download(6);
        let reader = d.chunks();
        arrive(&d, b"abc");
        let cut = ReadError::Bucket("connection reset".into());
        d.progress.send_modify(|p| p.end = Some(Err(cut)));
        let items: Vec<_> = reader.collect().await;
        assert!(matches!(items.as_slice(), [Ok(_), Err(_)]), "{items:?}");
        assert!(d.whole().await.is_err());
    }

    #[test]
    fn the_disk_copy_keeps_body_and_last_modified() {
        let object = Object {
            body: Bytes::from_static(b"segment bytes"),
            last_modified: UNIX_EPOCH + Duration::from_secs(1_780_000_000),
            file: None,
        };
        let back = decode(Bytes::from(encode(&object))).unwrap();
        assert_eq!(back.body, object.body);
        assert_eq!(back.last_modified, object.last_modified);
        assert!(decode(Bytes::from_static(b"short")).is_none());
    }
}
