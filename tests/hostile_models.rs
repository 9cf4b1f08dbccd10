//! Crafted model files: configs that ask for absurd, wrapping or zero sizes, and weights of
//! the wrong kind, are refused with an error that names the field or tensor, before anything
//! large is built; under a 1 GiB address-space cap no load ends in a signal.

use std::collections::HashMap;
use std::path::Path;

use fqgan::device::Cpu;
use fqgan::tokenizer::checkpoint::{CONFIG_KEY, FORMAT_KEY, TOKENIZER_FORMAT};
use fqgan::tokenizer::LoadPurpose;
use fqgan::{Far, FarConfig, Tokenizer, TokenizerConfig};
use safetensors::tensor::TensorView;
use safetensors::Dtype;
use serde_json::{json, Value};

/// A safetensors buffer holding `tensors` (name, dtype, shape, bytes) and `metadata`.
fn safetensors_bytes(tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)], metadata: HashMap<String, String>) -> Vec<u8> {
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(name, dtype, shape, bytes)| (name.to_string(), TensorView::new(*dtype, shape.clone(), bytes).unwrap()))
        .collect();
    safetensors::serialize(views, Some(metadata)).unwrap()
}

/// `config` with the value at JSON pointer `field` replaced.
fn with_field(config: &Value, field: &str, value: Value) -> Value {
    let mut config = config.clone();
    *config.pointer_mut(field).unwrap_or_else(|| panic!("no field {field}")) = value;
    config
}

/// One model file per case (what the error must name, JSON pointer, value): `base` with that
/// field set, embedded in a file of the given format holding one dummy tensor.
fn model_files(base: &Value, cases: Vec<(&'static str, &str, Value)>, format: &str) -> Vec<(&'static str, Vec<u8>)> {
    cases
        .into_iter()
        .map(|(names, field, value)| {
            let config = with_field(base, field, value);
            let metadata = HashMap::from([
                (FORMAT_KEY.to_string(), format.to_string()),
                (CONFIG_KEY.to_string(), config.to_string()),
            ]);
            (names, safetensors_bytes(&[("x", Dtype::F32, vec![1], vec![0; 4])], metadata))
        })
        .collect()
}

/// (what the error must name, a model file whose embedded config sets that field absurdly).
fn crafted_tokenizers() -> Vec<(&'static str, Vec<u8>)> {
    let base = serde_json::to_value(TokenizerConfig::preset("small-dual-ds8").unwrap()).unwrap();
    let cases: Vec<(&'static str, &str, Value)> = vec![
        ("usage_window", "/usage_window", json!(1_000_000_000_000u64)),
        ("codebooks.vis.dim", "/codebooks/0/dim", json!(1_000_000_000u64)),
        ("codebooks.vis.size", "/codebooks/0/size", json!(1u64 << 40)),
        ("adapter.mlp_ratio", "/adapter/mlp_ratio", json!(1e12)),
        ("adapter.mlp_ratio", "/adapter/mlp_ratio", json!(-1.0)),
        ("MLP width", "/adapter/mlp_ratio", json!(0.01)),
        ("image_size", "/image_size", json!(1u64 << 23)),
        ("image_size", "/image_size", json!((1u64 << 63) + 64)),
        ("z_channels", "/z_channels", json!(10_000_000_000u64)),
        ("num_res_blocks", "/num_res_blocks", json!(10_000_000u64)),
        ("adapter.layers", "/adapter/layers", json!(100_000_000u64)),
        ("norm_groups", "/norm_groups", json!(0)),
        ("`ch`", "/ch", json!(1u64 << 63)),
        ("in_channels", "/in_channels", json!(0)),
        ("out_channels", "/out_channels", json!(1)),
        ("out_channels", "/out_channels", json!(4)),
        ("norm_eps", "/norm_eps", json!(0.0)),
        ("entropy_temperature", "/entropy_temperature", json!(0.0)),
    ];
    model_files(&base, cases, TOKENIZER_FORMAT)
}

fn crafted_generators() -> Vec<(&'static str, Vec<u8>)> {
    let base = serde_json::to_value(FarConfig::preset("tiny-dual").unwrap()).unwrap();
    let cases: Vec<(&'static str, &str, Value)> = vec![
        ("vocab_sizes[0]", "/vocab_sizes/0", json!(1_000_000_000_000u64)),
        ("num_classes", "/num_classes", json!(1_000_000_000_000u64)),
        ("multiple_of", "/multiple_of", json!(1u64 << 40)),
        ("n_layer", "/n_layer", json!(1_000_000_000u64)),
        ("`dim`", "/dim", json!(1u64 << 40)),
        ("block_size", "/block_size", json!(1u64 << 62)),
        ("ffn_dim_multiplier", "/ffn_dim_multiplier", json!(1e30)),
        ("rope_base", "/rope_base", json!(-1.0)),
    ];
    model_files(&base, cases, fqgan::far::checkpoint::FAR_FORMAT)
}

fn load_tokenizer(bytes: &[u8]) -> String {
    match Tokenizer::<Cpu>::load_from_bytes(bytes, None, LoadPurpose::Inference, &Default::default()) {
        Ok(_) => panic!("a crafted tokenizer file loaded"),
        Err(e) => e.to_string(),
    }
}

fn load_generator(bytes: &[u8]) -> String {
    match Far::<Cpu>::load_from_bytes(bytes, None, &Default::default()) {
        Ok(_) => panic!("a crafted generator file loaded"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn absurd_tokenizer_configs_are_refused_naming_the_field() {
    for (names, bytes) in crafted_tokenizers() {
        let message = load_tokenizer(&bytes);
        assert!(message.contains(names), "expected the error to name {names}: {message}");
    }
}

#[test]
fn absurd_generator_configs_are_refused_naming_the_field() {
    for (names, bytes) in crafted_generators() {
        let message = load_generator(&bytes);
        assert!(message.contains(names), "expected the error to name {names}: {message}");
    }
}

/// A real small tokenizer file with one tensor replaced by `(dtype, bytes)` of its shape.
fn tokenizer_with_tensor(dir: &Path, replace: impl Fn(usize) -> (Dtype, Vec<u8>)) -> (String, Vec<u8>) {
    let path = dir.join("tok.safetensors");
    let device = Default::default();
    Tokenizer::<Cpu>::new(&TokenizerConfig::preset("small-dual-ds8").unwrap(), &device).unwrap().save(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let target = "quantize_vis.embedding.weight".to_string();
    let mut tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> =
        file.tensors().into_iter().map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec())).collect();
    let entry = tensors.iter_mut().find(|t| t.0 == target).expect("the codebook tensor");
    let (dtype, data) = replace(entry.2.iter().product());
    (entry.1, entry.3) = (dtype, data);
    let borrowed: Vec<(&str, Dtype, Vec<usize>, Vec<u8>)> =
        tensors.iter().map(|(n, d, s, b)| (n.as_str(), *d, s.clone(), b.clone())).collect();
    (target, safetensors_bytes(&borrowed, header.metadata().clone().unwrap_or_default()))
}

#[test]
fn weights_of_the_wrong_kind_are_refused_naming_the_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let nan = |n: usize| {
        let mut values = vec![0.5f32; n];
        values[n / 2] = f32::NAN;
        (Dtype::F32, values.iter().flat_map(|v| v.to_le_bytes()).collect())
    };
    let cases: Vec<(&str, Box<dyn Fn(usize) -> (Dtype, Vec<u8>)>)> = vec![
        ("I64", Box::new(|n| (Dtype::I64, vec![0; 8 * n]))),
        ("U8", Box::new(|n| (Dtype::U8, vec![1; n]))),
        ("F64", Box::new(|n| (Dtype::F64, vec![0; 8 * n]))),
        ("non-finite", Box::new(nan)),
        ("BOOL", Box::new(|n| (Dtype::BOOL, vec![2; n]))),
    ];
    for (problem, replace) in cases {
        let (tensor, bytes) = tokenizer_with_tensor(dir.path(), replace);
        let message = load_tokenizer(&bytes);
        assert!(message.contains(problem), "{problem}: {message}");
        // A BOOL tensor of bad bytes is refused while the file is read, before any name lookup.
        assert!(problem == "BOOL" || message.contains(&tensor), "{problem}: the error names no tensor: {message}");
    }
}

/// Every crafted file again, in a child process whose address space is capped at 1 GiB
/// (`ulimit -v`): each load must return an error; an allocation failure would abort the
/// child with a signal instead of an exit status.
#[test]
fn crafted_models_fail_cleanly_under_a_memory_cap() {
    const CHILD: &str = "FQGAN_HOSTILE_MODELS_CHILD";
    if std::env::var_os(CHILD).is_some() {
        for (_, bytes) in crafted_tokenizers() {
            load_tokenizer(&bytes);
        }
        for (_, bytes) in crafted_generators() {
            load_generator(&bytes);
        }
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -v 1048576 && exec \"$0\" crafted_models_fail_cleanly_under_a_memory_cap --exact --test-threads 1")
        .arg(&exe)
        .env(CHILD, "1")
        .env("FQGAN_NUM_THREADS", "1")
        .status()
        .unwrap();
    assert!(status.code().is_some(), "the capped child ended by a signal: {status:?}");
    assert!(status.success(), "the capped child failed: {status:?}");
}
