//! Crafted model files shared by the tests that feed them to the library
//! (`tests/hostile_models.rs`), the CLI (`tests/cli.rs`) and the C API (`tests/ffi.rs`): model
//! files whose embedded config asks for absurd, wrapping or zero sizes.
#![allow(dead_code)] // each including test uses its own part

use std::collections::HashMap;

use fqgan::tokenizer::checkpoint::{CONFIG_KEY, FORMAT_KEY, TOKENIZER_FORMAT};
use fqgan::{FarConfig, TokenizerConfig};
use safetensors::tensor::TensorView;
use safetensors::Dtype;
use serde_json::{json, Value};

/// A safetensors buffer holding `tensors` (name, dtype, shape, bytes) and `metadata`.
pub fn safetensors_bytes(tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)], metadata: HashMap<String, String>) -> Vec<u8> {
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
pub fn crafted_tokenizers() -> Vec<(&'static str, Vec<u8>)> {
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

pub fn crafted_generators() -> Vec<(&'static str, Vec<u8>)> {
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

/// Every crafted file written into `dir`: (model kind, "tokenizer" or "generator"; its path;
/// what the error must name).
pub fn write_all(dir: &std::path::Path) -> Vec<(&'static str, std::path::PathBuf, &'static str)> {
    let tokenizers = crafted_tokenizers().into_iter().map(|(names, bytes)| ("tokenizer", names, bytes));
    let generators = crafted_generators().into_iter().map(|(names, bytes)| ("generator", names, bytes));
    tokenizers
        .chain(generators)
        .enumerate()
        .map(|(i, (kind, names, bytes))| {
            let path = dir.join(format!("{kind}-{i}.safetensors"));
            std::fs::write(&path, bytes).unwrap();
            (kind, path, names)
        })
        .collect()
}
