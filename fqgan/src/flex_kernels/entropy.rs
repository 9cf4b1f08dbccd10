//! The quantizer's entropy terms over one block of code affinities `[rows, codes]`, forward
//! and backward, one parallel pass per row. burn's `softmax` and `log_softmax` compute the
//! exponentials twice with libm's scalar `expf`, and their backward as many passes again.
//!
//! The output is `[codes + 1]`: the rows' softmax probabilities summed per code, then
//! `sum over rows of sum_j p_j log p_j` (the negated sample entropies).

use rayon::prelude::*;

use super::dot;
use super::norm::exp;

/// Rows per parallel task: enough work per task for a 1024-code block.
const ROWS_PER_TASK: usize = 16;

/// Probabilities below `e^-CUTOFF` times the row's largest are taken as 0. At a temperature
/// of 0.01 most affinities lie hundreds below the largest, and their exponentials (or the
/// gradients multiplied by them) are subnormal floats, which take ~100 cycles per operation:
/// they made this kernel, and the backward steps behind it, 5x slower. `e^-60` is far below
/// what a f32 sum with the row's largest term (1) can register.
const CUTOFF: f32 = 60.0;

/// Independent running maxima in `max`: one is a serial chain of dependent comparisons,
/// which stays scalar; sixteen of them vectorise.
const LANES: usize = 16;

/// The largest of `values`.
#[inline(always)]
fn max(values: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let chunks = values.chunks_exact(LANES);
    let rest = chunks.remainder().iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane = if v > *lane { v } else { *lane };
        }
    }
    lanes.into_iter().fold(rest, f32::max)
}

/// `log p` of one row's softmax, and `sum_j p_j log p_j`, with `p` written to `probs`.
#[inline(always)]
fn softmax_row(affinity: &[f32], probs: &mut [f32], log_probs: &mut [f32]) -> f32 {
    let max = max(affinity);
    for (p, &a) in probs.iter_mut().zip(affinity) {
        *p = if a - max < -CUTOFF { 0.0 } else { exp(a - max) };
    }
    let sum = super::lane_sum(probs, f64::from) as f32;
    let (log_sum, inv_sum) = (sum.ln(), 1.0 / sum);
    for ((p, l), &a) in probs.iter_mut().zip(log_probs.iter_mut()).zip(affinity) {
        *l = a - max - log_sum;
        *p *= inv_sum;
    }
    dot(probs, log_probs)
}

/// The `[codes + 1]` output for `affinity`, `rows x codes`.
pub(super) fn forward(affinity: &[f32], codes: usize) -> Vec<f32> {
    let partial = |chunk: &[f32]| {
        super::vectorized(
            #[inline(always)]
            || {
                let mut out = vec![0f32; codes + 1];
                let (mut probs, mut log_probs) = (vec![0f32; codes], vec![0f32; codes]);
                for row in chunk.chunks_exact(codes) {
                    out[codes] += softmax_row(row, &mut probs, &mut log_probs);
                    out[..codes].iter_mut().zip(&probs).for_each(|(o, p)| *o += p);
                }
                out
            },
        )
    };
    affinity.par_chunks(codes * ROWS_PER_TASK).map(partial).reduce(
        || vec![0f32; codes + 1],
        |mut a, b| {
            a.iter_mut().zip(&b).for_each(|(a, b)| *a += b);
            a
        },
    )
}

/// The gradient with respect to `affinity`, given the output's gradient `grad` (`[codes + 1]`):
/// for row r, `p_j (g_j - <g, p>) + g_s p_j (log p_j - s_r)`, with `g` the gradient of the
/// probability sums, `g_s` that of the entropy sum and `s_r = sum_j p_j log p_j`.
pub(super) fn backward(affinity: &[f32], grad: &[f32], codes: usize) -> Vec<f32> {
    let (g, g_s) = (&grad[..codes], grad[codes]);
    let mut out = vec![0f32; affinity.len()];
    out.par_chunks_mut(codes * ROWS_PER_TASK).zip(affinity.par_chunks(codes * ROWS_PER_TASK)).for_each(
        |(out, chunk)| {
            super::vectorized(
                #[inline(always)]
                || {
                    let mut log_probs = vec![0f32; codes];
                    for (dst, row) in out.chunks_exact_mut(codes).zip(chunk.chunks_exact(codes)) {
                        let s = softmax_row(row, dst, &mut log_probs);
                        let g_dot_p = dot(dst, g);
                        for ((d, &l), &g) in dst.iter_mut().zip(&log_probs).zip(g) {
                            *d *= g - g_dot_p + g_s * (l - s);
                        }
                    }
                },
            )
        },
    );
    out
}
