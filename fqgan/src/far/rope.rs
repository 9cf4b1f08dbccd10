//! 2D rotary position embedding with the official FAR table layout.
//!
//! The table has `cls_token_num + grid^2` rows of `head_dim / 2` (cos, sin) pairs. The class
//! rows are all zeros, not the identity rotation, so the class position's queries and keys
//! become exactly 0; this is what the official checkpoints were trained with. Grid row
//! `r * grid + c` rotates the first half of the pairs by frequencies of `r` and the second
//! half by frequencies of `c`. The factorized head reuses rows `0..k` for its slots.

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use crate::flex_kernels;

/// The rotary table, `[cls_token_num + grid^2, head_dim / 2, 2]` with `[..., 0] = cos`.
pub fn freqs_cis_2d<B: Backend>(
    grid: usize,
    head_dim: usize,
    base: f64,
    cls_token_num: usize,
    device: &B::Device,
) -> Tensor<B, 3> {
    let half = head_dim / 2;
    let quarter = half / 2;
    // Computed in f32 like the official table, so positions agree to the last bit where possible.
    let freqs: Vec<f32> = (0..quarter).map(|i| 1.0 / (base as f32).powf((2 * i) as f32 / half as f32)).collect();
    let rows = cls_token_num + grid * grid;
    let mut values = vec![0.0f32; rows * half * 2];
    for r in 0..grid {
        for c in 0..grid {
            let row = cls_token_num + r * grid + c;
            for (pair, angle) in
                freqs.iter().map(|f| r as f32 * f).chain(freqs.iter().map(|f| c as f32 * f)).enumerate()
            {
                let at = (row * half + pair) * 2;
                values[at] = angle.cos();
                values[at + 1] = angle.sin();
            }
        }
    }
    Tensor::from_data(TensorData::new(values, [rows, half, 2]), device)
}

/// Rotates interleaved pairs `(x[2i], x[2i+1])` of `x` `[B, S, H, head_dim]` by `freqs`
/// `[S, head_dim / 2, 2]` (complex multiplication, not rotate-half).
pub fn apply_rotary_emb<B: Backend>(x: Tensor<B, 4>, freqs: Tensor<B, 3>) -> Tensor<B, 4> {
    let x = match flex_kernels::rotary(x, &freqs) {
        Ok(rotated) => return rotated,
        Err(x) => x,
    };
    let [b, s, h, d] = x.dims();
    let pairs = x.reshape([b, s, h, d / 2, 2]);
    let x0 = pairs.clone().narrow(4, 0, 1);
    let x1 = pairs.narrow(4, 1, 1);
    let cos = freqs.clone().narrow(2, 0, 1).reshape([1, s, 1, d / 2, 1]);
    let sin = freqs.narrow(2, 1, 1).reshape([1, s, 1, d / 2, 1]);
    let out0 = x0.clone() * cos.clone() - x1.clone() * sin.clone();
    let out1 = x1 * cos + x0 * sin;
    Tensor::cat(vec![out0, out1], 4).reshape([b, s, h, d])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::Cpu;

    #[test]
    fn class_rows_are_zero_and_grid_rows_split_row_and_column() {
        let device = Default::default();
        let table: Vec<f32> = freqs_cis_2d::<Cpu>(3, 8, 10000.0, 1, &device).into_data().to_vec().unwrap();
        assert!(table[..8].iter().all(|&v| v == 0.0));
        // Row 1 is grid (0, 0): the identity rotation.
        assert_eq!(&table[8..16], &[1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0]);
        // Row 1 + 1*3 + 2 is grid (1, 2): pair 0 rotates by 1 * freq 1, pair 2 by 2 * freq 1.
        let row = &table[(1 + 3 + 2) * 8..(1 + 3 + 2 + 1) * 8];
        assert!((row[0] - 1f32.cos()).abs() < 1e-6 && (row[1] - 1f32.sin()).abs() < 1e-6);
        assert!((row[4] - 2f32.cos()).abs() < 1e-6 && (row[5] - 2f32.sin()).abs() < 1e-6);
    }

    #[test]
    fn rotation_is_complex_multiplication_of_interleaved_pairs() {
        let device = Default::default();
        let x = Tensor::<Cpu, 4>::from_data(TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0], [1, 1, 1, 4]), &device);
        let (c, s) = (0.6f32, 0.8f32);
        let freqs = Tensor::<Cpu, 3>::from_data(TensorData::new(vec![c, s, 0.0, 1.0], [1, 2, 2]), &device);
        let out: Vec<f32> = apply_rotary_emb(x, freqs).into_data().to_vec().unwrap();
        let expected = [1.0 * c - 2.0 * s, 2.0 * c + 1.0 * s, -4.0, 3.0];
        for (a, b) in out.iter().zip(expected) {
            assert!((a - b).abs() < 1e-6, "{out:?}");
        }
    }

    /// The CPU backend's kernel gives the generic ops' values (NdArray runs those).
    #[test]
    fn kernel_equals_the_generic_rotation() {
        use burn::tensor::Distribution;
        type Generic = crate::device::NdArray;
        let device = Default::default();
        let x = Tensor::<Cpu, 4>::random([2, 3, 2, 8], Distribution::Normal(0.0, 1.0), &device);
        let freqs = freqs_cis_2d::<Cpu>(2, 8, 10000.0, 1, &device).narrow(0, 1, 3);
        let fast: Vec<f32> = apply_rotary_emb(x.clone(), freqs.clone()).into_data().to_vec().unwrap();
        let nd = Default::default();
        let generic = apply_rotary_emb(
            Tensor::<Generic, 4>::from_data(x.into_data(), &nd),
            Tensor::<Generic, 3>::from_data(freqs.into_data(), &nd),
        );
        assert_eq!(fast, generic.into_data().to_vec::<f32>().unwrap());
    }
}
