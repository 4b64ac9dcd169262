//! The `garret` binary: parse arguments, run one command, map the outcome to borg's exit codes.

fn main() -> std::process::ExitCode {
    garret_cli::main()
}

#[path = "cli/mod.rs"]
mod garret_cli;
