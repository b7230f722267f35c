//! The agent's window into its own heap: a counting global allocator and the C allocator's
//! statistics. This is the only module with `unsafe` code; everything else reads the plain
//! numbers it exposes.
//!
//! [`Counting`] wraps [`System`] (glibc malloc) and counts every allocation and free made by the
//! Rust code of the process with relaxed atomics — four atomic additions per call, cheap next to
//! malloc itself. Allocations made by C code behind our back (glibc internals) are not counted
//! here but do show up in [`heap_stats`], which asks glibc's `mallinfo2()` for its view of the
//! whole heap.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// [`System`] plus counters of allocations, frees and bytes.
#[derive(Debug)]
pub struct Counting {
    mallocs: AtomicU64,
    frees: AtomicU64,
    bytes_allocated: AtomicU64,
    bytes_freed: AtomicU64,
}

impl Counting {
    pub const fn new() -> Self {
        Self {
            mallocs: AtomicU64::new(0),
            frees: AtomicU64::new(0),
            bytes_allocated: AtomicU64::new(0),
            bytes_freed: AtomicU64::new(0),
        }
    }

    fn counted_alloc(&self, size: usize) {
        self.mallocs.fetch_add(1, Relaxed);
        self.bytes_allocated.fetch_add(size as u64, Relaxed);
    }

    fn counted_free(&self, size: usize) {
        self.frees.fetch_add(1, Relaxed);
        self.bytes_freed.fetch_add(size as u64, Relaxed);
    }

    /// The counters now. Read without a lock, so under concurrent allocation the four numbers
    /// may be a few operations apart; `live_*` saturate at zero for that reason.
    pub fn stats(&self) -> AllocStats {
        // Frees first: a free read before its allocation could make live counts negative.
        let frees = self.frees.load(Relaxed);
        let bytes_freed = self.bytes_freed.load(Relaxed);
        AllocStats {
            mallocs: self.mallocs.load(Relaxed),
            frees,
            total_allocated: self.bytes_allocated.load(Relaxed),
            total_freed: bytes_freed,
        }
    }
}

impl Default for Counting {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so `System`'s
// guarantees hold; the bookkeeping only touches atomics and never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract (non-zero size), which is
        // exactly what `System::alloc` requires.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            self.counted_alloc(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as `alloc`, forwarded unchanged.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            self.counted_alloc(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by this allocator, i.e. by `System`, with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        self.counted_free(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr`/`layout` come from this allocator (hence from `System`) and the caller
        // guarantees `new_size` is valid for `layout.align()`.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            // Counted like Go counts a grown slice: the old object freed, a new one allocated.
            self.counted_free(layout.size());
            self.counted_alloc(new_size);
        }
        new
    }
}

/// A consistent-enough reading of [`Counting`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AllocStats {
    /// Allocations since start (a grown buffer counts as one free and one allocation).
    pub mallocs: u64,
    /// Frees since start.
    pub frees: u64,
    /// Bytes ever allocated.
    pub total_allocated: u64,
    /// Bytes ever freed.
    pub total_freed: u64,
}

impl AllocStats {
    /// Objects alive now.
    pub fn live_objects(&self) -> u64 {
        self.mallocs.saturating_sub(self.frees)
    }

    /// Bytes alive now (as requested by the program, without allocator overhead).
    pub fn live_bytes(&self) -> u64 {
        self.total_allocated.saturating_sub(self.total_freed)
    }
}

/// The C allocator's own view of the heap, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HeapStats {
    /// Memory the allocator holds from the OS: its arenas plus separately mmapped blocks.
    pub system: u64,
    /// Bytes in chunks handed out (including per-chunk headers) plus mmapped blocks.
    pub in_use: u64,
    /// Free bytes the allocator keeps for reuse inside its arenas.
    pub idle: u64,
}

/// Reads glibc's `mallinfo2()`; all zero where it is not available (non-glibc targets).
pub fn heap_stats() -> HeapStats {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 takes no arguments, returns a plain struct by value and only takes
        // the allocator's own locks while it sums its arenas (glibc >= 2.33).
        let info = unsafe { libc::mallinfo2() };
        HeapStats {
            system: (info.arena + info.hblkhd) as u64,
            in_use: (info.uordblks + info.hblkhd) as u64,
            idle: info.fordblks as u64,
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        HeapStats::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_allocations_frees_and_reallocs() {
        let counting = Counting::new();
        let layout = Layout::from_size_align(100, 8).unwrap();
        // SAFETY: a non-zero layout; the pointer is freed with the same layout (after realloc,
        // with the new size) by the same allocator.
        unsafe {
            let p = counting.alloc(layout);
            assert!(!p.is_null());
            let p = counting.realloc(p, layout, 300);
            assert!(!p.is_null());
            counting.dealloc(p, Layout::from_size_align(300, 8).unwrap());
        }
        let s = counting.stats();
        assert_eq!((s.mallocs, s.frees), (2, 2));
        assert_eq!((s.total_allocated, s.total_freed), (400, 400));
        assert_eq!((s.live_objects(), s.live_bytes()), (0, 0));
    }

    #[test]
    fn glibc_reports_a_heap() {
        let keep: Vec<Vec<u8>> = (0..64).map(|i| vec![i as u8; 1000]).collect();
        let h = heap_stats();
        if cfg!(target_env = "gnu") {
            assert!(h.in_use >= 64_000, "{h:?}");
            assert!(h.system >= h.in_use, "{h:?}");
        }
        drop(keep);
    }
}
