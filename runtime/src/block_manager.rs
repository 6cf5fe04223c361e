//! Fixed-size KV blocks with reference counts: a group's samples share their prompt's blocks.

/// Hands out block ids from a fixed pool; a block returns to the pool when its last
/// reference is dropped.
#[derive(Debug, Clone)]
pub struct BlockManager {
    block_size: usize,
    ref_counts: Vec<u32>,
    free: Vec<u32>,
    peak_used: usize,
}

impl BlockManager {
    pub fn new(num_blocks: usize, block_size: usize) -> Self {
        Self {
            block_size,
            ref_counts: vec![0; num_blocks],
            // Pop from the end: hand out low ids first.
            free: (0..num_blocks as u32).rev().collect(),
            peak_used: 0,
        }
    }

    pub fn block_size(&self) -> usize {
        self.block_size
    }

    pub fn num_blocks(&self) -> usize {
        self.ref_counts.len()
    }

    pub fn num_free(&self) -> usize {
        self.free.len()
    }

    pub fn num_used(&self) -> usize {
        self.num_blocks() - self.num_free()
    }

    pub fn peak_used(&self) -> usize {
        self.peak_used
    }

    /// Blocks needed to hold `tokens` tokens.
    pub fn blocks_for(&self, tokens: usize) -> usize {
        tokens.div_ceil(self.block_size)
    }

    pub fn allocate(&mut self) -> Option<u32> {
        let b = self.free.pop()?;
        self.ref_counts[b as usize] = 1;
        self.peak_used = self.peak_used.max(self.num_used());
        Some(b)
    }

    /// Another sequence starts sharing `block`.
    pub fn share(&mut self, block: u32) {
        debug_assert!(self.ref_counts[block as usize] > 0, "sharing a free block");
        self.ref_counts[block as usize] += 1;
    }

    pub fn release(&mut self, block: u32) {
        let rc = &mut self.ref_counts[block as usize];
        debug_assert!(*rc > 0, "double free of block {block}");
        *rc = rc.saturating_sub(1);
        if *rc == 0 {
            self.free.push(block);
        }
    }

    pub fn release_all(&mut self, blocks: &[u32]) {
        for &b in blocks {
            self.release(b);
        }
    }

    pub fn ref_count(&self, block: u32) -> u32 {
        self.ref_counts[block as usize]
    }

    pub fn is_shared(&self, block: u32) -> bool {
        self.ref_count(block) > 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ref_counting() {
        let mut m = BlockManager::new(4, 16);
        let a = m.allocate().unwrap();
        m.share(a);
        assert!(m.is_shared(a));
        m.release(a);
        assert_eq!(m.num_free(), 3);
        m.release(a);
        assert_eq!(m.num_free(), 4);
        assert_eq!(m.peak_used(), 1);
        let all: Vec<u32> = (0..4).map(|_| m.allocate().unwrap()).collect();
        assert!(m.allocate().is_none());
        m.release_all(&all);
        assert_eq!(m.num_free(), 4);
        assert_eq!(m.blocks_for(33), 3);
    }
}
