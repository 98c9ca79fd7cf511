//! Media files from the library, as [`Entity`]s, with an in-memory cache of hot files.
//!
//! Files inside a rendition directory never change (the directory name carries their hash), so
//! once loaded they are served from memory without touching the disk: no stat, no invalidation.
//! The other files of a track directory (master playlist, MPD, waveform, cover) are stat'ed on
//! every request and reloaded when their size, mtime or inode changed. Both kinds share one
//! cache bounded in bytes (`--cache-mib`; quick_cache's CLOCK-Pro-like eviction keeps the hot
//! ones), which also keeps the compressed forms of playlists and MPDs so each is compressed once.
//! A cached segment also keeps its file open (within an [`FdBudget`]), so responses can send it
//! with `sendfile` ([`super::zerocopy`]).
//!
//! Entity tags are a hash of the content, computed when a file is loaded: unlike size+mtime+inode
//! they stay the same across restarts, re-copies of the library and several origins behind one
//! CDN, which is exactly what a strong validator promises (same tag, same bytes).
//!
//! Before a file is opened its path is canonicalized and must still lie inside the canonical
//! `tracks/<id>/` directory, so a symlink pointing elsewhere (or a track directory that is itself
//! a symlink) is refused like a missing file.

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use quick_cache::Weighter;
use quick_cache::sync::Cache;

use super::bucket_files::{BucketFiles, Download, Object, Opened, ReadError};
use super::error::ApiError;
use super::http::encoding::Effort;
use super::http::respond::Entity;
use super::metrics::Metrics;
use super::paths::MediaPath;
use super::zerocopy::{FdBudget, MIN_ZERO_COPY_BYTES};
use crate::store::layout::TRACKS_DIR;

/// Cache-Control of content-addressed files (everything inside a rendition directory).
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// Cache-Control of the track directory's own files, which may be rewritten in place.
pub const ENTRY_POINT: &str = "public, max-age=60, stale-while-revalidate=600";

/// What identifies one version of a file on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
}

impl Fingerprint {
    fn of(meta: &fs::Metadata) -> Self {
        Fingerprint {
            len: meta.len(),
            modified: meta.modified().ok(),
            inode: meta.ino(),
        }
    }
}

#[derive(Debug, Clone)]
struct CachedFile {
    fingerprint: Fingerprint,
    entity: Arc<Entity>,
}

/// Weighs cache entries by the memory they hold.
#[derive(Debug, Clone)]
struct ByBytes;

impl Weighter<String, CachedFile> for ByBytes {
    fn weight(&self, key: &String, value: &CachedFile) -> u64 {
        value.entity.weight() + key.len() as u64
    }
}

/// Where a [`FileStore`] reads files from.
#[derive(Debug)]
pub enum Source {
    /// A local library's `tracks` directory.
    Dir(PathBuf),
    /// A bucket library.
    Bucket(BucketFiles),
}

/// The media files of a library.
#[derive(Debug)]
pub struct FileStore {
    /// Canonical `<library>/tracks` (unused for a bucket).
    tracks: PathBuf,
    /// The objects of a bucket library.
    bucket: Option<BucketFiles>,
    cache: Option<Arc<Cache<String, CachedFile, ByBytes>>>,
    metrics: Arc<Metrics>,
    /// Open descriptors cached segments may keep, to be sent without a copy; `None`: none.
    fd_budget: Option<Arc<FdBudget>>,
}

impl FileStore {
    /// A store over `source` (a directory must exist) with a cache of about `cache_bytes`
    /// (0: none).
    pub fn new(source: Source, cache_bytes: u64, metrics: Arc<Metrics>) -> io::Result<Self> {
        let (tracks, bucket) = match source {
            Source::Dir(dir) => (fs::canonicalize(dir)?, None),
            Source::Bucket(bucket) => (PathBuf::new(), Some(bucket)),
        };
        // Segments are ~16-130 KB: the item estimate only sizes the cache's tables.
        let cache = (cache_bytes > 0).then(|| {
            Arc::new(Cache::with_weighter(
                (cache_bytes / 32_768).max(16) as usize,
                cache_bytes,
                ByBytes,
            ))
        });
        Ok(FileStore {
            tracks,
            bucket,
            cache,
            metrics,
            fd_budget: None,
        })
    }

    /// Lets immutable files of at least [`MIN_ZERO_COPY_BYTES`] keep their descriptor open,
    /// within `budget`, so responses send them with `sendfile` ([`crate::server::zerocopy`]).
    pub fn sending_files(mut self, budget: Arc<FdBudget>) -> Self {
        self.fd_budget = Some(budget);
        self
    }

    /// The file at `path` from memory, if it is immutable and cached (counted as a hit).
    pub fn cached(&self, path: &MediaPath) -> Option<Arc<Entity>> {
        if !path.immutable {
            return None;
        }
        self.cached_at(&path.key())
    }

    /// The cached file under `key` (a [`MediaPath::key`] of an immutable file), counted as a
    /// hit; `None` (and nothing counted) if it is not in memory.
    pub fn cached_at(&self, key: &str) -> Option<Arc<Entity>> {
        let hit = self.cache.as_ref()?.get(key)?;
        self.metrics.cache_hit();
        Some(hit.entity)
    }

    /// The file at `path` as an entity: from memory when possible, else from disk.
    pub async fn load(self: &Arc<Self>, path: MediaPath) -> Result<Arc<Entity>, ApiError> {
        if let Some(entity) = self.cached(&path) {
            return Ok(entity);
        }
        if let Some(bucket) = &self.bucket {
            return self.load_from_bucket(bucket, &path).await;
        }
        let store = Arc::clone(self);
        tokio::task::spawn_blocking(move || store.load_blocking(&path))
            .await
            .map_err(ApiError::internal)?
    }

    fn load_blocking(&self, path: &MediaPath) -> Result<Arc<Entity>, ApiError> {
        let file = self.resolve(path)?;
        let mut handle = File::open(&file).map_err(|e| not_found_or(e, &file))?;
        let meta = handle.metadata().map_err(|e| not_found_or(e, &file))?;
        if !meta.is_file() {
            return Err(ApiError::NotFound);
        }
        let fingerprint = Fingerprint::of(&meta);
        let key = path.key();
        if let Some(cached) = self.cache.as_ref().and_then(|c| c.get(&key))
            && cached.fingerprint == fingerprint
        {
            self.metrics.cache_hit();
            return Ok(cached.entity);
        }
        self.metrics.cache_miss();
        let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
        handle
            .read_to_end(&mut bytes)
            .map_err(|e| not_found_or(e, &file))?;
        let held = match &self.fd_budget {
            Some(budget) if path.immutable && bytes.len() >= MIN_ZERO_COPY_BYTES => {
                budget.hold(handle)
            }
            _ => None,
        };
        let entity = Arc::new(self.entity(path, Bytes::from(bytes), meta.modified().ok(), held));
        if let Some(cache) = &self.cache {
            let cached = CachedFile {
                fingerprint,
                entity: Arc::clone(&entity),
            };
            cache.insert(key, cached);
            self.metrics.set_cache_bytes(cache.weight());
        }
        Ok(entity)
    }

    /// A bucket object not in memory, as it arrives (for a response that streams it): `None`
    /// when it is in memory, whole in the disk cache, or has no content tag to answer with
    /// before its body (then it is loaded whole into memory, for [`FileStore::load`]).
    pub async fn arriving(
        self: &Arc<Self>,
        path: &MediaPath,
    ) -> Result<Option<Arc<Download>>, ApiError> {
        let Some(bucket) = &self.bucket else {
            return Ok(None);
        };
        let key = path.key();
        if self.cache.as_ref().is_some_and(|c| c.contains_key(&key)) {
            return Ok(None);
        }
        let object_key = format!("{TRACKS_DIR}/{key}");
        let object = match bucket
            .open(&object_key)
            .await
            .map_err(unavailable(&object_key))?
        {
            None => return Err(ApiError::NotFound),
            Some(Opened::Whole(object)) => object,
            Some(Opened::Arriving(download)) if download.head.content_tag.is_some() => {
                self.metrics.cache_miss();
                let (arriving, path) = (Arc::clone(&download), path.clone());
                let store = Arc::clone(self);
                tokio::spawn(async move {
                    if let Ok(whole) = arriving.whole().await {
                        // From the disk cache if it went there: with its file, to sendfile.
                        let on_disk = match &store.bucket {
                            Some(bucket) if bucket.has_disk() => {
                                bucket.read_disk(&object_key).await
                            }
                            _ => None,
                        };
                        store.keep(&path, on_disk.unwrap_or(whole));
                    }
                });
                return Ok(Some(download));
            }
            Some(Opened::Arriving(download)) => {
                download.whole().await.map_err(unavailable(&object_key))?
            }
        };
        self.keep(path, object);
        Ok(None)
    }

    /// Makes `object` the cached entity of `path` (sent from its disk cache file when it has
    /// one and is big enough, as a local file would be).
    fn keep(&self, path: &MediaPath, object: Object) -> Arc<Entity> {
        let held = match (&self.fd_budget, object.file) {
            (Some(budget), Some(file))
                if path.immutable && object.body.len() >= MIN_ZERO_COPY_BYTES =>
            {
                file.0
                    .try_clone()
                    .ok()
                    .and_then(|f| budget.hold_from(f, file.1))
            }
            _ => None,
        };
        let entity = Arc::new(entity_of(
            path,
            object.body,
            Some(object.last_modified),
            held,
        ));
        insert(self.cache.as_ref(), path.key(), Arc::clone(&entity));
        if let Some(cache) = &self.cache {
            self.metrics.set_cache_bytes(cache.weight());
        }
        entity
    }

    /// The object at `path` from the bucket (every object of a bucket library is written
    /// create-only, so a cached one never needs revalidation).
    async fn load_from_bucket(
        &self,
        bucket: &BucketFiles,
        path: &MediaPath,
    ) -> Result<Arc<Entity>, ApiError> {
        let key = path.key();
        if let Some(hit) = self.cache.as_ref().and_then(|c| c.get(&key)) {
            self.metrics.cache_hit();
            return Ok(hit.entity);
        }
        self.metrics.cache_miss();
        let object_key = format!("{TRACKS_DIR}/{key}");
        let fetched = match bucket.read(&object_key).await {
            Ok(Some(object)) => object,
            Ok(None) => return Err(ApiError::NotFound),
            Err(e) => return Err(unavailable(&object_key)(e)),
        };
        Ok(self.keep(path, fetched))
    }

    /// The entity of file `path` with content `body`.
    fn entity(
        &self,
        path: &MediaPath,
        body: Bytes,
        modified: Option<SystemTime>,
        held: Option<Arc<super::zerocopy::HeldFile>>,
    ) -> Entity {
        entity_of(path, body, modified, held)
    }

    /// The canonical path of `path`, if it exists inside its track directory.
    fn resolve(&self, path: &MediaPath) -> Result<PathBuf, ApiError> {
        let track_dir = self.tracks.join(&path.track_id);
        let candidate = track_dir.join(&path.relative);
        let canonical = fs::canonicalize(&candidate).map_err(|e| not_found_or(e, &candidate))?;
        if !canonical.starts_with(&track_dir) {
            tracing::warn!(path = %candidate.display(), target = %canonical.display(),
                "refused: resolves outside its track directory");
            return Err(ApiError::NotFound);
        }
        Ok(canonical)
    }
}

/// The entity of file `path` with content `body`.
fn entity_of(
    path: &MediaPath,
    body: Bytes,
    modified: Option<SystemTime>,
    held: Option<Arc<super::zerocopy::HeldFile>>,
) -> Entity {
    let mut entity = Entity::new(
        path.kind.content_type(),
        cache_control(path),
        body,
        modified,
    )
    .sent_from(held);
    if path.kind.compressible() {
        entity = entity.compressible(Effort::Once);
    }
    entity
}

/// The Cache-Control of file `path`.
pub fn cache_control(path: &MediaPath) -> &'static str {
    if path.immutable {
        IMMUTABLE
    } else {
        ENTRY_POINT
    }
}

/// Puts a bucket object's entity into the memory cache (its fingerprint only for the type:
/// bucket objects never change).
fn insert(
    cache: Option<&Arc<Cache<String, CachedFile, ByBytes>>>,
    key: String,
    entity: Arc<Entity>,
) {
    if let Some(cache) = cache {
        let fingerprint = Fingerprint {
            len: entity.body.len() as u64,
            modified: entity.last_modified,
            inode: 0,
        };
        cache.insert(
            key,
            CachedFile {
                fingerprint,
                entity,
            },
        );
    }
}

/// A bucket failure as the client sees it: 503 (with Retry-After), the detail in the log.
fn unavailable(key: &str) -> impl FnOnce(ReadError) -> ApiError + '_ {
    move |e| {
        tracing::warn!(key, error = %e, "bucket read failed: 503");
        ApiError::Unavailable("the library's storage is unavailable".into())
    }
}

/// A missing file is a 404; anything else is an internal error with the path in the log only.
fn not_found_or(e: io::Error, path: &Path) -> ApiError {
    match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => ApiError::NotFound,
        _ => ApiError::internal(format_args!("{}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "00112233445566778899aabb";
    const DIR: &str = "aac-lc-128k.0123456789ab";

    fn store(cache_bytes: u64) -> (tempfile::TempDir, Arc<FileStore>) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("tracks").join(ID).join(DIR);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("1.m4s"), b"segment").unwrap();
        fs::write(
            tmp.path().join("tracks").join(ID).join("master.m3u8"),
            b"#EXTM3U\n",
        )
        .unwrap();
        fs::write(tmp.path().join("secret.json"), b"{}").unwrap();
        let tracks = Source::Dir(tmp.path().join("tracks"));
        let store = FileStore::new(tracks, cache_bytes, Default::default());
        (tmp, Arc::new(store.unwrap()))
    }

    fn path(rel: &str) -> MediaPath {
        MediaPath::parse(ID, rel).unwrap()
    }

    #[tokio::test]
    async fn immutable_files_are_served_from_memory_after_the_first_read() {
        let (tmp, store) = store(1 << 20);
        let first = store.load(path(&format!("{DIR}/1.m4s"))).await.unwrap();
        assert_eq!(first.cache_control, IMMUTABLE);
        fs::remove_dir_all(tmp.path().join("tracks").join(ID).join(DIR)).unwrap();
        let again = store.load(path(&format!("{DIR}/1.m4s"))).await.unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        let text = store.metrics.render().unwrap();
        assert!(text.contains("segue_cache_hits_total 1"), "{text}");
    }

    #[tokio::test]
    async fn entry_points_are_revalidated_against_the_disk() {
        let (tmp, store) = store(1 << 20);
        let master = tmp.path().join("tracks").join(ID).join("master.m3u8");
        let first = store.load(path("master.m3u8")).await.unwrap();
        assert!(first.encodings.is_some() && first.cache_control == ENTRY_POINT);
        assert!(Arc::ptr_eq(
            &first,
            &store.load(path("master.m3u8")).await.unwrap()
        ));
        fs::write(&master, b"#EXTM3U\n#EXT-X-VERSION:7\n").unwrap();
        let changed = store.load(path("master.m3u8")).await.unwrap();
        assert_ne!(changed.etag, first.etag);
        fs::remove_file(&master).unwrap();
        assert!(matches!(
            store.load(path("master.m3u8")).await,
            Err(ApiError::NotFound)
        ));
    }

    #[tokio::test]
    async fn symlinks_out_of_the_track_directory_are_refused() {
        let (tmp, store) = store(0);
        let track = tmp.path().join("tracks").join(ID);
        std::os::unix::fs::symlink(tmp.path().join("secret.json"), track.join("waveform.json"))
            .unwrap();
        assert!(matches!(
            store.load(path("waveform.json")).await,
            Err(ApiError::NotFound)
        ));
        // A link that stays inside the track directory is fine.
        std::os::unix::fs::symlink(track.join("master.m3u8"), track.join("alias.m3u8")).unwrap();
        assert!(store.load(path("alias.m3u8")).await.is_ok());
    }
}
