//! The `garret` binary: parse arguments, run one command, map the outcome to borg's exit codes.

fn main() -> std::process::ExitCode {
    limit_malloc_arenas();
    garret::create::walk::reserve_descriptor_table();
    garret_cli::main()
}

/// glibc gives every thread that allocates its own arena (up to 8 per core) and keeps freed
/// memory in it; with the pipeline's buffers moving between threads that holds tens of MiB of
/// idle memory. One arena for all threads: a cold create's peak RSS was 95 to 98 MiB with one
/// and 102 to 108 MiB with two (`--kdf-memory 64`, so the pipeline sets the peak), at no
/// measurable cost in speed: the pipeline allocates in MiB-sized buffers, a few hundred a second.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn limit_malloc_arenas() {
    // SAFETY: mallopt only adjusts allocator parameters; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}

#[path = "cli/mod.rs"]
mod garret_cli;
