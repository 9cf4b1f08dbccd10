//! The `.fqt` reader against damaged and hostile files: every one must be a clear error that
//! names the problem, never a panic, a garbage image, or a huge allocation.

use std::path::Path;

use fqgan::fingerprint::Fingerprint;
use fqgan::tiling::TileLayout;
use fqgan::tokens::{Coding, TokenFile, MIN_FILE_LEN};

/// A 150x70 RGBA image in 64 px tiles (3x2 tiles), k = 2 with codebooks of 1024 and 300 ids.
fn sample(coding: Coding) -> TokenFile {
    let layout = TileLayout::new(150, 70, 64, 8).unwrap();
    let (grid, sizes) = (8u32, vec![1024u32, 300]);
    let per_tile = sizes.len() * 64;
    // Skewed ids, as real token streams are: a few codes dominate.
    let tokens = (0..layout.count() * per_tile)
        .map(|i| {
            let size = sizes[i / 64 % 2];
            ((i as u32).wrapping_mul(2654435761) >> 7) % size % (1 + (i as u32 % 7) * 40)
        })
        .collect();
    let alpha = (0..150 * 70).map(|i| if i % 150 < 100 { 255 } else { (i % 7 * 30) as u8 }).collect();
    TokenFile {
        fingerprint: Fingerprint([7; 16]),
        layout,
        grid,
        codebook_sizes: sizes,
        tokens,
        alpha: Some(alpha),
        coding,
    }
}

fn read(bytes: &[u8]) -> Result<TokenFile, String> {
    TokenFile::from_bytes(bytes, Path::new("sample.fqt")).map_err(|e| e.to_string())
}

/// Re-seals a modified body with a valid checksum, to reach the checks behind it.
fn seal(mut body: Vec<u8>) -> Vec<u8> {
    let crc = crc32fast::hash(&body);
    body.extend_from_slice(&crc.to_le_bytes());
    body
}

fn unsealed(coding: Coding) -> Vec<u8> {
    let mut bytes = sample(coding).to_bytes().unwrap();
    bytes.truncate(bytes.len() - 4);
    bytes
}

#[test]
fn both_codings_round_trip_and_entropy_coding_is_smaller() {
    let packed = sample(Coding::Packed).to_bytes().unwrap();
    let entropy = sample(Coding::Entropy).to_bytes().unwrap();
    assert_eq!(read(&packed).unwrap(), sample(Coding::Packed));
    assert_eq!(read(&entropy).unwrap(), sample(Coding::Entropy));
    assert!(entropy.len() < packed.len(), "entropy {} vs packed {}", entropy.len(), packed.len());
}

#[test]
fn files_are_written_atomically_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.fqt");
    sample(Coding::Entropy).write(&path).unwrap();
    assert_eq!(TokenFile::read(&path).unwrap(), sample(Coding::Entropy));
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers, vec![std::ffi::OsString::from("a.fqt")], "no temporary files remain");
}

#[test]
fn every_truncation_is_an_error() {
    for coding in [Coding::Packed, Coding::Entropy] {
        let bytes = sample(coding).to_bytes().unwrap();
        for len in 0..bytes.len() {
            let err = read(&bytes[..len]).unwrap_err();
            assert!(err.contains("sample.fqt"), "{err}");
            assert!(err.contains("truncated") || err.contains("checksum"), "length {len}: {err}");
        }
        assert!(read(&bytes[..10]).unwrap_err().contains(&format!("at least {MIN_FILE_LEN}")));
    }
}

#[test]
fn every_flipped_byte_is_an_error() {
    for coding in [Coding::Packed, Coding::Entropy] {
        let bytes = sample(coding).to_bytes().unwrap();
        for at in 0..bytes.len() {
            for bit in [0, 5] {
                let mut damaged = bytes.clone();
                damaged[at] ^= 1 << bit;
                let err = read(&damaged).unwrap_err();
                assert!(
                    err.contains("checksum")
                        || err.contains("magic")
                        || err.contains("version")
                        || err.contains("not a .fqt"),
                    "byte {at}: {err}"
                );
            }
        }
    }
}

#[test]
fn wrong_magic_and_version_are_named() {
    let mut bytes = sample(Coding::Packed).to_bytes().unwrap();
    bytes[..4].copy_from_slice(b"\x89PNG");
    assert!(read(&bytes).unwrap_err().contains("not a .fqt file"));
    let mut body = unsealed(Coding::Packed);
    body[4] = 2;
    let err = read(&seal(body)).unwrap_err();
    assert!(err.contains("version 2 is not supported"), "{err}");
}

#[test]
fn wrong_model_is_refused() {
    let file = read(&sample(Coding::Entropy).to_bytes().unwrap()).unwrap();
    let err = file.check_model(Fingerprint([8; 16]), Path::new("sample.fqt")).unwrap_err().to_string();
    assert!(err.contains("07070707") && err.contains("08080808"), "{err}");
    file.check_model(Fingerprint([7; 16]), Path::new("sample.fqt")).unwrap();
}

/// Overwrites a little-endian field at `offset` and re-seals.
fn with_field(coding: Coding, offset: usize, value: &[u8]) -> Result<TokenFile, String> {
    let mut body = unsealed(coding);
    body[offset..offset + value.len()].copy_from_slice(value);
    read(&seal(body))
}

#[test]
fn absurd_dimensions_fail_before_allocating() {
    for coding in [Coding::Packed, Coding::Entropy] {
        let err = with_field(coding, 24, &u32::MAX.to_le_bytes()).unwrap_err();
        assert!(err.contains("4294967295x70"), "{err}");
        // In range per side but 2^28 pixels.
        let mut body = unsealed(coding);
        body[24..32].copy_from_slice(&[0, 0x40, 0, 0, 0, 0x40, 0, 0]);
        let err = read(&seal(body)).unwrap_err();
        assert!(err.contains("16384x16384") && err.contains("pixels"), "{err}");
        // A plausible 8192x8192 image whose tile counts match, but whose payload is tiny.
        let mut body = unsealed(coding);
        body[24..32].copy_from_slice(&[0, 0x20, 0, 0, 0, 0x20, 0, 0]);
        body[40..44].copy_from_slice(&[147, 0, 147, 0]);
        let err = read(&seal(body)).unwrap_err();
        assert!(err.contains("token payload"), "{err}");
    }
    let err = with_field(Coding::Entropy, 44, &[200]).unwrap_err();
    assert!(err.contains("k = 200"), "{err}");
    let err = with_field(Coding::Entropy, 48, &u32::MAX.to_le_bytes()).unwrap_err();
    assert!(err.contains("codebook size 0 is 4294967295"), "{err}");
}

#[test]
fn inconsistent_fields_are_named() {
    let cases: [(usize, &[u8], &str); 7] = [
        (6, &[0x80, 0], "unknown flags"),
        (32, &[3], "channel layout 3"),
        (33, &[1], "reserved"),
        (40, &[9, 0], "tile counts 9x2"),
        (38, &[7, 0], "token grid 7"),
        (36, &[40, 0], "overlap 40"),
        (45, &[1], "reserved"),
    ];
    for (offset, value, expected) in cases {
        let err = with_field(Coding::Packed, offset, value).unwrap_err();
        assert!(err.contains(expected), "offset {offset}: '{expected}' not in: {err}");
    }
    // A payload length that points past the end of the file.
    let err = with_field(Coding::Packed, 56, &u32::MAX.to_le_bytes()).unwrap_err();
    assert!(err.contains("token payload needs 4294967295 bytes"), "{err}");
    // Ids beyond the codebook: shrink codebook 1 from 300 to 2.
    let err = with_field(Coding::Packed, 52, &2u32.to_le_bytes()).unwrap_err();
    assert!(err.contains("token payload") || err.contains("beyond"), "{err}");
    // Bytes after the last section.
    let mut body = unsealed(Coding::Packed);
    body.push(0);
    assert!(read(&seal(body)).unwrap_err().contains("1 unexpected bytes"));
}

/// Fuzz-style: many random mutations of valid files (flips, overwrites with boundary values,
/// insertions, deletions, truncations), half of them re-sealed so the checks behind the
/// checksum are reached. The reader must return, never panic; whatever parses must write
/// back and read as itself. (The libFuzzer target in `fuzz/` does the same, guided.)
#[test]
fn random_mutations_never_panic() {
    let mut state = 0x9E3779B97F4A7C15u64;
    let mut random = move |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n.max(1) as u64) as usize
    };
    let seeds = [sample(Coding::Packed), sample(Coding::Entropy)].map(|f| f.to_bytes().unwrap());
    let mut parsed = 0;
    for round in 0..20_000 {
        let mut body = seeds[round % 2][..seeds[round % 2].len() - 4].to_vec();
        for _ in 0..1 + random(4) {
            let at = random(body.len());
            match random(5) {
                0 => body[at] ^= 1 << random(8),
                1 => body[at] = [0, 1, 0x7F, 0x80, 0xFF][random(5)],
                2 => body.insert(at, random(256) as u8),
                3 => {
                    body.remove(at);
                }
                _ => body.truncate(at),
            }
            if body.is_empty() {
                body.push(0);
            }
        }
        let bytes = if round % 4 < 2 { seal(body) } else { body };
        if let Ok(file) = read(&bytes) {
            parsed += 1;
            assert_eq!(read(&file.to_bytes().unwrap()).unwrap(), file, "round {round}");
        }
    }
    println!("{parsed} of 20000 mutated files parsed");
}

/// A file whose fingerprint matches but whose tiles, grid or codebooks do not fit the model
/// (only a forged fingerprint gets that far) is refused by the check the codec and
/// `fqgan_fqt_read` share.
#[test]
fn a_forged_fingerprint_does_not_smuggle_in_another_layout() {
    let config = fqgan::TokenizerConfig::preset("small-dual-ds8").unwrap();
    let fingerprint = Fingerprint([7; 16]);
    let source = Path::new("forged.fqt");
    let mut file = sample(Coding::Packed);
    file.codebook_sizes = vec![1024, 1024];
    file.check_fits(fingerprint, &config, source).unwrap();
    let forgeries: [(&str, fn(&mut TokenFile)); 3] = [
        ("tile", |f| f.layout = TileLayout::new(150, 70, 32, 8).unwrap()),
        ("grid", |f| f.grid = 4),
        ("codebooks", |f| f.codebook_sizes = vec![1024, 300]),
    ];
    for (what, forge) in forgeries {
        let mut forged = file.clone();
        forge(&mut forged);
        let err = forged.check_fits(fingerprint, &config, source).unwrap_err().to_string();
        assert!(err.contains("forged.fqt") && err.contains("do not fit this model"), "{what}: {err}");
    }
    let err = file.check_fits(Fingerprint([8; 16]), &config, source).unwrap_err().to_string();
    assert!(err.contains("made by model"), "{err}");
}

/// A size query reads the header only: it reports what the header says (the same as a full
/// read), and a payload it never decodes cannot make it fail or cost anything.
#[test]
fn the_header_alone_answers_a_size_query() {
    let source = Path::new("query.fqt");
    for coding in [Coding::Packed, Coding::Entropy] {
        let file = sample(coding);
        let bytes = file.to_bytes().unwrap();
        let header = TokenFile::read_header(&bytes, source).unwrap();
        assert_eq!(header, file.header());
        assert_eq!(header.token_count(), file.tokens.len());
        assert!(header.has_alpha);
        // Garble the last payload bytes and re-seal: the header still reads, the file does not.
        let mut body = bytes[..bytes.len() - 4].to_vec();
        let end = body.len();
        body[end - 40..end].iter_mut().for_each(|b| *b ^= 0x5a);
        let garbled = seal(body);
        assert_eq!(TokenFile::read_header(&garbled, source).unwrap(), header);
        assert!(TokenFile::from_bytes(&garbled, source).is_err(), "{coding:?}");
        // The checksum is still checked.
        let mut corrupt = bytes.clone();
        corrupt[60] ^= 1;
        assert!(TokenFile::read_header(&corrupt, source).unwrap_err().to_string().contains("checksum"));
    }
}

/// `TokenFile::max_len` sizes a buffer before the ids exist: no ids or alpha values may make a
/// file longer (uniform noise, and ids built to defeat the adaptive models), and packed ids
/// without alpha take exactly the bound.
#[test]
fn no_content_outgrows_the_size_bound() {
    let noise = |i: usize| (i as u32).wrapping_mul(2654435761).rotate_left(11);
    let contents: [(&str, Box<dyn Fn(usize, u32) -> u32>); 3] = [
        ("noise", Box::new(move |i, size| noise(i) % size)),
        ("alternating", Box::new(|i, size| if i % 2 == 0 { 0 } else { size - 1 })),
        ("rare after common", Box::new(|i, size| if i % 97 == 96 { size - 1 } else { 0 })),
    ];
    for (name, id) in &contents {
        for alpha in [false, true] {
            for coding in [Coding::Packed, Coding::Entropy] {
                let mut file = sample(coding);
                let sizes = file.codebook_sizes.clone();
                for (i, token) in file.tokens.iter_mut().enumerate() {
                    *token = id(i, sizes[i / 64 % 2]);
                }
                file.alpha = alpha.then(|| (0..150 * 70).map(|i| id(i, 256) as u8).collect());
                let bound = TokenFile::max_len(&file.layout, file.grid, &sizes, alpha, coding);
                let len = file.to_bytes().unwrap().len() as u64;
                assert!(len <= bound, "{name}, alpha {alpha}, {coding:?}: {len} bytes > bound {bound}");
                if coding == Coding::Packed && !alpha {
                    assert_eq!(len, bound, "{name}: packed ids have an exact size");
                }
            }
        }
    }
}
