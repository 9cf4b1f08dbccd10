//! Quickstart: check the tokenizer against the official PyTorch outputs, then round-trip an
//! image through a tokenizer and write a side-by-side picture.
//!
//!     cargo run -p fqgan --example quickstart [-- <image.png> [<tokenizer.safetensors>]]
//!
//! Without a tokenizer file it uses a freshly initialised `small-dual-ds8` model (random
//! weights: the reconstruction is noise until a model is trained).

use std::path::{Path, PathBuf};

use anyhow::Result;
use fqgan::burn::tensor::backend::Backend;
use fqgan::device::Cpu;
use fqgan::image::{images_to_tensor, read_rgb_sized, save_rgb, tensor_to_images, RgbImage};
use fqgan::tokenizer::LoadPurpose;
use fqgan::{Tokenizer, TokenizerConfig};

fn main() -> Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize()?;
    let mut args = std::env::args().skip(1);
    let image_path = args.next().map(PathBuf::from).unwrap_or_else(|| root.join("examples/images/astronaut.png"));
    let device = Default::default();

    println!("1. parity with the official PyTorch tokenizer (golden case tok_dual_ds16)");
    let report = fqgan::verify::verify_case::<Cpu>(&root.join("tests/fixtures/golden/tok_dual_ds16"), &device)?;
    let worst = report.checks.iter().filter(|c| !c.exact).map(|c| c.error).fold(0.0, f64::max);
    println!("   {} passed, {} failed; worst float error {worst:.2e}", report.passed(), report.failed());

    let model = match args.next() {
        Some(path) => Tokenizer::<Cpu>::load(path, None, LoadPurpose::Inference, &device)?,
        None => {
            Cpu::seed(&device, 0);
            Tokenizer::new(&TokenizerConfig::preset("small-dual-ds8")?, &device)?
        }
    };
    let config = model.config();
    println!("2. round trip of {} through a k={} tokenizer", image_path.display(), config.k());
    let image = read_rgb_sized(&image_path, config.image_size as u32, true)?;
    let codes = model.encode(images_to_tensor::<Cpu>(std::slice::from_ref(&image), &device)?)?;
    let [_, k, h, w] = codes.dims();
    let recon = tensor_to_images(model.decode(codes)?).remove(0);
    let bits: f64 = config.codebooks.iter().map(|c| (c.size as f64).log2().ceil()).sum::<f64>() * (h * w) as f64;
    println!("   tokens {k} x {h}x{w}, {:.3} bits/pixel, PSNR {:.2} dB", bits / (image.width() * image.height()) as f64, fqgan::metrics::psnr(&image, &recon));

    let out = root.join("out/quickstart.png");
    std::fs::create_dir_all(out.parent().unwrap())?;
    save_rgb(&out, &side_by_side(&image, &recon))?;
    println!("   wrote {} (input | reconstruction)", out.display());
    Ok(())
}

fn side_by_side(a: &RgbImage, b: &RgbImage) -> RgbImage {
    let mut out = RgbImage::new(a.width() + b.width(), a.height().max(b.height()));
    image::imageops::replace(&mut out, a, 0, 0);
    image::imageops::replace(&mut out, b, a.width() as i64, 0);
    out
}
