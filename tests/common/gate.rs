//! [`Gate`]: a TCP forwarder between an MQTT client and its broker that can refuse
//! connections, cut them mid-stream, and tell what the broker received and acknowledged.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// A TCP forwarder standing in for the network between an MQTT client and its broker: while
/// closed, nothing listens on its port (connections are refused, as with a broker that is down);
/// while open, it forwards to `target`. Lets a test bring a broker "up" only once its subscriber
/// is ready, so the subscriber cannot miss a message, and cut a link mid-stream.
///
/// Traffic is forwarded one whole MQTT packet at a time. Every PUBLISH written to the broker is
/// recorded ([`Gate::forwarded`]), and marked acknowledged when the broker's PUBACK for it
/// comes back ([`Gate::acked`]). After [`Gate::cut`] the acknowledged ones are exactly the
/// messages the broker took responsibility for over this gate (the client will not send them
/// again), so a test can wait until the broker has passed them on before killing it: a broker
/// that acknowledges a message and crashes before delivering or saving it loses the message,
/// whoever published it. (What the broker received but did not acknowledge it may still
/// discard when the connection breaks; the client sends that again.)
pub struct Gate {
    pub port: u16,
    target: Arc<Mutex<u16>>,
    listener: Arc<Mutex<Option<TcpListener>>>,
    links: Arc<Mutex<Vec<Link>>>,
    forwarded: Arc<Mutex<Vec<Forwarded>>>,
}

/// One forwarded connection: the client-side socket and both forwarding threads.
struct Link {
    client: TcpStream,
    threads: [JoinHandle<()>; 2],
}

/// A PUBLISH packet a [`Gate`] wrote to its broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwarded {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: u8,
    pub dup: bool,
    /// The broker's PUBACK for it came back through the gate.
    pub acked: bool,
    /// Written to the broker (false: the connection broke while writing it).
    pub sent: bool,
}

/// Packet ids of one connection's unacknowledged PUBLISHes → their index in `forwarded`.
type Pending = Arc<Mutex<HashMap<u16, usize>>>;

impl Gate {
    /// A closed gate on a free port.
    pub fn closed(target: u16) -> Self {
        let port = edgebind::publish::broker::free_port().unwrap();
        Self {
            port,
            target: Arc::new(Mutex::new(target)),
            listener: Arc::new(Mutex::new(None)),
            links: Arc::new(Mutex::new(Vec::new())),
            forwarded: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// An open gate on a free port forwarding to `target`.
    pub fn open_to(target: u16) -> Self {
        let gate = Self::closed(target);
        gate.open();
        gate
    }

    pub fn set_target(&self, target: u16) {
        *self.target.lock().unwrap() = target;
    }

    /// Starts listening and forwarding.
    pub fn open(&self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).unwrap();
        let accept = listener.try_clone().unwrap();
        *self.listener.lock().unwrap() = Some(listener);
        let target = Arc::clone(&self.target);
        let current = Arc::clone(&self.listener);
        let links = Arc::clone(&self.links);
        let forwarded = Arc::clone(&self.forwarded);
        std::thread::spawn(move || {
            for client in accept.incoming() {
                if current.lock().unwrap().is_none() {
                    break;
                }
                let Ok(client) = client else { break };
                let port = *target.lock().unwrap();
                let Ok(server) = TcpStream::connect(("127.0.0.1", port)) else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let pending = Pending::default();
                let upstream = {
                    let (client, server) =
                        (client.try_clone().unwrap(), server.try_clone().unwrap());
                    let (forwarded, pending) = (Arc::clone(&forwarded), Arc::clone(&pending));
                    std::thread::spawn(move || {
                        forward_publishes(client, server, &forwarded, &pending);
                    })
                };
                let downstream = {
                    let (client, server) = (client.try_clone().unwrap(), server);
                    let forwarded = Arc::clone(&forwarded);
                    std::thread::spawn(move || forward_acks(server, client, &forwarded, &pending))
                };
                links.lock().unwrap().push(Link {
                    client,
                    threads: [upstream, downstream],
                });
            }
        });
    }

    /// Stops listening (existing connections die with their broker).
    pub fn close(&self) {
        if let Some(l) = self.listener.lock().unwrap().take() {
            // Wake the accept loop so it sees the gate closed and drops the socket.
            let _ = TcpStream::connect(l.local_addr().unwrap());
        }
    }

    /// Closes, and cuts every forwarded connection: nothing more reaches the broker and no
    /// acknowledgement reaches the client. Returns once both directions have stopped, so
    /// [`Gate::forwarded`] and [`Gate::acked`] are then final for those connections.
    pub fn cut(&self) {
        self.close();
        let links: Vec<Link> = self.links.lock().unwrap().drain(..).collect();
        for link in links {
            let _ = link.client.shutdown(Shutdown::Both);
            for t in link.threads {
                let _ = t.join();
            }
        }
    }

    /// Every PUBLISH written to the broker so far, in order.
    pub fn forwarded(&self) -> Vec<Forwarded> {
        let all = self.forwarded.lock().unwrap();
        all.iter().filter(|f| f.sent).cloned().collect()
    }

    /// The PUBLISHes the broker has acknowledged so far, in order.
    pub fn acked(&self) -> Vec<Forwarded> {
        let all = self.forwarded.lock().unwrap();
        all.iter().filter(|f| f.acked).cloned().collect()
    }

    /// How many PUBLISH packets on topics ending in `suffix` were written to the broker.
    pub fn forwarded_count(&self, suffix: &str) -> usize {
        let all = self.forwarded.lock().unwrap();
        all.iter()
            .filter(|f| f.sent && f.topic.ends_with(suffix))
            .count()
    }

    /// Whether the broker acknowledged every message of `msgs` (same topic and payload).
    pub fn has_acked_all(&self, msgs: &[Forwarded]) -> bool {
        let all = self.forwarded.lock().unwrap();
        let acked: std::collections::HashSet<(&str, &[u8])> = all
            .iter()
            .filter(|f| f.acked)
            .map(|f| (f.topic.as_str(), f.payload.as_slice()))
            .collect();
        msgs.iter()
            .all(|m| acked.contains(&(m.topic.as_str(), m.payload.as_slice())))
    }
}

/// Copies whole MQTT packets from `from` to `to` until either side ends, then shuts both
/// sockets down. `before` sees each packet before it is written (so that a reply cannot
/// overtake its bookkeeping) and may return a token; `unsent` gets the token back if the write
/// failed.
fn forward_packets(
    mut from: TcpStream,
    mut to: TcpStream,
    mut before: impl FnMut(&[u8]) -> Option<usize>,
    mut unsent: impl FnMut(usize),
) {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    'read: while let Ok(n) = from.read(&mut chunk) {
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        while let Some(len) = packet_len(&buf) {
            let packet: Vec<u8> = buf.drain(..len).collect();
            let token = before(&packet);
            if to.write_all(&packet).is_err() {
                if let Some(token) = token {
                    unsent(token);
                }
                break 'read;
            }
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

/// Client to broker: records every PUBLISH, and its packet id until acknowledged.
fn forward_publishes(
    client: TcpStream,
    server: TcpStream,
    forwarded: &Mutex<Vec<Forwarded>>,
    pending: &Mutex<HashMap<u16, usize>>,
) {
    let mut level = 4;
    forward_packets(
        client,
        server,
        |packet| match packet[0] >> 4 {
            1 => {
                level = connect_level(packet).map_or(level, |l| l & 0x7f);
                None
            }
            3 => {
                let (f, pid) = parse_publish(packet, level)?;
                let index = {
                    let mut all = forwarded.lock().unwrap();
                    all.push(f);
                    all.len() - 1
                };
                if let Some(pid) = pid {
                    pending.lock().unwrap().insert(pid, index);
                }
                Some(index)
            }
            _ => None,
        },
        |index| {
            pending.lock().unwrap().retain(|_, i| *i != index);
            forwarded.lock().unwrap()[index].sent = false;
        },
    );
}

/// Broker to client: marks a PUBLISH acknowledged when its PUBACK arrives (whether or not the
/// client still gets it: the broker has taken the message either way).
fn forward_acks(
    server: TcpStream,
    client: TcpStream,
    forwarded: &Mutex<Vec<Forwarded>>,
    pending: &Mutex<HashMap<u16, usize>>,
) {
    let ack = |packet: &[u8]| {
        if packet[0] >> 4 != 4 {
            return None;
        }
        let at = body_start(packet);
        let pid = packet
            .get(at..at + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))?;
        // A PUBACK with a reason code ≥ 0x80 (MQTT 5) refuses the message.
        if packet.get(at + 2).is_some_and(|code| *code >= 0x80) {
            return None;
        }
        // Not `if let` on the locked map: its guard would live through the block, taking the
        // two locks in the opposite order to `forward_publishes` (a deadlock).
        let index = pending.lock().unwrap().remove(&pid);
        if let Some(i) = index {
            forwarded.lock().unwrap()[i].acked = true;
        }
        None
    };
    forward_packets(server, client, ack, |_| {});
}

/// MQTT's variable byte integer at `buf[at..]`: (value, bytes used), or `None` if incomplete.
fn varint(buf: &[u8], at: usize) -> Option<(usize, usize)> {
    let mut value = 0usize;
    for i in 0..4 {
        let b = *buf.get(at + i)?;
        value |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// Length of the first whole packet in `buf`, if it is complete.
fn packet_len(buf: &[u8]) -> Option<usize> {
    let (remaining, used) = varint(buf, 1)?;
    let len = 1 + used + remaining;
    (buf.len() >= len).then_some(len)
}

fn body_start(packet: &[u8]) -> usize {
    1 + varint(packet, 1).unwrap().1
}

/// Protocol level of a CONNECT packet (4 = 3.1.1, 5 = MQTT 5).
fn connect_level(packet: &[u8]) -> Option<u8> {
    let at = body_start(packet);
    let name_len = usize::from(u16::from_be_bytes([*packet.get(at)?, *packet.get(at + 1)?]));
    packet.get(at + 2 + name_len).copied()
}

/// A PUBLISH and its packet id (QoS > 0).
fn parse_publish(packet: &[u8], level: u8) -> Option<(Forwarded, Option<u16>)> {
    let qos = (packet[0] >> 1) & 3;
    let dup = packet[0] & 8 != 0;
    let mut at = body_start(packet);
    let topic_len = usize::from(u16::from_be_bytes([*packet.get(at)?, *packet.get(at + 1)?]));
    let topic = String::from_utf8(packet.get(at + 2..at + 2 + topic_len)?.to_vec()).ok()?;
    at += 2 + topic_len;
    let mut pid = None;
    if qos > 0 {
        pid = Some(u16::from_be_bytes([*packet.get(at)?, *packet.get(at + 1)?]));
        at += 2;
    }
    if level == 5 {
        let (props, used) = varint(packet, at)?;
        at += used + props;
    }
    let f = Forwarded {
        topic,
        payload: packet.get(at..)?.to_vec(),
        qos,
        dup,
        acked: false,
        sent: true,
    };
    Some((f, pid))
}
