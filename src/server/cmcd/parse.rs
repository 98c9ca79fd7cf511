//! The CMCD grammar (CTA-5004 3.2) and its two transmissions (CTA-5004 2.1 headers, 2.2 query
//! argument): strict and total, see the parent module.

use axum::http::{HeaderMap, HeaderName};

/// Longest payload read, in bytes after percent-decoding (per header, or the query argument);
/// anything longer is invalid unread. Every key CTA-5004 defines fits in a few hundred bytes.
pub const MAX_PAYLOAD_BYTES: usize = 2048;
/// Most pairs in one payload (CTA-5004 defines 20 keys).
const MAX_PAIRS: usize = 48;
/// Longest key (custom keys are reverse-DNS names, CTA-5004 3.1).
const MAX_KEY_BYTES: usize = 64;
/// Longest `sid` (CTA-5004 3.3: "maximum length is 64 characters").
const MAX_SID_CHARS: usize = 64;

/// The four CMCD header fields (CTA-5004 2.1).
const HEADERS: [&str; 4] = ["cmcd-request", "cmcd-object", "cmcd-status", "cmcd-session"];

/// Why a CMCD payload was ignored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CmcdError {
    /// Longer than [`MAX_PAYLOAD_BYTES`] (or too many pairs, or an overlong key or value).
    #[error("payload too long")]
    TooLong,
    /// A `%` not followed by two hex digits, or bytes that are not UTF-8 once decoded.
    #[error("bad percent-encoding")]
    BadEncoding,
    /// Not the CTA-5004 grammar at byte `at`.
    #[error("syntax error at byte {at}")]
    Syntax {
        /// Offset in the decoded payload.
        at: usize,
    },
    /// The same key twice (in one payload or across the headers).
    #[error("duplicate key {0}")]
    DuplicateKey(String),
    /// A key the origin reads has a value of the wrong type or out of range.
    #[error("bad value for {0}")]
    BadValue(&'static str),
}

/// The CMCD keys the origin uses; the others are checked for syntax only.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Cmcd {
    /// `sid`: session id, the same for every request of one playback session.
    pub sid: Option<String>,
    /// `nor`: the next object the player will request, relative to this request (decoded).
    pub nor: Option<String>,
    /// `bl`: buffer length, in milliseconds.
    pub bl: Option<u64>,
    /// `mtp`: measured throughput, in kilobits per second.
    pub mtp: Option<u64>,
}

/// Where a request carried its CMCD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transmission {
    /// The `CMCD` query argument.
    Query,
    /// The `CMCD-*` header fields.
    Headers,
}

impl Transmission {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Transmission::Query => "query",
            Transmission::Headers => "headers",
        }
    }
}

/// One parsed value.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    /// A key alone: boolean true.
    True,
    /// An integer (CTA-5004 Integer; also the integer part of nothing else).
    Integer(u64),
    /// A string, unescaped.
    String(String),
    /// Anything else unquoted (a token, a decimal, a negative number).
    Token,
}

/// The CMCD of a request, if it carries any: the query argument when present (a player uses
/// one mode), else the header fields. `query` is the raw query string of the request URI.
pub fn from_request(
    query: Option<&str>,
    headers: &HeaderMap,
) -> Option<(Transmission, Result<Cmcd, CmcdError>)> {
    if let Some(encoded) = query.and_then(query_argument) {
        return Some((
            Transmission::Query,
            percent_decode(encoded).and_then(|p| parse(&p)),
        ));
    }
    let mut present = HEADERS
        .iter()
        .map(|name| headers.get_all(HeaderName::from_static(name)))
        .filter(|values| values.iter().next().is_some())
        .peekable();
    present.peek()?;
    let mut merged = Vec::new();
    for values in present {
        let mut values = values.iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            // Two fields of one name: RFC 9110 5.3 would join them with a comma, which is
            // CMCD's own separator; players send one, so two is a malformed request.
            return Some((Transmission::Headers, Err(CmcdError::Syntax { at: 0 })));
        };
        let Ok(text) = value.to_str() else {
            return Some((Transmission::Headers, Err(CmcdError::BadEncoding)));
        };
        match pairs(text) {
            Ok(pairs) => merged.extend(pairs),
            Err(e) => return Some((Transmission::Headers, Err(e))),
        }
    }
    Some((Transmission::Headers, typed(merged)))
}

/// The raw value of the `CMCD` argument of a query string (the last one wins nothing: a second
/// `CMCD` argument makes the first one the one read, the others are ignored).
fn query_argument(query: &str) -> Option<&str> {
    query
        .split('&')
        .find_map(|argument| argument.strip_prefix("CMCD="))
}

/// Decodes `%XX` escapes strictly (RFC 3986 2.1): a bad escape or non-UTF-8 result is an error,
/// not passed through as a lenient decoder would. `+` stays `+` (players encode with
/// `encodeURIComponent`, which writes a space as `%20`).
fn percent_decode(encoded: &str) -> Result<String, CmcdError> {
    if encoded.len() > MAX_PAYLOAD_BYTES * 3 {
        return Err(CmcdError::TooLong);
    }
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = |b: Option<&u8>| b.and_then(|b| (*b as char).to_digit(16));
            let (Some(high), Some(low)) = (hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) else {
                return Err(CmcdError::BadEncoding);
            };
            // Two hex digits: at most 0xff, so the cast is exact.
            out.push((high * 16 + low) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    if out.len() > MAX_PAYLOAD_BYTES {
        return Err(CmcdError::TooLong);
    }
    String::from_utf8(out).map_err(|_| CmcdError::BadEncoding)
}

/// Parses one decoded payload into the keys the origin uses.
pub fn parse(payload: &str) -> Result<Cmcd, CmcdError> {
    typed(pairs(payload)?)
}

/// Checks the keys the origin reads and keeps them; a duplicate key is an error.
fn typed(pairs: Vec<(String, Value)>) -> Result<Cmcd, CmcdError> {
    let mut cmcd = Cmcd::default();
    let mut seen: Vec<&str> = Vec::with_capacity(pairs.len());
    for (key, _) in &pairs {
        if seen.contains(&key.as_str()) {
            return Err(CmcdError::DuplicateKey(key.clone()));
        }
        seen.push(key);
    }
    for (key, value) in pairs {
        match (key.as_str(), value) {
            ("sid", Value::String(s)) if s.chars().count() <= MAX_SID_CHARS => cmcd.sid = Some(s),
            ("sid", _) => return Err(CmcdError::BadValue("sid")),
            // CTA-5004 3.3: the `nor` string is itself URL-encoded (players write it with
            // `encodeURIComponent`); decoded once here, so a `%` left after it is refused later.
            ("nor", Value::String(s)) => {
                cmcd.nor = Some(percent_decode(&s).map_err(|_| CmcdError::BadValue("nor"))?);
            }
            ("nor", _) => return Err(CmcdError::BadValue("nor")),
            ("bl", Value::Integer(n)) => cmcd.bl = Some(n),
            ("bl", _) => return Err(CmcdError::BadValue("bl")),
            ("mtp", Value::Integer(n)) => cmcd.mtp = Some(n),
            ("mtp", _) => return Err(CmcdError::BadValue("mtp")),
            _ => {}
        }
    }
    Ok(cmcd)
}

/// Splits a payload into its pairs (CTA-5004 3.2), checking the syntax of every value.
fn pairs(payload: &str) -> Result<Vec<(String, Value)>, CmcdError> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(CmcdError::TooLong);
    }
    let bytes = payload.as_bytes();
    let mut pairs = Vec::new();
    let mut at = 0;
    if bytes.is_empty() {
        return Ok(pairs);
    }
    loop {
        if pairs.len() == MAX_PAIRS {
            return Err(CmcdError::TooLong);
        }
        let key_end = at
            + bytes[at..]
                .iter()
                .position(|b| matches!(b, b'=' | b','))
                .unwrap_or(bytes.len() - at);
        let key = &payload[at..key_end];
        let key_ok = key.len() <= MAX_KEY_BYTES
            && key.starts_with(|c: char| c.is_ascii_lowercase())
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
        if !key_ok {
            return Err(CmcdError::Syntax { at });
        }
        at = key_end;
        let value = if bytes.get(at) == Some(&b'=') {
            at += 1;
            let (value, end) = value(payload, at)?;
            at = end;
            value
        } else {
            Value::True
        };
        pairs.push((key.to_string(), value));
        match bytes.get(at) {
            None => return Ok(pairs),
            Some(b',') if at + 1 < bytes.len() => at += 1,
            Some(_) => return Err(CmcdError::Syntax { at }),
        }
    }
}

/// The value starting at byte `at` of `payload`, and the offset after it.
fn value(payload: &str, at: usize) -> Result<(Value, usize), CmcdError> {
    let bytes = payload.as_bytes();
    if bytes.get(at) == Some(&b'"') {
        let mut text = String::new();
        let mut i = at + 1;
        loop {
            match bytes.get(i) {
                None => return Err(CmcdError::Syntax { at: i }),
                Some(b'"') => return Ok((Value::String(text), i + 1)),
                // RFC 8941 3.3.3, which CTA-5004 strings follow: only `\"` and `\\`.
                Some(b'\\') => match bytes.get(i + 1) {
                    Some(&c @ (b'"' | b'\\')) => {
                        text.push(char::from(c));
                        i += 2;
                    }
                    _ => return Err(CmcdError::Syntax { at: i }),
                },
                Some(&c @ 0x20..=0x7e) => {
                    text.push(char::from(c));
                    i += 1;
                }
                Some(_) => return Err(CmcdError::Syntax { at: i }),
            }
        }
    }
    let end = at
        + bytes[at..]
            .iter()
            .position(|b| *b == b',')
            .unwrap_or(bytes.len() - at);
    let raw = &payload[at..end];
    if raw.is_empty() {
        return Err(CmcdError::Syntax { at });
    }
    if raw.bytes().all(|b| b.is_ascii_digit()) {
        // CTA-5004 integers are at most 15 digits (RFC 8941 3.3.1); more does not fit.
        return match raw.len() <= 15 {
            true => raw
                .parse()
                .map(|n| (Value::Integer(n), end))
                .map_err(|_| CmcdError::Syntax { at }),
            false => Err(CmcdError::TooLong),
        };
    }
    let token_ok = raw
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-+:/*".contains(&b));
    match token_ok {
        true => Ok((Value::Token, end)),
        false => Err(CmcdError::Syntax { at }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn the_players_payloads_parse() {
        // hls.js 1.5, dash.js 4 and shaka 4 payloads (keys sorted, as CTA-5004 3.2 asks).
        let cmcd = parse(
            "bl=21300,br=3200,bs,cid=\"faec5fc2-ac30-11ea-bb37-0242ac130002\",d=4004,dl=18500,\
             mtp=48100,nor=\"..%2F300kbps%2Ftrack.m4v\",nrr=\"12323-48763\",ot=v,pr=1.08,rtp=12000,\
             sf=d,sid=\"6e2fb550-c457-11e9-bb97-0800200c9a66\",st=v,su,tb=6000",
        )
        .unwrap();
        assert_eq!(cmcd.bl, Some(21_300));
        assert_eq!(cmcd.mtp, Some(48_100));
        assert_eq!(
            cmcd.sid.as_deref(),
            Some("6e2fb550-c457-11e9-bb97-0800200c9a66")
        );
        assert_eq!(cmcd.nor.as_deref(), Some("../300kbps/track.m4v"));
        assert_eq!(parse(""), Ok(Cmcd::default()));
        assert_eq!(
            parse("sid=\"a\\\"b\\\\c\"").unwrap().sid.as_deref(),
            Some("a\"b\\c")
        );
        let query = "x=1&CMCD=bl%3D300%2Cnor%3D%222.m4s%22%2Csid%3D%22s%22&y=2";
        let (how, cmcd) = from_request(Some(query), &HeaderMap::new()).unwrap();
        assert_eq!(how, Transmission::Query);
        let cmcd = cmcd.unwrap();
        assert_eq!((cmcd.bl, cmcd.nor.as_deref()), (Some(300), Some("2.m4s")));
        assert!(from_request(Some("a=b"), &HeaderMap::new()).is_none());
    }

    #[test]
    fn headers_merge_and_a_key_twice_is_invalid() {
        let mut headers = HeaderMap::new();
        headers.insert("cmcd-request", HeaderValue::from_static("bl=500,mtp=2000"));
        headers.insert("cmcd-session", HeaderValue::from_static("sid=\"abc\""));
        let (how, cmcd) = from_request(None, &headers).unwrap();
        assert_eq!(how, Transmission::Headers);
        let cmcd = cmcd.unwrap();
        assert_eq!(
            (cmcd.bl, cmcd.mtp, cmcd.sid.as_deref()),
            (Some(500), Some(2000), Some("abc"))
        );
        headers.insert("cmcd-status", HeaderValue::from_static("bl=600"));
        let (_, cmcd) = from_request(None, &headers).unwrap();
        assert_eq!(cmcd, Err(CmcdError::DuplicateKey("bl".into())));
        headers.remove("cmcd-status");
        headers.append("cmcd-session", HeaderValue::from_static("su"));
        assert!(from_request(None, &headers).unwrap().1.is_err());
        assert!(from_request(None, &HeaderMap::new()).is_none());
    }

    #[test]
    fn hostile_payloads_are_invalid_never_a_panic() {
        let long = format!("sid=\"{}\"", "a".repeat(MAX_PAYLOAD_BYTES));
        let many = vec!["su"; MAX_PAIRS + 1].join(",");
        let keys: String = (0..MAX_PAIRS + 1).map(|i| format!("k{i},")).collect();
        for bad in [
            long.as_str(),
            many.as_str(),
            keys.trim_end_matches(','),
            "bl=1,bl=2",
            "bl=99999999999999999999999",
            "bl=1234567890123456",
            "bl=-5",
            "bl=1.5",
            "bl=\"300\"",
            "mtp=x",
            "sid=abc",
            "sid=\"unterminated",
            "sid=\"bad\\escape\"",
            "sid=\"ctl\u{1}\"",
            "sid=\"é\"",
            &format!("sid=\"{}\"", "s".repeat(65)),
            "nor=2",
            "nor=\"%zz\"",
            "bl=",
            "=3",
            ",",
            "bl=1,",
            ",bl=1",
            "bl=1,,mtp=2",
            "bl=1 ,mtp=2",
            "Bl=1",
            "9x=1",
            "a b",
            "ot=v;x",
            &"k".repeat(MAX_KEY_BYTES + 1),
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        for bad in ["%", "%2", "%zz", "%C3%28", "bl%3D1%"] {
            assert_eq!(percent_decode(bad), Err(CmcdError::BadEncoding), "{bad}");
        }
        let huge = "%41".repeat(MAX_PAYLOAD_BYTES + 1);
        assert_eq!(percent_decode(&huge), Err(CmcdError::TooLong));
        // Every prefix and every single-byte corruption of a good payload: no panic.
        let good = "bl=21300,nor=\"2.m4s\",sid=\"x\\\"y\",su,pr=1.08";
        for end in 0..=good.len() {
            let _ = parse(&good[..end]);
        }
        for at in 0..good.len() {
            for byte in [b'"', b'\\', b',', b'=', 0, 0xff] {
                let mut bytes = good.as_bytes().to_vec();
                bytes[at] = byte;
                if let Ok(text) = String::from_utf8(bytes) {
                    let _ = parse(&text);
                }
            }
        }
    }
}
