//! Images of any size through tiles, the model and `.fqt` files: odd sizes, a 1024x1024
//! texture, lossless alpha, and the seam measurement, on the built-in (trained) tokenizer where
//! quality or seams are judged and on a small random model elsewhere.

use std::path::PathBuf;

use fqgan::codec::AssetCodec;
use fqgan::device::Cpu;
use fqgan::image::{read_rgb, DynamicImage, RgbImage, RgbaImage};
use fqgan::metrics::psnr;
use fqgan::tiling::{Blender, TileLayout};
use fqgan::tokens::{Coding, TokenFile};
use fqgan::{Tokenizer, TokenizerConfig};

fn model(seed: u64) -> Tokenizer<Cpu> {
    let device = Default::default();
    fqgan::device::seeded::<Cpu, _>(&device, seed, || {
        Tokenizer::new(&TokenizerConfig::preset("small-dual-ds8").unwrap(), &device).unwrap()
    })
}

/// The built-in tokenizer, trained on game textures: its tiles carry real per-tile errors.
fn trained() -> Tokenizer<Cpu> {
    fqgan::builtin::tokenizer(fqgan::tokenizer::LoadPurpose::Inference, &Default::default()).unwrap()
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
    let windows: Vec<RgbImage> = (0..layout.count())
        .map(|index| {
            let (x0, y0) = layout.origin(index);
            image::imageops::crop_imm(&image, x0, y0, 64, 64).to_image()
        })
        .collect();
    let ids = model.encode(fqgan::image::images_to_tensor::<Cpu>(&windows, &model.device()).unwrap());
    let ids: Vec<u32> = ids.into_data().convert::<i64>().iter::<i64>().map(|v| v as u32).collect();
    assert_eq!(file.tokens.len(), ids.len());
    let per_tile = file.tokens_per_tile();
    for index in 0..layout.count() {
        let tile = index * per_tile..(index + 1) * per_tile;
        assert_eq!(file.tokens[tile.clone()], ids[tile], "tile {index} at {:?}", layout.origin(index));
    }

    // A random model reconstructs poorly, but the image must be the input's, not noise.
    let noise = RgbImage::from_fn(300, 171, |x, y| {
        image::Rgb([(x * 7 % 256) as u8, (y * 13 % 256) as u8, ((x + y) % 256) as u8])
    });
    let decoded = decoded.to_rgb8();
    assert!(
        psnr(&image, &decoded) > psnr(&noise, &decoded) + 3.0,
        "{} vs {}",
        psnr(&image, &decoded),
        psnr(&noise, &decoded)
    );
}

#[test]
fn a_1024_texture_round_trips() {
    let model = trained();
    let codec = AssetCodec::new(&model);
    let image = texture(1024, 1024);
    let (file, decoded) = round_trip(&codec, &DynamicImage::ImageRgb8(image.clone()), codec.default_overlap());
    assert_eq!(file.layout.count(), 19 * 19);
    let bytes = file.to_bytes().unwrap().len();
    println!(
        "1024x1024: {} tiles, {bytes} bytes, {:.4} bpp, psnr {:.2} dB",
        file.layout.count(),
        bytes as f64 * 8.0 / (1024.0 * 1024.0),
        psnr(&image, &decoded.to_rgb8())
    );
    assert!(bytes * 8 < file.packed_token_bits() as usize, "entropy coding must beat bit-packing");
    // The brick texture at full resolution, far from the model's training data: ~21 dB.
    let quality = psnr(&image, &decoded.to_rgb8());
    assert!(quality > 19.5, "the trained tokenizer reconstructs the 1024 texture at {quality:.2} dB");
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

/// How tile borders show in a decoded image, from the error e = decoded - original (mean
/// over channels): the mean |e| in a band of 2 px each side of every tile edge inside the
/// image against tile interiors (at least a quarter tile from any edge), and the mean jump
/// |e(p) - e(q)| between neighbours p, q on either side of an edge against neighbours in
/// interiors. A seam is a jump; the band error says whether borders are worse at all.
struct Seams {
    band_error: f64,
    interior_error: f64,
    edge_jump: f64,
    interior_jump: f64,
}

fn seams(original: &RgbImage, decoded: &RgbImage, layout: &TileLayout) -> Seams {
    let (w, h) = (layout.width as usize, layout.height as usize);
    let error: Vec<f64> = decoded
        .pixels()
        .zip(original.pixels())
        .map(|(d, o)| (0..3).map(|c| d[c] as f64 - o[c] as f64).sum::<f64>() / 3.0)
        .collect();
    let edges = |side: u32, along_x: bool| -> Vec<usize> {
        let mut edges: Vec<usize> = (0..layout.count())
            .map(|i| if along_x { layout.origin(i).0 } else { layout.origin(i).1 })
            .flat_map(|o| [o, o + layout.tile])
            .filter(|&e| e > 0 && e < side)
            .map(|e| e as usize)
            .collect();
        edges.sort();
        edges.dedup();
        edges
    };
    let (ex, ey) = (edges(layout.width, true), edges(layout.height, false));
    let distance = |v: usize, edges: &[usize]| edges.iter().map(|&e| v.abs_diff(e)).min().unwrap_or(usize::MAX);
    let interior = |x: usize, y: usize| distance(x, &ex).min(distance(y, &ey)) >= layout.tile as usize / 4;
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (mut band, mut inside, mut edge_jumps, mut inside_jumps) = (vec![], vec![], vec![], vec![]);
    for y in 0..h {
        for x in 0..w {
            let e = error[y * w + x];
            if distance(x, &ex).min(distance(y, &ey)) <= 2 {
                band.push(e.abs());
            } else if interior(x, y) {
                inside.push(e.abs());
            }
            // Horizontal neighbours (x-1, x) straddle a vertical edge when x is one; likewise down.
            if x > 0 {
                let jump = (e - error[y * w + x - 1]).abs();
                if ex.contains(&x) {
                    edge_jumps.push(jump);
                } else if interior(x, y) && interior(x - 1, y) {
                    inside_jumps.push(jump);
                }
            }
            if y > 0 {
                let jump = (e - error[(y - 1) * w + x]).abs();
                if ey.contains(&y) {
                    edge_jumps.push(jump);
                } else if interior(x, y) && interior(x, y - 1) {
                    inside_jumps.push(jump);
                }
            }
        }
    }
    Seams {
        band_error: mean(&band),
        interior_error: mean(&inside),
        edge_jump: mean(&edge_jumps),
        interior_jump: mean(&inside_jumps),
    }
}

fn jump(s: &Seams) -> f64 {
    s.edge_jump / s.interior_jump
}

fn report(label: &str, s: &Seams) {
    println!(
        "{label}: error band {:.2} / interior {:.2} = {:.3}; jump across edges {:.2} / inside {:.2} = {:.3}",
        s.band_error,
        s.interior_error,
        s.band_error / s.interior_error,
        s.edge_jump,
        s.interior_jump,
        jump(s)
    );
}

/// What makes seams in a trained tokenizer: each tile's reconstruction is off by its own
/// low-frequency error. Here each tile gets a random brightness offset and slope plus pixel
/// noise; cut hard at tile edges that shows as jumps, blended it must not.
#[test]
fn blending_hides_per_tile_errors() {
    let image = texture(240, 200);
    let planes = fqgan::image::rgb_planes(&image);
    let decode = |overlap| {
        let layout = TileLayout::new(240, 200, 64, overlap).unwrap();
        let mut blender = Blender::new(layout, 3);
        let mut state = 99u32;
        let mut random = move || {
            state = state.wrapping_mul(1664525).wrapping_add(1013904223);
            (state >> 8) as f32 / (1 << 24) as f32 - 0.5
        };
        for index in 0..layout.count() {
            let (offset, slope) = (random() * 0.3, random() * 0.004);
            let tile: Vec<f32> = layout
                .extract(&planes, 3, index)
                .iter()
                .enumerate()
                .map(|(i, v)| v + offset + slope * (i % 64) as f32 + random() * 0.05)
                .collect();
            blender.add(index, &tile);
        }
        let decoded = fqgan::image::rgb_from_planes(&blender.finish(), 240, 200);
        seams(&image, &decoded, &layout)
    };
    let (hard, blended) = (decode(0), decode(8));
    report("synthetic, overlap 0", &hard);
    report("synthetic, overlap 8", &blended);
    assert!(jump(&hard) > 2.0, "hard tile edges must show as jumps, else this measures nothing: {:.3}", jump(&hard));
    // The ramp spreads each tile-to-tile difference over the overlap: a step per pixel of an
    // eighth of it, close to the noise between interior neighbours.
    assert!(
        jump(&blended) < 1.3,
        "blended tile edges must not jump more than 30% above interior neighbours: {:.3}",
        jump(&blended)
    );
    assert!(
        jump(&blended) * 5.0 < jump(&hard),
        "blending must cut the jump at least 5x: {:.3} vs {:.3}",
        jump(&blended),
        jump(&hard)
    );
}

/// The same measurement through the real pipeline, on the trained tokenizer, whose tiles are
/// each off by their own colour shift: cut hard, the tile edges show; blended, they must not.
#[test]
fn model_round_trip_shows_no_seams() {
    let model = trained();
    let codec = AssetCodec::new(&model);
    let image = texture(240, 200);
    let measure = |overlap| {
        let (file, decoded) = round_trip(&codec, &DynamicImage::ImageRgb8(image.clone()), overlap);
        let s = seams(&image, &decoded.to_rgb8(), &file.layout);
        report(&format!("trained model, overlap {overlap}"), &s);
        s
    };
    let hard = measure(0);
    let blended = measure(codec.default_overlap());
    // Measured: 1.45x the interior jump cut hard, 0.89x blended (8 px).
    assert!(jump(&hard) > 1.25, "hard tile edges must show, else this measures nothing: {:.3}", jump(&hard));
    let band = blended.band_error / blended.interior_error;
    assert!(band < 1.1, "border band error must be within 10% of the interior error, is {band:.3}x");
    assert!(jump(&blended) < 1.1, "blended tile edges jump {:.3}x the interior", jump(&blended));
}

/// Whole-image work reports its tiles batch by batch and stops when told to, both ways.
#[test]
fn progress_counts_tiles_and_can_cancel() {
    use std::ops::ControlFlow;

    let model = model(5);
    let mut codec = AssetCodec::new(&model);
    codec.batch = 4;
    let image = DynamicImage::ImageRgb8(texture(300, 171)); // 6 x 3 tiles
    let mut seen = Vec::new();
    let file = codec
        .compress_with_progress(&image, codec.default_overlap(), Coding::Packed, &mut |done, total| {
            seen.push((done, total));
            ControlFlow::Continue(())
        })
        .unwrap()
        .expect("not cancelled");
    assert_eq!(seen, [(4, 18), (8, 18), (12, 18), (16, 18), (18, 18)]);
    assert_eq!(file, codec.compress(&image, codec.default_overlap(), Coding::Packed).unwrap());

    let stop_after =
        |n: usize| move |done: usize, _| if done >= n { ControlFlow::Break(()) } else { ControlFlow::Continue(()) };
    let cancelled = codec.compress_with_progress(&image, 0, Coding::Packed, &mut stop_after(8)).unwrap();
    assert!(cancelled.is_none());
    let path = std::path::Path::new("t.fqt");
    let mut calls = 0;
    let decoded = codec
        .decompress_with_progress(&file, path, &mut |done, total| {
            calls += 1;
            assert_eq!((done, total), ((calls * 4).min(18), 18));
            ControlFlow::Continue(())
        })
        .unwrap()
        .expect("not cancelled");
    assert_eq!(calls, 5);
    assert_eq!(decoded.to_rgb8(), codec.decompress(&file, path).unwrap().to_rgb8());
    assert!(codec.decompress_with_progress(&file, path, &mut stop_after(4)).unwrap().is_none());
}
