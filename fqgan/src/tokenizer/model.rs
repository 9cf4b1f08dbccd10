//! The FQGAN tokenizer: encoder with k branches, k quantizers, concat aggregation, decoder and
//! the training-only feature-prediction heads.

use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};

use super::decoder::Decoder;
use super::encoder::Encoder;
use super::feat_pred::FeatPredHead;
use super::quantizer::{Quantized, VectorQuantizer, VqLosses};
use crate::config::TokenizerConfig;
use crate::error::Result;
use crate::layers::{materialize, Conv2d};
use crate::loss::disentangle::disentangle_loss;
use crate::trace;

#[derive(Module, Debug)]
pub struct Tokenizer<B: Backend> {
    pub encoder: Encoder<B>,
    /// 1x1 z_channels -> codebook dim, one per sub-codebook (`quant_conv_<name>`).
    pub quant_conv: Vec<Conv2d<B>>,
    /// One per sub-codebook (`quantize_<name>`).
    pub quantize: Vec<VectorQuantizer<B>>,
    pub post_quant_conv: Conv2d<B>,
    pub decoder: Decoder<B>,
    /// One per sub-codebook whose config has `feat_pred`, in codebook order.
    pub feat_pred: Vec<FeatPredHead<B>>,
    #[module(skip)]
    config: TokenizerConfig,
}

/// Everything one forward pass produces; `losses` only in training mode.
pub struct TokenizerOutput<B: Backend> {
    /// Per sub-codebook: the `quant_conv` output (pre-quantisation features), [B, dim, h, w].
    pub features: Vec<Tensor<B, 4>>,
    pub quantized: Vec<Quantized<B>>,
    /// Per sub-codebook with a feature-prediction head: [B, 1 + h*w, width].
    pub feat_pred: Vec<Option<Tensor<B, 3>>>,
    pub disentangle_loss: Tensor<B, 1>,
    /// [B, 3, H, W], unclamped.
    pub reconstruction: Tensor<B, 4>,
}

impl<B: Backend> TokenizerOutput<B> {
    pub fn losses(&self) -> impl Iterator<Item = Option<&VqLosses<B>>> {
        self.quantized.iter().map(|q| q.losses.as_ref())
    }
}

impl<B: Backend> Tokenizer<B> {
    /// A randomly initialised model (PyTorch's default init distributions).
    pub fn new(config: &TokenizerConfig, device: &B::Device) -> Result<Self> {
        let model = Self::unloaded(config, device)?;
        materialize(&model);
        Ok(model)
    }

    /// The model with its parameters not drawn yet: loading a file fills them directly.
    pub(crate) fn unloaded(config: &TokenizerConfig, device: &B::Device) -> Result<Self> {
        config.validate()?;
        let dim_total = config.quant_channels();
        Ok(Self {
            encoder: Encoder::new(config, device),
            quant_conv: config
                .codebooks
                .iter()
                .map(|c| Conv2d::new(config.z_channels, c.dim, 1, 1, 0, device))
                .collect(),
            quantize: config.codebooks.iter().map(|c| VectorQuantizer::new(config, c, device)).collect(),
            post_quant_conv: Conv2d::new(dim_total, config.z_channels, 1, 1, 0, device),
            decoder: Decoder::new(config, device),
            feat_pred: config
                .codebooks
                .iter()
                .filter_map(|c| c.feat_pred.as_ref().map(|fp| FeatPredHead::new(fp, c.dim, config.grid_size(), device)))
                .collect(),
            config: config.clone(),
        })
    }

    pub fn config(&self) -> &TokenizerConfig {
        &self.config
    }

    pub fn device(&self) -> B::Device {
        self.post_quant_conv.weight.device()
    }

    fn codebook_names(&self) -> Vec<&str> {
        self.config.codebooks.iter().map(|c| c.name.as_str()).collect()
    }

    /// The shape every forward takes; callers check their images once, at the boundary
    /// ([`crate::runtime`], the data loader), so a mismatch here is a bug in the caller.
    fn assert_images(&self, images: &Tensor<B, 4>) {
        let [_, c, h, w] = images.dims();
        let size = self.config.image_size;
        assert!(
            c == self.config.in_channels && h == size && w == size,
            "images are {c}x{h}x{w} (CxHxW); this tokenizer takes {}x{size}x{size} \
             (its adapters' position tables are fixed to a {g}x{g} latent grid)",
            self.config.in_channels,
            g = self.config.grid_size()
        );
    }

    /// The full forward pass. `training` computes the VQ losses and updates the usage windows.
    pub fn forward(&self, images: Tensor<B, 4>, training: bool) -> TokenizerOutput<B> {
        self.assert_images(&images);
        let names = self.codebook_names();
        let branches = self.encoder.forward(images, &names);
        let features: Vec<_> = branches.into_iter().zip(&self.quant_conv).map(|(h, conv)| conv.forward(h)).collect();
        let quantized: Vec<_> =
            features.iter().zip(&self.quantize).map(|(h, q)| q.forward(h.clone(), training)).collect();
        let quants: Vec<_> = quantized.iter().map(|q| q.quant.clone()).collect();
        let mut heads = self.feat_pred.iter();
        let feat_pred = self
            .config
            .codebooks
            .iter()
            .zip(&quants)
            .map(|(c, q)| {
                c.feat_pred.as_ref().map(|_| heads.next().expect("one head per feat_pred").forward(q.clone()))
            })
            .collect();
        let disentangle_loss = disentangle_loss(&quants, self.config.disentangle_ratio);
        let reconstruction = self.decode_quant(quants);
        TokenizerOutput { features, quantized, feat_pred, disentangle_loss, reconstruction }
    }

    /// images [B, 3, S, S] in [-1, 1] -> code indices [B, k, S/ds, S/ds].
    pub fn encode(&self, images: Tensor<B, 4>) -> Tensor<B, 4, Int> {
        self.assert_images(&images);
        let [b, _, _, _] = images.dims();
        let g = self.config.grid_size();
        let branches = self.encoder.forward(images, &self.codebook_names());
        let indices = branches
            .into_iter()
            .zip(&self.quant_conv)
            .zip(&self.quantize)
            .map(|((h, conv), quantizer)| quantizer.forward(conv.forward(h), false).indices.reshape([b, 1, g, g]))
            .collect();
        Tensor::cat(indices, 1)
    }

    /// indices [B, k, h, w] -> images [B, 3, h*ds, w*ds] (unclamped).
    pub fn decode(&self, indices: Tensor<B, 4, Int>) -> Tensor<B, 4> {
        let all: Vec<usize> = (0..self.config.k()).collect();
        self.decode_subset(indices, &all)
    }

    /// Decodes with only the sub-codebooks in `which` (indices into the codebook list); the
    /// others' quantized maps are zeroed, as in the paper's Fig. 3 analysis.
    pub fn decode_subset(&self, indices: Tensor<B, 4, Int>, which: &[usize]) -> Tensor<B, 4> {
        let k = self.config.k();
        assert!(which.iter().all(|&i| i < k), "sub-codebooks {which:?}: this tokenizer has k = {k}");
        let quants = self.lookup(indices);
        let quants =
            quants.into_iter().enumerate().map(|(i, q)| if which.contains(&i) { q } else { q.zeros_like() }).collect();
        self.decode_quant(quants)
    }

    /// Codebook rows for each index: [B, k, h, w] -> k maps [B, dim, h, w]. Ids must lie in
    /// their codebooks ([`crate::runtime`] and the `.fqt` reader check them on the host; an id
    /// out of range panics in the backend's gather).
    pub fn lookup(&self, indices: Tensor<B, 4, Int>) -> Vec<Tensor<B, 4>> {
        let [b, k, h, w] = indices.dims();
        assert_eq!(k, self.config.k(), "token grids of {k} sub-codebooks; this tokenizer has {}", self.config.k());
        self.quantize
            .iter()
            .enumerate()
            .map(|(i, quantizer)| {
                let ids = indices.clone().narrow(1, i, 1).reshape([b * h * w]);
                let rows = quantizer.codebook().select(0, ids);
                let dim = rows.dims()[1];
                rows.reshape([b, h, w, dim]).permute([0, 3, 1, 2])
            })
            .collect()
    }

    /// Concatenates the k quantized maps (codebook order) and runs post_quant_conv + decoder.
    pub fn decode_quant(&self, quants: Vec<Tensor<B, 4>>) -> Tensor<B, 4> {
        let z = self.post_quant_conv.forward(Tensor::cat(quants, 1));
        trace::record(|| "act_post_quant".into(), &z);
        self.decoder.forward(z)
    }

    /// Drops the training-only feature-prediction heads (for inference files and memory).
    pub fn without_feat_pred(mut self) -> Self {
        self.feat_pred.clear();
        for codebook in &mut self.config.codebooks {
            codebook.feat_pred = None;
        }
        self
    }
}
