//! Image quality metrics.

use image::RgbImage;

/// Peak signal-to-noise ratio over all RGB8 values, in dB (capped at 120 dB for identical images).
pub fn psnr(a: &RgbImage, b: &RgbImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions(), "psnr compares images of one size");
    let (a, b) = (a.as_raw(), b.as_raw());
    let mse = a.iter().zip(b).map(|(x, y)| (*x as f64 - *y as f64).powi(2)).sum::<f64>() / a.len() as f64;
    if mse == 0.0 {
        return 120.0;
    }
    10.0 * (255.0f64.powi(2) / mse).log10()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psnr_of_a_known_error() {
        let a = RgbImage::from_pixel(4, 4, image::Rgb([100, 100, 100]));
        let b = RgbImage::from_pixel(4, 4, image::Rgb([110, 100, 100]));
        // mse = 100 / 3 -> 10 log10(255^2 * 3 / 100)
        assert!((psnr(&a, &b) - 10.0 * (255.0f64 * 255.0 * 3.0 / 100.0).log10()).abs() < 1e-9);
        assert_eq!(psnr(&a, &a), 120.0);
    }
}
