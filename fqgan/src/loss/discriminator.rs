//! PatchGAN discriminator (official `NLayerDiscriminator`): strided 4x4 convs with BatchNorm
//! and LeakyReLU(0.2), ending in a one-channel map of real/fake logits.

use std::path::Path;

use burn::module::Module;
use burn::tensor::activation::leaky_relu;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::layers::{BatchNorm2d, Conv2d};
use crate::weights::{load_module, module_tensors, write_safetensors, KeyMap, LoadRules, TensorFile};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DiscriminatorConfig {
    pub in_channels: usize,
    /// Filters of the first conv (official 64).
    pub ndf: usize,
    pub n_layers: usize,
}

impl Default for DiscriminatorConfig {
    fn default() -> Self {
        Self { in_channels: 3, ndf: 64, n_layers: 3 }
    }
}

/// One conv, with BatchNorm after it on every layer but the first and the last.
#[derive(Module, Debug)]
pub struct DiscLayer<B: Backend> {
    pub conv: Conv2d<B>,
    pub norm: Option<BatchNorm2d<B>>,
}

#[derive(Module, Debug)]
pub struct PatchDiscriminator<B: Backend> {
    pub layers: Vec<DiscLayer<B>>,
    #[module(skip)]
    config: DiscriminatorConfig,
}

impl<B: Backend> PatchDiscriminator<B> {
    pub fn new(config: &DiscriminatorConfig, device: &B::Device) -> Self {
        let width = |n: usize| config.ndf * (1 << n).min(8);
        let mut layers =
            vec![DiscLayer { conv: Conv2d::new(config.in_channels, config.ndf, 4, 2, 1, device), norm: None }];
        for n in 1..=config.n_layers {
            let stride = if n < config.n_layers { 2 } else { 1 };
            layers.push(DiscLayer {
                conv: Conv2d::new(width(n - 1), width(n), 4, stride, 1, device).without_bias(),
                norm: Some(BatchNorm2d::new(width(n), 1e-5, device)),
            });
        }
        layers.push(DiscLayer { conv: Conv2d::new(width(config.n_layers), 1, 4, 1, 1, device), norm: None });
        Self { layers, config: config.clone() }
    }

    /// images [B, C, H, W] -> logits [B, 1, h, w]. `training` uses batch statistics.
    pub fn forward(&self, images: Tensor<B, 4>, training: bool) -> Tensor<B, 4> {
        let last = self.layers.len() - 1;
        self.layers.iter().enumerate().fold(images, |h, (i, layer)| {
            let mut h = layer.conv.forward(h);
            if let Some(norm) = &layer.norm {
                h = norm.forward(h, training);
            }
            if i < last {
                h = leaky_relu(h, 0.2);
            }
            h
        })
    }

    pub fn load(path: impl AsRef<Path>, config: &DiscriminatorConfig, device: &B::Device) -> Result<Self> {
        let file = TensorFile::read(path)?;
        // `num_batches_tracked` only matters for BatchNorm's momentum=None mode, unused here.
        let ignorable = |key: &str| key.ends_with(".num_batches_tracked");
        let rules = LoadRules { optional: &|_| false, ignorable: &ignorable };
        load_module(Self::new(config, device), &file, &discriminator_key_map(config), &rules)
    }

    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let tensors = module_tensors(self, &discriminator_key_map(&self.config));
        write_safetensors(path.as_ref(), &tensors, Default::default())
    }
}

/// Layer i -> its index in the official `main` Sequential (conv, [norm], activation).
pub fn discriminator_key_map(config: &DiscriminatorConfig) -> KeyMap {
    let mut renames = vec![("layers.0.conv.".to_string(), "main.0.".to_string())];
    let mut index = 2;
    for layer in 1..=config.n_layers {
        renames.push((format!("layers.{layer}.conv."), format!("main.{index}.")));
        renames.push((format!("layers.{layer}.norm."), format!("main.{}.", index + 1)));
        index += 3;
    }
    renames.push((format!("layers.{}.conv.", config.n_layers + 1), format!("main.{index}.")));
    KeyMap::new(renames)
}
