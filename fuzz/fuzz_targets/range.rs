//! The Range field planner the server runs on every ranged GET and HEAD
//! (`segue::server::http::range`), and the 206 bodies built from its plan.
//!
//! Input: `LEN\nVALUE` (LEN decimal, the representation's length; without a valid LEN line the
//! whole input is the value and LEN is 1000), so seeds are readable text. Checked:
//! - every planned range lies inside the representation, a single range is non-empty, a
//!   multi-range plan has 2 to `MAX_RANGES` parts that do not overlap (so it sends at most the
//!   length), as the module doc promises against amplification;
//! - for the field values the server can receive (`HeaderValue::to_str` passes only visible ASCII,
//!   SP and HTAB), the plan equals that of a reference written from the module doc and
//!   RFC 9110 14.1-14.2;
//! - for bodies up to 64 KiB, the single-part and multipart bodies carry exactly the planned
//!   bytes, framed per RFC 9110 14.6 / RFC 2046 5.1.1.

#![no_main]

use libfuzzer_sys::fuzz_target;
use segue::server::http::range::{self, ByteRange, MAX_RANGES, RangePlan};

/// Lengths above this are clamped: a body is held in memory, so real lengths are far below
/// (2^48 bytes = 256 TiB). Near `u64::MAX / 16` the planner's sum of range lengths could
/// overflow, which no real body reaches.
const MAX_LEN: u64 = 1 << 48;
/// Bodies up to this length are built and sliced.
const MAX_BODY: u64 = 64 << 10;

fuzz_target!(init: segue_fuzz::init(), |data: &[u8]| {
    let (len, value) = split(data);
    let plan = range::plan(&value, len);
    check_plan(&plan, len);
    if value.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b)) {
        assert_eq!(plan, reference::plan(&value, len), "{value:?} on {len} bytes");
    }
    // Surrounding whitespace and the unit's case never change the answer.
    assert_eq!(range::plan(&format!(" \t{value}\t "), len), plan);
    if len <= MAX_BODY {
        check_bodies(&plan, len);
    }
});

/// The length and the field value of an input.
fn split(data: &[u8]) -> (u64, String) {
    let text = String::from_utf8_lossy(data);
    if let Some((first, rest)) = text.split_once('\n')
        && !first.is_empty()
        && first.len() <= 20
        && first.bytes().all(|b| b.is_ascii_digit())
    {
        let len = first.parse::<u64>().unwrap_or(u64::MAX).min(MAX_LEN);
        return (len, rest.to_string());
    }
    (1000, text.into_owned())
}

fn check_range(r: &ByteRange, len: u64) {
    assert!(r.start <= r.end, "{r:?}");
    assert!(r.end < len, "{r:?} outside {len} bytes");
    assert_eq!(r.len(), r.end - r.start + 1);
    assert_eq!(
        r.content_range(len),
        format!("bytes {}-{}/{len}", r.start, r.end)
    );
}

fn check_plan(plan: &RangePlan, len: u64) {
    match plan {
        RangePlan::Full | RangePlan::Unsatisfiable => {}
        RangePlan::Single(r) => check_range(r, len),
        RangePlan::Multiple(ranges) => {
            assert!(
                (2..=MAX_RANGES).contains(&ranges.len()),
                "{} parts",
                ranges.len()
            );
            ranges.iter().for_each(|r| check_range(r, len));
            let mut sorted = ranges.clone();
            sorted.sort_by_key(|r| r.start);
            for pair in sorted.windows(2) {
                assert!(pair[0].end < pair[1].start, "overlap: {pair:?}");
            }
            let total: u64 = ranges.iter().map(ByteRange::len).sum();
            assert!(total <= len, "{total} bytes planned from {len}");
        }
    }
}

fn check_bodies(plan: &RangePlan, len: u64) {
    let body: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    let body = bytes::Bytes::from(body);
    match plan {
        RangePlan::Single(r) => {
            let part = range::single_part(&body, *r);
            assert_eq!(&part[..], &body[r.start as usize..=r.end as usize]);
        }
        RangePlan::Multiple(ranges) => {
            let (boundary, content_type) = ("segue-byteranges-0123", "audio/mp4");
            let out = range::multipart(&body, ranges, content_type, boundary);
            let mut rest = &out[..];
            for r in ranges {
                let head = format!(
                    "--{boundary}\r\nContent-Type: {content_type}\r\nContent-Range: bytes {}-{}/{len}\r\n\r\n",
                    r.start, r.end
                );
                rest = rest.strip_prefix(head.as_bytes()).expect("part header");
                let part = &body[r.start as usize..=r.end as usize];
                rest = rest.strip_prefix(part).expect("part body");
                rest = rest.strip_prefix(b"\r\n").expect("part end");
            }
            assert_eq!(rest, format!("--{boundary}--\r\n").as_bytes());
        }
        RangePlan::Full | RangePlan::Unsatisfiable => {}
    }
}

/// The planner as the module doc and RFC 9110 14.1-14.2 describe it, for ASCII field values
/// (where `str::trim` trims exactly SP and HTAB), written without looking at its code's shape.
mod reference {
    use super::{ByteRange, MAX_RANGES, RangePlan};

    enum Spec {
        Int { first: u64, last: Option<u64> },
        Suffix(u64),
    }

    /// `1*DIGIT`; values past `u64::MAX` saturate ("a huge last-pos still means to the end").
    fn digits(s: &str) -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let mut n: u128 = 0;
        for b in s.bytes() {
            n = (n * 10 + u128::from(b - b'0')).min(u128::from(u64::MAX));
        }
        Some(n as u64)
    }

    /// `bytes=range-set` with OWS around `=`, the value and list elements; `None` if invalid.
    fn specs(value: &str) -> Option<Vec<Spec>> {
        let ows = |c: char| c == ' ' || c == '\t';
        let value = value.trim_matches(ows);
        let eq = value.find('=')?;
        if !value[..eq].trim_matches(ows).eq_ignore_ascii_case("bytes") {
            return None;
        }
        let mut out = Vec::new();
        for element in value[eq + 1..].split(',') {
            let element = element.trim_matches(ows);
            if element.is_empty() {
                continue; // empty list elements are ignored (RFC 9110 5.6.1.2)
            }
            let dash = element.find('-')?;
            let (first, last) = (&element[..dash], &element[dash + 1..]);
            out.push(match (first.is_empty(), last.is_empty()) {
                (true, _) => Spec::Suffix(digits(last)?),
                (false, true) => Spec::Int {
                    first: digits(first)?,
                    last: None,
                },
                (false, false) => {
                    let (first, last) = (digits(first)?, digits(last)?);
                    if last < first {
                        return None;
                    }
                    Spec::Int {
                        first,
                        last: Some(last),
                    }
                }
            });
        }
        if out.is_empty() { None } else { Some(out) }
    }

    pub fn plan(value: &str, len: u64) -> RangePlan {
        let Some(specs) = specs(value) else {
            return RangePlan::Full;
        };
        if specs.len() > MAX_RANGES {
            return RangePlan::Full;
        }
        let mut ranges = Vec::new();
        for spec in specs {
            match spec {
                Spec::Int { first, last } if first < len => ranges.push(ByteRange {
                    start: first,
                    end: last.unwrap_or(u64::MAX).min(len - 1),
                }),
                Spec::Suffix(n) if n > 0 && len > 0 => ranges.push(ByteRange {
                    start: len - n.min(len),
                    end: len - 1,
                }),
                _ => {} // unsatisfiable (RFC 9110 14.1.2)
            }
        }
        if ranges.is_empty() {
            return RangePlan::Unsatisfiable;
        }
        if ranges.len() == 1 {
            return RangePlan::Single(ranges[0]);
        }
        let overlapping = ranges.iter().enumerate().any(|(i, a)| {
            ranges[i + 1..]
                .iter()
                .any(|b| a.start <= b.end && b.start <= a.end)
        });
        let total: u128 = ranges.iter().map(|r| u128::from(r.end - r.start + 1)).sum();
        if overlapping || total > 2 * u128::from(len) {
            RangePlan::Full
        } else {
            RangePlan::Multiple(ranges)
        }
    }
}
