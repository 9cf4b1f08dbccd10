//! Throughput of the `.fqt` token stages (bit packing, entropy coding, whole-file write and
//! read) and the time to decode a tiled 1024x1024 texture with a small model.
//!
//! Throughput is in bytes of bit-packed token data, the unit a file's size is made of.

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use fqgan::burn::tensor::backend::Backend;
use fqgan::codec::AssetCodec;
use fqgan::device::Cpu;
use fqgan::fingerprint::Fingerprint;
use fqgan::image::{DynamicImage, RgbImage};
use fqgan::tiling::TileLayout;
use fqgan::tokens::bitpack::{pack, packed_len, unpack};
use fqgan::tokens::{Coding, TokenFile};
use fqgan::{Tokenizer, TokenizerConfig};

/// Ids with the skew of real token streams: a Zipf-like mix over a 16384-entry codebook.
fn skewed_ids(count: usize, size: u32) -> Vec<u32> {
    let mut state = 0x2545F491u32;
    (0..count)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state % size) % (1 + (state >> 16) % size)
        })
        .collect()
}

fn bit_packing(c: &mut Criterion) {
    let ids = skewed_ids(1 << 20, 16384);
    let packed = pack(&ids, 14);
    let mut group = c.benchmark_group("bitpack");
    group.throughput(Throughput::Bytes(packed_len(ids.len() as u64, 14)));
    group.bench_function("pack 14-bit", |b| b.iter(|| pack(black_box(&ids), 14)));
    group.bench_function("unpack 14-bit", |b| b.iter(|| unpack(black_box(&packed), 14, ids.len())));
    group.finish();
}

/// A 4096x4096 texture as the official ds8 Dual model codes it: 19x19 tiles of 256 px, each
/// two 32x32 grids of 14-bit ids (1.3 MB bit-packed).
fn token_file(coding: Coding) -> TokenFile {
    let layout = TileLayout::new(4096, 4096, 256, 32).unwrap();
    let (grid, sizes) = (32u32, vec![16384u32, 16384]);
    let tokens = skewed_ids(layout.count() * sizes.len() * (grid * grid) as usize, 16384);
    TokenFile { fingerprint: Fingerprint::default(), layout, grid, codebook_sizes: sizes, tokens, alpha: None, coding }
}

fn file_coding(c: &mut Criterion) {
    let mut group = c.benchmark_group("fqt file");
    group.sample_size(10);
    for coding in [Coding::Packed, Coding::Entropy] {
        let file = token_file(coding);
        let bytes = file.to_bytes().unwrap();
        group.throughput(Throughput::Bytes(file.packed_token_bits().div_ceil(8)));
        group.bench_with_input(BenchmarkId::new("write", format!("{coding:?}")), &file, |b, f| {
            b.iter(|| f.to_bytes().unwrap())
        });
        group.bench_with_input(BenchmarkId::new("read", format!("{coding:?}")), &bytes, |b, bytes| {
            b.iter(|| TokenFile::from_bytes(black_box(bytes), Path::new("bench.fqt")).unwrap())
        });
    }
    group.finish();
}

fn tiled_decode(c: &mut Criterion) {
    let device = Default::default();
    Cpu::seed(&device, 0);
    let model = Tokenizer::<Cpu>::new(&TokenizerConfig::preset("small-dual-ds8").unwrap(), &device).unwrap();
    let codec = AssetCodec::new(&model);
    let image = DynamicImage::ImageRgb8(RgbImage::from_fn(1024, 1024, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x ^ y) % 256) as u8])
    }));
    let file = codec.compress(&image, codec.default_overlap(), Coding::Entropy).unwrap();
    let mut group = c.benchmark_group("tiled decode");
    group.sample_size(10);
    group.bench_function("1024x1024 small-dual-ds8", |b| {
        b.iter(|| codec.decompress(black_box(&file), Path::new("bench.fqt")).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bit_packing, file_coding, tiled_decode);
criterion_main!(benches);
