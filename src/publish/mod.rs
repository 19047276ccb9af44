//! Publishing: pure payload encoding, the MQTT publisher task that owns the connection, and the
//! broker address / local broker helper.

pub mod broker;
pub mod mqtt;
pub mod payload;

pub use broker::{BrokerUrl, LocalBroker};
pub use mqtt::{run_publisher, OutMessage, PublisherConfig, PublisherReport};
