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
    psnr_from_mse(mse, 255.0)
}

/// PSNR in dB of a mean squared error `mse` for values spanning `peak_to_peak` (255 for 8-bit
/// pixels, 2 for images in [-1, 1] as the models see them).
pub fn psnr_from_mse(mse: f64, peak_to_peak: f64) -> f64 {
    10.0 * (peak_to_peak * peak_to_peak / mse).log10()
}

/// Structural similarity (Wang et al. 2004) with the usual settings: an 11x11 Gaussian window
/// (sigma 1.5), K1 = 0.01, K2 = 0.03, L = 255, computed per RGB channel and averaged over
/// channels and over window positions where the window fits inside the image (images smaller
/// than the window use the whole image as one window).
pub fn ssim(a: &RgbImage, b: &RgbImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions(), "ssim compares images of one size");
    let (w, h) = (a.width() as usize, a.height() as usize);
    let radius = 5.min((w.min(h) - 1) / 2);
    let window = gaussian(radius, 1.5);
    let (c1, c2) = ((0.01f64 * 255.0).powi(2), (0.03f64 * 255.0).powi(2));
    let mut total = 0.0;
    for channel in 0..3 {
        let plane = |image: &RgbImage| image.pixels().map(|p| f64::from(p[channel])).collect::<Vec<_>>();
        let (x, y) = (plane(a), plane(b));
        let product = |p: &[f64], q: &[f64]| p.iter().zip(q).map(|(u, v)| u * v).collect::<Vec<_>>();
        let [mx, my, xx, yy, xy] =
            [&x, &y, &product(&x, &x), &product(&y, &y), &product(&x, &y)].map(|p| blur(p, w, h, &window));
        let mut sum = 0.0;
        for i in 0..mx.len() {
            let (vx, vy, cov) = (xx[i] - mx[i] * mx[i], yy[i] - my[i] * my[i], xy[i] - mx[i] * my[i]);
            sum += ((2.0 * mx[i] * my[i] + c1) * (2.0 * cov + c2))
                / ((mx[i] * mx[i] + my[i] * my[i] + c1) * (vx + vy + c2));
        }
        total += sum / mx.len() as f64;
    }
    total / 3.0
}

fn gaussian(radius: usize, sigma: f64) -> Vec<f64> {
    let raw: Vec<f64> =
        (0..=2 * radius).map(|i| (-((i as f64 - radius as f64).powi(2)) / (2.0 * sigma * sigma)).exp()).collect();
    let sum: f64 = raw.iter().sum();
    raw.into_iter().map(|v| v / sum).collect()
}

/// Separable filtering with `window`, keeping only positions where it fits ("valid").
fn blur(plane: &[f64], w: usize, h: usize, window: &[f64]) -> Vec<f64> {
    let n = window.len();
    let (ow, oh) = (w + 1 - n, h + 1 - n);
    let rows: Vec<f64> = (0..h)
        .flat_map(|y| {
            (0..ow).map(move |x| window.iter().enumerate().map(|(i, k)| k * plane[y * w + x + i]).sum::<f64>())
        })
        .collect();
    (0..oh)
        .flat_map(|y| {
            (0..ow)
                .map(|x| window.iter().enumerate().map(|(i, k)| k * rows[(y + i) * ow + x]).sum::<f64>())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn textured(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([((x * 37 + y * 11) % 251) as u8, ((x * x + y * 3) % 241) as u8, ((x ^ y) * 5 % 256) as u8])
        })
    }

    #[test]
    fn ssim_is_one_for_identical_images_and_falls_with_distortion() {
        let a = textured(40, 30);
        assert!((ssim(&a, &a) - 1.0).abs() < 1e-12);
        let noisy = |amount: u32| {
            RgbImage::from_fn(40, 30, |x, y| {
                let n = (x.wrapping_mul(2654435761) ^ y.wrapping_mul(40503)) % (2 * amount + 1);
                image::Rgb(a.get_pixel(x, y).0.map(|v| (v as i32 + n as i32 - amount as i32).clamp(0, 255) as u8))
            })
        };
        let (light, heavy) = (ssim(&a, &noisy(5)), ssim(&a, &noisy(60)));
        assert!(1.0 > light && light > heavy && heavy > 0.0, "{light} {heavy}");
        assert!((ssim(&a, &noisy(60)) - ssim(&noisy(60), &a)).abs() < 1e-12, "symmetric");
    }

    #[test]
    fn ssim_of_a_constant_shift_is_the_luminance_term() {
        // Flat images: variances are 0, so SSIM is (2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1).
        let a = RgbImage::from_pixel(16, 16, image::Rgb([100, 100, 100]));
        let b = RgbImage::from_pixel(16, 16, image::Rgb([150, 150, 150]));
        let c1 = (0.01f64 * 255.0).powi(2);
        let expected = (2.0 * 100.0 * 150.0 + c1) / (100.0f64.powi(2) + 150.0f64.powi(2) + c1);
        assert!((ssim(&a, &b) - expected).abs() < 1e-9, "{} vs {expected}", ssim(&a, &b));
        assert!((ssim(&RgbImage::new(3, 2), &RgbImage::new(3, 2)) - 1.0).abs() < 1e-12, "tiny images work");
    }

    #[test]
    fn psnr_of_a_known_error() {
        let a = RgbImage::from_pixel(4, 4, image::Rgb([100, 100, 100]));
        let b = RgbImage::from_pixel(4, 4, image::Rgb([110, 100, 100]));
        // mse = 100 / 3 -> 10 log10(255^2 * 3 / 100)
        assert!((psnr(&a, &b) - 10.0 * (255.0f64 * 255.0 * 3.0 / 100.0).log10()).abs() < 1e-9);
        assert_eq!(psnr(&a, &a), 120.0);
    }
}
