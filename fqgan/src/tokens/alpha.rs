//! Lossless alpha planes: each value is predicted from its left, upper and upper-left
//! neighbours (the LOCO-I median predictor); one adaptive decision says whether the prediction
//! is exact, and only misses code their residual. Both models are chosen by whether the
//! neighbourhood is flat. Texture alpha is mostly flat or a sharp cut-out, which this codes in
//! a few hundredths of a bit per pixel.

use super::range_coder::{BitTree, DecodeError, RangeDecoder, RangeEncoder};

/// Binary decisions per alpha value at least (for the reader's size bound).
pub const DECISIONS_PER_VALUE: u64 = 1;

/// Adaptive state: per context, P(prediction exact) and the residual model.
struct Models {
    exact: [u16; 2],
    residual: [BitTree; 2],
}

impl Models {
    fn new() -> Self {
        Self { exact: [1 << 10; 2], residual: [BitTree::new(8), BitTree::new(8)] }
    }
}

fn predict(plane: &[u8], width: usize, at: usize) -> (u8, usize) {
    let (x, y) = (at % width, at / width);
    let left = if x > 0 {
        plane[at - 1]
    } else if y > 0 {
        plane[at - width]
    } else {
        255
    };
    let up = if y > 0 { plane[at - width] } else { left };
    let up_left = if x > 0 && y > 0 { plane[at - width - 1] } else { up };
    let prediction = if up_left >= left.max(up) {
        left.min(up)
    } else if up_left <= left.min(up) {
        left.max(up)
    } else {
        (i16::from(left) + i16::from(up) - i16::from(up_left)) as u8
    };
    let context = usize::from(left != up || up != up_left);
    (prediction, context)
}

pub fn encode(plane: &[u8], width: usize) -> Vec<u8> {
    let mut encoder = RangeEncoder::default();
    let mut models = Models::new();
    for at in 0..plane.len() {
        let (prediction, context) = predict(plane, width, at);
        let residual = plane[at].wrapping_sub(prediction);
        encoder.encode_bit(&mut models.exact[context], residual != 0);
        if residual != 0 {
            models.residual[context].encode(&mut encoder, u32::from(residual - 1));
        }
    }
    encoder.finish()
}

/// Decodes `width * height` values; the caller has bounded the size against the payload.
pub fn decode(payload: &[u8], width: usize, height: usize) -> Result<Vec<u8>, DecodeError> {
    let mut decoder = RangeDecoder::new(payload)?;
    let mut models = Models::new();
    let mut plane = vec![0u8; width * height];
    for at in 0..plane.len() {
        let (prediction, context) = predict(&plane, width, at);
        let residual = if decoder.decode_bit(&mut models.exact[context])? {
            // A corrupt stream may decode 255; wrapping keeps it a (wrong) value, the checksum
            // having already vouched for the bytes.
            (models.residual[context].decode(&mut decoder)? as u8).wrapping_add(1)
        } else {
            0
        };
        plane[at] = prediction.wrapping_add(residual);
    }
    Ok(plane)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planes_round_trip_exactly_and_flat_ones_are_tiny() {
        let (w, h) = (37, 23);
        let gradient: Vec<u8> = (0..w * h).map(|i| ((i % w) * 7 + (i / w) * 3) as u8).collect();
        let cutout: Vec<u8> = (0..w * h).map(|i| if (i % w) * (i / w) % 11 < 5 { 0 } else { 255 }).collect();
        let noise: Vec<u8> = (0..w * h).map(|i| (i as u32).wrapping_mul(2654435761).rotate_left(9) as u8).collect();
        for plane in [gradient, cutout, noise, vec![255; w * h]] {
            assert_eq!(decode(&encode(&plane, w), w, h).unwrap(), plane);
        }
        let flat = encode(&vec![255; 256 * 256], 256);
        assert!(flat.len() < 256 * 256 / 200, "{} bytes for a flat 256x256 plane", flat.len());
    }
}
