//! Parity of the CLIP / DINOv2 teachers and the InfoNCE loss with the official towers on the
//! `teachers` golden case (tests/fixtures/golden/teachers).

use std::path::PathBuf;

use fqgan::burn::tensor::backend::Backend;
use fqgan::device::{Cpu, NdArray};
use fqgan::teachers::Teacher;
use fqgan::verify::verify_case;

fn case() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/golden/teachers")
}

#[test]
fn teachers_and_info_nce_match_the_official_towers() {
    assert_towers_match::<Cpu>();
}

/// The alternative CPU backend (`--device ndarray`) runs the same towers.
#[test]
fn teachers_and_info_nce_match_the_official_towers_on_ndarray() {
    assert_towers_match::<NdArray>();
}

fn assert_towers_match<B: Backend>() {
    let report = verify_case::<B>(&case(), &Default::default()).unwrap();
    println!("{report}");
    assert_eq!(report.failed(), 0, "{report}");
    assert!(report.skipped.is_empty(), "unchecked tensors {:?}", report.skipped);
    let expected = [
        "clip_pixel_values_0",
        "clip_embeddings_out",
        "clip_hidden_states_last",
        "clip_cls",
        "clip_infonce",
        "dino_pos_embed_interp",
        "dino_embeddings_out",
        "dino_last_hidden_state",
        "dino_cls",
        "dino_infonce",
    ];
    for name in expected {
        let check = report.check(name).unwrap_or_else(|| panic!("'{name}' was not checked"));
        assert!(check.passed, "{name}: {check:?}");
    }
}

#[test]
fn teacher_kind_follows_the_hf_model_type() {
    let dir = case();
    let device = Default::default();
    let clip =
        Teacher::<Cpu>::load(&dir.join("hf_config_clip.json"), &dir.join("weights_clip.safetensors"), &device).unwrap();
    assert!(matches!(clip, Teacher::Clip(_)));
    let dino =
        Teacher::<Cpu>::load(&dir.join("hf_config_dinov2.json"), &dir.join("weights_dinov2.safetensors"), &device)
            .unwrap();
    assert!(matches!(dino, Teacher::Dinov2(_)));
    assert_eq!((clip.hidden_size(), dino.hidden_size()), (32, 32));
}

#[test]
fn weights_of_the_other_teacher_are_rejected_with_the_file_name() {
    let dir = case();
    let err = Teacher::<Cpu>::load(
        &dir.join("hf_config_clip.json"),
        &dir.join("weights_dinov2.safetensors"),
        &Default::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("weights_dinov2.safetensors") && err.contains("missing"), "{err}");
}
