//! The edge's cache keys (tests/peers/nginx-fleet.conf): a signed URL is cached under the path
//! after its token, so two listeners' tokens share one copy, but nginx checks every token with
//! an origin before it looks at the cache, so a forged token gets 403 even for a cached object,
//! and an unsigned path never reaches the signed copies. CMCD query arguments (CTA-5004) do not
//! split the key, and still reach the origin.

use std::time::{Duration, SystemTime};

use segue::server::signing::{Signer, media_scope};

use crate::fixture::{Access, Fleet};
use crate::peers::{Response, http_get, resolve};

/// The origins' `--signing-key`.
const SIGNING_KEY: &str = "fleet-signing-key-0123456789abcdef";
/// Long enough for a few segments.
const TRACK_SECONDS: f64 = 6.0;

/// GET `url` through nginx; its `X-Cache-Status` (empty if none).
fn get(url: &str) -> (Response, String) {
    let resp = http_get(url, &[]);
    let cache = resp
        .headers
        .iter()
        .find(|(k, _)| k == "x-cache-status")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    (resp, cache)
}

/// The segment URIs (relative) of the HLS media playlist at `url`.
fn segments(url: &str) -> Vec<String> {
    let (resp, _) = get(url);
    assert_eq!(resp.status, 200, "GET {url}: {}", resp.text());
    resp.text()
        .lines()
        .filter(|l| !l.starts_with('#') && l.ends_with(".m4s"))
        .map(|l| resolve(url, l))
        .collect()
}

/// The token in a signed URL `…/t/TOKEN/media/…`.
fn token_of(url: &str) -> &str {
    let after = url
        .split("/t/")
        .nth(1)
        .unwrap_or_else(|| panic!("not signed: {url}"));
    after.split('/').next().unwrap_or_default()
}

#[test]
fn signed_urls_share_the_cache_but_a_forged_token_is_refused_even_when_cached() {
    let fleet = Fleet::start(TRACK_SECONDS, &["--signing-key", SIGNING_KEY]);
    // The API through nginx hands out signed URLs; the first media playlist's segments.
    let track = crate::peers::ServerExt::track(&fleet.origins[0], &fleet.track);
    let playlist = fleet
        .nginx
        .url(track.playlists[0].trim_start_matches(&fleet.origins[0].origin));
    let token = token_of(&playlist).to_string();
    let segment = segments(&playlist)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no segment in {playlist}"));
    assert!(segment.contains(&format!("/t/{token}/media/")), "{segment}");

    let (first, cache) = get(&segment);
    assert_eq!(
        first.status,
        200,
        "{segment}: {}{}",
        first.text(),
        fleet.context()
    );
    assert_eq!(cache, "MISS", "the first GET of {segment}");
    let (again, cache) = get(&segment);
    assert_eq!((again.status, cache.as_str()), (200, "HIT"), "{segment}");
    assert_eq!(again.body, first.body);

    // Another listener's valid token (a later expiry, so another string) for the same file:
    // served from the same copy.
    let later = Signer::new(Some(SIGNING_KEY.into()), Duration::from_secs(30 * 3600))
        .token(&media_scope(&fleet.track), SystemTime::now())
        .expect("signing is on");
    assert_ne!(later, token);
    let other_listener = segment.replace(&token, &later);
    let (shared, cache) = get(&other_listener);
    assert_eq!(
        (shared.status, cache.as_str()),
        (200, "HIT"),
        "another valid token for {segment}{}",
        fleet.context()
    );
    assert_eq!(shared.body, first.body);

    // Forged: the right expiry, one hex digit of the signature changed; and an expired token
    // with a signature that was valid for its expiry. Both are refused at the edge though the
    // file is cached under the path after the token.
    let flipped = {
        let mut t = token.clone().into_bytes();
        let last = t.len() - 1;
        t[last] = if t[last] == b'0' { b'1' } else { b'0' };
        String::from_utf8(t).expect("hex")
    };
    let expired = Signer::new(Some(SIGNING_KEY.into()), Duration::ZERO)
        .token(
            &media_scope(&fleet.track),
            SystemTime::now() - Duration::from_secs(3 * 3600),
        )
        .expect("signing is on");
    for forged in [flipped, expired, "0.00".to_string()] {
        let url = segment.replace(&token, &forged);
        for _ in 0..2 {
            let (refused, cache) = get(&url);
            assert_eq!(
                refused.status,
                403,
                "forged token {forged}: {}",
                refused.text()
            );
            assert_ne!(refused.body, first.body, "a forged token got the segment");
            assert_ne!(cache, "HIT", "a forged token was answered from the cache");
        }
    }
    // The path after the token, unsigned: the origins refuse it, and nginx keeps it apart from
    // the signed copies.
    let unsigned = segment.replace(&format!("/t/{token}"), "");
    let (refused, cache) = get(&unsigned);
    assert_eq!(refused.status, 403, "{unsigned}: {}", refused.text());
    assert_ne!(cache, "HIT", "{unsigned}");
    // A valid token for a track that does not exist: the origin's 404, through the edge too.
    let absent = "0123456789abcdef01234567";
    let absent_token = Signer::new(Some(SIGNING_KEY.into()), Duration::from_secs(3600))
        .token(&media_scope(absent), SystemTime::now())
        .expect("signing is on");
    let path = format!("/t/{absent_token}/media/{absent}/master.m3u8");
    let direct = http_get(&fleet.origins[0].url(&path), &[]);
    assert_eq!(
        direct.status,
        404,
        "{path} from an origin: {}",
        direct.text()
    );
    let (through, _) = get(&fleet.nginx.url(&path));
    assert_eq!(
        through.status,
        404,
        "{path} through nginx: {}",
        through.text()
    );
    // And the valid token still gets it (the refusals cached nothing in its place).
    let (still, cache) = get(&segment);
    assert_eq!((still.status, cache.as_str()), (200, "HIT"), "{segment}");
}

#[test]
fn cmcd_arguments_do_not_split_the_cache_and_reach_the_origin() {
    let fleet = Fleet::start(TRACK_SECONDS, &[]);
    let track = crate::peers::ServerExt::track(&fleet.origins[0], &fleet.track);
    let playlist = fleet
        .nginx
        .url(track.playlists[0].trim_start_matches(&fleet.origins[0].origin));
    let segments = segments(&playlist);
    assert!(segments.len() >= 2, "{segments:?}");
    // CTA-5004 query form: one `CMCD` argument, its keys comma-separated, URL-encoded.
    let cmcd = |sid: &str, bl: u32| format!("CMCD=bl%3D{bl}%2Cbr%3D128%2Csid%3D%22{sid}%22");

    // CMCD alone.
    let first = format!("{}?{}", segments[0], cmcd("listener-1", 2000));
    let second = format!("{}?{}", segments[0], cmcd("listener-2", 6100));
    let (a, cache_a) = get(&first);
    assert_eq!(
        (a.status, cache_a.as_str()),
        (200, "MISS"),
        "{first}{}",
        fleet.context()
    );
    let (b, cache_b) = get(&second);
    assert_eq!(
        (b.status, cache_b.as_str()),
        (200, "HIT"),
        "{second} after {first}"
    );
    assert_eq!(a.body, b.body);
    let (plain, cache) = get(&segments[0]);
    assert_eq!(
        (plain.status, cache.as_str()),
        (200, "HIT"),
        "{} without CMCD",
        segments[0]
    );

    // CMCD among other arguments, before and after them: the others stay in the key.
    let with_other = |before: bool, sid: &str| {
        if before {
            format!("{}?{}&v=1", segments[1], cmcd(sid, 1000))
        } else {
            format!("{}?v=1&{}", segments[1], cmcd(sid, 1000))
        }
    };
    let (c, cache) = get(&with_other(true, "x"));
    assert_eq!(
        (c.status, cache.as_str()),
        (200, "MISS"),
        "{}",
        with_other(true, "x")
    );
    for (before, sid) in [(false, "y"), (true, "z")] {
        let url = with_other(before, sid);
        let (d, cache) = get(&url);
        assert_eq!((d.status, cache.as_str()), (200, "HIT"), "{url}");
    }
    let (other_args, cache) = get(&format!("{}?v=2", segments[1]));
    assert_eq!(
        (other_args.status, cache.as_str()),
        (200, "MISS"),
        "another value of a non-CMCD argument is another key"
    );

    // The misses carried their CMCD to an origin (nginx passes the request URI unchanged).
    let log = crate::fixture::access_log(&fleet.nginx);
    let forwarded: Vec<&Access> = log
        .iter()
        .filter(|a| a.uri.contains("CMCD=") && a.cache == "MISS")
        .collect();
    assert_eq!(forwarded.len(), 2, "{log:#?}");
    let origin_logs = [fleet.origins[0].log(), fleet.origins[1].log()].concat();
    for a in forwarded {
        let sid = a
            .uri
            .split("sid%3D%22")
            .nth(1)
            .and_then(|s| s.split("%22").next());
        let sid = sid.unwrap_or_else(|| panic!("no sid in {}", a.uri));
        assert!(
            origin_logs
                .iter()
                .any(|l| l.contains("CMCD") && l.contains(sid)),
            "no origin logged the CMCD of {} (sid {sid}):\n{}",
            a.uri,
            origin_logs.join("\n")
        );
    }
}
