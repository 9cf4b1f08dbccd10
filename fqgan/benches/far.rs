//! FAR generation throughput (generated image tokens per second, all k sub-tokens of a position
//! counting as one token) on the `small-dual` preset: KV-cached decoding against full
//! recomputation, batch 1 and 8, with guidance (so 2 and 16 rows run).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use fqgan::burn::tensor::backend::Backend;
use fqgan::burn::tensor::{Int, Tensor};
use fqgan::device::Cpu;
use fqgan::far::{generate, Decoding, Far, FarConfig, GenerateOptions, SubTokenSampling};

fn far_generation(c: &mut Criterion) {
    let device = Default::default();
    Cpu::seed(&device, 0);
    let config = FarConfig::preset("small-dual").unwrap();
    let model = Far::<Cpu>::new(&config, &device).unwrap();
    let mut group = c.benchmark_group("far_generate_small_dual");
    group.sample_size(10);
    for batch in [1usize, 8] {
        let labels = Tensor::<Cpu, 1, Int>::arange(0..batch as i64, &device).remainder_scalar(config.num_classes as i64);
        group.throughput(Throughput::Elements((batch * config.block_size) as u64));
        for (name, decoding) in [("kv_cache", Decoding::KvCache), ("recompute", Decoding::Recompute)] {
            let options = GenerateOptions { decoding, ..GenerateOptions::uniform(config.k(), SubTokenSampling::default(), 1) };
            group.bench_with_input(BenchmarkId::new(name, batch), &labels, |b, labels| {
                b.iter(|| generate(&model, labels.clone(), None, &options).unwrap())
            });
        }
    }
    group.finish();
}

criterion_group!(benches, far_generation);
criterion_main!(benches);
