//! HF `Dinov2Model` (transformers 4.41), the DINOv2 teacher. Parameter paths equal the HF
//! safetensors keys (`embeddings.*`, `encoder.layer.*`, `layernorm.*`).

use std::path::Path;

use burn::module::{Module, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use serde::Deserialize;

use super::preprocess::ScalingLayer;
use super::{attention, load_frozen, read_json, HiddenAct};
use crate::error::{Error, Result};
use crate::layers::{normal_param, Conv2d, LayerNorm, Linear};
use crate::weights::TensorFile;

/// The fields of HF `Dinov2Config` the model needs; absent fields take HF's defaults.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default)]
pub struct Dinov2Config {
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub mlp_ratio: f64,
    pub hidden_act: HiddenAct,
    pub layer_norm_eps: f64,
    /// The size the position table was trained at; other sizes interpolate it.
    pub image_size: usize,
    pub patch_size: usize,
    pub num_channels: usize,
    pub qkv_bias: bool,
    pub layerscale_value: f64,
    /// Only DINOv2-giant uses the SwiGLU MLP, which this port does not have.
    pub use_swiglu_ffn: bool,
}

impl Default for Dinov2Config {
    fn default() -> Self {
        Self {
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            mlp_ratio: 4.0,
            hidden_act: HiddenAct::Gelu,
            layer_norm_eps: 1e-6,
            image_size: 224,
            patch_size: 16,
            num_channels: 3,
            qkv_bias: true,
            layerscale_value: 1.0,
            use_swiglu_ffn: false,
        }
    }
}

impl Dinov2Config {
    pub fn read(path: &Path) -> Result<Self> {
        Self::from_value(read_json(path)?, path)
    }

    /// As [`Self::read`], from parsed JSON; `source` names the file in errors.
    pub fn from_value(value: serde_json::Value, source: &Path) -> Result<Self> {
        let config: Self =
            serde_json::from_value(value).map_err(|e| Error::Config(format!("{}: {e}", source.display())))?;
        let problem = if config.use_swiglu_ffn {
            Some("`use_swiglu_ffn` is true (DINOv2-giant); only the plain MLP is supported".to_string())
        } else if config.num_attention_heads == 0 || config.hidden_size % config.num_attention_heads != 0 {
            Some(format!(
                "`hidden_size` {} is not a multiple of `num_attention_heads` {}",
                config.hidden_size, config.num_attention_heads
            ))
        } else if config.patch_size == 0 || config.image_size % config.patch_size != 0 {
            Some(format!("`image_size` {} is not a multiple of `patch_size` {}", config.image_size, config.patch_size))
        } else {
            None
        };
        match problem {
            Some(message) => Err(Error::Config(format!("{}: {message}", source.display()))),
            None => Ok(config),
        }
    }

    /// Side of the square position table, in patches.
    fn table_side(&self) -> usize {
        self.image_size / self.patch_size
    }
}

#[derive(Module, Debug)]
pub struct Dinov2PatchEmbeddings<B: Backend> {
    pub projection: Conv2d<B>,
}

/// Class token + patch embeddings + (interpolated) position table. The checkpoint's
/// `mask_token` only serves masked-image pre-training, so it has no place here.
#[derive(Module, Debug)]
pub struct Dinov2Embeddings<B: Backend> {
    pub cls_token: Param<Tensor<B, 3>>,
    pub patch_embeddings: Dinov2PatchEmbeddings<B>,
    pub position_embeddings: Param<Tensor<B, 3>>,
    patch_size: usize,
}

impl<B: Backend> Dinov2Embeddings<B> {
    fn new(config: &Dinov2Config, device: &B::Device) -> Self {
        let (width, patch) = (config.hidden_size, config.patch_size);
        Self {
            cls_token: normal_param([1, 1, width], 0.02, device),
            patch_embeddings: Dinov2PatchEmbeddings {
                projection: Conv2d::new(config.num_channels, width, patch, patch, 0, device),
            },
            position_embeddings: normal_param([1, config.table_side().pow(2) + 1, width], 0.02, device),
            patch_size: patch,
        }
    }

    fn forward(&self, pixel_values: Tensor<B, 4>) -> Tensor<B, 3> {
        let [b, _, height, width] = pixel_values.dims();
        let patches = self.patch_embeddings.projection.forward(pixel_values);
        let [_, dim, h, w] = patches.dims();
        let patches = patches.reshape([b, dim, h * w]).swap_dims(1, 2);
        let cls = self.cls_token.val().expand([b, 1, dim]);
        Tensor::cat(vec![cls, patches], 1) + self.interpolate_pos_encoding(height, width)
    }

    /// HF `interpolate_pos_encoding` for an input of `height` x `width` pixels: [1, 1 + patches, dim].
    ///
    /// The table is resized bicubically with `scale_factor = (patches + 0.1) / side` rather
    /// than to a target size, so PyTorch samples at `(i + 0.5) / scale_factor - 0.5`: not
    /// the same grid as resizing to `patches`. Skipped when the grid equals the table.
    pub fn interpolate_pos_encoding(&self, height: usize, width: usize) -> Tensor<B, 3> {
        let table = self.position_embeddings.val();
        let [_, positions, dim] = table.dims();
        let side = ((positions - 1) as f64).sqrt() as usize;
        let (rows, cols) = (height / self.patch_size, width / self.patch_size);
        if rows * cols == positions - 1 && height == width {
            return table;
        }
        let device = table.device();
        let class = table.clone().narrow(1, 0, 1);
        // [1, side*side, dim] -> [dim, side, side] so that rows and columns are matrix axes.
        let grid = table.narrow(1, 1, side * side).reshape([side, side, dim]).permute([2, 0, 1]);
        let weights = |output: usize| {
            let scale_factor = (output as f64 + 0.1) / side as f64;
            Tensor::<B, 2>::from_data(bicubic_weights(side, output, scale_factor), &device)
        };
        let row_weights = weights(rows).unsqueeze::<3>().expand([dim, rows, side]);
        let col_weights = weights(cols).transpose().unsqueeze::<3>().expand([dim, side, cols]);
        let resized = row_weights.matmul(grid).matmul(col_weights);
        let patches = resized.permute([1, 2, 0]).reshape([1, rows * cols, dim]);
        Tensor::cat(vec![class, patches], 1)
    }
}

/// `[output, input]` matrix of PyTorch's bicubic resampling along one axis (align_corners
/// false, a given scale factor, A = -0.75, border indices clamped), computed in f32 like the
/// CPU kernel.
fn bicubic_weights(input: usize, output: usize, scale_factor: f64) -> TensorData {
    const A: f32 = -0.75;
    // Kernel for |x| <= 1 and for 1 < |x| < 2.
    let near = |x: f32| ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    let far = |x: f32| ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A;
    let step = (1.0 / scale_factor) as f32;
    let mut matrix = vec![0.0f32; output * input];
    for i in 0..output {
        let source = step * (i as f32 + 0.5) - 0.5;
        let index = (source.floor() as i64).min(input as i64 - 1);
        let t = (source - index as f32).clamp(0.0, 1.0);
        let taps = [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)];
        for (j, weight) in taps.into_iter().enumerate() {
            let column = (index - 1 + j as i64).clamp(0, input as i64 - 1) as usize;
            matrix[i * input + column] += weight;
        }
    }
    TensorData::new(matrix, [output, input])
}

#[derive(Module, Debug)]
pub struct Dinov2SelfAttention<B: Backend> {
    pub query: Linear<B>,
    pub key: Linear<B>,
    pub value: Linear<B>,
    heads: usize,
}

#[derive(Module, Debug)]
pub struct Dinov2SelfOutput<B: Backend> {
    pub dense: Linear<B>,
}

#[derive(Module, Debug)]
pub struct Dinov2Attention<B: Backend> {
    pub attention: Dinov2SelfAttention<B>,
    pub output: Dinov2SelfOutput<B>,
}

impl<B: Backend> Dinov2Attention<B> {
    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let s = &self.attention;
        let context = attention(s.query.forward(x.clone()), s.key.forward(x.clone()), s.value.forward(x), s.heads);
        self.output.dense.forward(context)
    }
}

/// Per-channel residual branch scale.
#[derive(Module, Debug)]
pub struct Dinov2LayerScale<B: Backend> {
    pub lambda1: Param<Tensor<B, 1>>,
}

impl<B: Backend> Dinov2LayerScale<B> {
    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        x * self.lambda1.val().unsqueeze()
    }
}

#[derive(Module, Debug)]
pub struct Dinov2Mlp<B: Backend> {
    pub fc1: Linear<B>,
    pub fc2: Linear<B>,
    #[module(skip)]
    act: HiddenAct,
}

/// Pre-LN block with layer scale: x + ls1(attn(norm1(x))), then x + ls2(mlp(norm2(x))).
#[derive(Module, Debug)]
pub struct Dinov2Layer<B: Backend> {
    pub norm1: LayerNorm<B>,
    pub attention: Dinov2Attention<B>,
    pub layer_scale1: Dinov2LayerScale<B>,
    pub norm2: LayerNorm<B>,
    pub mlp: Dinov2Mlp<B>,
    pub layer_scale2: Dinov2LayerScale<B>,
}

impl<B: Backend> Dinov2Layer<B> {
    fn new(config: &Dinov2Config, device: &B::Device) -> Self {
        let (width, eps) = (config.hidden_size, config.layer_norm_eps);
        let hidden = (width as f64 * config.mlp_ratio) as usize;
        let qkv = || Linear::new(width, width, config.qkv_bias, device);
        let layer_scale = || Dinov2LayerScale {
            lambda1: Param::from_tensor(Tensor::ones([width], device) * config.layerscale_value),
        };
        Self {
            norm1: LayerNorm::new(width, eps, device),
            attention: Dinov2Attention {
                attention: Dinov2SelfAttention {
                    query: qkv(),
                    key: qkv(),
                    value: qkv(),
                    heads: config.num_attention_heads,
                },
                output: Dinov2SelfOutput { dense: Linear::new(width, width, true, device) },
            },
            layer_scale1: layer_scale(),
            norm2: LayerNorm::new(width, eps, device),
            mlp: Dinov2Mlp {
                fc1: Linear::new(width, hidden, true, device),
                fc2: Linear::new(hidden, width, true, device),
                act: config.hidden_act,
            },
            layer_scale2: layer_scale(),
        }
    }

    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let x = x.clone() + self.layer_scale1.forward(self.attention.forward(self.norm1.forward(x)));
        let hidden = self.mlp.act.forward(self.mlp.fc1.forward(self.norm2.forward(x.clone())));
        x + self.layer_scale2.forward(self.mlp.fc2.forward(hidden))
    }
}

#[derive(Module, Debug)]
pub struct Dinov2Encoder<B: Backend> {
    pub layer: Vec<Dinov2Layer<B>>,
}

/// What the teacher and the parity checks read from one forward pass.
#[derive(Debug, Clone)]
pub struct Dinov2Output<B: Backend> {
    /// `hidden_states[0]`: the embeddings output, [B, 1 + patches, width].
    pub embeddings: Tensor<B, 3>,
    /// After the final `layernorm`.
    pub last_hidden_state: Tensor<B, 3>,
}

#[derive(Module, Debug)]
pub struct Dinov2Model<B: Backend> {
    pub embeddings: Dinov2Embeddings<B>,
    pub encoder: Dinov2Encoder<B>,
    pub layernorm: LayerNorm<B>,
    #[module(skip)]
    config: Dinov2Config,
}

impl<B: Backend> Dinov2Model<B> {
    /// A randomly initialised model, its parameters drawn when first read: loading weights over
    /// it never draws them.
    pub fn new(config: &Dinov2Config, device: &B::Device) -> Self {
        Self {
            embeddings: Dinov2Embeddings::new(config, device),
            encoder: Dinov2Encoder {
                layer: (0..config.num_hidden_layers).map(|_| Dinov2Layer::new(config, device)).collect(),
            },
            layernorm: LayerNorm::new(config.hidden_size, config.layer_norm_eps, device),
            config: config.clone(),
        }
    }

    /// Loads HF weights, frozen.
    pub fn from_tensor_file(config: &Dinov2Config, file: &TensorFile, device: &B::Device) -> Result<Self> {
        load_frozen(Self::new(config, device), file, &|key: &str| key == "embeddings.mask_token")
    }

    /// [`Self::from_tensor_file`] from an HF config JSON and a safetensors file.
    pub fn load(config_path: &Path, weights_path: &Path, device: &B::Device) -> Result<Self> {
        let config = Dinov2Config::read(config_path)?;
        Self::from_tensor_file(&config, &TensorFile::read(weights_path)?, device)
    }

    pub fn config(&self) -> &Dinov2Config {
        &self.config
    }

    /// pixel values [B, C, H, W], already pre-processed; any multiple of the patch size.
    pub fn forward(&self, pixel_values: Tensor<B, 4>) -> Dinov2Output<B> {
        let embeddings = self.embeddings.forward(pixel_values);
        let hidden = self.encoder.layer.iter().fold(embeddings.clone(), |x, layer| layer.forward(x));
        Dinov2Output { embeddings, last_hidden_state: self.layernorm.forward(hidden) }
    }

    /// The official `DinoVisionTower` feature: images [B, 3, H, W] in [-1, 1] -> the class
    /// token of `last_hidden_state`, [B, width].
    pub fn cls_feature(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        let hidden = self.forward(ScalingLayer::IMAGENET.forward(images)).last_hidden_state;
        let [b, _, width] = hidden.dims();
        hidden.narrow(1, 0, 1).reshape([b, width])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(data: TensorData, input: usize) -> Vec<Vec<f32>> {
        data.to_vec::<f32>().unwrap().chunks(input).map(|r| r.to_vec()).collect()
    }

    #[test]
    fn bicubic_rows_sum_to_one() {
        for row in rows(bicubic_weights(4, 14, 14.1 / 4.0), 4) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6, "{row:?}");
        }
    }

    #[test]
    fn bicubic_at_scale_one_is_the_identity() {
        let m = rows(bicubic_weights(5, 5, 1.0), 5);
        for (i, row) in m.iter().enumerate() {
            for (j, w) in row.iter().enumerate() {
                assert!((w - if i == j { 1.0 } else { 0.0 }).abs() < 1e-6, "{m:?}");
            }
        }
    }

    #[test]
    fn bicubic_half_way_uses_the_a_minus_075_kernel() {
        // Upscale x2: output 1 samples source 0.25, between inputs 0 and 1 of a 4-long axis.
        let m = rows(bicubic_weights(4, 8, 2.0), 4);
        let (t, a) = (0.25f32, -0.75f32);
        let w_minus1 = ((a * (t + 1.0) - 5.0 * a) * (t + 1.0) + 8.0 * a) * (t + 1.0) - 4.0 * a;
        let w0 = ((a + 2.0) * t - (a + 3.0)) * t * t + 1.0;
        // Input -1 is clamped onto input 0.
        assert!((m[1][0] - (w_minus1 + w0)).abs() < 1e-6, "{:?}", m[1]);
        assert!(m[1][1] > 0.0 && m[1][3] == 0.0, "{:?}", m[1]);
    }
}
