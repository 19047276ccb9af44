//! What the publisher needs from the configuration besides addresses, built before anything runs:
//! credentials (the password read from its file or environment variable), the TLS client, and
//! the opened, recovered outbox.

use std::path::PathBuf;

use super::mqtt::Credentials;
use super::outbox::{Outbox, OutboxError, OutboxOptions};
use super::tls::{TlsClient, TlsError, TlsFiles};
use crate::config::Config;
use crate::telemetry::Telemetry;

/// Credentials and TLS for the broker connection.
#[derive(Debug, Clone)]
pub struct Security {
    /// User name and password.
    pub credentials: Option<Credentials>,
    /// TLS client (`mqtts://`).
    pub tls: Option<TlsClient>,
}

/// Why the connection's security or the outbox cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// `mqtt.password_file` cannot be read.
    #[error("mqtt.password_file {}", path.display())]
    PasswordFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// `mqtt.password_env` names a variable that is not set (or not UTF-8).
    #[error("mqtt.password_env: environment variable {var}")]
    PasswordEnv {
        /// The variable.
        var: String,
        /// Why.
        source: std::env::VarError,
    },
    /// A password without a user name.
    #[error("mqtt: a password is configured but no username")]
    PasswordWithoutUser,
    /// The TLS files cannot be used.
    #[error("mqtt.tls")]
    Tls(#[source] TlsError),
    /// The outbox cannot be opened or recovered.
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    /// The blocking task recovering the outbox failed.
    #[error("outbox recovery task")]
    Task(#[source] tokio::task::JoinError),
}

/// Reads the password and builds the TLS client as `config` says.
///
/// # Errors
/// A password file or variable that cannot be read, or an unusable TLS file.
pub fn build(config: &Config, tls: bool) -> Result<Security, SetupError> {
    let mqtt = &config.mqtt;
    let password = match (&mqtt.password_file, &mqtt.password_env) {
        (Some(f), _) => {
            let path = config.resolve(f);
            let text = std::fs::read_to_string(&path)
                .map_err(|source| SetupError::PasswordFile { path, source })?;
            Some(text.lines().next().unwrap_or("").to_string())
        }
        (None, Some(var)) => {
            Some(
                std::env::var(var).map_err(|source| SetupError::PasswordEnv {
                    var: var.clone(),
                    source,
                })?,
            )
        }
        (None, None) => None,
    };
    let credentials = match (&mqtt.username, password) {
        (Some(u), p) => Some(Credentials {
            username: u.clone(),
            password: p.unwrap_or_default(),
        }),
        (None, Some(_)) => return Err(SetupError::PasswordWithoutUser),
        (None, None) => None,
    };
    let tls = if tls {
        Some(TlsClient::build(&TlsFiles::from_config(config)).map_err(SetupError::Tls)?)
    } else {
        None
    };
    Ok(Security { credentials, tls })
}

/// Opens the outbox of `config` on a blocking thread, logs what recovery found and counts it.
///
/// # Errors
/// The outbox directory cannot be created, read or written, or another daemon has it open.
pub async fn open_outbox(config: &Config, telemetry: &Telemetry) -> Result<Outbox, SetupError> {
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
        .map_err(SetupError::Task)??;
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
