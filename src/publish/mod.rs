//! Publishing: pure payload encoding, the on-disk outbox, the MQTT publisher task that owns the
//! connection, and the broker address / local broker helper.

pub mod broker;
pub mod client;
pub mod connection;
pub mod mqtt;
pub mod outbox;
pub mod payload;
pub mod tls;

pub use broker::{BrokerUrl, LocalBroker};
pub use mqtt::{
    message_properties, run_publisher, Credentials, MessageTiming, OutMessage, PublisherConfig,
    PublisherReport,
};
pub use outbox::{Outbox, OutboxError, OutboxOptions, Recovery};
