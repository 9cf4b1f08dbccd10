//! The inference runtime on the built-in models: sessions give what the tensor modules give,
//! refuse bad arguments before any work (naming them), keep prefixes and honour cancel.

use std::ops::ControlFlow;

use fqgan::burn::tensor::{Int, Tensor, TensorData};
use fqgan::codec::no_progress;
use fqgan::device::Cpu;
use fqgan::far::{generate, GenerateOptions, SubTokenSampling};
use fqgan::image::{images_to_tensor, tensor_to_images, DynamicImage, RgbImage, RgbaImage};
use fqgan::runtime::{
    Arg, GenerateRequest, GeneratorSession, ModelSource, Prefix, TileOptions, TokenGrid, TokenizerSession,
};
use fqgan::tokenizer::LoadPurpose;
use fqgan::{DeviceChoice, Error};

fn tokenizer() -> TokenizerSession {
    TokenizerSession::load(ModelSource::Builtin, None, DeviceChoice::Cpu).unwrap()
}

fn generator() -> GeneratorSession {
    GeneratorSession::load(ModelSource::Builtin, None, DeviceChoice::Cpu).unwrap()
}

fn stop(_: usize, _: usize) -> ControlFlow<()> {
    ControlFlow::Break(())
}

/// The argument a call refused, and its message.
fn refused<T: std::fmt::Debug>(result: fqgan::Result<T>) -> (Arg, Option<usize>, String) {
    match result {
        Err(Error::Argument { arg, index, message }) => (arg, index, message),
        other => panic!("expected a refused argument, got {other:?}"),
    }
}

fn test_images(count: usize, size: u32) -> Vec<RgbImage> {
    (0..count as u32)
        .map(|n| {
            RgbImage::from_fn(size, size, |x, y| {
                image::Rgb([(x * 4 + n * 40) as u8, (y * 4) as u8, ((x ^ y) * 8) as u8])
            })
        })
        .collect()
}

#[test]
fn tokenizer_session_gives_what_the_tensor_module_gives() {
    let session = tokenizer();
    let device = Default::default();
    let model = fqgan::builtin::tokenizer::<Cpu>(LoadPurpose::Inference, &device).unwrap();
    // More images than one model call takes, so the batching is exercised.
    let images = test_images(10, session.image_size());
    let grids = session.encode(&images).unwrap();
    assert_eq!(grids.len(), 10);
    let ids = model.encode(images_to_tensor::<Cpu>(&images, &device).unwrap());
    let expected: Vec<u32> = ids.to_data().convert::<i64>().iter::<i64>().map(|id| id as u32).collect();
    let got: Vec<u32> = grids.iter().flat_map(|g| g.ids.iter().copied()).collect();
    assert_eq!(got, expected);
    assert_eq!(tokenizer().decode(&grids).unwrap(), tensor_to_images(model.decode(ids.clone())));
    let sem_alone = session.decode_codebooks(&grids, &[1]).unwrap();
    assert_eq!(sem_alone, tensor_to_images(model.decode_subset(ids, &[1])));
}

#[test]
fn tokenizer_arguments_are_refused_by_name_before_any_work() {
    let session = tokenizer();
    let (arg, _, message) = refused(session.encode(&test_images(1, 32)));
    assert_eq!((arg, message.as_str()), (Arg::ImageSize, "is 32x32; this tokenizer takes 64x64 images (resize first)"));

    let mut grids = session.encode(&test_images(2, 64)).unwrap();
    grids[1].ids[64 + 9] = 1024; // second image, sub-codebook 1, row 1, column 1: one past the end
    let (arg, index, message) = refused(session.decode(&grids));
    assert_eq!((arg, index), (Arg::Token, Some(128 + 73)));
    assert_eq!(message, "is 1024 (sub-codebook 1 'sem', row 1, column 1); its ids are 0..1024");
    let shown = session.decode(&grids).unwrap_err().to_string();
    assert!(shown.starts_with("token[201] is 1024"), "{shown}");
    grids[1].ids.pop();
    assert_eq!(refused(session.decode(&grids)).0, Arg::TokenCount);

    let grid = &grids[..1];
    assert_eq!(refused(session.decode_codebooks(grid, &[])).0, Arg::CodebookCount);
    let (arg, index, _) = refused(session.decode_codebooks(grid, &[0, 2]));
    assert_eq!((arg, index), (Arg::Codebook, Some(1)));
    assert_eq!(refused(session.codebook_index("texture")).0, Arg::Codebook);
    assert_eq!(session.codebook_index("sem").unwrap(), 1);

    let image = DynamicImage::ImageRgb8(test_images(1, 80).remove(0));
    let wide = TileOptions { overlap: Some(32), ..TileOptions::default() };
    assert_eq!(refused(session.compress(&image, &wide, &mut no_progress)).0, Arg::Overlap);
    assert_eq!(refused(session.fqt_bound(80, 80, false, &wide)).0, Arg::Overlap);
}

#[test]
fn whole_images_keep_their_size_and_alpha_and_stop_when_cancelled() {
    let session = tokenizer();
    let (width, height) = (100, 70);
    let rgba =
        RgbaImage::from_fn(width, height, |x, y| image::Rgba([x as u8 * 2, y as u8 * 3, 90, (x * y % 256) as u8]));
    let image = DynamicImage::ImageRgba8(rgba.clone());
    let options = TileOptions::default();
    let file = session.compress(&image, &options, &mut no_progress).unwrap().unwrap();
    assert!(session.fqt_bound(width, height, true, &options).unwrap() >= file.to_bytes().unwrap().len() as u64);
    let source = std::path::Path::new("memory");
    let decoded = session.decompress(&file, source, None, &options, &mut no_progress).unwrap().unwrap().into_rgba8();
    assert_eq!(decoded.dimensions(), (width, height));
    assert!(decoded.pixels().zip(rgba.pixels()).all(|(a, b)| a[3] == b[3]), "alpha is kept exactly");

    let mut calls = 0;
    let mut cancel_at_first = |_, _| {
        calls += 1;
        ControlFlow::Break(())
    };
    assert!(session.compress(&image, &options, &mut cancel_at_first).unwrap().is_none());
    assert_eq!(calls, 1);
    assert!(session.decompress(&file, source, None, &options, &mut stop).unwrap().is_none());
    assert_eq!(refused(session.decompress(&file, source, Some(&[5]), &options, &mut no_progress)).0, Arg::Codebook);
}

#[test]
fn generator_session_gives_what_generate_gives_and_keeps_prefixes() {
    let session = generator();
    let k = session.config().k();
    let mut request = GenerateRequest::new(vec![Some(0), Some(3)], k, SubTokenSampling::default(), 7);
    request.per_label = 2;
    let grids = session.generate(&request, &mut no_progress).unwrap().unwrap();
    assert_eq!(grids.len(), 4);

    let device = Default::default();
    let model = fqgan::builtin::generator::<Cpu>(&device).unwrap();
    let labels = Tensor::<Cpu, 1, Int>::from_data(TensorData::new(vec![0i64, 0, 3, 3], [4]), &device);
    let options = GenerateOptions::uniform(k, SubTokenSampling::default(), 7);
    let tokens = generate(&model, labels, None, &options).unwrap();
    let expected: Vec<u32> = tokens.into_data().convert::<i64>().iter::<i64>().map(|id| id as u32).collect();
    assert_eq!(grids.iter().flat_map(|g| g.ids.iter().copied()).collect::<Vec<_>>(), expected);

    // Completion, one prefix per label: each label's images keep its top rows bit for bit.
    let rows = 3;
    let kept = rows * session.config().grid_size();
    let mut completion =
        GenerateRequest::new(vec![None, None], k, SubTokenSampling { cfg_scale: 1.0, ..Default::default() }, 9);
    completion.per_label = 2;
    completion.prefix = Some(Prefix { rows, grids: vec![grids[0].clone(), grids[2].clone()] });
    let completed = session.generate(&completion, &mut no_progress).unwrap().unwrap();
    for (n, grid) in completed.iter().enumerate() {
        let source: &TokenGrid = &grids[if n < 2 { 0 } else { 2 }];
        for j in 0..k {
            assert_eq!(grid.plane(j)[..kept], source.plane(j)[..kept], "image {n}, sub-token {j}");
        }
    }
    assert_ne!(completed[0], completed[1], "the regenerated rows differ between an image's completions");
}

#[test]
fn generator_arguments_are_refused_by_name_before_any_work() {
    let session = generator();
    let k = session.config().k();
    let request = |labels: Vec<Option<usize>>, sampling: SubTokenSampling| GenerateRequest::new(labels, k, sampling, 0);
    let official = SubTokenSampling::default();
    let (arg, _, message) = refused(session.generate(&request(vec![Some(10)], official.clone()), &mut no_progress));
    assert_eq!((arg, message.as_str()), (Arg::ClassId, "is 10; this generator has classes 0..10"));
    assert_eq!(refused(session.check(&request(vec![], official.clone()))).0, Arg::Count);
    let bad = |sampling: SubTokenSampling| refused(session.check(&request(vec![Some(0)], sampling))).0;
    assert_eq!(bad(SubTokenSampling { top_p: 0.0, ..official.clone() }), Arg::TopP);
    assert_eq!(bad(SubTokenSampling { temperature: 0.0, ..official.clone() }), Arg::Temperature);
    assert_eq!(bad(SubTokenSampling { cfg_scale: f64::NAN, ..official.clone() }), Arg::CfgScale);
    let mut mixed = request(vec![Some(0)], official.clone());
    mixed.sampling[1].top_p = 2.0;
    assert_eq!(refused(session.check(&mixed)).2, "is 2 for sub-token 2; it must be in (0, 1]");

    let grid =
        session.generate(&request(vec![Some(1)], official.clone()), &mut no_progress).unwrap().unwrap().remove(0);
    let side = session.config().grid_size();
    let complete = |rows: usize, grid: TokenGrid| {
        let mut r = request(vec![Some(1)], official.clone());
        r.prefix = Some(Prefix { rows, grids: vec![grid] });
        session.check(&r)
    };
    assert_eq!(refused(complete(0, grid.clone())).0, Arg::PrefixRows);
    assert_eq!(refused(complete(side, grid.clone())).0, Arg::PrefixRows);
    let mut short = grid.clone();
    short.ids.pop();
    assert_eq!(refused(complete(2, short)).0, Arg::PrefixCount);
    let mut bad_id = grid.clone();
    bad_id.ids[side * side + side + 1] = 1024; // sub-token 1, row 1, column 1
    let (arg, index, message) = refused(complete(2, bad_id.clone()));
    assert_eq!((arg, index), (Arg::Prefix, Some(side * side + side + 1)));
    assert_eq!(message, "is 1024 (sub-token 1, row 1, column 1); its ids are 0..1024");
    complete(1, bad_id).expect("ids below the kept rows are not read");

    assert!(session.generate(&request(vec![Some(2)], official), &mut stop).unwrap().is_none());
}

#[test]
fn loads_report_every_tensor_and_stop_when_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer.safetensors");
    fqgan::builtin::tokenizer::<Cpu>(LoadPurpose::Inference, &Default::default()).unwrap().save(&path).unwrap();
    let mut seen = Vec::new();
    let mut record = |done, total| {
        seen.push((done, total));
        ControlFlow::Continue(())
    };
    let source = ModelSource::File(&path);
    let session = TokenizerSession::load_with_progress(source, None, DeviceChoice::Cpu, &mut record).unwrap();
    assert_eq!(session.unwrap().fingerprint(), tokenizer().fingerprint());
    let total = seen[0].1;
    assert!(total > 10, "{total} tensors");
    assert_eq!(seen, (1..=total).map(|done| (done, total)).collect::<Vec<_>>());

    let mut calls = 0;
    let mut stop_at_third = |done, _| {
        calls += 1;
        if done == 3 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    };
    assert!(TokenizerSession::load_with_progress(source, None, DeviceChoice::Cpu, &mut stop_at_third)
        .unwrap()
        .is_none());
    assert_eq!(calls, 3);
    let far = GeneratorSession::load_with_progress(ModelSource::Builtin, None, DeviceChoice::Cpu, &mut stop);
    assert!(far.unwrap().is_none());
}

/// Bf16 weights on the CPU generate; the ndarray device, which holds f32 only, refuses them
/// by name instead of panicking inside the backend.
#[test]
fn bf16_weights_generate_on_the_cpu_and_are_refused_on_ndarray() {
    let mut far = generator();
    far.set_weight_precision(fqgan::WeightPrecision::Bf16).unwrap();
    let request = GenerateRequest::new(vec![Some(1)], far.config().k(), SubTokenSampling::greedy(2.0), 0);
    let grids = far.generate(&request, &mut no_progress).unwrap().expect("not cancelled");
    assert_eq!(grids.len(), 1);
    let mut on_ndarray = GeneratorSession::load(ModelSource::Builtin, None, DeviceChoice::NdArray).unwrap();
    let (arg, _, message) = refused(on_ndarray.set_weight_precision(fqgan::WeightPrecision::Bf16));
    assert_eq!(arg, Arg::WeightPrecision);
    assert!(message.contains("ndarray device holds f32 weights only"), "{message}");
    on_ndarray.set_weight_precision(fqgan::WeightPrecision::F32).unwrap();
}
