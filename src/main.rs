//! The `garret` binary: parse arguments, run one command, map the outcome to borg's exit codes.

fn main() -> std::process::ExitCode {
    tune_malloc();
    garret::create::walk::reserve_descriptor_table();
    garret_cli::main()
}

/// Two glibc allocator settings for the pipeline's buffers (chunks, envelopes, packs: up to
/// 16 MiB each, allocated on one thread and freed on another):
///
/// - One arena for all threads. glibc gives every thread that allocates its own arena (up to 8
///   per core) and keeps freed memory in it, which held tens of MiB of idle memory. A cold
///   create's peak RSS was 89 to 95 MiB with one arena and 97 to 104 MiB with two (eight
///   alternating runs each), with no speed difference this machine's noise lets one see
///   (tools/README.md, eighteenth session).
/// - Buffers up to 32 MiB come from the arena, and the arena keeps up to 256 MiB of free memory
///   instead of returning it to the kernel. glibc's own thresholds move with the sizes freed, and
///   kept handing memory back and faulting it in again: a cold create spent 0.77 to 0.94 s in
///   the kernel with them and 0.69 to 0.81 s with these (eleven alternating pairs, about 1 % of
///   its CPU time; tools/README.md, twenty-fourth session). Peak RSS stays the pipeline's peak,
///   which it reaches anyway. Argon2's 80 MiB block is larger, so it is still mapped and given
///   back when the key is unwrapped.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_malloc() {
    // SAFETY: mallopt only adjusts allocator parameters; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_malloc() {}

#[path = "cli/mod.rs"]
mod garret_cli;
