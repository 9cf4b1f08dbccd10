//! Disentanglement regulariser: the mean squared cosine similarity between the quantized
//! vectors of two sub-codebooks at the same position, averaged over all pairs.

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use crate::tokenizer::quantizer::l2_normalize;

/// `ratio * mean_{pairs i<j} mean_positions cos(q_i, q_j)^2`; zero for k = 1.
/// Pairs run in codebook order: (0,1) for Dual; (0,1), (0,2), (1,2) for Triple, as upstream.
pub fn disentangle_loss<B: Backend>(quants: &[Tensor<B, 4>], ratio: f64) -> Tensor<B, 1> {
    let device = quants[0].device();
    let flat: Vec<Tensor<B, 2>> = quants
        .iter()
        .map(|q| {
            let [b, c, h, w] = q.dims();
            l2_normalize(q.clone().permute([0, 2, 3, 1]).reshape([b * h * w, c]))
        })
        .collect();
    let mut pair_losses = Vec::new();
    for i in 0..flat.len() {
        for j in i + 1..flat.len() {
            let cos = (flat[i].clone() * flat[j].clone()).sum_dim(1);
            pair_losses.push(cos.powi_scalar(2).mean());
        }
    }
    if pair_losses.is_empty() {
        return Tensor::zeros([1], &device);
    }
    let pairs = pair_losses.len() as f64;
    Tensor::cat(pair_losses, 0).sum() * (ratio / pairs)
}
