//! Tar streams in and out of archives: [`export`] writes an archive as PAX tar (`export-tar`),
//! [`import`] reads ustar/PAX/GNU tar into a new archive (`import-tar`, e.g. to migrate a borg
//! repository archive by archive). The `tar` crate does the block format; these modules map
//! items to entries and back.

pub mod export;
pub mod import;
