//! ljspawn's memory allocator: a bump arena in the binary's zeroed data, in front of the C
//! library's allocator.
//!
//! Why: ljspawn is short-lived, and nearly all it allocates is during its setup (the command
//! line, the plan, the jail's mount list). musl's allocator served those small, short-lived
//! blocks with about 40 `mmap`/`munmap` calls per spawn (each `munmap` a TLB flush), roughly a
//! tenth of a jail's start-up here. The arena makes none: its pages are the binary's `.bss`,
//! faulted in on first use like any other.
//!
//! How, in full (this is the whole allocator):
//! - Two bump regions: blocks smaller than [`BIG`] come from the small one, blocks of at least
//!   [`BIG`] (and less than [`LARGE`]) from the big one. Large growing buffers (clap's list of
//!   the command line's arguments, 600 bytes each; a long `Vec` of mounts) are then mostly the
//!   last block of their region and grow in place, instead of being copied to a new block at
//!   every doubling while small blocks made in between pin the old one (with a single region
//!   that was about a third of what setup allocated, every page of it faulted in).
//! - `alloc` hands out the next `align`-aligned block of its region (`next` moves up), or,
//!   when the block does not fit or is large (at least [`LARGE`]), passes the request to the C
//!   library's allocator (`System`).
//! - `dealloc` of a region's last block moves its `next` back (stack order, which is most of
//!   Rust's temporaries); any other arena block is simply not reused. `System` blocks go back
//!   to `System`.
//! - `realloc` of a region's last block grows or shrinks it in place when it fits (a small
//!   block stays small: one that reaches [`BIG`] moves to the big region); otherwise a new
//!   block is allocated, the bytes copied and the old block freed as above.
//!
//! Memory stays bounded in every process, however long it runs (the supervising ljspawn, the
//! jail's PID 1): the regions are [`SIZE`] and [`BIG_SIZE`] bytes and never grow; once one is
//! used up, its requests go to `System`, which frees. Each region's `next` is changed by
//! compare-and-swap only, so the arena is sound with threads too (ljspawn has one). A vfork
//! child (see `sys::vfork_run`) shares the arena with its suspended parent: what it allocates
//! stays allocated, as with any allocator. After `clone` without `CLONE_VM`, each process has
//! its own copy.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The small region's size: setup allocates about 40 KiB of small blocks in the common case, a
/// long bwrap command line somewhat more.
pub const SIZE: usize = 256 << 10;
/// The big region's size (its untouched pages cost nothing: `.bss`).
pub const BIG_SIZE: usize = 256 << 10;
/// Blocks this large come from the big region.
pub const BIG: usize = 4 << 10;
/// Blocks this large go to `System` directly (`--file` contents, ...). Room
/// for clap's list of ljspawn's options (600 bytes an option) up to 128 capacity, well below.
pub const LARGE: usize = 128 << 10;

/// One bump region of `N` bytes. (`next` first: it shares its page with the start of `buf`,
/// which the first blocks use anyway, instead of taking a page of its own after the buffer.)
#[repr(C, align(4096))]
struct Region<const N: usize> {
    /// Offset of the first free byte of `buf`.
    next: AtomicUsize,
    buf: UnsafeCell<[u8; N]>,
}

impl<const N: usize> Region<N> {
    const fn new() -> Self {
        Region { next: AtomicUsize::new(0), buf: UnsafeCell::new([0; N]) }
    }

    fn base(&self) -> usize {
        self.buf.get() as usize
    }

    /// The offset of `ptr` in the region, if it is one of its blocks.
    fn offset(&self, ptr: *mut u8) -> Option<usize> {
        let p = ptr as usize;
        (p >= self.base() && p < self.base() + N).then(|| p - self.base())
    }

    /// A block of the region for `layout`, or None (it does not fit).
    fn bump(&self, layout: Layout) -> Option<*mut u8> {
        let mut cur = self.next.load(Ordering::Relaxed);
        loop {
            // The address is aligned (any alignment works: `buf` itself is only 8-aligned).
            let addr = (self.base() + cur).checked_next_multiple_of(layout.align())?;
            let start = addr - self.base();
            let end = start.checked_add(layout.size())?;
            if end > N {
                return None;
            }
            // Acquire: a block given back (Release, in `dealloc`/`realloc`) is handed out only
            // after its old owner's writes.
            match self.next.compare_exchange_weak(cur, end, Ordering::Acquire, Ordering::Relaxed) {
                // The pointer is derived from `buf`'s own (provenance), at `start`.
                Ok(_) => return Some(self.buf.get().cast::<u8>().wrapping_add(start)),
                Err(now) => cur = now,
            }
        }
    }

    /// Gives the block [start, start + size) back if it is the last one.
    fn pop(&self, start: usize, size: usize) {
        let _ = self.next.compare_exchange(start + size, start, Ordering::Release, Ordering::Relaxed);
    }

    /// Resizes the block [start, start + size) in place to `new_size`, if it is the last one
    /// (or shrinks); whether it did.
    fn resize(&self, start: usize, size: usize, new_size: usize) -> bool {
        let end = start + size;
        if new_size <= size {
            // Shrinking stays in place; the last block gives its tail back.
            let _ = self.next.compare_exchange(end, start + new_size, Ordering::Release, Ordering::Relaxed);
            return true;
        }
        start + new_size <= N
            && self.next.compare_exchange(end, start + new_size, Ordering::AcqRel, Ordering::Relaxed).is_ok()
    }
}

/// The allocator (see the module docs). `Arena::new()` is a `const fn`, for a `static`.
#[repr(C)]
pub struct Arena {
    small: Region<SIZE>,
    big: Region<BIG_SIZE>,
}

// SAFETY: each region's `buf` is only ever handed out in disjoint blocks: a block is
// [start, end) with that region's `next` moved from at most `start` to `end` by one successful
// compare-and-swap, so no two live blocks overlap, whichever threads ask; the arena itself
// never reads or writes a `buf` except in `realloc`'s copy and `alloc_zeroed`'s clearing, each
// of a block the caller owns; a block given back is handed out again only through a
// Release/Acquire pair on its region's `next`.
unsafe impl Sync for Arena {}

impl std::fmt::Debug for Arena {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Arena").field("used", &self.used()).field("big_used", &self.big_used()).finish()
    }
}

impl Default for Arena {
    fn default() -> Self {
        Self::new()
    }
}

impl Arena {
    pub const fn new() -> Self {
        Arena { small: Region::new(), big: Region::new() }
    }

    /// Bytes of the small region in use (its next offset): for tests and measurements.
    pub fn used(&self) -> usize {
        self.small.next.load(Ordering::Relaxed)
    }

    /// Bytes of the big region in use.
    pub fn big_used(&self) -> usize {
        self.big.next.load(Ordering::Relaxed)
    }

    #[cfg(test)]
    fn base(&self) -> usize {
        self.small.base()
    }

    /// Whether `ptr` is an arena block (of either region).
    #[cfg(test)]
    fn offset(&self, ptr: *mut u8) -> Option<usize> {
        self.small.offset(ptr).or_else(|| self.big.offset(ptr))
    }

    /// A block of the arena for `layout`, or None (then `System` serves it).
    fn bump(&self, layout: Layout) -> Option<*mut u8> {
        match layout.size() {
            s if s >= LARGE => None,
            s if s >= BIG => self.big.bump(layout),
            _ => self.small.bump(layout),
        }
    }
}

// SAFETY: `alloc` returns either null, a `System` block, or an arena block of at least
// `layout.size()` bytes at `layout.align()`, disjoint from every other live block (see `Sync`
// above); `dealloc` and `realloc` tell the kinds apart by address (the regions and `System`'s
// memory do not overlap), so a `System` block always goes back to `System` and an arena block
// to its own region.
// (Not inlined: one copy of each, instead of one at every allocation site of the program.)
unsafe impl GlobalAlloc for Arena {
    #[inline(never)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match self.bump(layout) {
            Some(p) => p,
            // SAFETY: the caller's contract (a non-zero size) is passed on unchanged.
            None => unsafe { System.alloc(layout) },
        }
    }

    /// Large blocks come zeroed from `System` (calloc: fresh pages are not written, so a big
    /// buffer costs no page faults until used); arena blocks are cleared.
    #[inline(never)]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        match self.bump(layout) {
            Some(p) => {
                // SAFETY: `p` is a fresh arena block of `layout.size()` bytes (see `bump`).
                unsafe { p.write_bytes(0, layout.size()) };
                p
            }
            // SAFETY: the caller's contract (a non-zero size) is passed on unchanged.
            None => unsafe { System.alloc_zeroed(layout) },
        }
    }

    #[inline(never)]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // The last block of its region: given back. Any other stays until the process ends.
        if let Some(start) = self.small.offset(ptr) {
            self.small.pop(start, layout.size());
        } else if let Some(start) = self.big.offset(ptr) {
            self.big.pop(start, layout.size());
        } else {
            // SAFETY: not an arena address, so `alloc` got it from `System` with this layout.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    #[inline(never)]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // In place: a small block while it stays small, a big one while it stays below LARGE
        // (or any block shrinking).
        let in_place = if let Some(start) = self.small.offset(ptr) {
            (new_size <= layout.size() || new_size < BIG) && self.small.resize(start, layout.size(), new_size)
        } else if let Some(start) = self.big.offset(ptr) {
            (new_size <= layout.size() || new_size < LARGE) && self.big.resize(start, layout.size(), new_size)
        } else {
            // SAFETY: a `System` block with this layout (see `dealloc`); the caller's contract
            // on `new_size` is passed on unchanged.
            return unsafe { System.realloc(ptr, layout, new_size) };
        };
        if in_place {
            return ptr;
        }
        // SAFETY: the caller guarantees `new_size`, rounded up to `layout.align()`, does not
        // overflow `isize` (GlobalAlloc::realloc's contract), so the layout is valid.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: `new_layout` has a non-zero size (realloc's contract).
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: `ptr` is valid for `layout.size()` bytes and `new` for `new_size`; they
            // are distinct live blocks, so they do not overlap.
            unsafe { std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size)) };
            // SAFETY: `ptr` is the caller's live block of `layout`, no longer used.
            unsafe { self.dealloc(ptr, layout) };
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Test helpers: each takes a block these tests own (live, of the size given) and makes
    // one unsafe call.
    /// A fresh arena on the heap, never on the stack (half a megabyte: an unoptimized build
    /// would put `Arena::new()` on the test thread's 2 MiB stack before moving it).
    fn arena() -> Box<Arena> {
        let l = Layout::new::<Arena>();
        // SAFETY: the layout is not zero-sized.
        let p = unsafe { std::alloc::alloc_zeroed(l) }.cast::<Arena>();
        assert!(!p.is_null());
        // SAFETY: `p` is a fresh block of the global allocator with `Arena`'s layout, and an
        // all-zero `Arena` is `Arena::new()` (zeroed buffers, `next` 0 in both regions).
        unsafe { Box::from_raw(p) }
    }
    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap()
    }
    fn alloc(a: &Arena, size: usize, align: usize) -> *mut u8 {
        // SAFETY: the sizes used are non-zero.
        unsafe { a.alloc(layout(size, align)) }
    }
    fn free(a: &Arena, p: *mut u8, size: usize, align: usize) {
        // SAFETY: `p` is a live block of `a` with this layout, freed once.
        unsafe { a.dealloc(p, layout(size, align)) }
    }
    fn grow(a: &Arena, p: *mut u8, size: usize, align: usize, new: usize) -> *mut u8 {
        // SAFETY: `p` is a live block of `a` with this layout; `new` is non-zero.
        unsafe { a.realloc(p, layout(size, align), new) }
    }
    fn fill(p: *mut u8, byte: u8, n: usize) {
        // SAFETY: `p` is a live block of at least `n` bytes.
        unsafe { p.write_bytes(byte, n) }
    }
    fn at(p: *mut u8, i: usize) -> u8 {
        // SAFETY: `p` is a live block of more than `i` bytes.
        unsafe { p.wrapping_add(i).read() }
    }

    #[test]
    fn blocks_are_aligned_disjoint_and_popped_in_stack_order() {
        let a = arena();
        let p = alloc(&a, 24, 8);
        let q = alloc(&a, 40, 8);
        let r = alloc(&a, 100, 128);
        assert_eq!(r as usize % 128, 0);
        assert_eq!(q as usize, p as usize + 24);
        assert!(r as usize >= q as usize + 40);
        fill(p, 1, 24);
        fill(q, 2, 40);
        fill(r, 3, 100);
        assert_eq!((at(p, 23), at(q, 0), at(r, 99)), (1, 2, 3));
        free(&a, r, 100, 128);
        assert_eq!(a.used(), r as usize - a.base(), "the last block goes back");
        // The alignment padding before `r` stays: `q` is not the last block.
        free(&a, q, 40, 8);
        assert_eq!(a.used(), r as usize - a.base());
        let b = arena();
        let p = alloc(&b, 24, 8);
        let q = alloc(&b, 40, 8);
        free(&b, q, 40, 8);
        assert_eq!(b.used(), 24);
        free(&b, p, 24, 8);
        assert_eq!(b.used(), 0);
    }

    #[test]
    fn zeroed_blocks_are_zero_even_where_memory_was_reused() {
        let a = arena();
        let p = alloc(&a, 64, 8);
        fill(p, 0xff, 64);
        free(&a, p, 64, 8);
        // SAFETY: non-zero size.
        let z = unsafe { a.alloc_zeroed(layout(64, 8)) };
        assert_eq!(z, p, "the popped block is reused");
        assert!((0..64).all(|i| at(z, i) == 0));
        // SAFETY: non-zero size.
        let big = unsafe { a.alloc_zeroed(layout(4 * LARGE, 8)) };
        assert!(a.offset(big).is_none());
        assert!((0..4 * LARGE).step_by(4096).all(|i| at(big, i) == 0));
        free(&a, big, 4 * LARGE, 8);
    }

    #[test]
    fn a_block_that_is_not_last_stays() {
        let a = arena();
        let p = alloc(&a, 16, 8);
        let _q = alloc(&a, 16, 8);
        let used = a.used();
        free(&a, p, 16, 8);
        assert_eq!(a.used(), used);
    }

    #[test]
    fn realloc_works_in_place_for_the_last_block_and_copies_others() {
        let a = arena();
        let p = alloc(&a, 8, 8);
        fill(p, 7, 8);
        let p2 = grow(&a, p, 8, 8, 4000);
        assert_eq!(p2, p, "in place");
        assert_eq!(a.used(), 4000);
        let p2 = grow(&a, p2, 4000, 8, 3000);
        assert_eq!((p2, a.used()), (p, 3000), "shrunk in place, the tail given back");
        let _q = alloc(&a, 8, 8);
        let p3 = grow(&a, p2, 3000, 8, 8000);
        assert_ne!(p3, p2);
        assert_eq!(at(p3, 7), 7);
        assert!(a.offset(p3).is_some());
        let _r = alloc(&a, 8, 8);
        let used = a.used();
        let p4 = grow(&a, _q, 8, 8, 4);
        assert_eq!((p4, a.used()), (_q, used), "a block that is not last shrinks in place");
    }

    #[test]
    fn large_and_overflowing_requests_go_to_the_system_allocator() {
        let a = arena();
        let big = alloc(&a, LARGE, 8);
        assert!(a.offset(big).is_none());
        assert_eq!(a.used(), 0);
        fill(big, 3, LARGE);
        let big = grow(&a, big, LARGE, 8, 2 * LARGE);
        assert!(a.offset(big).is_none());
        assert_eq!(at(big, LARGE - 1), 3);
        free(&a, big, 2 * LARGE, 8);
        // Fill the arena; the next block comes from System, and memory stays bounded.
        let mut blocks = Vec::new();
        while a.used() + 1000 <= SIZE {
            let p = alloc(&a, 1000, 8);
            assert!(a.offset(p).is_some());
            blocks.push(p);
        }
        let p = alloc(&a, 1000, 8);
        assert!(a.offset(p).is_none());
        assert!(a.used() <= SIZE);
        free(&a, p, 1000, 8);
        // An arena block grown to LARGE moves to System with its bytes.
        let last = *blocks.last().unwrap();
        fill(last, 9, 1000);
        let moved = grow(&a, last, 1000, 8, LARGE);
        assert!(a.offset(moved).is_none());
        assert_eq!(at(moved, 999), 9);
        free(&a, moved, LARGE, 8);
        // The big region fills up the same way.
        while a.big_used() + BIG <= BIG_SIZE {
            assert!(a.offset(alloc(&a, BIG, 8)).is_some());
        }
        let p = alloc(&a, BIG, 8);
        assert!(a.offset(p).is_none());
        free(&a, p, BIG, 8);
    }

    #[test]
    fn a_big_block_grows_in_place_while_small_ones_are_made() {
        // A Vec doubling while small blocks are made between its pushes (clap's arguments).
        let a = arena();
        let mut v = alloc(&a, 2400, 8);
        fill(v, 5, 2400);
        let mut size = 2400;
        let _s = alloc(&a, 100, 8);
        // Reaching BIG: moved to the big region, its bytes with it.
        v = grow(&a, v, size, 8, 2 * size);
        size *= 2;
        assert!(a.small.offset(v).is_none() && a.big.offset(v).is_some());
        assert_eq!(at(v, 2399), 5);
        let first = v;
        while 2 * size < LARGE {
            let _s = alloc(&a, 300, 8);
            v = grow(&a, v, size, 8, 2 * size);
            size *= 2;
            assert_eq!(v, first, "in place");
        }
        assert_eq!(a.big_used(), size);
        assert_eq!(at(v, 0), 5);
        // Past LARGE: to System.
        let moved = grow(&a, v, size, 8, 2 * size);
        assert!(a.offset(moved).is_none());
        assert_eq!(at(moved, 2399), 5);
        assert_eq!(a.big_used(), 0, "the big region's last block was given back");
        free(&a, moved, 2 * size, 8);
    }

    #[test]
    fn threads_get_disjoint_blocks() {
        let a: &'static Arena = Box::leak(arena());
        let handles: Vec<_> = (0..4u8)
            .map(|t| {
                std::thread::spawn(move || {
                    let mut v = Vec::new();
                    for _ in 0..200 {
                        let p = alloc(a, 32, 16);
                        fill(p, t, 32);
                        v.push(p as usize);
                    }
                    v
                })
            })
            .collect();
        let mut all: Vec<(usize, u8)> = Vec::new();
        for (t, h) in handles.into_iter().enumerate() {
            all.extend(h.join().unwrap().into_iter().map(|p| (p, t as u8)));
        }
        all.sort();
        for w in all.windows(2) {
            assert!(w[1].0 >= w[0].0 + 32, "blocks overlap");
        }
        for (p, t) in all {
            assert_eq!(at(p as *mut u8, 31), t, "a block was overwritten");
        }
    }
}
