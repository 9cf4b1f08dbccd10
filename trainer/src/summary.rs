//! The table `fqgan compress` prints: one row per file and a total.

use std::fmt::Write;

use crate::assets::Row;

/// Renders `rows` as a fixed-width table. The total's bits per pixel is over all pixels; its
/// PSNR and SSIM are means over the files that have them.
pub fn table(rows: &[Row]) -> String {
    let name_width = rows.iter().map(|r| r.name.chars().count()).chain([5]).max().unwrap_or(5).min(48);
    let mut out = String::new();
    let header = ["size", "alpha", "original B", ".fqt B", "ratio", "bpp", "PSNR dB", "SSIM"];
    let _ = write!(out, "{:<name_width$}", "file");
    let _ = writeln!(
        out,
        "  {:>11}  {:>5}  {:>12}  {:>10}  {:>7}  {:>7}  {:>7}  {:>6}",
        header[0], header[1], header[2], header[3], header[4], header[5], header[6], header[7]
    );
    let rule = "-".repeat(name_width + 88);
    let _ = writeln!(out, "{rule}");
    for row in rows {
        let name = shorten(&row.name, name_width);
        if let Some(error) = &row.error {
            let _ = writeln!(out, "{name:<name_width$}  FAILED: {error}");
            continue;
        }
        let _ = writeln!(
            out,
            "{name:<name_width$}  {:>11}  {:>5}  {:>12}  {:>10}  {:>7}  {:>7.4}  {:>7}  {:>6}",
            format!("{}x{}", row.width, row.height),
            if row.alpha { "yes" } else { "no" },
            row.original_bytes,
            row.fqt_bytes,
            ratio(row.original_bytes, row.fqt_bytes),
            row.bits_per_pixel,
            row.psnr.map(|v| format!("{v:.2}")).unwrap_or_else(|| "-".into()),
            row.ssim.map(|v| format!("{v:.4}")).unwrap_or_else(|| "-".into()),
        );
    }
    let ok: Vec<&Row> = rows.iter().filter(|r| r.error.is_none()).collect();
    let original: u64 = ok.iter().map(|r| r.original_bytes).sum();
    let fqt: u64 = ok.iter().map(|r| r.fqt_bytes).sum();
    let pixels: f64 = ok.iter().map(|r| f64::from(r.width) * f64::from(r.height)).sum();
    let mean = |values: Vec<f64>| (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64);
    let psnr = mean(ok.iter().filter_map(|r| r.psnr).collect());
    let ssim = mean(ok.iter().filter_map(|r| r.ssim).collect());
    let _ = writeln!(out, "{rule}");
    let label = format!("total ({} of {} files)", ok.len(), rows.len());
    let _ = writeln!(
        out,
        "{label:<name_width$}  {:>11}  {:>5}  {:>12}  {:>10}  {:>7}  {:>7.4}  {:>7}  {:>6}",
        format!("{:.2} Mpx", pixels / 1e6),
        "",
        original,
        fqt,
        ratio(original, fqt),
        if pixels > 0.0 { fqt as f64 * 8.0 / pixels } else { 0.0 },
        psnr.map(|v| format!("{v:.2}")).unwrap_or_else(|| "-".into()),
        ssim.map(|v| format!("{v:.4}")).unwrap_or_else(|| "-".into()),
    );
    out
}

fn ratio(original: u64, compressed: u64) -> String {
    if compressed == 0 {
        return "-".into();
    }
    format!("{:.1}x", original as f64 / compressed as f64)
}

/// Keeps the end of a long name (the file name matters more than the folders).
fn shorten(name: &str, width: usize) -> String {
    let count = name.chars().count();
    if count <= width {
        return name.to_string();
    }
    let tail: String = name.chars().skip(count - (width - 3)).collect();
    format!("...{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, original: u64, fqt: u64, psnr: f64) -> Row {
        Row {
            name: name.into(),
            width: 100,
            height: 50,
            alpha: false,
            original_bytes: original,
            fqt_bytes: fqt,
            bits_per_pixel: fqt as f64 * 8.0 / 5000.0,
            psnr: Some(psnr),
            ssim: Some(0.5),
            error: None,
        }
    }

    #[test]
    fn totals_sum_bytes_and_average_quality_skipping_failures() {
        let mut bad = row("bad.png", 10, 0, 0.0);
        bad.error = Some("cannot decode image".into());
        let text = table(&[row("a.png", 1000, 100, 20.0), row("b.png", 3000, 300, 30.0), bad]);
        let total = text.lines().last().unwrap();
        assert!(total.starts_with("total (2 of 3 files)"), "{text}");
        for expected in ["4000", "400", "10.0x", "0.3200", "25.00", "0.5000"] {
            assert!(total.contains(expected), "'{expected}' missing from: {total}");
        }
        assert!(text.contains("bad.png") && text.contains("FAILED: cannot decode image"), "{text}");
    }
}
