//! `garret with-lock REPO COMMAND [ARGS...]`: run a command while holding the repository's
//! writer lock, as borg's with-lock: no create, prune or compact runs meanwhile. A copy of a
//! garret repository is consistent without it (every file is written once and renamed into
//! place), but existing cron lines use it. Needs no passphrase. Exits with the command's code.

use super::common::GlobalArgs;
use super::{location, Outcome};
use anyhow::{bail, Context, Result};
use std::ffi::OsString;

#[derive(clap::Args, Debug)]
pub struct WithLockArgs {
    /// After the command, print {"repository", "command", "exit_code"} on stdout
    #[arg(long)]
    pub json: bool,
    /// Repository path
    pub repository: String,
    /// The command and its arguments
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<OsString>,
}

pub fn run(g: &GlobalArgs, a: &WithLockArgs) -> Result<Outcome> {
    let loc = location::parse(&a.repository)?;
    loc.forbid_archive()?;
    if !loc.repo.join(garret::repository::CONFIG_FILE).is_file() {
        bail!("{} is not a garret repository (no config file); check the path", loc.repo.display());
    }
    let mut warnings = vec![];
    let wait = std::time::Duration::from_secs_f64(g.lock_wait.max(0.0));
    let lock = garret::repository::lock::Lock::acquire(&loc.repo, wait, &mut warnings)?;
    for w in &warnings {
        super::common::warn(w);
    }
    let shown = a.command.iter().map(|s| s.to_string_lossy()).collect::<Vec<_>>().join(" ");
    let status = std::process::Command::new(&a.command[0])
        .args(&a.command[1..])
        .status()
        .with_context(|| format!("cannot run {shown:?}"));
    drop(lock);
    let status = status?;
    use std::os::unix::process::ExitStatusExt;
    let code = status.code().or_else(|| status.signal().map(|s| 128 + s)).unwrap_or(2).clamp(0, 255);
    if a.json {
        let command: Vec<String> = a.command.iter().map(|s| s.to_string_lossy().into_owned()).collect();
        outln!(
            "{}",
            serde_json::json!({ "repository": loc.repo.display().to_string(), "command": command, "exit_code": code })
        )?;
    }
    Ok(Outcome::Exit(code as u8))
}
