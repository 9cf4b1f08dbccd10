//! One AdamW update of a flat parameter in one parallel pass, moments updated in place:
//! the generic version is a dozen tensor ops per parameter, each a pass and a new buffer,
//! which for a model of many small tensors costs more than the arithmetic.

use rayon::prelude::*;

/// The constants of one update, as f32 (what burn's scalar ops convert them to, so that
/// the results equal the generic ops' bit for bit).
#[derive(Clone, Copy, Debug)]
pub(crate) struct AdamWStep {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    /// `1 - beta1` and `1 - beta2`, rounded from f64 as the generic ops' scalars are.
    pub one_minus_beta1: f32,
    pub one_minus_beta2: f32,
    pub eps: f32,
    /// `1 - lr * weight_decay`.
    pub decay_factor: f32,
    /// The clipping factor applied to the gradient.
    pub grad_scale: f32,
    /// `1 - beta1^t` and `1 - beta2^t`.
    pub bias_correction1: f32,
    pub bias_correction2: f32,
}

/// Values per parallel task.
const CHUNK: usize = 1 << 14;

/// The updated parameter; `m` and `v` are updated in place.
pub(super) fn step(param: &[f32], grad: &[f32], m: &mut [f32], v: &mut [f32], s: &AdamWStep) -> Vec<f32> {
    let mut out = vec![0f32; param.len()];
    out.par_chunks_mut(CHUNK)
        .zip(param.par_chunks(CHUNK))
        .zip(grad.par_chunks(CHUNK))
        .zip(m.par_chunks_mut(CHUNK).zip(v.par_chunks_mut(CHUNK)))
        .for_each(|(((out, param), grad), (m, v))| {
            for ((((out, &p), &g), m), v) in out.iter_mut().zip(param).zip(grad).zip(m).zip(v) {
                // The generic version's operations, in its order.
                let g = g * s.grad_scale;
                *m = *m * s.beta1 + g * s.one_minus_beta1;
                *v = *v * s.beta2 + g * g * s.one_minus_beta2;
                let (m_hat, v_hat) = (*m / s.bias_correction1, *v / s.bias_correction2);
                *out = p * s.decay_factor - m_hat / (v_hat.sqrt() + s.eps) * s.lr;
            }
        });
    out
}
