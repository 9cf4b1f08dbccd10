//! Encode / decode throughput (images/s) and peak heap memory of the tokenizer on the CPU
//! backends, for a small preset and for `dual-ds16` at 256x256.
//!
//!     cargo bench -p fqgan --bench tokenizer

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use fqgan::burn::tensor::backend::Backend;
use fqgan::burn::tensor::{Distribution, Tensor};
use fqgan::device::{Cpu, NdArray};
use fqgan::{Tokenizer, TokenizerConfig};

/// Counts live heap bytes and their high-water mark (the CPU backends allocate through it).
struct PeakAlloc;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for PeakAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: PeakAlloc = PeakAlloc;

/// Extra heap used by `f` at its peak, above what was live before it ran, in MiB.
fn peak_mib<T>(f: impl FnOnce() -> T) -> f64 {
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    drop(f());
    (PEAK.load(Ordering::Relaxed) - before) as f64 / (1 << 20) as f64
}

const CASES: &[(&str, usize)] = &[("small-dual-ds8", 4), ("dual-ds16", 1)];

fn bench_backend<B: Backend>(c: &mut Criterion, backend: &str) {
    let device = B::Device::default();
    for &(preset, batch) in CASES {
        let config = TokenizerConfig::preset(preset).unwrap();
        B::seed(&device, 0);
        let model = Tokenizer::<B>::new(&config, &device).unwrap().without_feat_pred();
        let size = config.image_size;
        let images = Tensor::<B, 4>::random([batch, 3, size, size], Distribution::Uniform(-1.0, 1.0), &device);
        let codes = model.encode(images.clone()).unwrap();

        let encode_mib = peak_mib(|| model.encode(images.clone()).unwrap().into_data());
        let decode_mib = peak_mib(|| model.decode(codes.clone()).unwrap().into_data());
        println!("peak memory  {backend:<8} {preset:<15} batch {batch}: encode {encode_mib:.0} MiB, decode {decode_mib:.0} MiB");

        let mut group = c.benchmark_group(format!("{preset}-{size}px"));
        group.sample_size(10).throughput(Throughput::Elements(batch as u64));
        group.bench_function(BenchmarkId::new("encode", backend), |b| b.iter(|| model.encode(images.clone()).unwrap().into_data()));
        group.bench_function(BenchmarkId::new("decode", backend), |b| b.iter(|| model.decode(codes.clone()).unwrap().into_data()));
        group.finish();
    }
}

fn benches(c: &mut Criterion) {
    bench_backend::<Cpu>(c, "flex");
    bench_backend::<NdArray>(c, "ndarray");
}

criterion_group!(tokenizer, benches);
criterion_main!(tokenizer);
