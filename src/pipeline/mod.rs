//! The moving parts between sources and the publisher: bounded queues with named policies, the
//! processors that turn a stream's messages into model inputs (one per family of modalities),
//! and the per-stream thread that runs one.

pub mod processor;
pub mod queue;
pub mod stream;

pub use processor::{Prepared, Processor, ProcessorError, StreamLogs, WindowMeta};
pub use queue::{bounded, Disconnected, QueueSender};
