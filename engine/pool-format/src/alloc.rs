//! Cluster allocator: a bitmap of free data clusters.
//!
//! Rebuilt from the owner table at import; the owner table on disk is the
//! truth. Allocation takes the lowest free clusters so pools fill from the
//! start of the disk.

use crate::meta::Owner;

/// Free-cluster bitmap (bit set = free). Two allocators are equal when
/// the same clusters are free (the search hint does not count).
#[derive(Debug, Clone)]
pub struct ClusterAllocator {
    bits: Vec<u64>,
    num_clusters: u32,
    free: u32,
    /// Every word below `hint` is full.
    hint: usize,
}

impl PartialEq for ClusterAllocator {
    fn eq(&self, other: &Self) -> bool {
        self.num_clusters == other.num_clusters
            && self.free == other.free
            && self.bits == other.bits
    }
}

impl Eq for ClusterAllocator {}

impl ClusterAllocator {
    /// All `num_clusters` clusters free.
    pub fn new(num_clusters: u32) -> Self {
        let words = (num_clusters as usize).div_ceil(64);
        let mut bits = vec![u64::MAX; words];
        let tail = num_clusters as usize % 64;
        if tail != 0 {
            if let Some(last) = bits.last_mut() {
                *last = (1u64 << tail) - 1;
            }
        }
        ClusterAllocator {
            bits,
            num_clusters,
            free: num_clusters,
            hint: 0,
        }
    }

    /// From an owner table: a cluster is free when its owner slot is 0.
    pub fn from_owners(owners: &[Owner]) -> Self {
        let mut a = ClusterAllocator::new(owners.len() as u32);
        for (i, o) in owners.iter().enumerate() {
            if !o.is_free() {
                a.mark_used(i as u32);
            }
        }
        a.hint = 0;
        a
    }

    pub fn num_clusters(&self) -> u32 {
        self.num_clusters
    }

    pub fn free_clusters(&self) -> u32 {
        self.free
    }

    pub fn used_clusters(&self) -> u32 {
        self.num_clusters - self.free
    }

    pub fn is_free(&self, cluster: u32) -> bool {
        cluster < self.num_clusters && self.bits[cluster as usize / 64] & (1 << (cluster % 64)) != 0
    }

    fn mark_used(&mut self, cluster: u32) {
        if self.is_free(cluster) {
            self.bits[cluster as usize / 64] &= !(1 << (cluster % 64));
            self.free -= 1;
        }
    }

    /// Takes the lowest free cluster.
    pub fn allocate_one(&mut self) -> Option<u32> {
        let start = self.hint.min(self.bits.len());
        for (w, word) in self.bits.iter_mut().enumerate().skip(start) {
            if *word != 0 {
                let bit = word.trailing_zeros();
                *word &= !(1u64 << bit);
                self.free -= 1;
                self.hint = w;
                return Some(w as u32 * 64 + bit);
            }
        }
        self.hint = self.bits.len();
        None
    }

    /// Takes `n` clusters, all or none.
    pub fn allocate(&mut self, n: u32) -> Option<Vec<u32>> {
        if n > self.free {
            return None;
        }
        let mut out = Vec::with_capacity(n as usize);
        for _ in 0..n {
            match self.allocate_one() {
                Some(c) => out.push(c),
                None => {
                    for c in out {
                        self.release(c);
                    }
                    return None;
                }
            }
        }
        Some(out)
    }

    /// Returns a cluster; releasing a free or out-of-range cluster is a
    /// no-op and returns false.
    pub fn release(&mut self, cluster: u32) -> bool {
        if cluster >= self.num_clusters || self.is_free(cluster) {
            return false;
        }
        self.bits[cluster as usize / 64] |= 1 << (cluster % 64);
        self.free += 1;
        self.hint = self.hint.min(cluster as usize / 64);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[derive(Debug, Clone)]
    enum Op {
        Alloc(u32),
        Release(u32),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u32..20).prop_map(Op::Alloc),
            (0u32..300).prop_map(Op::Release)
        ]
    }

    proptest! {
        #[test]
        fn allocator_matches_a_set_model(n in 1u32..260, ops in proptest::collection::vec(op(), 0..200)) {
            let mut a = ClusterAllocator::new(n);
            let mut used = BTreeSet::new();
            for op in ops {
                match op {
                    Op::Alloc(k) => {
                        let free_before = a.free_clusters();
                        match a.allocate(k) {
                            Some(got) => {
                                prop_assert_eq!(got.len() as u32, k);
                                for c in got {
                                    prop_assert!(c < n);
                                    prop_assert!(used.insert(c), "cluster {} handed out twice", c);
                                }
                            }
                            None => {
                                prop_assert!(k > free_before);
                                prop_assert_eq!(a.free_clusters(), free_before);
                            }
                        }
                    }
                    Op::Release(c) => {
                        let was_used = used.remove(&c);
                        prop_assert_eq!(a.release(c), was_used);
                    }
                }
                prop_assert_eq!(a.used_clusters() as usize, used.len());
                for c in 0..n {
                    prop_assert_eq!(a.is_free(c), !used.contains(&c));
                }
            }
            // Rebuilding from an owner table gives the same allocator state.
            let owners: Vec<Owner> = (0..n)
                .map(|c| if used.contains(&c) { Owner { slot: 1, logical: c } } else { Owner::FREE })
                .collect();
            let b = ClusterAllocator::from_owners(&owners);
            prop_assert_eq!(b.free_clusters(), a.free_clusters());
            for c in 0..n {
                prop_assert_eq!(b.is_free(c), a.is_free(c));
            }
        }
    }

    #[test]
    fn lowest_first_and_exhaustion() {
        let mut a = ClusterAllocator::new(3);
        assert_eq!(a.allocate(2), Some(vec![0, 1]));
        assert_eq!(a.allocate(2), None);
        assert_eq!(a.allocate_one(), Some(2));
        assert_eq!(a.allocate_one(), None);
        assert!(a.release(1));
        assert!(!a.release(1));
        assert_eq!(a.allocate_one(), Some(1));
    }
}
