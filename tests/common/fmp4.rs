//! Our fMP4 decoded box by box with mp4-atom, strictly, as gst-plugins-rs's fmp4mux tests do:
//! the segment is exactly the expected top-level boxes with no byte before, between or after
//! them, each box decodes with no byte left in it, and each one re-encodes to the very bytes it
//! was read from (leaf by leaf; containers may come back with their children in another
//! order), so a box, field or byte that mp4-atom does not model fails the test.
//!
//! Why not mp4-atom's `strict` feature: it turns an unknown child box into a decode error, but
//! it is a Cargo feature (a dev-only one would also change the library's own decoding in test
//! builds), and it would reject the one box mp4-atom does not model and we write on purpose,
//! the loudness box `ludt` (ISO/IEC 14496-12 12.2.7) in the track's `udta`. The re-encoding
//! check is stricter (a dropped child, a padding byte, a field mp4-atom reads differently all
//! show), and `ludt` is cut out first and checked by hand, field by field.

use mp4_atom::{Atom, Decode, Encode, FourCC, Ftyp, Header, Mdat, Moof, Moov, Styp};

/// Containers whose bodies are only boxes (ISO/IEC 14496-12): compared child by child.
const CONTAINERS: [&[u8; 4]; 12] = [
    b"moov", b"trak", b"mdia", b"minf", b"stbl", b"dinf", b"edts", b"mvex", b"udta", b"ludt",
    b"moof", b"traf",
];

/// One box as found in a buffer.
#[derive(Debug, Clone, Copy)]
pub struct RawBox<'a> {
    /// Its type.
    pub kind: FourCC,
    /// The whole box, header included.
    pub bytes: &'a [u8],
    /// Its header's length (8, or 16 with a 64-bit size).
    pub header_len: usize,
}

impl<'a> RawBox<'a> {
    /// The box's body.
    pub fn body(&self) -> &'a [u8] {
        &self.bytes[self.header_len..]
    }
}

/// The boxes `bytes` is made of, in order; panics (naming `what`) on a box with no size, a
/// truncated box or a trailing byte.
pub fn split_boxes<'a>(bytes: &'a [u8], what: &str) -> Vec<RawBox<'a>> {
    let mut boxes = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let mut rest = &bytes[at..];
        let header = Header::decode(&mut rest)
            .unwrap_or_else(|e| panic!("{what}: no box header at byte {at}: {e}"));
        let header_len = bytes.len() - at - rest.len();
        let size = header
            .size
            .unwrap_or_else(|| panic!("{what}: {} at byte {at} has no size", header.kind));
        let end = at + header_len + size;
        assert!(
            end <= bytes.len(),
            "{what}: {} at byte {at} runs {} bytes past the end",
            header.kind,
            end - bytes.len()
        );
        boxes.push(RawBox {
            kind: header.kind,
            bytes: &bytes[at..end],
            header_len,
        });
        at = end;
    }
    boxes
}

/// Decodes `raw` as a `T` with nothing left over and asserts that it encodes back to the same
/// bytes; panics naming `what` and the box where they first differ.
pub fn decode_strict<T: Atom + Decode + Encode>(raw: RawBox<'_>, what: &str) -> T {
    assert_eq!(raw.kind, T::KIND, "{what}: expected {}", T::KIND);
    let mut buf = raw.bytes;
    let value = T::decode(&mut buf).unwrap_or_else(|e| panic!("{what}: {} decode: {e}", T::KIND));
    assert!(
        buf.is_empty(),
        "{what}: {} leaves {} bytes",
        T::KIND,
        buf.len()
    );
    let mut again = Vec::new();
    value
        .encode(&mut again)
        .unwrap_or_else(|e| panic!("{what}: {} encode: {e}", T::KIND));
    if let Err(difference) = same_boxes(raw.bytes, &again, what) {
        panic!(
            "{what}: {} does not re-encode to the bytes it was read from: {difference}",
            T::KIND
        );
    }
    value
}

/// Whether the box sequences `read` and `written` hold the same boxes: leaves byte for byte,
/// containers child by child. Children are matched in type order, as mp4-atom writes them in
/// an order of its own (`mvex` before `trak`) where the spec leaves the order open.
fn same_boxes(read: &[u8], written: &[u8], path: &str) -> Result<(), String> {
    let in_order = |bytes| {
        let mut boxes = split_boxes(bytes, path);
        boxes.sort_by_key(|b| b.kind.to_string());
        boxes
    };
    let (read, written) = (in_order(read), in_order(written));
    let kinds = |boxes: &[RawBox<'_>]| -> Vec<String> {
        boxes.iter().map(|b| b.kind.to_string()).collect()
    };
    if kinds(&read) != kinds(&written) {
        return Err(format!(
            "in {path}: read boxes {:?}, written {:?}",
            kinds(&read),
            kinds(&written)
        ));
    }
    for (r, w) in read.iter().zip(&written) {
        let path = format!("{path}/{}", r.kind);
        if CONTAINERS.iter().any(|c| FourCC::new(c) == r.kind) {
            same_boxes(r.body(), w.body(), &path)?;
        } else if r.bytes != w.bytes {
            return Err(format!(
                "{path}:\n read    {:02x?}\n written {:02x?}",
                r.bytes, w.bytes
            ));
        }
    }
    Ok(())
}

/// An init segment as mp4-atom reads it.
#[derive(Debug)]
pub struct StrictInit {
    /// The file type box.
    pub ftyp: Ftyp,
    /// The movie box (without the loudness box, which mp4-atom does not model).
    pub moov: Moov,
    /// The body of `trak/udta/ludt/tlou`, if there is one, checked by hand.
    pub tlou: Option<Vec<u8>>,
}

/// Decodes an init segment strictly: exactly `ftyp` then `moov`, each re-encoding to its bytes
/// once the loudness box is cut out of `moov/trak/udta`.
pub fn strict_init(bytes: &[u8], what: &str) -> StrictInit {
    let boxes = split_boxes(bytes, what);
    let kinds: Vec<String> = boxes.iter().map(|b| b.kind.to_string()).collect();
    assert_eq!(kinds, ["ftyp", "moov"], "{what}: top-level boxes");
    let ftyp = decode_strict::<Ftyp>(boxes[0], what);
    let mut ludt = Vec::new();
    let moov_bytes = without(boxes[1], &[b"trak", b"udta", b"ludt"], &mut ludt, what);
    let moov_split = split_boxes(&moov_bytes, what);
    let moov = decode_strict::<Moov>(moov_split[0], what);
    assert!(ludt.len() <= 1, "{what}: {} loudness boxes", ludt.len());
    let tlou = ludt.first().map(|ludt| tlou_body(ludt, what));
    StrictInit { ftyp, moov, tlou }
}

/// `raw` rebuilt without the boxes at `path` below it (each step a child's type); the boxes
/// cut out go to `cut`.
fn without(raw: RawBox<'_>, path: &[&[u8; 4]], cut: &mut Vec<Vec<u8>>, what: &str) -> Vec<u8> {
    let Some((first, rest)) = path.split_first() else {
        return raw.bytes.to_vec();
    };
    let mut body = Vec::new();
    for child in split_boxes(raw.body(), what) {
        if child.kind != FourCC::new(first) {
            body.extend_from_slice(child.bytes);
        } else if rest.is_empty() {
            cut.push(child.body().to_vec());
        } else {
            body.extend(without(child, rest, cut, what));
        }
    }
    let size = u32::try_from(body.len() + 8).expect("a test box under 4 GiB");
    let mut out = size.to_be_bytes().to_vec();
    out.extend_from_slice(&raw.bytes[4..8]);
    out.extend(body);
    out
}

/// The body of the one `tlou` in a `ludt` body, its layout checked (ISO/IEC 14496-12 12.2.7.2,
/// version 0): version and flags, downmix and DRC ids, the peaks, the true-peak method, then
/// `measurement_count` measurements of 3 bytes each, and nothing after.
fn tlou_body(ludt: &[u8], what: &str) -> Vec<u8> {
    let children = split_boxes(ludt, what);
    let kinds: Vec<String> = children.iter().map(|b| b.kind.to_string()).collect();
    assert_eq!(kinds, ["tlou"], "{what}: ludt children");
    let body = children[0].body();
    assert!(body.len() >= 11, "{what}: tlou of {} bytes", body.len());
    assert_eq!(&body[..4], [0, 0, 0, 0], "{what}: tlou version 0, flags 0");
    let count = usize::from(body[10]);
    assert_eq!(
        body.len(),
        11 + 3 * count,
        "{what}: tlou with {count} measurements"
    );
    body.to_vec()
}

/// A media segment as mp4-atom reads it.
#[derive(Debug)]
pub struct StrictSegment {
    /// The segment type box.
    pub styp: Styp,
    /// The movie fragment.
    pub moof: Moof,
    /// The samples.
    pub mdat: Mdat,
    /// Where `mdat`'s payload starts, counted from the start of `moof` (what `trun`'s
    /// `data_offset` points at, with `tfhd`'s default-base-is-moof).
    pub payload_offset: usize,
}

/// Decodes a media segment strictly: exactly `styp`, `moof`, `mdat`, each re-encoding to its
/// bytes.
pub fn strict_segment(bytes: &[u8], what: &str) -> StrictSegment {
    let boxes = split_boxes(bytes, what);
    let kinds: Vec<String> = boxes.iter().map(|b| b.kind.to_string()).collect();
    assert_eq!(kinds, ["styp", "moof", "mdat"], "{what}: top-level boxes");
    StrictSegment {
        styp: decode_strict::<Styp>(boxes[0], what),
        moof: decode_strict::<Moof>(boxes[1], what),
        mdat: decode_strict::<Mdat>(boxes[2], what),
        payload_offset: boxes[1].bytes.len() + boxes[2].header_len,
    }
}
