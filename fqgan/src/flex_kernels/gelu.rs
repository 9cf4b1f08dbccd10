//! Exact GELU, `x Φ(x) = x / 2 (1 + erf(x / √2))`, and its derivative, one parallel pass
//! each. burn's generic op calls libm's scalar `erff` per value on one thread: a quarter of
//! the adapters' time in a batch of 16 tile encodes.

use rayon::prelude::*;

use super::norm::exp;

/// Values per parallel task.
const CHUNK: usize = 1 << 14;

const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;

/// `1 / √(2π)`, the standard normal density at 0.
const NORMAL_DENSITY_AT_0: f32 = 0.398_942_3;

/// erf(z) and e^(-z²) (the derivative needs both), erf within 6e-7 of the exact value (the
/// formula's own 1.5e-7 plus f32 rounding; Abramowitz and Stegun 7.1.26, the formula
/// PyTorch's vectorised CPU `erf` evaluates):
/// `1 - t (a1 + t (a2 + ...)) e^(-z²)` with `t = 1 / (1 + p |z|)`, odd in z. Branch-free,
/// so that the loops calling it vectorise.
#[inline(always)]
fn erf_and_gaussian(z: f32) -> (f32, f32) {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [0.254_829_6, -0.284_496_74, 1.421_413_8, -1.453_152, 1.061_405_4];
    let a = z.abs();
    let t = 1.0 / (1.0 + P * a);
    let poly = A.iter().rev().fold(0.0, |acc, &coefficient| acc * t + coefficient) * t;
    let gaussian = exp(-a * a);
    ((1.0 - poly * gaussian).copysign(z), gaussian)
}

/// GELU of every value.
pub(super) fn forward(x: &[f32]) -> Vec<f32> {
    map(x, None, |x, _| {
        let (erf, _) = erf_and_gaussian(x * FRAC_1_SQRT_2);
        0.5 * x * (1.0 + erf)
    })
}

/// The input's gradient given the output's: `grad (Φ(x) + x φ(x))`.
pub(super) fn backward(x: &[f32], grad: &[f32]) -> Vec<f32> {
    map(x, Some(grad), |x, grad| {
        let (erf, gaussian) = erf_and_gaussian(x * FRAC_1_SQRT_2);
        grad * (0.5 * (1.0 + erf) + x * NORMAL_DENSITY_AT_0 * gaussian)
    })
}

/// `f(x[i], other[i])` (`other` 0 when absent) for every i, in parallel chunks compiled for
/// the widest vector unit.
fn map(x: &[f32], other: Option<&[f32]>, f: impl Fn(f32, f32) -> f32 + Sync) -> Vec<f32> {
    let mut out = Vec::<f32>::with_capacity(x.len());
    out.spare_capacity_mut()[..x.len()].par_chunks_mut(CHUNK).enumerate().for_each(|(index, out)| {
        let x = &x[index * CHUNK..][..out.len()];
        super::vectorized(
            #[inline(always)]
            || match other {
                Some(other) => {
                    let other = &other[index * CHUNK..][..out.len()];
                    out.iter_mut().zip(x).zip(other).for_each(|((o, &x), &y)| {
                        o.write(f(x, y));
                    })
                }
                None => out.iter_mut().zip(x).for_each(|(o, &x)| {
                    o.write(f(x, 0.0));
                }),
            },
        )
    });
    // SAFETY: the chunks cover all `x.len()` values, each written above.
    unsafe { out.set_len(x.len()) };
    out
}

#[cfg(test)]
mod tests {
    /// erf in f64: its Maclaurin series up to |z| = 3, beyond that 1 - erfc(z) by the
    /// asymptotic series (five terms: within 1e-8 there).
    fn erf_reference(z: f64) -> f64 {
        let a = z.abs();
        if a > 3.0 {
            let u = 1.0 / (2.0 * a * a);
            let series = 1.0 - u + 3.0 * u * u - 15.0 * u.powi(3) + 105.0 * u.powi(4);
            return z.signum() * (1.0 - (-a * a).exp() / (a * std::f64::consts::PI.sqrt()) * series);
        }
        let (mut term, mut sum, mut n) = (z, z, 0.0);
        while term.abs() > 1e-17 {
            n += 1.0;
            term *= -z * z / n;
            sum += term / (2.0 * n + 1.0);
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

    #[test]
    fn erf_is_within_its_bound_and_the_derivative_matches_finite_differences() {
        let mut worst = 0f64;
        for i in -60_000..=60_000 {
            let z = i as f32 * 1e-4;
            let (erf, _) = super::erf_and_gaussian(z);
            worst = worst.max((f64::from(erf) - erf_reference(f64::from(z))).abs());
        }
        assert!(worst < 6e-7, "max erf error {worst}");
        assert_eq!(super::erf_and_gaussian(-30.0).0, -1.0);
        let x: Vec<f32> = (-400..=400).map(|i| i as f32 * 0.01).collect();
        let ones = vec![1f32; x.len()];
        let derivative = super::backward(&x, &ones);
        let h = 1e-3f64;
        let gelu = |x: f64| 0.5 * x * (1.0 + erf_reference(x / std::f64::consts::SQRT_2));
        for (&x, &d) in x.iter().zip(&derivative) {
            let x = f64::from(x);
            let numeric = (gelu(x + h) - gelu(x - h)) / (2.0 * h);
            assert!((f64::from(d) - numeric).abs() < 2e-6, "GELU'({x}) = {d}, finite differences {numeric}");
        }
    }
}
