//! Fixed-size KV blocks with reference counts, and the block-table arithmetic over them.
//!
//! Owns which block ids are free or shared (a group's samples share their prompt's blocks) and
//! the mapping position → cache slot. Knows nothing of sequences, requests or tensors: callers
//! hand it block tables (`Vec<u32>` of block ids, position `p` in block `p / block_size`).

/// The cache slot of position `pos` of a sequence with `block_table`: block id × block size +
/// offset in the block.
pub fn cache_slot(block_table: &[u32], block_size: usize, pos: usize) -> usize {
    block_table[pos / block_size] as usize * block_size + pos % block_size
}

/// The pool had no free block where one was needed (callers count with
/// [`BlockManager::needs_block`] first, so this is an internal error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoFreeBlock;

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
        let block = self.free.pop()?;
        self.ref_counts[block as usize] = 1;
        self.peak_used = self.peak_used.max(self.num_used());
        Some(block)
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
        for &block in blocks {
            self.release(block);
        }
    }

    pub fn ref_count(&self, block: u32) -> u32 {
        self.ref_counts[block as usize]
    }

    pub fn is_shared(&self, block: u32) -> bool {
        self.ref_count(block) > 1
    }

    /// `table`, held once, is from now on held by `holders` sequences (a group's fork).
    pub fn fork(&mut self, table: &[u32], holders: usize) {
        for &block in table {
            for _ in 0..holders {
                self.share(block);
            }
        }
        self.release_all(table);
    }

    /// Allocate blocks so that `table` covers `tokens` tokens; all or nothing.
    pub fn grow(&mut self, table: &mut Vec<u32>, tokens: usize) -> bool {
        let need = self.blocks_for(tokens).saturating_sub(table.len());
        if need > self.num_free() {
            return false;
        }
        for _ in 0..need {
            match self.allocate() {
                Some(block) => table.push(block),
                None => return false,
            }
        }
        true
    }

    /// Whether writing position `pos` into `table` takes a free block: a new one past the end,
    /// or a private copy of a shared one.
    pub fn needs_block(&self, table: &[u32], pos: usize) -> bool {
        let index = pos / self.block_size;
        index == table.len() || self.is_shared(table[index])
    }

    /// Make position `pos` of `table` writable: append a block past the end, or replace a
    /// shared block by a fresh one. Returns `Some((src, dst))` when the caller must copy block
    /// `src`'s keys and values into `dst` (copy-on-write).
    pub fn prepare_write(
        &mut self,
        table: &mut Vec<u32>,
        pos: usize,
    ) -> Result<Option<(u32, u32)>, NoFreeBlock> {
        let index = pos / self.block_size;
        if index == table.len() {
            table.push(self.allocate().ok_or(NoFreeBlock)?);
            return Ok(None);
        }
        let shared = table[index];
        if !self.is_shared(shared) {
            return Ok(None);
        }
        let private = self.allocate().ok_or(NoFreeBlock)?;
        self.release(shared);
        table[index] = private;
        Ok(Some((shared, private)))
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

    #[test]
    fn grow_fork_and_copy_on_write() {
        let mut m = BlockManager::new(6, 4);
        let mut table = vec![];
        assert!(!m.grow(&mut table, 25), "7 blocks do not fit in 6");
        assert!(
            table.is_empty() && m.num_free() == 6,
            "a failed grow allocates nothing"
        );
        assert!(m.grow(&mut table, 10));
        assert_eq!(table, [0, 1, 2]);
        assert_eq!(cache_slot(&table, 4, 9), 2 * 4 + 1);
        m.fork(&table, 2);
        assert!(table.iter().all(|&b| m.ref_count(b) == 2));
        let mut sample = table.clone();
        // Position 10 lies in the shared partial block 2: a private copy.
        assert!(m.needs_block(&sample, 10));
        assert_eq!(m.prepare_write(&mut sample, 10), Ok(Some((2, 3))));
        assert_eq!(sample, [0, 1, 3]);
        assert!(!m.needs_block(&sample, 11));
        assert_eq!(m.prepare_write(&mut sample, 11), Ok(None));
        // Position 12 is past the end: a new block.
        assert!(m.needs_block(&sample, 12));
        assert_eq!(m.prepare_write(&mut sample, 12), Ok(None));
        assert_eq!(sample, [0, 1, 3, 4]);
        m.release_all(&sample);
        m.release_all(&table);
        assert_eq!(m.num_free(), 6);
    }
}
