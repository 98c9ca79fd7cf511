//! The DASH MPD (ISO/IEC 23009-1): one audio AdaptationSet per switching set (one AAC
//! profile each, AAC-LC first, linked for adaptation set switching; why: see [`super`]), a
//! Representation per rendition, and in each set one SegmentTemplate with an exact
//! SegmentTimeline shared by its Representations (segments are aligned across renditions, so
//! one timeline describes every one).
//!
//! Written by hand: the one maintained MPD crate (dash-mpd) always pulls in an HTTP client, and
//! the document is small and fixed in shape. Every value inserted is escaped.

use std::fmt::Write;

use super::switching_sets;
use crate::catalog::{RenditionRecord, TrackRecord};
use crate::store::layout::{INIT_SEGMENT_FILE, SEGMENT_TEMPLATE};

/// Escapes text for an XML attribute or element.
fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => {}
            c => out.push(c),
        }
    }
    out
}

/// An xs:duration with exact decimal seconds (`PT12.373333S`).
fn xs_duration(samples: u64, rate: u32) -> String {
    let rate = u64::from(rate.max(1));
    let whole = samples / rate;
    let micros = ((samples % rate) * 1_000_000).div_ceil(rate);
    if micros == 0 {
        format!("PT{whole}S")
    } else {
        format!("PT{whole}.{micros:06}S")
    }
}

/// Renders the MPD of a track.
pub fn render_mpd(track: &TrackRecord) -> String {
    let total: u64 = track.segment_durations.iter().sum();
    let mut s = String::with_capacity(2048);
    // Writing to a String cannot fail.
    let _ = write_mpd(&mut s, track, total);
    s
}

fn write_mpd(s: &mut String, track: &TrackRecord, total: u64) -> std::fmt::Result {
    let rate = track.sample_rate;
    writeln!(s, r#"<?xml version="1.0" encoding="UTF-8"?>"#)?;
    writeln!(
        s,
        r#"<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" profiles="urn:mpeg:dash:profile:isoff-live:2011,urn:mpeg:dash:profile:cmaf:2019" type="static" mediaPresentationDuration="{}" minBufferTime="PT2S">"#,
        xs_duration(total, rate)
    )?;
    writeln!(s, "  <ProgramInformation>")?;
    writeln!(s, "    <Title>{}</Title>", xml_escape(&track.title))?;
    writeln!(s, "  </ProgramInformation>")?;
    writeln!(s, r#"  <Period id="0" start="PT0S">"#)?;
    let sets = switching_sets(track);
    for (id, set) in sets.iter().enumerate() {
        let others: Vec<String> = (0..sets.len())
            .filter(|&other| other != id)
            .map(|other| other.to_string())
            .collect();
        write_adaptation_set(s, track, id, set, &others)?;
    }
    writeln!(s, "  </Period>")?;
    writeln!(s, "</MPD>")
}

/// One AdaptationSet (a switching set of one AAC profile, see [`super`]) with id `id`, whose
/// Representations may be switched to those of the sets `others` (`urn:mpeg:dash:
/// adaptation-set-switching:2016`). Child elements in the order of the MPD schema
/// (descriptors, then SegmentTemplate, then Representations).
fn write_adaptation_set(
    s: &mut String,
    track: &TrackRecord,
    id: usize,
    set: &[&RenditionRecord],
    others: &[String],
) -> std::fmt::Result {
    let rate = track.sample_rate;
    writeln!(
        s,
        r#"    <AdaptationSet id="{id}" contentType="audio" mimeType="audio/mp4" lang="und" segmentAlignment="true" startWithSAP="1">"#
    )?;
    writeln!(
        s,
        r#"      <AudioChannelConfiguration schemeIdUri="urn:mpeg:dash:23003:3:audio_channel_configuration:2011" value="{}"/>"#,
        track.channels
    )?;
    if !others.is_empty() {
        writeln!(
            s,
            r#"      <SupplementalProperty schemeIdUri="urn:mpeg:dash:adaptation-set-switching:2016" value="{}"/>"#,
            others.join(",")
        )?;
    }
    writeln!(
        s,
        r#"      <SegmentTemplate timescale="{rate}" initialization="$RepresentationID$/{INIT_SEGMENT_FILE}" media="$RepresentationID$/{SEGMENT_TEMPLATE}" startNumber="1">"#
    )?;
    writeln!(s, "        <SegmentTimeline>")?;
    let mut t = 0u64;
    let mut runs: Vec<(u64, u64, u64)> = Vec::new(); // (start, duration, repeats)
    for &d in &track.segment_durations {
        match runs.last_mut() {
            Some(run) if run.1 == d => run.2 += 1,
            _ => runs.push((t, d, 0)),
        }
        t += d;
    }
    for (i, (start, d, r)) in runs.iter().enumerate() {
        let t_attr = if i == 0 {
            format!(r#" t="{start}""#)
        } else {
            String::new()
        };
        let r_attr = if *r > 0 {
            format!(r#" r="{r}""#)
        } else {
            String::new()
        };
        writeln!(s, r#"          <S{t_attr} d="{d}"{r_attr}/>"#)?;
    }
    writeln!(s, "        </SegmentTimeline>")?;
    writeln!(s, "      </SegmentTemplate>")?;
    for r in set {
        writeln!(
            s,
            r#"      <Representation id="{}" bandwidth="{}" codecs="{}" audioSamplingRate="{rate}"/>"#,
            xml_escape(&r.dir),
            r.peak_bandwidth,
            xml_escape(&r.codec)
        )?;
    }
    writeln!(s, "    </AdaptationSet>")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_exact_decimal_seconds() {
        assert_eq!(xs_duration(48_000 * 3, 48_000), "PT3S");
        assert_eq!(xs_duration(48_000 + 1, 48_000), "PT1.000021S");
        assert_eq!(xs_duration(44_100 / 2, 44_100), "PT0.500000S");
    }

    #[test]
    fn escapes_markup_in_titles() {
        assert_eq!(xml_escape(r#"a<b>&"c'"#), "a&lt;b&gt;&amp;&quot;c&apos;");
    }
}
