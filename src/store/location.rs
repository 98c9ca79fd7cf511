//! Where a library lives: a local directory, or a prefix of an S3-compatible bucket
//! (`s3://BUCKET[/PREFIX]`), as `--library` and `SEGUE_LIBRARY` name it.
//!
//! The location crosses the ingest worker's process boundary serialized, so a directory that
//! is not UTF-8 is carried as bytes (`os_path`).

use std::ffi::OsStr;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The URL scheme of a bucket library.
pub const BUCKET_SCHEME: &str = "s3://";

/// A library's location.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LibraryLocation {
    /// A local directory.
    Dir(#[serde(with = "os_path")] PathBuf),
    /// A prefix of an S3-compatible bucket.
    Bucket(BucketUrl),
}

/// `s3://BUCKET[/PREFIX]`: a bucket, and the prefix (no leading or trailing `/`, may be empty)
/// under which the library's keys live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketUrl {
    /// The bucket name.
    pub bucket: String,
    /// The key prefix of the library, without a trailing `/`; empty for the bucket's root.
    pub prefix: String,
}

/// Why a `--library` value is not a location.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LocationError {
    /// `s3://` with no bucket name.
    #[error("{0:?} names no bucket (expected s3://BUCKET[/PREFIX])")]
    NoBucket(String),
    /// A bucket name S3 would refuse (3-63 of lowercase letters, digits, `.` and `-`).
    #[error("{0:?} is not a valid bucket name (3 to 63 lowercase letters, digits, '.' or '-')")]
    BadBucket(String),
    /// A prefix that is not UTF-8, or has an empty, `.` or `..` segment.
    #[error("{0:?} is not a usable key prefix (no empty, '.' or '..' segments)")]
    BadPrefix(String),
}

impl LibraryLocation {
    /// Parses a `--library` value: `s3://BUCKET[/PREFIX]` is a bucket, anything else a directory.
    pub fn parse(value: &OsStr) -> Result<Self, LocationError> {
        let Some(rest) = value.as_bytes().strip_prefix(BUCKET_SCHEME.as_bytes()) else {
            return Ok(LibraryLocation::Dir(PathBuf::from(value)));
        };
        let text = String::from_utf8_lossy(value.as_bytes()).into_owned();
        let rest = std::str::from_utf8(rest).map_err(|_| LocationError::BadPrefix(text.clone()))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(LocationError::NoBucket(text));
        }
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
        if !valid_bucket {
            return Err(LocationError::BadBucket(bucket.to_string()));
        }
        let prefix = prefix.trim_end_matches('/');
        if !prefix.is_empty()
            && prefix
                .split('/')
                .any(|s| s.is_empty() || s == "." || s == "..")
        {
            return Err(LocationError::BadPrefix(prefix.to_string()));
        }
        Ok(LibraryLocation::Bucket(BucketUrl {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        }))
    }
}

impl From<PathBuf> for LibraryLocation {
    fn from(dir: PathBuf) -> Self {
        LibraryLocation::Dir(dir)
    }
}

impl From<&std::path::Path> for LibraryLocation {
    fn from(dir: &std::path::Path) -> Self {
        LibraryLocation::Dir(dir.to_path_buf())
    }
}

impl fmt::Display for LibraryLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LibraryLocation::Dir(path) => write!(f, "{}", path.display()),
            LibraryLocation::Bucket(url) => url.fmt(f),
        }
    }
}

impl fmt::Display for BucketUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix.is_empty() {
            write!(f, "{BUCKET_SCHEME}{}", self.bucket)
        } else {
            write!(f, "{BUCKET_SCHEME}{}/{}", self.bucket, self.prefix)
        }
    }
}

/// Paths in serialized settings: text when the path is UTF-8, its bytes otherwise. A Unix path
/// is bytes and a JSON string is UTF-8 text, so serde's own `PathBuf` support fails on a path
/// that is not UTF-8; the worker must get such a library path unchanged all the same.
pub(crate) mod os_path {
    use std::ffi::OsString;
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    use std::path::{Path, PathBuf};

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Text(String),
        Bytes(Vec<u8>),
    }

    /// Serializes `path` as text, or as bytes when it is not UTF-8.
    pub fn serialize<S: Serializer>(path: &Path, to: S) -> Result<S::Ok, S::Error> {
        match path.to_str() {
            Some(text) => Repr::Text(text.to_owned()),
            None => Repr::Bytes(path.as_os_str().as_bytes().to_vec()),
        }
        .serialize(to)
    }

    /// Reads a path [`serialize`] wrote.
    pub fn deserialize<'de, D: Deserializer<'de>>(from: D) -> Result<PathBuf, D::Error> {
        Ok(match Repr::deserialize(from)? {
            Repr::Text(text) => PathBuf::from(text),
            Repr::Bytes(bytes) => PathBuf::from(OsString::from_vec(bytes)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<LibraryLocation, LocationError> {
        LibraryLocation::parse(OsStr::new(text))
    }

    #[test]
    fn directories_and_buckets() {
        assert_eq!(
            parse("media/library"),
            Ok(LibraryLocation::Dir("media/library".into()))
        );
        for (text, bucket, prefix) in [
            ("s3://music", "music", ""),
            ("s3://music/", "music", ""),
            ("s3://music/prod", "music", "prod"),
            ("s3://music/prod/eu/", "music", "prod/eu"),
        ] {
            let want = LibraryLocation::Bucket(BucketUrl {
                bucket: bucket.into(),
                prefix: prefix.into(),
            });
            assert_eq!(parse(text), Ok(want.clone()), "{text}");
            let shown = want.to_string();
            assert_eq!(parse(&shown), Ok(want), "{shown} round-trips");
        }
    }

    #[test]
    fn bad_buckets_and_prefixes_are_refused() {
        assert!(matches!(parse("s3://"), Err(LocationError::NoBucket(_))));
        assert!(matches!(parse("s3:///x"), Err(LocationError::NoBucket(_))));
        for bad in ["s3://Music", "s3://ab", "s3://a_b/c"] {
            assert!(
                matches!(parse(bad), Err(LocationError::BadBucket(_))),
                "{bad}"
            );
        }
        for bad in ["s3://music/a//b", "s3://music/../x", "s3://music/./x"] {
            assert!(
                matches!(parse(bad), Err(LocationError::BadPrefix(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn locations_cross_the_worker_boundary() {
        use std::os::unix::ffi::OsStringExt;
        let odd = PathBuf::from(std::ffi::OsString::from_vec(b"lib\xff".to_vec()));
        for location in [LibraryLocation::Dir(odd), parse("s3://music/prod").unwrap()] {
            let json = serde_json::to_string(&location).unwrap();
            assert_eq!(
                serde_json::from_str::<LibraryLocation>(&json).unwrap(),
                location
            );
        }
    }
}
