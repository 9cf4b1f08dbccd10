//! Fixed-width bit packing of token ids: `bits` bits each, least significant bit first, into
//! little-endian bytes; the last byte is zero-padded.

/// Bits needed for ids `0..size` (ceil(log2 size)); at least 1.
pub fn bits_for(size: u32) -> u32 {
    (32 - (size.max(2) - 1).leading_zeros()).max(1)
}

/// Bytes that `count` ids of `bits` bits occupy.
pub fn packed_len(count: u64, bits: u32) -> u64 {
    (count * u64::from(bits)).div_ceil(8)
}

/// Packs `values` (each < 2^bits) at `bits` bits each.
pub fn pack(values: &[u32], bits: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(packed_len(values.len() as u64, bits) as usize);
    let mut acc: u64 = 0;
    let mut filled = 0;
    for &v in values {
        debug_assert!(bits == 32 || v >> bits == 0, "{v} does not fit in {bits} bits");
        acc |= u64::from(v) << filled;
        filled += bits;
        while filled >= 8 {
            out.push(acc as u8);
            acc >>= 8;
            filled -= 8;
        }
    }
    if filled > 0 {
        out.push(acc as u8);
    }
    out
}

/// Unpacks `count` ids of `bits` bits; `bytes` must be exactly [`packed_len`] long (the caller
/// has checked that, so a mismatch here is a bug).
pub fn unpack(bytes: &[u8], bits: u32, count: usize) -> Vec<u32> {
    assert_eq!(bytes.len() as u64, packed_len(count as u64, bits), "unpack: payload length");
    let mask = (1u64 << bits) - 1;
    let mut out = Vec::with_capacity(count);
    let mut acc: u64 = 0;
    let mut filled = 0;
    let mut bytes = bytes.iter();
    for _ in 0..count {
        while filled < bits {
            acc |= u64::from(*bytes.next().expect("length checked")) << filled;
            filled += 8;
        }
        out.push((acc & mask) as u32);
        acc >>= bits;
        filled -= bits;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_are_ceil_log2() {
        let cases = [(2, 1), (3, 2), (4, 2), (5, 3), (1024, 10), (1025, 11), (16384, 14), (1 << 24, 24)];
        for (size, bits) in cases {
            assert_eq!(bits_for(size), bits, "size {size}");
        }
    }

    #[test]
    fn every_width_round_trips() {
        for bits in 1..=24 {
            let values: Vec<u32> = (0..1000u32).map(|i| i.wrapping_mul(2654435761) & ((1 << bits) - 1)).collect();
            let bytes = pack(&values, bits);
            assert_eq!(bytes.len() as u64, packed_len(1000, bits));
            assert_eq!(unpack(&bytes, bits, values.len()), values, "{bits} bits");
        }
    }

    #[test]
    fn layout_is_lsb_first() {
        // 3-bit ids 1, 2, 7 -> bits 001 010 111 from the low end: 0b1_1101_0001 -> [0xD1, 0x01].
        assert_eq!(pack(&[1, 2, 7], 3), vec![0xD1, 0x01]);
    }
}
