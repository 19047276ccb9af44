//! The two MQTT protocol versions behind one small interface, so that the publisher has one
//! logic for both: rumqttc's MQTT 3.1.1 client and its `v5` client have their own option, event
//! and packet types. [`Client`] hands over publishes (with MQTT 5 properties when the protocol
//! has them), [`EventLoop`] polls the connection and reduces its events to what the publisher
//! acts on ([`NetEvent`]).

use std::time::Duration;

use rumqttc::v5::mqttbytes::v5 as p5;
use rumqttc::Outgoing;

use super::mqtt::inbound::InboundMessage;
use super::tls::TlsClient;
use crate::config::{MqttProtocol, Qos};

/// MQTT 5 properties of one message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageProperties {
    /// MIME type of the payload.
    pub content_type: &'static str,
    /// User properties (name, value), in order.
    pub user: Vec<(String, String)>,
    /// The correlation data of the request a message answers.
    pub correlation_data: Option<Vec<u8>>,
}

/// How to connect.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Protocol version.
    pub protocol: MqttProtocol,
    /// Client id.
    pub client_id: String,
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// Keep-alive.
    pub keep_alive: Duration,
    /// Largest packet in either direction.
    pub max_packet_bytes: usize,
    /// QoS 1 messages in flight at once (MQTT 5: at most the broker's receive maximum).
    pub inflight: u16,
    /// Requests rumqttc queues between the publisher and its event loop.
    pub request_capacity: usize,
    /// TLS.
    pub tls: Option<TlsClient>,
    /// User name and password.
    pub credentials: Option<(String, String)>,
    /// Last Will: topic and payload (retained, QoS 1).
    pub last_will: (String, Vec<u8>),
    /// Content type of the Last Will (MQTT 5).
    pub last_will_content_type: &'static str,
}

/// The publishing side of a connection.
#[derive(Debug, Clone)]
pub enum Client {
    /// MQTT 3.1.1.
    V311(rumqttc::AsyncClient),
    /// MQTT 5.
    V5(rumqttc::v5::AsyncClient),
}

/// The event loop of a connection (owned by one task, polled without interruption).
// The v5 event loop is much larger than the 3.1.1 one; there is one of either per daemon.
#[allow(clippy::large_enum_variant)]
pub enum EventLoop {
    /// MQTT 3.1.1.
    V311(rumqttc::EventLoop),
    /// MQTT 5.
    V5(rumqttc::v5::EventLoop),
}

impl std::fmt::Debug for EventLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::V311(_) => "EventLoop::V311",
            Self::V5(_) => "EventLoop::V5",
        })
    }
}

/// What the publisher acts on, of everything the event loop reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetEvent {
    /// The broker accepted the connection.
    Connected,
    /// The broker acknowledged a QoS 1 publish. `accepted` is false when an MQTT 5 broker
    /// answered with an error reason (e.g. not authorised, quota exceeded).
    PubAck {
        /// Packet id.
        pkid: u16,
        /// Whether the broker took the message.
        accepted: bool,
        /// The broker's reason (MQTT 5 only; empty otherwise).
        reason: String,
    },
    /// A publish was written to the network with this packet id (0 for QoS 0).
    Written(u16),
    /// Our DISCONNECT was written.
    Disconnected,
    /// A message arrived on a subscribed topic (routed by the event loop task, `inbound`).
    Message(InboundMessage),
    /// Anything else (pings, our own acks).
    Other,
}

/// Why a poll failed (the connection is gone; polling again reconnects).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    /// The broker refused the connection (credentials, authorisation): its reason.
    #[error("connection refused by the broker: {0}")]
    Refused(String),
    /// Network or protocol failure.
    #[error("{0}")]
    Failed(String),
}

fn qos4(q: Qos) -> rumqttc::QoS {
    match q {
        Qos::AtMostOnce => rumqttc::QoS::AtMostOnce,
        Qos::AtLeastOnce => rumqttc::QoS::AtLeastOnce,
    }
}

fn qos5(q: Qos) -> rumqttc::v5::mqttbytes::QoS {
    match q {
        Qos::AtMostOnce => rumqttc::v5::mqttbytes::QoS::AtMostOnce,
        Qos::AtLeastOnce => rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
    }
}

/// Creates the client and its event loop (nothing is connected until the loop is polled).
///
/// Both protocols turn TCP_NODELAY on: without it the small labels message written right after
/// an embedding waits for the embedding's ACK (Nagle), which a broker may delay ~40 ms.
#[must_use]
pub fn new(o: &ConnectOptions) -> (Client, EventLoop) {
    let keep_alive = o.keep_alive.max(Duration::from_secs(1));
    match o.protocol {
        MqttProtocol::V311 => {
            let mut opts = rumqttc::MqttOptions::new(o.client_id.clone(), o.host.clone(), o.port);
            opts.set_keep_alive(keep_alive)
                .set_max_packet_size(o.max_packet_bytes, o.max_packet_bytes)
                .set_clean_session(true)
                .set_inflight(o.inflight)
                .set_last_will(rumqttc::LastWill::new(
                    o.last_will.0.clone(),
                    o.last_will.1.clone(),
                    rumqttc::QoS::AtLeastOnce,
                    true,
                ));
            if let Some(tls) = &o.tls {
                opts.set_transport(tls.transport());
            }
            if let Some((u, p)) = &o.credentials {
                opts.set_credentials(u.clone(), p.clone());
            }
            let (c, mut l) = rumqttc::AsyncClient::new(opts, o.request_capacity);
            let mut network = l.network_options();
            network.set_tcp_nodelay(true);
            l.set_network_options(network);
            (Client::V311(c), EventLoop::V311(l))
        }
        MqttProtocol::V5 => {
            let mut opts =
                rumqttc::v5::MqttOptions::new(o.client_id.clone(), o.host.clone(), o.port);
            let will_props = p5::LastWillProperties {
                delay_interval: None,
                payload_format_indicator: Some(1),
                message_expiry_interval: None,
                content_type: Some(o.last_will_content_type.to_string()),
                response_topic: None,
                correlation_data: None,
                user_properties: Vec::new(),
            };
            opts.set_keep_alive(keep_alive)
                .set_max_packet_size(Some(u32::try_from(o.max_packet_bytes).unwrap_or(u32::MAX)))
                .set_clean_start(true)
                .set_outgoing_inflight_upper_limit(o.inflight)
                .set_last_will(p5::LastWill::new(
                    o.last_will.0.clone(),
                    o.last_will.1.clone(),
                    rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
                    true,
                    Some(will_props),
                ));
            if let Some(tls) = &o.tls {
                opts.set_transport(tls.transport());
            }
            if let Some((u, p)) = &o.credentials {
                opts.set_credentials(u.clone(), p.clone());
            }
            let mut network = opts.network_options();
            network.set_tcp_nodelay(true);
            opts.set_network_options(network);
            let (c, l) = rumqttc::v5::AsyncClient::new(opts, o.request_capacity);
            (Client::V5(c), EventLoop::V5(l))
        }
    }
}

/// rumqttc's request queue is full (or its event loop is gone): try again later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

impl Client {
    /// Queues a publish without waiting. `props` is used with MQTT 5 and ignored with 3.1.1.
    ///
    /// # Errors
    /// [`Busy`] when the request queue is full.
    pub fn try_publish(
        &self,
        topic: String,
        qos: Qos,
        retain: bool,
        payload: Vec<u8>,
        props: impl FnOnce(&str) -> MessageProperties,
    ) -> Result<(), Busy> {
        match self {
            Self::V311(c) => c
                .try_publish(topic, qos4(qos), retain, payload)
                .map_err(|_| Busy),
            Self::V5(c) => {
                let p = props(&topic);
                let properties = p5::PublishProperties {
                    // 1 = UTF-8 text: every payload is JSON or plain ASCII.
                    payload_format_indicator: Some(1),
                    content_type: Some(p.content_type.to_string()),
                    user_properties: p.user,
                    correlation_data: p.correlation_data.map(Into::into),
                    ..Default::default()
                };
                c.try_publish_with_properties(topic, qos5(qos), retain, payload, properties)
                    .map_err(|_| Busy)
            }
        }
    }

    /// Queues a QoS 1 subscription to `filter` without waiting.
    ///
    /// # Errors
    /// [`Busy`] when the request queue is full.
    pub fn try_subscribe(&self, filter: &str) -> Result<(), Busy> {
        match self {
            Self::V311(c) => c
                .try_subscribe(filter, rumqttc::QoS::AtLeastOnce)
                .map_err(|_| Busy),
            Self::V5(c) => c
                .try_subscribe(filter, rumqttc::v5::mqttbytes::QoS::AtLeastOnce)
                .map_err(|_| Busy),
        }
    }

    /// Queues a DISCONNECT without waiting.
    ///
    /// # Errors
    /// [`Busy`] when the request queue is full.
    pub fn try_disconnect(&self) -> Result<(), Busy> {
        match self {
            Self::V311(c) => c.try_disconnect().map_err(|_| Busy),
            Self::V5(c) => c.try_disconnect().map_err(|_| Busy),
        }
    }
}

impl EventLoop {
    /// Polls the event loop once (connecting first if needed).
    ///
    /// # Errors
    /// [`NetError`] when the connection fails or is refused.
    pub async fn poll(&mut self) -> Result<NetEvent, NetError> {
        match self {
            Self::V311(l) => {
                use rumqttc::{ConnectReturnCode, ConnectionError, Event, Packet};
                match l.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(a))) => {
                        if a.code == ConnectReturnCode::Success {
                            Ok(NetEvent::Connected)
                        } else {
                            Err(NetError::Refused(format!("{:?}", a.code)))
                        }
                    }
                    Ok(Event::Incoming(Packet::PubAck(a))) => Ok(NetEvent::PubAck {
                        pkid: a.pkid,
                        accepted: true,
                        reason: String::new(),
                    }),
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        Ok(NetEvent::Message(InboundMessage {
                            topic: p.topic,
                            payload: p.payload.to_vec(),
                            response_topic: None,
                            correlation_data: None,
                        }))
                    }
                    Ok(Event::Outgoing(o)) => Ok(outgoing(&o)),
                    Ok(_) => Ok(NetEvent::Other),
                    Err(ConnectionError::ConnectionRefused(code)) => {
                        Err(NetError::Refused(format!("{code:?}")))
                    }
                    Err(e) => Err(NetError::Failed(e.to_string())),
                }
            }
            Self::V5(l) => {
                use rumqttc::v5::{ConnectionError, Event, StateError};
                match l.poll().await {
                    Ok(Event::Incoming(p5::Packet::ConnAck(a))) => {
                        if a.code == p5::ConnectReturnCode::Success {
                            Ok(NetEvent::Connected)
                        } else {
                            Err(NetError::Refused(format!("{:?}", a.code)))
                        }
                    }
                    Ok(Event::Incoming(p5::Packet::PubAck(a))) => {
                        let accepted = matches!(
                            a.reason,
                            p5::PubAckReason::Success | p5::PubAckReason::NoMatchingSubscribers
                        );
                        Ok(NetEvent::PubAck {
                            pkid: a.pkid,
                            accepted,
                            reason: format!("{:?}", a.reason),
                        })
                    }
                    Ok(Event::Incoming(p5::Packet::Publish(p))) => {
                        Ok(NetEvent::Message(message5(p)))
                    }
                    Ok(Event::Outgoing(o)) => Ok(outgoing(&o)),
                    Ok(_) => Ok(NetEvent::Other),
                    Err(ConnectionError::ConnectionRefused(code))
                    | Err(ConnectionError::MqttState(StateError::ConnFail { reason: code })) => {
                        Err(NetError::Refused(format!("{code:?}")))
                    }
                    Err(e) => Err(NetError::Failed(e.to_string())),
                }
            }
        }
    }

    /// Forgets everything rumqttc still holds (un-acknowledged publishes, queued requests): the
    /// publisher sends it again, in its own order, after the next connection.
    pub fn forget_queued(&mut self) {
        match self {
            Self::V311(l) => {
                l.clean();
                l.pending.clear();
            }
            Self::V5(l) => {
                l.clean();
                l.pending.clear();
            }
        }
    }
}

/// An MQTT 5 publish as an incoming message, with its response topic and correlation data. A
/// topic that is not UTF-8 cannot match a filter; it is kept lossily for the logs.
fn message5(p: p5::Publish) -> InboundMessage {
    let (response_topic, correlation_data) = match p.properties {
        Some(props) => (
            props.response_topic,
            props.correlation_data.map(|c| c.to_vec()),
        ),
        None => (None, None),
    };
    InboundMessage {
        topic: String::from_utf8_lossy(&p.topic).into_owned(),
        payload: p.payload.to_vec(),
        response_topic,
        correlation_data,
    }
}

fn outgoing(o: &Outgoing) -> NetEvent {
    match o {
        Outgoing::Publish(pkid) => NetEvent::Written(*pkid),
        Outgoing::Disconnect => NetEvent::Disconnected,
        _ => NetEvent::Other,
    }
}
