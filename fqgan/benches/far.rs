//! FAR generation throughput (generated image tokens per second, all k sub-tokens of a
//! position counting as one) and peak heap memory of KV-cached decoding, batch 1 and 8, with
//! guidance (so 2 and 16 rows run), on the `small-dual`
//! preset (8x8 tokens) and on the FAR-B architecture (`far-b-dual`) cut to a 2x2 token grid
//! so that an iteration stays short on a CPU.
//!
//!     cargo bench -p fqgan --bench far -- --warm-up-time 1 --measurement-time 3 --sample-size 10

#[path = "common/peak.rs"]
mod peak;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use fqgan::burn::tensor::backend::Backend;
use fqgan::burn::tensor::{Int, Tensor};
use fqgan::device::Cpu;
use fqgan::far::{generate, Far, FarConfig, GenerateOptions, SubTokenSampling};
use peak::peak_mib;

/// (preset, block_size override).
const CASES: &[(&str, Option<usize>)] = &[("small-dual", None), ("far-b-dual", Some(4))];

fn far_generation(c: &mut Criterion) {
    let device = Default::default();
    for &(preset, block_size) in CASES {
        Cpu::seed(&device, 0);
        let preset_config = FarConfig::preset(preset).unwrap();
        let config = FarConfig { block_size: block_size.unwrap_or(preset_config.block_size), ..preset_config };
        let model = Far::<Cpu>::new(&config, &device).unwrap();
        let mut group = c.benchmark_group(format!("far_generate_{preset}_{}_tokens", config.block_size));
        group.sample_size(10);
        for batch in [1usize, 8] {
            let labels =
                Tensor::<Cpu, 1, Int>::arange(0..batch as i64, &device).remainder_scalar(config.num_classes as i64);
            group.throughput(Throughput::Elements((batch * config.block_size) as u64));
            let options = GenerateOptions::uniform(config.k(), SubTokenSampling::default(), 1);
            let mib = peak_mib(|| generate(&model, labels.clone(), None, &options).unwrap().into_data());
            println!("peak memory  {preset:<11} {} tokens batch {batch}: {mib:.0} MiB", config.block_size);
            group.bench_with_input(BenchmarkId::new("kv_cache", batch), &labels, |b, labels| {
                b.iter(|| generate(&model, labels.clone(), None, &options).unwrap())
            });
        }
        group.finish();
    }
}

criterion_group!(benches, far_generation);
criterion_main!(benches);
