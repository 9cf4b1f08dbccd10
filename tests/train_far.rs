//! FAR training on CPU with a tiny model: a run stopped at a checkpoint and resumed gives the
//! straight run's losses exactly (batches, views, label dropout and dropout masks included).

use fqgan::burn::backend::Autodiff;
use fqgan::device::Cpu;
use fqgan::far::{Far, FarConfig};
use fqgan::train::codes::Codes;
use fqgan::train::far::FarTraining;
use fqgan::train::optim::AdamWConfig;

type B = Autodiff<Cpu>;

fn tiny_config() -> FarConfig {
    FarConfig {
        dim: 32,
        n_layer: 2,
        ar_n_layer: 1,
        n_head: 2,
        multiple_of: 32,
        vocab_sizes: vec![16, 8],
        num_classes: 3,
        block_size: 16,
        ..FarConfig::preset("small-dual").unwrap()
    }
}

/// 10 images x 2 views of ids that follow a per-class pattern (any codes would do here).
fn codes() -> Codes {
    let (images, views, tokens) = (10, 2, 16);
    let mut ids = Vec::new();
    for image in 0..images {
        for view in 0..views {
            ids.extend((0..tokens).map(|t| ((t + image + view) % 16) as i32));
            ids.extend((0..tokens).map(|t| ((t * image) % 8) as i32));
        }
    }
    Codes {
        ids,
        views,
        tokens,
        vocab_sizes: vec![16, 8],
        labels: (0..images).map(|i| i % 3).collect(),
        classes: vec!["a".into(), "b".into(), "c".into()],
        view_kind: "synthetic".into(),
        tokenizer_fingerprint: "00".into(),
        tokenizer_config: "{}".into(),
    }
}

fn training(init_seed: u64) -> FarTraining<B> {
    let device = Default::default();
    let model = fqgan::device::seeded::<B, _>(&device, init_seed, || Far::<B>::new(&tiny_config(), &device).unwrap());
    FarTraining::new(model, AdamWConfig { lr: 1e-3, ..AdamWConfig::far() }, 7)
}

#[test]
fn resuming_a_checkpoint_repeats_the_straight_run() {
    let data = codes();
    let steps = |run: &mut FarTraining<B>, n: usize| -> Vec<(f64, f64, usize)> {
        (0..n)
            .map(|_| {
                let m = run.train_step(&data, 6).unwrap();
                (m.loss, m.grad_norm, m.dropped_labels)
            })
            .collect()
    };
    let mut straight = training(3);
    let expected = steps(&mut straight, 6);
    assert!(expected.iter().any(|s| s.2 > 0), "label dropout never fired: {expected:?}");

    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().join("checkpoint.safetensors");
    let mut first = training(3);
    let mut got = steps(&mut first, 4);
    first.save_checkpoint(&checkpoint).unwrap();
    drop(first);
    let mut resumed = training(99); // another init: everything must come from the file
    resumed.seed = 1234;
    resumed.load_checkpoint(&checkpoint, &Default::default()).unwrap();
    assert_eq!((resumed.step, resumed.seed), (4, 7));
    got.extend(steps(&mut resumed, 2));
    assert_eq!(got, expected);
}
