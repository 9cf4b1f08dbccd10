//! Tokenizer training on real (committed CC0) images, on CPU, with a tiny model.

use std::path::PathBuf;

use fqgan::burn::backend::Autodiff;
use fqgan::burn::tensor::backend::Backend;
use fqgan::data::{center_crop, Augment, BadImages, ImageDataset, Loader, LoaderConfig};
use fqgan::device::Cpu;
use fqgan::image::{images_to_tensor, tensor_to_images, RgbImage};
use fqgan::metrics::psnr;
use fqgan::teachers::{Teacher, TeacherFeatures};
use fqgan::tokenizer::checkpoint::tokenizer_key_map;
use fqgan::train::optim::AdamWConfig;
use fqgan::train::semantic::TeacherSource;
use fqgan::train::tokenizer::{MicroBatch, ObjectiveConfig, TokenizerTraining};
use fqgan::weights::module_tensors;
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
    training_with(tiny_config(), seed, disc_start)
}

fn training_with(config: TokenizerConfig, seed: u64, disc_start: u64) -> TokenizerTraining<B> {
    let device = Default::default();
    let objective = ObjectiveConfig {
        disc_start,
        discriminator: fqgan::loss::discriminator::DiscriminatorConfig { in_channels: 3, ndf: 16, n_layers: 2 },
        ..Default::default()
    };
    let optim = AdamWConfig { lr: 1e-3, ..AdamWConfig::tokenizer() };
    // The discriminator draws its weights in `new` too: both under one seed.
    fqgan::device::seeded::<B, _>(&device, seed, || {
        let model = Tokenizer::<B>::new(&config, &device).unwrap();
        TokenizerTraining::new(model, objective, optim, None, &device)
    })
}

fn loader(start_step: u64) -> Loader {
    let data = ImageDataset::scan(&[images_dir()]).unwrap();
    let config =
        LoaderConfig { batch_size: 6, seed: 5, start_step, workers: 2, prefetch: 2, bad_images: BadImages::Fail };
    Loader::new(data, Augment { size: 32, min_crop_fraction: 0.8, hflip: true }, config)
}

fn mean_psnr<Bk: Backend>(model: &Tokenizer<Bk>, images: &[RgbImage]) -> f64 {
    let codes = model.encode(images_to_tensor::<Bk>(images, &Default::default()).unwrap());
    let recon = tensor_to_images(model.decode(codes));
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
    let mut straight = training(3, 2).with_ema(0.5);
    let expected = steps(&mut straight, &loader(0), 5);

    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().join("checkpoint.safetensors");
    let mut first = training(3, 2).with_ema(0.5);
    let mut got = steps(&mut first, &loader(0), 3);
    first.save_checkpoint(&checkpoint).unwrap();
    drop(first);
    let mut resumed = training(99, 2).with_ema(0.5); // another init: everything must come from the file
    resumed.load_checkpoint(&checkpoint, &Default::default()).unwrap();
    assert_eq!(resumed.step, 3);
    got.extend(steps(&mut resumed, &loader(3), 2));
    assert_eq!(got, expected);
    // The usage windows are running state shared with the trained model, not averaged weights.
    let ema_weights = |run: &TokenizerTraining<B>| {
        let mut weights = module_tensors(&run.ema.as_ref().unwrap().model, &tokenizer_key_map(&tiny_config()));
        weights.retain(|key, _| !key.ends_with("codebook_used"));
        weights
    };
    assert_eq!(ema_weights(&resumed), ema_weights(&straight));
    // The EMA lags the weights it averages.
    assert_ne!(ema_weights(&straight), module_tensors(&straight.model, &tokenizer_key_map(&tiny_config())));

    let without_ema = training(3, 2).save_checkpoint(&checkpoint);
    without_ema.unwrap();
    let err = training(3, 2).with_ema(0.5).load_checkpoint(&checkpoint, &Default::default()).unwrap_err().to_string();
    assert!(err.contains("EMA") && err.contains("checkpoint.safetensors"), "{err}");
}

/// One step of two micro-batches of 2 must take the step one batch of 4 takes: same loss, same
/// gradient (norm), same weights after. Entropy losses are batch statistics, so they are off.
#[test]
fn gradient_accumulation_matches_the_large_batch() {
    let mut config = tiny_config();
    config.entropy_loss_ratio = 0.0;
    let device = Default::default();
    let batch = loader(0).next_batch().unwrap();
    let images = images_to_tensor::<B>(&batch.images[..4], &device).unwrap();
    let half = |range: std::ops::Range<usize>| MicroBatch {
        images: images.clone().slice([range, 0..3, 0..32, 0..32]),
        ids: Vec::new(),
    };
    let weights = |run: &TokenizerTraining<B>| -> Vec<f32> {
        let tensors = module_tensors(&run.model, &tokenizer_key_map(&config));
        tensors
            .into_iter()
            .filter(|(key, _)| !key.ends_with("codebook_used"))
            .flat_map(|(_, d)| d.to_vec::<f32>().unwrap())
            .collect()
    };

    let mut large = training_with(config.clone(), 7, u64::MAX);
    let large_m = large.train_step(images.clone()).unwrap();
    let mut accumulated = training_with(config.clone(), 7, u64::MAX);
    let accumulated_m = accumulated.accumulated_step(vec![half(0..2), half(2..4)]).unwrap();
    let mut small = training_with(config.clone(), 7, u64::MAX);
    let small_m = small.accumulated_step(vec![half(0..2)]).unwrap();

    let close = |a: f64, b: f64| (a - b).abs() <= 1e-4 * a.abs().max(b.abs());
    assert!(close(large_m.loss, accumulated_m.loss), "loss {} vs {}", large_m.loss, accumulated_m.loss);
    assert!(
        close(large_m.grad_norm, accumulated_m.grad_norm),
        "grad norm {} vs {}",
        large_m.grad_norm,
        accumulated_m.grad_norm
    );
    assert!(!close(large_m.grad_norm, small_m.grad_norm), "half the batch should give another gradient");
    // Adam's first step is about lr * sign(gradient): compare mean moves, not the largest.
    let distance = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f32>() / a.len() as f32;
    let (w_large, w_acc, w_small) = (weights(&large), weights(&accumulated), weights(&small));
    let (same, other) = (distance(&w_large, &w_acc), distance(&w_large, &w_small));
    println!("mean weight distance to the large-batch step: accumulated {same:.3e}, half batch {other:.3e}");
    assert!(same < 0.01 * other, "accumulated {same} vs half batch {other}");
}

fn teachers_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/golden/teachers")
}

/// The tiny golden CLIP teacher (32 wide) supervising the `sem` sub-codebook: the InfoNCE term
/// is logged, finite, trains the feature-prediction head, and precomputed features of the same
/// images give the same value as the live teacher.
#[test]
fn semantic_term_trains_the_feature_head_against_a_teacher() {
    let mut config = tiny_config();
    config.codebooks[1].feat_pred = Some(fqgan::config::FeatPredConfig {
        module: "feat_pred_head".into(),
        width: 32,
        layers: 1,
        heads: 4,
        mlp_ratio: 2.0,
    });
    let device = Default::default();
    let dir = teachers_dir();
    let teacher = || {
        Teacher::<B>::load(&dir.join("hf_config_clip.json"), &dir.join("weights_clip.safetensors"), &device).unwrap()
    };
    let data = ImageDataset::scan(&[images_dir()]).unwrap();
    let images: Vec<RgbImage> = (0..data.len()).map(|i| center_crop(&data.load(i).unwrap(), 32)).collect();
    let ids: Vec<String> = data.items.iter().map(|item| item.id.clone()).collect();
    let input = images_to_tensor::<B>(&images, &device).unwrap();

    let mut features = TeacherFeatures::new(32);
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    features.insert_batch(&id_refs, teacher().cls_feature(input.clone())).unwrap();
    let mut precomputed =
        training_with(config.clone(), 5, u64::MAX).with_teachers(vec![TeacherSource::Precomputed(features)]).unwrap();
    let precomputed_first =
        precomputed.accumulated_step(vec![MicroBatch { images: input.clone(), ids: ids.clone() }]).unwrap();

    let mut live = training_with(config.clone(), 5, u64::MAX)
        .with_teachers(vec![TeacherSource::Live(Box::new(teacher()))])
        .unwrap();
    live.objective.semantic_weight = 2.0;
    let head_before = module_tensors(&live.model.feat_pred[0], &Default::default());
    let semantic: Vec<f64> = (0..12)
        .map(|_| {
            let m = live.train_step(input.clone()).unwrap();
            assert_eq!(m.semantic.len(), 1);
            m.semantic[0]
        })
        .collect();
    println!("semantic loss {semantic:?}");
    assert!(semantic.iter().all(|s| s.is_finite()));
    assert!(
        (semantic[0] - precomputed_first.semantic[0]).abs() < 1e-5,
        "live {} vs precomputed {}",
        semantic[0],
        precomputed_first.semantic[0]
    );
    assert!(semantic[11] < semantic[0] - 0.01, "semantic loss {} -> {}", semantic[0], semantic[11]);
    assert_ne!(module_tensors(&live.model.feat_pred[0], &Default::default()), head_before);

    let two = vec![
        TeacherSource::Precomputed(TeacherFeatures::new(32)),
        TeacherSource::Precomputed(TeacherFeatures::new(32)),
    ];
    let Err(err) = training_with(config.clone(), 5, u64::MAX).with_teachers(two) else {
        panic!("a teacher too many must be an error")
    };
    let err = err.to_string();
    assert!(err.contains("[sem]") && err.contains("2 teacher"), "{err}");
}
