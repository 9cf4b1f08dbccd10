//! Images of any size through tiles, the model and `.fqt` files, on a small random model:
//! odd sizes, a 1024x1024 texture, lossless alpha, and the seam measurement.

use std::path::PathBuf;

use fqgan::burn::tensor::backend::Backend;
use fqgan::codec::AssetCodec;
use fqgan::device::Cpu;
use fqgan::image::{read_rgb, DynamicImage, RgbImage, RgbaImage};
use fqgan::metrics::psnr;
use fqgan::tiling::TileLayout;
use fqgan::tokens::{Coding, TokenFile};
use fqgan::{Tokenizer, TokenizerConfig};

fn model(seed: u64) -> Tokenizer<Cpu> {
    let device = Default::default();
    Cpu::seed(&device, seed);
    Tokenizer::new(&TokenizerConfig::preset("small-dual-ds8").unwrap(), &device).unwrap()
}

fn sample_image(name: &str) -> RgbImage {
    read_rgb(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/images").join(name)).unwrap()
}

/// `sample` stretched to `w` x `h` by tiling it (keeps real texture statistics at any size).
fn texture(w: u32, h: u32) -> RgbImage {
    let brick = sample_image("brick.png");
    RgbImage::from_fn(w, h, |x, y| *brick.get_pixel(x % 256, y % 256))
}

/// Compresses, writes, reads back and decodes; checks the file round trip on the way.
fn round_trip(codec: &AssetCodec<'_, Cpu>, image: &DynamicImage, overlap: u32) -> (TokenFile, DynamicImage) {
    let file = codec.compress(image, overlap, Coding::Entropy).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.fqt");
    file.write(&path).unwrap();
    let read = TokenFile::read(&path).unwrap();
    assert_eq!(read, file);
    let decoded = codec.decompress(&read, &path).unwrap();
    assert_eq!((decoded.width(), decoded.height()), (image.width(), image.height()));
    (file, decoded)
}

#[test]
fn odd_sizes_round_trip_through_tiles() {
    let model = model(3);
    let codec = AssetCodec::new(&model);
    let image = texture(300, 171);
    let (file, decoded) = round_trip(&codec, &DynamicImage::ImageRgb8(image.clone()), codec.default_overlap());
    assert_eq!((file.layout.tiles_x(), file.layout.tiles_y()), (6, 3));
    assert!(matches!(decoded, DynamicImage::ImageRgb8(_)));

    // Every tile's tokens are the model's tokens for exactly that window of the image.
    let layout = file.layout;
    let last = layout.count() - 1;
    let (x0, y0) = layout.origin(last);
    let window = image::imageops::crop_imm(&image, x0, y0, 64, 64).to_image();
    let ids = model.encode(fqgan::image::images_to_tensor::<Cpu>(&[window], &model.device()).unwrap()).unwrap();
    let ids: Vec<u32> = ids.into_data().convert::<i64>().iter::<i64>().map(|v| v as u32).collect();
    assert_eq!(&file.tokens[last * ids.len()..], &ids[..]);

    // A random model reconstructs poorly, but the image must be the input's, not noise.
    let noise = RgbImage::from_fn(300, 171, |x, y| image::Rgb([(x * 7 % 256) as u8, (y * 13 % 256) as u8, ((x + y) % 256) as u8]));
    let decoded = decoded.to_rgb8();
    assert!(psnr(&image, &decoded) > psnr(&noise, &decoded) + 3.0, "{} vs {}", psnr(&image, &decoded), psnr(&noise, &decoded));
}

#[test]
fn a_1024_texture_round_trips() {
    let model = model(4);
    let codec = AssetCodec::new(&model);
    let image = texture(1024, 1024);
    let (file, decoded) = round_trip(&codec, &DynamicImage::ImageRgb8(image.clone()), codec.default_overlap());
    assert_eq!(file.layout.count(), 19 * 19);
    let bytes = file.to_bytes().unwrap().len();
    println!("1024x1024: {} tiles, {bytes} bytes, {:.4} bpp, psnr {:.2} dB", file.layout.count(), bytes as f64 * 8.0 / (1024.0 * 1024.0), psnr(&image, &decoded.to_rgb8()));
    assert!(bytes * 8 < file.packed_token_bits() as usize, "entropy coding must beat bit-packing");
}

#[test]
fn alpha_survives_losslessly() {
    let model = model(5);
    let codec = AssetCodec::new(&model);
    let rgb = texture(90, 70);
    let rgba = RgbaImage::from_fn(90, 70, |x, y| {
        let [r, g, b] = rgb.get_pixel(x, y).0;
        let alpha = if (x as i32 - 45).pow(2) + (y as i32 - 35).pow(2) < 900 { 255 } else { (x * 2) as u8 };
        image::Rgba([r, g, b, alpha])
    });
    let (file, decoded) = round_trip(&codec, &DynamicImage::ImageRgba8(rgba.clone()), codec.default_overlap());
    assert!(file.alpha.is_some());
    let DynamicImage::ImageRgba8(decoded) = decoded else { panic!("RGBA in, RGBA out") };
    assert!(decoded.pixels().zip(rgba.pixels()).all(|(a, b)| a[3] == b[3]), "alpha must be exact");
    // RGB goes through the model exactly as it would without alpha.
    let (_, rgb_only) = round_trip(&codec, &DynamicImage::ImageRgb8(rgb), codec.default_overlap());
    assert!(decoded.pixels().zip(rgb_only.to_rgb8().pixels()).all(|(a, b)| a.0[..3] == b.0));
}

/// Mean absolute error of `decoded` against `original` in a band of 2 px each side of every
/// tile edge inside the image, and in tile interiors (pixels at least a quarter tile from
/// any edge).
fn band_and_interior_error(original: &RgbImage, decoded: &RgbImage, layout: &TileLayout) -> (f64, f64) {
    let edges = |side: u32, along_x: bool| -> Vec<u32> {
        let mut edges: Vec<u32> = (0..layout.count())
            .map(|i| if along_x { layout.origin(i).0 } else { layout.origin(i).1 })
            .flat_map(|o| [o, o + layout.tile])
            .filter(|&e| e > 0 && e < side)
            .collect();
        edges.sort();
        edges.dedup();
        edges
    };
    let (ex, ey) = (edges(layout.width, true), edges(layout.height, false));
    let distance = |v: u32, edges: &[u32]| edges.iter().map(|&e| (v as i64 - e as i64).unsigned_abs()).min().unwrap_or(u64::MAX);
    let (mut band, mut interior) = ((0.0, 0usize), (0.0, 0usize));
    for (x, y, p) in decoded.enumerate_pixels() {
        let error = p.0.iter().zip(original.get_pixel(x, y).0).map(|(&a, b)| (a as f64 - b as f64).abs()).sum::<f64>() / 3.0;
        let d = distance(x, &ex).min(distance(y, &ey));
        if d <= 2 {
            band = (band.0 + error, band.1 + 1);
        } else if d >= u64::from(layout.tile / 4) {
            interior = (interior.0 + error, interior.1 + 1);
        }
    }
    (band.0 / band.1 as f64, interior.0 / interior.1 as f64)
}

#[test]
fn overlapping_tiles_hide_the_seams() {
    let model = model(6);
    let codec = AssetCodec::new(&model);
    let image = texture(240, 200);
    let ratio = |overlap| {
        let (file, decoded) = round_trip(&codec, &DynamicImage::ImageRgb8(image.clone()), overlap);
        let (band, interior) = band_and_interior_error(&image, &decoded.to_rgb8(), &file.layout);
        println!("overlap {overlap:2}: border band error {band:.2}, interior error {interior:.2}, ratio {:.3}", band / interior);
        band / interior
    };
    let (hard, blended) = (ratio(0), ratio(codec.default_overlap()));
    assert!(blended < hard, "blending must lower the error at tile borders: {blended:.3} vs {hard:.3}");
    assert!(blended < 1.1, "border band error must be within 10% of the interior error, is {blended:.3}x");
}
