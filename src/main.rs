//! The `garret` binary: parse arguments, run one command, map the outcome to borg's exit codes.

fn main() -> std::process::ExitCode {
    limit_malloc_arenas();
    garret::create::walk::reserve_descriptor_table();
    garret_cli::main()
}

/// glibc gives every thread that allocates its own arena (up to 8 per core) and keeps freed
/// memory in it; with the pipeline's buffers moving between threads that holds tens of MiB of
/// idle memory. One arena for all threads: a cold create's peak RSS was 89 to 95 MiB with one and
/// 97 to 104 MiB with two (eight alternating runs each), at no speed difference that this
/// machine's noise lets one see, though the threads wait on the arena's lock more often
/// (tools/README.md, eighteenth session).
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
