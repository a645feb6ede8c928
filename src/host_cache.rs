//! A small cache of freed host buffers, so that an op called again on the same shapes writes
//! its output into memory that is already mapped.
//!
//! Every CPU op returns a fresh output buffer. A fresh buffer of more than a few hundred KiB
//! comes from the OS as untouched pages (or from glibc's heap with a `memset` for `calloc`),
//! and the op's first write to each 4 KiB page is a page fault that zeroes it: measured on the
//! 2-core development machine, a 2 MB output cost 15% to 25% of a 3x3 channels-last max pool on
//! the ResNet tail in faults and zeroing, and a 12.8 MB one about a fifth of a stride-1 average.
//! Smaller outputs come from the heap, zeroed by `calloc`: on the EfficientNet tail (40 to
//! 130 KB outputs) and batch-1 ops, reusing those too made calls 1.2x to 1.4x faster.
//! Real workloads (an inference loop, a training step) call the same ops on the same shapes
//! again and again, so when a host tensor's storage is dropped its buffer is kept here, and the
//! next output of the same dtype and length reuses it. PyTorch gets the same effect from
//! glibc's heap, which reuses freed chunks below its (adaptive) mmap threshold.
//!
//! A reused buffer is not zeroed: every CPU kernel writes each element of its output
//! (`tests/output_reuse.rs` checks all op families into NaN-filled buffers), and the stale
//! contents are valid values of the element type, so nothing uninitialised is ever read.
//!
//! Limits: buffers of at least [`MIN_BYTES`]; at most [`MAX_BUFFERS`] buffers and
//! [`capacity`] bytes in all (256 MiB by default, [`set_capacity`] changes it, 0 turns the cache
//! off); the oldest buffer goes first. [`clear`] frees everything held.

use crate::dtype::{DType, HostData};
use std::collections::VecDeque;
use std::sync::Mutex;

/// Buffers smaller than this are left to the allocator: zeroing them costs about as much as
/// the cache's lock.
pub const MIN_BYTES: usize = 32 << 10;
/// At most this many buffers are held.
pub const MAX_BUFFERS: usize = 8;
/// The default byte capacity.
pub const DEFAULT_CAPACITY: usize = 256 << 20;

struct Cache {
    buffers: VecDeque<HostData>,
    bytes: usize,
    capacity: usize,
}

static CACHE: Mutex<Cache> = Mutex::new(Cache::new(DEFAULT_CAPACITY));

fn lock() -> std::sync::MutexGuard<'static, Cache> {
    // Each update below is a push or a remove with its byte count, so a panic elsewhere while
    // the lock was held cannot have left the cache inconsistent: a poisoned lock is usable.
    CACHE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn bytes_of(data: &HostData) -> usize {
    data.len() * data.dtype().size_in_bytes()
}

impl Cache {
    const fn new(capacity: usize) -> Self {
        Cache { buffers: VecDeque::new(), bytes: 0, capacity }
    }

    /// Drops the oldest buffers until `extra` more bytes and one more buffer fit (or, with
    /// `extra == 0`, until the limits hold); returns them, for freeing outside the lock.
    fn make_room(&mut self, extra: usize) -> Vec<HostData> {
        let mut evicted = Vec::new();
        while self.bytes + extra > self.capacity || self.buffers.len() + usize::from(extra > 0) > MAX_BUFFERS
        {
            let Some(old) = self.buffers.pop_front() else { break };
            self.bytes -= bytes_of(&old);
            evicted.push(old);
        }
        evicted
    }

    /// Keeps `data` if it is large enough and fits; returns what must be freed.
    fn keep(&mut self, data: HostData) -> Vec<HostData> {
        let bytes = bytes_of(&data);
        if bytes < MIN_BYTES || bytes > self.capacity {
            return vec![data];
        }
        let evicted = self.make_room(bytes);
        self.bytes += bytes;
        self.buffers.push_back(data);
        evicted
    }

    /// The most recently kept buffer of exactly `dtype` and `len`.
    fn take(&mut self, dtype: DType, len: usize) -> Option<HostData> {
        let i = self.buffers.iter().rposition(|b| b.dtype() == dtype && b.len() == len)?;
        let data = self.buffers.remove(i)?;
        self.bytes -= bytes_of(&data);
        Some(data)
    }
}

/// Frees every buffer the cache holds.
pub fn clear() {
    let held = {
        let mut cache = lock();
        cache.bytes = 0;
        std::mem::take(&mut cache.buffers)
    };
    drop(held);
}

/// Sets how many bytes of freed host buffers may be held (0 turns the cache off and frees
/// what it holds).
pub fn set_capacity(bytes: usize) {
    let evicted = {
        let mut cache = lock();
        cache.capacity = bytes;
        cache.make_room(0)
    };
    drop(evicted);
}

/// How many bytes of freed host buffers may be held.
pub fn capacity() -> usize {
    lock().capacity
}

/// How many bytes the cache holds now.
pub fn held_bytes() -> usize {
    lock().bytes
}

/// Keeps a host buffer whose owner is done with it, if it is large enough and fits.
pub(crate) fn keep(data: HostData) {
    // Checked before the lock too (`Cache::keep` rejects them anyway): every small tensor's
    // drop passes through here.
    if bytes_of(&data) < MIN_BYTES {
        return;
    }
    // Freed outside the lock: unmapping a large buffer takes a while.
    let freed = lock().keep(data);
    drop(freed);
}

/// A buffer of `len` elements of `dtype` for an op's output, which the op then overwrites
/// entirely: a cached one of exactly that dtype and length when there is one (holding an
/// earlier tensor's values), else a fresh zeroed one.
pub(crate) fn output(dtype: DType, len: usize) -> crate::error::Result<HostData> {
    if len.saturating_mul(dtype.size_in_bytes()) >= MIN_BYTES {
        if let Some(data) = lock().take(dtype, len) {
            return Ok(data);
        }
    }
    HostData::try_zeros(dtype, len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(dtype: DType, len: usize, byte: u8) -> HostData {
        let mut data = HostData::try_zeros(dtype, len).unwrap();
        data.as_bytes_mut().fill(byte);
        data
    }

    // A local cache: the global one is shared with every other test's ops.
    #[test]
    fn keeps_large_buffers_within_limits_and_reuses_exact_matches() {
        let len = MIN_BYTES / 4;
        let mut cache = Cache::new(DEFAULT_CAPACITY);
        let a = filled(DType::F32, len, 0x3f);
        let ptr = a.as_bytes().as_ptr();
        assert!(cache.keep(a).is_empty());
        assert_eq!(cache.bytes, len * 4);
        // Another dtype or length does not match; the same does, contents kept.
        assert!(cache.take(DType::I64, len / 2).is_none());
        assert!(cache.take(DType::F32, len + 1).is_none());
        let b = cache.take(DType::F32, len).unwrap();
        assert_eq!((b.as_bytes().as_ptr(), cache.bytes), (ptr, 0));
        assert!(b.as_bytes().iter().all(|&x| x == 0x3f));
        // Small buffers, and buffers over the capacity, are handed back to be freed.
        assert_eq!(cache.keep(filled(DType::F32, 16, 1)).len(), 1);
        let mut small = Cache::new(MIN_BYTES);
        assert_eq!(small.keep(filled(DType::F32, len + 1, 1)).len(), 1);
        assert_eq!(small.bytes, 0);
        // At most MAX_BUFFERS buffers, and at most the capacity in bytes, oldest out first.
        for i in 0..MAX_BUFFERS + 3 {
            let evicted = cache.keep(filled(DType::F32, len, i as u8));
            assert_eq!(evicted.len(), usize::from(i >= MAX_BUFFERS));
        }
        assert_eq!((cache.buffers.len(), cache.bytes), (MAX_BUFFERS, MAX_BUFFERS * len * 4));
        assert!(cache.buffers[0].as_bytes().iter().all(|&x| x == 3));
        cache.capacity = 2 * len * 4;
        assert_eq!(cache.make_room(0).len(), MAX_BUFFERS - 2);
        assert_eq!(cache.bytes, 2 * len * 4);
        // The most recent match is taken first.
        let newest = cache.take(DType::F32, len).unwrap();
        assert!(newest.as_bytes().iter().all(|&x| x == (MAX_BUFFERS + 2) as u8));
        drop(b);
    }
}
