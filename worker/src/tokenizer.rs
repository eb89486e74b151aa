//! CLIP tokenization (being written).
