//! The official teachers' `ScalingLayer`: images in [-1, 1] -> [0, 1] -> 224x224 -> normalised
//! with the teacher's mean/std.

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

/// Every image is resized to this side before a teacher sees it, whatever its own size.
pub const TEACHER_INPUT_SIZE: usize = 224;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScalingLayer {
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl ScalingLayer {
    /// The OpenAI CLIP statistics (`openai_mean` / `openai_std`), the official literals verbatim.
    #[allow(clippy::excessive_precision)]
    pub const OPENAI_CLIP: Self =
        Self { mean: [0.48145466, 0.4578275, 0.40821073], std: [0.26862954, 0.26130258, 0.27577711] };
    /// The ImageNet statistics DINOv2 was trained with (`dinov2_mean` / `dinov2_std`).
    pub const IMAGENET: Self = Self { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };

    /// images [B, 3, H, W] in [-1, 1] -> [B, 3, 224, 224] pixel values.
    pub fn forward<B: Backend>(&self, images: Tensor<B, 4>) -> Tensor<B, 4> {
        let device = images.device();
        let unit = images * 0.5 + 0.5;
        let resized = resize_nearest(unit, [TEACHER_INPUT_SIZE, TEACHER_INPUT_SIZE]);
        let mean = Tensor::<B, 1>::from_floats(self.mean, &device).reshape([1, 3, 1, 1]);
        let std = Tensor::<B, 1>::from_floats(self.std, &device).reshape([1, 3, 1, 1]);
        (resized - mean) / std
    }
}

/// `F.interpolate(x, size, mode="nearest")`: output pixel i reads input pixel
/// `floor(i * (in / out))`, computed in f32 as PyTorch does, so a downscale drops rows and
/// columns rather than averaging them.
pub fn resize_nearest<B: Backend>(x: Tensor<B, 4>, [out_h, out_w]: [usize; 2]) -> Tensor<B, 4> {
    let [_, _, in_h, in_w] = x.dims();
    let device = x.device();
    let rows = Tensor::<B, 1, Int>::from_data(nearest_indices(in_h, out_h), &device);
    let cols = Tensor::<B, 1, Int>::from_data(nearest_indices(in_w, out_w), &device);
    x.select(2, rows).select(3, cols)
}

fn nearest_indices(input: usize, output: usize) -> TensorData {
    let scale = input as f32 / output as f32;
    let indices: Vec<i64> = (0..output).map(|i| ((i as f32 * scale).floor() as usize).min(input - 1) as i64).collect();
    TensorData::new(indices, [output])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn indices(input: usize, output: usize) -> Vec<i64> {
        nearest_indices(input, output).to_vec().unwrap()
    }

    #[test]
    fn nearest_downscale_drops_rows_by_floor() {
        // 256 -> 224: scale 8/7, so every 8th source row is skipped.
        let idx = indices(256, 224);
        assert_eq!(&idx[..8], &[0, 1, 2, 3, 4, 5, 6, 8]);
        assert_eq!(idx[223], 254);
    }

    #[test]
    fn nearest_upscale_repeats_by_floor() {
        assert_eq!(indices(2, 5), vec![0, 0, 0, 1, 1]);
        assert_eq!(indices(4, 4), vec![0, 1, 2, 3]);
    }
}
