//! Hand-written kernels for the CPU backend's (Flex's) inference hot spots.
//!
//! burn's generic ops run a GroupNorm as six passes over strided views on one thread, which
//! cost more than the convolutions around it. Where the backend is plain Flex (inference on
//! the CPU), the layers call these kernels instead: one parallel pass per op, on contiguous
//! f32 data. Every other backend, and `Autodiff<Flex>` (training needs the graph), keeps the
//! generic path, which is also the reference the kernels are tested against.

use std::any::Any;

use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorPrimitive};
use burn_flex::{FlexTensor, Layout};
use rayon::prelude::*;

/// `x` as a contiguous f32 Flex tensor when `B` is Flex and `x` holds f32, else `x` unchanged.
fn to_flex<B: Backend, const D: usize>(x: Tensor<B, D>) -> Result<FlexTensor, Tensor<B, D>> {
    if !is_flex::<B>() {
        return Err(x);
    }
    let boxed: Box<dyn Any> = Box::new(x.into_primitive().tensor());
    let flex = *boxed.downcast::<FlexTensor>().expect("B::FloatTensorPrimitive is FlexTensor");
    if flex.dtype() == DType::F32 {
        Ok(flex.to_contiguous())
    } else {
        Err(from_flex(flex))
    }
}

fn from_flex<B: Backend, const D: usize>(x: FlexTensor) -> Tensor<B, D> {
    let boxed: Box<dyn Any> = Box::new(x);
    let primitive = *boxed.downcast::<B::FloatTensorPrimitive>().expect("B::FloatTensorPrimitive is FlexTensor");
    Tensor::from_primitive(TensorPrimitive::Float(primitive))
}

/// A contiguous f32 tensor of `shape` holding `values`, back on `B` (which is Flex).
fn f32_tensor<B: Backend, const D: usize>(values: Vec<f32>, shape: burn::tensor::Shape) -> Tensor<B, D> {
    from_flex(FlexTensor::new(burn::tensor::Bytes::from_elems(values), Layout::contiguous(shape), DType::F32))
}

fn is_flex<B: Backend>() -> bool {
    std::any::TypeId::of::<B::FloatTensorPrimitive>() == std::any::TypeId::of::<FlexTensor>()
}

fn f32_values<B: Backend>(t: Tensor<B, 1>) -> Vec<f32> {
    t.into_data().convert::<f32>().into_vec().expect("f32 values")
}

/// The sum of `f(v)` over `values` in f64, over 8 independent accumulators so that the loop
/// vectorises (one running sum is a serial chain of dependent additions).
fn lane_sum(values: &[f32], f: impl Fn(f32) -> f64) -> f64 {
    let mut lanes = [0f64; 8];
    let chunks = values.chunks_exact(8);
    let rest: f64 = chunks.remainder().iter().map(|&v| f(v)).sum();
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane += f(v);
        }
    }
    lanes.iter().sum::<f64>() + rest
}

/// `GroupNorm(groups, eps)` with per-channel `weight` and `bias` over NCHW `x`, followed by
/// swish when `swish` is set; `Err` returns `x` when `B` is not Flex (the caller runs the
/// generic ops).
pub(crate) fn group_norm<B: Backend>(
    x: Tensor<B, 4>,
    weight: &Tensor<B, 1>,
    bias: &Tensor<B, 1>,
    groups: usize,
    eps: f64,
    swish: bool,
) -> Result<Tensor<B, 4>, Tensor<B, 4>> {
    let x = to_flex(x)?;
    let dims = x.layout().shape();
    let (b, c, h, w) = (dims[0], dims[1], dims[2], dims[3]);
    let (weight, bias) = (f32_values(weight.clone()), f32_values(bias.clone()));
    let plane = h * w;
    let group_len = c / groups * plane;
    let input: &[f32] = x.storage();
    let mut out = vec![0f32; b * c * plane];
    out.par_chunks_mut(group_len).zip(input.par_chunks(group_len)).enumerate().for_each(|(index, (out, input))| {
        let first_channel = (index % groups) * (c / groups);
        let n = input.len() as f64;
        let mean = lane_sum(input, |v| f64::from(v)) / n;
        let var = lane_sum(input, |v| (f64::from(v) - mean).powi(2)) / n;
        let rstd = 1.0 / (var + eps).sqrt();
        for (ci, (out, input)) in out.chunks_mut(plane).zip(input.chunks(plane)).enumerate() {
            // y = (x - mean) * rstd * weight + bias = x * scale + shift
            let scale = (rstd * f64::from(weight[first_channel + ci])) as f32;
            let shift =
                (f64::from(bias[first_channel + ci]) - mean * rstd * f64::from(weight[first_channel + ci])) as f32;
            if swish {
                for (o, &v) in out.iter_mut().zip(input) {
                    let y = v * scale + shift;
                    *o = y / (1.0 + (-y).exp());
                }
            } else {
                for (o, &v) in out.iter_mut().zip(input) {
                    *o = v * scale + shift;
                }
            }
        }
    });
    let shape = x.layout().shape().clone();
    Ok(f32_tensor(out, shape))
}

/// Nearest-neighbour 2x upsampling of NCHW `x` (each pixel into a 2x2 block), one parallel
/// pass; burn's reshape-expand-reshape walks the expanded view element by element.
pub(crate) fn upsample_nearest2x<B: Backend>(x: Tensor<B, 4>) -> Result<Tensor<B, 4>, Tensor<B, 4>> {
    let x = to_flex(x)?;
    let dims = x.layout().shape();
    let (b, c, h, w) = (dims[0], dims[1], dims[2], dims[3]);
    let input: &[f32] = x.storage();
    let mut out = vec![0f32; b * c * 4 * h * w];
    out.par_chunks_mut(4 * h * w).zip(input.par_chunks(h * w)).for_each(|(out, plane)| {
        for (rows, src) in out.chunks_mut(4 * w).zip(plane.chunks(w)) {
            let (top, bottom) = rows.split_at_mut(2 * w);
            for (pair, &v) in top.chunks_mut(2).zip(src) {
                pair.fill(v);
            }
            bottom.copy_from_slice(top);
        }
    });
    let shape = burn::tensor::Shape::new([b, c, 2 * h, 2 * w]);
    Ok(f32_tensor(out, shape))
}

/// Writes `new` `[b, h, s, d]` into positions `start..start + s` of `buffer` `[b, h, capacity,
/// d]` in place, when `buffer` is a Flex tensor that nothing else holds. Flex's own
/// `slice_assign` keeps a second handle on the buffer while it writes, so it copies the whole
/// buffer every time: for KV caches, once per layer and token.
pub(crate) fn write_positions<B: Backend>(
    buffer: Tensor<B, 4>,
    start: usize,
    new: &Tensor<B, 4>,
) -> Result<Tensor<B, 4>, Tensor<B, 4>> {
    let mut flex = to_flex(buffer)?;
    let Ok(new) = to_flex(new.clone()) else {
        return Err(from_flex(flex));
    };
    let dims = flex.layout().shape();
    let (b, h, capacity, d) = (dims[0], dims[1], dims[2], dims[3]);
    let s = new.layout().shape()[2];
    let values: &[f32] = new.storage();
    let Some(dst) = flex.try_storage_mut::<f32>() else {
        return Err(from_flex(flex));
    };
    for (row, chunk) in values.chunks(s * d).enumerate().take(b * h) {
        let offset = (row * capacity + start) * d;
        dst[offset..offset + s * d].copy_from_slice(chunk);
    }
    Ok(from_flex(flex))
}

/// The geometry of one 2D convolution: stride, zero padding before the first row / column,
/// and the output size (padding after the last row / column follows from it).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConvGeometry {
    pub stride: usize,
    pub pad_top: usize,
    pub pad_left: usize,
    pub out_h: usize,
    pub out_w: usize,
}

/// Output pixels per im2col tile: large enough for gemm to run at speed, small enough that a
/// tile of 3x3 patches over 512 channels (4608 rows) stays near 20 MB.
const TILE_PIXELS: usize = 1024;

/// A raw pointer that rayon tasks may share; each task writes a disjoint part of the buffer.
#[derive(Clone, Copy)]
struct SharedMut(*mut f32);
unsafe impl Send for SharedMut {}
unsafe impl Sync for SharedMut {}

/// `conv2d` (groups 1, dilation 1) of NCHW `x` with PyTorch-layout `weight` [co, ci, kh, kw],
/// as im2col tiles of output rows times one gemm each, written straight into the NCHW
/// output. Unlike Flex's own convolution it reads and writes NCHW, so no layout conversions
/// run around the gemm, and the weight is used in place (its rows already are the patches'
/// order). `Err` returns `x` when `B` is not Flex or the tensors are not f32.
pub(crate) fn conv2d<B: Backend>(
    x: Tensor<B, 4>,
    weight: &Tensor<B, 4>,
    bias: Option<&Tensor<B, 1>>,
    geometry: ConvGeometry,
) -> Result<Tensor<B, 4>, Tensor<B, 4>> {
    let x = to_flex(x)?;
    let Ok(w) = to_flex(weight.clone()) else {
        return Err(from_flex(x));
    };
    let dims = x.layout().shape();
    let (batch, ci, h, wd) = (dims[0], dims[1], dims[2], dims[3]);
    let wdims = w.layout().shape();
    let (co, kh, kw) = (wdims[0], wdims[2], wdims[3]);
    let ConvGeometry { stride, pad_top, pad_left, out_h, out_w } = geometry;
    let (plane_in, plane_out) = (h * wd, out_h * out_w);
    let k = ci * kh * kw;
    let pointwise = kh == 1 && kw == 1 && stride == 1 && pad_top == 0 && pad_left == 0 && out_h == h && out_w == wd;
    let tile_rows = TILE_PIXELS.div_ceil(out_w.max(1)).clamp(1, out_h.max(1));
    let tiles_per_image = out_h.div_ceil(tile_rows);
    let jobs = batch * tiles_per_image;
    // Enough tiles: one thread per tile. Too few (small latent grids): gemm splits each one.
    let tile_parallel = jobs >= 2 * rayon::current_num_threads();
    let gemm_parallelism = if tile_parallel { gemm::Parallelism::None } else { gemm::Parallelism::Rayon(0) };

    let input: &[f32] = x.storage();
    let weight_data: &[f32] = w.storage();
    let mut out = vec![0f32; batch * co * plane_out];
    let out_ptr = SharedMut(out.as_mut_ptr());
    let run = |job: usize| {
        let (b, tile) = (job / tiles_per_image, job % tiles_per_image);
        let r0 = tile * tile_rows;
        let rows = tile_rows.min(out_h - r0);
        let pixels = rows * out_w;
        let image = &input[b * ci * plane_in..(b + 1) * ci * plane_in];
        let col;
        let (rhs, rhs_rs) = if pointwise {
            (image[r0 * wd..].as_ptr(), plane_in as isize)
        } else {
            col = im2col(image, [ci, h, wd], [kh, kw], geometry, r0, rows);
            (col.as_ptr(), pixels as isize)
        };
        let out_ptr = out_ptr;
        // SAFETY: dst spans rows `co` of stride plane_out and columns r0*out_w..+pixels of
        // image b: a region no other job writes; lhs, rhs and dst sizes match m, n, k.
        unsafe {
            let dst = out_ptr.0.add(b * co * plane_out + r0 * out_w);
            gemm::gemm(
                co,
                pixels,
                k,
                dst,
                1,
                plane_out as isize,
                false,
                weight_data.as_ptr(),
                1,
                k as isize,
                rhs,
                1,
                rhs_rs,
                0.0,
                1.0,
                false,
                false,
                false,
                gemm_parallelism,
            );
        }
    };
    if tile_parallel {
        (0..jobs).into_par_iter().for_each(run);
    } else {
        (0..jobs).for_each(run);
    }
    if let Some(bias) = bias {
        let bias = f32_values(bias.clone());
        out.par_chunks_mut(plane_out).enumerate().for_each(|(i, plane)| {
            let value = bias[i % co];
            plane.iter_mut().for_each(|v| *v += value);
        });
    }
    let shape = burn::tensor::Shape::new([batch, co, out_h, out_w]);
    Ok(f32_tensor(out, shape))
}

/// The patches of output rows `r0..r0 + rows` of one image `[ci, h, w]`: a `[ci * kh * kw,
/// rows * out_w]` matrix, row `(c, i, j)` holding input pixel `(r * stride + i - pad_top,
/// col * stride + j - pad_left)` of channel c for every output pixel, zero outside.
fn im2col(
    image: &[f32],
    [ci, h, w]: [usize; 3],
    [kh, kw]: [usize; 2],
    g: ConvGeometry,
    r0: usize,
    rows: usize,
) -> Vec<f32> {
    let pixels = rows * g.out_w;
    let mut col = vec![0f32; ci * kh * kw * pixels];
    for (patch_row, dst) in col.chunks_mut(pixels).enumerate() {
        let (c, i, j) = (patch_row / (kh * kw), patch_row / kw % kh, patch_row % kw);
        // Output columns whose input column `oc * stride + j - pad_left` lies in 0..w.
        let first = g.pad_left.saturating_sub(j).div_ceil(g.stride);
        let end = if w + g.pad_left > j { ((w + g.pad_left - j - 1) / g.stride + 1).min(g.out_w) } else { 0 };
        for r in 0..rows {
            let Some(ih) = ((r0 + r) * g.stride + i).checked_sub(g.pad_top).filter(|&ih| ih < h) else {
                continue;
            };
            let src = &image[(c * h + ih) * w..(c * h + ih + 1) * w];
            let dst = &mut dst[r * g.out_w..(r + 1) * g.out_w];
            if first >= end {
                continue;
            }
            let start = first * g.stride + j - g.pad_left;
            if g.stride == 1 {
                dst[first..end].copy_from_slice(&src[start..start + (end - first)]);
            } else {
                for (d, s) in dst[first..end].iter_mut().zip(src[start..].iter().step_by(g.stride)) {
                    *d = *s;
                }
            }
        }
    }
    col
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Distribution, Tensor};

    use crate::device::{Cpu, NdArray};
    use crate::layers::GroupNorm;

    #[test]
    fn group_norm_kernel_matches_the_generic_ops() {
        let device = Default::default();
        let x = Tensor::<Cpu, 4>::random([2, 8, 5, 3], Distribution::Normal(0.5, 2.0), &device);
        let mut norm = GroupNorm::<Cpu>::new(4, 8, 1e-6, &device);
        norm.weight = burn::module::Param::from_tensor(Tensor::random([8], Distribution::Normal(1.0, 0.5), &device));
        norm.bias = burn::module::Param::from_tensor(Tensor::random([8], Distribution::Normal(0.0, 0.5), &device));
        // The same module on NdArray takes the generic path.
        let to_nd = |t: Tensor<Cpu, 1>| Tensor::<NdArray, 1>::from_data(t.into_data(), &Default::default());
        let mut reference = GroupNorm::<NdArray>::new(4, 8, 1e-6, &Default::default());
        reference.weight = burn::module::Param::from_tensor(to_nd(norm.weight.val()));
        reference.bias = burn::module::Param::from_tensor(to_nd(norm.bias.val()));
        let x_nd = Tensor::<NdArray, 4>::from_data(x.to_data(), &Default::default());
        for swish in [false, true] {
            let (fast, generic) = if swish {
                (norm.forward_swish(x.clone()), reference.forward_swish(x_nd.clone()))
            } else {
                (norm.forward(x.clone()), reference.forward(x_nd.clone()))
            };
            let fast: Vec<f32> = fast.into_data().into_vec().unwrap();
            let generic: Vec<f32> = generic.into_data().into_vec().unwrap();
            assert!(fast.iter().all(|v| v.is_finite()), "swish {swish}: non-finite output");
            let worst = fast.iter().zip(&generic).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(worst < 1e-5, "swish {swish}: max difference {worst}");
        }
    }

    #[test]
    fn upsample_kernel_matches_the_generic_ops() {
        let device = Default::default();
        let x = Tensor::<Cpu, 4>::random([2, 3, 4, 5], Distribution::Normal(0.0, 1.0), &device);
        let fast = super::upsample_nearest2x(x.clone()).ok().expect("Flex takes the kernel");
        let generic = x.reshape([2, 3, 4, 1, 5, 1]).expand([2, 3, 4, 2, 5, 2]).reshape([2, 3, 8, 10]);
        assert_eq!(fast.into_data(), generic.into_data());
    }

    /// Every geometry the tokenizer uses (3x3 same, 3x3 stride 2 with the Downsample padding,
    /// 1x1) plus odd sizes and strides, against burn's generic conv on NdArray.
    #[test]
    fn conv_kernel_matches_the_generic_conv() {
        use burn::tensor::module::conv2d as generic_conv2d;
        use burn::tensor::ops::{ConvOptions, PadMode};

        use super::{conv2d, ConvGeometry};

        let device = Default::default();
        let nd = Default::default();
        let to_nd = |t: Tensor<Cpu, 4>| Tensor::<NdArray, 4>::from_data(t.into_data(), &nd);
        // (batch, ci, co, h, w, kernel, stride, padding before, after)
        let cases = [
            (2, 5, 7, 9, 11, 3, 1, 1, 1),
            (1, 4, 6, 8, 8, 3, 2, 0, 1),
            (3, 6, 4, 5, 7, 1, 1, 0, 0),
            (1, 3, 8, 40, 40, 3, 1, 1, 1),
            (2, 2, 3, 10, 13, 4, 3, 2, 2),
        ];
        for (batch, ci, co, h, w, kernel, stride, before, after) in cases {
            let x = Tensor::<Cpu, 4>::random([batch, ci, h, w], Distribution::Normal(0.0, 1.0), &device);
            let weight = Tensor::<Cpu, 4>::random([co, ci, kernel, kernel], Distribution::Normal(0.0, 1.0), &device);
            let bias = Tensor::<Cpu, 1>::random([co], Distribution::Normal(0.0, 1.0), &device);
            let out = |size: usize| (size + before + after - kernel) / stride + 1;
            let geometry = ConvGeometry { stride, pad_top: before, pad_left: before, out_h: out(h), out_w: out(w) };
            let fast = conv2d(x.clone(), &weight, Some(&bias), geometry).ok().expect("Flex takes the kernel");
            let padded = to_nd(x).pad((before, after, before, after), PadMode::Constant(0.0));
            let options = ConvOptions::new([stride; 2], [0, 0], [1, 1], 1);
            let bias_nd = Tensor::<NdArray, 1>::from_data(bias.into_data(), &nd);
            let generic = generic_conv2d(padded, to_nd(weight), Some(bias_nd), options);
            assert_eq!(fast.dims(), generic.dims());
            let fast: Vec<f32> = fast.into_data().into_vec().unwrap();
            let generic: Vec<f32> = generic.into_data().into_vec().unwrap();
            assert!(fast.iter().all(|v| v.is_finite()));
            let worst = fast.iter().zip(&generic).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(worst < 1e-4, "case {:?}: max difference {worst}", (batch, ci, co, h, w, kernel, stride));
        }
    }
}
