//! The process's allocator: small blocks from mimalloc, large ones from the
//! system's (glibc's). `main.rs` installs it and tunes glibc and the kernel
//! to match; it lives here so that its unit tests can call it directly.

use std::alloc::{GlobalAlloc, Layout, System};

/// Blocks of at least this size go to glibc, the rest to mimalloc.
pub const LARGE_BLOCK: usize = 256 * 1024;

/// mimalloc serves the many small, short-lived blocks of the request path
/// faster than glibc (docs/performance.md, step 9), but keeps large freed
/// blocks: argon2's 19 MiB per password hash would stay in memory. Large
/// blocks therefore go to glibc, which maps them and gives them back at once
/// (`main.rs` sets glibc's mmap threshold to the same size). A block is freed
/// by the allocator that made it, as `dealloc` and `realloc` get the size
/// `alloc` was given.
pub struct SplitAllocator;

fn is_large(size: usize) -> bool {
    size >= LARGE_BLOCK
}

// SAFETY: each call is forwarded to one of two sound allocators, chosen by
// the block's size, which the caller gives unchanged from allocation to
// release; a block that changes side in `realloc` is copied and released by
// the side that made it.
unsafe impl GlobalAlloc for SplitAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        unsafe {
            if is_large(layout.size()) { System.alloc(layout) } else { mimalloc::MiMalloc.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        unsafe {
            if is_large(layout.size()) {
                System.alloc_zeroed(layout)
            } else {
                mimalloc::MiMalloc.alloc_zeroed(layout)
            }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `layout` is the one `ptr` was allocated with, so its size
        // names the allocator that made it.
        unsafe {
            if is_large(layout.size()) {
                System.dealloc(ptr, layout)
            } else {
                mimalloc::MiMalloc.dealloc(ptr, layout)
            }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let (was_large, now_large) = (is_large(layout.size()), is_large(new_size));
        // SAFETY: same side: forwarded as given. Changing sides: a new block
        // from the other allocator (`new_size` is valid for `layout`'s
        // alignment, per `realloc`'s contract), the common prefix copied, the
        // old block released by its own allocator.
        unsafe {
            match (was_large, now_large) {
                (true, true) => System.realloc(ptr, layout, new_size),
                (false, false) => mimalloc::MiMalloc.realloc(ptr, layout, new_size),
                _ => {
                    let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
                    let new = self.alloc(new_layout);
                    if !new.is_null() {
                        std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                        self.dealloc(ptr, layout);
                    }
                    new
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A block of `size` bytes aligned to `align`, filled with a pattern.
    unsafe fn filled(a: &SplitAllocator, size: usize, align: usize) -> (*mut u8, Layout) {
        let layout = Layout::from_size_align(size, align).unwrap();
        // SAFETY: a non-zero size; the block is written within its bounds.
        unsafe {
            let p = a.alloc(layout);
            assert!(!p.is_null());
            assert_eq!(p as usize % align, 0, "aligned to {align}");
            for i in 0..size {
                *p.add(i) = (i % 251) as u8;
            }
            (p, layout)
        }
    }

    /// Whether the first `len` bytes still hold the pattern.
    unsafe fn holds_pattern(p: *const u8, len: usize) -> bool {
        // SAFETY: the caller passes a live block of at least `len` bytes.
        (0..len).all(|i| unsafe { *p.add(i) } == (i % 251) as u8)
    }

    #[test]
    fn blocks_keep_their_bytes_when_they_change_sides() {
        let a = SplitAllocator;
        for align in [8, 64, 4096] {
            // SAFETY: every block is used within its size and released once,
            // with the layout it has at that moment.
            unsafe {
                let (p, layout) = filled(&a, 1000, align);
                let grown = a.realloc(p, layout, 3 * LARGE_BLOCK);
                assert!(!grown.is_null() && grown as usize % align == 0);
                assert!(holds_pattern(grown, 1000), "small -> large kept the bytes (align {align})");
                let large = Layout::from_size_align(3 * LARGE_BLOCK, align).unwrap();
                for i in 0..large.size() {
                    *grown.add(i) = (i % 251) as u8;
                }
                let shrunk = a.realloc(grown, large, 500);
                assert!(!shrunk.is_null() && shrunk as usize % align == 0);
                assert!(holds_pattern(shrunk, 500), "large -> small kept the bytes (align {align})");
                let same_side = a.realloc(shrunk, Layout::from_size_align(500, align).unwrap(), 700);
                assert!(holds_pattern(same_side, 500));
                a.dealloc(same_side, Layout::from_size_align(700, align).unwrap());
            }
        }
    }

    #[test]
    fn zeroed_blocks_are_zero_on_both_sides() {
        let a = SplitAllocator;
        for size in [24, LARGE_BLOCK - 1, LARGE_BLOCK, 2 * LARGE_BLOCK] {
            let layout = Layout::from_size_align(size, 16).unwrap();
            // SAFETY: read within the block, released with its layout.
            unsafe {
                let p = a.alloc_zeroed(layout);
                assert!(!p.is_null());
                assert!((0..size).all(|i| *p.add(i) == 0), "{size} bytes zeroed");
                a.dealloc(p, layout);
            }
        }
    }

    #[test]
    fn the_boundary_is_the_mmap_threshold() {
        assert!(!is_large(LARGE_BLOCK - 1));
        assert!(is_large(LARGE_BLOCK));
    }
}
