//! CLIP's byte-level BPE tokenizer, id for id the same as open_clip's `SimpleTokenizer`
//! (the one behind `open_clip.tokenize`, with its default `clean="lower"`).
//!
//! The text is cleaned first as open_clip cleans it (`clean.rs`), then split into words and
//! BPE-encoded (`bpe.rs`).

mod bpe;
mod clean;
mod html;

use regex::Regex;

use bpe::{Bpe, VOCAB_GZ};
use clean::Cleaner;

/// Start-of-text id, put before every tokenized text.
pub const SOT: u32 = 49406;
/// End-of-text id, put after every tokenized text; its position is where CLIP pools.
pub const EOT: u32 = 49407;

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
