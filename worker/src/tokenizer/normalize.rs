//! Text clean-up before the word split, the slow tokenizer's no-ftfy path: `_clean_text`
//! (control and format characters dropped, whitespace and `Zs` spaces made plain spaces),
//! spaces around CJK ideographs, NFC, then Python's whitespace split and `str.lower`. Also the
//! character predicates the other steps share (Python's `str.isspace`).
use unicode_normalization::UnicodeNormalization;

/// The character classes `_clean_text` needs, from `regex-syntax`'s Unicode tables.
pub(super) struct Cleaner {
    /// Characters `_clean_text` removes (`C*` categories and U+FFFD, but not `\t\n\r`), sorted.
    removed: Vec<(char, char)>,
    /// `Zs` characters, which `_clean_text` turns into spaces, sorted.
    spaces: Vec<(char, char)>,
}

impl Cleaner {
    pub(super) fn new() -> Self {
        Cleaner { removed: char_ranges(r"[[\p{C}\x{FFFD}]--[\t\n\r]]"), spaces: char_ranges(r"\p{Zs}") }
    }

    /// transformers' `BasicTokenizer(do_lower_case=True, strip_accents=False,
    /// do_split_on_punc=False).tokenize(text)`, joined with spaces.
    pub(super) fn basic_clean(&self, text: &str) -> String {
        let cleaned = self.clean_text(text);
        let composed: String = if cleaned.is_ascii() { cleaned } else { cleaned.nfc().collect() };
        lowercase_words(&composed)
    }

    /// `_clean_text` and `_tokenize_chinese_chars` in one pass.
    fn clean_text(&self, text: &str) -> String {
        let mut cleaned = String::with_capacity(text.len() + 8);
        for c in text.chars() {
            if c.is_ascii() {
                match c {
                    '\t' | '\n' | '\r' | ' ' => cleaned.push(' '),
                    c if c.is_ascii_control() => {}
                    c => cleaned.push(c),
                }
            } else if in_ranges(&self.removed, c) {
            } else if in_ranges(&self.spaces, c) {
                cleaned.push(' ');
            } else if is_chinese_char(c) {
                cleaned.push(' ');
                cleaned.push(c);
                cleaned.push(' ');
            } else {
                cleaned.push(c);
            }
        }
        cleaned
    }
}

/// Split on Python whitespace, lowercase each word with Python's `str.lower` (full case
/// mapping, final sigma), join with one space.
fn lowercase_words(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text.split(is_py_space).filter(|w| !w.is_empty()) {
        if !out.is_empty() {
            out.push(' ');
        }
        if word.is_ascii() {
            out.extend(word.chars().map(|c| c.to_ascii_lowercase()));
        } else {
            out.push_str(&word.to_lowercase());
        }
    }
    out
}

/// The sorted code point ranges of a `regex` character class.
fn char_ranges(class: &str) -> Vec<(char, char)> {
    use regex_syntax::hir::{Class, HirKind};
    let hir = regex_syntax::Parser::new().parse(class).expect("character class parses");
    match hir.kind() {
        HirKind::Class(Class::Unicode(cls)) => cls.ranges().iter().map(|r| (r.start(), r.end())).collect(),
        other => panic!("{class} is not a Unicode class: {other:?}"),
    }
}

fn in_ranges(ranges: &[(char, char)], c: char) -> bool {
    ranges
        .binary_search_by(|&(lo, hi)| {
            if hi < c {
                std::cmp::Ordering::Less
            } else if lo > c {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

/// Python's `str.isspace` (what `str.split()` and `str.strip()` split on).
pub(super) fn is_py_space(c: char) -> bool {
    matches!(c,
        '\t'..='\r' | '\x1c'..='\x20' | '\u{85}' | '\u{a0}' | '\u{1680}' | '\u{2000}'..='\u{200a}'
        | '\u{2028}' | '\u{2029}' | '\u{202f}' | '\u{205f}' | '\u{3000}')
}

/// BERT's `_is_chinese_char`: the CJK ideograph blocks.
fn is_chinese_char(c: char) -> bool {
    matches!(c as u32,
        0x4E00..=0x9FFF | 0x3400..=0x4DBF | 0x20000..=0x2A6DF | 0x2A700..=0x2B73F
        | 0x2B740..=0x2B81F | 0x2B820..=0x2CEAF | 0xF900..=0xFAFF | 0x2F800..=0x2FA1F)
}
