//! FAR generation on a tiny random model: KV-cached decoding against full recomputation and
//! teacher forcing, seeds, prefixes, guidance and weight files.

use burn::tensor::{Int, Tensor, TensorData};
use fqgan::burn;
use fqgan::device::Cpu;
use fqgan::far::generate::{generate_observed, guide, with_null_class, LogitsRecord};
use fqgan::far::sample::Sampler;
use std::ops::ControlFlow;

use fqgan::far::{generate, generate_with_progress, Far, FarConfig, GenerateOptions, SubTokenSampling};

/// k = 3 with different vocabularies, grouped KV heads, a 3x3 grid, two head blocks.
fn tiny_config() -> FarConfig {
    FarConfig {
        dim: 32,
        n_layer: 2,
        ar_n_layer: 2,
        n_head: 4,
        n_kv_head: Some(2),
        multiple_of: 16,
        vocab_sizes: vec![13, 11, 7],
        num_classes: 5,
        block_size: 9,
        ..FarConfig::preset("small-triple").unwrap()
    }
}

fn tiny_model() -> Far<Cpu> {
    let device = Default::default();
    fqgan::device::seeded::<Cpu, _>(&device, 11, || Far::new(&tiny_config(), &device).unwrap())
}

fn labels(values: &[i64]) -> Tensor<Cpu, 1, Int> {
    Tensor::from_data(TensorData::new(values.to_vec(), [values.len()]), &Default::default())
}

fn sampling(cfg_scale: f64) -> SubTokenSampling {
    SubTokenSampling { cfg_scale, temperature: 1.0, top_k: 0, top_p: 0.95 }
}

fn ints(t: Tensor<Cpu, 3, Int>) -> Vec<i64> {
    t.into_data().convert::<i64>().to_vec().unwrap()
}

fn max_abs_diff(a: Tensor<Cpu, 2>, b: Tensor<Cpu, 2>) -> f32 {
    (a - b).abs().max().into_scalar()
}

fn run(
    model: &Far<Cpu>,
    prefix: Option<Tensor<Cpu, 3, Int>>,
    options: &GenerateOptions,
) -> (Tensor<Cpu, 3, Int>, Vec<LogitsRecord<Cpu>>) {
    let mut records = Vec::new();
    let tokens = generate_observed(model, labels(&[0, 3, 4]), prefix, options, &mut |r| records.push(r)).unwrap();
    (tokens, records)
}

/// `[x; x]` with guidance: the conditional and unconditional rows see the same tokens.
fn double<const D: usize>(x: Tensor<Cpu, D, Int>, guided: bool) -> Tensor<Cpu, D, Int> {
    if guided {
        Tensor::cat(vec![x.clone(), x], 0)
    } else {
        x
    }
}

/// Generation without caches, the reference the KV caches must reproduce: every step reruns
/// the backbone over the class and all tokens so far, and the head over all its slots so far,
/// drawing from the same seeded sampler in the same order as `generate`.
fn recompute(
    model: &Far<Cpu>,
    prefix: Option<Tensor<Cpu, 3, Int>>,
    options: &GenerateOptions,
) -> (Tensor<Cpu, 3, Int>, Vec<LogitsRecord<Cpu>>) {
    let (config, labels) = (model.config(), labels(&[0, 3, 4]));
    let guided = options.sampling.iter().any(|s| s.cfg_scale != 1.0);
    let rows = if guided { with_null_class(model, labels).unwrap() } else { labels };
    let start = prefix.as_ref().map_or(0, |p| p.dims()[2]);
    let mut tokens: Vec<Tensor<Cpu, 3, Int>> = prefix.into_iter().collect();
    let (mut sampler, mut records) = (Sampler::new(options.seed), Vec::new());
    for position in start..config.block_size {
        let mut input = model.embed_labels(rows.clone());
        if !tokens.is_empty() {
            input = Tensor::cat(vec![input, model.embed_tokens(double(Tensor::cat(tokens.clone(), 2), guided))], 1);
        }
        let s = input.dims()[1];
        let mut slots = vec![model.backbone(input, 0, None).narrow(1, s - 1, 1)];
        let mut sampled = Vec::new();
        for (j, params) in options.sampling.iter().enumerate() {
            let raw = model.head_logits(Tensor::cat(slots.clone(), 1), j, None);
            let guided_logits = if guided { guide(raw.clone(), params.cfg_scale) } else { raw.clone() };
            let ids = sampler.sample(guided_logits.clone(), params);
            records.push(LogitsRecord { position, sub_token: j, raw, guided: guided_logits });
            if j + 1 < config.k() {
                slots.push(model.slot_embedding(j + 1, double(ids.clone(), guided)));
            }
            sampled.push(ids);
        }
        tokens.push(Tensor::stack(sampled, 1));
    }
    (Tensor::cat(tokens, 2), records)
}

#[test]
fn kv_cache_decoding_gives_the_tokens_of_full_recomputation() {
    let model = tiny_model();
    let options = GenerateOptions::uniform(3, sampling(1.5), 42);
    let (cached, cached_logits) = run(&model, None, &options);
    let (recomputed, recomputed_logits) = recompute(&model, None, &options);
    assert_eq!(cached.dims(), [3, 3, 9]);
    assert_eq!(ints(cached), ints(recomputed));
    assert_eq!(cached_logits.len(), 9 * 3);
    for (a, b) in cached_logits.into_iter().zip(recomputed_logits) {
        assert_eq!((a.position, a.sub_token), (b.position, b.sub_token));
        assert!(max_abs_diff(a.raw, b.raw) < 1e-5);
    }
}

#[test]
fn cached_logits_equal_teacher_forcing_on_the_generated_tokens() {
    let model = tiny_model();
    let options = GenerateOptions::uniform(3, sampling(1.0), 5);
    let (tokens, records) = run(&model, None, &options);
    let forced = model.forward(tokens, labels(&[0, 3, 4]));
    for record in records {
        let expected = forced[record.sub_token].clone().narrow(1, record.position, 1).reshape([3, -1]);
        assert!(
            max_abs_diff(record.raw, expected) < 1e-5,
            "position {} sub-token {}",
            record.position,
            record.sub_token
        );
    }
}

#[test]
fn a_seed_fixes_the_tokens() {
    let model = tiny_model();
    let tokens = |seed| {
        ints(generate(&model, labels(&[1, 2]), None, &GenerateOptions::uniform(3, sampling(2.0), seed)).unwrap())
    };
    assert_eq!(tokens(9), tokens(9));
    assert_ne!(tokens(9), tokens(10));
}

#[test]
fn progress_reports_every_position_and_can_cancel() {
    let model = tiny_model();
    let options = GenerateOptions::uniform(3, sampling(2.0), 4);
    let mut calls = Vec::new();
    let tokens = generate_with_progress(&model, labels(&[1, 2]), None, &options, &mut |done, total| {
        calls.push((done, total));
        ControlFlow::Continue(())
    })
    .unwrap()
    .expect("not cancelled");
    assert_eq!(calls, (1..=9).map(|done| (done, 9)).collect::<Vec<_>>());
    assert_eq!(ints(tokens), ints(generate(&model, labels(&[1, 2]), None, &options).unwrap()));

    // After a prefix of 4, the 5 remaining positions are counted; a break stops at once.
    let prefix = Tensor::<Cpu, 3, Int>::zeros([2, 3, 4], &Default::default());
    let mut seen = 0;
    let cancelled = generate_with_progress(&model, labels(&[1, 2]), Some(prefix), &options, &mut |done, total| {
        assert_eq!(total, 5);
        seen = done;
        if done == 2 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .unwrap();
    assert!(cancelled.is_none());
    assert_eq!(seen, 2);
}

#[test]
fn generation_continues_from_a_prefix() {
    let model = tiny_model();
    let options = GenerateOptions::uniform(3, sampling(2.0), 8);
    let (full, _) = run(&model, None, &options);
    let prefix = full.clone().narrow(2, 0, 4);
    let (cached, _) = run(&model, Some(prefix.clone()), &options);
    let (recomputed, _) = recompute(&model, Some(prefix.clone()), &options);
    assert_eq!(ints(cached.clone().narrow(2, 0, 4)), ints(prefix));
    assert_eq!(ints(cached), ints(recomputed));
}

/// A batch whose key/value caches would pass the limit is refused before they are
/// allocated (here ~5 GB of caches for 1.4 million rows: the test would otherwise take
/// minutes and gigabytes).
#[test]
fn a_batch_past_the_cache_limit_is_refused_before_allocating() {
    let model = tiny_model();
    let config = tiny_config();
    let per_row = config.kv_cache_bytes(1);
    let batch = (fqgan::far::generate::MAX_GENERATION_CACHE_BYTES / per_row / 2 + 1) as usize;
    let guided = GenerateOptions::uniform(3, sampling(2.0), 0);
    let err = generate(&model, labels(&vec![0; batch]), None, &guided).unwrap_err().to_string();
    assert!(err.contains(&format!("{batch} images")) && err.contains("smaller batches"), "{err}");
}

#[test]
fn bad_requests_name_the_problem() {
    let model = tiny_model();
    let two = GenerateOptions::uniform(2, sampling(1.0), 0);
    let err = generate(&model, labels(&[0]), None, &two).unwrap_err().to_string();
    assert!(err.contains("k = 3"), "{err}");
    // Shapes are checked here; label and id ranges need the host values, which the runtime
    // checks before uploading them (tests/runtime.rs).
    let options = GenerateOptions::uniform(3, sampling(1.0), 0);
    let long = Tensor::<Cpu, 3, Int>::zeros([1, 3, 9], &Default::default());
    let err = generate(&model, labels(&[0]), Some(long), &options).unwrap_err().to_string();
    assert!(err.contains("prefix is [1, 3, 9]") && err.contains("0..9"), "{err}");

    let mut no_null = tiny_config();
    no_null.class_dropout_prob = 0.0;
    let model = Far::<Cpu>::new(&no_null, &Default::default()).unwrap();
    let err =
        generate(&model, labels(&[0]), None, &GenerateOptions::uniform(3, sampling(2.0), 0)).unwrap_err().to_string();
    assert!(err.contains("null class"), "{err}");
    generate(&model, labels(&[0]), None, &options).unwrap();
}

#[test]
fn weight_files_round_trip_with_their_config() {
    let model = tiny_model();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("far.safetensors");
    model.save(&path).unwrap();
    let loaded = Far::<Cpu>::load(&path, None, &Default::default()).unwrap();
    assert_eq!(loaded.config(), model.config());
    let options = GenerateOptions::uniform(3, sampling(2.0), 3);
    let tokens = |m: &Far<Cpu>| ints(generate(m, labels(&[4]), None, &options).unwrap());
    assert_eq!(tokens(&loaded), tokens(&model));

    // Official checkpoints carry no config, and other shapes are reported by key.
    let golden = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/golden/far_dual/weights.safetensors");
    let err = Far::<Cpu>::load(&golden, None, &Default::default()).unwrap_err().to_string();
    assert!(err.contains("no embedded config"), "{err}");
    let err = Far::<Cpu>::load(&golden, Some(&tiny_config()), &Default::default()).unwrap_err().to_string();
    assert!(err.contains("tok_embeddings_1.weight") || err.contains("aggregation_layer.weight"), "{err}");
}
