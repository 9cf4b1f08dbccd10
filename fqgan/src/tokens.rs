//! `.fqt` token files: an image as tiles of k token grids, bound to one model by its
//! fingerprint. The byte layout is specified in `docs/fqt-format.md`; this is its one
//! implementation.
//!
//! The reader trusts nothing: the checksum is verified before any field is used, every
//! length and count is checked against the bytes that are really there and against fixed
//! limits before anything is allocated, and decoded ids are checked against their codebook.

mod alpha;
pub mod bitpack;
pub mod range_coder;

use std::path::Path;

use crate::error::{Error, Result};
use crate::fingerprint::Fingerprint;
use crate::tiling::TileLayout;
use bitpack::{bits_for, packed_len};
use range_coder::{BitTree, RangeDecoder, RangeEncoder, MAX_DECISIONS_PER_BIT};

pub const MAGIC: [u8; 4] = *b"FQTK";
pub const VERSION: u16 = 1;
/// Fixed header fields before the codebook sizes.
const FIXED_HEADER: usize = 48;
/// Smallest file: fixed header, one codebook size, two payload lengths, checksum.
pub const MIN_FILE_LEN: usize = FIXED_HEADER + 4 + 4 + 4 + 4;
/// Larger files are refused before being read (a 16384^2 image needs far less).
pub const MAX_FILE_LEN: u64 = 1 << 30;
pub const MAX_CODEBOOKS: usize = 16;
pub const MAX_CODEBOOK_SIZE: u32 = 1 << 24;
pub const MAX_TILE: u32 = 4096;
/// Token ids per file at most (a 16384^2 texture at downsample 8, k = 4, needs 2^24).
pub const MAX_TOKENS: u64 = 1 << 26;

const FLAG_ENTROPY: u16 = 1;
const LAYOUT_RGB: u8 = 1;
const LAYOUT_RGBA: u8 = 2;

/// How token ids are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coding {
    /// Bit-packed at ceil(log2 n) bits per id.
    Packed,
    /// Adaptive range coding, one model per sub-codebook (lossless).
    Entropy,
}

/// The contents of a `.fqt` file.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenFile {
    pub fingerprint: Fingerprint,
    /// Image size and tiling; `layout.tile` is the model's image size.
    pub layout: TileLayout,
    /// Side of each tile's token grid (tile / downsample).
    pub grid: u32,
    /// Size of each of the k sub-codebooks.
    pub codebook_sizes: Vec<u32>,
    /// Token ids as [tiles (row-major), k, grid, grid].
    pub tokens: Vec<u32>,
    /// The alpha plane (width x height, row-major), stored losslessly; `None` for RGB.
    pub alpha: Option<Vec<u8>>,
    pub coding: Coding,
}

/// Byte counts of a file's sections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SectionSizes {
    pub header: usize,
    pub tokens: usize,
    pub alpha: usize,
    pub total: usize,
}

impl TokenFile {
    pub fn k(&self) -> usize {
        self.codebook_sizes.len()
    }

    /// Ids per tile: k grids of grid x grid.
    pub fn tokens_per_tile(&self) -> usize {
        self.k() * (self.grid as usize).pow(2)
    }

    /// Bits that bit-packing alone would spend on the token ids.
    pub fn packed_token_bits(&self) -> u64 {
        let per_tile: u64 =
            self.codebook_sizes.iter().map(|&n| u64::from(bits_for(n))).sum::<u64>() * u64::from(self.grid).pow(2);
        per_tile * self.layout.count() as u64
    }

    /// Errors unless this file was made by the model with `fingerprint`.
    pub fn check_model(&self, fingerprint: Fingerprint, source: &Path) -> Result<()> {
        self.header().check_model(fingerprint, source)
    }

    /// Errors unless this file was made by the model with `fingerprint` and its layout fits
    /// that model's `config` (see [`Header::check_fits`]).
    pub fn check_fits(&self, fingerprint: Fingerprint, config: &crate::TokenizerConfig, source: &Path) -> Result<()> {
        self.header().check_fits(fingerprint, config, source)
    }

    /// The header this file writes.
    pub fn header(&self) -> Header {
        Header {
            fingerprint: self.fingerprint,
            layout: self.layout,
            grid: self.grid,
            codebook_sizes: self.codebook_sizes.clone(),
            has_alpha: self.alpha.is_some(),
            coding: self.coding,
        }
    }

    /// Checks the invariants a writer relies on; reading checks the same things.
    fn validate(&self, source: &Path) -> Result<()> {
        let fail = |message: String| Err(Error::tokens(source, message));
        let l = &self.layout;
        TileLayout::new(l.width, l.height, l.tile, l.overlap).map_err(|e| Error::tokens(source, e.to_string()))?;
        if l.tile > MAX_TILE || self.grid == 0 || l.tile % self.grid != 0 {
            return fail(format!(
                "tile {} / grid {}: tile must be <= {MAX_TILE} and a multiple of the grid",
                l.tile, self.grid
            ));
        }
        if self.codebook_sizes.is_empty() || self.k() > MAX_CODEBOOKS {
            return fail(format!("k = {}: must be 1..={MAX_CODEBOOKS}", self.k()));
        }
        if let Some(&n) = self.codebook_sizes.iter().find(|&&n| !(2..=MAX_CODEBOOK_SIZE).contains(&n)) {
            return fail(format!("codebook size {n}: must be 2..={MAX_CODEBOOK_SIZE}"));
        }
        if self.tokens.len() != l.count() * self.tokens_per_tile() {
            return fail(format!(
                "{} token ids for {} tiles of {} ids",
                self.tokens.len(),
                l.count(),
                self.tokens_per_tile()
            ));
        }
        if let Some(alpha) = &self.alpha {
            if alpha.len() != l.width as usize * l.height as usize {
                return fail(format!("alpha plane has {} values for {}x{} pixels", alpha.len(), l.width, l.height));
            }
        }
        let plane = (self.grid as usize).pow(2);
        for (at, &id) in self.tokens.iter().enumerate() {
            let codebook = at / plane % self.k();
            if id >= self.codebook_sizes[codebook] {
                return fail(format!(
                    "token {at} is id {id}, beyond sub-codebook {codebook}'s size {}",
                    self.codebook_sizes[codebook]
                ));
            }
        }
        Ok(())
    }

    /// The ids of sub-codebook `c`, for all tiles in order (the file stores them this way so
    /// that each sub-codebook is one run of one width and one statistics model).
    fn codebook_run(&self, c: usize) -> Vec<u32> {
        let plane = (self.grid as usize).pow(2);
        self.tokens.chunks(self.tokens_per_tile()).flat_map(|tile| &tile[c * plane..(c + 1) * plane]).copied().collect()
    }

    /// The most bytes a file of `layout` can take, whatever its ids and alpha values: exact for
    /// packed ids, a worst case for range-coded ids and for alpha. For callers that must size a
    /// buffer before the model has produced the ids (the C API's whole-image encode).
    pub fn max_len(layout: &TileLayout, grid: u32, codebook_sizes: &[u32], has_alpha: bool, coding: Coding) -> u64 {
        let ids = layout.count() as u64 * u64::from(grid).pow(2);
        let payload: u64 = match coding {
            Coding::Packed => codebook_sizes.iter().map(|&n| packed_len(ids, bits_for(n))).sum(),
            Coding::Entropy => {
                range_coder::max_stream_len(codebook_sizes.iter().map(|&n| ids * u64::from(bits_for(n))).sum())
            }
        };
        // An alpha value is one decision, plus 8 for its residual when the prediction misses.
        let pixels = u64::from(layout.width) * u64::from(layout.height);
        let alpha = if has_alpha { range_coder::max_stream_len(pixels * 9) } else { 0 };
        (FIXED_HEADER + 4 * codebook_sizes.len()) as u64 + 4 + payload + 4 + alpha + 4
    }

    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        self.validate(Path::new("<token file being written>"))?;
        let l = &self.layout;
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        let flags = if self.coding == Coding::Entropy { FLAG_ENTROPY } else { 0 };
        out.extend_from_slice(&flags.to_le_bytes());
        out.extend_from_slice(&self.fingerprint.0);
        out.extend_from_slice(&l.width.to_le_bytes());
        out.extend_from_slice(&l.height.to_le_bytes());
        out.push(if self.alpha.is_some() { LAYOUT_RGBA } else { LAYOUT_RGB });
        out.push(0);
        for value in [l.tile, l.overlap, self.grid, l.tiles_x(), l.tiles_y()] {
            out.extend_from_slice(&(value as u16).to_le_bytes());
        }
        out.push(self.k() as u8);
        out.extend_from_slice(&[0; 3]);
        debug_assert_eq!(out.len(), FIXED_HEADER);
        for &n in &self.codebook_sizes {
            out.extend_from_slice(&n.to_le_bytes());
        }
        let payload = self.token_payload();
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&payload);
        let alpha = self.alpha.as_ref().map(|a| alpha::encode(a, l.width as usize)).unwrap_or_default();
        out.extend_from_slice(&(alpha.len() as u32).to_le_bytes());
        out.extend_from_slice(&alpha);
        let checksum = crc32fast::hash(&out);
        out.extend_from_slice(&checksum.to_le_bytes());
        Ok(out)
    }

    fn token_payload(&self) -> Vec<u8> {
        match self.coding {
            Coding::Packed => (0..self.k())
                .flat_map(|c| bitpack::pack(&self.codebook_run(c), bits_for(self.codebook_sizes[c])))
                .collect(),
            Coding::Entropy => {
                let mut encoder = RangeEncoder::default();
                for (c, &n) in self.codebook_sizes.iter().enumerate() {
                    let mut model = BitTree::new(bits_for(n));
                    for id in self.codebook_run(c) {
                        model.encode(&mut encoder, id);
                    }
                }
                encoder.finish()
            }
        }
    }

    pub fn section_sizes(&self) -> Result<SectionSizes> {
        let bytes = self.to_bytes()?;
        let header = FIXED_HEADER + 4 * self.k();
        let tokens = u32::from_le_bytes(bytes[header..header + 4].try_into().expect("4 bytes")) as usize;
        let alpha_at = header + 4 + tokens;
        let alpha = u32::from_le_bytes(bytes[alpha_at..alpha_at + 4].try_into().expect("4 bytes")) as usize;
        Ok(SectionSizes { header, tokens, alpha, total: bytes.len() })
    }

    /// Writes the file atomically (temporary file, then rename).
    pub fn write(&self, path: &Path) -> Result<()> {
        let bytes = self.to_bytes().map_err(|e| match e {
            Error::Tokens { message, .. } => Error::tokens(path, message),
            other => other,
        })?;
        crate::weights::write_atomic(path, &bytes)
    }

    pub fn read(path: &Path) -> Result<Self> {
        let len = std::fs::metadata(path).map_err(|e| Error::io(path, e))?.len();
        if len > MAX_FILE_LEN {
            return Err(Error::tokens(
                path,
                format!("{len} bytes is larger than any .fqt file ({MAX_FILE_LEN} at most)"),
            ));
        }
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_bytes(&bytes, path)
    }

    /// Parses a file's bytes; `source` names it in errors.
    pub fn from_bytes(bytes: &[u8], source: &Path) -> Result<Self> {
        Self::parse_body(checked_body(bytes, source)?, source)
    }

    /// Reads only the header of a file's bytes (after its checksum): what a size query needs,
    /// without decoding a payload that may hold 2^26 ids.
    pub fn read_header(bytes: &[u8], source: &Path) -> Result<Header> {
        let body = checked_body(bytes, source)?;
        Ok(parse_header(&mut Reader { bytes: body, pos: 0, source })?.0)
    }

    /// Parses everything before the checksum. Public so that the fuzz target can reach the
    /// field checks past the checksum; files should be read with [`TokenFile::from_bytes`].
    pub fn parse_body(body: &[u8], source: &Path) -> Result<Self> {
        let fail = |message: String| Error::tokens(source, message);
        let mut r = Reader { bytes: body, pos: 0, source };
        let (header, channel_layout) = parse_header(&mut r)?;
        let Header { fingerprint, layout, grid, codebook_sizes, coding, .. } = header;
        let (width, height, k) = (layout.width, layout.height, codebook_sizes.len());
        let runs = layout.count() as u64 * u64::from(grid).pow(2);
        let token_len = r.u32("token payload length")? as usize;
        let token_payload = r.take(token_len, "token payload")?;
        let tokens = match coding {
            Coding::Packed => {
                let expected: u64 = codebook_sizes.iter().map(|&n| packed_len(runs, bits_for(n))).sum();
                if token_len as u64 != expected {
                    return Err(fail(format!(
                        "token payload is {token_len} bytes; {runs} ids per sub-codebook pack into {expected}"
                    )));
                }
                let mut at = 0;
                codebook_sizes
                    .iter()
                    .map(|&n| {
                        let len = packed_len(runs, bits_for(n)) as usize;
                        at += len;
                        bitpack::unpack(&token_payload[at - len..at], bits_for(n), runs as usize)
                    })
                    .collect::<Vec<_>>()
            }
            Coding::Entropy => {
                let decisions: u64 = codebook_sizes.iter().map(|&n| runs * u64::from(bits_for(n))).sum();
                check_decisions(decisions, token_len, "token payload", source)?;
                let mut decoder = RangeDecoder::new(token_payload).map_err(|e| fail(format!("token payload: {e}")))?;
                codebook_sizes
                    .iter()
                    .map(|&n| {
                        let mut model = BitTree::new(bits_for(n));
                        (0..runs).map(|_| model.decode(&mut decoder)).collect::<Result<Vec<u32>, _>>()
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| fail(format!("token payload: {e}")))?
            }
        };

        let alpha_len = r.u32("alpha payload length")? as usize;
        let alpha_payload = r.take(alpha_len, "alpha payload")?;
        let alpha = match (channel_layout, alpha_len) {
            (LAYOUT_RGB, 0) => None,
            (LAYOUT_RGB, _) => return Err(fail(format!("RGB file carries a {alpha_len}-byte alpha payload"))),
            _ => {
                let pixels = u64::from(width) * u64::from(height);
                check_decisions(pixels * alpha::DECISIONS_PER_VALUE, alpha_len, "alpha payload", source)?;
                Some(
                    alpha::decode(alpha_payload, width as usize, height as usize)
                        .map_err(|e| fail(format!("alpha payload: {e}")))?,
                )
            }
        };
        if r.pos != body.len() {
            return Err(fail(format!("{} unexpected bytes after the alpha payload", body.len() - r.pos)));
        }

        let plane = (grid as usize).pow(2);
        let mut interleaved = Vec::with_capacity(runs as usize * k);
        for tile in 0..layout.count() {
            for run in &tokens {
                interleaved.extend_from_slice(&run[tile * plane..(tile + 1) * plane]);
            }
        }
        let file = Self { fingerprint, layout, grid, codebook_sizes, tokens: interleaved, alpha, coding };
        file.validate(source)?;
        Ok(file)
    }
}

/// Everything a `.fqt` header says, read without touching the payloads.
#[derive(Clone, Debug, PartialEq)]
pub struct Header {
    pub fingerprint: Fingerprint,
    pub layout: TileLayout,
    pub grid: u32,
    pub codebook_sizes: Vec<u32>,
    pub has_alpha: bool,
    pub coding: Coding,
}

impl Header {
    /// Errors unless this file was made by the model with `fingerprint`.
    pub fn check_model(&self, fingerprint: Fingerprint, source: &Path) -> Result<()> {
        if self.fingerprint != fingerprint {
            return Err(Error::tokens(
                source,
                format!("made by model {} but the loaded model is {fingerprint}; decode it with the model it was compressed with", self.fingerprint),
            ));
        }
        Ok(())
    }

    /// Token ids the file holds: tiles x k x grid^2 (checked against [`MAX_TOKENS`]).
    pub fn token_count(&self) -> usize {
        self.layout.count() * self.codebook_sizes.len() * (self.grid as usize).pow(2)
    }

    /// Errors unless this file was made by the model with `fingerprint` and its layout fits
    /// that model's `config`: tile size, token grid and codebook sizes. Only a forged
    /// fingerprint passes the first check and fails the second; refuse rather than feed the
    /// model bad shapes.
    pub fn check_fits(&self, fingerprint: Fingerprint, config: &crate::TokenizerConfig, source: &Path) -> Result<()> {
        self.check_model(fingerprint, source)?;
        let sizes: Vec<u32> = config.codebooks.iter().map(|c| c.size as u32).collect();
        let (tile, grid) = (config.image_size as u32, config.grid_size() as u32);
        if self.layout.tile != tile || self.grid != grid || self.codebook_sizes != sizes {
            return Err(Error::tokens(
                source,
                format!(
                    "tiles of {} px with {g}x{g} grids and codebooks {:?} do not fit this model ({tile} px, \
                     {grid}x{grid}, {sizes:?})",
                    self.layout.tile,
                    self.codebook_sizes,
                    g = self.grid,
                ),
            ));
        }
        Ok(())
    }
}

/// The header fields, checked; also returns the raw channel layout byte.
fn parse_header(r: &mut Reader<'_>) -> Result<(Header, u8)> {
    let source = r.source;
    let fail = |message: String| Error::tokens(source, message);
    r.take(6, "magic and version")?;
    let flags = r.u16("flags")?;
    if flags & !FLAG_ENTROPY != 0 {
        return Err(fail(format!("unknown flags {flags:#06x}")));
    }
    let coding = if flags & FLAG_ENTROPY != 0 { Coding::Entropy } else { Coding::Packed };
    let fingerprint = Fingerprint(r.take(16, "model fingerprint")?.try_into().expect("16 bytes"));
    let (width, height) = (r.u32("width")?, r.u32("height")?);
    let channel_layout = r.u8("channel layout")?;
    if channel_layout != LAYOUT_RGB && channel_layout != LAYOUT_RGBA {
        return Err(fail(format!("channel layout {channel_layout} is unknown (1 = RGB, 2 = RGBA)")));
    }
    r.zero(1, "reserved byte after channel layout")?;
    let tile = u32::from(r.u16("tile size")?);
    let overlap = u32::from(r.u16("tile overlap")?);
    let grid = u32::from(r.u16("token grid")?);
    let (tiles_x, tiles_y) = (u32::from(r.u16("tiles across")?), u32::from(r.u16("tiles down")?));
    let k = usize::from(r.u8("k")?);
    r.zero(3, "reserved bytes after k")?;
    let layout = TileLayout::new(width, height, tile, overlap).map_err(|e| fail(e.to_string()))?;
    if (tiles_x, tiles_y) != (layout.tiles_x(), layout.tiles_y()) {
        return Err(fail(format!(
            "tile counts {tiles_x}x{tiles_y} do not match a {width}x{height} image in tiles of {tile} overlapping by {overlap} ({}x{})",
            layout.tiles_x(),
            layout.tiles_y()
        )));
    }
    if tile > MAX_TILE || grid == 0 || tile % grid != 0 {
        return Err(fail(format!(
            "tile {tile} / token grid {grid}: tile must be <= {MAX_TILE} and a multiple of the grid"
        )));
    }
    if !(1..=MAX_CODEBOOKS).contains(&k) {
        return Err(fail(format!("k = {k}: must be 1..={MAX_CODEBOOKS}")));
    }
    let mut codebook_sizes = Vec::with_capacity(k);
    for c in 0..k {
        let n = r.u32("codebook size")?;
        if !(2..=MAX_CODEBOOK_SIZE).contains(&n) {
            return Err(fail(format!("codebook size {c} is {n}: must be 2..={MAX_CODEBOOK_SIZE}")));
        }
        codebook_sizes.push(n);
    }

    // Every count below is a product of checked header fields, so it fits in u64; each is
    // checked against the payload bytes before its buffer is allocated.
    let runs = layout.count() as u64 * u64::from(grid).pow(2);
    if runs * k as u64 > MAX_TOKENS {
        return Err(fail(format!(
            "{} token ids ({} tiles of {k} {grid}x{grid} grids) exceed the limit of {MAX_TOKENS}",
            runs * k as u64,
            layout.count()
        )));
    }
    let has_alpha = channel_layout == LAYOUT_RGBA;
    Ok((Header { fingerprint, layout, grid, codebook_sizes, has_alpha, coding }, channel_layout))
}

/// The bytes before the checksum, once magic, version and checksum are right.
fn checked_body<'a>(bytes: &'a [u8], source: &Path) -> Result<&'a [u8]> {
    let fail = |message: String| Error::tokens(source, message);
    if bytes.len() < MIN_FILE_LEN {
        return Err(fail(format!("truncated: {} bytes, a .fqt file has at least {MIN_FILE_LEN}", bytes.len())));
    }
    if bytes[..4] != MAGIC {
        return Err(fail(format!(
            "not a .fqt file (starts with {:02x?}, expected {:02x?} \"FQTK\")",
            &bytes[..4],
            MAGIC
        )));
    }
    let version = u16::from_le_bytes([bytes[4], bytes[5]]);
    if version != VERSION {
        return Err(fail(format!("format version {version} is not supported (this build reads version {VERSION})")));
    }
    let (body, stored) = bytes.split_at(bytes.len() - 4);
    let (stored, computed) = (u32::from_le_bytes(stored.try_into().expect("4 bytes")), crc32fast::hash(body));
    if stored != computed {
        return Err(fail(format!(
            "checksum mismatch (stored {stored:08x}, computed {computed:08x}): the file is corrupt or truncated"
        )));
    }
    Ok(body)
}

/// Refuses a range-coded payload too short to hold `decisions` binary decisions (see
/// [`MAX_DECISIONS_PER_BIT`]): this bounds every allocation by the file's real size.
fn check_decisions(decisions: u64, payload_len: usize, what: &str, source: &Path) -> Result<()> {
    let most = payload_len as u64 * 8 * MAX_DECISIONS_PER_BIT;
    if decisions > most {
        return Err(Error::tokens(
            source,
            format!("{what} of {payload_len} bytes cannot hold the {decisions} coded decisions the header implies"),
        ));
    }
    Ok(())
}

/// Bounds-checked little-endian field reads; errors name the field.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    source: &'a Path,
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize, field: &str) -> Result<&'a [u8]> {
        let rest = self.bytes.len() - self.pos;
        if len > rest {
            return Err(Error::tokens(
                self.source,
                format!("truncated: {field} needs {len} bytes at offset {}, {rest} remain", self.pos),
            ));
        }
        self.pos += len;
        Ok(&self.bytes[self.pos - len..self.pos])
    }

    fn u8(&mut self, field: &str) -> Result<u8> {
        Ok(self.take(1, field)?[0])
    }

    fn u16(&mut self, field: &str) -> Result<u16> {
        Ok(u16::from_le_bytes(self.take(2, field)?.try_into().expect("2 bytes")))
    }

    fn u32(&mut self, field: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4, field)?.try_into().expect("4 bytes")))
    }

    fn zero(&mut self, len: usize, field: &str) -> Result<()> {
        if self.take(len, field)?.iter().any(|&b| b != 0) {
            return Err(Error::tokens(self.source, format!("{field} must be zero")));
        }
        Ok(())
    }
}
