//! Tags and cover art from every metadata revision symphonia found (container tags, ID3v2,
//! Vorbis comments, MP4 ilst). Revisions are applied oldest first, so a later one overrides the
//! fields it has; the cover is the largest front cover, else the largest picture.

use symphonia::core::formats::FormatReader;
use symphonia::core::meta::{
    MetadataRevision, RawValue, StandardTag, StandardVisualKey, Tag, Visual,
};

use super::mp4_gapless::{GaplessTrim, parse_itunsmpb};
use super::{CoverArt, Tags};

/// Collects tags, the best cover and any MP4 `iTunSMPB` gapless info (delay, frames to keep).
pub(super) fn read_metadata(
    reader: &mut dyn FormatReader,
    track: u32,
) -> (Tags, Option<CoverArt>, Option<GaplessTrim>) {
    let mut revisions: Vec<MetadataRevision> = Vec::new();
    let mut log = reader.metadata();
    while let Some(older) = log.pop() {
        revisions.push(older);
    }
    revisions.extend(log.current().cloned());
    let (mut tags, mut itunes_gapless, mut cover) =
        (Tags::default(), None, None::<(bool, &Visual)>);
    // Oldest first: a later revision overrides the fields it has.
    for rev in &revisions {
        let per_track = rev
            .per_track
            .iter()
            .filter(|t| t.track_id == u64::from(track));
        let mut newer = Tags::default();
        for container in std::iter::once(&rev.media).chain(per_track.map(|t| &t.metadata)) {
            container
                .tags
                .iter()
                .for_each(|t| apply_tag(&mut newer, &mut itunes_gapless, t));
            for v in &container.visuals {
                let front = v.usage == Some(StandardVisualKey::FrontCover);
                if cover.is_none_or(|(f, c)| (front, v.data.len()) > (f, c.data.len())) {
                    cover = Some((front, v));
                }
            }
        }
        tags.title = newer.title.or(tags.title);
        tags.artist = newer.artist.or(tags.artist);
        tags.album = newer.album.or(tags.album);
        tags.track_number = newer.track_number.or(tags.track_number);
        tags.year = newer.year.or(tags.year);
    }
    let cover = cover.map(|(_, v)| {
        let sniffed = match &v.data[..] {
            [0x89, b'P', b'N', b'G', ..] => "image/png",
            [0xFF, 0xD8, ..] => "image/jpeg",
            _ => "application/octet-stream",
        };
        let media_type = v.media_type.clone().unwrap_or_else(|| sniffed.into());
        CoverArt {
            media_type,
            data: v.data.to_vec(),
        }
    });
    (tags, cover, itunes_gapless)
}

/// Maps one tag onto `tags` (symphonia parses "3/12" and dates into standard tags).
fn apply_tag(tags: &mut Tags, itunes_gapless: &mut Option<GaplessTrim>, tag: &Tag) {
    let text = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
    let year = |s: &str| {
        s.trim()
            .get(..4)
            .filter(|y| y.bytes().all(|b| b.is_ascii_digit()))?
            .parse()
            .ok()
    };
    match &tag.std {
        Some(StandardTag::TrackTitle(s)) => tags.title = text(s).or(tags.title.take()),
        Some(StandardTag::Artist(s)) => tags.artist = text(s).or(tags.artist.take()),
        Some(StandardTag::Album(s)) => tags.album = text(s).or(tags.album.take()),
        Some(StandardTag::TrackNumber(n)) => {
            tags.track_number = u32::try_from(*n).ok().filter(|&n| n > 0)
        }
        Some(StandardTag::RecordingDate(s) | StandardTag::ReleaseDate(s)) => {
            tags.year = year(s).or(tags.year)
        }
        Some(StandardTag::RecordingYear(y) | StandardTag::ReleaseYear(y)) => {
            tags.year = Some(i32::from(*y))
        }
        _ => {}
    }
    // symphonia keeps the iTunes gapless info as a free-form ilst item ("----" box), so its key
    // carries the reverse-DNS prefix: "com.apple.iTunes:iTunSMPB".
    if let RawValue::String(value) = &tag.raw.value
        && tag.raw.key.to_ascii_lowercase().ends_with("itunsmpb")
    {
        *itunes_gapless = parse_itunsmpb(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn tag(key: &str, value: &str, std: Option<StandardTag>) -> Tag {
        Tag::new_from_parts(key, value, std)
    }

    #[test]
    fn standard_tags_fill_the_fields_and_blanks_do_not_erase_them() {
        let (mut tags, mut gapless) = (Tags::default(), None);
        let text = |s: &str| Arc::new(s.to_string());
        for t in [
            tag(
                "TIT2",
                "Song",
                Some(StandardTag::TrackTitle(text(" Song "))),
            ),
            tag("TIT2", "", Some(StandardTag::TrackTitle(text("  ")))),
            tag("TRCK", "3/12", Some(StandardTag::TrackNumber(3))),
            tag(
                "DATE",
                "2024-05-01",
                Some(StandardTag::RecordingDate(text("2024-05-01"))),
            ),
            tag("COMMENT", "not a field", None),
        ] {
            apply_tag(&mut tags, &mut gapless, &t);
        }
        assert_eq!(tags.title.as_deref(), Some("Song"));
        assert_eq!((tags.track_number, tags.year), (Some(3), Some(2024)));
        assert_eq!(gapless, None);
    }

    #[test]
    fn itunes_gapless_info_is_taken_from_its_freeform_tag() {
        let (mut tags, mut gapless) = (Tags::default(), None);
        let smpb = " 00000000 00000840 000001CA 0000000000046E00 00000000";
        apply_tag(
            &mut tags,
            &mut gapless,
            &tag("com.apple.iTunes:iTunSMPB", smpb, None),
        );
        assert_eq!(
            gapless,
            Some(GaplessTrim {
                skip: 0x840,
                keep: 0x46E00
            })
        );
        assert_eq!(tags, Tags::default());
    }
}
