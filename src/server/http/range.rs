//! Range requests (RFC 9110 14): parse a `Range` field against a representation's length and
//! decide what to send.
//!
//! Why no crate: tower-http has range support only inside `ServeDir`/`ServeFile`, for files it
//! opens itself (our bodies are in-memory entities, sent from held descriptors), and there it
//! answers any multi-range request with 416 where RFC 9110 14.6 and REDbot expect
//! multipart/byteranges; it has no amplification bounds. The `headers` crate (not a dependency;
//! axum's typed headers are off) only tokenizes `Range`: it silently drops a malformed spec and
//! keeps the others, where 14.2 lets a server ignore or reject an invalid ranges-specifier (we
//! ignore it), and the 416/206/multipart decision and the bounds below would still be ours. The
//! parser is forty lines; the rules are the point of this module.
//!
//! Only the `bytes` unit is understood; any other unit, and any syntactically invalid field, is
//! ignored (14.2: a server MAY ignore the field), which means a 200 with the whole body. Each
//! range-spec is resolved against the length (14.1.2): `first-last` (last clamped to the end),
//! `first-` (to the end) and `-suffix` (the last `suffix` bytes); a spec whose first byte is past
//! the end, or a zero suffix, is unsatisfiable. If no spec is satisfiable the answer is 416; if
//! one is, a single-part 206; if several are, a multipart/byteranges 206 (14.6) in the order
//! asked. To refuse amplification (14.2 and 17.15: many small or overlapping ranges), more than
//! [`MAX_RANGES`] specs, overlapping specs, or a total larger than twice the length get the whole
//! body instead.

use bytes::{BufMut, Bytes, BytesMut};

/// Most range-specs honoured in one request; more get the whole body.
pub const MAX_RANGES: usize = 16;

/// An inclusive byte range `start..=end` within a representation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    /// First byte offset.
    pub start: u64,
    /// Last byte offset (inclusive).
    pub end: u64,
}

impl ByteRange {
    /// Number of bytes in the range.
    pub fn len(&self) -> u64 {
        self.end - self.start + 1
    }

    /// Always false: a resolved range holds at least one byte.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The `Content-Range` value for this range of a `complete`-byte representation.
    pub fn content_range(&self, complete: u64) -> String {
        format!("bytes {}-{}/{complete}", self.start, self.end)
    }

    fn slice(&self, body: &Bytes) -> Bytes {
        // Resolved ranges lie inside the body by construction (end < len), so this cannot panic.
        body.slice(self.start as usize..=self.end as usize)
    }
}

/// What to send for a request with a Range field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangePlan {
    /// Ignore the field: 200 with the whole representation.
    Full,
    /// No satisfiable range: 416 with `Content-Range: bytes */LEN`.
    Unsatisfiable,
    /// One range: 206 with a Content-Range.
    Single(ByteRange),
    /// Several non-overlapping ranges: 206 multipart/byteranges, in the order requested.
    Multiple(Vec<ByteRange>),
}

/// One range-spec as written (before resolving against a length).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spec {
    /// `first-` or `first-last`.
    From(u64, Option<u64>),
    /// `-suffix`.
    Suffix(u64),
}

/// Digits to a number, saturating: a huge last-pos still means "to the end".
fn number(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(text.bytes().fold(0u64, |n, d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
}

/// Parses `bytes=` range-set; `None` for another unit or invalid syntax.
fn parse(value: &str) -> Option<Vec<Spec>> {
    let (unit, set) = value.trim().split_once('=')?;
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return None;
    }
    let mut specs = Vec::new();
    // 1#range-spec: empty list elements are allowed and skipped (RFC 9110 5.6.1.2).
    for spec in set.split(',').map(|s| s.trim_matches([' ', '\t'])) {
        if spec.is_empty() {
            continue;
        }
        let (first, last) = spec.split_once('-')?;
        specs.push(if first.is_empty() {
            Spec::Suffix(number(last)?)
        } else {
            let first = number(first)?;
            let last = if last.is_empty() {
                None
            } else {
                Some(number(last)?)
            };
            if last.is_some_and(|l| l < first) {
                return None; // invalid int-range (14.1.1)
            }
            Spec::From(first, last)
        });
    }
    (!specs.is_empty()).then_some(specs)
}

/// Resolves a spec against a length; `None` if unsatisfiable.
fn resolve(spec: Spec, len: u64) -> Option<ByteRange> {
    match spec {
        Spec::From(first, _) if first >= len => None,
        Spec::From(first, last) => Some(ByteRange {
            start: first,
            end: last.map_or(len - 1, |l| l.min(len - 1)),
        }),
        Spec::Suffix(0) => None,
        Spec::Suffix(_) if len == 0 => None,
        Spec::Suffix(n) => Some(ByteRange {
            start: len.saturating_sub(n),
            end: len - 1,
        }),
    }
}

/// Decides what to send for the Range field `value` on a representation of `len` bytes.
pub fn plan(value: &str, len: u64) -> RangePlan {
    let Some(specs) = parse(value) else {
        return RangePlan::Full;
    };
    if specs.len() > MAX_RANGES {
        return RangePlan::Full;
    }
    let ranges: Vec<ByteRange> = specs.into_iter().filter_map(|s| resolve(s, len)).collect();
    match ranges.as_slice() {
        [] => RangePlan::Unsatisfiable,
        [one] => RangePlan::Single(*one),
        _ => {
            let mut sorted = ranges.clone();
            sorted.sort_by_key(|r| r.start);
            let overlap = sorted.windows(2).any(|w| w[1].start <= w[0].end);
            let total: u64 = ranges.iter().map(ByteRange::len).sum();
            if overlap || total > len.saturating_mul(2) {
                RangePlan::Full
            } else {
                RangePlan::Multiple(ranges)
            }
        }
    }
}

/// The `Content-Range` value of a 416 response (RFC 9110 14.4).
pub fn unsatisfied_range(len: u64) -> String {
    format!("bytes */{len}")
}

/// The body of a single-range 206.
pub fn single_part(body: &Bytes, range: ByteRange) -> Bytes {
    range.slice(body)
}

/// A multipart/byteranges body (RFC 9110 14.6, RFC 2046 5.1.1): each part carries the
/// representation's Content-Type and its Content-Range. `boundary` must not occur in `body`.
pub fn multipart(body: &Bytes, ranges: &[ByteRange], content_type: &str, boundary: &str) -> Bytes {
    let len = body.len() as u64;
    let mut out = BytesMut::new();
    for range in ranges {
        let head = format!(
            "--{boundary}\r\nContent-Type: {content_type}\r\nContent-Range: {}\r\n\r\n",
            range.content_range(len)
        );
        out.put_slice(head.as_bytes());
        out.put_slice(&range.slice(body));
        out.put_slice(b"\r\n");
    }
    out.put_slice(format!("--{boundary}--\r\n").as_bytes());
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start: u64, end: u64) -> ByteRange {
        ByteRange { start, end }
    }

    #[test]
    fn single_ranges_resolve_per_rfc_9110_14_1_2() {
        assert_eq!(plan("bytes=0-99", 1000), RangePlan::Single(r(0, 99)));
        assert_eq!(plan("bytes=100-", 1000), RangePlan::Single(r(100, 999)));
        assert_eq!(plan("bytes=-500", 1000), RangePlan::Single(r(500, 999)));
        assert_eq!(plan("bytes=-5000", 1000), RangePlan::Single(r(0, 999)));
        assert_eq!(plan("bytes=990-2000", 1000), RangePlan::Single(r(990, 999)));
        let huge = "bytes=0-99999999999999999999999999";
        assert_eq!(plan(huge, 1000), RangePlan::Single(r(0, 999)));
        assert_eq!(
            plan(" BYTES = 5-5 ", 10),
            RangePlan::Single(r(5, 5)),
            "unit is case-insensitive"
        );
    }

    #[test]
    fn unsatisfiable_ranges_get_416() {
        assert_eq!(plan("bytes=1000-", 1000), RangePlan::Unsatisfiable);
        assert_eq!(plan("bytes=-0", 1000), RangePlan::Unsatisfiable);
        assert_eq!(
            plan("bytes=5000-6000,2000-", 1000),
            RangePlan::Unsatisfiable
        );
        assert_eq!(plan("bytes=0-0", 0), RangePlan::Unsatisfiable);
        assert_eq!(unsatisfied_range(1000), "bytes */1000");
    }

    #[test]
    fn unknown_units_and_bad_syntax_are_ignored() {
        for value in [
            "items=0-5",
            "bytes",
            "bytes=",
            "bytes=5-1",
            "bytes=a-b",
            "bytes=1-2-3",
            "bytes=--1",
            "bytes=+1-2",
            "0-5",
            "bytes=0x10-",
        ] {
            assert_eq!(plan(value, 1000), RangePlan::Full, "{value}");
        }
    }

    #[test]
    fn mixed_ranges_keep_the_satisfiable_ones() {
        assert_eq!(plan("bytes=0-9, 5000-", 1000), RangePlan::Single(r(0, 9)));
        assert_eq!(
            plan("bytes=500-599,,0-9", 1000),
            RangePlan::Multiple(vec![r(500, 599), r(0, 9)])
        );
        assert_eq!(
            plan("bytes=0-9,10-19", 1000),
            RangePlan::Multiple(vec![r(0, 9), r(10, 19)]),
            "adjacent is not overlapping"
        );
    }

    #[test]
    fn amplifying_range_sets_get_the_whole_body() {
        assert_eq!(plan("bytes=0-9,5-20", 1000), RangePlan::Full, "overlap");
        assert_eq!(plan("bytes=0-,0-", 1000), RangePlan::Full, "overlap");
        let many: Vec<String> = (0..17)
            .map(|i| format!("{}-{}", i * 10, i * 10 + 1))
            .collect();
        assert_eq!(
            plan(&format!("bytes={}", many.join(",")), 1000),
            RangePlan::Full
        );
        let sixteen = format!("bytes={}", many[..16].join(","));
        assert!(matches!(plan(&sixteen, 1000), RangePlan::Multiple(v) if v.len() == 16));
    }

    #[test]
    fn multipart_body_is_framed_per_rfc_2046() {
        let body = Bytes::from_static(b"0123456789");
        let out = multipart(&body, &[r(8, 9), r(0, 1)], "audio/mp4", "B");
        let expected = "--B\r\nContent-Type: audio/mp4\r\nContent-Range: bytes 8-9/10\r\n\r\n89\r\n\
                        --B\r\nContent-Type: audio/mp4\r\nContent-Range: bytes 0-1/10\r\n\r\n01\r\n\
                        --B--\r\n";
        assert_eq!(out, expected.as_bytes());
        assert_eq!(single_part(&body, r(3, 5)), "345".as_bytes());
    }
}
