//! Parity with the official PyTorch FAR generator on the golden cases (tests/fixtures/golden).

use std::path::PathBuf;

use fqgan::burn::tensor::backend::Backend;
use fqgan::device::{Cpu, NdArray};
use fqgan::verify::verify_case;

fn case(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/golden").join(name)
}

fn assert_case_passes<B: Backend>(name: &str, k: usize) {
    let report = verify_case::<B>(&case(name), &Default::default()).unwrap();
    println!("{report}");
    assert_eq!(report.failed(), 0, "{name}:\n{report}");
    // Every headline output must really have been compared, not skipped.
    let mut expected = vec!["loss".to_string(), "freqs_cis".into(), "act_norm_out".into(), "act_layer1_out".into()];
    for j in 1..=k {
        for group in [
            "logits",
            "gen_tokens",
            "gen_raw_logits",
            "gen_cfg_logits",
            "gen_topk0_step0_raw_logits",
            "gen_topk0_step0_cfg_logits",
        ] {
            expected.push(format!("{group}_{j}"));
        }
    }
    for name in &expected {
        assert!(report.check(name).is_some(), "{name}: '{name}' was not checked");
    }
    assert!(report.skipped.is_empty(), "{name}: unchecked tensors {:?}", report.skipped);
}

#[test]
fn far_dual_matches_the_official_model() {
    assert_case_passes::<Cpu>("far_dual", 2);
}

#[test]
fn far_triple_matches_the_official_model() {
    assert_case_passes::<Cpu>("far_triple", 3);
}

/// The alternative CPU backend (`--device ndarray`): the same forward, caches and sampling.
#[test]
fn far_dual_matches_the_official_model_on_ndarray() {
    assert_case_passes::<NdArray>("far_dual", 2);
}

/// Sampling parity: feeding back the ids the official sampler drew (per-sub-token CFG scale,
/// temperature, top-k and top-p), every step's guided logits and filtered probability vector
/// must match the official ones.
fn assert_sampling_case_passes(name: &str, k: usize) {
    let report = verify_case::<Cpu>(&case(name), &Default::default()).unwrap();
    println!("{report}");
    assert_eq!(report.failed(), 0, "{name}:\n{report}");
    for j in 1..=k {
        for group in ["gen_sample_cfg_logits", "gen_sample_probs"] {
            let tensor = format!("{group}_{j}");
            assert!(report.check(&tensor).is_some(), "{name}: '{tensor}' was not checked");
        }
    }
    assert!(report.skipped.is_empty(), "{name}: unchecked tensors {:?}", report.skipped);
}

#[test]
fn far_dual_sampling_matches_the_official_sampler() {
    assert_sampling_case_passes("far_dual_sampling", 2);
}

#[test]
fn far_triple_sampling_matches_the_official_sampler() {
    assert_sampling_case_passes("far_triple_sampling", 3);
}

/// A forward-only case (`generation: null`, as cases with grouped KV heads must be: upstream
/// generation is broken there) checks its forward tensors and asks for no generation ones.
#[test]
fn a_forward_only_case_checks_what_it_has() {
    use std::collections::BTreeMap;

    use fqgan::weights::{write_safetensors, TensorFile};

    let dir = tempfile::tempdir().unwrap();
    let source = case("far_dual");
    std::fs::copy(source.join("weights.safetensors"), dir.path().join("weights.safetensors")).unwrap();
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(source.join("config.json")).unwrap()).unwrap();
    config["generation"] = serde_json::Value::Null;
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    let io = TensorFile::read(source.join("io.safetensors")).unwrap();
    let forward: BTreeMap<_, _> = io.tensors.into_iter().filter(|(name, _)| !name.starts_with("gen")).collect();
    write_safetensors(&dir.path().join("io.safetensors"), &forward, io.metadata).unwrap();

    let report = verify_case::<Cpu>(dir.path(), &Default::default()).unwrap();
    assert_eq!(report.failed(), 0, "{report}");
    assert!(report.check("logits_2").is_some() && report.check("loss").is_some(), "{report}");
    assert!(report.check("gen_tokens_1").is_none() && report.skipped.is_empty(), "{report}");
}
