//! Host syncs on the inference paths, counted through `fqgan::device::read_back`: a generated
//! token costs one read (its sampled ids), a decode none before its final read-back. The model
//! modules themselves never read to the host, which the source check at the end holds to.
//! One test in its own binary: the read counter is process-wide.

use fqgan::codec::no_progress;
use fqgan::device::host_reads;
use fqgan::far::SubTokenSampling;
use fqgan::image::RgbImage;
use fqgan::runtime::{GenerateRequest, GeneratorSession, ModelSource, Prefix, TokenizerSession};
use fqgan::DeviceChoice;

/// The reads `work` makes.
fn reads<T>(work: impl FnOnce() -> T) -> (T, usize) {
    let before = host_reads();
    let out = work();
    (out, host_reads() - before)
}

#[test]
fn one_read_per_generated_token_and_per_decoded_batch() {
    let generator = GeneratorSession::load(ModelSource::Builtin, None, DeviceChoice::Cpu).unwrap();
    let config = generator.config().clone();
    let (k, side) = (config.k(), config.grid_size());
    let sampling = SubTokenSampling { cfg_scale: 2.0, temperature: 1.0, top_k: 20, top_p: 0.9 };
    let request = GenerateRequest { per_label: 2, ..GenerateRequest::new(vec![Some(1), Some(4)], k, sampling, 3) };
    let (grids, count) = reads(|| generator.generate(&request, &mut no_progress).unwrap().unwrap());
    assert_eq!(count, config.block_size, "reads for {} tokens of 4 images with guidance", config.block_size);

    let rows = 2;
    let completion = GenerateRequest { prefix: Some(Prefix { rows, grids: vec![grids[0].clone()] }), ..request };
    let (_, count) = reads(|| generator.generate(&completion, &mut no_progress).unwrap().unwrap());
    assert_eq!(count, config.block_size - rows * side, "reads for a completion");

    let tokenizer = TokenizerSession::load(ModelSource::Builtin, None, DeviceChoice::Cpu).unwrap();
    let grids: Vec<_> = grids.into_iter().cycle().take(9).collect();
    let (images, count) = reads(|| tokenizer.decode(&grids).unwrap());
    assert_eq!(count, 2, "reads to decode 9 grids in batches of 8");
    let one: Vec<RgbImage> = images.into_iter().take(1).collect();
    let (_, count) = reads(|| tokenizer.encode(&one).unwrap());
    assert_eq!(count, 1, "reads to encode one image");
}

/// The model code (`far/`, `tokenizer/`) holds no host read outside its unit tests, so the
/// counts above see every sync: a read there would have to go through `read_back`.
#[test]
fn model_modules_read_to_the_host_only_through_read_back() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for module in ["far", "tokenizer"] {
        for entry in std::fs::read_dir(src.join(module)).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap();
            for read in ["into_data", "to_data", "into_scalar"] {
                assert!(!code.contains(read), "{} calls {read}: read through fqgan::device::read_back", path.display());
            }
        }
    }
}
