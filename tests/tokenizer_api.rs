//! Tokenizer API: weight files, inference entry points and input checks, on tiny models.

use std::path::PathBuf;

use fqgan::burn::tensor::{Int, Tensor, TensorData};
use fqgan::device::{Cpu, NdArray};
use fqgan::tokenizer::LoadPurpose;
use fqgan::verify::verify_case;
use fqgan::{Tokenizer, TokenizerConfig};

fn golden(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/golden").join(name)
}

fn small_model(seed: u64) -> Tokenizer<Cpu> {
    let device = Default::default();
    fqgan::device::seeded::<Cpu, _>(&device, seed, || {
        Tokenizer::new(&TokenizerConfig::preset("small-dual-ds8").unwrap(), &device).unwrap()
    })
}

fn images(batch: usize, size: usize) -> Tensor<Cpu, 4> {
    let values: Vec<f32> = (0..batch * 3 * size * size).map(|i| ((i * 7919) % 255) as f32 / 127.5 - 1.0).collect();
    Tensor::from_data(TensorData::new(values, [batch, 3, size, size]), &Default::default())
}

#[test]
fn saved_files_rebuild_the_same_model() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tok.safetensors");
    let model = small_model(1);
    model.save(&path).unwrap();
    let loaded = Tokenizer::<Cpu>::load(&path, None, LoadPurpose::Training, &Default::default()).unwrap();
    assert_eq!(loaded.config(), model.config());
    assert_eq!(loaded.feat_pred.len(), 1);
    let x = images(2, 64);
    let (a, b) = (model.encode(x.clone()), loaded.encode(x));
    assert_eq!(a.to_data(), b.to_data());
    assert_eq!(model.decode(a).into_data(), loaded.decode(b).into_data());

    let inference = Tokenizer::<Cpu>::load(&path, None, LoadPurpose::Inference, &Default::default()).unwrap();
    assert!(inference.feat_pred.is_empty() && inference.config().codebooks.iter().all(|c| c.feat_pred.is_none()));
}

#[test]
fn official_files_need_a_config_and_load_without_feature_heads() {
    let weights = golden("tok_dual_ds16").join("weights.safetensors");
    let err =
        Tokenizer::<Cpu>::load(&weights, None, LoadPurpose::Inference, &Default::default()).unwrap_err().to_string();
    assert!(err.contains("weights.safetensors") && err.contains("no embedded config"), "{err}");

    // A file without the training-only head (as the official sampler saves) loads too.
    let dir = tempfile::tempdir().unwrap();
    let stripped = dir.path().join("no_heads.safetensors");
    let model = small_model(2).without_feat_pred();
    model.save(&stripped).unwrap();
    let config = TokenizerConfig::preset("small-dual-ds8").unwrap();
    let loaded = Tokenizer::<Cpu>::load(&stripped, Some(&config), LoadPurpose::Training, &Default::default()).unwrap();
    assert!(loaded.feat_pred.is_empty());
}

#[test]
fn mismatched_files_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tok.safetensors");
    small_model(3).save(&path).unwrap();
    let mut wider = TokenizerConfig::preset("small-dual-ds8").unwrap();
    wider.codebooks[0].size = 512;
    let err = Tokenizer::<Cpu>::load(&path, Some(&wider), LoadPurpose::Inference, &Default::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("quantize_vis.embedding.weight") && err.contains("[1024, 8]"), "{err}");

    let garbage = dir.path().join("garbage.safetensors");
    std::fs::write(&garbage, b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}").unwrap();
    let err =
        Tokenizer::<Cpu>::load(&garbage, None, LoadPurpose::Inference, &Default::default()).unwrap_err().to_string();
    assert!(err.contains("garbage.safetensors") && err.contains("not a valid safetensors"), "{err}");
}

/// The tensor API's contract: inputs that do not fit panic, naming the mismatch (the runtime
/// refuses them first, as errors: tests/runtime.rs), and an id past its codebook panics in the
/// backend's gather instead of reading past the table.
#[test]
fn inputs_that_do_not_fit_panic_naming_them() {
    let model = small_model(4);
    let message = |call: &dyn Fn()| -> String {
        let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(call)).expect_err("the call panics");
        panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string())).unwrap()
    };
    let err = message(&|| drop(model.encode(images(1, 32))));
    assert!(err.contains("3x32x32") && err.contains("3x64x64"), "{err}");
    let device = Default::default();
    let wrong_k = Tensor::<Cpu, 4, Int>::zeros([1, 3, 8, 8], &device);
    assert!(message(&|| drop(model.decode(wrong_k.clone()))).contains("3 sub-codebooks"));
    let err = message(&|| drop(model.decode_subset(Tensor::zeros([1, 2, 8, 8], &device), &[5])));
    assert!(err.contains("[5]"), "{err}");
    let out_of_range = Tensor::<Cpu, 4, Int>::full([1, 2, 8, 8], 1024, &device);
    message(&|| drop(model.decode(out_of_range.clone()).into_data()));
}

/// A subset decode uses exactly the chosen sub-codebooks: the ids of the others do not change
/// it, the chosen ones do, and choosing all of them is the full decode.
#[test]
fn decoding_a_subset_depends_on_the_chosen_codebooks_only() {
    let model = small_model(5);
    let codes = model.encode(images(1, 64));
    let other_ids = |codes: &Tensor<Cpu, 4, Int>, codebook: usize| {
        let ids = codes.clone().narrow(1, codebook, 1);
        let moved = (ids + 517).remainder_scalar(1024);
        codes.clone().slice_assign([0..1, codebook..codebook + 1, 0..8, 0..8], moved)
    };
    let vis_only = model.decode_subset(codes.clone(), &[0]).into_data();
    assert_eq!(model.decode_subset(other_ids(&codes, 1), &[0]).into_data(), vis_only);
    assert_ne!(model.decode_subset(other_ids(&codes, 0), &[0]).into_data(), vis_only);
    let sem_only = model.decode_subset(codes.clone(), &[1]).into_data();
    assert_eq!(model.decode_subset(other_ids(&codes, 0), &[1]).into_data(), sem_only);
    assert_ne!(sem_only, vis_only);
    assert_eq!(model.decode_subset(codes.clone(), &[0, 1]).into_data(), model.decode(codes).into_data());
}

#[test]
fn ndarray_backend_matches_the_golden_case_too() {
    let report = verify_case::<NdArray>(&golden("tok_triple_ds8"), &Default::default()).unwrap();
    assert_eq!(report.failed(), 0, "{report}");
}

/// The tokenizer shipped under `models/` loads, says how it was trained, and reconstructs a
/// texture it never saw far better than a random model does.
#[test]
fn the_shipped_texture_tokenizer_loads_and_reconstructs() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/ufoai-small-dual-ds8.safetensors");
    let file = fqgan::weights::TensorFile::read(&path).unwrap();
    let provenance: serde_json::Value = serde_json::from_str(&file.metadata["provenance"]).unwrap();
    assert_eq!(provenance["steps"], 5000);
    assert!(provenance["notes"]["licence"].as_str().unwrap().contains("GPL-2+"));
    let device = Default::default();
    let model = Tokenizer::<Cpu>::from_tensor_file(&file, None, LoadPurpose::Inference, &device).unwrap();
    // The preset, less the training-only feature head an inference load leaves out.
    let mut expected = TokenizerConfig::preset("small-dual-ds8").unwrap();
    expected.codebooks[1].feat_pred = None;
    assert_eq!(model.config(), &expected);
    let brick = fqgan::image::read_rgb(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/images/brick.png"));
    let tile = fqgan::data::center_crop(&brick.unwrap(), 64);
    let input = fqgan::image::images_to_tensor::<Cpu>(std::slice::from_ref(&tile), &device).unwrap();
    let decoded = model.decode(model.encode(input));
    let psnr = fqgan::metrics::psnr(&tile, &fqgan::image::tensor_to_images(decoded)[0]);
    let random = fqgan::image::tensor_to_images(small_model(7).decode(
        small_model(7).encode(fqgan::image::images_to_tensor::<Cpu>(std::slice::from_ref(&tile), &device).unwrap()),
    ));
    let random_psnr = fqgan::metrics::psnr(&tile, &random[0]);
    assert!(psnr > 18.0 && psnr > random_psnr + 5.0, "shipped {psnr:.2} dB, random {random_psnr:.2} dB");
}
