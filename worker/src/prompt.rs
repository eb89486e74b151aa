//! AUTOMATIC1111's reading of a prompt, past the parser (`darkroom_shared::prompt_syntax`):
//! its (text, weight) segments become chunks of 75 tokens, each framed as the 77 a CLIP text
//! encoder takes, with one weight per token; after encoding, each chunk's weights are applied
//! as AUTOMATIC1111's default "Original" emphasis does. Behaviour learnt from its
//! `modules/sd_hijack_clip.py` and `modules/sd_emphasis.py`; fixtures recorded from it check it
//! (`tests/fixtures/reference/prompts/`).
use darkroom_shared::prompt_syntax::Segment;

use crate::tokenizer::{ClipTokenizer, TokenizerError};

/// Tokens per chunk, between the start and end tokens.
pub const CHUNK_TOKENS: usize = 75;
/// A chunk that fills up moves back to its last comma if that comma is among its last this
/// many tokens, so a phrase is not cut in two (AUTOMATIC1111's `comma_padding_backtrack`).
pub const COMMA_BACKTRACK: usize = 20;

/// One chunk as the text encoder takes it: `CHUNK_TOKENS + 2` ids and a weight for each.
#[derive(Clone, Debug, PartialEq)]
pub struct Chunk {
    pub ids: Vec<i64>,
    pub weights: Vec<f32>,
}

/// Builds chunks the way AUTOMATIC1111's `tokenize_line` does.
struct Chunker<'a> {
    tokenizer: &'a ClipTokenizer,
    done: Vec<Chunk>,
    /// The chunk being filled: tokens and weights, not yet framed.
    ids: Vec<i64>,
    weights: Vec<f64>,
    /// Where the last comma of the current chunk is.
    last_comma: Option<usize>,
}

impl Chunker<'_> {
    /// Close the current chunk: pad it to 75 tokens with the end token, frame it with the
    /// start and end tokens, and from its first end token on, write the tokenizer's pad id.
    fn next_chunk(&mut self) {
        let (bos, eos) = self.tokenizer.bos_eos();
        let pad = self.tokenizer.pad_id();
        let mut ids = Vec::with_capacity(CHUNK_TOKENS + 2);
        ids.push(bos);
        ids.append(&mut self.ids);
        ids.resize(CHUNK_TOKENS + 1, eos);
        ids.push(eos);
        if let Some(first_end) = ids.iter().position(|&id| id == eos) {
            ids[first_end + 1..].iter_mut().for_each(|id| *id = pad);
        }
        let mut weights = Vec::with_capacity(CHUNK_TOKENS + 2);
        weights.push(1.0);
        weights.extend(self.weights.drain(..).map(|w| w as f32));
        weights.resize(CHUNK_TOKENS + 2, 1.0);
        self.last_comma = None;
        self.done.push(Chunk { ids, weights });
    }

    fn push(&mut self, token: i64, weight: f64, comma: Option<i64>) {
        if Some(token) == comma {
            self.last_comma = Some(self.ids.len());
        } else if let Some(at) = self.last_comma.filter(|&at| self.ids.len() == CHUNK_TOKENS && self.ids.len() - at <= COMMA_BACKTRACK) {
            // Full, and a comma is near its end: what follows the comma starts the next chunk.
            let moved_ids = self.ids.split_off(at + 1);
            let moved_weights = self.weights.split_off(at + 1);
            self.next_chunk();
            (self.ids, self.weights) = (moved_ids, moved_weights);
        }
        if self.ids.len() == CHUNK_TOKENS {
            self.next_chunk();
        }
        self.ids.push(token);
        self.weights.push(weight);
    }
}

/// The chunks of a parsed prompt for one tokenizer: at least one (an empty prompt is one chunk
/// of padding); a `BREAK` closes the current chunk even when it is empty.
pub fn chunks(tokenizer: &ClipTokenizer, segments: &[Segment]) -> Result<Vec<Chunk>, TokenizerError> {
    let comma = tokenizer.vocab_id(",</w>");
    let mut c = Chunker { tokenizer, done: Vec::new(), ids: Vec::new(), weights: Vec::new(), last_comma: None };
    for segment in segments {
        if segment.is_break() {
            c.next_chunk();
            continue;
        }
        for token in tokenizer.tokens(&segment.text)? {
            c.push(token, segment.weight, comma);
        }
    }
    if !c.ids.is_empty() || c.done.is_empty() {
        c.next_chunk();
    }
    Ok(c.done)
}

/// AUTOMATIC1111's "Original" emphasis on one encoded chunk (`hidden`: `weights.len()` rows of
/// `dim` values): each token's row is multiplied by its weight, then the whole chunk is scaled
/// so that its mean is what it was before. Means are taken in f64. A chunk without weights
/// is left exactly as it is.
pub fn emphasize(hidden: &mut [f32], weights: &[f32], dim: usize) {
    if weights.iter().all(|&w| w == 1.0) {
        return;
    }
    let mean = |z: &[f32]| z.iter().map(|&v| v as f64).sum::<f64>() / z.len() as f64;
    let before = mean(hidden);
    for (row, &w) in hidden.chunks_exact_mut(dim).zip(weights) {
        row.iter_mut().for_each(|v| *v *= w);
    }
    let scale = before / mean(hidden);
    hidden.iter_mut().for_each(|v| *v = (*v as f64 * scale) as f32);
}

#[cfg(test)]
mod tests {
    use super::emphasize;

    #[test]
    fn emphasis_keeps_the_mean_and_the_ratios() {
        let mut z = vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        emphasize(&mut z, &[1.0, 2.0, 1.0], 2);
        let mean: f32 = z.iter().sum::<f32>() / 6.0;
        assert!((mean - 3.5).abs() < 1e-6, "{z:?}");
        assert!((z[2] / z[0] - 6.0).abs() < 1e-5 && (z[4] / z[0] - 5.0).abs() < 1e-5, "{z:?}");
        let mut same = vec![1.0, -2.0, 3.5];
        emphasize(&mut same, &[1.0, 1.0, 1.0], 1);
        assert_eq!(same, vec![1.0, -2.0, 3.5]);
    }
}
