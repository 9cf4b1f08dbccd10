//! Weight-only bf16 for FAR inference, against the official fp32 outputs of the golden case
//! and against fqgan's own f32 weights. Bf16 rounds every weight to 8 bits of mantissa
//! (relative error at most 2^-9), so it cannot hold the golden tolerances; these tests state
//! the error it does have and bound it.

use std::path::PathBuf;

use fqgan::burn::tensor::{DType, Int, Tensor, TensorData};
use fqgan::device::Cpu;
use fqgan::far::generate::{generate_observed, LogitsRecord};
use fqgan::far::{GenerateOptions, SubTokenSampling};
use fqgan::weights::TensorFile;
use fqgan::{Far, FarConfig, WeightPrecision};

fn case() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/golden/far_dual")
}

fn golden_model() -> (Far<Cpu>, TensorFile) {
    let dir = case();
    let golden: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let config = FarConfig::from_golden_json(&golden).unwrap();
    let weights = TensorFile::read(dir.join("weights.safetensors")).unwrap();
    let model = Far::<Cpu>::from_tensor_file(&weights, Some(&config), &Default::default()).unwrap();
    (model, TensorFile::read(dir.join("io.safetensors")).unwrap())
}

fn values(data: TensorData) -> Vec<f32> {
    data.convert::<f32>().into_vec().unwrap()
}

/// Largest absolute difference over the largest magnitude of `reference`.
fn relative_error(actual: &[f32], reference: &[f32]) -> f32 {
    assert_eq!(actual.len(), reference.len());
    assert!(actual.iter().all(|v| v.is_finite()), "non-finite values");
    let scale = reference.iter().fold(0f32, |m, v| m.max(v.abs()));
    actual.iter().zip(reference).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max) / scale
}

/// Teacher forcing: 32 rows per Linear, so the bf16 weights are widened for gemm.
#[test]
fn bf16_teacher_forced_logits_stay_near_the_official_fp32_ones() {
    let (model, io) = golden_model();
    let bf16 = model.clone().with_weight_precision(WeightPrecision::Bf16);
    for linear in [&bf16.aggregation_layer, &bf16.layers[0].attention.wqkv, &bf16.head.output[1]] {
        assert_eq!(linear.weight.val().dtype(), DType::BF16);
    }
    assert_eq!(model.aggregation_layer.weight.val().dtype(), DType::F32, "the original model keeps f32");

    let device = Default::default();
    let ints = |name: &str| io.get(name).unwrap().clone().convert::<i64>();
    let idx = (1..=2).map(|j| Tensor::<Cpu, 2, Int>::from_data(ints(&format!("idx_{j}")), &device)).collect();
    let tokens = Tensor::stack(idx, 1);
    let labels = Tensor::<Cpu, 1, Int>::from_data(ints("cond_idx"), &device);
    let f32_logits = model.forward(tokens.clone(), labels.clone());
    let bf16_logits = bf16.forward(tokens, labels);
    for j in 0..2 {
        let official = values(io.get(&format!("logits_{}", j + 1)).unwrap().clone());
        let f32_error = relative_error(&values(f32_logits[j].to_data()), &official);
        let bf16_error = relative_error(&values(bf16_logits[j].to_data()), &official);
        println!("logits_{}: f32 weights {f32_error:.2e}, bf16 weights {bf16_error:.2e} of the largest logit", j + 1);
        assert!(f32_error < 1e-5, "f32 weights hold golden parity: {f32_error:e}");
        // Measured 3.2e-3 and 5.3e-3: a few times the rounding of one weight (2^-9), as
        // errors add over the layers.
        assert!(bf16_error < 1e-2, "logits_{}: bf16 error {bf16_error:e}", j + 1);
        assert!(bf16_error > f32_error, "bf16 weights must really have been rounded");
    }
}

/// Cached generation with guidance (4 rows per Linear: the few-rows kernel reads bf16
/// directly): the first position's logits, whose inputs are the same for both models.
#[test]
fn bf16_generation_stays_near_f32() {
    let (model, _) = golden_model();
    let bf16 = model.clone().with_weight_precision(WeightPrecision::Bf16);
    let labels = Tensor::<Cpu, 1, Int>::from_data(TensorData::from([3i64, 7]), &Default::default());
    let options = GenerateOptions::uniform(2, SubTokenSampling::greedy(2.0), 0);
    let run = |model: &Far<Cpu>| {
        let mut first = Vec::new();
        let tokens = generate_observed(model, labels.clone(), None, &options, &mut |r: LogitsRecord<Cpu>| {
            if r.position == 0 {
                first.push(values(r.raw.to_data()));
            }
        })
        .unwrap();
        (values(tokens.to_data()), first)
    };
    let (f32_tokens, f32_first) = run(&model);
    let (bf16_tokens, bf16_first) = run(&bf16);
    assert_eq!(f32_first.len(), 2, "one record per sub-token of the first position");
    for (j, (a, b)) in bf16_first.iter().zip(&f32_first).enumerate() {
        let error = relative_error(a, b);
        println!("first position, sub-token {}: bf16 vs f32 logits {error:.2e}", j + 1);
        // Measured 3.8e-3 and 2.9e-3.
        assert!(error > 0.0 && error < 1e-2, "sub-token {}: {error:e}", j + 1);
    }
    // Later positions are reported, not compared: on this tiny random model the top logits
    // lie close together, so one greedy choice flips and the rest follow other inputs
    // (measured: 40 of 64 ids the same).
    let same = f32_tokens.iter().zip(&bf16_tokens).filter(|(a, b)| a == b).count();
    println!("greedy tokens: {same} of {} the same", f32_tokens.len());
}
