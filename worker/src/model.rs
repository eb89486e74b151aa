//! A model directory in Hugging Face Optimum's ONNX layout: which family it is and where its
//! parts are. Loading checks that every file the pipeline needs is there and names the first
//! one that is missing or unreadable.
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{dir}: not a model directory in Optimum's ONNX layout: {file} is missing")]
    Missing { dir: PathBuf, file: String },
    #[error("{file}: {message}")]
    Malformed { file: PathBuf, message: String },
    #[error("{dir}: {message}")]
    Mismatch { dir: PathBuf, message: String },
}

/// The model families we run (one type with the store and the API).
pub use darkroom_shared::family::Family;

/// The fields of `model_index.json` we use.
#[derive(Debug, Default, Deserialize)]
pub struct ModelIndex {
    #[serde(rename = "_class_name", default)]
    pub class_name: String,
    /// SDXL: with no negative prompt, the unconditional embeddings are zeros.
    #[serde(default)]
    pub force_zeros_for_empty_prompt: Option<bool>,
}

/// The VAE config fields we use (Optimum copies the VAE's `config.json` into vae_decoder/).
#[derive(Debug, Deserialize)]
struct VaeConfig {
    scaling_factor: Option<f32>,
    block_out_channels: Option<Vec<usize>>,
}

/// The UNet config fields we use.
#[derive(Debug, Deserialize)]
struct UnetConfig {
    sample_size: Option<usize>,
    block_out_channels: Option<Vec<usize>>,
}

/// A checked model directory.
#[derive(Clone, Debug)]
pub struct ModelDir {
    pub root: PathBuf,
    pub family: Family,
    pub class_name: String,
    pub force_zeros_for_empty_prompt: bool,
    /// Latents are divided by this before the VAE decoder (0.18215 for SD, 0.13025 for SDXL).
    pub vae_scaling_factor: f32,
    /// Pixels per latent cell along each side (8 for every real SD model).
    pub vae_scale_factor: usize,
    /// The size the model was trained at, in pixels.
    pub native_size: usize,
    /// Width and height must be multiples of this: the VAE's scale factor times the UNet's
    /// downsampling (2^(down blocks - 1)); the exported upsamplers double their input, so any
    /// other latent size fails in the graph. 64 for SD 1.x/2.x, 32 for SDXL, 16 for tiny-sd15.
    pub size_multiple: usize,
    /// The export has a VAE encoder, so it can do img2img.
    pub img2img: bool,
}

fn read_json<T: for<'de> Deserialize<'de>>(file: &Path) -> Result<T, ModelError> {
    let text = std::fs::read_to_string(file).map_err(|e| ModelError::Malformed { file: file.to_path_buf(), message: e.to_string() })?;
    serde_json::from_str(&text).map_err(|e| ModelError::Malformed { file: file.to_path_buf(), message: format!("invalid JSON: {e}") })
}

impl ModelDir {
    /// Check `root` and read the configs the pipeline needs.
    pub fn open(root: &Path) -> Result<ModelDir, ModelError> {
        if !root.is_dir() {
            return Err(ModelError::Missing { dir: root.to_path_buf(), file: "the directory itself".into() });
        }
        let dir = ModelDir {
            root: root.to_path_buf(),
            family: Family::Sd,
            class_name: String::new(),
            force_zeros_for_empty_prompt: false,
            vae_scaling_factor: 0.18215,
            vae_scale_factor: 8,
            native_size: 512,
            size_multiple: 8,
            img2img: false,
        };
        let index: ModelIndex = read_json(&dir.require("model_index.json")?)?;
        let family = if index.class_name.contains("XL") || root.join("text_encoder_2").exists() { Family::Sdxl } else { Family::Sd };
        let mut required = vec![
            "text_encoder/model.onnx",
            "unet/model.onnx",
            "vae_decoder/model.onnx",
            "tokenizer/vocab.json",
            "tokenizer/merges.txt",
            "scheduler/scheduler_config.json",
        ];
        if family == Family::Sdxl {
            required.extend(["text_encoder_2/model.onnx", "tokenizer_2/vocab.json", "tokenizer_2/merges.txt"]);
        }
        for file in required {
            dir.require(file)?;
        }
        let vae: Option<VaeConfig> = dir.optional_json("vae_decoder/config.json")?;
        let unet: Option<UnetConfig> = dir.optional_json("unet/config.json")?;
        let default_scaling = if family == Family::Sdxl { 0.13025 } else { 0.18215 };
        let vae_scaling_factor = vae.as_ref().and_then(|v| v.scaling_factor).unwrap_or(default_scaling);
        let vae_scale_factor = vae.as_ref().and_then(|v| v.block_out_channels.as_ref()).map(|b| 1usize << b.len().saturating_sub(1)).unwrap_or(8);
        let default_native = if family == Family::Sdxl { 1024 } else { 512 };
        let native_size = unet.as_ref().and_then(|u| u.sample_size).map(|s| s * vae_scale_factor).unwrap_or(default_native);
        let downsampling = unet.as_ref().and_then(|u| u.block_out_channels.as_ref()).map(|b| 1usize << b.len().saturating_sub(1).min(6)).unwrap_or(1);
        Ok(ModelDir {
            family,
            force_zeros_for_empty_prompt: index.force_zeros_for_empty_prompt.unwrap_or(family == Family::Sdxl),
            class_name: index.class_name,
            vae_scaling_factor,
            vae_scale_factor,
            native_size,
            size_multiple: vae_scale_factor * downsampling,
            img2img: root.join("vae_encoder/model.onnx").is_file(),
            ..dir
        })
    }

    /// `root/file`, or an error naming it when it does not exist.
    pub fn require(&self, file: &str) -> Result<PathBuf, ModelError> {
        let path = self.root.join(file);
        if path.is_file() {
            Ok(path)
        } else {
            Err(ModelError::Missing { dir: self.root.clone(), file: file.to_string() })
        }
    }

    fn optional_json<T: for<'de> Deserialize<'de>>(&self, file: &str) -> Result<Option<T>, ModelError> {
        let path = self.root.join(file);
        if path.is_file() {
            read_json(&path).map(Some)
        } else {
            Ok(None)
        }
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.root.join(file)
    }

    /// The directory's name, used as the model's name in image metadata.
    pub fn name(&self) -> String {
        self.root.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into())
    }
}
