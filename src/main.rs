use std::alloc::{GlobalAlloc, Layout, System};

#[global_allocator]
static ALLOCATOR: SplitAllocator = SplitAllocator;

fn main() -> std::process::ExitCode {
    release_large_blocks();
    keyward::cli::main()
}

/// Blocks of at least this size go to glibc, the rest to mimalloc.
const LARGE_BLOCK: usize = 256 * 1024;

/// mimalloc serves the many small, short-lived blocks of the request path
/// faster than glibc (docs/performance.md, step 9), but keeps large freed
/// blocks: argon2's 19 MiB per password hash would stay in memory. Large
/// blocks therefore go to glibc, which maps them and gives them back at once
/// (see `release_large_blocks`). A block is freed by the allocator that
/// made it, as `dealloc` and `realloc` get the size `alloc` was given.
struct SplitAllocator;

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

/// Transparent huge pages would back mimalloc's aligned regions with 2 MiB
/// pages where the kernel enables them always: 20 MB more at rest for a heap
/// this small, measured. It runs as a constructor, so before Rust's start-up
/// allocates (set in `main`, two huge pages were already in). The flag is
/// the whole process's, so the order among constructors matters little.
/// mimalloc's `no_thp` feature does not do this: it only skips its own
/// `madvise`, which a kernel that enables huge pages always does not need.
#[cfg(target_os = "linux")]
#[used]
#[unsafe(link_section = ".init_array")]
static NO_HUGE_PAGES: extern "C" fn() = no_huge_pages;

#[cfg(target_os = "linux")]
extern "C" fn no_huge_pages() {
    // SAFETY: prctl with PR_SET_THP_DISABLE only sets a flag of this process.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

/// glibc keeps a large freed block (argon2's 19 MiB per password hash) in
/// the heap of the thread that freed it, and raises its mmap threshold to
/// that size, so every blocking thread that hashed a password holds one
/// forever. A fixed threshold maps such blocks and gives them back at once.
fn release_large_blocks() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, LARGE_BLOCK as i32);
    }
}
