//! Conditional requests (RFC 9110 13): entity tags, their two comparison functions, and the
//! evaluation of the preconditions in the order of RFC 9110 13.2.2.
//!
//! Why no crate: tower-http has no conditional-request layer (its `ServeDir` checks the two
//! date fields only, and sends no ETag). The `headers` crate parses the fields into types and
//! compares a tag list, but leaves the 13.2.2 order, the 304/412 choice and the per-coding tags
//! ([`EntityTag::with_suffix`]) to the caller, and its `IfRange::is_modified` treats a date as
//! If-Modified-Since does (`since < last_modified`), where 13.1.5 asks for an exact match with a
//! Last-Modified that is a strong validator; a stale range would be spliced onto a changed
//! file. It is also not a dependency today. So the parsing (tags, tag lists, dates through
//! `httpdate`) and the evaluation stay here, each with its section of the RFC.
//!
//! The order matters: If-Match, then If-Unmodified-Since only when If-Match is absent, then
//! If-None-Match, then If-Modified-Since only when If-None-Match is absent (so a client that
//! sends both gets the answer of the more precise validator), and If-Range last, only to decide
//! whether a Range may be honoured. Dates compare at one-second resolution, the resolution of an
//! HTTP-date, so `Last-Modified` is always the modification time truncated to whole seconds.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, HeaderName, Method, header};

/// An entity tag (RFC 9110 8.8.3): an opaque string, strong unless marked weak.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityTag {
    weak: bool,
    opaque: String,
}

impl EntityTag {
    /// A strong tag with the given opaque value (without quotes; must not contain `"`).
    pub fn strong(opaque: impl Into<String>) -> Self {
        EntityTag {
            weak: false,
            opaque: opaque.into(),
        }
    }

    /// The same tag with `suffix` appended to its opaque value (the tag of another
    /// representation of the same content, e.g. its gzip encoding).
    pub fn with_suffix(&self, suffix: &str) -> Self {
        EntityTag {
            weak: self.weak,
            opaque: format!("{}{suffix}", self.opaque),
        }
    }

    /// The opaque value, without quotes.
    pub fn opaque(&self) -> &str {
        &self.opaque
    }

    /// The field value, e.g. `"abc"` or `W/"abc"`.
    pub fn to_header(&self) -> String {
        let weak = if self.weak { "W/" } else { "" };
        format!("{weak}\"{}\"", self.opaque)
    }

    /// Strong comparison (RFC 9110 8.8.3.2): both strong and the same opaque value.
    pub fn strong_eq(&self, other: &EntityTag) -> bool {
        !self.weak && !other.weak && self.opaque == other.opaque
    }

    /// Weak comparison (RFC 9110 8.8.3.2): the same opaque value, weak or not.
    pub fn weak_eq(&self, other: &EntityTag) -> bool {
        self.opaque == other.opaque
    }
}

/// The value of an If-Match or If-None-Match field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagList {
    /// `*`: any current representation.
    Any,
    /// A list of entity tags.
    Tags(Vec<EntityTag>),
}

/// Parses one entity-tag at the start of `text`; returns it and the rest.
fn parse_tag(text: &str) -> Option<(EntityTag, &str)> {
    let (weak, text) = match text.strip_prefix("W/") {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let body = text.strip_prefix('"')?;
    let end = body.find('"')?;
    let opaque = &body[..end];
    // etagc = %x21 / %x23-7E / obs-text: visible characters except DQUOTE.
    if !opaque
        .bytes()
        .all(|b| b == 0x21 || (0x23..=0x7e).contains(&b) || b >= 0x80)
    {
        return None;
    }
    let tag = EntityTag {
        weak,
        opaque: opaque.to_string(),
    };
    Some((tag, &body[end + 1..]))
}

/// Parses `*` or a comma-separated list of entity-tags (empty list elements are allowed, RFC 9110
/// 5.6.1.2); `None` if malformed, in which case the field is ignored.
pub fn parse_tag_list(value: &str) -> Option<TagList> {
    if value.trim() == "*" {
        return Some(TagList::Any);
    }
    let mut tags = Vec::new();
    let mut rest = value.trim_start_matches([' ', '\t', ',']);
    while !rest.is_empty() {
        let (tag, after) = parse_tag(rest)?;
        tags.push(tag);
        let after = after.trim_start_matches([' ', '\t']);
        if !after.is_empty() && !after.starts_with(',') {
            return None;
        }
        rest = after.trim_start_matches([' ', '\t', ',']);
    }
    (!tags.is_empty()).then_some(TagList::Tags(tags))
}

/// Every instance of a list field joined with commas, as RFC 9110 5.3 allows; `None` if absent
/// or not text.
fn list_field(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let mut values = headers.get_all(name).iter().peekable();
    values.peek()?;
    let texts: Option<Vec<&str>> = values.map(|v| v.to_str().ok()).collect();
    Some(texts?.join(","))
}

fn tag_list(headers: &HeaderMap, name: &HeaderName) -> Option<TagList> {
    list_field(headers, name).and_then(|v| parse_tag_list(&v))
}

/// An HTTP-date field, `None` if absent or invalid (an invalid date is ignored, RFC 9110 13.1.3).
fn date_field(headers: &HeaderMap, name: &HeaderName) -> Option<SystemTime> {
    let value = headers.get(name)?.to_str().ok()?;
    httpdate::parse_http_date(value.trim()).ok()
}

/// `time` truncated to whole seconds, the resolution of an HTTP-date.
pub fn to_seconds(time: SystemTime) -> SystemTime {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d: Duration| d.as_secs());
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// The validators of the selected representation.
#[derive(Debug, Clone, Copy)]
pub struct Validators<'a> {
    /// Its entity tag.
    pub etag: &'a EntityTag,
    /// Its modification time, if it has one.
    pub last_modified: Option<SystemTime>,
}

/// The outcome of evaluating the preconditions of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    /// Every precondition holds (or none was sent): perform the request.
    Proceed,
    /// If-None-Match or If-Modified-Since failed on a GET or HEAD: 304 Not Modified.
    NotModified,
    /// If-Match or If-Unmodified-Since failed: 412 Precondition Failed.
    Failed,
}

/// Evaluates If-Match, If-Unmodified-Since, If-None-Match and If-Modified-Since in the order of
/// RFC 9110 13.2.2 for a request that would otherwise succeed. `now` is the response's Date.
pub fn evaluate(
    method: &Method,
    headers: &HeaderMap,
    v: Validators<'_>,
    now: SystemTime,
) -> Precondition {
    let last_modified = v.last_modified.map(to_seconds);
    let get_or_head = method == Method::GET || method == Method::HEAD;
    // 1. If-Match (13.1.1): strong comparison.
    if let Some(list) = tag_list(headers, &header::IF_MATCH) {
        let holds = match list {
            TagList::Any => true,
            TagList::Tags(tags) => tags.iter().any(|t| t.strong_eq(v.etag)),
        };
        if !holds {
            return Precondition::Failed;
        }
    } else if let (Some(since), Some(lm)) = (
        date_field(headers, &header::IF_UNMODIFIED_SINCE),
        last_modified,
    ) && !headers.contains_key(header::IF_MATCH)
        && lm > since
    {
        // 2. If-Unmodified-Since (13.1.4), only without If-Match.
        return Precondition::Failed;
    }
    // 3. If-None-Match (13.1.2): weak comparison.
    if let Some(list) = tag_list(headers, &header::IF_NONE_MATCH) {
        let matches = match list {
            TagList::Any => true,
            TagList::Tags(tags) => tags.iter().any(|t| t.weak_eq(v.etag)),
        };
        return match (matches, get_or_head) {
            (false, _) => Precondition::Proceed,
            (true, true) => Precondition::NotModified,
            (true, false) => Precondition::Failed,
        };
    }
    // 4. If-Modified-Since (13.1.3), only without If-None-Match and only for GET/HEAD; a date
    // in the future is invalid and ignored.
    if get_or_head
        && !headers.contains_key(header::IF_NONE_MATCH)
        && let (Some(since), Some(lm)) = (
            date_field(headers, &header::IF_MODIFIED_SINCE),
            last_modified,
        )
        && since <= now
        && lm <= since
    {
        return Precondition::NotModified;
    }
    Precondition::Proceed
}

/// Whether a Range may be honoured given If-Range (RFC 9110 13.1.5): true without If-Range;
/// with an entity-tag, only if it strongly matches; with a date, only if it equals the
/// Last-Modified time and that time is a strong validator (at least one second before `now`,
/// 8.8.2.2). Anything else means "send the whole representation".
pub fn if_range_allows_range(headers: &HeaderMap, v: Validators<'_>, now: SystemTime) -> bool {
    let Some(value) = headers.get(header::IF_RANGE) else {
        return true;
    };
    let Ok(value) = value.to_str() else {
        return false;
    };
    let value = value.trim();
    if value.starts_with('"') || value.starts_with("W/") {
        return match parse_tag(value) {
            Some((tag, rest)) if rest.trim().is_empty() => tag.strong_eq(v.etag),
            _ => false,
        };
    }
    let (Ok(date), Some(lm)) = (httpdate::parse_http_date(value), v.last_modified) else {
        return false;
    };
    let lm = to_seconds(lm);
    date == lm && lm + Duration::from_secs(1) <= now
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(*name, HeaderValue::from_str(value).unwrap());
        }
        h
    }

    const LM: u64 = 1_700_000_000;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn date(secs: u64) -> String {
        httpdate::fmt_http_date(at(secs))
    }

    fn eval(method: Method, pairs: &[(&HeaderName, &str)]) -> Precondition {
        let etag = EntityTag::strong("abc");
        let v = Validators {
            etag: &etag,
            // Sub-second part is ignored: Last-Modified is sent in whole seconds.
            last_modified: Some(at(LM) + Duration::from_millis(700)),
        };
        evaluate(&method, &headers(pairs), v, at(LM + 100))
    }

    use Precondition::*;

    #[test]
    fn tag_lists_parse_per_the_grammar() {
        let list = parse_tag_list(r#" "a", W/"b",,"c,d" "#).unwrap();
        let TagList::Tags(tags) = list else { panic!() };
        assert_eq!(tags.len(), 3);
        assert!(tags[1].weak && tags[2].opaque == "c,d");
        assert_eq!(parse_tag_list("*"), Some(TagList::Any));
        for bad in [
            "abc",
            "\"a\" \"b\"",
            "\"a",
            "W/abc",
            "",
            "\"a\"x",
            "\"a\" , *",
        ] {
            assert_eq!(parse_tag_list(bad), None, "{bad}");
        }
    }

    #[test]
    fn comparisons_follow_rfc_9110_8_8_3_2() {
        let (s, w) = (EntityTag::strong("1"), parse_tag("W/\"1\"").unwrap().0);
        assert!(s.strong_eq(&s) && !s.strong_eq(&w) && !w.strong_eq(&w));
        assert!(s.weak_eq(&w) && w.weak_eq(&w));
        assert_eq!(w.to_header(), "W/\"1\"");
        assert_eq!(s.with_suffix("-gz").to_header(), "\"1-gz\"");
    }

    #[test]
    fn if_none_match_uses_weak_comparison_star_and_lists() {
        let inm = &header::IF_NONE_MATCH;
        assert_eq!(eval(Method::GET, &[(inm, "\"abc\"")]), NotModified);
        assert_eq!(eval(Method::GET, &[(inm, "W/\"abc\"")]), NotModified);
        assert_eq!(eval(Method::HEAD, &[(inm, "*")]), NotModified);
        assert_eq!(eval(Method::GET, &[(inm, "\"x\", \"abc\"")]), NotModified);
        assert_eq!(
            eval(Method::GET, &[(inm, "\"x\""), (inm, "\"abc\"")]),
            NotModified
        );
        assert_eq!(eval(Method::GET, &[(inm, "\"x\"")]), Proceed);
        assert_eq!(eval(Method::POST, &[(inm, "*")]), Failed);
    }

    #[test]
    fn if_none_match_takes_precedence_over_if_modified_since() {
        let (inm, ims) = (&header::IF_NONE_MATCH, &header::IF_MODIFIED_SINCE);
        // The tag differs, so the fresh date must not turn this into a 304.
        assert_eq!(
            eval(Method::GET, &[(inm, "\"old\""), (ims, &date(LM))]),
            Proceed
        );
        // An unparsable If-None-Match still disables If-Modified-Since.
        assert_eq!(
            eval(Method::GET, &[(inm, "junk"), (ims, &date(LM))]),
            Proceed
        );
    }

    #[test]
    fn if_modified_since_compares_whole_seconds_and_ignores_bad_dates() {
        let ims = &header::IF_MODIFIED_SINCE;
        assert_eq!(eval(Method::GET, &[(ims, &date(LM))]), NotModified);
        assert_eq!(eval(Method::GET, &[(ims, &date(LM + 5))]), NotModified);
        assert_eq!(eval(Method::GET, &[(ims, &date(LM - 1))]), Proceed);
        assert_eq!(
            eval(Method::GET, &[(ims, &date(LM + 1000))]),
            Proceed,
            "future"
        );
        assert_eq!(eval(Method::GET, &[(ims, "yesterday")]), Proceed);
        assert_eq!(eval(Method::POST, &[(ims, &date(LM))]), Proceed);
        // RFC 850 and asctime forms are accepted too (RFC 9110 5.6.7).
        let rfc850 = "Tuesday, 14-Nov-23 22:13:20 GMT";
        assert_eq!(eval(Method::GET, &[(ims, rfc850)]), NotModified);
    }

    #[test]
    fn if_match_and_if_unmodified_since_fail_with_412() {
        let (im, ius) = (&header::IF_MATCH, &header::IF_UNMODIFIED_SINCE);
        assert_eq!(eval(Method::GET, &[(im, "\"abc\"")]), Proceed);
        assert_eq!(eval(Method::GET, &[(im, "*")]), Proceed);
        assert_eq!(eval(Method::GET, &[(im, "W/\"abc\"")]), Failed, "strong");
        assert_eq!(eval(Method::GET, &[(ius, &date(LM - 1))]), Failed);
        assert_eq!(eval(Method::GET, &[(ius, &date(LM))]), Proceed);
        // If-Match wins over If-Unmodified-Since.
        assert_eq!(
            eval(Method::GET, &[(im, "\"abc\""), (ius, &date(1))]),
            Proceed
        );
    }

    #[test]
    fn if_range_needs_a_strong_exact_validator() {
        let etag = EntityTag::strong("abc");
        let v = Validators {
            etag: &etag,
            last_modified: Some(at(LM)),
        };
        let ir = &header::IF_RANGE;
        let ok =
            |value: &str, now: u64| if_range_allows_range(&headers(&[(ir, value)]), v, at(now));
        assert!(if_range_allows_range(&HeaderMap::new(), v, at(LM)));
        assert!(ok("\"abc\"", LM + 10));
        assert!(!ok("\"abd\"", LM + 10), "stale tag");
        assert!(!ok("W/\"abc\"", LM + 10), "weak tag");
        assert!(ok(&date(LM), LM + 10));
        assert!(!ok(&date(LM - 1), LM + 10), "stale date");
        assert!(!ok(&date(LM + 1), LM + 10), "not an exact match");
        assert!(!ok(&date(LM), LM), "Last-Modified too recent to be strong");
        assert!(!ok("garbage", LM + 10));
    }
}
