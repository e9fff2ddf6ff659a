//! CLIP's byte-level BPE tokenizer, id for id the same as open_clip's `SimpleTokenizer`
//! (the one behind `open_clip.tokenize`, with its default `clean="lower"`).
//!
//! open_clip cleans a text before splitting it: `ftfy.fix_text`, `html.unescape` twice,
//! strip, whitespace collapse, lower-case. ftfy 6.3.1 with its default settings is mirrored here
//! step for step, in its order and repeated until nothing changes, line by line:
//! HTML entities ending in `;` (plus the upper-cased Latin ones such as `&EACUTE;`), switched off
//! from the first line that holds a literal `<`; C1 controls read as Windows-1252; Latin
//! ligatures split; full-width and half-width forms to their usual width; curly quotes
//! straightened; line breaks to `\n`; ANSI terminal escapes and invisible control characters
//! removed; NFC.
//!
//! Not reproduced: ftfy's mojibake repair (`fix_encoding`: text such as `â€™` that was decoded
//! with the wrong codec is left as it is, where ftfy would turn it into `’`), its UTF-16
//! surrogate repair (a Rust `&str` cannot hold surrogates) and its cutting of lines longer than
//! a million characters into separate pieces.
//!
//! Python 3.11 lower-cases and normalizes with Unicode 14 tables and its `regex` module splits
//! with Unicode 17 ones; Rust's crates sit in between. The characters where that matters are
//! listed below, so every code point on its own, and every canonical decomposition, tokenizes as
//! in open_clip (checked exhaustively against the pinned Python packages). What can still
//! differ is a capital sigma right next to such a newer letter or mark (final ς or σ).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};

use flate2::read::GzDecoder;
use regex::{Captures, Regex};
use unicode_normalization::UnicodeNormalization;

/// Start-of-text id, put before every tokenized text.
pub const SOT: u32 = 49406;
/// End-of-text id, put after every tokenized text; its position is where CLIP pools.
pub const EOT: u32 = 49407;

const VOCAB_GZ: &[u8] = include_bytes!("../../models/bpe_simple_vocab_16e6.txt.gz");
const HTML5_ENTITIES: &str = include_str!("html5_entities.txt");
/// open_clip reads merge lines 1..=48894 (`merges[1:49152-256-2+1]`), so that the 512 byte
/// symbols, the merges and the two special tokens make exactly 49408 ids.
const MERGE_COUNT: usize = 49152 - 256 - 2;
/// Letters and digits that Python's `regex` 2026.11.19 (Unicode 17) knows and Rust's `regex`
/// tables (Unicode 16) do not yet; listed so that such text splits as in Python.
const NEWER_LETTERS: &str = concat!(
    r"\x{558}\x{58B}-\x{58C}\x{88F}\x{C5C}\x{CDC}\x{208F}\x{209D}-\x{209F}",
    r"\x{A7CE}-\x{A7CF}\x{A7D2}\x{A7D4}\x{A7DD}\x{A7E2}\x{A7F1}\x{AB6C}-\x{AB6D}",
    r"\x{107BB}-\x{107BF}\x{10940}-\x{10959}\x{10EC5}-\x{10EC7}\x{10ED9}-\x{10EEE}",
    r"\x{11B0A}\x{11DB0}-\x{11DDB}\x{11DF1}\x{16EA0}-\x{16EB8}\x{16EBB}-\x{16ED3}",
    r"\x{16FF2}-\x{16FF3}\x{187F8}-\x{187FF}\x{18CD6}-\x{18CDA}\x{18D09}-\x{18D20}",
    r"\x{18D80}-\x{18DF2}\x{18E00}-\x{19191}\x{191A0}-\x{191D2}\x{1B123}-\x{1B128}",
    r"\x{1B168}\x{1D6A6}\x{1DF1F}-\x{1DF24}\x{1DF2B}-\x{1DF81}\x{1DF90}-\x{1DF96}",
    r"\x{1DFCD}-\x{1DFFF}\x{1E6C0}-\x{1E6DE}\x{1E6E0}-\x{1E6E2}\x{1E6E4}-\x{1E6E5}",
    r"\x{1E6E7}-\x{1E6ED}\x{1E6F0}-\x{1E6F4}\x{1E6FE}-\x{1E6FF}\x{2B73A}-\x{2B73F}",
    r"\x{2B81E}\x{2CEA2}-\x{2CEAD}\x{323B0}-\x{33479}\x{3D000}-\x{3FC3F}",
);
const NEWER_DIGITS: &str =
    r"\x{11DE0}-\x{11DE9}\x{1246F}\x{12475}-\x{1247F}\x{12550}-\x{12686}\x{16FF4}-\x{16FF6}";

/// open_clip's split into words, digits and punctuation runs. Its IGNORECASE flag matters only
/// for the literals (`'ſ` matches `'s`); Python's `regex` never matches U+0345 (a combining
/// mark whose case partner is ι) under it, so neither do we.
fn pre_token_pattern() -> String {
    let (l, n) = (NEWER_LETTERS, NEWER_DIGITS);
    let literals = r"(?i:<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d)";
    format!(r"{literals}|[\p{{L}}{l}]+|[\p{{N}}{n}]|[^\s\p{{L}}\p{{N}}\x{{345}}{l}{n}]+")
}

/// Text to CLIP token ids.
pub struct Tokenizer {
    bpe: Bpe,
    cleaner: Cleaner,
    pre_tokens: Regex,
}

impl Tokenizer {
    /// Builds the tables from the vocabulary compiled into the binary (tens of milliseconds:
    /// build one and share it).
    pub fn new() -> Tokenizer {
        Tokenizer {
            bpe: Bpe::from_gz(VOCAB_GZ),
            cleaner: Cleaner::new(),
            pre_tokens: Regex::new(&pre_token_pattern()).expect("constant pattern"),
        }
    }

    /// BPE ids of `text` after open_clip's cleaning, without SOT/EOT and without truncation.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let clean = self.cleaner.clean(text);
        let mut ids = Vec::new();
        for piece in self.pre_tokens.find_iter(&clean) {
            match piece.as_str() {
                // Python's BPE cache is seeded with the special tokens, so typed-in ones survive.
                "<start_of_text>" => ids.push(SOT),
                "<end_of_text>" => ids.push(EOT),
                word => ids.extend(self.bpe.encode_word(word.as_bytes())),
            }
        }
        ids
    }

    /// `SOT + encode(text) + EOT`, cut to `context_length` with the last id forced to EOT, as
    /// `SimpleTokenizer.__call__` does. Not zero-padded. A `context_length` of 0 gives an empty
    /// vec (Python raises).
    pub fn tokenize(&self, text: &str, context_length: usize) -> Vec<u32> {
        let mut ids = vec![SOT];
        ids.extend(self.encode(text));
        ids.push(EOT);
        if ids.len() > context_length {
            ids.truncate(context_length);
            if let Some(last) = ids.last_mut() {
                *last = EOT;
            }
        }
        ids
    }
}

impl Default for Tokenizer {
    fn default() -> Self {
        Tokenizer::new()
    }
}

/// The merge table, on symbol ids rather than strings: ids 0..256 are single bytes, 256..512
/// the same bytes ending a word (`</w>`), then one id per merge.
struct Bpe {
    /// (left, right) → (rank, id of the merged symbol).
    merges: HashMap<(u32, u32), (u32, u32)>,
    byte_ids: [u32; 256],
}

impl Bpe {
    fn from_gz(gz: &[u8]) -> Bpe {
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
    fn encode_word(&self, bytes: &[u8]) -> Vec<u32> {
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

/// open_clip's `_clean_lower`: ftfy, `html.unescape` twice, whitespace collapse, lower-case.
struct Cleaner {
    html: HtmlUnescape,
    /// ftfy's own entity table: `&name;` forms only, plus upper-cased Latin ones.
    ftfy_entities: HashMap<String, String>,
    ftfy_entity: Regex,
    terminal_escape: Regex,
}

impl Cleaner {
    fn new() -> Cleaner {
        let html = HtmlUnescape::new();
        let ftfy_entities = ftfy_entity_table(&html);
        Cleaner {
            html,
            ftfy_entities,
            ftfy_entity: Regex::new(r"&#?[0-9A-Za-z]{1,24};").expect("constant pattern"),
            terminal_escape: Regex::new(r"\x1b\[((?:\d|;)*)([a-zA-Z])").expect("constant pattern"),
        }
    }

    fn clean(&self, text: &str) -> String {
        let fixed = self.fix_text(text);
        let unescaped = self.html.unescape(&self.html.unescape(&fixed));
        let words: Vec<&str> = unescaped
            .split(is_python_space)
            .filter(|w| !w.is_empty())
            .collect();
        python_lower(&words.join(" "))
    }

    /// ftfy's `fix_text`, which works line by line.
    fn fix_text(&self, text: &str) -> String {
        let mut unescape = true;
        let mut out = String::with_capacity(text.len());
        for line in text.split_inclusive('\n') {
            // A literal `<` means the text is HTML, where entities are meant; ftfy then keeps
            // them for this line and, because it overwrites its config, for every later line.
            unescape &= !line.contains('<');
            out.push_str(&self.fix_line(line, unescape));
        }
        out
    }

    /// ftfy's `fix_and_explain`: every fixer in ftfy's order, until the text stops changing.
    fn fix_line(&self, line: &str, unescape: bool) -> String {
        let mut text = line.to_owned();
        // Each round shortens entities or settles a character for good; the cap only guards.
        for _ in 0..64 {
            let mut next = if unescape {
                self.ftfy_unescape(&text)
            } else {
                text.clone()
            };
            next = next.chars().map(c1_as_windows_1252).collect();
            next = next.chars().flat_map(split_ligature).collect();
            next = next.chars().map(normal_width).collect();
            next = next.chars().map(uncurl_quote).collect();
            next = unify_line_breaks(&next);
            next = self.terminal_escape.replace_all(&next, "").into_owned();
            next = next.chars().filter(|&c| !is_removed_control(c)).collect();
            next = python_nfc(&next);
            if next == text {
                break;
            }
            text = next;
        }
        text
    }

    /// ftfy's `unescape_html`: only `;`-terminated names it trusts; numeric references only
    /// when Python decodes them whole (so `&#59;`, which would yield `;`, stays).
    fn ftfy_unescape(&self, text: &str) -> String {
        let replace = |caps: &Captures| {
            let entity = &caps[0];
            if let Some(chars) = self.ftfy_entities.get(entity) {
                return chars.clone();
            }
            if entity.starts_with("&#") {
                let decoded = self.html.unescape(entity);
                if !decoded.contains(';') {
                    return decoded;
                }
            }
            entity.to_owned()
        };
        self.ftfy_entity.replace_all(text, replace).into_owned()
    }
}

/// Python 3.11's NFC. Characters that its Unicode 14 tables do not know are, for Python, plain
/// starters that neither compose nor reorder; the ones that Rust's newer tables do compose or
/// reorder are therefore kept out of Rust's NFC.
fn python_nfc(text: &str) -> String {
    let newer_normalizing = |c: char| {
        matches!(c as u32,
            0x5C8..=0x5C9 | 0x897 | 0x1ACF..=0x1AF0 | 0x105C9 | 0x105D2 | 0x105DA | 0x105E4
            | 0x10D69..=0x10D6D | 0x10ECB..=0x10ECF | 0x10EF0..=0x10EFB | 0x10EFD..=0x10EFF
            | 0x11382..=0x11385 | 0x1138B | 0x1138E | 0x11390..=0x11391 | 0x113B8 | 0x113BB
            | 0x113C2 | 0x113C5 | 0x113C7..=0x113C9 | 0x113CE..=0x113D0 | 0x11F41..=0x11F42
            | 0x1611E..=0x16129 | 0x1612F | 0x16D63 | 0x16D67..=0x16D6A | 0x1D127..=0x1D128
            | 0x1D250..=0x1D252 | 0x1D25B..=0x1D25C | 0x1D25F | 0x1D280..=0x1D281 | 0x1E08F
            | 0x1E4EC..=0x1E4EF | 0x1E5EE..=0x1E5EF | 0x1E6E3 | 0x1E6E6 | 0x1E6EE..=0x1E6EF
            | 0x1E6F5)
    };
    map_between(text, newer_normalizing, |run| run.nfc().collect())
}

/// Python 3.11's `str.lower`: Rust's newer tables also lower-case these capitals, which Python
/// does not know. For Python they end a word, as the end of a run does for the final-sigma rule.
fn python_lower(text: &str) -> String {
    let newer_capital = |c: char| {
        matches!(c as u32,
            0x1C89 | 0xA7CB..=0xA7CC | 0xA7CE | 0xA7D2 | 0xA7D4 | 0xA7DA | 0xA7DC
            | 0x10D50..=0x10D65 | 0x16EA0..=0x16EB8)
    };
    map_between(text, newer_capital, str::to_lowercase)
}

/// `f` applied to the runs between the characters that `keep` picks; those pass as they are.
fn map_between(text: &str, keep: impl Fn(char) -> bool, f: impl Fn(&str) -> String) -> String {
    let mut out = String::with_capacity(text.len());
    for piece in text.split_inclusive(&keep) {
        let (run, kept) = match piece.chars().last() {
            Some(c) if keep(c) => (&piece[..piece.len() - c.len_utf8()], Some(c)),
            _ => (piece, None),
        };
        out.push_str(&f(run));
        out.extend(kept);
    }
    out
}

/// Python's `str.isspace`, which `str.split()` and `strip()` use: Unicode White_Space plus the
/// four ASCII separators U+1C..U+1F.
fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Windows-1252's 0x80..0x9F; the five holes stay C1 controls, as in ftfy's "sloppy" codec.
/// Python's `html.unescape` uses the same table for `&#128;`..`&#159;`.
const WINDOWS_1252_C1: [char; 32] = [
    '\u{20AC}', '\u{0081}', '\u{201A}', '\u{0192}', '\u{201E}', '\u{2026}', '\u{2020}', '\u{2021}',
    '\u{02C6}', '\u{2030}', '\u{0160}', '\u{2039}', '\u{0152}', '\u{008D}', '\u{017D}', '\u{008F}',
    '\u{0090}', '\u{2018}', '\u{2019}', '\u{201C}', '\u{201D}', '\u{2022}', '\u{2013}', '\u{2014}',
    '\u{02DC}', '\u{2122}', '\u{0161}', '\u{203A}', '\u{0153}', '\u{009D}', '\u{017E}', '\u{0178}',
];

fn c1_as_windows_1252(c: char) -> char {
    match c as u32 {
        code @ 0x80..=0x9F => WINDOWS_1252_C1[(code - 0x80) as usize],
        _ => c,
    }
}

/// ftfy's `LIGATURES`: Latin typographic ligatures and legacy digraphs, not æ or œ.
fn split_ligature(c: char) -> Vec<char> {
    let parts = match c {
        'Ĳ' => "IJ",
        'ĳ' => "ij",
        'ŉ' => "ʼn",
        'Ǳ' => "DZ",
        'ǲ' => "Dz",
        'ǳ' => "dz",
        'Ǆ' => "DŽ",
        'ǅ' => "Dž",
        'ǆ' => "dž",
        'Ǉ' => "LJ",
        'ǈ' => "Lj",
        'ǉ' => "lj",
        'Ǌ' => "NJ",
        'ǋ' => "Nj",
        'ǌ' => "nj",
        'ﬀ' => "ff",
        'ﬁ' => "fi",
        'ﬂ' => "fl",
        'ﬃ' => "ffi",
        'ﬄ' => "ffl",
        'ﬅ' => "ſt",
        'ﬆ' => "st",
        _ => return vec![c],
    };
    parts.chars().collect()
}

/// ftfy's `WIDTH_MAP`: the ideographic space and the NFKC form of every changed character in
/// U+FF01..U+FFEF (full-width ASCII, half-width katakana and hangul, ￥ and the like).
fn normal_width(c: char) -> String {
    match c {
        '\u{3000}' => " ".to_owned(),
        '\u{FF01}'..='\u{FFEF}' => c.to_string().nfkc().collect(),
        _ => c.to_string(),
    }
}

fn uncurl_quote(c: char) -> char {
    match c {
        '\u{02BC}' | '\u{2018}'..='\u{201B}' => '\'',
        '\u{201C}'..='\u{201F}' => '"',
        _ => c,
    }
}

fn unify_line_breaks(text: &str) -> String {
    text.replace("\r\n", "\n")
        .replace(['\r', '\u{2028}', '\u{2029}', '\u{85}'], "\n")
}

/// ftfy's `CONTROL_CHARS`: invisible controls, keeping tab, line feed, form feed, CR, the C1
/// range, joiners and direction marks.
fn is_removed_control(c: char) -> bool {
    matches!(c,
        '\u{00}'..='\u{08}' | '\u{0B}' | '\u{0E}'..='\u{1F}' | '\u{7F}'
        | '\u{206A}'..='\u{206F}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFC}')
}

/// ftfy decodes `&name;` from Python's HTML5 table and, for all-lower-case names that Python
/// would leave alone when upper-cased, the upper-cased name to the upper-cased characters
/// (`&EACUTE;` → `É`, `&SZLIG;` → `SS`).
fn ftfy_entity_table(html: &HtmlUnescape) -> HashMap<String, String> {
    let mut table = HashMap::new();
    for (name, chars) in html.entities.iter().filter(|(name, _)| name.ends_with(';')) {
        table.insert(format!("&{name}"), chars.clone());
        if *name == name.to_lowercase() {
            let upper = format!("&{}", name.to_uppercase());
            if html.unescape(&upper) == upper {
                table.insert(upper, chars.to_uppercase());
            }
        }
    }
    table
}

/// Python's `html.unescape`, rule for rule.
struct HtmlUnescape {
    /// `html.entities.html5`: names with `;`, and the legacy ones also without.
    entities: HashMap<String, String>,
    reference: Regex,
}

impl HtmlUnescape {
    fn new() -> HtmlUnescape {
        HtmlUnescape {
            entities: parse_entities(HTML5_ENTITIES),
            reference: Regex::new(r"&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)")
                .expect("constant pattern"),
        }
    }

    fn unescape(&self, text: &str) -> String {
        if !text.contains('&') {
            return text.to_owned();
        }
        self.reference
            .replace_all(text, |caps: &Captures| self.replace(&caps[1]))
            .into_owned()
    }

    fn replace(&self, reference: &str) -> String {
        if let Some(number) = reference.strip_prefix('#') {
            return numeric_reference(number);
        }
        if let Some(chars) = self.entities.get(reference) {
            return chars.clone();
        }
        // The longest known prefix of at least two characters (`&notit;` → `¬it;`); only the
        // legacy names without `;` can match here.
        let starts: Vec<usize> = reference.char_indices().map(|(i, _)| i).collect();
        for &end in starts.iter().skip(2).rev() {
            if let Some(chars) = self.entities.get(&reference[..end]) {
                return format!("{chars}{}", &reference[end..]);
            }
        }
        format!("&{reference}")
    }
}

/// `&#…;` as Python decodes it: a few code points are remapped, impossible ones become U+FFFD,
/// noncharacters and most controls vanish.
fn numeric_reference(number: &str) -> String {
    let digits = number.trim_end_matches(';');
    let parsed = match digits.strip_prefix(['x', 'X']) {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => digits.parse::<u32>(),
    };
    // The pattern admits only digits, so failure means overflow: beyond Unicode anyway.
    let code = parsed.unwrap_or(u32::MAX);
    let invisible = |c: u32| {
        matches!(c, 0x01..=0x08 | 0x0B | 0x0E..=0x1F | 0x7F..=0x9F | 0xFDD0..=0xFDEF)
            || c & 0xFFFE == 0xFFFE
    };
    match code {
        0x00 => "\u{FFFD}".to_owned(),
        0x0D => "\r".to_owned(),
        0x80..=0x9F => WINDOWS_1252_C1[(code - 0x80) as usize].to_string(),
        0xD800..=0xDFFF | 0x110000.. => "\u{FFFD}".to_owned(),
        c if invisible(c) => String::new(),
        c => char::from_u32(c).map(String::from).unwrap_or_default(),
    }
}

/// Lines of `name HEX[,HEX]`, written by tools/gen_tokenizer_fixture.py from Python's table.
fn parse_entities(table: &str) -> HashMap<String, String> {
    let decode = |hex: &str| {
        hex.split(',')
            .filter_map(|h| u32::from_str_radix(h, 16).ok())
            .filter_map(char::from_u32)
            .collect()
    };
    table
        .lines()
        .filter_map(|line| line.split_once(' '))
        .map(|(name, hex)| (name.to_owned(), decode(hex)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokenizer() -> Tokenizer {
        Tokenizer::new()
    }

    #[test]
    fn plain_prompt_matches_open_clip() {
        // open_clip.tokenize("a photo of a cat")
        assert_eq!(
            tokenizer().tokenize("a photo of a cat", 77),
            [SOT, 320, 1125, 539, 320, 2368, EOT]
        );
    }

    #[test]
    fn case_and_whitespace_do_not_matter() {
        let t = tokenizer();
        assert_eq!(t.encode("  Hello\t\n  WORLD "), t.encode("hello world"));
        assert_eq!(t.encode("hello world"), [3306, 1002]);
    }

    #[test]
    fn empty_text_is_sot_eot() {
        assert_eq!(tokenizer().tokenize("", 77), [SOT, EOT]);
    }

    #[test]
    fn long_text_is_cut_and_ends_with_eot() {
        let ids = tokenizer().tokenize(&"a ".repeat(100), 77);
        assert_eq!(ids.len(), 77);
        assert_eq!((ids[0], ids[75], ids[76]), (SOT, 320, EOT));
        assert_eq!(tokenizer().tokenize("a", 1), [EOT]);
        assert!(tokenizer().tokenize("a", 0).is_empty());
    }

    #[test]
    fn ftfy_fixes_are_applied() {
        let t = tokenizer();
        assert_eq!(t.encode("“it’s”"), t.encode("\"it's\""));
        assert_eq!(t.encode("ＬＯＵＤ"), t.encode("loud"));
        assert_eq!(t.encode("ﬁle"), t.encode("file"));
        assert_eq!(t.encode("cafe\u{301}"), t.encode("café"));
        assert_eq!(t.encode("\u{1b}[31mred\u{1b}[0m"), t.encode("red"));
    }

    #[test]
    fn html_entities_follow_python() {
        let t = tokenizer();
        assert_eq!(
            t.cleaner.clean("&amp;amp;amp;amp; &EACUTE; &#x41;&#59;"),
            "& é a;"
        );
        assert_eq!(t.cleaner.clean("this&not that &frac12"), "this¬ that ½");
        assert_eq!(
            t.cleaner.clean("&#0;&#1;&#x80;&#xD800;"),
            "\u{FFFD}€\u{FFFD}"
        );
        // A literal `<` switches ftfy's decoding off, so html.unescape's curly quotes survive.
        assert_eq!(t.cleaner.clean("<b>&ldquo;x&rdquo;</b>"), "<b>“x”</b>");
    }

    #[test]
    fn typed_special_tokens_keep_their_ids() {
        assert_eq!(tokenizer().encode("<start_of_text>"), [SOT]);
    }
}
