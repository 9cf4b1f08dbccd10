//! GroupNorm (with optional fused swish) on contiguous NCHW f32 slices, forward and backward,
//! one parallel pass per (image, group). burn's generic ops run it as six passes over
//! strided views on one thread, and their backward as as many again.

use super::lane_sum;

/// Independent running sums per channel in the backward pass.
const LANES: usize = 16;

/// `GroupNorm(groups, eps)` over `[batch, channels, plane]` with per-channel affine
/// parameters, followed by swish when `swish` is set.
#[derive(Clone, Copy, Debug)]
pub(super) struct GroupNormShape {
    pub channels: usize,
    pub plane: usize,
    pub groups: usize,
    pub eps: f64,
    pub swish: bool,
}

impl GroupNormShape {
    fn group_len(&self) -> usize {
        self.channels / self.groups * self.plane
    }

    /// The first channel of chunk `index` (a chunk is one group of one image).
    fn first_channel(&self, index: usize) -> usize {
        (index % self.groups) * (self.channels / self.groups)
    }

    /// Mean and 1 / standard deviation of one group's values.
    #[inline(always)]
    fn statistics(&self, values: &[f32]) -> (f64, f64) {
        let n = values.len() as f64;
        let mean = lane_sum(values, f64::from) / n;
        let var = lane_sum(values, |v| (f64::from(v) - mean).powi(2)) / n;
        (mean, 1.0 / (var + self.eps).sqrt())
    }
}

fn sigmoid(y: f32) -> f32 {
    1.0 / (1.0 + exp(-y))
}

/// e^x in f32 within 2 ulp (Cephes' `expf`: x = n ln 2 + r, a degree-5 polynomial for e^r,
/// 2^n put into the exponent bits), written without branches or calls so that the loops
/// calling it vectorise; libm's `expf` is a scalar call, 8% of a tile decode. Inputs are
/// clamped to where e^x is a normal f32, so very negative x give a tiny normal, not 0.
#[inline(always)]
pub(super) fn exp(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4; // 355 / 512, exact in f32
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and removing 1.5 * 2^23 rounds to the nearest integer in plain arithmetic.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let shifted = x * LOG2_E + ROUND;
    let n = shifted - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_2e-4;
    p = p * r + 1.398_2e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 5e-1;
    let e_r = p * r * r + r + 1.0;
    // `shifted` holds n in its low mantissa bits: reading them there avoids a float-to-int
    // conversion, whose saturating semantics would keep the loop scalar.
    let n_bits = shifted.to_bits().wrapping_sub(ROUND.to_bits());
    e_r * f32::from_bits(n_bits.wrapping_add(127) << 23)
}

pub(super) fn forward(input: &[f32], weight: &[f32], bias: &[f32], s: &GroupNormShape) -> Vec<f32> {
    let group_len = s.group_len();
    let (out, _) = super::zeroed_chunks(input.len(), group_len, true, |index, out| {
        let input = &input[index * group_len..][..group_len];
        super::vectorized(
            #[inline(always)]
            || {
                let first_channel = s.first_channel(index);
                let (mean, rstd) = s.statistics(input);
                for (ci, (out, input)) in out.chunks_mut(s.plane).zip(input.chunks(s.plane)).enumerate() {
                    // y = (x - mean) * rstd * weight + bias = x * scale + shift
                    let w = f64::from(weight[first_channel + ci]);
                    let scale = (rstd * w) as f32;
                    let shift = (f64::from(bias[first_channel + ci]) - mean * rstd * w) as f32;
                    if s.swish {
                        for (o, &v) in out.iter_mut().zip(input) {
                            let y = v * scale + shift;
                            *o = y * sigmoid(y);
                        }
                    } else {
                        for (o, &v) in out.iter_mut().zip(input) {
                            *o = v * scale + shift;
                        }
                    }
                }
            },
        )
    });
    out
}

/// The gradients with respect to the input, the weight and the bias, given the output
/// gradient `grad`; the statistics are recomputed from the input.
pub(super) fn backward(
    input: &[f32],
    weight: &[f32],
    bias: &[f32],
    grad: &[f32],
    s: &GroupNormShape,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let per_group = s.channels / s.groups;
    let group_len = s.group_len();
    // Per chunk: the (weight, bias) gradient of each of its channels.
    let (grad_input, partials) = super::zeroed_chunks(input.len(), group_len, true, |index, grad_input| {
        let (input, grad) = (&input[index * group_len..][..group_len], &grad[index * group_len..][..group_len]);
        super::vectorized(
            #[inline(always)]
            || {
                let first_channel = s.first_channel(index);
                let (mean, rstd) = s.statistics(input);
                // xhat = (x - mean) * rstd = x * scale + shift
                let (scale, shift) = (rstd as f32, (-mean * rstd) as f32);
                // First pass: d loss / d xhat (kept in grad_input) and the sums the second needs.
                let (mut sum_dxhat, mut sum_dxhat_xhat) = (0f64, 0f64);
                let mut partial = Vec::with_capacity(per_group);
                for (ci, ((dst, input), grad)) in
                    grad_input.chunks_mut(s.plane).zip(input.chunks(s.plane)).zip(grad.chunks(s.plane)).enumerate()
                {
                    let (w, b) = (weight[first_channel + ci], bias[first_channel + ci]);
                    // The gradient reaching the affine output, and its products for the sums.
                    let step = |d: &mut f32, v: f32, g: f32| {
                        let xhat = v * scale + shift;
                        let dy = if s.swish {
                            let y = xhat * w + b;
                            let sig = sigmoid(y);
                            g * sig * (1.0 + y * (1.0 - sig))
                        } else {
                            g
                        };
                        *d = dy * w;
                        (dy * xhat, dy)
                    };
                    // LANES independent f32 sums per channel keep the loop vectorised; each adds
                    // plane / LANES values, and the channels' sums are added in f64.
                    let (mut dweight, mut dbias) = ([0f32; LANES], [0f32; LANES]);
                    let mut chunks =
                        dst.chunks_exact_mut(LANES).zip(input.chunks_exact(LANES)).zip(grad.chunks_exact(LANES));
                    for ((d, v), g) in chunks.by_ref() {
                        for lane in 0..LANES {
                            let (dw, db) = step(&mut d[lane], v[lane], g[lane]);
                            dweight[lane] += dw;
                            dbias[lane] += db;
                        }
                    }
                    let tail = input.len() / LANES * LANES;
                    for ((d, &v), &g) in dst[tail..].iter_mut().zip(&input[tail..]).zip(&grad[tail..]) {
                        let (dw, db) = step(d, v, g);
                        dweight[0] += dw;
                        dbias[0] += db;
                    }
                    let to_f64 = |lanes: [f32; LANES]| lanes.iter().map(|&v| f64::from(v)).sum::<f64>();
                    let (dweight, dbias) = (to_f64(dweight), to_f64(dbias));
                    // dxhat = dy * w, so its sums follow from the parameter gradients: no extra pass.
                    sum_dxhat += f64::from(w) * dbias;
                    sum_dxhat_xhat += f64::from(w) * dweight;
                    partial.push((dweight, dbias));
                }
                // Second pass: dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)).
                let n = input.len() as f64;
                let (mean_dxhat, mean_dxhat_xhat) = ((sum_dxhat / n) as f32, (sum_dxhat_xhat / n) as f32);
                for (d, &v) in grad_input.iter_mut().zip(input) {
                    *d = scale * (*d - mean_dxhat - (v * scale + shift) * mean_dxhat_xhat);
                }
                partial
            },
        )
    });
    let (mut grad_weight, mut grad_bias) = (vec![0f64; s.channels], vec![0f64; s.channels]);
    for (index, partial) in partials.iter().enumerate() {
        for (ci, (dw, db)) in partial.iter().enumerate() {
            grad_weight[s.first_channel(index) + ci] += dw;
            grad_bias[s.first_channel(index) + ci] += db;
        }
    }
    let to_f32 = |v: Vec<f64>| v.into_iter().map(|v| v as f32).collect();
    (grad_input, to_f32(grad_weight), to_f32(grad_bias))
}

#[cfg(test)]
mod tests {
    #[test]
    fn exp_is_within_two_ulp_of_libm() {
        let mut worst = 0f32;
        for i in -870_000..=880_000 {
            let x = i as f32 * 1e-4;
            let (fast, exact) = (super::exp(x), x.exp());
            worst = worst.max((fast - exact).abs() / exact);
        }
        assert!(worst < 2.5e-7, "max relative error {worst}");
        assert!(super::exp(-1e4) > 0.0 && super::exp(-1e4) < 1e-37 && super::exp(1e4).is_finite());
    }
}
