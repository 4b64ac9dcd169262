//! Integration tests: each drives the real `garret` binary against real files.

mod support;

mod bad_input;
mod bundles;
mod check;
mod compat;
mod concurrency;
mod crash;
mod dedup;
mod faults;
mod hostile;
mod integrity;
mod mount;
mod nightly;
mod recreate;
mod restore;
mod retention;
mod round_trip;
mod secrecy;
mod tarball;
