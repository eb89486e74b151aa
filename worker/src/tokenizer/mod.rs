//! CLIP tokenization, id for id what transformers' slow `CLIPTokenizer` gives.
//!
//! diffusers' Stable Diffusion pipelines tokenize prompts with the slow Python
//! `CLIPTokenizer`:
//! `tokenizer(prompt, padding="max_length", max_length=tokenizer.model_max_length, truncation=True)`.
//! [`ClipTokenizer::encode`] reproduces that call.
//!
//! # Normalization: the no-ftfy path
//!
//! `CLIPTokenizer` cleans text with `ftfy.fix_text` when the `ftfy` package is importable and
//! with BERT's `BasicTokenizer` otherwise. diffusers does not depend on ftfy and most
//! installations lack it, so we reproduce the **no-ftfy** path. For every piece of text between
//! added tokens (see below) it does, in order:
//!
//! 1. `_clean_text`: drop U+0000, U+FFFD and every character whose general category is `C*`
//!    (control, format — zero-width spaces/joiners, soft hyphen, bidi marks, tag characters —,
//!    private use, unassigned), except `\t \n \r`, which, like every `Zs` space (NBSP, em space,
//!    ideographic space, …), become a plain space. (`\v` and `\f` are `Cc`: removed, not spaces.)
//! 2. `_tokenize_chinese_chars`: put spaces around CJK ideographs (the BERT ranges; kana and
//!    Hangul are not included).
//! 3. NFC normalization of the whole piece (accents are composed, never stripped:
//!    `strip_accents=False`; compatibility characters such as ligatures or fullwidth forms stay).
//! 4. Split on Python whitespace (what is left of it: spaces, U+2028, U+2029), lowercase each
//!    word with Python's `str.lower` (full case mapping, final sigma), and join with one space.
//!    `do_split_on_punc=False`: punctuation stays attached.
//!
//! Then CLIP's pattern
//! `<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+`
//! (Python `regex`, `IGNORECASE`) picks the words; unmatched characters are dropped. Under
//! `IGNORECASE` Python's `regex` gives exactly the case-sensitive classes except for U+0345
//! (COMBINING GREEK YPOGEGRAMMENI), which then matches no alternative and is dropped, while the
//! literal alternatives also match `ſ` for `s` (simple case folding, as Rust's `regex` does).
//! A word that is exactly `<|startoftext|>` or `<|endoftext|>` (e.g. typed in another case)
//! maps straight to that token; every other word is mapped byte by byte to GPT-2's printable
//! byte alphabet and run through BPE with the end-of-word suffix `</w>` (the `tokenizers`
//! crate's BPE model, with its word cache).
//!
//! # Added tokens
//!
//! Before any of this, the slow tokenizer splits the raw text on its added tokens (the entries
//! of `added_tokens_decoder` plus the special tokens), leftmost-longest and case-sensitively,
//! and encodes each occurrence as that token's id. For CLIP these are `<|startoftext|>` and
//! `<|endoftext|>`, and also `!` when the pad token is `!` (SDXL's `tokenizer_2`): there, every
//! `!` in a prompt becomes id 0 and never merges with neighbours (`"mars!!"` → `mars</w> ! !`
//! instead of `mars</w> !!</w>`).
//!
//! # Building blocks
//!
//! BPE (merges by rank, `</w>` suffix, word cache) is the `tokenizers` crate's `BPE` model.
//! The word split uses the `regex` crate directly rather than `tokenizers`' `Split`
//! pre-tokenizer, because the slow tokenizer checks each *split word* for the two special
//! strings before BPE, and the case-insensitivity has to be scoped as described above. The
//! clean-up is ours (character classes from `regex-syntax`'s tables, NFC from
//! `unicode-normalization`); `tokenizers`' own CLIP normalizer is the fast tokenizer's
//! (NFC, `\s+` → space, lowercase), which does not match the slow one on control, format or
//! CJK characters.
//!
//! # Configuration
//!
//! Special tokens, added tokens and `model_max_length` are resolved as transformers'
//! `from_pretrained` does: tokenizer_config.json with `added_tokens_decoder` (the current
//! layout), or the legacy layout where special_tokens_map.json overrides tokenizer_config.json
//! and added_tokens.json / tokenizer.json's `added_tokens` list added tokens. `padding_side` and
//! `truncation_side` are honoured (both default to right). A missing `model_max_length`, or
//! transformers' "unknown" value (1e30), gives CLIP's 77.
//!
//! # Verification
//!
//! Unit tests compare with ids recorded from transformers 4.57 (Python 3.11, no ftfy) by
//! tools/fixtures/record_tokenizer.py: a committed corpus of hand-written and seeded random
//! prompts, for the SD 1.5, SDXL and SDXL `tokenizer_2` fixture tokenizers. Two ignored tests
//! take larger references the same script writes: 30,000 random prompts, and every Unicode
//! scalar value in seven contexts (identical for every character the reference Python assigns).
//!
//! # Known limits
//!
//! Character properties come from the Unicode tables compiled into our dependencies (`regex`:
//! Unicode 16; `unicode-normalization`: newer; Rust's `str::to_lowercase`), while Python takes
//! them from its own `unicodedata` (Python 3.11: Unicode 14, 3.12: 15, 3.13: 15.1). Characters
//! assigned after the Python's Unicode version (e.g. emoji added in Unicode 15) are dropped as
//! "unassigned" by that Python and kept by us; the reference Python itself disagrees with
//! itself across versions there.
//!
//! # Layout
//!
//! `config` resolves a tokenizer directory (vocabulary, merges, special and added tokens,
//! lengths), `normalize` is the text clean-up, `encode` the way from text to ids.
mod config;
mod encode;
mod normalize;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use regex::Regex;
use tokenizers::models::bpe::BPE;
use tokenizers::Model;

use self::config::{AddedToken, Config};
use self::normalize::Cleaner;

const START_OF_TEXT: &str = "<|startoftext|>";
const END_OF_TEXT: &str = "<|endoftext|>";

/// Why a tokenizer could not be loaded or a prompt could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("tokenizer file {} is missing", .path.display())]
    MissingFile { path: PathBuf },
    #[error("cannot read tokenizer file {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("tokenizer file {} is malformed: {reason}", .path.display())]
    Malformed { path: PathBuf, reason: String },
    #[error("tokenization failed: {0}")]
    Encode(String),
}

impl TokenizerError {
    fn malformed(path: &Path, reason: impl Into<String>) -> Self {
        TokenizerError::Malformed { path: path.to_path_buf(), reason: reason.into() }
    }
}

/// CLIP's tokenizer: prompt text to the `input_ids` diffusers feeds the text encoder.
///
/// Construct once per tokenizer directory and reuse: construction parses the vocabulary and
/// merges; [`encode`](Self::encode) is cheap and safe to call from many threads.
pub struct ClipTokenizer {
    bpe: BPE,
    /// Byte -> printable character (GPT-2's `bytes_to_unicode`).
    byte_chars: [char; 256],
    pattern: Regex,
    /// `_clean_text`'s character classes.
    cleaner: Cleaner,
    /// Added tokens, longest first (leftmost-longest matching).
    added: Vec<AddedToken>,
    added_ids: HashMap<String, u32>,
    unk_id: u32,
    bos_id: u32,
    eos_id: u32,
    pad_id: u32,
    max_length: usize,
    pad_left: bool,
    truncate_left: bool,
}

impl fmt::Debug for ClipTokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClipTokenizer")
            .field("vocab_size", &self.bpe.get_vocab_size())
            .field("added", &self.added.iter().map(|t| (&t.content, t.id)).collect::<Vec<_>>())
            .field("bos_id", &self.bos_id)
            .field("eos_id", &self.eos_id)
            .field("pad_id", &self.pad_id)
            .field("max_length", &self.max_length)
            .finish()
    }
}

impl ClipTokenizer {
    /// Load from a tokenizer directory in transformers' layout (vocab.json, merges.txt,
    /// special_tokens_map.json / tokenizer_config.json for the pad token and model_max_length).
    /// If a tokenizer.json exists, it may be used, but vocab+merges must work alone.
    ///
    /// vocab.json + merges.txt are used when present; without vocab.json, the BPE vocabulary and
    /// merges are taken from tokenizer.json. The configuration files are optional (CLIP's
    /// defaults: pad `<|endoftext|>`, 77 tokens); a file that exists but cannot be parsed is
    /// an error naming it.
    pub fn from_dir(dir: &Path) -> Result<Self, TokenizerError> {
        let (vocab, merges) = config::load_vocab_and_merges(dir)?;
        let config = Config::resolve(dir, &vocab)?;
        let mut builder = BPE::builder().vocab_and_merges(vocab, merges.pairs).end_of_word_suffix("</w>".to_string());
        if let Some(unk) = config.unk_token {
            builder = builder.unk_token(unk);
        }
        let bpe = builder.build().map_err(|e| TokenizerError::malformed(&merges.path, e.to_string()))?;
        let added_ids = config.added.iter().map(|t| (t.content.clone(), t.id)).collect();
        Ok(ClipTokenizer {
            bpe,
            byte_chars: encode::bytes_to_unicode(),
            pattern: encode::word_pattern(),
            cleaner: Cleaner::new(),
            added: config.added,
            added_ids,
            unk_id: config.unk_id,
            bos_id: config.bos_id,
            eos_id: config.eos_id,
            pad_id: config.pad_id,
            max_length: config.max_length,
            pad_left: config.pad_left,
            truncate_left: config.truncate_left,
        })
    }

    /// Exactly what `tokenizer(text, padding="max_length", max_length=tokenizer.model_max_length, truncation=True).input_ids` gives: start token, tokens, end token, padded with the pad id to max_length (77); prompts longer than that are truncated (keeping start and end).
    pub fn encode(&self, text: &str) -> Result<Vec<i64>, TokenizerError> {
        let ids = self.tokenize_ids(text)?;
        Ok(self.frame(ids))
    }

    /// The tokens of `text` alone: no start or end token, no padding, no truncation (what
    /// `tokenizer(text, add_special_tokens=False, truncation=False).input_ids` gives).
    pub fn tokens(&self, text: &str) -> Result<Vec<i64>, TokenizerError> {
        Ok(self.tokenize_ids(text)?.into_iter().map(i64::from).collect())
    }

    /// The start-of-text and end-of-text ids.
    pub fn bos_eos(&self) -> (i64, i64) {
        (self.bos_id as i64, self.eos_id as i64)
    }

    /// The id of a vocabulary entry (`",</w>"`), if the vocabulary has it.
    pub fn vocab_id(&self, token: &str) -> Option<i64> {
        self.bpe.token_to_id(token).map(i64::from)
    }

    /// The padded length of every encoding (tokenizer_config.json's `model_max_length`).
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// The id padding uses: 49407 (`<|endoftext|>`) for most CLIP tokenizers, 0 (`!`) for SDXL's
    /// `tokenizer_2`.
    pub fn pad_id(&self) -> i64 {
        self.pad_id as i64
    }
}
