//! Tokenizer training on real (committed CC0) images, on CPU, with a tiny model.

use std::path::PathBuf;

use fqgan::burn::backend::Autodiff;
use fqgan::burn::tensor::backend::Backend;
use fqgan::data::{center_crop, Augment, BadImages, ImageDataset, Loader, LoaderConfig};
use fqgan::device::Cpu;
use fqgan::image::{images_to_tensor, tensor_to_images, RgbImage};
use fqgan::metrics::psnr;
use fqgan::train::optim::AdamWConfig;
use fqgan::train::tokenizer::{ObjectiveConfig, TokenizerTraining};
use fqgan::{Tokenizer, TokenizerConfig};

type B = Autodiff<Cpu>;

fn tiny_config() -> TokenizerConfig {
    let mut config = TokenizerConfig::preset("small-dual-ds8").unwrap();
    config.image_size = 32;
    config.ch_mult = vec![1, 1, 2];
    config.z_channels = 16;
    config.adapter.layers = 1;
    for codebook in &mut config.codebooks {
        codebook.size = 64;
        codebook.feat_pred = None;
    }
    config.validate().unwrap();
    config
}

fn images_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/images")
}

fn training(seed: u64, disc_start: u64) -> TokenizerTraining<B> {
    let device = Default::default();
    B::seed(&device, seed);
    let model = Tokenizer::<B>::new(&tiny_config(), &device).unwrap();
    let objective = ObjectiveConfig { disc_start, discriminator: fqgan::loss::discriminator::DiscriminatorConfig { in_channels: 3, ndf: 16, n_layers: 2 }, ..Default::default() };
    let optim = AdamWConfig { lr: 1e-3, ..AdamWConfig::tokenizer() };
    TokenizerTraining::new(model, objective, optim, None, &device)
}

fn loader(start_step: u64) -> Loader {
    let data = ImageDataset::scan(&[images_dir()]).unwrap();
    let config = LoaderConfig { batch_size: 6, seed: 5, start_step, workers: 2, prefetch: 2, bad_images: BadImages::Fail };
    Loader::new(data, Augment { size: 32, min_crop_fraction: 0.8, hflip: true }, config)
}

fn mean_psnr<Bk: Backend>(model: &Tokenizer<Bk>, images: &[RgbImage]) -> f64 {
    let codes = model.encode(images_to_tensor::<Bk>(images, &Default::default()).unwrap()).unwrap();
    let recon = tensor_to_images(model.decode(codes).unwrap());
    images.iter().zip(&recon).map(|(a, b)| psnr(a, b)).sum::<f64>() / images.len() as f64
}

#[test]
fn reconstruction_improves_on_real_images() {
    let data = ImageDataset::scan(&[images_dir()]).unwrap();
    let eval: Vec<RgbImage> = (0..data.len()).map(|i| center_crop(&data.load(i).unwrap(), 32)).collect();
    let mut run = training(11, u64::MAX);
    let before = mean_psnr(&run.model, &eval);
    let loader = loader(0);
    let losses: Vec<f64> = (0..40)
        .map(|_| {
            let batch = loader.next_batch().unwrap();
            run.train_step(images_to_tensor::<B>(&batch.images, &Default::default()).unwrap()).unwrap().reconstruction
        })
        .collect();
    let after = mean_psnr(&run.model, &eval);
    let early = losses[..5].iter().sum::<f64>() / 5.0;
    let late = losses[35..].iter().sum::<f64>() / 5.0;
    println!("reconstruction loss {early:.4} -> {late:.4}, PSNR {before:.2} -> {after:.2} dB");
    assert!(late < early * 0.7, "loss {early} -> {late}");
    assert!(after > before + 3.0, "PSNR {before} -> {after}");
}

#[test]
fn resuming_a_checkpoint_repeats_the_straight_run() {
    let steps = |run: &mut TokenizerTraining<B>, loader: &Loader, n: usize| -> Vec<(f64, f64)> {
        (0..n)
            .map(|_| {
                let batch = loader.next_batch().unwrap();
                let m = run.train_step(images_to_tensor::<B>(&batch.images, &Default::default()).unwrap()).unwrap();
                (m.loss, m.disc)
            })
            .collect()
    };
    // disc_start 2: the adversarial terms and the discriminator's optimizer are in play.
    let mut straight = training(3, 2);
    let expected = steps(&mut straight, &loader(0), 5);

    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().join("checkpoint.safetensors");
    let mut first = training(3, 2);
    let mut got = steps(&mut first, &loader(0), 3);
    first.save_checkpoint(&checkpoint).unwrap();
    drop(first);
    let mut resumed = training(99, 2); // another init: everything must come from the file
    resumed.load_checkpoint(&checkpoint, &Default::default()).unwrap();
    assert_eq!(resumed.step, 3);
    got.extend(steps(&mut resumed, &loader(3), 2));
    assert_eq!(got, expected);
}
