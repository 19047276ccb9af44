//! The MQTT output: pure payload encoding ([`payload`], [`encode`]: everything MQTT about an
//! event), the on-disk outbox, the publisher task that owns the connection ([`mqtt`]), and the
//! broker address / local broker helper.

pub mod broker;
pub mod client;
pub mod connection;
pub mod discovery;
pub mod encode;
pub mod mqtt;
pub mod outbox;
pub mod payload;
pub mod tls;
mod trigger_codec;

pub use broker::{BrokerUrl, LocalBroker};
pub use encode::{Codec, MessageTiming, OutMessage, Publish};
pub use mqtt::{
    message_properties, run_publisher, start_output, Credentials, PublisherConfig, PublisherReport,
};
pub use outbox::{Outbox, OutboxError, OutboxOptions, Recovery};
