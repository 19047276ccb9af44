//! Bounded queues between threads, each with a named policy for when it is full. Drops are
//! counted in the owning stream's telemetry under the queue's reason; the depth can be read by
//! a metrics probe that does not keep the queue open ([`QueueSender::depth_probe`]).

use std::sync::{Arc, Weak};
use std::time::Duration;

use crossbeam_channel as cb;

use crate::config::WhenFull;
use crate::telemetry::{DropReason, StreamStats};

/// The sending side of a bounded queue.
#[derive(Debug)]
pub struct QueueSender<T> {
    // Shared by the clones, so that a depth probe can hold it weakly: the channel closes when the
    // last clone is dropped, whatever probes exist.
    tx: Arc<cb::Sender<T>>,
    // Only for `drop_oldest`, which takes the oldest item out from the producer side. (Holding
    // it keeps the channel open, so other policies must not, or they could not see the consumer
    // stop.)
    rx: Option<cb::Receiver<T>>,
    policy: WhenFull,
    reason: DropReason,
    stats: Arc<StreamStats>,
}

impl<T> Clone for QueueSender<T> {
    fn clone(&self) -> Self {
        Self {
            tx: Arc::clone(&self.tx),
            rx: self.rx.clone(),
            policy: self.policy,
            reason: self.reason,
            stats: Arc::clone(&self.stats),
        }
    }
}

/// The queue's consumer is gone; the item was not queued.
#[derive(Debug, thiserror::Error)]
#[error("the queue's consumer has stopped")]
pub struct Disconnected;

/// Creates a bounded queue of `capacity` items with `policy`; drops count as `reason` in `stats`.
#[must_use]
pub fn bounded<T>(
    capacity: usize,
    policy: WhenFull,
    reason: DropReason,
    stats: Arc<StreamStats>,
) -> (QueueSender<T>, cb::Receiver<T>) {
    let (tx, rx) = cb::bounded(capacity.max(1));
    (
        QueueSender {
            tx: Arc::new(tx),
            rx: (policy == WhenFull::DropOldest).then(|| rx.clone()),
            policy,
            reason,
            stats,
        },
        rx,
    )
}

impl<T> QueueSender<T> {
    /// Queues `item` following the policy. Returns `Ok(true)` if it was queued, `Ok(false)` if
    /// the policy dropped it (counted).
    ///
    /// # Errors
    /// [`Disconnected`] when the consumer has stopped.
    pub fn send(&self, item: T) -> Result<bool, Disconnected> {
        match self.policy {
            WhenFull::Block => self.tx.send(item).map(|()| true).map_err(|_| Disconnected),
            WhenFull::DropNewest => match self.tx.try_send(item) {
                Ok(()) => Ok(true),
                Err(cb::TrySendError::Full(_)) => {
                    self.stats.add_drops(self.reason, 1);
                    Ok(false)
                }
                Err(cb::TrySendError::Disconnected(_)) => Err(Disconnected),
            },
            WhenFull::DropOldest => {
                let mut item = item;
                loop {
                    match self.tx.try_send(item) {
                        Ok(()) => return Ok(true),
                        Err(cb::TrySendError::Full(back)) => {
                            item = back;
                            if let Some(rx) = &self.rx {
                                if rx.try_recv().is_ok() {
                                    self.stats.add_drops(self.reason, 1);
                                }
                            }
                        }
                        Err(cb::TrySendError::Disconnected(_)) => return Err(Disconnected),
                    }
                }
            }
        }
    }

    /// Like [`send`](Self::send), but under `block` waits at most `timeout` and then hands the
    /// item back (`Ok(Some(item))`), so that a producer can check for cancellation and retry.
    ///
    /// # Errors
    /// [`Disconnected`] when the consumer has stopped.
    pub fn send_timeout_keep(&self, item: T, timeout: Duration) -> Result<Option<T>, Disconnected> {
        if self.policy != WhenFull::Block {
            return self.send(item).map(|_| None);
        }
        match self.tx.send_timeout(item, timeout) {
            Ok(()) => Ok(None),
            Err(cb::SendTimeoutError::Timeout(back)) => Ok(Some(back)),
            Err(cb::SendTimeoutError::Disconnected(_)) => Err(Disconnected),
        }
    }

    /// The same queue, counting this sender's drops in `stats` (one queue, several streams).
    #[must_use]
    pub fn with_stats(&self, stats: Arc<StreamStats>) -> Self {
        Self {
            stats,
            ..self.clone()
        }
    }

    /// Items waiting.
    #[must_use]
    pub fn len(&self) -> usize {
        self.tx.len()
    }

    /// Whether nothing is waiting.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.tx.is_empty()
    }

    /// Most items the queue holds.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.tx.capacity().unwrap_or(usize::MAX)
    }

    /// A reader of the queue's depth for a metrics gauge. It holds the queue weakly: once every
    /// sender is gone (and the consumer has seen the queue close) it reads 0.
    pub fn depth_probe(&self) -> impl Fn() -> usize + Send + Sync + 'static
    where
        T: Send + 'static,
    {
        let weak: Weak<cb::Sender<T>> = Arc::downgrade(&self.tx);
        move || weak.upgrade().map_or(0, |tx| tx.len())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn stats() -> Arc<StreamStats> {
        Arc::new(StreamStats::default())
    }

    #[test]
    fn drop_oldest_keeps_the_newest_items_and_counts() {
        let s = stats();
        let (tx, rx) = bounded(
            2,
            WhenFull::DropOldest,
            DropReason::InferenceBacklog,
            s.clone(),
        );
        for i in 0..5 {
            assert!(tx.send(i).unwrap());
        }
        assert_eq!(rx.try_iter().collect::<Vec<_>>(), vec![3, 4]);
        assert_eq!(s.drops(DropReason::InferenceBacklog), 3);
    }

    #[test]
    fn drop_newest_keeps_the_oldest_items_and_counts() {
        let s = stats();
        let (tx, rx) = bounded(
            2,
            WhenFull::DropNewest,
            DropReason::SampleQueueFull,
            s.clone(),
        );
        let queued: Vec<bool> = (0..4).map(|i| tx.send(i).unwrap()).collect();
        assert_eq!(queued, vec![true, true, false, false]);
        assert_eq!(rx.try_iter().collect::<Vec<_>>(), vec![0, 1]);
        assert_eq!(s.drops(DropReason::SampleQueueFull), 2);
    }

    #[test]
    fn block_hands_the_item_back_after_the_timeout_without_dropping() {
        let s = stats();
        let (tx, rx) = bounded(1, WhenFull::Block, DropReason::SampleQueueFull, s.clone());
        assert!(tx.send(1).unwrap());
        let back = tx.send_timeout_keep(2, Duration::from_millis(10)).unwrap();
        assert_eq!(back, Some(2));
        assert_eq!(s.drops(DropReason::SampleQueueFull), 0);
        assert_eq!(rx.recv().unwrap(), 1);
        assert_eq!(
            tx.send_timeout_keep(3, Duration::from_millis(10)).unwrap(),
            None
        );
    }

    #[test]
    fn the_depth_probe_follows_the_queue_and_does_not_keep_it_open() {
        let (tx, rx) = bounded::<u8>(4, WhenFull::Block, DropReason::SampleQueueFull, stats());
        let probe = tx.depth_probe();
        assert_eq!((probe(), tx.capacity()), (0, 4));
        tx.send(1).unwrap();
        tx.clone().send(2).unwrap();
        assert_eq!(probe(), 2);
        rx.recv().unwrap();
        assert_eq!(probe(), 1);
        drop(tx);
        // The consumer still sees the queue close once it is drained.
        assert_eq!(rx.recv().unwrap(), 2);
        assert!(rx.recv().is_err());
        assert_eq!(probe(), 0);
    }

    #[test]
    fn send_to_a_stopped_consumer_is_an_error() {
        let (tx, rx) = bounded::<u8>(1, WhenFull::Block, DropReason::SampleQueueFull, stats());
        drop(rx);
        assert!(tx.send(1).is_err());
    }
}
