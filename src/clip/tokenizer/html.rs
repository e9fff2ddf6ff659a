//! HTML character references as Python's `html.unescape` decodes them, and ftfy's own table.

use std::collections::HashMap;

use regex::{Captures, Regex};

use super::clean::WINDOWS_1252_C1;

const HTML5_ENTITIES: &str = include_str!("html5_entities.txt");

/// ftfy decodes `&name;` from Python's HTML5 table and, for all-lower-case names that Python
/// would leave alone when upper-cased, the upper-cased name to the upper-cased characters
/// (`&EACUTE;` → `É`, `&SZLIG;` → `SS`).
pub fn ftfy_entity_table(html: &HtmlUnescape) -> HashMap<String, String> {
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
pub struct HtmlUnescape {
    /// `html.entities.html5`: names with `;`, and the legacy ones also without.
    entities: HashMap<String, String>,
    reference: Regex,
}

impl HtmlUnescape {
    pub fn new() -> HtmlUnescape {
        HtmlUnescape {
            entities: parse_entities(HTML5_ENTITIES),
            reference: Regex::new(r"&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)")
                .expect("constant pattern"),
        }
    }

    pub fn unescape(&self, text: &str) -> String {
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
