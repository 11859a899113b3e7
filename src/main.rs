#[global_allocator]
static ALLOCATOR: keyward::memory::SplitAllocator = keyward::memory::SplitAllocator;

fn main() -> std::process::ExitCode {
    release_large_blocks();
    keyward::cli::main()
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
        libc::mallopt(libc::M_MMAP_THRESHOLD, keyward::memory::LARGE_BLOCK as i32);
    }
}
