//! The lossless entropy stage of `.fqt` files: an adaptive binary range coder (the LZMA
//! design: 11-bit probabilities, shift-5 adaptation, carry propagation through a cached byte)
//! and bit-tree models that code multi-bit symbols with it.
//!
//! Binary decisions rather than a multi-symbol frequency table because codebooks reach 2^24
//! entries: a bit tree shares statistics between nearby ids through their common prefixes, and
//! its memory is capped by coding only the top [`MAX_TREE_BITS`] bits adaptively.

/// Probabilities are P(bit = 0) in units of 2^-11.
const PROB_BITS: u32 = 11;
const PROB_ONE: u16 = 1 << PROB_BITS;
const MOVE_BITS: u32 = 5;
/// The coder renormalises (shifts a byte out) whenever the range drops below this.
const TOP: u32 = 1 << 24;

/// Adaptive bits per symbol at most; lower bits of wider symbols are coded at probability 1/2.
pub const MAX_TREE_BITS: u32 = 16;

/// An upper bound on binary decisions per payload bit. The most skewed probability the
/// adaptation reaches is 2017/2048, which still costs 0.0219 bits, so no stream can decode
/// more than 1 / 0.0219 < 46 decisions per bit (48 leaves a margin for rounding). The reader
/// checks counts against this before allocating anything.
pub const MAX_DECISIONS_PER_BIT: u64 = 48;

/// The most bits one decision can add to a stream, for writers that size a buffer before they
/// have the symbols: the rarest outcome adaptation allows has probability 31/2048 (6.05 bits),
/// a direct bit costs exactly 1, and truncating `range` to whole units costs under 2^-12 bit.
pub const MAX_BITS_PER_DECISION: u64 = 7;

/// The most bytes a stream of `decisions` decisions can take, including the leading cache byte
/// and the five bytes `finish` flushes.
pub fn max_stream_len(decisions: u64) -> u64 {
    (decisions * MAX_BITS_PER_DECISION).div_ceil(8) + 8
}

pub struct RangeEncoder {
    low: u64,
    range: u32,
    cache: u8,
    cache_size: u64,
    out: Vec<u8>,
}

impl Default for RangeEncoder {
    fn default() -> Self {
        Self { low: 0, range: u32::MAX, cache: 0, cache_size: 1, out: Vec::new() }
    }
}

impl RangeEncoder {
    pub fn encode_bit(&mut self, prob: &mut u16, bit: bool) {
        let bound = (self.range >> PROB_BITS) * u32::from(*prob);
        if bit {
            self.low += u64::from(bound);
            self.range -= bound;
            *prob -= *prob >> MOVE_BITS;
        } else {
            self.range = bound;
            *prob += (PROB_ONE - *prob) >> MOVE_BITS;
        }
        self.normalize();
    }

    /// The low `count` bits of `value`, most significant first, at probability 1/2 each.
    pub fn encode_direct(&mut self, value: u32, count: u32) {
        for i in (0..count).rev() {
            self.range >>= 1;
            if (value >> i) & 1 == 1 {
                self.low += u64::from(self.range);
            }
            self.normalize();
        }
    }

    pub fn finish(mut self) -> Vec<u8> {
        for _ in 0..5 {
            self.shift_low();
        }
        self.out
    }

    fn normalize(&mut self) {
        while self.range < TOP {
            self.range <<= 8;
            self.shift_low();
        }
    }

    /// Emits the top byte of `low`, holding back runs of 0xFF until a carry is settled.
    fn shift_low(&mut self) {
        if self.low < 0xFF00_0000 || self.low > 0xFFFF_FFFF {
            let carry = (self.low >> 32) as u8;
            let mut byte = self.cache;
            loop {
                self.out.push(byte.wrapping_add(carry));
                byte = 0xFF;
                self.cache_size -= 1;
                if self.cache_size == 0 {
                    break;
                }
            }
            self.cache = (self.low >> 24) as u8;
        }
        self.cache_size += 1;
        self.low = (self.low & 0x00FF_FFFF) << 8;
    }
}

/// Decodes what [`RangeEncoder`] wrote. Never panics on arbitrary input: running off the end
/// of the payload or an impossible first state is an error.
pub struct RangeDecoder<'a> {
    input: &'a [u8],
    pos: usize,
    range: u32,
    code: u32,
}

/// Why a range-coded stream could not be decoded.
#[derive(Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The stream needed more bytes than the payload holds.
    Truncated,
    /// The stream's first bytes are not a state the encoder can produce.
    BadStart,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Truncated => write!(f, "entropy-coded stream ends early"),
            Self::BadStart => write!(f, "entropy-coded stream has an invalid start"),
        }
    }
}

impl<'a> RangeDecoder<'a> {
    pub fn new(input: &'a [u8]) -> Result<Self, DecodeError> {
        if input.len() < 5 {
            return Err(DecodeError::Truncated);
        }
        // The encoder's first byte is its initial cache, always 0 (no carry can reach it).
        if input[0] != 0 {
            return Err(DecodeError::BadStart);
        }
        let code = u32::from_be_bytes([input[1], input[2], input[3], input[4]]);
        if code == u32::MAX {
            return Err(DecodeError::BadStart);
        }
        Ok(Self { input, pos: 5, range: u32::MAX, code })
    }

    pub fn decode_bit(&mut self, prob: &mut u16) -> Result<bool, DecodeError> {
        let bound = (self.range >> PROB_BITS) * u32::from(*prob);
        let bit = if self.code < bound {
            self.range = bound;
            *prob += (PROB_ONE - *prob) >> MOVE_BITS;
            false
        } else {
            self.code -= bound;
            self.range -= bound;
            *prob -= *prob >> MOVE_BITS;
            true
        };
        self.normalize()?;
        Ok(bit)
    }

    pub fn decode_direct(&mut self, count: u32) -> Result<u32, DecodeError> {
        let mut value = 0;
        for _ in 0..count {
            self.range >>= 1;
            let bit = self.code >= self.range;
            if bit {
                self.code -= self.range;
            }
            value = (value << 1) | u32::from(bit);
            self.normalize()?;
        }
        Ok(value)
    }

    fn normalize(&mut self) -> Result<(), DecodeError> {
        while self.range < TOP {
            let byte = *self.input.get(self.pos).ok_or(DecodeError::Truncated)?;
            self.pos += 1;
            self.range <<= 8;
            self.code = (self.code << 8) | u32::from(byte);
        }
        Ok(())
    }
}

/// An adaptive model of `bits`-bit symbols: a binary tree of probabilities over the top
/// `min(bits, MAX_TREE_BITS)` bits, the rest coded directly.
pub struct BitTree {
    bits: u32,
    tree_bits: u32,
    probs: Vec<u16>,
}

impl BitTree {
    pub fn new(bits: u32) -> Self {
        let tree_bits = bits.min(MAX_TREE_BITS);
        Self { bits, tree_bits, probs: vec![PROB_ONE / 2; 1 << tree_bits] }
    }

    /// Binary decisions one symbol costs (for the reader's size bound).
    pub fn decisions(&self) -> u64 {
        u64::from(self.bits)
    }

    pub fn encode(&mut self, encoder: &mut RangeEncoder, symbol: u32) {
        let direct = self.bits - self.tree_bits;
        let high = symbol >> direct;
        let mut node = 1usize;
        for i in (0..self.tree_bits).rev() {
            let bit = (high >> i) & 1;
            encoder.encode_bit(&mut self.probs[node], bit == 1);
            node = (node << 1) | bit as usize;
        }
        encoder.encode_direct(symbol, direct);
    }

    pub fn decode(&mut self, decoder: &mut RangeDecoder<'_>) -> Result<u32, DecodeError> {
        let direct = self.bits - self.tree_bits;
        let mut node = 1usize;
        for _ in 0..self.tree_bits {
            node = (node << 1) | usize::from(decoder.decode_bit(&mut self.probs[node])?);
        }
        let high = (node - (1 << self.tree_bits)) as u32;
        Ok((high << direct) | decoder.decode_direct(direct)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(bits: u32, symbols: &[u32]) -> Vec<u8> {
        let mut encoder = RangeEncoder::default();
        let mut model = BitTree::new(bits);
        for &s in symbols {
            model.encode(&mut encoder, s);
        }
        let bytes = encoder.finish();
        let mut decoder = RangeDecoder::new(&bytes).unwrap();
        let mut model = BitTree::new(bits);
        let decoded: Vec<u32> = symbols.iter().map(|_| model.decode(&mut decoder).unwrap()).collect();
        assert_eq!(decoded, symbols);
        bytes
    }

    #[test]
    fn skewed_symbols_shrink_and_round_trip() {
        // A Zipf-like stream over 1024 ids: far fewer bytes than 10 bits each.
        let mut state = 12345u32;
        let symbols: Vec<u32> = (0..20000)
            .map(|_| {
                state = state.wrapping_mul(1664525).wrapping_add(1013904223);
                (state >> 8) % 1024 % ((state >> 20) % 64 + 1)
            })
            .collect();
        let bytes = round_trip(10, &symbols);
        assert!(bytes.len() * 8 < symbols.len() * 10 * 6 / 10, "{} bytes", bytes.len());
    }

    #[test]
    fn wide_and_carry_heavy_streams_round_trip() {
        // 24-bit ids exercise the direct bits; all-ones streams exercise carry propagation.
        let wide: Vec<u32> = (0..5000u32).map(|i| i.wrapping_mul(2654435761) >> 8).collect();
        round_trip(24, &wide);
        round_trip(8, &vec![255; 10000]);
        round_trip(1, &[1, 0, 1, 1, 1, 1, 0]);
        round_trip(3, &[]);
    }

    #[test]
    fn constant_streams_respect_the_decision_bound() {
        let bytes = round_trip(8, &vec![0; 100000]);
        let decisions = 100000 * 8;
        assert!(decisions <= bytes.len() as u64 * 8 * MAX_DECISIONS_PER_BIT, "{} bytes", bytes.len());
    }

    #[test]
    fn truncated_or_bad_streams_are_errors() {
        let mut encoder = RangeEncoder::default();
        let mut model = BitTree::new(12);
        for s in 0..3000 {
            model.encode(&mut encoder, s % 4096);
        }
        let bytes = encoder.finish();
        let mut decoder = RangeDecoder::new(&bytes[..bytes.len() / 2]).unwrap();
        let mut model = BitTree::new(12);
        let result: Result<Vec<u32>, _> = (0..3000).map(|_| model.decode(&mut decoder)).collect();
        assert_eq!(result.unwrap_err(), DecodeError::Truncated);
        assert_eq!(RangeDecoder::new(&[0, 1, 2]).err(), Some(DecodeError::Truncated));
        assert_eq!(RangeDecoder::new(&[7, 0, 0, 0, 0]).err(), Some(DecodeError::BadStart));
    }
}
