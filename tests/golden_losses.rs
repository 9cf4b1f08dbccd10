//! Parity of LPIPS, the PatchGAN discriminator and the GAN losses with the official code.

use std::path::PathBuf;

use fqgan::device::Cpu;
use fqgan::verify::verify_case;

#[test]
fn lpips_and_patchgan_match_the_official_code() {
    let case = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/golden/lpips_patchgan");
    let report = verify_case::<Cpu>(&case, &Default::default()).unwrap();
    println!("{report}");
    assert_eq!(report.failed(), 0, "{report}");
    assert!(report.skipped.is_empty(), "unchecked: {:?}", report.skipped);
    for name in ["lpips", "disc_logits_fake", "d_loss_hinge", "g_loss_non_saturating"] {
        assert!(report.check(name).is_some(), "{name} was not checked");
    }
}
