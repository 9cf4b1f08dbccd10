//! The FAR generator (paper §3.3, official `autoregressive/models/far_{dual,triple}.py`) for
//! any number k of sub-tokens: k token embeddings aggregated by one Linear, a class-embedding
//! prefix, a Llama backbone and the factorized head.
//!
//! Tokens are `[B, k, N]` Int tensors in raster order, sub-token 1 (vis) first, matching the
//! tokenizer's `[B, k, h, w]` codes flattened.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Embedding, EmbeddingConfig};
use burn::tensor::activation::log_softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};

use super::block::TransformerBlock;
use super::config::FarConfig;
use super::head::FactorizedHead;
use super::kv_cache::KvCache;
use super::rope::freqs_cis_2d;
use crate::error::Result;
use crate::layers::{materialize, Linear, WeightPrecision};
use crate::trace;

/// Official `LabelEmbedder`: one row per class plus the null class used for guidance.
#[derive(Module, Debug)]
pub struct LabelEmbedder<B: Backend> {
    pub embedding_table: Embedding<B>,
}

#[derive(Module, Debug)]
pub struct Far<B: Backend> {
    pub cls_embedding: LabelEmbedder<B>,
    /// Official `tok_embeddings_1 .. tok_embeddings_k`; the head reuses `1 .. k-1`.
    pub tok_embeddings: Vec<Embedding<B>>,
    pub aggregation_layer: Linear<B>,
    tok_dropout: Dropout,
    pub layers: Vec<TransformerBlock<B>>,
    pub head: FactorizedHead<B>,
    /// The rotary table, recomputed from the config (official checkpoints do not store it).
    freqs_cis: Tensor<B, 3>,
    #[module(skip)]
    config: FarConfig,
}

impl<B: Backend> Far<B> {
    /// A randomly initialised model (PyTorch's default init distributions).
    pub fn new(config: &FarConfig, device: &B::Device) -> Result<Self> {
        let model = Self::unloaded(config, device)?;
        materialize(&model);
        Ok(model)
    }

    /// The model with its parameters not drawn yet: loading a file fills them directly.
    pub(crate) fn unloaded(config: &FarConfig, device: &B::Device) -> Result<Self> {
        config.validate()?;
        let embedding = |rows: usize| EmbeddingConfig::new(rows, config.dim).init(device);
        Ok(Self {
            cls_embedding: LabelEmbedder { embedding_table: embedding(config.label_rows()) },
            tok_embeddings: config.vocab_sizes.iter().map(|&v| embedding(v)).collect(),
            aggregation_layer: Linear::new(config.dim * config.k(), config.dim, true, device),
            tok_dropout: DropoutConfig::new(config.token_dropout_p).init(),
            layers: (0..config.n_layer).map(|_| TransformerBlock::new(config, device)).collect(),
            head: FactorizedHead::new(config, device),
            freqs_cis: freqs_cis_2d(
                config.grid_size(),
                config.head_dim(),
                config.rope_base,
                config.cls_token_num,
                device,
            ),
            config: config.clone(),
        })
    }

    /// The model with every Linear weight stored as `precision` (embeddings, norms and biases
    /// stay f32). Bf16 is for inference: the golden cases hold for f32. It needs a backend
    /// with bf16 tensors (Flex, CUDA; not NdArray, which panics).
    pub fn with_weight_precision(mut self, precision: WeightPrecision) -> Self {
        self.set_weight_precision(precision);
        self
    }

    /// As [`Far::with_weight_precision`], in place.
    pub fn set_weight_precision(&mut self, precision: WeightPrecision) {
        let blocks = self.layers.iter_mut().chain(self.head.blocks.iter_mut());
        let linears = blocks.flat_map(TransformerBlock::linears_mut).chain(self.head.output.iter_mut());
        for linear in linears.chain([&mut self.aggregation_layer]) {
            linear.set_weight_precision(precision);
        }
    }

    pub fn config(&self) -> &FarConfig {
        &self.config
    }

    pub fn device(&self) -> B::Device {
        self.aggregation_layer.weight.device()
    }

    /// The rotary table `[cls_token_num + block_size, head_dim / 2, 2]`.
    pub fn freqs_cis(&self) -> Tensor<B, 3> {
        self.freqs_cis.clone()
    }

    /// Teacher-forced logits: k tensors `[B, N, vocab_j]`, where position n predicts token n
    /// from the class and tokens `0..n` (and, in the head, from sub-tokens `1..j` of token n).
    /// `tokens` is `[B, k, N]` with N <= block_size, `labels` `[B]`.
    pub fn forward(&self, tokens: Tensor<B, 3, Int>, labels: Tensor<B, 1, Int>) -> Vec<Tensor<B, 3>> {
        let [b, k, n] = tokens.dims();
        self.assert_tokens(&tokens);
        assert_eq!(labels.dims()[0], b, "{} labels for a batch of {b} token sequences", labels.dims()[0]);
        let cond = self.embed_labels(labels);
        trace::record(|| "act_cond_emb".into(), &cond.clone().unsqueeze::<4>());
        let aggregated = self.embed_tokens(tokens.clone());
        trace::record(|| "act_token_agg".into(), &aggregated.clone().unsqueeze::<4>());
        let input = if n > 1 { Tensor::cat(vec![cond, aggregated.narrow(1, 0, n - 1)], 1) } else { cond };
        let h = self.backbone(input, 0, None);
        let slot_inputs = (0..k - 1).map(|j| self.tok_embeddings[j].forward(sub_token(&tokens, j))).collect();
        self.head.forward(h, slot_inputs, self.freqs_cis.clone().narrow(0, 0, k))
    }

    /// The training objective: the mean over sub-tokens of the cross-entropy of
    /// `logits[j]` `[B, N, vocab_j]` against `targets` `[B, k, N]`. Returns `[1]`.
    pub fn loss(&self, logits: &[Tensor<B, 3>], targets: Tensor<B, 3, Int>) -> Tensor<B, 1> {
        let k = logits.len();
        let losses: Vec<Tensor<B, 1>> = logits
            .iter()
            .enumerate()
            .map(|(j, logits)| {
                let [b, n, v] = logits.dims();
                let log_probs = log_softmax(logits.clone().reshape([b * n, v]), 1);
                let target = sub_token(&targets, j).reshape([b * n, 1]);
                log_probs.gather(1, target).mean().neg()
            })
            .collect();
        Tensor::cat(losses, 0).sum() / k as f64
    }

    /// `aggregation_layer(cat_j(tok_embeddings_j(tokens_j)))`: `[B, k, S]` -> `[B, S, dim]`.
    pub fn embed_tokens(&self, tokens: Tensor<B, 3, Int>) -> Tensor<B, 3> {
        let embedded = (0..self.config.k()).map(|j| self.tok_embeddings[j].forward(sub_token(&tokens, j))).collect();
        self.aggregation_layer.forward(Tensor::cat(embedded, 2))
    }

    /// `[B]` labels -> the class prefix `[B, 1, dim]`.
    pub fn embed_labels(&self, labels: Tensor<B, 1, Int>) -> Tensor<B, 3> {
        self.cls_embedding.embedding_table.forward(labels.unsqueeze_dim(1))
    }

    /// Runs the backbone on `x` `[B, S, dim]` at positions `start..start + S`, appending to
    /// `caches` (one per layer) when given.
    pub fn backbone(&self, x: Tensor<B, 3>, start: usize, mut caches: Option<&mut [KvCache<B>]>) -> Tensor<B, 3> {
        let s = x.dims()[1];
        let freqs = self.freqs_cis.clone().narrow(0, start, s);
        let mut h = self.tok_dropout.forward(x);
        for (i, layer) in self.layers.iter().enumerate() {
            let cache = caches.as_deref_mut().map(|c| &mut c[i]);
            h = layer.forward(h, freqs.clone(), cache);
            trace::record(|| format!("act_layer{i}_out"), &h.clone().unsqueeze::<4>());
        }
        h
    }

    /// Empty backbone caches for `batch` rows, sized for a whole image.
    pub fn new_caches(&self, batch: usize) -> Vec<KvCache<B>> {
        let c = &self.config;
        // The class token and all tokens but the last are ever fed to the backbone.
        let capacity = c.cls_token_num + c.block_size - 1;
        let device = self.device();
        (0..c.n_layer).map(|_| KvCache::new(batch, c.kv_heads(), capacity, c.head_dim(), &device)).collect()
    }

    /// Fills `caches` with the class prefix and the given `prefix` tokens `[B, k, P]` (none
    /// when `None`); returns the last hidden state `[B, 1, dim]`, which predicts token P.
    /// Labels and ids must lie in range (checked on the host by [`crate::runtime`]).
    pub fn prefill(
        &self,
        labels: Tensor<B, 1, Int>,
        prefix: Option<Tensor<B, 3, Int>>,
        caches: &mut [KvCache<B>],
    ) -> Tensor<B, 3> {
        let mut input = self.embed_labels(labels);
        if let Some(prefix) = prefix {
            self.assert_tokens(&prefix);
            let positions = prefix.dims()[2];
            assert!(positions < self.config.block_size, "a prefix of {positions} tokens leaves none to generate");
            input = Tensor::cat(vec![input, self.embed_tokens(prefix)], 1);
        }
        let s = input.dims()[1];
        self.backbone(input, 0, Some(caches)).narrow(1, s - 1, 1)
    }

    /// Feeds one token `[B, k, 1]` at the next cached position; returns the hidden state
    /// `[B, 1, dim]` that predicts the token after it.
    pub fn decode_one_token(&self, token: Tensor<B, 3, Int>, caches: &mut [KvCache<B>]) -> Tensor<B, 3> {
        let start = caches[0].len();
        self.backbone(self.embed_tokens(token), start, Some(caches))
    }

    /// The head input for slot `slot >= 1`: `tok_embeddings_slot(sub-token slot)`, from
    /// `ids` `[B, 1]`.
    pub fn slot_embedding(&self, slot: usize, ids: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        self.tok_embeddings[slot - 1].forward(ids)
    }

    /// Logits of sub-token `last + 1` from head slots `x` `[B, S, dim]` ending at slot
    /// `last`; with caches, earlier slots come from them, so S is 1 in cached decoding.
    pub fn head_logits(&self, x: Tensor<B, 3>, last: usize, caches: Option<&mut [KvCache<B>]>) -> Tensor<B, 2> {
        let s = x.dims()[1];
        let freqs = self.freqs_cis.clone().narrow(0, last + 1 - s, s);
        self.head.logits(x, last, freqs, caches)
    }

    /// The shape tokens `[B, k, N]` must have: k sub-tokens, 1..=block_size positions.
    fn assert_tokens(&self, tokens: &Tensor<B, 3, Int>) {
        let [_, k, n] = tokens.dims();
        assert!(
            k == self.config.k() && n > 0 && n <= self.config.block_size,
            "tokens are [B, {k}, {n}]; this model takes [B, {}, 1..={}]",
            self.config.k(),
            self.config.block_size
        );
    }
}

/// Sub-token `j` (0-based) of `[B, k, N]` tokens, as `[B, N]`.
pub(crate) fn sub_token<B: Backend>(tokens: &Tensor<B, 3, Int>, j: usize) -> Tensor<B, 2, Int> {
    let [b, _, n] = tokens.dims();
    tokens.clone().narrow(1, j, 1).reshape([b, n])
}
