//! From text to ids: cut the text around the added tokens (transformers' `Trie.split` and the
//! added tokens' whitespace and single-word rules), clean each other piece, pick its words with
//! CLIP's pattern, map each word's bytes to GPT-2's printable alphabet and run BPE; then
//! truncate and pad to `model_max_length`.
use regex::Regex;
use tokenizers::Model;

use super::config::AddedToken;
use super::normalize::is_py_space;
use super::{ClipTokenizer, TokenizerError, END_OF_TEXT, START_OF_TEXT};

/// CLIP's word pattern, rewritten for Rust's `regex` so that it matches what Python's `regex`
/// module matches with `IGNORECASE` (see the module documentation).
const CLIP_PATTERN: &str = r"(?i:<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d)|\p{L}+|\p{N}|[^\s\p{L}\p{N}\x{345}]+";

/// CLIP's word pattern, compiled.
pub(super) fn word_pattern() -> Regex {
    Regex::new(CLIP_PATTERN).expect("CLIP pattern compiles")
}

/// GPT-2/CLIP's reversible byte -> printable character table.
pub(super) fn bytes_to_unicode() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    for b in 0..256u32 {
        let printable = (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || (0xae..=0xff).contains(&b);
        table[b as usize] = if printable {
            char::from_u32(b).unwrap()
        } else {
            let c = char::from_u32(next).unwrap();
            next += 1;
            c
        };
    }
    table
}

impl ClipTokenizer {
    /// Start token, `ids`, end token, padded with the pad id to `max_length`; `ids` that do not
    /// fit are truncated on the configured side.
    pub(super) fn frame(&self, mut ids: Vec<u32>) -> Vec<i64> {
        let budget = self.max_length.saturating_sub(2);
        if ids.len() > budget {
            if self.truncate_left {
                ids.drain(..ids.len() - budget);
            } else {
                ids.truncate(budget);
            }
        }
        let mut out: Vec<i64> = Vec::with_capacity(self.max_length.max(ids.len() + 2));
        let padding = self.max_length.saturating_sub(ids.len() + 2);
        if self.pad_left {
            out.extend(std::iter::repeat_n(self.pad_id as i64, padding));
        }
        out.push(self.bos_id as i64);
        out.extend(ids.iter().map(|&id| id as i64));
        out.push(self.eos_id as i64);
        if !self.pad_left {
            out.extend(std::iter::repeat_n(self.pad_id as i64, padding));
        }
        out
    }

    /// `PreTrainedTokenizer.tokenize` + `convert_tokens_to_ids`: the ids without start, end or
    /// padding, untruncated.
    pub(super) fn tokenize_ids(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        let mut pieces = self.split_added(text);
        self.apply_added_token_rules(&mut pieces);
        let mut ids = Vec::with_capacity(text.len() / 3 + 4);
        for piece in &pieces {
            if piece.is_empty() {
                continue;
            }
            if let Some(&id) = self.added_ids.get(piece.as_str()) {
                ids.push(id);
            } else {
                self.tokenize_text(piece, &mut ids)?;
            }
        }
        Ok(ids)
    }

    /// `PreTrainedTokenizer.tokenize`: whitespace stripping and single-word rules of the
    /// added tokens (all off for CLIP), statement for statement.
    fn apply_added_token_rules(&self, pieces: &mut [String]) {
        for i in 0..pieces.len() {
            let Some(token) = self.added_token(&pieces[i]) else {
                continue;
            };
            let left = (i > 0).then(|| pieces[i - 1].clone()).filter(|s| !s.is_empty());
            let right = pieces.get(i + 1).cloned().filter(|s| !s.is_empty());
            if let (true, Some(right)) = (token.rstrip, &right) {
                pieces[i + 1] = right.trim_start_matches(is_py_space).to_string();
            }
            if let (true, Some(left)) = (token.lstrip, &left) {
                pieces[i - 1] = left.trim_end_matches(is_py_space).to_string();
            }
            if token.single_word && left.as_ref().is_some_and(|l| !l.ends_with(' ')) {
                let content = std::mem::take(&mut pieces[i]);
                pieces[i - 1].push_str(&content);
            } else if token.single_word && right.as_ref().is_some_and(|r| !r.starts_with(' ')) {
                let content = std::mem::take(&mut pieces[i]);
                pieces[i + 1].insert_str(0, &content);
            }
        }
    }

    fn added_token(&self, content: &str) -> Option<&AddedToken> {
        self.added.iter().find(|t| t.content == content)
    }

    /// transformers' `Trie.split`: cut the text around added tokens, leftmost-longest.
    fn split_added(&self, text: &str) -> Vec<String> {
        let mut pieces = Vec::new();
        let mut start = 0;
        let mut i = 0;
        while i < text.len() {
            let rest = &text[i..];
            if let Some(token) = self.added.iter().find(|t| rest.starts_with(t.content.as_str())) {
                if start < i {
                    pieces.push(text[start..i].to_string());
                }
                pieces.push(token.content.clone());
                i += token.content.len();
                start = i;
            } else {
                i += rest.chars().next().map_or(1, char::len_utf8);
            }
        }
        if start < text.len() {
            pieces.push(text[start..].to_string());
        }
        pieces
    }

    /// `CLIPTokenizer._tokenize` (no ftfy) followed by the id lookup, appended to `ids`.
    fn tokenize_text(&self, text: &str, ids: &mut Vec<u32>) -> Result<(), TokenizerError> {
        let normalized = self.cleaner.basic_clean(text);
        let mut mapped = String::new();
        for word in self.pattern.find_iter(&normalized) {
            let word = word.as_str();
            if word == START_OF_TEXT || word == END_OF_TEXT {
                // The slow tokenizer's BPE cache is seeded with these two words.
                ids.push(self.token_to_id(word));
                continue;
            }
            mapped.clear();
            mapped.extend(word.bytes().map(|b| self.byte_chars[b as usize]));
            let tokens = self.bpe.tokenize(&mapped).map_err(|e| TokenizerError::Encode(format!("BPE failed on {word:?}: {e}")))?;
            for token in tokens {
                // `_convert_token_to_id_with_added_voc`: added tokens first.
                ids.push(self.added_ids.get(token.value.as_str()).copied().unwrap_or(token.id));
            }
        }
        Ok(())
    }

    fn token_to_id(&self, token: &str) -> u32 {
        self.added_ids.get(token).copied().or_else(|| self.bpe.token_to_id(token)).unwrap_or(self.unk_id)
    }
}
