//! The `garret` binary: parse arguments, run one command, map the outcome to borg's exit codes.

fn main() -> std::process::ExitCode {
    limit_malloc_arenas();
    garret::create::walk::reserve_descriptor_table();
    garret_cli::main()
}

/// glibc gives every thread that allocates its own arena (up to 8 per core) and keeps freed
/// memory in it; with the pipeline's buffers moving between threads that holds tens of MiB of
/// idle memory. Two arenas keep peak RSS close to what is live, at no measurable cost in speed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn limit_malloc_arenas() {
    // SAFETY: mallopt only adjusts allocator parameters; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}

#[path = "cli/mod.rs"]
mod garret_cli;
