//! Parity of LPIPS, the PatchGAN discriminator and the GAN losses with the official code.

use std::path::PathBuf;

use fqgan::burn::tensor::backend::Backend;
use fqgan::device::{Cpu, NdArray};
use fqgan::verify::verify_case;

#[test]
fn lpips_and_patchgan_match_the_official_code() {
    assert_case_passes::<Cpu>();
}

/// The alternative CPU backend (`--device ndarray`) computes the same losses.
#[test]
fn lpips_and_patchgan_match_the_official_code_on_ndarray() {
    assert_case_passes::<NdArray>();
}

fn assert_case_passes<B: Backend>() {
    let case = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/golden/lpips_patchgan");
    let report = verify_case::<B>(&case, &Default::default()).unwrap();
    println!("{report}");
    assert_eq!(report.failed(), 0, "{report}");
    assert!(report.skipped.is_empty(), "unchecked: {:?}", report.skipped);
    for name in ["lpips", "disc_logits_fake", "d_loss_hinge", "g_loss_non_saturating"] {
        assert!(report.check(name).is_some(), "{name} was not checked");
    }
}
