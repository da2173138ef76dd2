//! RFC 6962 / RFC 9162 Merkle trees over stored perfect-subtree hashes.
//!
//! A log stores, for every complete aligned subtree, its hash under [`NodeId`] `(level, index)`:
//! level 0 holds the leaf hashes, and node `(l, i)` covers leaves `[i·2^l, (i+1)·2^l)`. Every
//! subtree hash RFC 6962 needs (roots, proof nodes) is a combination of O(log n) such nodes, so
//! roots and proofs cost O(log n) reads. Readers are synchronous; a store that reads
//! asynchronously first asks [`nodes_needed`] which nodes an operation touches, fetches them in one
//! query, then runs the operation over a map.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use crate::Hash;

/// An aligned perfect subtree: leaves `[index << level, (index + 1) << level)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    pub level: u8,
    pub index: u64,
}

impl NodeId {
    pub fn new(level: u8, index: u64) -> Self {
        Self { level, index }
    }
}

/// A stored hash a computation needed and the reader did not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("tree node (level {}, index {}) is missing", .0.level, .0.index)]
pub struct MissingNode(pub NodeId);

/// Why a proof cannot be produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("index {index} is not inside a tree of size {size}")]
    OutOfRange { index: u64, size: u64 },
    #[error(transparent)]
    Missing(#[from] MissingNode),
}

/// Source of stored perfect-subtree hashes.
pub trait NodeReader {
    fn node(&self, id: NodeId) -> Result<Hash, MissingNode>;
}

impl NodeReader for HashMap<NodeId, Hash> {
    fn node(&self, id: NodeId) -> Result<Hash, MissingNode> {
        self.get(&id).copied().ok_or(MissingNode(id))
    }
}

/// `SHA-256(0x01 ‖ left ‖ right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of the empty tree: `SHA-256("")`.
pub fn empty_root() -> Hash {
    Sha256::digest(b"").into()
}

/// Largest power of two strictly smaller than `n` (n ≥ 2).
fn split(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// RFC 6962 `MTH(D[lo:hi])` for a range the tree structure produces (lo aligned to the
/// largest power of two not exceeding hi - lo), from stored nodes.
fn range_hash(lo: u64, hi: u64, r: &impl NodeReader) -> Result<Hash, MissingNode> {
    let n = hi - lo;
    if n.is_power_of_two() && lo.is_multiple_of(n) {
        return r.node(NodeId::new(
            n.trailing_zeros() as u8,
            lo >> n.trailing_zeros(),
        ));
    }
    let k = split(n);
    Ok(node_hash(
        &range_hash(lo, lo + k, r)?,
        &range_hash(lo + k, hi, r)?,
    ))
}

/// The root hash of the first `size` leaves.
pub fn root(size: u64, r: &impl NodeReader) -> Result<Hash, MissingNode> {
    if size == 0 {
        return Ok(empty_root());
    }
    range_hash(0, size, r)
}

/// RFC 6962 audit path for leaf `index` in the tree of `size` leaves, leaf side first.
pub fn inclusion_proof(
    index: u64,
    size: u64,
    r: &impl NodeReader,
) -> Result<Vec<Hash>, ProofError> {
    if index >= size {
        return Err(ProofError::OutOfRange { index, size });
    }
    let mut out = Vec::new();
    path(index, 0, size, r, &mut out)?;
    Ok(out)
}

fn path(
    m: u64,
    lo: u64,
    hi: u64,
    r: &impl NodeReader,
    out: &mut Vec<Hash>,
) -> Result<(), MissingNode> {
    let n = hi - lo;
    if n <= 1 {
        return Ok(());
    }
    let k = split(n);
    if m < k {
        path(m, lo, lo + k, r, out)?;
        out.push(range_hash(lo + k, hi, r)?);
    } else {
        path(m - k, lo + k, hi, r, out)?;
        out.push(range_hash(lo, lo + k, r)?);
    }
    Ok(())
}

/// RFC 6962 consistency proof between the trees of `first` and `second` leaves. Empty when
/// `first` is 0 or equal to `second`.
pub fn consistency_proof(
    first: u64,
    second: u64,
    r: &impl NodeReader,
) -> Result<Vec<Hash>, ProofError> {
    if first > second {
        return Err(ProofError::OutOfRange {
            index: first,
            size: second,
        });
    }
    let mut out = Vec::new();
    if first > 0 && first < second {
        subproof(first, 0, second, true, r, &mut out)?;
    }
    Ok(out)
}

fn subproof(
    m: u64,
    lo: u64,
    hi: u64,
    complete: bool,
    r: &impl NodeReader,
    out: &mut Vec<Hash>,
) -> Result<(), MissingNode> {
    let n = hi - lo;
    if m == n {
        if !complete {
            out.push(range_hash(lo, hi, r)?);
        }
        return Ok(());
    }
    let k = split(n);
    if m <= k {
        subproof(m, lo, lo + k, complete, r, out)?;
        out.push(range_hash(lo + k, hi, r)?);
    } else {
        subproof(m - k, lo + k, hi, false, r, out)?;
        out.push(range_hash(lo, lo + k, r)?);
    }
    Ok(())
}

/// The stored nodes an operation reads, found by running it over a reader that records.
pub fn nodes_needed<T>(op: impl FnOnce(&Recorder) -> T) -> Vec<NodeId> {
    let recorder = Recorder::default();
    let _ = op(&recorder);
    let mut ids = recorder.ids.into_inner();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// A reader that answers zeros and remembers what was asked (see [`nodes_needed`]).
#[derive(Debug, Default)]
pub struct Recorder {
    ids: std::cell::RefCell<Vec<NodeId>>,
}

impl NodeReader for Recorder {
    fn node(&self, id: NodeId) -> Result<Hash, MissingNode> {
        self.ids.borrow_mut().push(id);
        Ok([0; 32])
    }
}

/// RFC 9162 §2.1.3.2: does `proof` show leaf `index` with `leaf` is in the tree `(size, root)`?
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    s == 0 && r == *root
}

/// RFC 9162 §2.1.4.2: is the tree `(second, second_root)` an extension of `(first, first_root)`?
pub fn verify_consistency(
    first: u64,
    second: u64,
    proof: &[Hash],
    first_root: &Hash,
    second_root: &Hash,
) -> bool {
    if first > second {
        return false;
    }
    if first == second {
        return proof.is_empty() && first_root == second_root;
    }
    if first == 0 {
        return proof.is_empty() && *first_root == empty_root();
    }
    if proof.is_empty() {
        return false;
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if first.is_power_of_two() {
        path.push(*first_root);
    }
    path.extend_from_slice(proof);
    let (mut f, mut s) = (first - 1, second - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    fr == *first_root && sr == *second_root && s == 0
}

/// The compact range `[0, size)`: one perfect subtree per set bit of `size`, largest first.
/// Appending a leaf yields the nodes it completes, which is exactly what a log must store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    nodes: Vec<(NodeId, Hash)>,
}

impl Frontier {
    /// The node ids making up the compact range of `size` leaves, largest first.
    pub fn ids(size: u64) -> Vec<NodeId> {
        let mut ids = Vec::new();
        let mut start = 0u64;
        for level in (0..64u8).rev() {
            if size & (1 << level) != 0 {
                ids.push(NodeId::new(level, start >> level));
                start += 1 << level;
            }
        }
        ids
    }

    /// Rebuilds the frontier of `size` leaves from stored nodes.
    pub fn load(size: u64, r: &impl NodeReader) -> Result<Self, MissingNode> {
        let nodes = Self::ids(size)
            .into_iter()
            .map(|id| Ok((id, r.node(id)?)))
            .collect::<Result<_, MissingNode>>()?;
        Ok(Self { size, nodes })
    }

    /// A frontier from its size and its hashes, largest subtree first (as [`Frontier::hashes`]
    /// yields them); `None` when the count does not match the size.
    pub fn from_hashes(size: u64, hashes: Vec<Hash>) -> Option<Self> {
        let ids = Self::ids(size);
        (ids.len() == hashes.len()).then(|| Self {
            size,
            nodes: ids.into_iter().zip(hashes).collect(),
        })
    }

    /// The compact range's hashes, largest subtree first.
    pub fn hashes(&self) -> impl Iterator<Item = &Hash> {
        self.nodes.iter().map(|(_, h)| h)
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends leaf `size` and returns the nodes it completes (the leaf first).
    pub fn push(&mut self, leaf: Hash) -> Vec<(NodeId, Hash)> {
        let mut created = Vec::with_capacity(4);
        self.push_with(leaf, |id, h| created.push((id, *h)));
        created
    }

    /// [`Frontier::push`] without allocating: `sink` sees each completed node.
    pub fn push_with(&mut self, leaf: Hash, mut sink: impl FnMut(NodeId, &Hash)) {
        let mut id = NodeId::new(0, self.size);
        let mut hash = leaf;
        sink(id, &hash);
        while let Some((top, left)) = self.nodes.last() {
            if top.level != id.level {
                break;
            }
            hash = node_hash(left, &hash);
            id = NodeId::new(id.level + 1, id.index >> 1);
            self.nodes.pop();
            sink(id, &hash);
        }
        self.nodes.push((id, hash));
        self.size += 1;
    }

    /// The root hash of the leaves appended so far.
    pub fn root(&self) -> Hash {
        let mut iter = self.nodes.iter().rev();
        let Some((_, last)) = iter.next() else {
            return empty_root();
        };
        iter.fold(*last, |acc, (_, left)| node_hash(left, &acc))
    }
}

/// A whole tree in memory, every stored node kept: for tests, exports and tools.
#[derive(Debug, Clone, Default)]
pub struct MemoryTree {
    frontier: Frontier,
    nodes: HashMap<NodeId, Hash>,
}

impl MemoryTree {
    pub fn push(&mut self, leaf: Hash) {
        let nodes = &mut self.nodes;
        self.frontier.push_with(leaf, |id, h| {
            nodes.insert(id, *h);
        });
    }

    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    pub fn root(&self) -> Hash {
        self.frontier.root()
    }
}

impl NodeReader for MemoryTree {
    fn node(&self, id: NodeId) -> Result<Hash, MissingNode> {
        self.nodes.node(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leaf_hash;

    /// RFC 6962 §2.1 MTH, written directly from the definition.
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split(n as u64) as usize;
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(format!("leaf {i}").as_bytes()))
            .collect()
    }

    fn tree(leaves: &[Hash]) -> MemoryTree {
        let mut t = MemoryTree::default();
        for l in leaves {
            t.push(*l);
        }
        t
    }

    #[test]
    fn roots_match_the_definition_at_every_size() {
        let all = leaves(130);
        let t = tree(&all);
        let mut f = Frontier::default();
        for n in 0..=130u64 {
            let expected = mth(&all[..n as usize]);
            assert_eq!(root(n, &t).unwrap(), expected, "stored root at {n}");
            assert_eq!(f.root(), expected, "frontier root at {n}");
            assert_eq!(Frontier::load(n, &t).unwrap(), f, "frontier load at {n}");
            if n < 130 {
                f.push(all[n as usize]);
            }
        }
    }

    #[test]
    fn every_inclusion_proof_verifies_and_wrong_ones_fail() {
        let all = leaves(70);
        let t = tree(&all);
        for size in 1..=70u64 {
            let r = root(size, &t).unwrap();
            for i in 0..size {
                let p = inclusion_proof(i, size, &t).unwrap();
                assert!(
                    verify_inclusion(i, size, &all[i as usize], &p, &r),
                    "{i} in {size}"
                );
                let other = all[((i + 1) % size) as usize];
                if size > 1 {
                    assert!(!verify_inclusion(i, size, &other, &p, &r));
                }
                let older = root(size - 1, &t).unwrap();
                assert!(!verify_inclusion(i, size, &all[i as usize], &p, &older));
            }
        }
        assert_eq!(
            inclusion_proof(5, 5, &t),
            Err(ProofError::OutOfRange { index: 5, size: 5 })
        );
    }

    #[test]
    fn every_consistency_proof_verifies_and_wrong_ones_fail() {
        let all = leaves(70);
        let t = tree(&all);
        for second in 0..=70u64 {
            let r2 = root(second, &t).unwrap();
            for first in 0..=second {
                let r1 = root(first, &t).unwrap();
                let p = consistency_proof(first, second, &t).unwrap();
                assert!(
                    verify_consistency(first, second, &p, &r1, &r2),
                    "{first}..{second}"
                );
                if first > 0 && first < second {
                    let bogus = leaf_hash(b"forged");
                    assert!(!verify_consistency(first, second, &p, &bogus, &r2));
                    assert!(!verify_consistency(first, second, &p, &r1, &bogus));
                }
            }
        }
    }

    #[test]
    fn nodes_needed_names_exactly_what_a_proof_reads() {
        let all = leaves(1000);
        let t = tree(&all);
        let ids = nodes_needed(|r| inclusion_proof(333, 777, r));
        assert!(ids.len() <= 2 * 10, "O(log n) reads, got {}", ids.len());
        let subset: HashMap<NodeId, Hash> =
            ids.iter().map(|id| (*id, t.node(*id).unwrap())).collect();
        assert_eq!(
            inclusion_proof(333, 777, &subset),
            inclusion_proof(333, 777, &t)
        );
        let ids = nodes_needed(|r| root(777, r));
        assert_eq!(ids, {
            let mut v = Frontier::ids(777);
            v.sort();
            v
        });
    }
}
