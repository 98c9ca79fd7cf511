//! Tags from a WAV file's `LIST`/`INFO` chunk. symphonia 0.6.1's WAV reader parses that chunk
//! but drops the result (it builds the reader with only the caller's external metadata), so
//! WAV tags are read here from the start of the file, where writers put the chunk ahead of the
//! audio data. Only the fields segue keeps are read: INAM (title), IART (artist), IPRD
//! (album), IPRT/ITRK (track number), ICRD (date).

use super::Tags;
use super::header_check::iff_chunks;

/// The INFO tags in `head`, the start of a RIFF/WAVE file (all `None` for any other file).
pub(super) fn parse(head: &[u8]) -> Tags {
    let mut tags = Tags::default();
    if head.get(..4) != Some(b"RIFF") || head.get(8..12) != Some(b"WAVE") {
        return tags;
    }
    let chunks = head.get(12..).unwrap_or_default();
    let lists = iff_chunks(chunks, u32::from_le_bytes)
        .filter(|(id, body)| id == b"LIST" && body.starts_with(b"INFO"));
    for (_, list) in lists {
        for (id, body) in iff_chunks(&list[4..], u32::from_le_bytes) {
            let text = String::from_utf8_lossy(body);
            let text = text.trim_matches(|c: char| c == '\0' || c.is_whitespace());
            if text.is_empty() {
                continue;
            }
            match &id {
                b"INAM" => tags.title = Some(text.to_string()),
                b"IART" => tags.artist = Some(text.to_string()),
                b"IPRD" => tags.album = Some(text.to_string()),
                b"IPRT" | b"ITRK" => {
                    tags.track_number = text
                        .split('/')
                        .next()
                        .and_then(|n| n.trim().parse().ok())
                        .filter(|&n| n > 0)
                }
                b"ICRD" => tags.year = text.get(..4).and_then(|y| y.parse().ok()),
                _ => {}
            }
        }
    }
    tags
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(id: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut c = id.to_vec();
        c.extend((body.len() as u32).to_le_bytes());
        c.extend(body);
        if body.len() % 2 == 1 {
            c.push(0);
        }
        c
    }

    #[test]
    fn info_fields_become_tags() {
        let mut info = b"INFO".to_vec();
        info.extend(chunk(b"INAM", b"Two-Note Chime\0"));
        info.extend(chunk(b"IART", b"segue samples\0"));
        info.extend(chunk(b"IPRD", b"Segue Demo\0"));
        info.extend(chunk(b"IPRT", b"6/7\0"));
        info.extend(chunk(b"ICRD", b"2026-01-02\0"));
        let mut body = b"WAVE".to_vec();
        body.extend(chunk(b"fmt ", &[0; 16]));
        body.extend(chunk(b"LIST", &info));
        let file = chunk(b"RIFF", &body);
        let tags = parse(&file);
        assert_eq!(tags.title.as_deref(), Some("Two-Note Chime"));
        assert_eq!(tags.artist.as_deref(), Some("segue samples"));
        assert_eq!(tags.album.as_deref(), Some("Segue Demo"));
        assert_eq!(tags.track_number, Some(6));
        assert_eq!(tags.year, Some(2026));
    }

    #[test]
    fn other_files_have_no_info_tags() {
        assert_eq!(parse(b"fLaC\0\0\0\x22"), Tags::default());
        assert_eq!(parse(b"RIFF\x04\0\0\0WAVE"), Tags::default());
    }
}
