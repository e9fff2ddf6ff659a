//! open_clip's text cleaning before tokenizing (`clean="lower"`).
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

use regex::{Captures, Regex};
use unicode_normalization::UnicodeNormalization;

use super::html::{HtmlUnescape, ftfy_entity_table};

/// open_clip's `_clean_lower`: ftfy, `html.unescape` twice, whitespace collapse, lower-case.
pub struct Cleaner {
    html: HtmlUnescape,
    /// ftfy's own entity table: `&name;` forms only, plus upper-cased Latin ones.
    ftfy_entities: HashMap<String, String>,
    ftfy_entity: Regex,
    terminal_escape: Regex,
}

impl Cleaner {
    pub fn new() -> Cleaner {
        let html = HtmlUnescape::new();
        let ftfy_entities = ftfy_entity_table(&html);
        Cleaner {
            html,
            ftfy_entities,
            ftfy_entity: Regex::new(r"&#?[0-9A-Za-z]{1,24};").expect("constant pattern"),
            terminal_escape: Regex::new(r"\x1b\[((?:\d|;)*)([a-zA-Z])").expect("constant pattern"),
        }
    }

    pub fn clean(&self, text: &str) -> String {
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
pub const WINDOWS_1252_C1: [char; 32] = [
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
