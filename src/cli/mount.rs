//! `garret mount REPO[::NAME] MOUNTPOINT` and `garret umount MOUNTPOINT`.
//!
//! Without `--foreground`, mount runs itself again as a background child and returns once the
//! child reports the file system mounted (or relays its error and exit code), as borg does. The
//! child asks for the passphrase itself (on the terminal) before it detaches. SIGINT, SIGTERM
//! and SIGHUP unmount cleanly.

use super::common::{self, GlobalArgs};
use super::filter::ArchiveFilter;
use super::{location, Outcome};
use anyhow::{bail, Context, Result};
use garret::archive;
use garret::mount::{self, Access, GarretFs, MountOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Set in the environment of the background child; its stdout is the readiness pipe.
const CHILD_ENV: &str = "GARRET_MOUNT_CHILD";

#[derive(clap::Args, Debug)]
pub struct MountArgs {
    /// Stay in the foreground (do not detach)
    #[arg(short = 'f', long)]
    pub foreground: bool,
    /// Mount options, comma-separated: allow_other, allow_root; kernel_cache (reads go through
    /// the page cache, shared by every reader, instead of direct I/O where the kernel offers it)
    #[arg(short = 'o', value_name = "OPTIONS")]
    pub options: Option<String>,
    #[command(flatten)]
    pub select: super::select::SelectionArgs,
    /// Remove N leading path components from every archive's items
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub strip_components: usize,
    /// Show stored uid/gid instead of mapping user and group names to local ids
    #[arg(long, alias = "numeric-owner")]
    pub numeric_ids: bool,
    /// JSON on stdout once mounted: mount point, repository, archive, archives shown, pid
    #[arg(long)]
    pub json: bool,
    /// Which archives a repository mount shows (borg's archive filters, e.g. --last 7)
    #[command(flatten)]
    pub filter: ArchiveFilter,
    /// REPO or REPO::NAME
    pub location: String,
    pub mountpoint: PathBuf,
}

#[derive(clap::Args, Debug)]
pub struct UmountArgs {
    pub mountpoint: PathBuf,
    /// JSON on stdout: the mount point unmounted
    #[arg(long)]
    pub json: bool,
}

/// The `-o` options: who may use the mount, and whether reads go through the page cache.
fn parse_options(options: Option<&str>) -> Result<(Access, bool)> {
    let (mut access, mut kernel_cache) = (Access::Owner, false);
    for o in options.unwrap_or("").split(',').filter(|o| !o.is_empty()) {
        match o {
            "allow_other" => access = Access::All,
            "allow_root" => access = Access::Root,
            "kernel_cache" => kernel_cache = true,
            "ro" | "default_permissions" => {}
            other => bail!("unknown mount option {other:?} (supported: allow_other, allow_root, kernel_cache)"),
        }
    }
    Ok((access, kernel_cache))
}

pub fn run(g: &GlobalArgs, a: &MountArgs) -> Result<Outcome> {
    let (access, kernel_cache) = parse_options(a.options.as_deref())?;
    if a.filter.is_set() && a.location.contains("::") {
        bail!("--prefix, --glob-archives, --sort-by, --first and --last select archives: give REPO, not REPO::NAME");
    }
    a.filter.select(&[])?; // bad --sort-by or --glob-archives: refused before mounting
    mount::check_available()?;
    let child = std::env::var_os(CHILD_ENV).is_some();
    if !a.foreground && !child {
        return spawn_background(a.json);
    }
    let loc = location::parse(&a.location)?;
    let mut repo = common::open(g, &loc.repo, false)?;
    // While mounted, compact keeps the data of the archives shown (section 14 of repo-format.md).
    let mark = repo.hold()?;
    let single = match &loc.archive {
        Some(name) => Some(archive::lookup(&repo, name)?.clone()),
        None => None,
    };
    let only: Option<Vec<String>> = match a.filter.is_set() {
        true => Some(a.filter.select(&repo.manifest().archives)?.iter().map(|e| e.name.clone()).collect()),
        false => None,
    };
    let shown: Vec<_> = match (&single, &only) {
        (Some(entry), _) => vec![entry.clone()],
        (None, Some(names)) => repo.manifest().archives.iter().filter(|e| names.contains(&e.name)).cloned().collect(),
        (None, None) => repo.manifest().archives.clone(),
    };
    if let Some(mark) = &mark {
        mark.set_archives(&shown.iter().map(|e| e.id).collect::<Vec<_>>())?;
    }
    let opts = MountOptions {
        numeric_ids: a.numeric_ids,
        cache_bytes: 64 << 20,
        kernel_cache,
        only,
        excludes: a.select.patterns()?,
        strip_components: a.strip_components,
    };
    let fs = GarretFs::new(repo, single, &opts)?;
    if fs.skipped() > 0 {
        common::warn(&format!("{} item(s) with invalid paths are not shown", fs.skipped()));
    }
    let summary = serde_json::json!({
        "mountpoint": std::path::absolute(&a.mountpoint).unwrap_or_else(|_| a.mountpoint.clone()).display().to_string(),
        "repository": loc.repo.display().to_string(),
        "archive": loc.archive,
        "archives": fs.archives(),
        "pid": std::process::id(),
    });
    let mut session = mount::session(fs, &a.mountpoint, access)?;
    let unmounter = session.unmount_callable();
    signals::unmount_on_signal(unmounter)?;
    let mut out = std::io::stdout();
    if child {
        // Tell the parent we are mounted (and what), then detach from its pipes and terminal.
        writeln!(out, "{READY} {summary}").and_then(|_| out.flush()).context("signalling the parent")?;
        detach()?;
    } else if a.json {
        writeln!(out, "{summary}").and_then(|_| out.flush()).context("writing the summary")?;
    }
    session.run().context("serving the FUSE mount")?;
    Ok(Outcome::Ok)
}

/// The child's first line on its stdout once mounted, followed by its JSON summary.
const READY: &str = "ready";

/// Start `garret mount` again as a background child and wait until it has mounted.
fn spawn_background(json: bool) -> Result<Outcome> {
    let exe = std::env::current_exe().context("finding the garret executable")?;
    let mut child = Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env(CHILD_ENV, "1")
        .stdin(Stdio::inherit())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting the background mount process")?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line).ok();
    if let Some(summary) = line.trim_end().strip_prefix(READY) {
        if json {
            outln!("{}", summary.trim_start())?;
        }
        return Ok(Outcome::Ok);
    }
    let mut err = String::new();
    child.stderr.take().expect("piped").read_to_string(&mut err).ok();
    let status = child.wait().context("waiting for the mount process")?;
    eprint!("{err}");
    Ok(match status.code() {
        Some(0) => Outcome::Ok,
        Some(1) => Outcome::Warning,
        _ => Outcome::Error,
    })
}

/// New session, no controlling terminal, standard streams on /dev/null.
fn detach() -> Result<()> {
    let null = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null").context("opening /dev/null")?;
    use std::os::fd::AsRawFd;
    for fd in 0..3 {
        // SAFETY: dup2 onto the standard descriptors, which this process owns.
        if unsafe { libc::dup2(null.as_raw_fd(), fd) } < 0 {
            return Err(std::io::Error::last_os_error()).context("redirecting standard streams");
        }
    }
    rustix::process::setsid().ok();
    Ok(())
}

pub fn umount(a: &UmountArgs) -> Result<Outcome> {
    mount::unmount(&a.mountpoint)?;
    if a.json {
        outln!("{}", serde_json::json!({ "unmounted": a.mountpoint.display().to_string() }))?;
    }
    Ok(Outcome::Ok)
}

mod signals {
    //! SIGINT/SIGTERM/SIGHUP unmount the file system, which ends the session loop.
    use anyhow::{Context, Result};
    use std::os::fd::OwnedFd;
    use std::sync::atomic::{AtomicI32, Ordering};

    static PIPE_W: AtomicI32 = AtomicI32::new(-1);

    extern "C" fn on_signal(_: libc::c_int) {
        let fd = PIPE_W.load(Ordering::Relaxed);
        if fd >= 0 {
            // SAFETY: write(2) is async-signal-safe; the byte's value does not matter.
            unsafe { libc::write(fd, b"x".as_ptr().cast(), 1) };
        }
    }

    pub fn unmount_on_signal(mut unmounter: fuser::SessionUnmounter) -> Result<()> {
        let (r, w) = rustix::pipe::pipe().context("creating the signal pipe")?;
        PIPE_W.store(std::os::fd::IntoRawFd::into_raw_fd(w), Ordering::Relaxed);
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            // SAFETY: installs a handler that only calls write(2).
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = on_signal as *const () as usize;
                libc::sigemptyset(&mut sa.sa_mask);
                libc::sigaction(sig, &sa, std::ptr::null_mut());
            }
        }
        let r: OwnedFd = r;
        std::thread::Builder::new()
            .name("garret-signals".into())
            .spawn(move || {
                let mut buf = [0u8; 1];
                let f = std::fs::File::from(r);
                if std::io::Read::read(&mut &f, &mut buf).unwrap_or(0) == 1 {
                    let _ = unmounter.unmount();
                }
            })
            .context("starting the signal thread")?;
        Ok(())
    }
}
