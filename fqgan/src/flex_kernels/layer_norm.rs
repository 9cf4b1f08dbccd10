//! LayerNorm over the last dimension, forward and backward, rows in parallel chunks. burn's
//! generic ops run it as six broadcasting passes on one thread (and record as many
//! backward steps).

/// Rows per parallel task, at least: enough work to outweigh the task.
const MIN_CHUNK_VALUES: usize = 1 << 13;

/// `[rows, width]` values normalised per row with per-column `weight` and `bias`.
#[derive(Clone, Copy, Debug)]
pub(super) struct LayerNormShape {
    pub width: usize,
    pub eps: f64,
}

impl LayerNormShape {
    fn rows_per_chunk(&self) -> usize {
        MIN_CHUNK_VALUES.div_ceil(self.width).max(1)
    }

    /// Mean and 1 / standard deviation of one row (two passes, as the generic ops do).
    #[inline(always)]
    fn statistics(&self, row: &[f32]) -> (f32, f32) {
        let n = row.len() as f32;
        let mean = sum(row, row, |x, _| x) / n;
        let var = sum(row, row, |x, _| (x - mean) * (x - mean)) / n;
        (mean, 1.0 / (f64::from(var) + self.eps).sqrt() as f32)
    }
}

/// The sum of `f(a[i], b[i])` over 16 independent lanes, so that the loop vectorises.
#[inline(always)]
fn sum(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f32 {
    const LANES: usize = 16;
    let mut lanes = [0f32; LANES];
    let (chunks_a, chunks_b) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let rest: f32 = chunks_a.remainder().iter().zip(chunks_b.remainder()).map(|(&x, &y)| f(x, y)).sum();
    for (x, y) in chunks_a.zip(chunks_b) {
        for lane in 0..LANES {
            lanes[lane] += f(x[lane], y[lane]);
        }
    }
    lanes.iter().sum::<f32>() + rest
}

pub(super) fn forward(input: &[f32], weight: &[f32], bias: &[f32], s: &LayerNormShape) -> Vec<f32> {
    let chunk = s.rows_per_chunk() * s.width;
    let (out, _) = super::zeroed_chunks(input.len(), chunk, true, |index, out| {
        let input = &input[index * chunk..][..out.len()];
        super::vectorized(
            #[inline(always)]
            || {
                for (out, row) in out.chunks_exact_mut(s.width).zip(input.chunks_exact(s.width)) {
                    let (mean, rstd) = s.statistics(row);
                    for (((o, &x), &w), &b) in out.iter_mut().zip(row).zip(weight).zip(bias) {
                        *o = (x - mean) * rstd * w + b;
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
    grad: &[f32],
    s: &LayerNormShape,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let chunk = s.rows_per_chunk() * s.width;
    // Per chunk: its rows' (weight, bias) gradients summed.
    let (grad_input, partials) = super::zeroed_chunks(input.len(), chunk, true, |index, grad_input| {
        let (input, grad) = (&input[index * chunk..][..grad_input.len()], &grad[index * chunk..][..grad_input.len()]);
        super::vectorized(
            #[inline(always)]
            || {
                let (mut dweight, mut dbias) = (vec![0f32; s.width], vec![0f32; s.width]);
                let rows = grad_input
                    .chunks_exact_mut(s.width)
                    .zip(input.chunks_exact(s.width))
                    .zip(grad.chunks_exact(s.width));
                for ((dx, row), dy) in rows {
                    let (mean, rstd) = s.statistics(row);
                    // dxhat = dy * weight kept in dx; dx = rstd (dxhat - mean(dxhat) - xhat mean(dxhat xhat)).
                    for ((((d, &x), &g), &w), (dw, db)) in
                        dx.iter_mut().zip(row).zip(dy).zip(weight).zip(dweight.iter_mut().zip(dbias.iter_mut()))
                    {
                        let xhat = (x - mean) * rstd;
                        *d = g * w;
                        *dw += g * xhat;
                        *db += g;
                    }
                    let n = s.width as f32;
                    let mean_dxhat = sum(dx, dx, |d, _| d) / n;
                    let mean_dxhat_xhat = sum(dx, row, |d, x| d * (x - mean) * rstd) / n;
                    for (d, &x) in dx.iter_mut().zip(row) {
                        *d = rstd * (*d - mean_dxhat - (x - mean) * rstd * mean_dxhat_xhat);
                    }
                }
                (dweight, dbias)
            },
        )
    });
    let (mut grad_weight, mut grad_bias) = (vec![0f32; s.width], vec![0f32; s.width]);
    for (dweight, dbias) in partials {
        grad_weight.iter_mut().zip(dweight).for_each(|(a, b)| *a += b);
        grad_bias.iter_mut().zip(dbias).for_each(|(a, b)| *a += b);
    }
    (grad_input, grad_weight, grad_bias)
}
