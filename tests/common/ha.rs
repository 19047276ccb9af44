//! A real Home Assistant Core for the discovery tests: installed by tools/setup_ha.sh into
//! `.ha/venv`, started per test on a free loopback port against the test's mosquitto with MQTT
//! discovery on, onboarded without a browser, and read over its REST API
//! (ENVIRONMENT.md, "Home Assistant Core, headless").

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{repo, sigterm, wait_with_timeout, Subscriber};

/// HA's birth topic. It stays `homeassistant/status` whatever the discovery prefix is (HA's
/// default `birth_message`, which the config entry does not override).
pub const BIRTH_TOPIC: &str = "homeassistant/status";

/// Start-up to the birth message takes 8-10 s here; a loaded CI machine gets ample headroom.
const START_TIMEOUT: Duration = Duration::from_secs(180);
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// The `hass` of tools/setup_ha.sh (written last by the script: a half-done install has none).
pub fn hass_bin() -> PathBuf {
    repo().join(".ha/venv/bin/hass")
}

fn installed() -> bool {
    repo().join(".ha/installed").is_file() && hass_bin().is_file()
}

/// A Home Assistant child process with its own config directory; killed when dropped (also when
/// the test panics, when its config directory and log are kept for a look).
pub struct HomeAssistant {
    child: Option<Child>,
    config_dir: Option<tempfile::TempDir>,
    mqtt_port: u16,
    http_port: u16,
    token: String,
    agent: ureq::Agent,
}

impl HomeAssistant {
    /// Starts HA against the broker on `mqtt_port` with discovery under `discovery_prefix` and
    /// waits for its birth message (it is sent once retained discovery configs are processed).
    /// Without tools/setup_ha.sh's install: prints "skipped: …" and returns `None`, except under
    /// CI (`CI` set), where the test must run and this panics.
    pub fn start_or_skip(mqtt_port: u16, discovery_prefix: &str) -> Option<Self> {
        if !installed() {
            let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
            assert!(
                !ci,
                "CI is set but Home Assistant is not installed (no {}): tools/test.sh must run \
                 tools/setup_ha.sh",
                repo().join(".ha/installed").display()
            );
            // Straight to stderr: the test harness captures eprintln! of passing tests.
            let _ = writeln!(
                std::io::stderr(),
                "skipped: Home Assistant is not installed (no {}): run tools/setup_ha.sh",
                repo().join(".ha/installed").display()
            );
            return None;
        }
        let config_dir = tempfile::Builder::new()
            .prefix("edgebind-ha-")
            .tempdir()
            .expect("temp dir for HA");
        let http_port = edgebind::publish::broker::free_port().expect("free port");
        write_config(config_dir.path(), mqtt_port, http_port, discovery_prefix);
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                // 404 for a missing entity is an answer, not an error.
                .http_status_as_error(false)
                .timeout_global(Some(HTTP_TIMEOUT))
                // Only loopback is ever asked: a proxy from the environment must not be used.
                .proxy(None)
                .build(),
        );
        let mut ha = Self {
            child: None,
            config_dir: Some(config_dir),
            mqtt_port,
            http_port,
            token: String::new(),
            agent,
        };
        ha.spawn_and_wait_for_birth();
        ha.token = ha.onboard();
        Some(ha)
    }

    pub fn config_dir(&self) -> &Path {
        self.config_dir.as_ref().expect("config dir").path()
    }

    pub fn http_port(&self) -> u16 {
        self.http_port
    }

    /// HA's output (its log goes to stderr as well).
    pub fn log_path(&self) -> PathBuf {
        self.config_dir().join("hass.out")
    }

    /// The last `lines` lines of HA's output, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn spawn_and_wait_for_birth(&mut self) {
        // The birth message is not retained: subscribe before HA can send it.
        let births = Subscriber::start(self.mqtt_port, BIRTH_TOPIC);
        let out = std::fs::File::create(self.log_path()).expect("HA log file");
        let err = out.try_clone().expect("HA log file");
        let child = Command::new(hass_bin())
            .arg("-c")
            .arg(self.config_dir())
            .args(["--skip-pip", "--log-no-color"])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", hass_bin().display()));
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        let online = |seen: &[super::Seen]| seen.iter().any(|m| m.payload == b"online");
        while !births.wait_for(Duration::from_millis(200), online) {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "Home Assistant exited with {status} before its birth message:\n{}",
                    self.log_tail(40)
                );
            }
            assert!(
                Instant::now() < deadline,
                "no birth message ({BIRTH_TOPIC} = online) from Home Assistant within {} s:\n{}",
                START_TIMEOUT.as_secs(),
                self.log_tail(40)
            );
        }
    }

    /// Creates the owner user through the onboarding API and trades its auth code for a bearer
    /// token (valid 30 min, and across a restart: HA keeps its auth store in .storage).
    fn onboard(&self) -> String {
        let client_id = format!("http://127.0.0.1:{}/", self.http_port);
        let user = self.post_json(
            "/api/onboarding/users",
            &json!({"client_id": client_id, "name": "Test", "username": "test",
                    "password": "edgebind-test-password", "language": "en"}),
        );
        let code = user["auth_code"].as_str().expect("auth_code").to_string();
        let mut resp = self
            .agent
            .post(self.url("/auth/token"))
            .send_form([
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("client_id", client_id.as_str()),
            ])
            .expect("POST /auth/token");
        let body: Value = read_ok(&mut resp, "/auth/token");
        body["access_token"]
            .as_str()
            .expect("access_token")
            .to_string()
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http_port)
    }

    fn post_json(&self, path: &str, body: &Value) -> Value {
        let mut req = self.agent.post(self.url(path));
        if !self.token.is_empty() {
            req = req.header("Authorization", format!("Bearer {}", self.token));
        }
        let mut resp = req
            .send_json(body)
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        read_ok(&mut resp, path)
    }

    fn get(&self, path: &str) -> ureq::http::Response<ureq::Body> {
        self.agent
            .get(self.url(path))
            .header("Authorization", format!("Bearer {}", self.token))
            .call()
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// The state object of `entity_id` (`state`, `attributes`, …), `None` when HA has no such
    /// entity.
    pub fn state(&self, entity_id: &str) -> Option<Value> {
        let path = format!("/api/states/{entity_id}");
        let mut resp = self.get(&path);
        if resp.status() == 404 {
            return None;
        }
        Some(read_ok(&mut resp, &path))
    }

    /// Every state whose entity id starts with `prefix` (e.g. `sensor.edgebind_`), by entity id.
    pub fn entities_with_prefix(&self, prefix: &str) -> BTreeMap<String, Value> {
        let mut resp = self.get("/api/states");
        let states: Vec<Value> = read_ok(&mut resp, "/api/states");
        states
            .into_iter()
            .filter_map(|s| {
                let id = s["entity_id"].as_str()?.to_string();
                id.starts_with(prefix).then_some((id, s))
            })
            .collect()
    }

    /// Polls `entity_id` until `pred` holds for its state (`None`: no such entity) and returns
    /// that state; panics after `timeout` with the last state and HA's log.
    pub fn wait_for_state(
        &self,
        entity_id: &str,
        pred: impl Fn(Option<&Value>) -> bool,
        timeout: Duration,
    ) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let state = self.state(entity_id);
            if pred(state.as_ref()) {
                return state;
            }
            assert!(
                Instant::now() < deadline,
                "{entity_id}: condition not met within {} s; last state: {}\nHome Assistant's \
                 log:\n{}",
                timeout.as_secs(),
                state.map_or_else(|| "none".to_string(), |s| s.to_string()),
                self.log_tail(30)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Renders a Jinja template in HA (POST /api/template).
    pub fn template(&self, template: &str) -> String {
        let mut resp = self
            .agent
            .post(self.url("/api/template"))
            .header("Authorization", format!("Bearer {}", self.token))
            .send_json(json!({ "template": template }))
            .expect("POST /api/template");
        let status = resp.status();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        assert_eq!(status, 200, "POST /api/template {template:?}: {text}");
        text
    }

    /// An attribute of the device an entity belongs to (`model`, `sw_version`, `name`,
    /// `configuration_url`, …); "None" when the entity has no device.
    pub fn device_attr(&self, entity_id: &str, attr: &str) -> String {
        self.template(&format!(
            "{{{{ device_attr(device_id('{entity_id}'), '{attr}') }}}}"
        ))
    }

    /// Stops HA gracefully (SIGTERM) and waits for it: it writes its registries on the way out.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("Home Assistant is running");
        sigterm(&child);
        wait_with_timeout(&mut child, STOP_TIMEOUT).unwrap_or_else(|| {
            panic!(
                "Home Assistant did not stop within {} s of SIGTERM:\n{}",
                STOP_TIMEOUT.as_secs(),
                self.log_tail(30)
            )
        })
    }

    /// Stops HA and starts it again on the same config directory (registries, auth, token kept),
    /// then waits for the new birth message.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn_and_wait_for_birth();
    }

    /// The entity registry entries (`.storage/core.entity_registry`, `data.entities`): every
    /// entity HA knows with its `unique_id`, `entity_id`, `entity_category`, `platform`, …
    /// Only after [`Self::stop`]: HA saves the registry lazily while it runs.
    pub fn entity_registry(&self) -> Vec<Value> {
        assert!(
            self.child.is_none(),
            "read the entity registry after stop(): HA writes it lazily while running"
        );
        let path = self.config_dir().join(".storage/core.entity_registry");
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let v: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        v["data"]["entities"]
            .as_array()
            .cloned()
            .unwrap_or_else(|| panic!("{}: no data.entities", path.display()))
    }
}

impl Drop for HomeAssistant {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            if let Some(dir) = self.config_dir.take() {
                let _ = writeln!(
                    std::io::stderr(),
                    "Home Assistant's config and log (hass.out) kept in {}",
                    dir.keep().display()
                );
            }
        }
    }
}

fn read_ok<T: serde::de::DeserializeOwned>(
    resp: &mut ureq::http::Response<ureq::Body>,
    what: &str,
) -> T {
    let status = resp.status();
    if status != 200 {
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        panic!("{what}: HTTP {status}: {text}");
    }
    resp.body_mut()
        .read_json()
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// configuration.yaml without `default_config` (nothing that needs the network), and the MQTT
/// config entry pre-seeded in `.storage` (the UI's config flow is the only other way). HA
/// migrates the entry's storage version itself.
fn write_config(dir: &Path, mqtt_port: u16, http_port: u16, discovery_prefix: &str) {
    let yaml = format!(
        "homeassistant:\n  name: edgebind test\n  latitude: 52.5\n  longitude: 13.4\n  \
         elevation: 0\n  unit_system: metric\n  time_zone: UTC\n  country: DE\n\
         http:\n  server_host: 127.0.0.1\n  server_port: {http_port}\n\
         logger:\n  default: warning\n  logs:\n    homeassistant.components.mqtt: info\n"
    );
    std::fs::write(dir.join("configuration.yaml"), yaml).expect("configuration.yaml");
    let entries = json!({
        "version": 1, "minor_version": 1, "key": "core.config_entries",
        "data": {"entries": [{
            "entry_id": "0000000000000000000000mqtt", "domain": "mqtt", "title": "127.0.0.1",
            "source": "user", "version": 1, "minor_version": 2,
            "data": {"broker": "127.0.0.1", "port": mqtt_port},
            "options": {"discovery": true, "discovery_prefix": discovery_prefix},
        }]},
    });
    let storage = dir.join(".storage");
    std::fs::create_dir_all(&storage).expect(".storage");
    std::fs::write(
        storage.join("core.config_entries"),
        serde_json::to_vec_pretty(&entries).expect("JSON"),
    )
    .expect("core.config_entries");
}
