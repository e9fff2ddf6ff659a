//! The bytes of one anchor cache entry, the same natively (a file) and in the browser (a Cache
//! Storage entry): the key inside, a digest at the end, both checked on read.

use sha2::Digest;

use super::AnchorKey;
use crate::prompts::anchors::AnchorData;

/// Anchor file layout (all integers u32 little-endian, floats f32 little-endian):
/// `MAGIC`, `VERSION`, model id, domain name, object, texts (each length + UTF-8), `[2, width]`
/// then the states, `[rows, width]` then the prompt rows, and last the sha256 of
/// everything before it.
const MAGIC: &[u8; 16] = b"duoclip-anchors\0";
const VERSION: u32 = 2;

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    sha2::Sha256::digest(bytes).into()
}

pub fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u32).to_le_bytes());
    out.extend(s.as_bytes());
}

fn put_matrix(out: &mut Vec<u8>, rows: usize, width: usize, values: &[f32]) {
    out.extend((rows as u32).to_le_bytes());
    out.extend((width as u32).to_le_bytes());
    values.iter().for_each(|v| out.extend(v.to_le_bytes()));
}

pub fn encode(data: &AnchorData, key: &AnchorKey) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + 4 * (data.states.len() + data.prompts.len()));
    out.extend(MAGIC);
    out.extend(VERSION.to_le_bytes());
    for part in key.parts() {
        put_str(&mut out, part);
    }
    put_matrix(&mut out, 2, data.width, &data.states);
    put_matrix(&mut out, data.rows, data.width, &data.prompts);
    let digest = sha256(&out);
    out.extend(digest);
    out
}

/// Reads bytes in order; every read fails softly at the end of the input.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }
    fn u32(&mut self) -> Option<usize> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?) as usize)
    }
    fn str(&mut self) -> Option<&'a str> {
        let n = self.u32()?;
        std::str::from_utf8(self.take(n)?).ok()
    }
    fn matrix(&mut self) -> Option<(usize, usize, Vec<f32>)> {
        let (rows, width) = (self.u32()?, self.u32()?);
        let bytes = self.take(rows.checked_mul(width)?.checked_mul(4)?)?;
        let values = bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect();
        Some((rows, width, values))
    }
}

/// The anchors of `key` in `bytes`, or `None` for anything unexpected.
pub fn decode(bytes: &[u8], key: &AnchorKey) -> Option<AnchorData> {
    let (body, digest) = bytes.split_at_checked(bytes.len().checked_sub(32)?)?;
    if sha256(body) != digest {
        return None;
    }
    let mut r = Reader(body);
    if r.take(MAGIC.len())? != MAGIC || r.u32()? != VERSION as usize {
        return None;
    }
    for part in key.parts() {
        if r.str()? != part {
            return None;
        }
    }
    let (two, width, states) = r.matrix()?;
    let (rows, prompt_width, prompts) = r.matrix()?;
    let shapes_ok = two == 2 && width > 0 && prompt_width == width && rows > 0 && rows % 2 == 0;
    let finite = states.iter().chain(&prompts).all(|v| v.is_finite());
    (shapes_ok && finite && r.0.is_empty()).then_some(AnchorData {
        states,
        prompts,
        rows,
        width,
    })
}
