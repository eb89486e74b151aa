//! AUTOMATIC1111's attention syntax: a prompt read as (text, weight) segments, with the same
//! results as its `parse_prompt_attention` (`modules/prompt_parser.py`), oddities included,
//! so that a prompt written for AUTOMATIC1111 weighs the same words the same here.
//!
//! - `(text)` multiplies the weight of `text` by 1.1, `[text]` divides it by 1.1, and
//!   `(text:1.3)` multiplies it by 1.3; nesting multiplies.
//! - `\(`, `\)`, `\[`, `\]` and `\\` are literal characters; any other backslash is dropped.
//! - Brackets still open at the end apply to the rest of the prompt; a closing bracket with
//!   nothing open is literal text, and so is `:1.3)` with no `(` open.
//! - `BREAK` (a whole word, in capitals) ends a chunk: it is a segment `("BREAK", -1.0)`, the
//!   marker AUTOMATIC1111 itself uses. A `BREAK` inside brackets gets its weight multiplied
//!   like any text, so it is no longer the marker and is read as the word "BREAK", as there.
//! - Neighbouring segments of equal weight are merged; an empty prompt is `[("", 1.0)]`.
//!
//! Weights are Python floats (f64), multiplied in the same order as there, so that equal
//! weights merge exactly when AUTOMATIC1111's do.
use std::sync::OnceLock;

use regex::Regex;

/// The multiplier of `(text)`.
const ROUND: f64 = 1.1;
/// The weight AUTOMATIC1111 gives its `BREAK` marker.
const BREAK_WEIGHT: f64 = -1.0;

/// One run of prompt text and its attention weight.
#[derive(Clone, Debug, PartialEq)]
pub struct Segment {
    pub text: String,
    pub weight: f64,
}

impl Segment {
    /// Whether this is a `BREAK`: the chunk ends here.
    pub fn is_break(&self) -> bool {
        self.text == "BREAK" && self.weight == BREAK_WEIGHT
    }
}

/// Why a prompt cannot be read.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SyntaxError {
    #[error("the attention weight {0:?} in `(...:{0})` is not a number; write it like 1.3 or 0.8")]
    Weight(String),
    #[error("the attention weight of {text:?} comes to {weight}, too large to compute with; use weights nearer 1")]
    Overflow { text: String, weight: f64 },
}

/// One token of the prompt as AUTOMATIC1111's `re_attention` splits it.
enum Lexeme<'a> {
    /// `\(`, `\)`, `\[`, `\]`, `\\`: the character; a lone backslash: nothing.
    Escaped(&'a str),
    Open,
    OpenSquare,
    /// `:1.3)`: the weight as written.
    Weight(String),
    Close,
    CloseSquare,
    /// Plain text, including a `:` that does not start a weight.
    Text,
}

/// Python's `\s` on `str`: Unicode whitespace, and the separators U+001C..U+001F.
fn is_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `\w` on `str`.
fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Python's `\d` on `str`: a Unicode decimal digit (category Nd), and its value. Nd digits come
/// in runs of ten, 0 to 9, so a digit's value is its distance from its run's start, mod 10.
fn digit(c: char) -> Option<char> {
    static ND: OnceLock<Regex> = OnceLock::new();
    let nd = ND.get_or_init(|| Regex::new(r"^\p{Nd}$").expect("a valid pattern"));
    let is_digit = |c: char| nd.is_match(c.encode_utf8(&mut [0; 4]));
    if c.is_ascii_digit() || !is_digit(c) {
        return c.is_ascii_digit().then_some(c);
    }
    let mut start = c as u32;
    while start > 0 && char::from_u32(start - 1).is_some_and(is_digit) {
        start -= 1;
    }
    char::from_digit((c as u32 - start) % 10, 10)
}

/// `:\s*([+-]?[.\d]+)\s*\)` at the start of `s`: the weight as ASCII text and the length
/// matched.
fn weight_at(s: &str) -> Option<(String, usize)> {
    let rest = s.strip_prefix(':')?.trim_start_matches(is_space);
    let mut number = String::new();
    let mut chars = rest.char_indices().peekable();
    if let Some(&(_, sign @ ('+' | '-'))) = chars.peek() {
        number.push(sign);
        chars.next();
    }
    let mut end = rest.len() - rest[number.len()..].len();
    let mut digits = 0;
    for (i, c) in chars {
        match c {
            '.' => number.push('.'),
            c => match digit(c) {
                Some(d) => number.push(d),
                None => break,
            },
        }
        digits += 1;
        end = i + c.len_utf8();
    }
    if digits == 0 {
        return None;
    }
    let tail = rest[end..].trim_start_matches(is_space);
    tail.starts_with(')').then(|| (number, s.len() - tail.len() + 1))
}

/// The next lexeme of `s` (not empty) and its length, trying AUTOMATIC1111's alternatives in
/// its order.
fn lex(s: &str) -> (Lexeme<'_>, usize) {
    let mut chars = s.chars();
    let first = chars.next().unwrap_or_default();
    match first {
        '\\' => match chars.next() {
            Some(c @ ('(' | ')' | '[' | ']' | '\\')) => (Lexeme::Escaped(&s[1..1 + c.len_utf8()]), 2),
            _ => (Lexeme::Escaped(""), 1),
        },
        '(' => (Lexeme::Open, 1),
        '[' => (Lexeme::OpenSquare, 1),
        ':' => match weight_at(s) {
            Some((w, len)) => (Lexeme::Weight(w), len),
            None => (Lexeme::Text, 1),
        },
        ')' => (Lexeme::Close, 1),
        ']' => (Lexeme::CloseSquare, 1),
        _ => {
            let end = s.find(['\\', '(', ')', '[', ']', ':']).unwrap_or(s.len());
            (Lexeme::Text, end)
        }
    }
}

/// `re.split(r"\s*\bBREAK\b\s*", text)`: the pieces between whole-word `BREAK`s, the
/// whitespace around each `BREAK` removed.
fn split_breaks(text: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut piece_start = 0;
    let mut search = 0;
    while let Some(found) = text[search..].find("BREAK") {
        let at = search + found;
        let end = at + "BREAK".len();
        let before_ok = text[..at].chars().next_back().is_none_or(|c| !is_word(c));
        let after_ok = text[end..].chars().next().is_none_or(|c| !is_word(c));
        if before_ok && after_ok {
            let start = piece_start + text[piece_start..at].trim_end_matches(is_space).len();
            pieces.push(&text[piece_start..start]);
            piece_start = text.len() - text[end..].trim_start_matches(is_space).len();
            search = piece_start;
        } else {
            search = at + 1;
        }
    }
    pieces.push(&text[piece_start..]);
    pieces
}

/// Read a prompt as AUTOMATIC1111 does: its (text, weight) segments.
pub fn parse(prompt: &str) -> Result<Vec<Segment>, SyntaxError> {
    let mut res: Vec<Segment> = Vec::new();
    let mut round: Vec<usize> = Vec::new();
    let mut square: Vec<usize> = Vec::new();
    let multiply = |res: &mut Vec<Segment>, from: usize, by: f64| res[from..].iter_mut().for_each(|s| s.weight *= by);
    let mut rest = prompt;
    while !rest.is_empty() {
        let (lexeme, len) = lex(rest);
        let matched = &rest[..len];
        rest = &rest[len..];
        match lexeme {
            Lexeme::Escaped(c) => res.push(Segment { text: c.to_string(), weight: 1.0 }),
            Lexeme::Open => round.push(res.len()),
            Lexeme::OpenSquare => square.push(res.len()),
            Lexeme::Weight(w) if !round.is_empty() => {
                let by: f64 = w.parse().map_err(|_| SyntaxError::Weight(matched[1..matched.len() - 1].trim().to_string()))?;
                let from = round.pop().unwrap_or_default();
                multiply(&mut res, from, by);
            }
            Lexeme::Close if !round.is_empty() => {
                let from = round.pop().unwrap_or_default();
                multiply(&mut res, from, ROUND);
            }
            Lexeme::CloseSquare if !square.is_empty() => {
                let from = square.pop().unwrap_or_default();
                multiply(&mut res, from, 1.0 / ROUND);
            }
            // Anything else is text: a closing bracket with nothing open, `:1.3)` with no `(`.
            _ => {
                for (i, piece) in split_breaks(matched).into_iter().enumerate() {
                    if i > 0 {
                        res.push(Segment { text: "BREAK".into(), weight: BREAK_WEIGHT });
                    }
                    res.push(Segment { text: piece.to_string(), weight: 1.0 });
                }
            }
        }
    }
    // Brackets left open apply to the rest: every `(` in the order opened, then every `[` (the
    // order only matters to the floating-point product, and this is AUTOMATIC1111's).
    for from in round {
        multiply(&mut res, from, ROUND);
    }
    for from in square {
        multiply(&mut res, from, 1.0 / ROUND);
    }
    if res.is_empty() {
        res.push(Segment { text: String::new(), weight: 1.0 });
    }
    // Merge runs of equal weight.
    let mut merged: Vec<Segment> = Vec::with_capacity(res.len());
    for s in res {
        match merged.last_mut() {
            Some(last) if last.weight == s.weight => last.text.push_str(&s.text),
            _ => merged.push(s),
        }
    }
    if let Some(s) = merged.iter().find(|s| !(s.weight as f32).is_finite()) {
        return Err(SyntaxError::Overflow { text: s.text.clone(), weight: s.weight });
    }
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(prompt: &str) -> Vec<(String, f64)> {
        parse(prompt).expect("parses").into_iter().map(|s| (s.text, s.weight)).collect()
    }

    fn p(list: &[(&str, f64)]) -> Vec<(String, f64)> {
        list.iter().map(|(t, w)| (t.to_string(), *w)).collect()
    }

    #[test]
    fn the_documented_examples() {
        // The examples in AUTOMATIC1111's docstring of parse_prompt_attention.
        assert_eq!(pairs("normal text"), p(&[("normal text", 1.0)]));
        assert_eq!(pairs("an (important) word"), p(&[("an ", 1.0), ("important", 1.1), (" word", 1.0)]));
        assert_eq!(pairs("(unbalanced"), p(&[("unbalanced", 1.1)]));
        assert_eq!(pairs("\\(literal\\]"), p(&[("(literal]", 1.0)]));
        assert_eq!(pairs("(unnecessary)(parens)"), p(&[("unnecessaryparens", 1.1)]));
        assert_eq!(
            pairs("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky)))."),
            p(&[
                ("a ", 1.0),
                ("house", 1.5730000000000004),
                (" ", 1.1),
                ("on", 1.0),
                (" a ", 1.1),
                ("hill", 0.55),
                (", sun, ", 1.1),
                ("sky", 1.4641000000000006),
                (".", 1.1)
            ])
        );
    }

    #[test]
    fn breaks() {
        assert_eq!(pairs("a BREAK b"), p(&[("a", 1.0), ("BREAK", -1.0), ("b", 1.0)]));
        assert_eq!(pairs("aBREAKb"), p(&[("aBREAKb", 1.0)]));
        assert_eq!(pairs("a break b"), p(&[("a break b", 1.0)]));
        assert_eq!(pairs("BREAK"), p(&[("", 1.0), ("BREAK", -1.0), ("", 1.0)]));
        assert_eq!(pairs("a,BREAK,b"), p(&[("a,", 1.0), ("BREAK", -1.0), (",b", 1.0)]));
        // In brackets the marker is weighted too, so it is the word.
        assert_eq!(pairs("[BREAK]"), p(&[("", 1.0 / 1.1), ("BREAK", -1.0 / 1.1), ("", 1.0 / 1.1)]));
        assert!(!parse("[BREAK]").expect("parses").iter().any(Segment::is_break));
    }

    #[test]
    fn escapes_and_stray_characters() {
        assert_eq!(pairs("a\\b"), p(&[("ab", 1.0)]));
        assert_eq!(pairs("a\\\\b"), p(&[("a\\b", 1.0)]));
        assert_eq!(pairs("a) b]"), p(&[("a) b]", 1.0)]));
        assert_eq!(pairs("a:1.2) b"), p(&[("a:1.2) b", 1.0)]));
        assert_eq!(pairs("time: 12:30"), p(&[("time: 12:30", 1.0)]));
        assert_eq!(pairs(""), p(&[("", 1.0)]));
        assert_eq!(pairs("()"), p(&[("", 1.0)]));
        assert_eq!(pairs("(a: 1.5 )"), p(&[("a", 1.5)]));
        assert_eq!(pairs("(a:-1)"), p(&[("a", -1.0)]));
    }

    #[test]
    fn bad_weights_are_errors() {
        assert_eq!(parse("(a:1.2.3)"), Err(SyntaxError::Weight("1.2.3".into())));
        assert_eq!(parse("(a:.)"), Err(SyntaxError::Weight(".".into())));
        assert!(matches!(parse(&format!("(a:{})", "9".repeat(60))), Err(SyntaxError::Overflow { .. })));
    }
}

/// The corpus recorded from AUTOMATIC1111's own `parse_prompt_attention`
/// (`tools/fixtures/record_prompts.py`): every prompt gives exactly its segments, weights to
/// the bit, and the prompts it raises on are errors here.
#[cfg(test)]
mod corpus {
    use super::parse;

    #[derive(serde::Deserialize)]
    struct Corpus {
        raises: Vec<String>,
        cases: Vec<Case>,
    }

    #[derive(serde::Deserialize)]
    struct Case {
        prompt: String,
        parsed: Vec<(String, f64)>,
    }

    #[test]
    fn every_recorded_prompt_parses_as_in_automatic1111() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/reference/prompts/parser.json");
        let corpus: Corpus = serde_json::from_str(&std::fs::read_to_string(path).expect("parser.json")).expect("parser.json parses");
        assert!(corpus.cases.len() >= 40, "the corpus has at least 40 prompts");
        let mut wrong = Vec::new();
        for case in &corpus.cases {
            match parse(&case.prompt) {
                Ok(ours) => {
                    let ours: Vec<(String, f64)> = ours.into_iter().map(|s| (s.text, s.weight)).collect();
                    // Bitwise: -0.0 and 0.0 differ in the recording as in Python's repr.
                    let same = ours.len() == case.parsed.len() && ours.iter().zip(&case.parsed).all(|(a, b)| a.0 == b.0 && a.1.to_bits() == b.1.to_bits());
                    if !same {
                        wrong.push(format!("{:?}\n  ours:   {ours:?}\n  theirs: {:?}", case.prompt, case.parsed));
                    }
                }
                Err(e) => wrong.push(format!("{:?}: {e}", case.prompt)),
            }
        }
        for prompt in &corpus.raises {
            if parse(prompt).is_ok() {
                wrong.push(format!("{prompt:?} parses, but AUTOMATIC1111 raises on it"));
            }
        }
        assert!(wrong.is_empty(), "{} of {} prompts differ:\n{}", wrong.len(), corpus.cases.len(), wrong.join("\n"));
    }
}
