//! What a tokenizer directory holds, resolved as transformers' `from_pretrained` does: the BPE
//! vocabulary and merges (vocab.json + merges.txt, or tokenizer.json's model), the special
//! tokens (tokenizer_config.json, and special_tokens_map.json in the legacy layout), the added
//! tokens (`added_tokens_decoder`, or added_tokens.json / tokenizer.json's `added_tokens` in the
//! legacy layout), `model_max_length`, and the padding and truncation sides.
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use tokenizers::models::bpe::Vocab;

use super::normalize::is_py_space;
use super::{TokenizerError, END_OF_TEXT, START_OF_TEXT};

/// How many merges the slow tokenizer reads from merges.txt (`49152 - 256 - 2`).
const CLIP_MERGES: usize = 49152 - 256 - 2;
/// CLIP's context length, used when tokenizer_config.json does not give `model_max_length`.
const DEFAULT_MAX_LENGTH: usize = 77;
/// The special-token attributes, in transformers' `SPECIAL_TOKENS_ATTRIBUTES` order.
const SPECIAL_KEYS: [&str; 7] = ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"];

type JsonObject = Map<String, Value>;

/// A token the slow tokenizer splits out of the raw text before any normalization.
#[derive(Debug, Clone)]
pub(super) struct AddedToken {
    pub(super) content: String,
    pub(super) id: u32,
    pub(super) lstrip: bool,
    pub(super) rstrip: bool,
    pub(super) single_word: bool,
}

impl AddedToken {
    fn from_spec(spec: TokenSpec, id: u32) -> Self {
        AddedToken { content: spec.content, id, lstrip: spec.lstrip, rstrip: spec.rstrip, single_word: spec.single_word }
    }
}

/// A special token as written in tokenizer_config.json / special_tokens_map.json.
#[derive(Debug, Clone)]
struct TokenSpec {
    content: String,
    lstrip: bool,
    rstrip: bool,
    single_word: bool,
}

impl TokenSpec {
    fn plain(content: &str) -> Self {
        TokenSpec { content: content.to_string(), lstrip: false, rstrip: false, single_word: false }
    }

    /// A string, an `{"content": ..}` object (`__type: AddedToken` or not), or null.
    fn parse(value: &Value, path: &Path, key: &str) -> Result<Option<Self>, TokenizerError> {
        match value {
            Value::Null => Ok(None),
            Value::String(s) => Ok(Some(TokenSpec::plain(s))),
            Value::Object(map) => {
                let content =
                    map.get("content").and_then(Value::as_str).ok_or_else(|| TokenizerError::malformed(path, format!("{key} has no string \"content\"")))?;
                let flag = |name: &str| map.get(name).and_then(Value::as_bool).unwrap_or(false);
                Ok(Some(TokenSpec { content: content.to_string(), lstrip: flag("lstrip"), rstrip: flag("rstrip"), single_word: flag("single_word") }))
            }
            _ => Err(TokenizerError::malformed(path, format!("{key} is neither a string nor a token object"))),
        }
    }
}

/// The special tokens as the configuration files set them (null: unset), starting from CLIP's.
struct Specials {
    specs: HashMap<&'static str, Option<TokenSpec>>,
    additional: Vec<TokenSpec>,
}

impl Specials {
    fn clip_defaults() -> Self {
        let mut specs = HashMap::new();
        specs.insert("bos_token", Some(TokenSpec::plain(START_OF_TEXT)));
        specs.insert("eos_token", Some(TokenSpec::plain(END_OF_TEXT)));
        specs.insert("unk_token", Some(TokenSpec::plain(END_OF_TEXT)));
        specs.insert("pad_token", Some(TokenSpec::plain(END_OF_TEXT)));
        Specials { specs, additional: Vec::new() }
    }

    /// Take the special tokens `obj` (a configuration file at `path`) sets.
    fn apply(&mut self, obj: &JsonObject, path: &Path) -> Result<(), TokenizerError> {
        for key in SPECIAL_KEYS {
            if let Some(v) = obj.get(key) {
                self.specs.insert(key, TokenSpec::parse(v, path, key)?);
            }
        }
        if let Some(v) = obj.get("additional_special_tokens") {
            let list = v.as_array().ok_or_else(|| TokenizerError::malformed(path, "additional_special_tokens is not a list"))?;
            self.additional.clear();
            for item in list {
                if let Some(spec) = TokenSpec::parse(item, path, "additional_special_tokens")? {
                    self.additional.push(spec);
                }
            }
        }
        Ok(())
    }

    fn get(&self, key: &str) -> Option<TokenSpec> {
        self.specs.get(key).cloned().flatten()
    }

    /// Every special token, in `SPECIAL_KEYS` order, then the additional ones.
    fn all(&self) -> Vec<TokenSpec> {
        let mut list: Vec<TokenSpec> = SPECIAL_KEYS.iter().filter_map(|k| self.get(k)).collect();
        list.extend(self.additional.iter().cloned());
        list
    }
}

/// What the configuration files decide, resolved against the vocabulary.
pub(super) struct Config {
    /// Added tokens, longest first (leftmost-longest matching).
    pub(super) added: Vec<AddedToken>,
    /// The unknown token BPE falls back to, when it is in the vocabulary.
    pub(super) unk_token: Option<String>,
    pub(super) unk_id: u32,
    pub(super) bos_id: u32,
    pub(super) eos_id: u32,
    pub(super) pad_id: u32,
    pub(super) max_length: usize,
    pub(super) pad_left: bool,
    pub(super) truncate_left: bool,
}

impl Config {
    /// Special tokens and added tokens, as `PreTrainedTokenizerBase._from_pretrained` and
    /// `PreTrainedTokenizer.__init__` resolve them; then `model_max_length` and the sides.
    pub(super) fn resolve(dir: &Path, vocab: &Vocab) -> Result<Config, TokenizerError> {
        let config_path = dir.join("tokenizer_config.json");
        let config = read_json_object(&config_path)?;
        let mut specials = Specials::clip_defaults();
        if let Some(config) = &config {
            specials.apply(config, &config_path)?;
        }
        let added_list = match config.as_ref().and_then(|c| c.get("added_tokens_decoder")) {
            Some(decoder) => decoder_tokens(decoder, &config_path)?,
            None => legacy_tokens(dir, &mut specials)?,
        };
        let added_by_content = with_special_tokens(added_list, &specials, vocab);
        let (unk_id, bos_id, eos_id, pad_id) = special_ids(&specials, &added_by_content, vocab, &config_path)?;
        let max_length = max_length(config.as_ref(), &config_path)?;
        let pad_left = left_side(config.as_ref(), "padding_side", &config_path)?;
        let truncate_left = left_side(config.as_ref(), "truncation_side", &config_path)?;
        let unk_token = specials.get("unk_token").map(|s| s.content).filter(|u| vocab.contains_key(u));
        let mut added: Vec<AddedToken> = added_by_content.into_values().collect();
        added.sort_by(|a, b| b.content.len().cmp(&a.content.len()).then(a.id.cmp(&b.id)));
        Ok(Config { added, unk_token, unk_id, bos_id, eos_id, pad_id, max_length, pad_left, truncate_left })
    }
}

/// tokenizer_config.json's `added_tokens_decoder` (the current layout): id -> token.
fn decoder_tokens(decoder: &Value, config_path: &Path) -> Result<Vec<AddedToken>, TokenizerError> {
    let decoder = decoder.as_object().ok_or_else(|| TokenizerError::malformed(config_path, "added_tokens_decoder is not an object"))?;
    let mut added = Vec::new();
    for (id, token) in decoder {
        let id: u32 = id.parse().map_err(|_| TokenizerError::malformed(config_path, format!("added_tokens_decoder key {id:?} is not an id")))?;
        let spec = TokenSpec::parse(token, config_path, "added_tokens_decoder")?
            .ok_or_else(|| TokenizerError::malformed(config_path, "null in added_tokens_decoder"))?;
        added.push(AddedToken::from_spec(spec, id));
    }
    Ok(added)
}

/// The legacy layout: special_tokens_map.json overrides tokenizer_config.json, and
/// added_tokens.json / tokenizer.json may list added tokens.
fn legacy_tokens(dir: &Path, specials: &mut Specials) -> Result<Vec<AddedToken>, TokenizerError> {
    let map_path = dir.join("special_tokens_map.json");
    if let Some(map) = read_json_object(&map_path)? {
        specials.apply(&map, &map_path)?;
    }
    let mut added = Vec::new();
    let added_path = dir.join("added_tokens.json");
    if let Some(obj) = read_json_object(&added_path)? {
        for (content, id) in obj {
            let id = id
                .as_u64()
                .and_then(|i| u32::try_from(i).ok())
                .ok_or_else(|| TokenizerError::malformed(&added_path, format!("id of {content:?} is not an integer")))?;
            added.push(AddedToken::from_spec(TokenSpec::plain(&content), id));
        }
    }
    let fast_path = dir.join("tokenizer.json");
    if let Some(obj) = read_json_object(&fast_path)? {
        if let Some(list) = obj.get("added_tokens").and_then(Value::as_array) {
            for item in list {
                let id = item.get("id").and_then(Value::as_u64).and_then(|i| u32::try_from(i).ok());
                let spec = TokenSpec::parse(item, &fast_path, "added_tokens")?;
                match (id, spec) {
                    (Some(id), Some(spec)) => added.push(AddedToken::from_spec(spec, id)),
                    _ => return Err(TokenizerError::malformed(&fast_path, "added_tokens entry without id or content")),
                }
            }
        }
    }
    Ok(added)
}

/// The added tokens by content (in id order, later definitions of the same content win), plus
/// the special tokens that are not added tokens yet: with their vocabulary id, or with a new id
/// after the vocabulary.
fn with_special_tokens(mut added: Vec<AddedToken>, specials: &Specials, vocab: &Vocab) -> HashMap<String, AddedToken> {
    added.sort_by_key(|t| t.id);
    let mut by_content: HashMap<String, AddedToken> = HashMap::new();
    for token in added {
        by_content.insert(token.content.clone(), token);
    }
    for spec in specials.all() {
        if spec.content.is_empty() || by_content.contains_key(&spec.content) {
            continue;
        }
        let id = match vocab.get(&spec.content) {
            Some(&id) => id,
            None => {
                let known = vocab.len() + by_content.keys().filter(|k| !vocab.contains_key(*k)).count();
                known as u32
            }
        };
        by_content.insert(spec.content.clone(), AddedToken::from_spec(spec, id));
    }
    by_content
}

/// The ids of the unknown, start, end and pad tokens (unk falls back to the end token).
fn special_ids(specials: &Specials, added: &HashMap<String, AddedToken>, vocab: &Vocab, config_path: &Path) -> Result<(u32, u32, u32, u32), TokenizerError> {
    let token_id = |content: &str| -> Option<u32> { added.get(content).map(|t| t.id).or_else(|| vocab.get(content).copied()) };
    let unk_id = specials.get("unk_token").and_then(|s| token_id(&s.content));
    let special_id = |key: &str| -> Result<u32, TokenizerError> {
        let spec = specials.get(key).ok_or_else(|| TokenizerError::malformed(config_path, format!("no {key} is configured")))?;
        token_id(&spec.content).or(unk_id).ok_or_else(|| TokenizerError::malformed(config_path, format!("{key} {:?} is not in the vocabulary", spec.content)))
    };
    let bos_id = special_id("bos_token")?;
    let eos_id = special_id("eos_token")?;
    let pad_id = special_id("pad_token")?;
    Ok((unk_id.unwrap_or(eos_id), bos_id, eos_id, pad_id))
}

/// `model_max_length`; CLIP's 77 when it is missing or transformers' "unknown" (1e30).
fn max_length(config: Option<&JsonObject>, config_path: &Path) -> Result<usize, TokenizerError> {
    match config.and_then(|c| c.get("model_max_length")) {
        None | Some(Value::Null) => Ok(DEFAULT_MAX_LENGTH),
        // transformers writes VERY_LARGE_INTEGER (1e30) when no length is known.
        Some(v) => match v.as_f64() {
            Some(f) if f > (1u64 << 20) as f64 => Ok(DEFAULT_MAX_LENGTH),
            Some(f) if f >= 2.0 && f.fract() == 0.0 => Ok(f as usize),
            _ => Err(TokenizerError::malformed(config_path, format!("model_max_length {v} is not a usable length"))),
        },
    }
}

/// Whether `padding_side` / `truncation_side` (`key`) is "left" (default: right).
fn left_side(config: Option<&JsonObject>, key: &str, config_path: &Path) -> Result<bool, TokenizerError> {
    match config.and_then(|c| c.get(key)) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::String(s)) if s == "right" => Ok(false),
        Some(Value::String(s)) if s == "left" => Ok(true),
        Some(v) => Err(TokenizerError::malformed(config_path, format!("{key} {v} is neither \"left\" nor \"right\""))),
    }
}

/// merges.txt's (or tokenizer.json's) merges, and the file they came from.
pub(super) struct MergesFile {
    pub(super) path: PathBuf,
    pub(super) pairs: Vec<(String, String)>,
}

/// The BPE vocabulary and merges: vocab.json + merges.txt, or tokenizer.json's model.
pub(super) fn load_vocab_and_merges(dir: &Path) -> Result<(Vocab, MergesFile), TokenizerError> {
    let vocab_path = dir.join("vocab.json");
    let merges_path = dir.join("merges.txt");
    let fast_path = dir.join("tokenizer.json");
    if !vocab_path.exists() && fast_path.exists() {
        return load_from_tokenizer_json(&fast_path);
    }
    let vocab_text = read_text(&vocab_path)?;
    let vocab = parse_vocab(&serde_json::from_str(&vocab_text).map_err(|e| TokenizerError::malformed(&vocab_path, e.to_string()))?, &vocab_path)?;
    let merges_text = read_text(&merges_path)?;
    // `merges_handle.read().strip().split("\n")[1 : 49152 - 256 - 2 + 1]`: the first line
    // (`#version: 0.2`) is skipped whatever it holds.
    let lines = merges_text.trim_matches(is_py_space).split('\n').skip(1).take(CLIP_MERGES);
    let pairs = parse_merges(lines, &merges_path, 2)?;
    Ok((vocab, MergesFile { path: merges_path, pairs }))
}

fn load_from_tokenizer_json(path: &Path) -> Result<(Vocab, MergesFile), TokenizerError> {
    let text = read_text(path)?;
    let json: Value = serde_json::from_str(&text).map_err(|e| TokenizerError::malformed(path, e.to_string()))?;
    let model = json.get("model").ok_or_else(|| TokenizerError::malformed(path, "no \"model\""))?;
    if model.get("type").and_then(Value::as_str).is_some_and(|t| t != "BPE") {
        return Err(TokenizerError::malformed(path, "model is not BPE"));
    }
    let vocab = parse_vocab(model.get("vocab").unwrap_or(&Value::Null), path)?;
    let merges = model.get("merges").and_then(Value::as_array).ok_or_else(|| TokenizerError::malformed(path, "model has no merges list"))?;
    let mut lines = Vec::with_capacity(merges.len());
    for merge in merges.iter().take(CLIP_MERGES) {
        match merge {
            Value::String(s) => lines.push(s.clone()),
            Value::Array(pair) if pair.len() == 2 && pair.iter().all(Value::is_string) => {
                lines.push(format!("{} {}", pair[0].as_str().unwrap(), pair[1].as_str().unwrap()))
            }
            _ => return Err(TokenizerError::malformed(path, format!("bad merge {merge}"))),
        }
    }
    let pairs = parse_merges(lines.iter().map(String::as_str), path, 1)?;
    Ok((vocab, MergesFile { path: path.to_path_buf(), pairs }))
}

fn parse_vocab(json: &Value, path: &Path) -> Result<Vocab, TokenizerError> {
    let obj = json.as_object().ok_or_else(|| TokenizerError::malformed(path, "vocabulary is not a JSON object"))?;
    let mut vocab = Vocab::with_capacity(obj.len());
    for (token, id) in obj {
        let id =
            id.as_u64().and_then(|i| u32::try_from(i).ok()).ok_or_else(|| TokenizerError::malformed(path, format!("id of {token:?} is not an integer")))?;
        vocab.insert(token.clone(), id);
    }
    if vocab.is_empty() {
        return Err(TokenizerError::malformed(path, "vocabulary is empty"));
    }
    Ok(vocab)
}

fn parse_merges<'a>(lines: impl Iterator<Item = &'a str>, path: &Path, first_line: usize) -> Result<Vec<(String, String)>, TokenizerError> {
    let mut pairs = Vec::with_capacity(CLIP_MERGES);
    for (i, line) in lines.enumerate() {
        let mut parts = line.split(is_py_space).filter(|p| !p.is_empty());
        match (parts.next(), parts.next(), parts.next()) {
            (Some(a), Some(b), None) => pairs.push((a.to_string(), b.to_string())),
            _ => return Err(TokenizerError::malformed(path, format!("line {} is not a pair of symbols: {line:?}", i + first_line))),
        }
    }
    Ok(pairs)
}

fn read_text(path: &Path) -> Result<String, TokenizerError> {
    std::fs::read_to_string(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => TokenizerError::MissingFile { path: path.to_path_buf() },
        _ => TokenizerError::Io { path: path.to_path_buf(), source: e },
    })
}

/// A JSON object file that may be absent.
fn read_json_object(path: &Path) -> Result<Option<serde_json::Map<String, Value>>, TokenizerError> {
    if !path.exists() {
        return Ok(None);
    }
    let text = read_text(path)?;
    match serde_json::from_str(&text) {
        Ok(Value::Object(map)) => Ok(Some(map)),
        Ok(_) => Err(TokenizerError::malformed(path, "not a JSON object")),
        Err(e) => Err(TokenizerError::malformed(path, e.to_string())),
    }
}
