//! Where the broker is: `mqtt://host:port` URLs, and a private mosquitto started on a free
//! loopback port for `edgebind demo` and the tests (`url = "local"`).

use std::io::Write as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A broker address from the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerUrl {
    /// A TCP broker.
    Tcp {
        /// Host name or address.
        host: String,
        /// Port.
        port: u16,
    },
    /// A TLS broker (`mqtts://`, port 8883 by default).
    Tls {
        /// Host name (also the name verified in the server's certificate).
        host: String,
        /// Port.
        port: u16,
    },
    /// Start a private mosquitto on loopback.
    Local,
}

/// A broker URL that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Not `mqtt://…`, `mqtts://…` or `local`.
    #[error("{0:?} is not a broker URL: use mqtt://host[:port], mqtts://host[:port] or \"local\"")]
    Scheme(String),
    /// TLS is not available in this build.
    #[error("{0:?}: mqtts:// (TLS) needs a build with the `tls` feature; use mqtt://")]
    Tls(String),
    /// The host or port is malformed.
    #[error("{url:?}: {message}")]
    Malformed {
        /// The URL.
        url: String,
        /// What is wrong.
        message: String,
    },
}

impl BrokerUrl {
    /// Parses `mqtt://host[:port]` (port 1883 by default) or `local`.
    ///
    /// # Errors
    /// [`UrlError`] saying what is wrong.
    pub fn parse(url: &str) -> Result<Self, UrlError> {
        let url = url.trim();
        if url == "local" {
            return Ok(Self::Local);
        }
        let (tls, rest) = if let Some(rest) = url.strip_prefix("mqtts://") {
            if !cfg!(feature = "tls") {
                return Err(UrlError::Tls(url.to_string()));
            }
            (true, rest)
        } else {
            let rest = url
                .strip_prefix("mqtt://")
                .or_else(|| url.strip_prefix("tcp://"))
                .ok_or_else(|| UrlError::Scheme(url.to_string()))?;
            (false, rest)
        };
        let rest = rest.trim_end_matches('/');
        let malformed = |message: &str| UrlError::Malformed {
            url: url.to_string(),
            message: message.to_string(),
        };
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| malformed("unclosed '[' in IPv6 address"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(malformed("unexpected text after the IPv6 address")),
            };
            (h.to_string(), port)
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (rest.to_string(), None),
            }
        };
        if host.is_empty() || host.contains(['/', '@', ' ']) {
            return Err(malformed("missing or invalid host"));
        }
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| malformed("port must be 1-65535"))?,
            None if tls => 8883,
            None => 1883,
        };
        Ok(if tls {
            Self::Tls { host, port }
        } else {
            Self::Tcp { host, port }
        })
    }
}

/// Errors starting a local broker.
#[derive(Debug, thiserror::Error)]
pub enum LocalBrokerError {
    /// mosquitto is not installed.
    #[error(
        "mosquitto not found (looked in PATH, /usr/sbin); install it: apt-get install mosquitto"
    )]
    NotInstalled,
    /// It could not be started or did not listen in time.
    #[error("local mosquitto: {0}")]
    Start(String),
}

/// A mosquitto child process on a loopback port, killed when dropped.
#[derive(Debug)]
pub struct LocalBroker {
    child: Child,
    port: u16,
    dir: PathBuf,
}

fn find_mosquitto() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.push("/usr/sbin".into());
    dirs.push("/usr/local/sbin".into());
    dirs.into_iter()
        .map(|d| d.join("mosquitto"))
        .find(|p| p.is_file())
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
///
/// # Errors
/// The OS error when no port can be bound.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl LocalBroker {
    /// Starts mosquitto on a free loopback port with `extra` config lines (e.g. persistence).
    ///
    /// # Errors
    /// [`LocalBrokerError`] when mosquitto is missing or does not come up within 10 s.
    pub fn start(extra: &[&str]) -> Result<Self, LocalBrokerError> {
        let port = free_port().map_err(|e| LocalBrokerError::Start(e.to_string()))?;
        Self::start_on(port, extra)
    }

    /// Starts mosquitto on `port` (to restart a broker where clients expect it).
    ///
    /// # Errors
    /// [`LocalBrokerError`].
    pub fn start_on(port: u16, extra: &[&str]) -> Result<Self, LocalBrokerError> {
        let bin = find_mosquitto().ok_or(LocalBrokerError::NotInstalled)?;
        let dir =
            std::env::temp_dir().join(format!("edgebind-mosquitto-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| LocalBrokerError::Start(e.to_string()))?;
        let conf = dir.join("mosquitto.conf");
        let mut text = format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\nuser root\n"
        );
        for line in extra {
            text.push_str(line);
            text.push('\n');
        }
        std::fs::File::create(&conf)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(|e| LocalBrokerError::Start(format!("{}: {e}", conf.display())))?;
        let child = Command::new(&bin)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| LocalBrokerError::Start(format!("{}: {e}", bin.display())))?;
        let mut broker = Self { child, port, dir };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(broker);
            }
            if let Ok(Some(status)) = broker.child.try_wait() {
                return Err(LocalBrokerError::Start(format!(
                    "exited with {status} (port {port} taken?)"
                )));
            }
            if Instant::now() > deadline {
                return Err(LocalBrokerError::Start(format!(
                    "not listening on port {port} after 10 s"
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The port it listens on.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `mqtt://127.0.0.1:<port>`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// Kills the broker at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for LocalBroker {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_default_port() {
        assert_eq!(
            BrokerUrl::parse("mqtt://broker.lan"),
            Ok(BrokerUrl::Tcp {
                host: "broker.lan".into(),
                port: 1883
            })
        );
        assert_eq!(
            BrokerUrl::parse("mqtt://[::1]:1884"),
            Ok(BrokerUrl::Tcp {
                host: "::1".into(),
                port: 1884
            })
        );
        assert_eq!(BrokerUrl::parse("local"), Ok(BrokerUrl::Local));
    }

    #[test]
    fn bad_urls_say_why() {
        assert!(matches!(
            BrokerUrl::parse("http://x"),
            Err(UrlError::Scheme(_))
        ));
        assert_eq!(
            BrokerUrl::parse("mqtts://broker.lan"),
            Ok(BrokerUrl::Tls {
                host: "broker.lan".into(),
                port: 8883
            })
        );
        assert!(matches!(
            BrokerUrl::parse("mqtt://x:99999"),
            Err(UrlError::Malformed { .. })
        ));
        assert!(matches!(
            BrokerUrl::parse("mqtt://:1883"),
            Err(UrlError::Malformed { .. })
        ));
    }
}
