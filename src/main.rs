fn main() -> std::process::ExitCode {
    release_large_blocks();
    keyward::cli::main()
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
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
}
