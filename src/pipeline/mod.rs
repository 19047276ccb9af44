//! The moving parts between sources and the publisher: bounded queues with named policies and
//! the per-stream thread that cuts windows and turns them into model inputs.

pub mod queue;
pub mod stream;

pub use queue::{bounded, Disconnected, QueueSender};
