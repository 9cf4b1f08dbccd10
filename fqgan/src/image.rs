//! Image files <-> tensors in [-1, 1] (NCHW, RGB), with errors that name the file.

use std::path::Path;

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
pub use image::{DynamicImage, RgbImage, RgbaImage};

use crate::device::read_back;
use crate::error::{Error, Result};

/// Reads any format the `image` crate knows (PNG, JPEG, BMP, TGA, WebP, ...) as RGB8.
pub fn read_rgb(path: impl AsRef<Path>) -> Result<RgbImage> {
    Ok(read_image(path)?.to_rgb8())
}

/// The largest width or height decoded: a few KB of PNG can declare a 100000 x 100000 image.
pub const MAX_IMAGE_SIDE: u32 = 16384;
/// The most memory one decode may allocate.
pub const MAX_DECODE_BYTES: u64 = 2 << 30;

/// Reads an image as decoded, keeping its alpha channel and bit depth.
pub fn read_image(path: impl AsRef<Path>) -> Result<DynamicImage> {
    let path = path.as_ref();
    let reader = image::ImageReader::open(path).map_err(|e| Error::io(path, e))?;
    decode(reader, path)
}

/// Decodes an image held in memory (an archive entry); `name` names it in errors.
pub fn decode_bytes(bytes: &[u8], name: &Path) -> Result<DynamicImage> {
    decode(image::ImageReader::new(std::io::Cursor::new(bytes)), name)
}

/// Decodes within [`MAX_IMAGE_SIDE`] and [`MAX_DECODE_BYTES`]: the header's size is checked
/// before the pixels are allocated.
fn decode<R: std::io::BufRead + std::io::Seek>(reader: image::ImageReader<R>, name: &Path) -> Result<DynamicImage> {
    let mut reader = reader.with_guessed_format().map_err(|e| Error::io(name, e))?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    reader.decode().map_err(|e| {
        let message = match e {
            image::ImageError::Limits(_) => format!(
                "cannot decode image: larger than the decoder's limits ({MAX_IMAGE_SIDE} pixels a side, \
                 {} MiB): {e}",
                MAX_DECODE_BYTES >> 20
            ),
            e => format!("cannot decode image: {e}"),
        };
        Error::Image { path: name.into(), message }
    })
}

/// Reads an image that must be `size` x `size`, or resizes it to that when `resize` is set.
pub fn read_rgb_sized(path: impl AsRef<Path>, size: u32, resize: bool) -> Result<RgbImage> {
    let path = path.as_ref();
    let image = read_rgb(path)?;
    if image.dimensions() == (size, size) {
        return Ok(image);
    }
    if resize {
        return Ok(image::imageops::resize(&image, size, size, image::imageops::FilterType::Lanczos3));
    }
    Err(Error::Image {
        path: path.into(),
        message: format!(
            "image is {}x{}; the model takes {size}x{size} (resize it, or pass --resize)",
            image.width(),
            image.height()
        ),
    })
}

/// Same-sized RGB images -> [B, 3, H, W] in [-1, 1].
pub fn images_to_tensor<B: Backend>(images: &[RgbImage], device: &B::Device) -> Result<Tensor<B, 4>> {
    let first = images.first().ok_or_else(|| Error::Input("no images given".into()))?;
    let (w, h) = first.dimensions();
    let mut values = Vec::with_capacity(images.len() * 3 * (w * h) as usize);
    for (i, image) in images.iter().enumerate() {
        if image.dimensions() != (w, h) {
            return Err(Error::Input(format!(
                "image {i} is {}x{}, image 0 is {w}x{h}: a batch must be one size",
                image.width(),
                image.height()
            )));
        }
        values.extend(rgb_planes(image));
    }
    let data = TensorData::new(values, [images.len(), 3, h as usize, w as usize]);
    Ok(Tensor::from_data(data, device))
}

/// [B, 3, H, W] in [-1, 1] -> RGB8 images (clamped, rounded to nearest).
pub fn tensor_to_images<B: Backend>(tensor: Tensor<B, 4>) -> Vec<RgbImage> {
    let [b, c, h, w] = tensor.dims();
    assert_eq!(c, 3, "tensor_to_images takes RGB tensors");
    let values: Vec<f32> = read_back(tensor).convert::<f32>().to_vec().expect("f32 data");
    let plane = h * w;
    (0..b).map(|i| rgb_from_planes(&values[i * 3 * plane..(i + 1) * 3 * plane], w as u32, h as u32)).collect()
}

/// RGB8 -> three planes (R, G, B) of row-major values in [-1, 1].
pub fn rgb_planes(image: &RgbImage) -> Vec<f32> {
    (0..3).flat_map(|channel| image.pixels().map(move |p| p[channel] as f32 / 127.5 - 1.0)).collect()
}

/// Three planes in [-1, 1] -> RGB8 (clamped, rounded to nearest).
pub fn rgb_from_planes(planes: &[f32], width: u32, height: u32) -> RgbImage {
    let plane = width as usize * height as usize;
    assert_eq!(planes.len(), 3 * plane, "rgb_from_planes: three planes of {width}x{height}");
    RgbImage::from_fn(width, height, |x, y| {
        let at = y as usize * width as usize + x as usize;
        image::Rgb(std::array::from_fn(|ch| to_u8(planes[ch * plane + at])))
    })
}

fn to_u8(x: f32) -> u8 {
    (127.5 * x + 128.0).clamp(0.0, 255.0) as u8
}

/// Writes an image in the format its extension names, atomically.
pub fn save_rgb(path: impl AsRef<Path>, image: &RgbImage) -> Result<()> {
    save_image(path, &DynamicImage::ImageRgb8(image.clone()))
}

/// Writes any image (RGB or RGBA) in the format its extension names, atomically.
pub fn save_image(path: impl AsRef<Path>, image: &DynamicImage) -> Result<()> {
    let path = path.as_ref();
    let format = image::ImageFormat::from_path(path)
        .map_err(|e| Error::Image { path: path.into(), message: format!("unknown output format: {e}") })?;
    let mut bytes = std::io::Cursor::new(Vec::new());
    image
        .write_to(&mut bytes, format)
        .map_err(|e| Error::Image { path: path.into(), message: format!("cannot encode image: {e}") })?;
    crate::weights::write_atomic(path, bytes.get_ref())
}

/// Same-sized images tiled row by row into one image, `columns` wide, with 2 px gaps.
pub fn image_grid(images: &[RgbImage], columns: usize) -> RgbImage {
    const GAP: u32 = 2;
    let (w, h) = images.first().map_or((0, 0), |i| i.dimensions());
    let columns = columns.clamp(1, images.len().max(1));
    let rows = images.len().div_ceil(columns);
    let width = columns as u32 * (w + GAP) - GAP;
    let height = (rows as u32 * (h + GAP)).saturating_sub(GAP);
    let mut grid = RgbImage::from_pixel(width, height, image::Rgb([255, 255, 255]));
    for (i, image) in images.iter().enumerate() {
        let (x, y) = ((i % columns) as u32 * (w + GAP), (i / columns) as u32 * (h + GAP));
        image::imageops::replace(&mut grid, image, x as i64, y as i64);
    }
    grid
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    #[test]
    fn pixels_survive_the_round_trip() {
        let image =
            RgbImage::from_fn(5, 3, |x, y| image::Rgb([(x * 50) as u8, (y * 80) as u8, 255 - (x * y * 10) as u8]));
        let tensor = images_to_tensor::<Flex>(std::slice::from_ref(&image), &Default::default()).unwrap();
        assert_eq!(tensor.dims(), [1, 3, 3, 5]);
        assert_eq!(tensor_to_images(tensor)[0], image);
    }

    #[test]
    fn grids_tile_row_by_row_with_gaps() {
        let tile = |v| RgbImage::from_pixel(4, 3, image::Rgb([v, v, v]));
        let grid = image_grid(&[tile(10), tile(20), tile(30)], 2);
        assert_eq!(grid.dimensions(), (4 + 2 + 4, 3 + 2 + 3));
        assert_eq!((grid[(0, 0)][0], grid[(6, 0)][0], grid[(0, 5)][0]), (10, 20, 30));
        assert_eq!((grid[(4, 0)][0], grid[(6, 5)][0]), (255, 255));
    }

    #[test]
    fn errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("broken.png");
        std::fs::write(&bad, b"not a png").unwrap();
        let err = read_rgb(&bad).unwrap_err().to_string();
        assert!(err.contains("broken.png"), "{err}");
        let small = dir.path().join("small.png");
        save_rgb(&small, &RgbImage::new(8, 4)).unwrap();
        let err = read_rgb_sized(&small, 16, false).unwrap_err().to_string();
        assert!(err.contains("small.png") && err.contains("8x4") && err.contains("16x16"), "{err}");
        assert_eq!(read_rgb_sized(&small, 16, true).unwrap().dimensions(), (16, 16));
    }
}
