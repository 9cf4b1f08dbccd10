//! `VectorQuantizer`: nearest-neighbour code search (cosine, on l2-normalised vectors), the
//! straight-through estimator, the VQ / commitment / entropy losses and the usage window.

use burn::module::{Module, Param, RunningState};
use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, IndexingUpdateOp, Int, Tensor};

use crate::config::{CodebookConfig, TokenizerConfig};
use crate::flex_kernels;
use crate::layers::lazy_param;

/// Upper bound on the elements of one block of the (rows x codebook) distance matrix.
/// 2^22 f32 = 16 MiB, whatever the batch or codebook size.
const DISTANCE_BLOCK_ELEMENTS: usize = 1 << 22;

#[derive(Module, Debug)]
pub struct Embedding<B: Backend> {
    /// [codebook size, dim]
    pub weight: Param<Tensor<B, 2>>,
}

#[derive(Module, Debug)]
pub struct VectorQuantizer<B: Backend> {
    pub embedding: Embedding<B>,
    /// The last `usage_window` code ids (as floats, zero-filled at start), as in the official
    /// buffer; only training forwards update it.
    pub codebook_used: RunningState<Tensor<B, 1>>,
    l2_norm: bool,
    beta: f64,
    entropy_loss_ratio: f64,
    entropy_temperature: f64,
}

/// The training-only outputs of one quantizer.
#[derive(Debug, Clone)]
pub struct VqLosses<B: Backend> {
    /// mean((zq - sg(z))^2)
    pub vq: Tensor<B, 1>,
    /// beta * mean((sg(zq) - z)^2)
    pub commit: Tensor<B, 1>,
    /// ratio * (sample entropy - entropy of the mean distribution)
    pub entropy: Tensor<B, 1>,
    /// Unique ids in the usage window / codebook size (the zero filler counts, as upstream), `[1]`.
    pub usage: Tensor<B, 1>,
}

pub struct Quantized<B: Backend> {
    /// [B, dim, h, w]: the (normalised) codebook rows, with straight-through gradients to z.
    pub quant: Tensor<B, 4>,
    /// [B*h*w] in (b, row, col) order.
    pub indices: Tensor<B, 1, Int>,
    pub losses: Option<VqLosses<B>>,
}

impl<B: Backend> VectorQuantizer<B> {
    pub fn new(tokenizer: &TokenizerConfig, codebook: &CodebookConfig, device: &B::Device) -> Self {
        let bound = 1.0 / codebook.size as f64;
        let (shape, l2_norm) = ([codebook.size, codebook.dim], codebook.l2_norm);
        let weight = lazy_param(shape, device, move |device| {
            let weight = Tensor::random(shape, Distribution::Uniform(-bound, bound), device);
            if l2_norm {
                l2_normalize(weight)
            } else {
                weight
            }
        });
        Self {
            embedding: Embedding { weight },
            codebook_used: RunningState::new(Tensor::zeros([tokenizer.usage_window], device)),
            l2_norm: codebook.l2_norm,
            beta: tokenizer.commit_beta,
            entropy_loss_ratio: tokenizer.entropy_loss_ratio,
            entropy_temperature: tokenizer.entropy_temperature,
        }
    }

    /// The code vectors the decoder sees: l2-normalised rows when `l2_norm` is set.
    pub fn codebook(&self) -> Tensor<B, 2> {
        let weight = self.embedding.weight.val();
        if self.l2_norm {
            l2_normalize(weight)
        } else {
            weight
        }
    }

    pub fn codebook_size(&self) -> usize {
        self.embedding.weight.dims()[0]
    }

    /// Index of the nearest code for each row of `z` [N, dim] (first index on ties). The
    /// distance matrix is computed in blocks of at most `DISTANCE_BLOCK_ELEMENTS`.
    pub fn nearest(&self, z: Tensor<B, 2>, codebook: &Tensor<B, 2>) -> Tensor<B, 1, Int> {
        nearest_code(z, codebook, DISTANCE_BLOCK_ELEMENTS)
    }

    /// Quantises z [B, dim, h, w]. `training` adds the losses and updates the usage window.
    pub fn forward(&self, z: Tensor<B, 4>, training: bool) -> Quantized<B> {
        let [b, c, h, w] = z.dims();
        let mut flat = z.permute([0, 2, 3, 1]).reshape([b * h * w, c]);
        if self.l2_norm {
            flat = l2_normalize(flat);
        }
        let codebook = self.codebook();
        let indices = self.nearest(flat.clone().detach(), &codebook.clone().detach());
        let zq = codebook.clone().select(0, indices.clone());
        let losses = training.then(|| {
            let vq = (zq.clone() - flat.clone().detach()).powi_scalar(2).mean();
            let commit = (zq.clone().detach() - flat.clone()).powi_scalar(2).mean() * self.beta;
            let entropy = self.entropy_loss(flat.clone(), codebook) * self.entropy_loss_ratio;
            let usage = self.update_usage(&indices);
            VqLosses { vq, commit, entropy, usage }
        });
        let straight_through = flat.clone() + (zq - flat).detach();
        let quant = straight_through.reshape([b, h, w, c]).permute([0, 3, 1, 2]);
        Quantized { quant, indices, losses }
    }

    /// The official `compute_entropy_loss(-d)` with temperature, accumulated over row blocks.
    fn entropy_loss(&self, z: Tensor<B, 2>, codebook: Tensor<B, 2>) -> Tensor<B, 1> {
        let [n, _] = z.dims();
        let codes = codebook.dims()[0];
        let row_block = (DISTANCE_BLOCK_ELEMENTS / codes).max(1);
        let code_norms = codebook.clone().powi_scalar(2).sum_dim(1).reshape([1, codes]);
        let mut sample_entropy_sum = Vec::new();
        let mut prob_sums = Vec::new();
        for start in (0..n).step_by(row_block) {
            let rows = z.clone().narrow(0, start, row_block.min(n - start));
            let dist = rows.clone().powi_scalar(2).sum_dim(1) + code_norms.clone()
                - rows.matmul(codebook.clone().transpose()) * 2.0;
            let affinity = dist.neg() / self.entropy_temperature;
            match flex_kernels::softmax_entropy(affinity) {
                Ok(sums) => {
                    prob_sums.push(sums.clone().narrow(0, 0, codes).reshape([1, codes]));
                    sample_entropy_sum.push(sums.narrow(0, codes, 1));
                }
                Err(affinity) => {
                    let probs = softmax(affinity.clone(), 1);
                    sample_entropy_sum.push((probs.clone() * log_softmax(affinity, 1)).sum());
                    prob_sums.push(probs.sum_dim(0));
                }
            }
        }
        let sample_entropy = Tensor::cat(sample_entropy_sum, 0).sum().neg() / n as f64;
        let avg_probs = Tensor::cat(prob_sums, 0).sum_dim(0) / n as f64;
        let avg_entropy = (avg_probs.clone() * (avg_probs + 1e-5).log()).sum().neg();
        sample_entropy - avg_entropy
    }

    /// Shifts the window left by N and appends the new ids; returns the usage fraction `[1]`.
    /// All on the device: the window never visits the host.
    fn update_usage(&self, indices: &Tensor<B, 1, Int>) -> Tensor<B, 1> {
        let window = self.codebook_used.value();
        let (len, n) = (window.dims()[0], indices.dims()[0]);
        let new = indices.clone().float();
        let window = if n >= len {
            new.narrow(0, n - len, len)
        } else {
            Tensor::cat(vec![window.narrow(0, n, len - n), new], 0)
        };
        // Ids are below 2^24, exact in f32 (the official buffer is float as well).
        let ids = window.clone().int();
        let size = self.codebook_size();
        let device = window.device();
        let hits = Tensor::<B, 1>::zeros([size], &device).select_assign(
            0,
            ids,
            Tensor::ones([len], &device),
            IndexingUpdateOp::Add,
        );
        self.codebook_used.update(window);
        hits.greater_elem(0.0).float().sum() / size as f64
    }
}

/// Nearest codebook row for each row of `z` by squared distance, computing at most
/// `block_elements` distances at a time; the first index wins ties, also across blocks.
fn nearest_code<B: Backend>(z: Tensor<B, 2>, codebook: &Tensor<B, 2>, block_elements: usize) -> Tensor<B, 1, Int> {
    let [n, _] = z.dims();
    let codes = codebook.dims()[0];
    let code_block = codes.min(block_elements);
    let row_block = (block_elements / code_block).max(1);
    let code_norms = codebook.clone().powi_scalar(2).sum_dim(1).reshape([1, codes]);
    let mut out = Vec::with_capacity(n.div_ceil(row_block));
    for start in (0..n).step_by(row_block) {
        let rows = z.clone().narrow(0, start, row_block.min(n - start));
        let row_norms = rows.clone().powi_scalar(2).sum_dim(1);
        let mut best: Option<(Tensor<B, 2>, Tensor<B, 2, Int>)> = None;
        for code_start in (0..codes).step_by(code_block) {
            let len = code_block.min(codes - code_start);
            let block = codebook.clone().narrow(0, code_start, len);
            let dist = row_norms.clone() + code_norms.clone().narrow(1, code_start, len)
                - rows.clone().matmul(block.transpose()) * 2.0;
            let (min, arg) = dist.min_dim_with_indices(1);
            let arg = arg + code_start as i64;
            best = Some(match best {
                None => (min, arg),
                // Strictly smaller only, so the first index wins ties across blocks too.
                Some((best_min, best_arg)) => {
                    let better = min.clone().lower(best_min.clone());
                    (best_min.mask_where(better.clone(), min), best_arg.mask_where(better, arg))
                }
            });
        }
        out.push(best.expect("codebook is not empty").1.flatten(0, 1));
    }
    Tensor::cat(out, 0)
}

/// `F.normalize(x, dim=-1)`: x / max(|x|, 1e-12) per row.
pub fn l2_normalize<B: Backend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    let norm = x.clone().powi_scalar(2).sum_dim(1).sqrt().clamp_min(1e-12);
    x / norm
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    #[test]
    fn blocked_search_equals_one_block_with_first_index_on_ties() {
        let device = Default::default();
        Flex::seed(&device, 3);
        let z = Tensor::<Flex, 2>::random([37, 4], Distribution::Normal(0.0, 1.0), &device);
        let mut codebook = Tensor::<Flex, 2>::random([29, 4], Distribution::Normal(0.0, 1.0), &device);
        // Duplicate rows: a tie that spans blocks must resolve to the lower index.
        codebook = codebook.clone().slice_assign([20..21, 0..4], codebook.clone().slice([3..4, 0..4]));
        let whole = nearest_code(z.clone(), &codebook, usize::MAX);
        for block in [1, 5, 29, 64, 100] {
            assert_eq!(nearest_code(z.clone(), &codebook, block).into_data(), whole.to_data(), "block {block}");
        }
        let ids: Vec<i64> = whole.into_data().convert::<i64>().to_vec().unwrap();
        assert!(!ids.contains(&20), "the duplicate of row 3 must never win");
    }
}
