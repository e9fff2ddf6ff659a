//! CLIP's byte-level BPE: the merge table of open_clip's vocabulary, applied word by word.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};

use flate2::read::GzDecoder;

/// open_clip's vocabulary (MIT), as it ships in the `open-clip-torch` package.
pub const VOCAB_GZ: &[u8] = include_bytes!("../../../models/bpe_simple_vocab_16e6.txt.gz");
/// open_clip reads merge lines 1..=48894 (`merges[1:49152-256-2+1]`), so that the 512 byte
/// symbols, the merges and the two special tokens make exactly 49408 ids.
const MERGE_COUNT: usize = 49152 - 256 - 2;

/// The merge table, on symbol ids rather than strings: ids 0..256 are single bytes, 256..512
/// the same bytes ending a word (`</w>`), then one id per merge.
pub struct Bpe {
    /// (left, right) → (rank, id of the merged symbol).
    merges: HashMap<(u32, u32), (u32, u32)>,
    byte_ids: [u32; 256],
}

impl Bpe {
    pub fn from_gz(gz: &[u8]) -> Bpe {
        // The file has 262,145 lines; reading stops after the header and the merges used.
        let lines: Vec<String> = BufReader::new(GzDecoder::new(gz))
            .lines()
            .take(1 + MERGE_COUNT)
            .collect::<Result<_, _>>()
            .expect("the embedded BPE vocabulary is valid gzip'd UTF-8");
        let merges: Vec<(&str, &str)> = lines
            .iter()
            .skip(1)
            .filter_map(|line| line.split_once(' '))
            .collect();
        Bpe::from_merges(&merges)
    }

    fn from_merges(merges: &[(&str, &str)]) -> Bpe {
        let symbols = byte_symbols();
        let mut vocab: Vec<String> = symbols.iter().map(|(_, c)| c.to_string()).collect();
        vocab.extend(symbols.iter().map(|(_, c)| format!("{c}</w>")));
        vocab.extend(merges.iter().map(|(a, b)| format!("{a}{b}")));
        // Python's `dict(zip(vocab, ids))`: a string listed twice keeps its last id.
        let ids: HashMap<&str, u32> = vocab
            .iter()
            .enumerate()
            .map(|(i, s)| (s.as_str(), i as u32))
            .collect();
        let mut table = HashMap::with_capacity(merges.len());
        for (rank, (a, b)) in merges.iter().enumerate() {
            if let (Some(&left), Some(&right)) = (ids.get(a), ids.get(b)) {
                table.insert(
                    (left, right),
                    (rank as u32, ids[format!("{a}{b}").as_str()]),
                );
            }
        }
        let mut byte_ids = [0u32; 256];
        for (id, (byte, _)) in symbols.iter().enumerate() {
            byte_ids[*byte as usize] = id as u32;
        }
        Bpe {
            merges: table,
            byte_ids,
        }
    }

    /// One pre-token: repeatedly merge the adjacent pair of lowest rank, every occurrence of it
    /// left to right, until no pair is in the table (open_clip's `bpe`).
    pub fn encode_word(&self, bytes: &[u8]) -> Vec<u32> {
        let mut word: Vec<u32> = bytes.iter().map(|&b| self.byte_ids[b as usize]).collect();
        if let Some(last) = word.last_mut() {
            *last += 256;
        }
        while let Some((pair, merged)) = self.best_pair(&word) {
            word = merge_pair(&word, pair, merged);
        }
        word
    }

    fn best_pair(&self, word: &[u32]) -> Option<((u32, u32), u32)> {
        word.windows(2)
            .filter_map(|w| {
                self.merges
                    .get(&(w[0], w[1]))
                    .map(|&(rank, id)| (rank, (w[0], w[1]), id))
            })
            .min_by_key(|&(rank, _, _)| rank)
            .map(|(_, pair, id)| (pair, id))
    }
}

fn merge_pair(word: &[u32], (left, right): (u32, u32), merged: u32) -> Vec<u32> {
    let mut out = Vec::with_capacity(word.len());
    let mut i = 0;
    while i < word.len() {
        if word[i] == left && word.get(i + 1) == Some(&right) {
            out.push(merged);
            i += 2;
        } else {
            out.push(word[i]);
            i += 1;
        }
    }
    out
}

/// GPT-2's `bytes_to_unicode`, in vocabulary order: each byte and the character standing for
/// it. Printable Latin-1 bytes stand for themselves, the other 68 for U+0100.. in byte order,
/// so that no symbol is whitespace or a control.
fn byte_symbols() -> Vec<(u8, char)> {
    let printable = |b: &u8| matches!(b, 0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF);
    let shown = (0..=255u8).filter(printable).map(|b| (b, char::from(b)));
    let hidden = (0..=255u8)
        .filter(|b| !printable(b))
        .zip((0x100..).filter_map(char::from_u32));
    shown.chain(hidden).collect()
}
