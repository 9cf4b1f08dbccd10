//! Parity with the official PyTorch tokenizer on the golden cases (tests/fixtures/golden).

use std::path::PathBuf;

use fqgan::device::Cpu;
use fqgan::verify::verify_case;

fn case(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/golden").join(name)
}

fn assert_case_passes(name: &str) {
    let report = verify_case::<Cpu>(&case(name), &Default::default()).unwrap();
    println!("{report}");
    assert_eq!(report.failed(), 0, "{name}:\n{report}");
    // Every headline output must really have been compared, not skipped.
    for expected in
        ["dec", "dec_code", "disentangle_loss", "train_disentangle_loss", "indices_vis", "quant_vis", "h_vis"]
    {
        let check = report.check(expected).unwrap_or_else(|| panic!("{name}: '{expected}' was not checked"));
        assert!(check.passed, "{name}: {check:?}");
    }
    assert!(report.skipped.is_empty(), "{name}: unchecked tensors {:?}", report.skipped);
}

#[test]
fn dual_ds16_matches_the_official_model() {
    assert_case_passes("tok_dual_ds16");
}

#[test]
fn triple_ds8_matches_the_official_model() {
    assert_case_passes("tok_triple_ds8");
}
