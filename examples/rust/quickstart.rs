//! Quickstart: train a small Dual tokenizer on the committed CC0 images in examples/images for a
//! few minutes on the CPU, then round-trip one image through it and write a side-by-side PNG.
//!
//!     cargo run -p fqgan --example quickstart [-- --minutes 3]

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use fqgan::burn::backend::Autodiff;
use fqgan::burn::module::AutodiffModule;
use fqgan::burn::tensor::backend::Backend;
use fqgan::data::{center_crop, Augment, BadImages, ImageDataset, Loader, LoaderConfig};
use fqgan::device::Cpu;
use fqgan::image::{images_to_tensor, read_rgb, save_rgb, tensor_to_images, RgbImage};
use fqgan::train::optim::AdamWConfig;
use fqgan::train::tokenizer::{ObjectiveConfig, TokenizerTraining};
use fqgan::{Tokenizer, TokenizerConfig};

type B = Autodiff<Cpu>;

fn main() -> Result<()> {
    let minutes = match std::env::args().skip(1).collect::<Vec<_>>().as_slice() {
        [] => 3.0,
        [flag, value] if flag == "--minutes" => value.parse::<f64>()?,
        _ => bail!("usage: quickstart [--minutes M]   (training time, default 3)"),
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize()?;
    let device = Default::default();
    B::seed(&device, 0);

    // 64x64 images -> two 8x8 grids of 1024 codes (visual and semantic sub-codebooks). The
    // adversarial loss needs far longer runs, so it stays off.
    let config = TokenizerConfig::preset("small-dual-ds8")?;
    let objective = ObjectiveConfig { disc_start: u64::MAX, ..Default::default() };
    let optim = AdamWConfig { lr: 1e-3, ..AdamWConfig::tokenizer() };
    let mut training = TokenizerTraining::new(Tokenizer::<B>::new(&config, &device)?, objective, optim, None, &device);

    let images = ImageDataset::scan(&[root.join("examples/images")])?;
    let augment = Augment { size: config.image_size as u32, min_crop_fraction: 0.5, hflip: true };
    let batches =
        LoaderConfig { batch_size: 6, seed: 0, start_step: 0, workers: 2, prefetch: 2, bad_images: BadImages::Fail };
    let loader = Loader::new(images, augment, batches);

    println!("training small-dual-ds8 on examples/images for {minutes} min");
    let (start, budget) = (Instant::now(), Duration::from_secs_f64(minutes * 60.0));
    while start.elapsed() < budget {
        let batch = loader.next_batch()?;
        let m = training.train_step(images_to_tensor::<B>(&batch.images, &device)?)?;
        let (done, total) = (start.elapsed().as_secs(), budget.as_secs());
        print!(
            "\r  step {:>4}  reconstruction loss {:.4}  {}:{:02} / {}:{:02}",
            m.step + 1,
            m.reconstruction,
            done / 60,
            done % 60,
            total / 60,
            total % 60
        );
        std::io::stdout().flush()?;
    }
    println!();

    let model = training.model.valid();
    let out = root.join("out");
    std::fs::create_dir_all(&out)?;
    model.save(out.join("quickstart-tokenizer.safetensors"))?;

    let image = center_crop(&read_rgb(root.join("examples/images/astronaut.png"))?, config.image_size as u32);
    let codes = model.encode(images_to_tensor::<Cpu>(std::slice::from_ref(&image), &device)?);
    let [_, k, h, w] = codes.dims();
    let recon = tensor_to_images(model.decode(codes)).remove(0);
    println!(
        "astronaut.png -> {k} token grids of {h}x{w} -> {:.4} bits/pixel, PSNR {:.2} dB",
        config.bits_per_pixel(),
        fqgan::metrics::psnr(&image, &recon)
    );

    let picture = out.join("quickstart.png");
    save_rgb(&picture, &side_by_side(&image, &recon, 4))?;
    println!("wrote {} (original | reconstruction) and out/quickstart-tokenizer.safetensors", picture.display());
    Ok(())
}

/// `a | b`, each enlarged `scale` times (nearest neighbour) so that 64x64 pixels are visible.
fn side_by_side(a: &RgbImage, b: &RgbImage, scale: u32) -> RgbImage {
    let (w, h) = a.dimensions();
    let mut out = RgbImage::new(2 * w * scale, h * scale);
    for (i, image) in [a, b].into_iter().enumerate() {
        let big = image::imageops::resize(image, w * scale, h * scale, image::imageops::FilterType::Nearest);
        image::imageops::replace(&mut out, &big, (i as u32 * w * scale) as i64, 0);
    }
    out
}
