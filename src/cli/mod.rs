//! Command-line interface: clap definitions, environment, terminal, output formatting and exit
//! codes. The only place that prints or uses `anyhow`. One file per subcommand.

/// `print!` to stdout that returns the write's error instead of panicking: a reader that went
/// away (`garret info --json REPO | head -1`) ends the command quietly through [`main`].
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        write!(std::io::stdout().lock(), $($arg)*)
    }};
}

/// `println!` as [`out!`].
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
    }};
}

mod benchmark;
mod break_lock;
mod check;
mod checksum;
mod common;
mod config;
mod create;
mod diff;
mod extract;
mod filter;
mod format;
mod info;
mod init;
mod key;
mod list;
mod location;
mod mount;
mod prune;
mod recreate;
mod select;
mod tar;
mod upgrade;
mod with_lock;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Exit codes, as borg: 0 success, 1 warnings, 2 errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Warning,
    Error,
    /// The exit code of a command run by `with-lock`, passed on.
    Exit(u8),
}

impl Outcome {
    fn code(self) -> u8 {
        match self {
            Outcome::Ok => 0,
            Outcome::Warning => 1,
            Outcome::Error => 2,
            Outcome::Exit(c) => c,
        }
    }
}

#[derive(Parser)]
#[command(name = "garret", version, about = "Deduplicating, encrypted backups (borg-compatible command line)")]
pub struct Cli {
    #[command(flatten)]
    pub global: common::GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Create a new, empty repository
    Init(init::InitArgs),
    /// Create a new archive
    Create(Box<create::CreateArgs>),
    /// List archives, or the contents of one archive
    List(list::ListArgs),
    /// Show an archive's sizes and details
    Info(info::InfoArgs),
    /// Extract an archive into the current directory
    Extract(extract::ExtractArgs),
    /// Trust the repository's current manifest and key (after restoring it from a copy)
    Adopt(init::AdoptArgs),
    /// Remove the repository's lock and reader marks (left by a process that died on another host)
    BreakLock(break_lock::BreakLockArgs),
    /// Delete archives according to retention rules (borg semantics)
    Prune(prune::PruneArgs),
    /// Delete archives by name or glob
    Delete(prune::DeleteArgs),
    /// Rename an archive
    Rename(prune::RenameArgs),
    /// Free the space of deleted archives
    Compact(prune::CompactArgs),
    /// Verify the repository and its archives
    Check(check::CheckArgs),
    /// Export, import and re-protect the repository key
    Key(key::KeyArgs),
    /// Show what changed between two archives
    Diff(diff::DiffArgs),
    /// Mount the repository (one directory per archive) or one archive read-only (FUSE)
    Mount(mount::MountArgs),
    /// Unmount a mounted repository or archive
    Umount(mount::UmountArgs),
    /// Write an archive as a tar file (PAX: long names, xattrs, hardlinks, nanosecond times)
    ExportTar(tar::ExportTarArgs),
    /// Create an archive from a tar file (e.g. from `borg export-tar`)
    ImportTar(tar::ImportTarArgs),
    /// Run a command while holding the repository lock (no writer runs meanwhile)
    WithLock(with_lock::WithLockArgs),
    /// Rewrite archives without the paths that --exclude/--pattern/... now leave out
    Recreate(Box<recreate::RecreateArgs>),
    /// Show the repository's settings (id, encryption, chunker sizes); they are fixed at init
    Config(config::ConfigArgs),
    /// borg's format upgrades: a garret repository has nothing to upgrade (says so)
    Upgrade(upgrade::UpgradeArgs),
    /// borg's benchmark: time create, extract, re-run and delete on test data
    Benchmark(benchmark::BenchmarkArgs),
}

/// The command line definition: clap's, with every flag allowed more than once (the last value
/// wins, as in borg's argparse; a cron line that gives `-x --one-file-system` still runs).
fn command() -> clap::Command {
    use clap::CommandFactory;
    Cli::command().args_override_self(true)
}

/// The borg release whose command line garret follows, as `--version` reports it when garret runs
/// under the name `borg` (a symlink). Tools that drive borg choose their flags by its version:
/// borgmatic reads `garret 0.1.0` as a borg older than 1.2 and then never runs `compact`, so
/// `prune` would free nothing; `borg 1.2.0 (garret 0.1.0)` makes it use borg 1.2's commands.
const BORG_VERSION: &str = concat!("1.2.0 (garret ", env!("CARGO_PKG_VERSION"), ")");

/// Whether the program was started under the name `borg`.
fn named_borg(program: Option<&std::ffi::OsStr>) -> bool {
    program.and_then(|p| std::path::Path::new(p).file_name()).is_some_and(|n| n == "borg")
}

/// Parse a command line (the process's: `std::env::args_os()`).
fn parse_from<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    use clap::FromArgMatches;
    let args: Vec<std::ffi::OsString> = args.into_iter().map(Into::into).collect();
    let mut cmd = command();
    if named_borg(args.first().map(|a| a.as_os_str())) {
        cmd = cmd.name("borg").version(BORG_VERSION);
    }
    let m = cmd.try_get_matches_from(args)?;
    let mut cli = Cli::from_arg_matches(&m)?;
    if let Some((_, sub)) = m.subcommand() {
        match &mut cli.command {
            Command::Create(a) => select::record_order(sub, &mut a.select),
            Command::Extract(a) => select::record_order(sub, &mut a.select),
            Command::ExportTar(a) => select::record_order(sub, &mut a.select),
            Command::List(a) => select::record_order(sub, &mut a.select),
            Command::Diff(a) => select::record_order(sub, &mut a.select),
            Command::Mount(a) => select::record_order(sub, &mut a.select),
            Command::Recreate(a) => select::record_order(sub, &mut a.select),
            _ => {}
        }
    }
    Ok(cli)
}

pub fn main() -> ExitCode {
    // A usage error exits with 2, as borg's (clap's `exit` prints help and version with 0).
    let cli = parse_from(std::env::args_os()).unwrap_or_else(|e| e.exit());
    let show_rc = cli.global.show_rc;
    common::quiet_warnings(cli.global.error || cli.global.critical);
    common::quiet_errors(cli.global.critical);
    common::iec_units(cli.global.iec);
    common::log_json(cli.global.log_json);
    if cli.global.show_version {
        common::say(common::Level::Info, &format!("garret version {}", env!("CARGO_PKG_VERSION")));
    }
    if let Some(m) = cli.global.umask {
        rustix::process::umask(rustix::fs::Mode::from_raw_mode(m));
    }
    let outcome = match run(cli) {
        Ok(o) => o,
        // The reader of our output went away (`garret list REPO | head -1`): end quietly with the
        // code of a process killed by SIGPIPE (128 + 13), as coreutils do and borg documents.
        Err(e) if broken_pipe(&e) => Outcome::Exit(141),
        Err(e) => {
            common::say(common::Level::Error, &format!("garret: error: {}", common::one_line(&error_chain(&e))));
            Outcome::Error
        }
    };
    if show_rc {
        let name = match outcome.code() {
            0 => "success",
            1 => "warning",
            _ => "error",
        };
        common::say(common::Level::Info, &format!("terminating with {name} status, rc {}", outcome.code()));
    }
    ExitCode::from(outcome.code())
}

/// A broken pipe on standard output, whose reader went away. One on another pipe (a failed
/// `--tar-filter` command) stays an error.
fn broken_pipe(e: &anyhow::Error) -> bool {
    let epipe = e
        .chain()
        .any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe));
    let mut p = libc::pollfd { fd: 1, events: libc::POLLOUT, revents: 0 };
    // SAFETY: one valid pollfd and a zero timeout; poll only reads and writes `p`.
    let stdout_gone = unsafe { libc::poll(&mut p, 1, 0) } == 1 && p.revents & libc::POLLERR != 0;
    epipe && stdout_gone
}

/// The error and its causes on one line, leaving out causes the message already contains.
fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
    }
    out
}

fn run(cli: Cli) -> anyhow::Result<Outcome> {
    let g = &cli.global;
    match &cli.command {
        Command::Init(a) => init::run(g, a),
        Command::Create(a) => create::run(g, a),
        Command::List(a) => list::run(g, a),
        Command::Info(a) => info::run(g, a),
        Command::Extract(a) => extract::run(g, a),
        Command::Adopt(a) => init::adopt(g, a),
        Command::BreakLock(a) => break_lock::run(g, a),
        Command::Prune(a) => prune::run(g, a),
        Command::Delete(a) => prune::delete(g, a),
        Command::Rename(a) => prune::rename(g, a),
        Command::Compact(a) => prune::compact(g, a),
        Command::Check(a) => check::run(g, a),
        Command::Key(a) => key::run(g, a),
        Command::Diff(a) => diff::run(g, a),
        Command::Mount(a) => mount::run(g, a),
        Command::Umount(a) => mount::umount(a),
        Command::ExportTar(a) => tar::export_tar(g, a),
        Command::ImportTar(a) => tar::import_tar(g, a),
        Command::WithLock(a) => with_lock::run(g, a),
        Command::Recreate(a) => recreate::run(g, a),
        Command::Config(a) => config::run(g, a),
        Command::Upgrade(a) => upgrade::run(g, a),
        Command::Benchmark(a) => benchmark::run(g, a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// clap checks a command line's definition (duplicate flags, bad defaults, conflicts naming
    /// missing arguments) only in debug assertions: run them for every subcommand.
    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    /// Flags from borg cron lines parse, globally and after the subcommand.
    #[test]
    fn borg_flags_parse() {
        let parse = |s: &str| parse_from(s.split_whitespace());
        for line in [
            "garret --umask 0077 --critical create --numeric-owner --noatime --noctime --nobirthtime --noflags \
             --nobsdflags --noacls --noxattrs --sparse --checkpoint-interval 600 --no-files-cache r::a src",
            "garret create --debug --warning --error --numeric-ids r::a src",
            "garret list --last 1 --format {archive}{NL} --consider-checkpoints r",
            "garret extract --numeric-owner --noacls --noxattrs --noflags --nobsdflags --consider-checkpoints --sparse r::a",
            "garret prune --save-space --checkpoint-interval 60 --keep-daily 7 r",
            "garret delete --force --save-space r::a",
            "garret compact --cleanup-commits --progress r",
            "garret with-lock r rsync -a --delete r/ offsite:/r/",
            "garret diff --sort --content-only --same-chunker-params r::a b",
            "garret export-tar --tar-format PAX r::a a.tar",
            "garret import-tar --checkpoint-interval 300 r::a a.tar",
            "garret create -c 600 r::a src",
            "garret prune -c 60 --keep-daily 7 r",
            "garret delete -c 60 r::a",
            "garret import-tar -c 300 r::a a.tar",
            "garret recreate -c 60 --list --filter x --timestamp 2026-01-01T00:00:00 r",
            "garret check --progress --save-space r",
            "garret create -x --one-file-system --stats -s -C lz4 -C zstd,3 r::a src",
            "garret extract --pattern=-home/bob --pattern=+home r::a",
            "garret export-tar --pattern=-home/bob --patterns-from p.lst r::a a.tar",
            "garret --remote-path borg1 --rsh ssh --upload-ratelimit 100 --upload-buffer 10 --iec create r::a src",
            "garret list --remote-ratelimit 100 --consider-part-files --bypass-lock --debug-topic x --show-version r",
        ] {
            assert!(parse(line).is_ok(), "{line}: {:?}", parse(line).err());
        }
        for bad in [
            "garret --umask 0800 list r",
            "garret create --no-files-cache --files-cache disabled r::a src",
            "garret export-tar --tar-format GNU r::a a.tar",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    /// Under the name `borg`, `--version` gives a line that borg's drivers parse as borg 1.2 (the
    /// second word); under its own name garret gives its own version.
    #[test]
    fn version_line_follows_the_program_name() {
        let version = |argv0: &str| {
            let e = parse_from([argv0, "--version"]).err().expect("--version ends parsing");
            assert_eq!(e.kind(), clap::error::ErrorKind::DisplayVersion);
            e.to_string()
        };
        let own = format!("garret {}\n", env!("CARGO_PKG_VERSION"));
        let as_borg = format!("borg 1.2.0 (garret {})\n", env!("CARGO_PKG_VERSION"));
        assert_eq!(version("garret"), own);
        assert_eq!(version("/usr/local/bin/garret"), own);
        assert_eq!(version("/usr/local/lib/garret/borg"), as_borg);
        assert_eq!(version("borg"), as_borg);
        assert_eq!(version("borg.real"), format!("garret {}\n", env!("CARGO_PKG_VERSION")));
        assert!(parse_from(["borg", "compact", "--cleanup-commits", "r"]).is_ok());
    }

    /// `--exclude` and `--pattern` values keep their command-line order (borg applies the first
    /// that matches); a repeated single-value flag keeps its last value.
    #[test]
    fn selection_flags_keep_their_order() {
        let cli = parse_from([
            "garret",
            "create",
            "--pattern",
            "+ home/susan",
            "-e",
            "home/*",
            "--pattern=- **/*.o",
            "-C",
            "lz4",
            "--exclude",
            "x",
            "-C",
            "zstd,5",
            "r::a",
            "home",
        ])
        .unwrap();
        let Command::Create(a) = cli.command else { panic!("not create") };
        assert_eq!(a.select.exclude, ["home/*", "x"]);
        assert_eq!(a.select.pattern, ["+ home/susan", "- **/*.o"]);
        assert_eq!(a.select.order, [true, false, true, false]);
        assert_eq!(a.compression.to_string(), "zstd,5");
        let p = a.select.patterns().unwrap();
        assert!(!p.is_excluded(b"home/susan/a.o"), "the include came first");
        assert!(p.is_excluded(b"home/bob"));
        assert!(p.is_excluded(b"x/y"));
    }
}
