//! Writes finished packs on background threads so that storing one pack overlaps with building
//! the next: one thread writes packs to temporary files, another makes them durable (fsync,
//! rename, directory fsync) while the next is written.
//!
//! Contract: a pack reported back as written is durable; its index rows are added by the caller
//! only then. At most one pack is being written while the caller builds the next (a pack's memory
//! is freed once written, before its fsync), so memory holds at most two packs. The first failure is reported and the writer stops accepting work: a pack
//! whose write failed is lost, never retried.

use crate::backend::{LocalBackend, Staged};
use crate::error::{Error, Result};
use crate::faults;
use crate::pack::PackEntry;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;

pub struct Job {
    /// The pack file's bytes, in order; the writer names the pack by their BLAKE3 hash.
    pub parts: Vec<Vec<u8>>,
    pub entries: Vec<PackEntry>,
    /// The pack holds blobs moved by compaction: index them here even if indexed elsewhere.
    pub moved: bool,
}

/// A pack that is now durable.
pub struct Written {
    pub name: String,
    pub size: u64,
    pub entries: Vec<PackEntry>,
    pub moved: bool,
}

pub struct PackWriter {
    tx: Option<SyncSender<Job>>,
    /// In a mutex only so a repository (and a read-only mount holding one) is `Sync`; it is
    /// reached through `get_mut`, never locked.
    rx: std::sync::Mutex<Receiver<Result<Written>>>,
    handle: Option<JoinHandle<()>>,
    outstanding: usize,
    /// Packs reported written while `submit` looked for the failure that stopped the threads.
    held: Vec<Written>,
}

impl PackWriter {
    /// `key_of` gives the storage key of a pack from its name.
    pub fn spawn(backend: LocalBackend, key_of: fn(&str) -> String) -> PackWriter {
        // Rendezvous channel: `submit` blocks until the thread is free to take the job.
        let (tx, jobs) = sync_channel::<Job>(0);
        let (done, rx) = sync_channel::<Result<Written>>(4);
        let handle = std::thread::Builder::new()
            .name("garret-pack-writer".into())
            .spawn(move || {
                // Writing a pack and making it durable are two stages on two threads: the pack's
                // memory is freed once it is written, and the next pack is taken while this one's
                // fsync runs (a create stalled on each fsync: 5.76 -> 5.48 s with them overlapped).
                let (stage_tx, staged) = sync_channel::<Result<(Staged, Written)>>(0);
                // `move`: the writer's sender must be dropped when its loop ends, or the sync thread
                // (which the scope waits for) would wait for more packs forever.
                std::thread::scope(move |scope| {
                    std::thread::Builder::new()
                        .name("garret-pack-sync".into())
                        .spawn_scoped(scope, move || {
                            for s in staged {
                                let r = s.and_then(|(object, written)| object.commit().map(|()| written));
                                let failed = r.is_err();
                                if r.is_ok() {
                                    faults::crash_point("pack-written");
                                }
                                if done.send(r).is_err() || failed {
                                    return;
                                }
                            }
                        })
                        .expect("spawning the pack sync thread");
                    for job in jobs {
                        let size = job.parts.iter().map(|p| p.len() as u64).sum();
                        // Named here rather than by the caller, whose thread feeds the pipeline
                        // (hashing 8 MiB packs there took 0.4 s of a 5 s create).
                        let mut h = blake3::Hasher::new();
                        for p in &job.parts {
                            h.update(p);
                        }
                        let name = h.finalize().to_hex().to_string();
                        let r = backend
                            .stage(&key_of(&name), job.parts)
                            .map(|object| (object, Written { name, size, entries: job.entries, moved: job.moved }));
                        let failed = r.is_err();
                        if stage_tx.send(r).is_err() || failed {
                            return;
                        }
                    }
                });
            })
            .expect("spawning the pack writer thread");
        PackWriter { tx: Some(tx), rx: std::sync::Mutex::new(rx), handle: Some(handle), outstanding: 0, held: vec![] }
    }

    /// Hand a pack to the writer thread (blocks while it is busy with the previous one).
    pub fn submit(&mut self, job: Job) -> Result<()> {
        let tx = self.tx.as_ref().ok_or_else(|| Error::malformed("pack writer", "used after a failure"))?;
        if tx.send(job).is_err() {
            // The threads stopped after a failure. Its error waits in `rx`, possibly behind packs
            // written before it: keep those for `completed` and report the error itself.
            loop {
                match self.next_result() {
                    Ok(w) => self.held.push(w),
                    Err(e) => return Err(e),
                }
            }
        }
        self.outstanding += 1;
        Ok(())
    }

    fn next_result(&mut self) -> Result<Written> {
        let r = self
            .rx
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .recv()
            .map_err(|_| Error::malformed("pack writer", "thread ended unexpectedly"))?;
        self.outstanding = self.outstanding.saturating_sub(1);
        if r.is_err() {
            self.tx = None;
        }
        r
    }

    /// Packs that finished since the last call; with `wait`, every outstanding pack.
    pub fn completed(&mut self, wait: bool) -> Result<Vec<Written>> {
        let mut out = std::mem::take(&mut self.held);
        while self.outstanding > 0 {
            let r = if wait {
                self.next_result()?
            } else {
                match self.rx.get_mut().unwrap_or_else(|e| e.into_inner()).try_recv() {
                    Ok(r) => {
                        self.outstanding -= 1;
                        if r.is_err() {
                            self.tx = None;
                        }
                        r?
                    }
                    Err(_) => break,
                }
            };
            out.push(r);
        }
        Ok(out)
    }
}

impl Drop for PackWriter {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(h) = self.handle.take() {
            // Let an in-flight pack finish (it is complete and harmless: unreferenced until a
            // manifest names it, and indexed by the next open).
            let _ = h.join();
        }
    }
}
