//! The tokenizer and generator loaders on arbitrary input: they must return (Ok or a clear
//! error), never panic, abort on an allocation or take long.
//!
//! Each input is tried as a whole safetensors file, and as the config JSON embedded in an
//! otherwise empty model file: random bytes almost never form a valid header, and the config
//! decides what gets built before the tensors are compared (seed the corpus with the presets:
//! `fqgan-trainer presets small-dual-ds8 > corpus/model_loader/tokenizer.json`).

#![no_main]

use std::collections::HashMap;

use fqgan::device::Cpu;
use fqgan::tokenizer::checkpoint::{CONFIG_KEY, FORMAT_KEY, TOKENIZER_FORMAT};
use fqgan::tokenizer::LoadPurpose;
use fqgan::{Far, Tokenizer};
use libfuzzer_sys::fuzz_target;

fn load_both(bytes: &[u8]) {
    let device = Default::default();
    let _ = Tokenizer::<Cpu>::load_from_bytes(bytes, None, LoadPurpose::Inference, &device);
    let _ = Tokenizer::<Cpu>::load_from_bytes(bytes, None, LoadPurpose::Training, &device);
    let _ = Far::<Cpu>::load_from_bytes(bytes, None, &device);
}

fuzz_target!(|data: &[u8]| {
    load_both(data);
    let Ok(config) = std::str::from_utf8(data) else { return };
    for format in [TOKENIZER_FORMAT, fqgan::far::checkpoint::FAR_FORMAT] {
        let metadata = HashMap::from([
            (FORMAT_KEY.to_string(), format.to_string()),
            (CONFIG_KEY.to_string(), config.to_string()),
        ]);
        let empty: Vec<(String, safetensors::tensor::TensorView<'_>)> = Vec::new();
        load_both(&safetensors::serialize(empty, Some(metadata)).expect("metadata serialises"));
    }
});
