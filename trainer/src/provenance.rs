//! What a trained model file records about how it was made, under its `provenance` metadata.

use anyhow::{Context, Result};

/// `--note`'s help, shared by the training commands.
pub const NOTE_HELP: &str = "Extra provenance for the final model files, KEY=VALUE, repeatable (e.g. --note \
                             \"data=ufoai-textures 2.5-2\" --note \"licence=GPL-2+\"): stored with the data, steps \
                             and commit under the files' `provenance` metadata";

/// `fields` (what the command trained on and with), plus the trainer's version and commit and
/// the caller's `--note KEY=VALUE`s under `notes`.
pub fn record(notes: &[String], fields: serde_json::Value) -> Result<serde_json::Value> {
    let mut note_map = serde_json::Map::new();
    for note in notes {
        let (key, value) = note.split_once('=').with_context(|| format!("--note '{note}' is not KEY=VALUE"))?;
        note_map.insert(key.to_string(), value.into());
    }
    // Best effort: the checkout the trainer was built from, wherever it runs; "unknown" for a
    // build outside a git checkout.
    let commit = std::process::Command::new("git")
        .args(["-C", env!("CARGO_MANIFEST_DIR"), "rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let mut record = serde_json::json!({
        "trainer": format!("fqgan-trainer {}", env!("CARGO_PKG_VERSION")),
        "commit": commit,
    });
    if let serde_json::Value::Object(fields) = fields {
        record.as_object_mut().expect("an object").extend(fields);
    }
    record["notes"] = note_map.into();
    Ok(record)
}
