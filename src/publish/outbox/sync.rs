//! Making the outbox durable without waiting for the disk on the publisher's task. A
//! [`SyncJob`] holds detached handles — segments sealed since the last sync, the active
//! segment, the ack log — and a rewritten ack log to move into place; it runs on the outbox's
//! own thread (`outbox-sync`, one job at a time) while appends and acknowledgements go on, and
//! reports a [`SyncDone`] that [`Outbox::finish_sync`] applies.

use std::fs::{self, File};
use std::io;
use std::path::PathBuf;

use tokio::sync::oneshot;

use super::acks::Replacement;
use super::{io_err, Outbox, OutboxError};

/// What one sync makes durable.
#[derive(Debug)]
pub struct SyncJob {
    /// Segments sealed since the last sync.
    sealed: Vec<(PathBuf, File)>,
    /// The active segment.
    segment: (PathBuf, File),
    /// The ack log (or its rewrite, while that waits to be moved into place).
    acks: (PathBuf, File),
    /// A rewritten ack log to move over the old one once it is durable.
    replacement: Option<Replacement>,
    /// The outbox's next id when the job was made: every record below it is covered.
    upto: u64,
}

/// The result of a [`SyncJob`].
#[derive(Debug)]
pub struct SyncDone {
    /// Every record below this id is durable when `result` is `Ok`.
    pub upto: u64,
    /// The first failure.
    pub result: Result<(), OutboxError>,
    /// The rewritten ack log was moved into place.
    renamed: bool,
}

/// A sync started on the outbox's thread; resolves to its result.
pub type PendingSync = oneshot::Receiver<SyncDone>;

fn sync_data((path, file): &(PathBuf, File)) -> Result<(), OutboxError> {
    file.sync_data().map_err(io_err(path))
}

impl SyncJob {
    /// fdatasync of every sealed segment, the active one and the ack log; then the rewritten
    /// ack log (fully synced) is renamed over the old one.
    #[must_use]
    pub fn run(self) -> SyncDone {
        let mut renamed = false;
        let result = (|| {
            for sealed in &self.sealed {
                sync_data(sealed)?;
            }
            sync_data(&self.segment)?;
            let Some(r) = &self.replacement else {
                return sync_data(&self.acks);
            };
            self.acks.1.sync_all().map_err(io_err(&r.from))?;
            fs::rename(&r.from, &r.to).map_err(io_err(&r.to))?;
            renamed = true;
            Ok(())
        })();
        SyncDone {
            upto: self.upto,
            result,
            renamed,
        }
    }
}

/// The outbox's sync thread: takes one job at a time.
#[derive(Debug)]
pub(super) struct SyncThread {
    jobs: crossbeam_channel::Sender<(SyncJob, oneshot::Sender<SyncDone>)>,
}

impl SyncThread {
    fn spawn() -> io::Result<Self> {
        // One job at a time: the publisher starts the next sync once the last one is done.
        let (jobs, rx) = crossbeam_channel::bounded::<(SyncJob, oneshot::Sender<SyncDone>)>(1);
        std::thread::Builder::new()
            .name("outbox-sync".into())
            .spawn(move || {
                for (job, reply) in rx {
                    if reply.send(job.run()).is_err() {
                        // Nobody waits for it any more (the publisher stopped first).
                        tracing::debug!("an outbox sync finished after its caller stopped");
                    }
                }
            })?;
        Ok(Self { jobs })
    }
}

impl Outbox {
    /// Writes buffered acks to the file (the page cache) and detaches what the next sync makes
    /// durable.
    ///
    /// # Errors
    /// [`OutboxError::Io`] when writing or cloning a handle fails (a full disk is no error).
    pub fn sync_job(&mut self) -> Result<SyncJob, OutboxError> {
        self.flush_acks()?;
        let path = self.active_path();
        let segment = self.active.try_clone().map_err(io_err(&path))?;
        let (acks, replacement) = self.acks.sync_parts()?;
        Ok(SyncJob {
            sealed: std::mem::take(&mut self.unsynced_sealed),
            segment: (path, segment),
            acks: (self.acks.path().to_path_buf(), acks),
            replacement,
            upto: self.next_id,
        })
    }

    /// Starts a sync on the outbox's own thread (started on first use); the receiver gets its
    /// result, to hand to [`Outbox::finish_sync`]. One at a time: start the next once this one
    /// is done. Without its thread (the OS refused one) the sync runs here.
    ///
    /// # Errors
    /// As [`Outbox::sync_job`].
    pub fn begin_sync(&mut self) -> Result<PendingSync, OutboxError> {
        let job = self.sync_job()?;
        let (reply, pending) = oneshot::channel();
        if self.syncer.is_none() {
            match SyncThread::spawn() {
                Ok(t) => self.syncer = Some(t),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot start the outbox sync thread; syncing on the publisher's task")
                }
            }
        }
        let (job, reply) = match &self.syncer {
            Some(t) => {
                match t.jobs.try_send((job, reply)) {
                    Ok(()) => return Ok(pending),
                    Err(e) => {
                        tracing::warn!("the outbox sync thread is busy or gone; syncing on the publisher's task");
                        self.syncer = None;
                        e.into_inner()
                    }
                }
            }
            None => (job, reply),
        };
        if reply.send(job.run()).is_err() {
            tracing::debug!("outbox sync result dropped: its receiver is gone");
        }
        Ok(pending)
    }

    /// Applies a finished sync; on success, the id below which everything is durable.
    ///
    /// # Errors
    /// The sync's own failure.
    pub fn finish_sync(&mut self, done: SyncDone) -> Result<u64, OutboxError> {
        if done.renamed {
            self.acks.replaced();
        }
        done.result.map(|()| done.upto)
    }

    /// Flushes and fsyncs here and now (tests, shutdown).
    ///
    /// # Errors
    /// [`OutboxError::Io`].
    pub fn sync(&mut self) -> Result<(), OutboxError> {
        let done = self.sync_job()?.run();
        self.finish_sync(done).map(|_| ())
    }
}
