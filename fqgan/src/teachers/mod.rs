//! Frozen teachers for the semantic sub-codebooks (official `tokenizer/models/clip_encoder.py`
//! and `dino_encoder.py`): HF `CLIPVisionModel` and `Dinov2Model` (transformers 4.41), loaded
//! from HF safetensors under their own key names, behind the official pre-processing.
//!
//! Which teacher supervises which sub-codebook is the trainer's business; this module only
//! turns images in [-1, 1] into one CLS feature per image ([`Teacher::cls_feature`]), which
//! [`TeacherFeatures`] can store per image id to skip the teacher during training.

pub mod clip;
pub mod dinov2;
pub mod features;
pub mod preprocess;

use std::path::Path;

use burn::module::Module;
use burn::tensor::activation::sigmoid;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::layers::{gelu, merge_heads, split_heads};
use crate::weights::{load_module, KeyMap, LoadRules, TensorFile};

pub use clip::{ClipVisionConfig, ClipVisionModel};
pub use dinov2::{Dinov2Config, Dinov2Model};
pub use features::TeacherFeatures;
pub use preprocess::ScalingLayer;

/// HF `hidden_act` values the teachers use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HiddenAct {
    /// `x * sigmoid(1.702 x)`, OpenAI CLIP's activation.
    QuickGelu,
    /// Exact (erf) GELU, DINOv2's.
    Gelu,
}

impl HiddenAct {
    pub fn forward<B: Backend, const D: usize>(self, x: Tensor<B, D>) -> Tensor<B, D> {
        match self {
            HiddenAct::QuickGelu => x.clone() * sigmoid(x * 1.702),
            HiddenAct::Gelu => gelu(x),
        }
    }
}

/// A frozen teacher as the official towers use it: pre-processing, model, CLS feature.
#[derive(Module, Debug)]
pub enum Teacher<B: Backend> {
    Clip(ClipVisionModel<B>),
    Dinov2(Dinov2Model<B>),
}

impl<B: Backend> Teacher<B> {
    /// Loads an HF model folder's `config.json` and safetensors weights; the kind follows the
    /// config's `model_type` (`clip`, `clip_vision_model` or `dinov2`).
    pub fn load(config_path: &Path, weights_path: &Path, device: &B::Device) -> Result<Self> {
        let config = read_json(config_path)?;
        let weights = TensorFile::read(weights_path)?;
        match config.get("model_type").and_then(|t| t.as_str()) {
            Some("clip" | "clip_vision_model") => {
                let config = ClipVisionConfig::from_value(config, config_path)?;
                Ok(Teacher::Clip(ClipVisionModel::from_tensor_file(&config, &weights, device)?))
            }
            Some("dinov2") => {
                let config = Dinov2Config::from_value(config, config_path)?;
                Ok(Teacher::Dinov2(Dinov2Model::from_tensor_file(&config, &weights, device)?))
            }
            other => Err(Error::Config(format!(
                "{}: `model_type` is {other:?}; teachers are `clip`, `clip_vision_model` or `dinov2`",
                config_path.display()
            ))),
        }
    }

    /// Width of the CLS feature, which the supervised feature-prediction head must match.
    pub fn hidden_size(&self) -> usize {
        match self {
            Teacher::Clip(model) => model.config().hidden_size,
            Teacher::Dinov2(model) => model.config().hidden_size,
        }
    }

    /// images [B, 3, H, W] in [-1, 1] -> [B, hidden_size].
    pub fn cls_feature(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        match self {
            Teacher::Clip(model) => model.cls_feature(images),
            Teacher::Dinov2(model) => model.cls_feature(images),
        }
    }
}

pub(crate) fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
}

/// Loads HF weights into a freshly built teacher and freezes it: teachers are never trained,
/// so under `Autodiff` they must not collect gradients.
pub(crate) fn load_frozen<B: Backend, M: Module<B>>(
    model: M,
    file: &TensorFile,
    ignorable: &dyn Fn(&str) -> bool,
) -> Result<M> {
    let rules = LoadRules { optional: &|_| false, ignorable };
    Ok(load_module(model, file, &KeyMap::default(), &rules)?.no_grad())
}

/// Multi-head attention over already projected q, k, v [B, N, width].
pub(crate) fn attention<B: Backend>(q: Tensor<B, 3>, k: Tensor<B, 3>, v: Tensor<B, 3>, heads: usize) -> Tensor<B, 3> {
    let split = |x| split_heads(x, heads);
    merge_heads(crate::layers::unmasked_attention(split(q), split(k), split(v)))
}
