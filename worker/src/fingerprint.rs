//! A model's identity: the sha256 of its UNet's weights, which AUTOMATIC1111's dialect reports
//! as the checkpoint's `sha256` (and its first 10 hex digits as the `hash` in `name [hash]`).
//!
//! What is hashed, in this order, as one stream of bytes with nothing between the files:
//! 1. `unet/model.onnx`;
//! 2. each external data file the graph references (the `location` of every tensor stored
//!    outside the graph: initializers and node attributes, subgraphs included; Optimum writes
//!    one, `unet/model.onnx_data`), once each, sorted by their location as written in the
//!    graph (byte order), resolved against `unet/`.
//!
//! An export that keeps its weights in the graph hashes `model.onnx` alone. This is not
//! A1111's hash: A1111 hashes the original `.safetensors` checkpoint, which an ONNX export no
//! longer has; the same export hashes the same everywhere, any re-export differently.
//!
//! Files are read in 1 MiB pieces (a real SDXL UNet is about 10 GB); the graph is walked
//! without being loaded (`external_locations` skips the weights stored in it).
use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum FingerprintError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not an ONNX graph this worker can read: {message}")]
    Malformed { path: PathBuf, message: String },
    #[error("{path}: the external data location {location:?} is not a relative path inside the model's directory")]
    Location { path: PathBuf, location: String },
}

/// The UNet's hash and what it covered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnetHash {
    /// Lowercase hex, 64 digits.
    pub sha256: String,
    /// The files hashed, in order.
    pub files: Vec<PathBuf>,
    /// Their total size in bytes.
    pub bytes: u64,
    pub took: Duration,
}

/// Hash the UNet of the model directory `dir` (Optimum's layout: `dir/unet/model.onnx`).
/// Blocking: run it on a thread of its own.
pub fn unet_sha256(dir: &Path) -> Result<UnetHash, FingerprintError> {
    let started = Instant::now();
    let graph = dir.join("unet").join("model.onnx");
    let mut files = vec![graph.clone()];
    for location in external_locations(&graph)? {
        files.push(resolve(&graph, &location)?);
    }
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    for path in &files {
        let io = |source| FingerprintError::Io { path: path.clone(), source };
        let mut file = File::open(path).map_err(io)?;
        loop {
            let n = file.read(&mut buf).map_err(io)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            bytes += n as u64;
        }
    }
    Ok(UnetHash { sha256: hex::encode(hasher.finalize()), files, bytes, took: started.elapsed() })
}

/// `location` (as written in `graph`) as a path next to `graph`: relative, with no `..`.
fn resolve(graph: &Path, location: &str) -> Result<PathBuf, FingerprintError> {
    let rel = Path::new(location);
    if location.is_empty() || !rel.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir)) {
        return Err(FingerprintError::Location { path: graph.to_path_buf(), location: location.to_string() });
    }
    Ok(graph.parent().unwrap_or(Path::new(".")).join(rel))
}

/// The messages of onnx.proto the walk descends into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Message {
    Model,
    Graph,
    Node,
    Attribute,
    Tensor,
    SparseTensor,
    /// `StringStringEntryProto`, an entry of `TensorProto.external_data`.
    Entry,
}

impl Message {
    /// The message a length-delimited field of `self` holds, when the walk descends into it.
    fn child(self, field: u64) -> Option<Message> {
        use Message::*;
        match (self, field) {
            (Model, 7) => Some(Graph),                  // ModelProto.graph
            (Graph, 1) => Some(Node),                   // GraphProto.node
            (Graph, 5) => Some(Tensor),                 // GraphProto.initializer
            (Graph, 15) => Some(SparseTensor),          // GraphProto.sparse_initializer
            (Node, 5) => Some(Attribute),               // NodeProto.attribute
            (Attribute, 5 | 10) => Some(Tensor),        // AttributeProto.t, .tensors
            (Attribute, 6 | 11) => Some(Graph),         // AttributeProto.g, .graphs
            (Attribute, 22 | 23) => Some(SparseTensor), // .sparse_tensor, .sparse_tensors
            (SparseTensor, 1 | 2) => Some(Tensor),      // SparseTensorProto.values, .indices
            (Tensor, 13) => Some(Entry),                // TensorProto.external_data
            _ => None,
        }
    }
}

/// Graphs nest in node attributes (If, Loop); deeper than this is refused.
const MAX_DEPTH: usize = 64;
/// An external data entry's key or value longer than this is refused (they are file names).
const MAX_STRING: u64 = 64 * 1024;

/// The distinct external data locations the ONNX graph at `graph` references, sorted.
pub fn external_locations(graph: &Path) -> Result<BTreeSet<String>, FingerprintError> {
    let io = |source| FingerprintError::Io { path: graph.to_path_buf(), source };
    let file = File::open(graph).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    let mut walk = Walk { reader: BufReader::with_capacity(1 << 16, file), pos: 0, path: graph, locations: BTreeSet::new() };
    walk.message(Message::Model, len, 0)?;
    Ok(walk.locations)
}

/// A walk through protobuf's wire format, reading only the fields that lead to
/// `external_data` and seeking past the rest.
struct Walk<'a> {
    reader: BufReader<File>,
    pos: u64,
    path: &'a Path,
    locations: BTreeSet<String>,
}

impl Walk<'_> {
    fn malformed(&self, message: impl Into<String>) -> FingerprintError {
        FingerprintError::Malformed { path: self.path.to_path_buf(), message: format!("{} (at byte {})", message.into(), self.pos) }
    }

    fn io(&self, source: std::io::Error) -> FingerprintError {
        if source.kind() == std::io::ErrorKind::UnexpectedEof {
            return self.malformed("the file ends inside a field");
        }
        FingerprintError::Io { path: self.path.to_path_buf(), source }
    }

    fn byte(&mut self) -> Result<u8, FingerprintError> {
        let mut b = [0u8; 1];
        self.reader.read_exact(&mut b).map_err(|e| self.io(e))?;
        self.pos += 1;
        Ok(b[0])
    }

    fn varint(&mut self) -> Result<u64, FingerprintError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(self.malformed("a varint longer than 10 bytes"))
    }

    fn skip(&mut self, n: u64, end: u64) -> Result<(), FingerprintError> {
        if self.pos + n > end {
            return Err(self.malformed("a field runs past its message"));
        }
        let offset = i64::try_from(n).map_err(|_| self.malformed("a field too long"))?;
        self.reader.seek_relative(offset).map_err(|e| self.io(e))?;
        self.pos += n;
        Ok(())
    }

    fn bytes(&mut self, n: u64, end: u64) -> Result<Vec<u8>, FingerprintError> {
        if self.pos + n > end || n > MAX_STRING {
            return Err(self.malformed("an external data entry too long"));
        }
        let mut buf = vec![0u8; n as usize];
        self.reader.read_exact(&mut buf).map_err(|e| self.io(e))?;
        self.pos += n;
        Ok(buf)
    }

    /// Walk the fields of a `kind` message up to byte `end`.
    fn message(&mut self, kind: Message, end: u64, depth: usize) -> Result<(), FingerprintError> {
        if depth > MAX_DEPTH {
            return Err(self.malformed("graphs nested too deeply"));
        }
        let (mut key, mut value) = (None, None);
        while self.pos < end {
            let tag = self.varint()?;
            let (field, wire) = (tag >> 3, tag & 7);
            match wire {
                0 => {
                    self.varint()?;
                }
                1 => self.skip(8, end)?,
                5 => self.skip(4, end)?,
                2 => {
                    let len = self.varint()?;
                    if kind == Message::Entry && (field == 1 || field == 2) {
                        let text = String::from_utf8(self.bytes(len, end)?).map_err(|_| self.malformed("an external data entry is not UTF-8"))?;
                        if field == 1 {
                            key = Some(text);
                        } else {
                            value = Some(text);
                        }
                    } else if let Some(child) = kind.child(field) {
                        let child_end = self.pos.checked_add(len).filter(|e| *e <= end).ok_or_else(|| self.malformed("a field runs past its message"))?;
                        self.message(child, child_end, depth + 1)?;
                    } else {
                        self.skip(len, end)?;
                    }
                }
                other => return Err(self.malformed(format!("wire type {other}"))),
            }
        }
        if self.pos != end {
            return Err(self.malformed("a field runs past its message"));
        }
        if let (Some("location"), Some(location)) = (key.as_deref(), value) {
            self.locations.insert(location);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models").join(name)
    }

    fn sha256_of(files: &[PathBuf]) -> String {
        let mut h = Sha256::new();
        for f in files {
            h.update(std::fs::read(f).expect("fixture"));
        }
        hex::encode(h.finalize())
    }

    #[test]
    fn external_data_is_found_and_hashed_after_the_graph() {
        let dir = fixture("tiny-sdxl");
        assert_eq!(external_locations(&dir.join("unet/model.onnx")).expect("walk"), BTreeSet::from(["model.onnx_data".to_string()]));
        let h = unet_sha256(&dir).expect("hash");
        let files = vec![dir.join("unet/model.onnx"), dir.join("unet/model.onnx_data")];
        assert_eq!(h.files, files);
        assert_eq!(h.sha256, sha256_of(&files));
        assert_eq!(h.bytes, files.iter().map(|f| f.metadata().expect("fixture").len()).sum::<u64>());
    }

    #[test]
    fn a_graph_holding_its_weights_is_hashed_alone() {
        let dir = fixture("tiny-sd15");
        assert!(external_locations(&dir.join("unet/model.onnx")).expect("walk").is_empty());
        let h = unet_sha256(&dir).expect("hash");
        assert_eq!(h.sha256, sha256_of(&[dir.join("unet/model.onnx")]));
        assert_eq!(h.sha256.len(), 64);
    }

    #[test]
    fn locations_outside_the_directory_are_refused() {
        let graph = Path::new("/m/unet/model.onnx");
        assert_eq!(resolve(graph, "model.onnx_data").expect("inside"), Path::new("/m/unet/model.onnx_data"));
        for bad in ["../text_encoder/model.onnx_data", "/etc/passwd", ""] {
            assert!(matches!(resolve(graph, bad), Err(FingerprintError::Location { .. })), "{bad}");
        }
    }

    #[test]
    fn a_truncated_graph_is_malformed_not_a_panic() {
        let dir = std::env::temp_dir().join(format!("darkroom-fingerprint-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("unet")).expect("temp dir");
        let bytes = std::fs::read(fixture("tiny-sdxl").join("unet/model.onnx")).expect("fixture");
        std::fs::write(dir.join("unet/model.onnx"), &bytes[..bytes.len() / 2]).expect("write");
        let err = unet_sha256(&dir).expect_err("truncated");
        std::fs::remove_dir_all(&dir).ok();
        assert!(matches!(err, FingerprintError::Malformed { .. }), "{err}");
    }
}
