//! The file checks of validation. Every file the configuration names is opened and read as the
//! user `check` runs as, with the very functions `run` reads it with (the model set's concept
//! bank and parity references, the TLS files here; each source kind checks its recordings), so
//! that what `run` would refuse at start is a configuration problem that `check` reports and
//! `run` exits 78 for. The encoders themselves are opened but not hashed (hashing several GB
//! would make `check` slow).

use std::path::Path;

use super::Config;
use crate::files;
use crate::inference::{Manifest, Reference};
use crate::publish::tls::{TlsClient, TlsFiles};
use crate::publish::BrokerUrl;

/// Why `path` cannot be opened and read by this process, if it cannot (source kinds check the
/// files they name with it, or with the loader `run` uses).
pub(crate) fn unreadable(path: &Path) -> Option<String> {
    files::readable(path).err().map(|e| e.to_string())
}

/// What `run` would refuse about the model set: a missing encoder, one the user cannot read,
/// a parity reference or a concept bank that does not load.
pub(super) fn model_set(config: &Config) -> Vec<String> {
    let dir = config.resolve(&config.models.dir);
    if !dir.join("manifest.json").is_file() {
        // Reported by validation.
        return Vec::new();
    }
    let manifest = match Manifest::load(&dir) {
        Ok(m) => m,
        Err(e) => return vec![e.to_string()],
    };
    let mut out = Vec::new();
    for modality in config.modalities() {
        let Some((path, entry)) = manifest.model(modality) else {
            out.push(format!(
                "{}: no {modality} model, but a {modality} source is configured",
                dir.join("manifest.json").display()
            ));
            continue;
        };
        match unreadable(&path) {
            Some(problem) => out.push(problem),
            // The checksums run compares, over the graph and its external data.
            None => out.extend(entry.verify(&dir).err().map(|e| e.to_string())),
        }
        if let (Some(r), true) = (&entry.reference, config.runtime.parity.enabled) {
            if let Err(e) = Reference::load(&dir, r, entry.precision, manifest.embedding_dim) {
                out.push(e.to_string());
            }
        }
    }
    if let Err(e) = crate::concepts::reload::load_bank(&dir, manifest.embedding_dim) {
        out.push(e.to_string());
    }
    out
}

/// What `run` would refuse about the TLS files of an `mqtts://` broker, as (field, message):
/// the client is built exactly as `run` builds it.
pub(super) fn tls(config: &Config) -> Vec<(String, String)> {
    if !matches!(
        BrokerUrl::parse(&config.mqtt.url),
        Ok(BrokerUrl::Tls { .. })
    ) {
        return Vec::new();
    }
    let tls_files = TlsFiles::from_config(config);
    let Err(e) = TlsClient::build(&tls_files) else {
        return Vec::new();
    };
    let path = e.path();
    let field = if path.is_some() && path == tls_files.ca_file.as_deref() {
        "mqtt.tls.ca_file"
    } else if path.is_some() && path == tls_files.client_cert_file.as_deref() {
        "mqtt.tls.client_cert_file"
    } else if path.is_some() && path == tls_files.client_key_file.as_deref() {
        "mqtt.tls.client_key_file"
    } else {
        "mqtt.tls"
    };
    vec![(field.to_string(), e.to_string())]
}
