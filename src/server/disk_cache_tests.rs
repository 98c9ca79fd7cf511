use std::fs;
use std::path::{Path, PathBuf};

use super::*;

/// A body that differs per key, so a body served for the wrong key shows.
fn body_for(key: &str, len: usize) -> Vec<u8> {
    key.bytes().cycle().take(len).collect()
}

/// The size on disk of `key`'s entry with a body of `len` bytes.
fn entry_size(key: &str, len: usize) -> u64 {
    (HEADER_LEN + key.len() + len) as u64
}

fn key(i: usize) -> String {
    format!("tracks/{i:04}/aac-lc-128k.0123456789ab/3.m4s")
}

fn path_for(cache: &DiskCache, key: &str) -> PathBuf {
    cache.path_of(&name_of(key))
}

/// Every regular file under the fan-out directories, whatever its name.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        for item in fs::read_dir(&dir).unwrap() {
            let path = item.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().unwrap() != LOCK_FILE {
                out.push(path);
            }
        }
    }
    out
}

#[test]
fn round_trip_returns_the_body_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let cache = DiskCache::open(dir.path(), 1 << 20).unwrap();
    let body = body_for("a", 5000);
    cache.put(&key(1), &body).unwrap();
    assert_eq!(cache.get(&key(1)).as_deref(), Some(&body[..]));
    assert_eq!(cache.get(&key(2)), None);
    // An empty body is an object too.
    cache.put(&key(3), b"").unwrap();
    assert_eq!(cache.get(&key(3)).as_deref(), Some(&b""[..]));
    let stats = cache.stats();
    assert_eq!((stats.entries, stats.hits, stats.misses), (2, 2, 1));
    assert_eq!(
        stats.bytes,
        entry_size(&key(1), 5000) + entry_size(&key(3), 0)
    );
    // The key is never a path: the file is named by its hash, two levels down.
    let file = path_for(&cache, &key(1));
    assert!(file.is_file());
    assert_eq!(
        file.parent().unwrap().parent().unwrap().parent().unwrap(),
        dir.path()
    );
}

#[test]
fn eviction_is_least_recently_used_and_bytes_stay_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let one = entry_size(&key(0), 1000);
    let cache = DiskCache::open(dir.path(), 3 * one).unwrap();
    for i in 0..3 {
        cache.put(&key(i), &body_for(&key(i), 1000)).unwrap();
    }
    // 0 is used again, so 1 is now the oldest.
    assert!(cache.get(&key(0)).is_some());
    cache.put(&key(3), &body_for(&key(3), 1000)).unwrap();
    assert_eq!(cache.get(&key(1)), None);
    assert!(!path_for(&cache, &key(1)).exists());
    for i in [0, 2, 3] {
        assert_eq!(
            cache.get(&key(i)),
            Some(body_for(&key(i), 1000).into()),
            "key {i}"
        );
    }
    assert_eq!(cache.stats().evictions, 1);

    for i in 4..40 {
        cache.put(&key(i), &body_for(&key(i), 1000)).unwrap();
        let stats = cache.stats();
        assert!(stats.bytes <= 3 * one, "{stats:?}");
        assert_eq!(stats.entries, 3);
    }
    assert_eq!(files_under(dir.path()).len(), 3);
}

#[test]
fn reopen_keeps_entries_in_their_recency_order_and_bounds_them() {
    let dir = tempfile::tempdir().unwrap();
    let one = entry_size(&key(0), 1000);
    {
        let cache = DiskCache::open(dir.path(), 10 * one).unwrap();
        for i in 0..3 {
            cache.put(&key(i), &body_for(&key(i), 1000)).unwrap();
        }
        assert!(cache.get(&key(0)).is_some());
    }
    {
        let cache = DiskCache::open(dir.path(), 10 * one).unwrap();
        let stats = cache.stats();
        assert_eq!((stats.entries, stats.bytes), (3, 3 * one));
    }
    // A smaller bound on restart: the oldest (1, then 2; 0 was used last) go first.
    let cache = DiskCache::open(dir.path(), 2 * one).unwrap();
    let stats = cache.stats();
    assert_eq!(
        (stats.entries, stats.bytes, stats.evictions),
        (2, 2 * one, 1)
    );
    assert_eq!(cache.get(&key(1)), None);
    assert!(cache.get(&key(0)).is_some());
    assert!(cache.get(&key(2)).is_some());
}

#[test]
fn a_second_open_of_a_live_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cache = DiskCache::open(dir.path(), 1 << 20).unwrap();
    assert!(matches!(
        DiskCache::open(dir.path(), 1 << 20),
        Err(DiskCacheError::Lock { .. })
    ));
    drop(cache);
    DiskCache::open(dir.path(), 1 << 20).unwrap();
}

/// Asserts `key`'s damaged file is reported as a miss, counted, deleted and unindexed, and that
/// storing it again works.
fn assert_detected(cache: &DiskCache, key: &str, body: &[u8]) {
    let before = cache.stats();
    assert_eq!(cache.get(key), None);
    let after = cache.stats();
    assert_eq!(after.corrupt, before.corrupt + 1);
    assert_eq!(after.misses, before.misses + 1);
    assert_eq!(after.entries, before.entries - 1);
    assert!(!path_for(cache, key).exists());
    cache.put(key, body).unwrap();
    assert_eq!(cache.get(key).as_deref(), Some(body));
}

#[test]
fn a_truncated_file_is_detected_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let cache = DiskCache::open(dir.path(), 1 << 20).unwrap();
    let body = body_for("t", 4000);
    for cut in [1, 4000, 4000 + 10, 4000 + 60] {
        cache.put(&key(1), &body).unwrap();
        let path = path_for(&cache, &key(1));
        let len = fs::metadata(&path).unwrap().len();
        fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - cut)
            .unwrap();
        assert_detected(&cache, &key(1), &body);
    }
}

#[test]
fn a_flipped_byte_anywhere_is_detected_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let cache = DiskCache::open(dir.path(), 1 << 20).unwrap();
    let body = body_for("f", 4000);
    let key = key(1);
    // Magic, version, key length, body length, hash, key, first and last body byte.
    for at in [
        0,
        9,
        13,
        17,
        30,
        HEADER_LEN + 3,
        HEADER_LEN + key.len(),
        HEADER_LEN + key.len() + 3999,
    ] {
        cache.put(&key, &body).unwrap();
        let path = path_for(&cache, &key);
        let mut raw = fs::read(&path).unwrap();
        raw[at] ^= 0x40;
        fs::write(&path, raw).unwrap();
        assert_detected(&cache, &key, &body);
    }
}

#[test]
fn a_file_copied_over_another_keys_name_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let cache = DiskCache::open(dir.path(), 1 << 20).unwrap();
    let (a, b) = (key(1), key(2));
    cache.put(&a, &body_for(&a, 2000)).unwrap();
    cache.put(&b, &body_for(&b, 2000)).unwrap();
    fs::copy(path_for(&cache, &a), path_for(&cache, &b)).unwrap();
    assert_detected(&cache, &b, &body_for(&b, 2000));
    assert_eq!(cache.get(&a), Some(body_for(&a, 2000).into()));
}

#[test]
fn open_removes_temp_leftovers_and_keeps_foreign_files() {
    let dir = tempfile::tempdir().unwrap();
    let (kept, leftover, foreign) = {
        let cache = DiskCache::open(dir.path(), 1 << 20).unwrap();
        cache.put(&key(1), b"kept").unwrap();
        let kept = path_for(&cache, &key(1));
        let leftover = kept.with_file_name(format!(
            "{}.999.0.tmp",
            kept.file_name().unwrap().to_str().unwrap()
        ));
        fs::write(&leftover, b"half a segm").unwrap();
        let foreign = dir.path().join("README");
        fs::write(&foreign, b"not ours").unwrap();
        (kept, leftover, foreign)
    };
    let cache = DiskCache::open(dir.path(), 1 << 20).unwrap();
    assert!(!leftover.exists());
    assert!(kept.exists() && foreign.exists());
    assert_eq!(cache.stats().entries, 1);
    assert_eq!(cache.get(&key(1)).as_deref(), Some(&b"kept"[..]));
}

#[test]
fn an_object_larger_than_the_bound_is_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let cache = DiskCache::open(dir.path(), 1000).unwrap();
    cache.put(&key(1), b"small").unwrap();
    cache.put(&key(2), &body_for("big", 1000)).unwrap();
    assert_eq!(cache.get(&key(2)), None);
    // Storing nothing evicted nothing.
    assert!(cache.get(&key(1)).is_some());
    let stats = cache.stats();
    assert_eq!((stats.entries, stats.evictions), (1, 0));
    assert_eq!(files_under(dir.path()).len(), 1);
}

#[test]
fn concurrent_puts_and_gets_stay_correct_and_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let one = entry_size(&key(0), 3000);
    let max = 10 * one;
    let cache = DiskCache::open(dir.path(), max).unwrap();
    std::thread::scope(|scope| {
        for thread in 0..8 {
            let cache = &cache;
            scope.spawn(move || {
                for step in 0..300 {
                    let k = key((thread * 7 + step * 13) % 32);
                    let body = body_for(&k, 3000);
                    if step % 3 == 0 {
                        cache.put(&k, &body).unwrap();
                    } else if let Some(got) = cache.get(&k) {
                        assert_eq!(got, body, "wrong body for {k}");
                    }
                }
            });
        }
    });
    let stats = cache.stats();
    assert_eq!(stats.corrupt, 0);
    assert!(stats.bytes <= max, "{stats:?}");
    assert!(stats.hits > 0 && stats.evictions > 0, "{stats:?}");
    // The index agrees with the directory, and no temp file is left.
    let files = files_under(dir.path());
    assert_eq!(files.len() as u64, stats.entries);
    let on_disk: u64 = files.iter().map(|f| fs::metadata(f).unwrap().len()).sum();
    assert_eq!(on_disk, stats.bytes);
}
