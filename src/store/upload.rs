//! A track being written into a bucket: every finished file is uploaded at once, while the
//! next is encoded, with create-only puts; the track record is held back and written last, by
//! `Uploads::commit`, so it is the commit point.
//!
//! Objects under a track are content-addressed (the track id is a hash of the source, a
//! rendition directory a hash of everything that decides its bytes), so a key that exists
//! already holds the same bytes: another machine ingesting the same file wrote it, and a
//! create-only put that finds it is a success. A killed ingest leaves objects no record
//! references; `segue gc` removes them after a grace period.
//!
//! At most [`IN_FLIGHT`] uploads of one track run at once; a writer that gets ahead waits
//! (back-pressure on the encoder threads, so memory stays bounded). The first failed upload
//! fails the next write at once, so a bucket that goes away mid-ingest stops the file early.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::StoreError;
use super::bucket::{Bucket, BucketError};
use super::layout::{TRACK_RECORD_FILE, TRACKS_DIR};

/// Uploads of one track running at once.
pub const IN_FLIGHT: usize = 16;

/// The uploads of one track.
#[derive(Debug)]
pub(super) struct Uploads {
    bucket: Bucket,
    id: String,
    permits: Arc<Semaphore>,
    running: Mutex<Vec<JoinHandle<Result<(), BucketError>>>>,
    failed: Arc<Mutex<Option<String>>>,
    record: Mutex<Option<Bytes>>,
}

impl Uploads {
    /// Starts the uploads of track `id`.
    pub(super) fn new(bucket: Bucket, id: &str) -> Self {
        Uploads {
            bucket,
            id: id.to_string(),
            permits: Arc::new(Semaphore::new(IN_FLIGHT)),
            running: Mutex::new(Vec::new()),
            failed: Arc::new(Mutex::new(None)),
            record: Mutex::new(None),
        }
    }

    fn key(&self, relative: &str) -> String {
        format!("{TRACKS_DIR}/{}/{relative}", self.id)
    }

    /// Uploads `bytes` as the track's file `relative` (the record is kept for the commit).
    pub(super) fn put(&self, relative: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.check()?;
        let bytes = Bytes::copy_from_slice(bytes);
        if relative == TRACK_RECORD_FILE {
            *lock(&self.record) = Some(bytes);
            return Ok(());
        }
        let permits = Arc::clone(&self.permits);
        let permit = self
            .bucket
            .block_on(permits.acquire_owned())
            .map_err(|_| StoreError::Upload("the upload queue closed".into()))?;
        let bucket = self.bucket.clone();
        let failed = Arc::clone(&self.failed);
        let key = self.key(relative);
        let task = async move {
            let _permit = permit;
            let result = bucket.put_new(&key, bytes).await.map(|_| ());
            if let Err(e) = &result {
                lock(&failed).get_or_insert_with(|| e.to_string());
            }
            result
        };
        let handle = self.bucket.runtime().spawn(task);
        lock(&self.running).push(handle);
        Ok(())
    }

    fn check(&self) -> Result<(), StoreError> {
        match lock(&self.failed).as_ref() {
            Some(reason) => Err(StoreError::Upload(reason.clone())),
            None => Ok(()),
        }
    }

    /// Waits for every upload, then writes the record create-only: the track's commit point.
    /// [`StoreError::AlreadyExists`] when another writer committed it first.
    pub(super) fn commit(&self) -> Result<(), StoreError> {
        let running = std::mem::take(&mut *lock(&self.running));
        let results = self.bucket.block_on(async move {
            let mut results = Vec::with_capacity(running.len());
            for handle in running {
                results.push(handle.await);
            }
            results
        });
        for result in results {
            match result {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e.into()),
                Err(e) => return Err(StoreError::Upload(format!("an upload task failed: {e}"))),
            }
        }
        let record = lock(&self.record)
            .take()
            .ok_or_else(|| StoreError::Upload("the track has no record to commit".into()))?;
        let key = self.key(TRACK_RECORD_FILE);
        match self.bucket.block_on(self.bucket.put_new(&key, record)) {
            Ok(true) => Ok(()),
            Ok(false) => Err(StoreError::AlreadyExists(self.id.clone())),
            Err(e) => Err(e.into()),
        }
    }
}

impl Drop for Uploads {
    fn drop(&mut self) {
        // An abandoned track: stop what has not started; what was written stays unreferenced
        // until `segue gc` removes it.
        for handle in lock(&self.running).drain(..) {
            handle.abort();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}
