//! What the publisher needs from the configuration besides addresses, built before anything runs:
//! credentials (the password read from its file or environment variable), the TLS client, and
//! the opened, recovered outbox.

use anyhow::{bail, Context, Result};

use super::mqtt::Credentials;
use super::outbox::{Outbox, OutboxOptions};
use super::tls::{TlsClient, TlsFiles};
use crate::config::Config;
use crate::telemetry::Telemetry;

/// Credentials and TLS for the broker connection.
#[derive(Debug, Clone)]
pub struct Connection {
    /// User name and password.
    pub credentials: Option<Credentials>,
    /// TLS client (`mqtts://`).
    pub tls: Option<TlsClient>,
}

/// Reads the password and builds the TLS client as `config` says.
///
/// # Errors
/// A password file or variable that cannot be read, or an unusable TLS file.
pub fn build(config: &Config, tls: bool) -> Result<Connection> {
    let mqtt = &config.mqtt;
    let password = match (&mqtt.password_file, &mqtt.password_env) {
        (Some(f), _) => {
            let f = config.resolve(f);
            let text = std::fs::read_to_string(&f)
                .with_context(|| format!("mqtt.password_file {}", f.display()))?;
            Some(text.lines().next().unwrap_or("").to_string())
        }
        (None, Some(var)) => Some(
            std::env::var(var)
                .with_context(|| format!("mqtt.password_env: environment variable {var}"))?,
        ),
        (None, None) => None,
    };
    let credentials = match (&mqtt.username, password) {
        (Some(u), p) => Some(Credentials {
            username: u.clone(),
            password: p.unwrap_or_default(),
        }),
        (None, Some(_)) => bail!("mqtt: a password is configured but no username"),
        (None, None) => None,
    };
    let tls = if tls {
        Some(TlsClient::build(&TlsFiles::from_config(config)).context("mqtt.tls")?)
    } else {
        None
    };
    Ok(Connection { credentials, tls })
}

/// Opens the outbox of `config` on a blocking thread, logs what recovery found and counts it.
///
/// # Errors
/// The outbox directory cannot be created, read or written.
pub async fn open_outbox(config: &Config, telemetry: &Telemetry) -> Result<Outbox> {
    let options = OutboxOptions::new(
        config.resolve(&config.outbox.dir),
        config.outbox.max_bytes.0,
        config.outbox.when_full,
    );
    let dir = options.dir.clone();
    if let Some(warning) = super::outbox::space_warning(&dir, options.max_bytes) {
        tracing::warn!("outbox.max_bytes: {warning}");
    }
    let (outbox, recovery) = tokio::task::spawn_blocking(move || Outbox::open(options))
        .await
        .context("outbox recovery task")??;
    telemetry
        .publish
        .outbox_corrupt_tails
        .store(recovery.corrupt_tails, std::sync::atomic::Ordering::Relaxed);
    if recovery.pending > 0 || recovery.corrupt_tails > 0 {
        tracing::info!(
            dir = %dir.display(),
            pending = recovery.pending,
            corrupt_tails = recovery.corrupt_tails,
            truncated_bytes = recovery.truncated_bytes,
            "outbox recovered; unacknowledged messages will be sent again"
        );
    }
    Ok(outbox)
}
