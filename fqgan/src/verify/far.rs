//! The `far` family: teacher-forced logits and loss, and deterministic generation.

use std::path::Path;

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use super::Checker;
use crate::error::{Error, Result};
use crate::far::generate::{generate_observed, guide, with_null_class, LogitsRecord};
use crate::far::{Far, FarConfig, GenerateOptions, SubTokenSampling};
use crate::far::sample::filtered_probs;
use crate::trace;
use crate::weights::TensorFile;

pub(super) fn verify_far<B: Backend>(
    dir: &Path,
    golden: &serde_json::Value,
    checker: &mut Checker<'_>,
    device: &B::Device,
) -> Result<()> {
    let config = FarConfig::from_golden_json(golden)?;
    let weights = TensorFile::read(dir.join("weights.safetensors"))?;
    let model = Far::<B>::from_tensor_file(&weights, Some(&config), device)?;
    let k = config.k();
    let ints = |name: &str| -> Result<TensorData> { Ok(checker.io.get(name)?.clone().convert::<i64>()) };

    // Teacher forcing, with official sub-token tensors idx_1..idx_k stacked to [B, k, N].
    let idx: Vec<Tensor<B, 2, Int>> =
        (1..=k).map(|j| Ok(Tensor::from_data(ints(&format!("idx_{j}"))?, device))).collect::<Result<_>>()?;
    let tokens: Tensor<B, 3, Int> = Tensor::stack(idx, 1);
    let labels = Tensor::<B, 1, Int>::from_data(ints("cond_idx")?, device);
    let (logits, activations) = trace::capture(|| model.forward(tokens.clone(), labels));
    for (name, activation) in activations {
        checker.recorded(&name, activation);
    }
    checker.float("freqs_cis", model.freqs_cis());
    for (j, logits) in logits.iter().enumerate() {
        checker.float(&format!("logits_{}", j + 1), logits.clone());
    }
    checker.float("loss", model.loss(&logits, tokens));

    // Generation with the golden case's sampling parameters (top_k 1, so deterministic). A
    // case with `generation: null` is forward-only: upstream generation is broken with grouped
    // KV heads, so such a case records no generation to compare.
    let generation =
        golden.get("generation").ok_or_else(|| Error::Config("golden config has no `generation`".into()))?;
    if generation.is_null() {
        return Ok(());
    }
    let list = |name: &str| -> Result<Vec<f64>> {
        let values: Vec<f64> = generation
            .get(name)
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .ok_or_else(|| Error::Config(format!("golden config: `generation.{name}` is missing or not a list")))?;
        if values.len() != k {
            return Err(Error::Config(format!(
                "golden config: `generation.{name}` has {} entries, k = {k}",
                values.len()
            )));
        }
        Ok(values)
    };
    let (cfg, temperature, top_k, top_p) = (list("cfg_scale")?, list("temperature")?, list("top_k")?, list("top_p")?);
    let sampling: Vec<SubTokenSampling> = (0..k)
        .map(|j| SubTokenSampling {
            cfg_scale: cfg[j],
            temperature: temperature[j],
            top_k: top_k[j] as usize,
            top_p: top_p[j],
        })
        .collect();
    let gen_labels = Tensor::<B, 1, Int>::from_data(ints("gen_labels")?, device);
    if generation.get("sampled").and_then(|v| v.as_bool()) == Some(true) {
        return replay_sampled(&model, gen_labels, &sampling, checker, device);
    }
    let options =
        GenerateOptions { sampling: sampling.clone(), ..GenerateOptions::uniform(k, SubTokenSampling::default(), 0) };
    let mut records: Vec<LogitsRecord<B>> = Vec::new();
    let generated = generate_observed(&model, gen_labels.clone(), None, &options, &mut |r| records.push(r))?;
    let [b, _, n] = generated.dims();
    for j in 0..k {
        checker.int(&format!("gen_tokens_{}", j + 1), generated.clone().narrow(1, j, 1).reshape([b, n]));
        let of_sub_token = |pick: fn(&LogitsRecord<B>) -> Tensor<B, 2>| {
            Tensor::stack::<3>(records.iter().filter(|r| r.sub_token == j).map(pick).collect(), 0)
        };
        checker.float(&format!("gen_raw_logits_{}", j + 1), of_sub_token(|r| r.raw.clone()));
        checker.float(&format!("gen_cfg_logits_{}", j + 1), of_sub_token(|r| r.guided.clone()));
    }

    // The top_k=0 run's first position, feeding back the sub-tokens torch drew.
    let guided = sampling.iter().any(|s| s.cfg_scale != 1.0);
    let row_labels = if guided { with_null_class(&model, gen_labels)? } else { gen_labels };
    let rows = row_labels.dims()[0];
    let mut caches = model.new_caches(rows);
    let mut slot = model.prefill(row_labels, None, &mut caches);
    let mut head_caches = model.head.new_caches(&config, rows, device);
    for j in 0..k {
        let raw = model.head_logits(slot, j, Some(&mut head_caches));
        let guided_logits = if guided { guide(raw.clone(), sampling[j].cfg_scale) } else { raw.clone() };
        checker.float(&format!("gen_topk0_step0_raw_logits_{}", j + 1), raw);
        checker.float(&format!("gen_topk0_step0_cfg_logits_{}", j + 1), guided_logits);
        let drawn =
            Tensor::<B, 1, Int>::from_data(ints(&format!("gen_topk0_step0_token_{}", j + 1))?, device).reshape([b, 1]);
        let drawn = if guided { Tensor::cat(vec![drawn.clone(), drawn], 0) } else { drawn };
        slot = if j + 1 < k {
            model.slot_embedding(j + 1, drawn)
        } else {
            break;
        };
    }
    Ok(())
}

/// Sampling parity: the ids torch drew (`gen_sample_tokens_j`, inputs) are fed back one
/// position at a time, sub-tokens in order, and at every step the guided logits and the
/// filtered probability vectors are compared with the official sampler's.
fn replay_sampled<B: Backend>(
    model: &Far<B>,
    labels: Tensor<B, 1, Int>,
    sampling: &[SubTokenSampling],
    checker: &mut Checker<'_>,
    device: &B::Device,
) -> Result<()> {
    let config = model.config();
    let k = config.k();
    let drawn: Vec<Tensor<B, 2, Int>> = (1..=k)
        .map(|j| {
            let ids = checker.io.get(&format!("gen_sample_tokens_{j}"))?.clone().convert::<i64>();
            Ok(Tensor::from_data(ids, device))
        })
        .collect::<Result<_>>()?;
    let steps = drawn[0].dims()[1];
    let guided = sampling.iter().any(|s| s.cfg_scale != 1.0);
    let both_halves = |x: Tensor<B, 2, Int>| if guided { Tensor::cat(vec![x.clone(), x], 0) } else { x };
    let row_labels = if guided { with_null_class(model, labels)? } else { labels };
    let rows = row_labels.dims()[0];
    let mut caches = model.new_caches(rows);
    let mut h = model.prefill(row_labels, None, &mut caches);
    let (mut cfg_logits, mut probs): (Vec<Vec<Tensor<B, 2>>>, Vec<Vec<Tensor<B, 2>>>) =
        (vec![Vec::new(); k], vec![Vec::new(); k]);
    for step in 0..steps {
        let mut head_caches = model.head.new_caches(config, rows, device);
        let mut slot = h;
        let mut position = Vec::with_capacity(k);
        for j in 0..k {
            let raw = model.head_logits(slot.clone(), j, Some(&mut head_caches));
            let logits = if guided { guide(raw, sampling[j].cfg_scale) } else { raw };
            probs[j].push(filtered_probs(logits.clone(), &sampling[j]));
            cfg_logits[j].push(logits);
            let ids = drawn[j].clone().narrow(1, step, 1);
            if j + 1 < k {
                slot = model.slot_embedding(j + 1, both_halves(ids.clone()));
            }
            position.push(ids);
        }
        if step + 1 < steps {
            let tokens: Tensor<B, 3, Int> = Tensor::stack(position, 1);
            let tokens = if guided { Tensor::cat(vec![tokens.clone(), tokens], 0) } else { tokens };
            h = model.decode_one_token(tokens, &mut caches);
        } else {
            break;
        }
    }
    for j in 0..k {
        checker.float(&format!("gen_sample_cfg_logits_{}", j + 1), Tensor::stack::<3>(cfg_logits[j].clone(), 0));
        checker.float(&format!("gen_sample_probs_{}", j + 1), Tensor::stack::<3>(probs[j].clone(), 0));
    }
    Ok(())
}
