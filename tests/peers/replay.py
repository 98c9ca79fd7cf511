#!/usr/bin/env python3
"""Replays a full playback of one track, as a player that plays every rendition would: the HLS
master, each media playlist, each init segment and every media segment it lists, then the DASH
MPD and every init and media segment its SegmentTemplates give. Each URL is fetched once per
protocol (GET, whole body: the DASH pass asks again for the files HLS already did) and reported with its status and the X-Cache-Status header (set by the nginx in
front of segue in tests/peer_nginx.rs). Prints a JSON object on stdout:

    {"requests": [{"url", "kind", "status", "cache", "bytes"}...]}

kind is master, media_playlist, init, segment or mpd.

Usage: replay.py MASTER_URL MPD_URL
"""

import json
import re
import sys
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from fractions import Fraction
from urllib.parse import urljoin

TIMEOUT_S = 10
MPD_NS = "{urn:mpeg:dash:schema:mpd:2011}"


class Replay:
    def __init__(self):
        self.requests = []
        self.seen = set()

    def get(self, url, kind):
        """Fetches url once; returns the body (b"" on an error status)."""
        if url in self.seen:
            return None
        self.seen.add(url)
        try:
            with urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp:
                body, status, headers = resp.read(), resp.status, resp.headers
        except urllib.error.HTTPError as err:
            body, status, headers = err.read(), err.code, err.headers
        self.requests.append({
            "url": url,
            "kind": kind,
            "status": status,
            "cache": headers.get("X-Cache-Status"),
            "bytes": len(body),
        })
        return body if status == 200 else b""

    def hls(self, master_url):
        master = self.get(master_url, "master").decode()
        for uri in playlist_uris(master):
            media_url = urljoin(master_url, uri)
            media = self.get(media_url, "media_playlist")
            if media is None:
                continue
            media = media.decode()
            for m in re.finditer(r'#EXT-X-MAP:.*?URI="([^"]+)"', media):
                self.get(urljoin(media_url, m.group(1)), "init")
            for uri in playlist_uris(media):
                self.get(urljoin(media_url, uri), "segment")

    def dash(self, mpd_url):
        self.seen.clear()
        mpd = ET.fromstring(self.get(mpd_url, "mpd"))
        total = parse_duration(mpd.get("mediaPresentationDuration", "PT0S"))
        for aset in mpd.iter(MPD_NS + "AdaptationSet"):
            for rep in aset.iter(MPD_NS + "Representation"):
                tmpl = rep.find(MPD_NS + "SegmentTemplate")
                if tmpl is None:
                    tmpl = aset.find(MPD_NS + "SegmentTemplate")
                if tmpl is None:
                    raise SystemExit(f"Representation {rep.get('id')} has no SegmentTemplate")
                fill = lambda t, **kw: expand(t, rep.get("id"), rep.get("bandwidth"), **kw)
                if tmpl.get("initialization"):
                    self.get(urljoin(mpd_url, fill(tmpl.get("initialization"))), "init")
                number = int(tmpl.get("startNumber", "1"))
                for time in segment_times(tmpl, total):
                    self.get(urljoin(mpd_url, fill(tmpl.get("media"), Number=number, Time=time)), "segment")
                    number += 1


def playlist_uris(text):
    """URI lines of an M3U8 (RFC 8216 4.1): not blank, not a tag or comment."""
    return [l.strip() for l in text.splitlines() if l.strip() and not l.startswith("#")]


def parse_duration(iso):
    """An xs:duration such as PT1M20.5S, in seconds (as a Fraction)."""
    m = re.fullmatch(r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:([\d.]+)S)?)?", iso)
    if not m:
        raise SystemExit(f"unsupported duration {iso}")
    d, h, mi, s = m.groups()
    return (int(d or 0) * 86400 + int(h or 0) * 3600 + int(mi or 0) * 60) + Fraction(s or "0")


def segment_times(tmpl, total):
    """Start time (in the template's timescale) of every segment (ISO/IEC 23009-1 5.3.9)."""
    timeline = tmpl.find(MPD_NS + "SegmentTimeline")
    if timeline is None:
        timescale = int(tmpl.get("timescale", "1"))
        duration = int(tmpl.get("duration"))
        count = -(-total * timescale // duration)
        return [i * duration for i in range(int(count))]
    times, t = [], 0
    for s in timeline.iter(MPD_NS + "S"):
        t = int(s.get("t", t))
        for _ in range(int(s.get("r", "0")) + 1):
            times.append(t)
            t += int(s.get("d"))
    return times


def expand(template, rep_id, bandwidth, **values):
    """Fills $RepresentationID$, $Bandwidth$, $Number$, $Time$ (with %0Nd widths) and $$."""
    values = {"RepresentationID": rep_id, "Bandwidth": bandwidth, **values}

    def one(m):
        if m.group(0) == "$$":
            return "$"
        value = values[m.group(1)]
        return (m.group(2) % int(value)) if m.group(2) else str(value)

    return re.sub(r"\$\$|\$(\w+)(%0\d+d)?\$", one, template)


def main():
    master_url, mpd_url = sys.argv[1:3]
    replay = Replay()
    replay.hls(master_url)
    replay.dash(mpd_url)
    json.dump({"requests": replay.requests}, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
