//! Crafted model files: configs that ask for absurd, wrapping or zero sizes, and weights of
//! the wrong kind, are refused with an error that names the field or tensor, before anything
//! large is built; under a 1 GiB address-space cap no load ends in a signal.

#[path = "common/crafted.rs"]
mod crafted;

use std::path::Path;

use crafted::{crafted_generators, crafted_tokenizers, safetensors_bytes};
use fqgan::device::Cpu;
use fqgan::tokenizer::LoadPurpose;
use fqgan::{Far, Tokenizer, TokenizerConfig};
use safetensors::Dtype;

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

/// A file of another kind (a generator given as a tokenizer, a tokenizer as a generator)
/// is refused by its `format`, saying what it is, before its config or tensors are read.
#[test]
fn files_of_another_kind_say_what_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let device = Default::default();
    let far = dir.path().join("far.safetensors");
    Far::<Cpu>::new(&fqgan::FarConfig::preset("tiny-dual").unwrap(), &device).unwrap().save(&far).unwrap();
    let tok = dir.path().join("tok.safetensors");
    Tokenizer::<Cpu>::new(&TokenizerConfig::preset("small-dual-ds8").unwrap(), &device).unwrap().save(&tok).unwrap();

    let message = Tokenizer::<Cpu>::load(&far, None, LoadPurpose::Inference, &device).unwrap_err().to_string();
    assert!(message.contains("is a FAR generator (format 'fqgan.far.v1'), not a tokenizer"), "{message}");
    let message = Far::<Cpu>::load(&tok, None, &device).unwrap_err().to_string();
    assert!(message.contains("is a tokenizer (format 'fqgan.tokenizer.v1'), not a FAR generator"), "{message}");
    let message = fqgan::train::codes::Codes::load(&tok).unwrap_err().to_string();
    assert!(message.contains("not a codes file"), "{message}");
}
