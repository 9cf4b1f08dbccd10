//! HF `CLIPVisionModel` (transformers 4.41), the CLIP teacher. Parameter paths equal the HF
//! safetensors keys (`vision_model.*`), so a converted or downloaded checkpoint loads as is.

use std::path::Path;

use burn::module::{Module, Param};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use serde::Deserialize;

use super::preprocess::{ScalingLayer, TEACHER_INPUT_SIZE};
use super::{attention, load_frozen, read_json, HiddenAct};
use crate::error::{Error, Result};
use crate::layers::{normal_param, Conv2d, LayerNorm, Linear};
use crate::weights::TensorFile;

/// The fields of HF `CLIPVisionConfig` the model needs; absent fields take HF's defaults.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default)]
pub struct ClipVisionConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_channels: usize,
    pub image_size: usize,
    pub patch_size: usize,
    pub hidden_act: HiddenAct,
    pub layer_norm_eps: f64,
}

impl Default for ClipVisionConfig {
    fn default() -> Self {
        Self {
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            num_channels: 3,
            image_size: 224,
            patch_size: 32,
            hidden_act: HiddenAct::QuickGelu,
            layer_norm_eps: 1e-5,
        }
    }
}

impl ClipVisionConfig {
    /// Reads a `CLIPVisionConfig` JSON, or a full `CLIPConfig` (the `config.json` of
    /// `openai/clip-vit-*`), whose `vision_config` is used.
    pub fn read(path: &Path) -> Result<Self> {
        Self::from_value(read_json(path)?, path)
    }

    /// As [`Self::read`], from parsed JSON; `source` names the file in errors.
    pub fn from_value(mut value: serde_json::Value, source: &Path) -> Result<Self> {
        if let Some(vision) = value.get_mut("vision_config") {
            value = vision.take();
        }
        let config: Self =
            serde_json::from_value(value).map_err(|e| Error::Config(format!("{}: {e}", source.display())))?;
        config.validate(source)?;
        Ok(config)
    }

    fn validate(&self, source: &Path) -> Result<()> {
        let problem = if self.num_attention_heads == 0 || self.hidden_size % self.num_attention_heads != 0 {
            Some(format!(
                "`hidden_size` {} is not a multiple of `num_attention_heads` {}",
                self.hidden_size, self.num_attention_heads
            ))
        } else if self.patch_size == 0 || self.image_size % self.patch_size != 0 {
            Some(format!("`image_size` {} is not a multiple of `patch_size` {}", self.image_size, self.patch_size))
        } else if self.image_size != TEACHER_INPUT_SIZE {
            // HF 4.41 CLIP cannot interpolate its position table, and the official ScalingLayer
            // always feeds 224x224 images.
            Some(format!(
                "`image_size` is {}, but the CLIP teacher sees {TEACHER_INPUT_SIZE}x{TEACHER_INPUT_SIZE} images",
                self.image_size
            ))
        } else {
            None
        };
        match problem {
            Some(message) => Err(Error::Config(format!("{}: {message}", source.display()))),
            None => Ok(()),
        }
    }

    fn num_positions(&self) -> usize {
        (self.image_size / self.patch_size).pow(2) + 1
    }
}

/// `nn.Embedding`, here only the position table.
#[derive(Module, Debug)]
pub struct Embedding<B: Backend> {
    pub weight: Param<Tensor<B, 2>>,
}

#[derive(Module, Debug)]
pub struct ClipVisionEmbeddings<B: Backend> {
    pub class_embedding: Param<Tensor<B, 1>>,
    pub patch_embedding: Conv2d<B>,
    pub position_embedding: Embedding<B>,
}

impl<B: Backend> ClipVisionEmbeddings<B> {
    fn new(config: &ClipVisionConfig, device: &B::Device) -> Self {
        let width = config.hidden_size;
        let mut patch_embedding =
            Conv2d::new(config.num_channels, width, config.patch_size, config.patch_size, 0, device);
        // CLIP's patch embedding has no bias.
        patch_embedding.bias = None;
        Self {
            class_embedding: normal_param([width], 1.0, device),
            patch_embedding,
            position_embedding: Embedding { weight: normal_param([config.num_positions(), width], 0.02, device) },
        }
    }

    /// pixel values [B, C, image_size, image_size] -> [B, 1 + patches, width]: class token
    /// first, then the patches in row-major order, plus the position table.
    fn forward(&self, pixel_values: Tensor<B, 4>) -> Tensor<B, 3> {
        let patches = self.patch_embedding.forward(pixel_values);
        let [b, width, h, w] = patches.dims();
        let patches = patches.reshape([b, width, h * w]).swap_dims(1, 2);
        let class = self.class_embedding.val().reshape([1, 1, width]).expand([b, 1, width]);
        Tensor::cat(vec![class, patches], 1) + self.position_embedding.weight.val().unsqueeze()
    }
}

#[derive(Module, Debug)]
pub struct ClipAttention<B: Backend> {
    pub q_proj: Linear<B>,
    pub k_proj: Linear<B>,
    pub v_proj: Linear<B>,
    pub out_proj: Linear<B>,
    heads: usize,
}

impl<B: Backend> ClipAttention<B> {
    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let q = self.q_proj.forward(x.clone());
        let k = self.k_proj.forward(x.clone());
        let v = self.v_proj.forward(x);
        self.out_proj.forward(attention(q, k, v, self.heads))
    }
}

#[derive(Module, Debug)]
pub struct ClipMlp<B: Backend> {
    pub fc1: Linear<B>,
    pub fc2: Linear<B>,
    #[module(skip)]
    act: HiddenAct,
}

/// Pre-LN block: x + self_attn(layer_norm1(x)), then x + mlp(layer_norm2(x)).
#[derive(Module, Debug)]
pub struct ClipEncoderLayer<B: Backend> {
    pub self_attn: ClipAttention<B>,
    pub layer_norm1: LayerNorm<B>,
    pub mlp: ClipMlp<B>,
    pub layer_norm2: LayerNorm<B>,
}

impl<B: Backend> ClipEncoderLayer<B> {
    fn new(config: &ClipVisionConfig, device: &B::Device) -> Self {
        let (width, eps) = (config.hidden_size, config.layer_norm_eps);
        let linear = |d_in, d_out| Linear::new(d_in, d_out, true, device);
        Self {
            self_attn: ClipAttention {
                q_proj: linear(width, width),
                k_proj: linear(width, width),
                v_proj: linear(width, width),
                out_proj: linear(width, width),
                heads: config.num_attention_heads,
            },
            layer_norm1: LayerNorm::new(width, eps, device),
            mlp: ClipMlp {
                fc1: linear(width, config.intermediate_size),
                fc2: linear(config.intermediate_size, width),
                act: config.hidden_act,
            },
            layer_norm2: LayerNorm::new(width, eps, device),
        }
    }

    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let x = x.clone() + self.self_attn.forward(self.layer_norm1.forward(x));
        let hidden = self.mlp.act.forward(self.mlp.fc1.forward(self.layer_norm2.forward(x.clone())));
        x + self.mlp.fc2.forward(hidden)
    }
}

#[derive(Module, Debug)]
pub struct ClipEncoder<B: Backend> {
    pub layers: Vec<ClipEncoderLayer<B>>,
}

/// `CLIPVisionTransformer`. Its `post_layernorm` only feeds HF's pooled output, which the
/// teacher never uses, so the model has no place for it and the loader skips its keys.
#[derive(Module, Debug)]
pub struct ClipVisionTransformer<B: Backend> {
    pub embeddings: ClipVisionEmbeddings<B>,
    pub pre_layrnorm: LayerNorm<B>,
    pub encoder: ClipEncoder<B>,
}

/// What the teacher and the parity checks read from one forward pass.
#[derive(Debug, Clone)]
pub struct ClipVisionOutput<B: Backend> {
    /// `hidden_states[0]`: embeddings after `pre_layrnorm`, [B, 1 + patches, width].
    pub embeddings: Tensor<B, 3>,
    /// `hidden_states[-1]` = HF `last_hidden_state`: the last encoder layer's output, without
    /// `post_layernorm`.
    pub last_hidden_state: Tensor<B, 3>,
}

#[derive(Module, Debug)]
pub struct ClipVisionModel<B: Backend> {
    pub vision_model: ClipVisionTransformer<B>,
    #[module(skip)]
    config: ClipVisionConfig,
}

impl<B: Backend> ClipVisionModel<B> {
    /// A randomly initialised model, its parameters drawn when first read: loading weights over
    /// it never draws them.
    pub fn new(config: &ClipVisionConfig, device: &B::Device) -> Self {
        Self {
            vision_model: ClipVisionTransformer {
                embeddings: ClipVisionEmbeddings::new(config, device),
                pre_layrnorm: LayerNorm::new(config.hidden_size, config.layer_norm_eps, device),
                encoder: ClipEncoder {
                    layers: (0..config.num_hidden_layers).map(|_| ClipEncoderLayer::new(config, device)).collect(),
                },
            },
            config: config.clone(),
        }
    }

    /// Loads HF weights, frozen. Keys outside `vision_model.` are skipped, so the `CLIPModel`
    /// checkpoints of `openai/clip-vit-*` (text tower and projections included) load too.
    pub fn from_tensor_file(config: &ClipVisionConfig, file: &TensorFile, device: &B::Device) -> Result<Self> {
        let ignorable = |key: &str| {
            !key.starts_with("vision_model.")
                || key.starts_with("vision_model.post_layernorm.")
                // A non-persistent buffer that older exports still contain.
                || key.ends_with(".position_ids")
        };
        load_frozen(Self::new(config, device), file, &ignorable)
    }

    /// [`Self::from_tensor_file`] from an HF config JSON and a safetensors file.
    pub fn load(config_path: &Path, weights_path: &Path, device: &B::Device) -> Result<Self> {
        let config = ClipVisionConfig::read(config_path)?;
        Self::from_tensor_file(&config, &TensorFile::read(weights_path)?, device)
    }

    pub fn config(&self) -> &ClipVisionConfig {
        &self.config
    }

    /// pixel values [B, C, image_size, image_size], already pre-processed.
    pub fn forward(&self, pixel_values: Tensor<B, 4>) -> ClipVisionOutput<B> {
        let model = &self.vision_model;
        let embeddings = model.pre_layrnorm.forward(model.embeddings.forward(pixel_values));
        let last_hidden_state = model.encoder.layers.iter().fold(embeddings.clone(), |x, layer| layer.forward(x));
        ClipVisionOutput { embeddings, last_hidden_state }
    }

    /// The official `CLIPVisionTower` feature: images [B, 3, H, W] in [-1, 1] -> the class
    /// token of `hidden_states[-1]`, [B, width].
    pub fn cls_feature(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        let hidden = self.forward(ScalingLayer::OPENAI_CLIP.forward(images)).last_hidden_state;
        let [b, _, width] = hidden.dims();
        hidden.narrow(1, 0, 1).reshape([b, width])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_clip_config_uses_its_vision_config() {
        let json = serde_json::json!({
            "model_type": "clip",
            "projection_dim": 768,
            "text_config": {"hidden_size": 768},
            "vision_config": {"hidden_size": 1024, "intermediate_size": 4096, "num_attention_heads": 16,
                              "num_hidden_layers": 24, "patch_size": 14, "projection_dim": 768}
        });
        let config = ClipVisionConfig::from_value(json, Path::new("config.json")).unwrap();
        assert_eq!((config.hidden_size, config.num_hidden_layers, config.patch_size), (1024, 24, 14));
        assert_eq!((config.image_size, config.hidden_act), (224, HiddenAct::QuickGelu));
    }

    #[test]
    fn an_unknown_activation_names_the_file() {
        let json = serde_json::json!({"hidden_act": "relu"});
        let err = ClipVisionConfig::from_value(json, Path::new("dir/config.json")).unwrap_err().to_string();
        assert!(err.contains("dir/config.json") && err.contains("relu"), "{err}");
    }
}
