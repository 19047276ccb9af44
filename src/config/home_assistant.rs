//! `[home_assistant]`: MQTT discovery for Home Assistant (off unless `discovery = true`). What is
//! announced and why: `crate::publish::discovery` and docs/mqtt.md, "Home Assistant discovery".

use std::path::PathBuf;

use serde::Deserialize;

/// Home Assistant MQTT discovery.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HomeAssistantConfig {
    /// Announce this device and its entities to Home Assistant (default false).
    #[serde(default)]
    pub discovery: bool,
    /// Home Assistant's discovery prefix (its MQTT integration's setting; default
    /// `homeassistant`).
    #[serde(default = "default_prefix")]
    pub discovery_prefix: String,
    /// Where Home Assistant announces it has (re)started (`online`); the configs are sent again
    /// then. Home Assistant's default is `homeassistant/status`, whatever the prefix.
    #[serde(default = "default_birth_topic")]
    pub birth_topic: String,
    /// Directory of the record of what was announced (`home_assistant.json`), so that the
    /// entities of a sensor removed from this file are removed from Home Assistant too
    /// (relative to the config file; created if missing).
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// The device page's "Visit" link in Home Assistant (`http://` or `https://`); default: the
    /// metrics endpoint when `metrics.listen` names a specific address, else none.
    #[serde(default)]
    pub configuration_url: Option<String>,
}

impl Default for HomeAssistantConfig {
    fn default() -> Self {
        Self {
            discovery: false,
            discovery_prefix: default_prefix(),
            birth_topic: default_birth_topic(),
            state_dir: default_state_dir(),
            configuration_url: None,
        }
    }
}

fn default_prefix() -> String {
    "homeassistant".to_string()
}

fn default_birth_topic() -> String {
    "homeassistant/status".to_string()
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("state")
}

/// Whether `t` can be published to or subscribed to as one exact topic.
fn plain_topic(t: &str) -> bool {
    !t.is_empty()
        && !t.starts_with('/')
        && !t.ends_with('/')
        && !t.contains(['+', '#', '\0'])
        && t.len() <= 512
}

impl HomeAssistantConfig {
    /// Every problem with these keys, as (key under `home_assistant`, message).
    #[must_use]
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if !plain_topic(&self.discovery_prefix) {
            out.push((
                "home_assistant.discovery_prefix",
                format!(
                    "{:?} must be a topic without wildcards and without a leading or trailing '/'",
                    self.discovery_prefix
                ),
            ));
        }
        if !plain_topic(&self.birth_topic) {
            out.push((
                "home_assistant.birth_topic",
                format!(
                    "{:?} must be a topic without wildcards and without a leading or trailing '/'",
                    self.birth_topic
                ),
            ));
        }
        if let Some(url) = &self.configuration_url {
            // Home Assistant refuses the whole device config for any other URL.
            let ok = ["http://", "https://"]
                .iter()
                .any(|s| url.len() > s.len() && url.starts_with(s))
                && !url.contains(char::is_whitespace);
            if !ok {
                out.push((
                    "home_assistant.configuration_url",
                    format!("{url:?} must be an http:// or https:// URL (Home Assistant refuses the device otherwise)"),
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_home_assistants_and_valid() {
        let c = HomeAssistantConfig::default();
        assert!(!c.discovery);
        assert_eq!(c.discovery_prefix, "homeassistant");
        assert_eq!(c.birth_topic, "homeassistant/status");
        assert!(c.problems().is_empty());
    }

    #[test]
    fn wildcards_slashes_and_non_http_urls_are_named() {
        let c = HomeAssistantConfig {
            discovery: true,
            discovery_prefix: "home/#".into(),
            birth_topic: "/status".into(),
            configuration_url: Some("ftp://x/".into()),
            ..HomeAssistantConfig::default()
        };
        let keys: Vec<&str> = c.problems().iter().map(|(k, _)| *k).collect();
        assert_eq!(
            keys,
            [
                "home_assistant.discovery_prefix",
                "home_assistant.birth_topic",
                "home_assistant.configuration_url"
            ]
        );
        let empty = HomeAssistantConfig {
            discovery_prefix: String::new(),
            configuration_url: Some("http://".into()),
            ..HomeAssistantConfig::default()
        };
        assert_eq!(empty.problems().len(), 2);
    }
}
