//! Our RFC 6962 tree agrees with an independent implementation (`tlog_tiles`, a port of Go's
//! sumdb tlog) on random trees: roots, inclusion proofs and consistency proofs, each side's
//! proofs checked by the other side's verifier.

use palisade_audit::leaf_hash;
use palisade_audit::merkle::{self, MemoryTree};
use tlog_tiles::{Error, Hash as TlogHash, HashReader};

struct Storage(Vec<TlogHash>);

impl HashReader for Storage {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<TlogHash>, Error> {
        Ok(indexes.iter().map(|&i| self.0[i as usize]).collect())
    }
}

/// SplitMix64: deterministic, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn roots_and_proofs_agree_on_random_trees() {
    let mut rng = Rng(0x5eed);
    for _ in 0..12 {
        let n = 1 + rng.below(3000);
        let mut ours = MemoryTree::default();
        let mut theirs = Storage(Vec::new());
        let mut leaves = Vec::new();
        for i in 0..n {
            let data = format!("entry {i} {}", rng.next());
            let leaf = leaf_hash(data.as_bytes());
            assert_eq!(leaf, tlog_tiles::record_hash(data.as_bytes()).0);
            ours.push(leaf);
            let new =
                tlog_tiles::stored_hashes_for_record_hash(i, TlogHash(leaf), &theirs).unwrap();
            theirs.0.extend(new);
            leaves.push(leaf);
        }
        for _ in 0..40 {
            let size = 1 + rng.below(n);
            let root = merkle::root(size, &ours).unwrap();
            assert_eq!(
                root,
                tlog_tiles::tree_hash(size, &theirs).unwrap().0,
                "root at {size}"
            );

            let index = rng.below(size);
            let proof = merkle::inclusion_proof(index, size, &ours).unwrap();
            let their_proof = tlog_tiles::prove_record(size, index, &theirs).unwrap();
            assert_eq!(
                proof,
                their_proof.iter().map(|h| h.0).collect::<Vec<_>>(),
                "inclusion {index} in {size}"
            );
            tlog_tiles::check_record(
                &their_proof,
                size,
                TlogHash(root),
                index,
                TlogHash(leaves[index as usize]),
            )
            .unwrap();
            assert!(merkle::verify_inclusion(
                index,
                size,
                &leaves[index as usize],
                &proof,
                &root
            ));

            let first = 1 + rng.below(size);
            let first_root = merkle::root(first, &ours).unwrap();
            let proof = merkle::consistency_proof(first, size, &ours).unwrap();
            let their_proof = tlog_tiles::prove_tree(size, first, &theirs).unwrap();
            assert_eq!(
                proof,
                their_proof.iter().map(|h| h.0).collect::<Vec<_>>(),
                "consistency {first}..{size}"
            );
            tlog_tiles::check_tree(
                &their_proof,
                size,
                TlogHash(root),
                first,
                TlogHash(first_root),
            )
            .unwrap();
            assert!(merkle::verify_consistency(
                first,
                size,
                &proof,
                &first_root,
                &root
            ));
        }
    }
}
