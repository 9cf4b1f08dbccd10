//! Encode / decode throughput (images/s) and peak heap memory of the tokenizer on the CPU
//! backends, for a small preset and for `dual-ds16` at 256x256.
//!
//!     cargo bench -p fqgan --bench tokenizer

#[path = "common/peak.rs"]
mod peak;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use fqgan::burn::tensor::backend::Backend;
use fqgan::burn::tensor::{Distribution, Tensor};
use fqgan::device::{Cpu, NdArray};
use fqgan::{Tokenizer, TokenizerConfig};
use peak::peak_mib;

const CASES: &[(&str, usize)] = &[("small-dual-ds8", 4), ("dual-ds16", 1)];

fn bench_backend<B: Backend>(c: &mut Criterion, backend: &str) {
    let device = B::Device::default();
    for &(preset, batch) in CASES {
        let config = TokenizerConfig::preset(preset).unwrap();
        B::seed(&device, 0);
        let model = Tokenizer::<B>::new(&config, &device).unwrap().without_feat_pred();
        let size = config.image_size;
        let images = Tensor::<B, 4>::random([batch, 3, size, size], Distribution::Uniform(-1.0, 1.0), &device);
        let codes = model.encode(images.clone());

        let encode_mib = peak_mib(|| model.encode(images.clone()).into_data());
        let decode_mib = peak_mib(|| model.decode(codes.clone()).into_data());
        println!("peak memory  {backend:<8} {preset:<15} batch {batch}: encode {encode_mib:.0} MiB, decode {decode_mib:.0} MiB");

        let mut group = c.benchmark_group(format!("{preset}-{size}px"));
        group.sample_size(10).throughput(Throughput::Elements(batch as u64));
        group.bench_function(BenchmarkId::new("encode", backend), |b| {
            b.iter(|| model.encode(images.clone()).into_data())
        });
        group.bench_function(BenchmarkId::new("decode", backend), |b| {
            b.iter(|| model.decode(codes.clone()).into_data())
        });
        group.finish();
    }
}

fn benches(c: &mut Criterion) {
    bench_backend::<Cpu>(c, "flex");
    bench_backend::<NdArray>(c, "ndarray");
}

criterion_group!(tokenizer, benches);
criterion_main!(tokenizer);
