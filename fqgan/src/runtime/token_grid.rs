//! The tokens of one image on the host.

use super::Arg;
use crate::error::{Error, Result};

/// The tokens of one image: `k` grids of `side` x `side` ids, one per sub-codebook, stored
/// sub-codebook-major and then row by row (the layout of `.fqt` tiles and of the C API).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenGrid {
    pub k: usize,
    pub side: usize,
    pub ids: Vec<u32>,
}

impl TokenGrid {
    /// The ids of sub-codebook `j`, row by row.
    pub fn plane(&self, j: usize) -> &[u32] {
        let n = self.side * self.side;
        &self.ids[j * n..(j + 1) * n]
    }
}

/// Errors naming the first id in the top `rows` rows of each `side` x `side` plane of `ids`
/// that is not below that plane's entry of `sizes`. Indices in the message count from
/// `offset` (a grid's place in a list); `plane_name(j)` describes plane j.
pub(super) fn check_ids(
    ids: &[u32],
    side: usize,
    rows: usize,
    sizes: &[usize],
    (arg, offset): (Arg, usize),
    plane_name: impl Fn(usize) -> String,
) -> Result<()> {
    let per_plane = side * side;
    for (j, (plane, &size)) in ids.chunks_exact(per_plane).zip(sizes).enumerate() {
        let kept = &plane[..rows * side];
        if let Some(at) = kept.iter().position(|&id| id as usize >= size) {
            return Err(Error::argument_at(
                arg,
                offset + j * per_plane + at,
                format!(
                    "is {} ({}, row {}, column {}); its ids are 0..{size}",
                    kept[at],
                    plane_name(j),
                    at / side,
                    at % side
                ),
            ));
        }
    }
    Ok(())
}
