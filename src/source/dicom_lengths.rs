//! The length check that runs before dicom-rs parses a file. dicom-parser zero-fills a
//! value's declared length (up to 4 GiB) before reading it, so a few hundred bytes could make
//! it touch gigabytes. This walk reads the file as dicom-rs's `DataSetReader` does — the same
//! element headers, the same rule for what starts a sequence or an item, the same ends of
//! defined lengths — and checks every value it would allocate against the bytes left.
//!
//! Each rule below was once different and each difference was a fuzzer input that reserved
//! 1–4 GB (`tests/fixtures/fuzz/dicom/crash-*`): VR bytes that are no VR, sequences walked
//! over instead of into, a deflated stream that breaks off, binary values of no whole number
//! of values, the meta group's own length, a value that begins like an item header, a
//! big-endian data set, an item outside any sequence. Walking as the reader does, rather
//! than case by case, is the point.

use dicom_core::Tag;

/// A deflated data set may always inflate to this much (a small file of mostly zeros).
const MIN_INFLATE_LIMIT: u64 = 64 << 20;

/// VRs with a 4-byte length after 2 reserved bytes (explicit VR).
const LONG: [&[u8; 2]; 13] = [
    b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV",
];
/// VRs with a 2-byte length.
const SHORT: [&[u8; 2]; 21] = [
    b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT", b"PN",
    b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US",
];

const ITEM: (u16, u16) = (0xFFFE, 0xE000);
const ITEM_END: (u16, u16) = (0xFFFE, 0xE00D);
const SEQUENCE_END: (u16, u16) = (0xFFFE, 0xE0DD);
const PIXEL_DATA: (u16, u16) = (0x7FE0, 0x0010);
const UNDEFINED: u32 = u32::MAX;

/// How the data set's element headers are written.
#[derive(Clone, Copy)]
struct Encoding {
    explicit: bool,
    big: bool,
}

const EXPLICIT_LE: Encoding = Encoding {
    explicit: true,
    big: false,
};

/// One element header: tag, VR (the dictionary's in implicit VR), length, header bytes.
struct Header {
    tag: (u16, u16),
    vr: [u8; 2],
    len: u32,
    size: usize,
}

/// A sequence or item dicom-rs is inside: where a defined length ends it, and whether it is
/// encapsulated pixel data (whose items are compressed frames, not elements).
struct Frame {
    sequence: bool,
    end: Option<usize>,
    pixels: bool,
}

/// Checks that `bytes` (a Part 10 file: preamble, "DICM", meta group, data set) declares no
/// value longer than the bytes left where dicom-rs would read it.
pub(super) fn declared_lengths_fit(bytes: &[u8]) -> Result<(), String> {
    let (start, syntax) = walk_meta(bytes)?;
    let encoding = match syntax {
        b"1.2.840.10008.1.2" => Encoding {
            explicit: false,
            big: false,
        },
        b"1.2.840.10008.1.2.2" => Encoding {
            explicit: true,
            big: true,
        },
        b"1.2.840.10008.1.2.1.99" => {
            return walk_data_set(&inflated(&bytes[start..])?, 0, EXPLICIT_LE);
        }
        _ => EXPLICIT_LE,
    };
    walk_data_set(bytes, start, encoding)
}

/// dicom-rs parses an inflated stream as far as it goes: one that breaks off, or inflates
/// past what the walk covers, could carry a length the walk never saw (a 4.3 GB reserve).
fn inflated(stream: &[u8]) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let limit = (64 * stream.len() as u64).max(MIN_INFLATE_LIMIT);
    let mut out = Vec::new();
    flate2::read::DeflateDecoder::new(stream)
        .take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|_| "is corrupt: its deflated data set does not inflate".to_string())?;
    if out.len() as u64 > limit {
        return Err(format!(
            "inflates to more than {limit} bytes (over 64 times its size): decompress it \
             first, e.g. `dcmconv +te IN OUT` (DCMTK)"
        ));
    }
    Ok(out)
}

/// The file meta group (explicit VR little endian, from byte 132): where the data set starts
/// and the transfer syntax UID. dicom-rs ends the group after (0002,0000)'s count of bytes,
/// which may disagree with where group 2 stops (a 2.3 GB reserve once).
fn walk_meta(bytes: &[u8]) -> Result<(usize, &[u8]), String> {
    let (mut at, mut meta_end, mut syntax) = (132, None, &b""[..]);
    while let Some((tag, _)) = item_header(bytes, at, EXPLICIT_LE) {
        let over = match meta_end {
            Some(end) => at >= end,
            None => tag.0 != 0x0002,
        };
        // Only the tag: the data set's first header may be written otherwise (implicit VR).
        if over {
            break;
        }
        let Some(h) = header(bytes, at, EXPLICIT_LE)? else {
            break;
        };
        at += h.size;
        let value = value_at(bytes, at, &h)?;
        if h.tag == (0x0002, 0x0000) && h.len == 4 {
            let length = u32::from_le_bytes(value.try_into().expect("4 bytes"));
            meta_end = Some(at.saturating_add(4).saturating_add(length as usize));
        }
        if h.tag == (0x0002, 0x0010) {
            syntax = value.trim_ascii_end();
            syntax = syntax.strip_suffix(b"\0").unwrap_or(syntax);
        }
        at += value.len();
    }
    if meta_end.is_some_and(|end| at > end) {
        return Err(
            "is corrupt: its file meta group length (0002,0000) ends inside an element".into(),
        );
    }
    Ok((at, syntax))
}

/// The data set from `at`, as dicom-rs's `DataSetReader` steps through it.
fn walk_data_set(bytes: &[u8], mut at: usize, encoding: Encoding) -> Result<(), String> {
    let mut stack: Vec<Frame> = Vec::new();
    // `in_sequence`: an item header is expected; `pending`: a defined length may end here.
    let (mut in_sequence, mut pending) = (false, false);
    loop {
        if pending {
            pending = false;
            while let Some(&Frame {
                end: Some(end),
                sequence,
                ..
            }) = stack.last()
            {
                if end > at {
                    break;
                }
                if end < at {
                    return Err(format!(
                        "is corrupt: a sequence or item ends at byte {end}, inside an element"
                    ));
                }
                in_sequence = !sequence;
                stack.pop();
            }
        }
        if in_sequence {
            let Some((tag, len)) = item_header(bytes, at, encoding) else {
                return Ok(()); // dicom-rs fails there, reserving nothing
            };
            at += 8;
            (in_sequence, pending) = enter_item(&mut stack, tag, len, at)?;
            continue;
        }
        if let Some(&Frame {
            sequence: false,
            pixels: true,
            end,
        }) = stack.last()
        {
            // A compressed frame or the offset table: the item's bytes, read whole.
            let end = end.ok_or("is corrupt: a compressed frame has no defined length")?;
            if end > bytes.len() {
                return Err(too_long(PIXEL_DATA, end - at, bytes.len() - at));
            }
            (at, pending) = (end, true);
            continue;
        }
        let Some(h) = header(bytes, at, encoding)? else {
            return Ok(()); // the end of the data set
        };
        at += h.size;
        if &h.vr == b"SQ" {
            in_sequence = true;
            stack.push(frame(true, h.len, at, false));
            pending = h.len == 0;
        } else if h.tag == ITEM_END {
            if stack.pop().is_some() {
                (in_sequence, pending) = (true, true);
            }
        } else if h.tag == PIXEL_DATA && h.len == UNDEFINED {
            // Encapsulated pixel data: dicom-rs reads its first item header at once.
            stack.push(frame(true, UNDEFINED, at, true));
            let Some((tag, len)) = item_header(bytes, at, encoding) else {
                return Ok(());
            };
            at += 8;
            if tag == SEQUENCE_END {
                stack.pop();
            } else {
                (in_sequence, pending) = enter_item(&mut stack, tag, len, at)?;
            }
        } else if h.len == UNDEFINED {
            // Any other element of undefined length is read as a sequence.
            in_sequence = true;
            stack.push(frame(true, UNDEFINED, at, false));
        } else {
            at += value_at(bytes, at, &h)?.len();
            pending = true;
        }
    }
}

/// An item header read where an item is expected: the stack after it and the new
/// (`in_sequence`, `pending`).
fn enter_item(
    stack: &mut Vec<Frame>,
    tag: (u16, u16),
    len: u32,
    at: usize,
) -> Result<(bool, bool), String> {
    match tag {
        ITEM => {
            let pixels = stack
                .last()
                .ok_or("is corrupt: an item stands outside any sequence")?
                .pixels;
            stack.push(frame(false, len, at, pixels));
            Ok((false, len == 0))
        }
        ITEM_END => {
            stack.pop();
            Ok((true, true))
        }
        SEQUENCE_END => {
            stack.pop();
            Ok((false, true))
        }
        (group, element) => Err(format!(
            "is corrupt: ({group:04X},{element:04X}) stands where a sequence item should"
        )),
    }
}

fn frame(sequence: bool, len: u32, at: usize, pixels: bool) -> Frame {
    let end = (len != UNDEFINED).then(|| at.saturating_add(len as usize));
    Frame {
        sequence,
        end,
        pixels,
    }
}

fn u16_at(bytes: &[u8], at: usize, big: bool) -> u16 {
    let b = [bytes[at], bytes[at + 1]];
    if big {
        u16::from_be_bytes(b)
    } else {
        u16::from_le_bytes(b)
    }
}

fn u32_at(bytes: &[u8], at: usize, big: bool) -> u32 {
    let b: [u8; 4] = bytes[at..at + 4].try_into().expect("4 bytes");
    if big {
        u32::from_be_bytes(b)
    } else {
        u32::from_le_bytes(b)
    }
}

/// An item, item end or sequence end header (tag and 4-byte length); `None` past the end.
fn item_header(bytes: &[u8], at: usize, e: Encoding) -> Option<((u16, u16), u32)> {
    (at + 8 <= bytes.len()).then(|| {
        let tag = (u16_at(bytes, at, e.big), u16_at(bytes, at + 2, e.big));
        (tag, u32_at(bytes, at + 4, e.big))
    })
}

/// The element header at `at`, `None` where too few bytes are left for one (dicom-rs ends
/// the data set there, or fails; it reserves nothing).
fn header(bytes: &[u8], at: usize, e: Encoding) -> Result<Option<Header>, String> {
    let Some((tag, len)) = item_header(bytes, at, e) else {
        return Ok(None);
    };
    if tag.0 == 0xFFFE || !e.explicit {
        let vr = if e.explicit {
            *b"UN"
        } else {
            dictionary_vr(tag)
        };
        return Ok(Some(Header {
            tag,
            vr,
            len,
            size: 8,
        }));
    }
    let vr = [bytes[at + 4], bytes[at + 5]];
    if SHORT.iter().any(|s| **s == vr) {
        let len = u32::from(u16_at(bytes, at + 6, e.big));
        return Ok(Some(Header {
            tag,
            vr,
            len,
            size: 8,
        }));
    }
    // dicom-rs reads unknown VR bytes as UN, with a 4-byte length: two bytes of the value
    // would then declare its size. Such a file is refused.
    if !LONG.iter().any(|l| **l == vr) {
        return Err(format!(
            "is corrupt: element ({:04X},{:04X}) has value representation bytes {:02X} {:02X}, \
             which is no DICOM VR",
            tag.0, tag.1, vr[0], vr[1]
        ));
    }
    if at + 12 > bytes.len() {
        return Ok(None);
    }
    let len = u32_at(bytes, at + 8, e.big);
    Ok(Some(Header {
        tag,
        vr,
        len,
        size: 12,
    }))
}

/// The value of `h` at `at`, checked as dicom-rs will read it: whole binary values (a UL of
/// 2 bytes is read as 4, and the next header then 2 bytes late), no more than the bytes left.
fn value_at<'a>(bytes: &'a [u8], at: usize, h: &Header) -> Result<&'a [u8], String> {
    let unit = match &h.vr {
        b"US" | b"SS" | b"OW" => 2,
        b"UL" | b"SL" | b"FL" | b"AT" | b"OF" | b"OL" => 4,
        b"FD" | b"SV" | b"UV" | b"OD" | b"OV" => 8,
        _ => 1,
    };
    let (group, element) = h.tag;
    if h.len % unit != 0 {
        return Err(format!(
            "is corrupt: element ({group:04X},{element:04X}) of VR {} declares {} bytes, not a \
             whole number of {unit}-byte values",
            String::from_utf8_lossy(&h.vr),
            h.len
        ));
    }
    let left = bytes.len() - at;
    if h.len as usize > left {
        return Err(too_long(h.tag, h.len as usize, left));
    }
    Ok(&bytes[at..at + h.len as usize])
}

fn too_long((group, element): (u16, u16), len: usize, left: usize) -> String {
    format!(
        "is truncated or corrupt: element ({group:04X},{element:04X}) declares {len} bytes \
         where {left} are left"
    )
}

/// The VR dicom-rs gives a tag in implicit VR: the standard dictionary's, its "relaxed"
/// choice where that depends on the context (US for US or SS, OW for OB or OW), OW for pixel
/// and overlay data, and UN for a tag the dictionary lacks.
fn dictionary_vr((group, element): (u16, u16)) -> [u8; 2] {
    use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
    if (group, element) == PIXEL_DATA || (group >> 8 == 0x60 && element == 0x3000) {
        return *b"OW";
    }
    dicom_dictionary_std::StandardDataDictionary
        .by_tag(Tag(group, element))
        .map_or(*b"UN", |entry| entry.vr().relaxed().to_bytes())
}
