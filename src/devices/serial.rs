//! Serial ports an IMU can be on: the kernel's tty devices backed by hardware (USB adapters,
//! on-board UARTs such as a Jetson's `ttyTHS*`), with their `/dev/serial/by-id` link, USB
//! VID:PID and strings, and the adapters IMUs are known to ship with named.
//!
//! The scan reads sysfs itself rather than through `serialport::available_ports`: that one skips
//! platform UARTs (`ttyTHS1`, where Jetson carrier boards wire an IMU) and panics when
//! `/sys/class/tty` is missing (some containers).

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::IsTerminal;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::block::{BlockSpec, SourceBlock};

/// A USB adapter edgebind recognises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownAdapter {
    /// USB vendor id.
    pub vid: u16,
    /// USB product id (`None`: any product of the vendor).
    pub pid: Option<u16>,
    /// What it is.
    pub name: &'static str,
    /// Whether WitMotion's USB IMUs ship with it (their binary protocol is then the guess).
    pub witmotion: bool,
}

/// USB-UART chips and boards IMUs are sold with or wired to.
pub const KNOWN_ADAPTERS: &[KnownAdapter] = &[
    KnownAdapter {
        vid: 0x1a86,
        pid: Some(0x7523),
        name: "WCH CH340 (WitMotion USB IMUs)",
        witmotion: true,
    },
    KnownAdapter {
        vid: 0x1a86,
        pid: Some(0x55d4),
        name: "WCH CH9102 (WitMotion USB IMUs)",
        witmotion: true,
    },
    KnownAdapter {
        vid: 0x10c4,
        pid: Some(0xea60),
        name: "Silicon Labs CP210x (WitMotion, IMU breakouts)",
        witmotion: true,
    },
    KnownAdapter {
        vid: 0x0403,
        pid: Some(0x6001),
        name: "FTDI FT232R",
        witmotion: false,
    },
    KnownAdapter {
        vid: 0x0403,
        pid: Some(0x6015),
        name: "FTDI FT-X",
        witmotion: false,
    },
    KnownAdapter {
        vid: 0x2341,
        pid: None,
        name: "Arduino board",
        witmotion: false,
    },
    KnownAdapter {
        vid: 0x239a,
        pid: None,
        name: "Adafruit board",
        witmotion: false,
    },
    KnownAdapter {
        vid: 0x2e8a,
        pid: None,
        name: "Raspberry Pi Pico",
        witmotion: false,
    },
    KnownAdapter {
        vid: 0x303a,
        pid: None,
        name: "Espressif ESP32",
        witmotion: false,
    },
];

/// The adapter with this USB id, if known.
#[must_use]
pub fn known_adapter(vid: u16, pid: u16) -> Option<&'static KnownAdapter> {
    KNOWN_ADAPTERS
        .iter()
        .find(|a| a.vid == vid && a.pid.is_none_or(|p| p == pid))
}

/// How a port is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PortKind {
    /// A USB serial adapter or USB CDC-ACM device.
    Usb,
    /// A UART on the board (`ttyS*`, `ttyTHS*`, `ttyAMA*`).
    OnBoard,
    /// Named on the command line (`--serial-port`), e.g. a pty.
    Given,
}

/// One serial port.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SerialPort {
    /// The path to configure: the `/dev/serial/by-id` link when there is one (it survives
    /// re-plugging), else the device node.
    pub path: String,
    /// The device node (`/dev/ttyUSB0`).
    pub device: String,
    /// The `/dev/serial/by-id` link.
    pub by_id: Option<String>,
    /// How it is attached.
    pub kind: PortKind,
    /// USB `vid:pid`, four hex digits each.
    pub usb_id: Option<String>,
    /// USB manufacturer string.
    pub manufacturer: Option<String>,
    /// USB product string.
    pub product: Option<String>,
    /// USB serial number.
    pub serial_number: Option<String>,
    /// The adapter recognised from the USB id.
    pub adapter: Option<String>,
    /// The `[[sources]]` block.
    pub source: Option<SourceBlock>,
    #[serde(skip)]
    pub(crate) spec: Option<BlockSpec>,
}

/// USB identity read from sysfs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsbInfo {
    /// Vendor id.
    pub vid: u16,
    /// Product id.
    pub pid: u16,
    /// Manufacturer string.
    pub manufacturer: Option<String>,
    /// Product string.
    pub product: Option<String>,
    /// Serial number.
    pub serial_number: Option<String>,
}

impl SerialPort {
    /// An entry for `device` (its by-id link and USB identity when known), with its block.
    #[must_use]
    pub fn new(device: &Path, by_id: Option<&Path>, kind: PortKind, usb: Option<UsbInfo>) -> Self {
        let adapter = usb.as_ref().and_then(|u| known_adapter(u.vid, u.pid));
        let names_witmotion = usb.as_ref().is_some_and(|u| {
            [&u.manufacturer, &u.product].iter().any(|s| {
                s.as_deref()
                    .is_some_and(|s| s.to_lowercase().contains("witmotion"))
            })
        });
        let path = by_id.unwrap_or(device);
        // `ttyUSB0`, `pts/3`: the node without `/dev/`.
        let shown = device.display().to_string();
        let node_name = shown.strip_prefix("/dev/").unwrap_or(&shown).to_string();
        let spec = imu_block(
            &path.display().to_string(),
            &node_name,
            adapter.is_some_and(|a| a.witmotion) || names_witmotion,
        );
        Self {
            path: path.display().to_string(),
            device: device.display().to_string(),
            by_id: by_id.map(|p| p.display().to_string()),
            kind,
            usb_id: usb.as_ref().map(|u| format!("{:04x}:{:04x}", u.vid, u.pid)),
            manufacturer: usb.as_ref().and_then(|u| u.manufacturer.clone()),
            product: usb.as_ref().and_then(|u| u.product.clone()),
            serial_number: usb.as_ref().and_then(|u| u.serial_number.clone()),
            adapter: adapter.map(|a| a.name.to_string()),
            source: None,
            spec: Some(spec),
        }
    }
}

/// The `imu_serial` block for a port: WitMotion's binary protocol on the adapters WitMotion
/// ships, else CSV lines as microcontroller firmware prints them.
fn imu_block(path: &str, node_name: &str, witmotion: bool) -> BlockSpec {
    let spec = BlockSpec::new("imu_serial", &format!("imu-{node_name}")).field("path", path);
    if witmotion {
        // WitMotion's factory settings; 100 Hz and more need 115200 baud, set with its tool.
        spec.note(
            "A WitMotion IMU: its binary protocol at the factory settings (10 Hz, 9600 baud).",
        )
        .note("Raise both with WitMotion's tool for useful windows (e.g. 100 Hz at 115200 baud).")
        .field_noted("protocol", "witmotion", "or \"csv\" for text lines")
        .field("baud_rate", 9600)
        .field("sample_rate_hz", 10.0)
    } else {
        spec.note(
            "An IMU printing one CSV line per sample: set the columns, units and rate it sends.",
        )
        .field("protocol", "csv")
        .field("baud_rate", 115_200)
        .field(
            "csv_columns",
            toml::Value::Array(
                ["acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"]
                    .into_iter()
                    .map(toml::Value::from)
                    .collect(),
            ),
        )
        .field("acc_unit", "g")
        .field("gyro_unit", "deg/s")
        .field_noted("sample_rate_hz", 100.0, "the rate the firmware prints at")
    }
}

/// Where the scan looks (the real system, or a copy in a test).
#[derive(Debug, Clone)]
pub struct SerialRoots {
    /// `/sys/class/tty`.
    pub sys_class_tty: PathBuf,
    /// `/dev`.
    pub dev: PathBuf,
}

impl Default for SerialRoots {
    fn default() -> Self {
        Self {
            sys_class_tty: PathBuf::from("/sys/class/tty"),
            dev: PathBuf::from("/dev"),
        }
    }
}

/// Every hardware serial port under `roots`, in name order.
///
/// # Errors
/// A one-line reason when `/sys/class/tty` cannot be read.
pub fn scan(roots: &SerialRoots) -> Result<Vec<SerialPort>, String> {
    let entries = std::fs::read_dir(&roots.sys_class_tty)
        .map_err(|e| format!("cannot read {}: {e}", roots.sys_class_tty.display()))?;
    let by_id = by_id_links(&roots.dev.join("serial/by-id"));
    let mut ports = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let class_dir = entry.path();
        let Ok(device_dir) = std::fs::canonicalize(class_dir.join("device")) else {
            continue; // virtual terminals, ptys, the console: no hardware behind them
        };
        // The 8250 driver registers ttyS0-31 whether a UART exists or not; `type` 0 is none.
        if name.starts_with("ttyS") && read_trimmed(&class_dir.join("type")).as_deref() == Some("0")
        {
            continue;
        }
        let node = roots.dev.join(&name);
        if !node.exists() {
            continue;
        }
        let usb = usb_info(&device_dir);
        let kind = if usb.is_some() {
            PortKind::Usb
        } else {
            PortKind::OnBoard
        };
        let link = by_id.get(&name).map(PathBuf::as_path);
        ports.push(SerialPort::new(&node, link, kind, usb));
    }
    ports.sort_by_key(|p| natural_key(&p.device));
    Ok(ports)
}

/// `/dev/serial/by-id` links by the node name they lead to (`ttyUSB0`).
fn by_id_links(dir: &Path) -> HashMap<String, PathBuf> {
    let mut links = HashMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return links;
    };
    for e in entries.flatten() {
        let target = std::fs::read_link(e.path())
            .ok()
            .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()));
        if let Some(node) = target {
            links.insert(node, e.path());
        }
    }
    links
}

/// The USB device above a tty's device directory (interface, or usb-serial port under it).
fn usb_info(device_dir: &Path) -> Option<UsbInfo> {
    let mut dir = device_dir;
    for _ in 0..4 {
        let vid =
            read_trimmed(&dir.join("idVendor")).and_then(|v| u16::from_str_radix(&v, 16).ok());
        let pid =
            read_trimmed(&dir.join("idProduct")).and_then(|v| u16::from_str_radix(&v, 16).ok());
        if let (Some(vid), Some(pid)) = (vid, pid) {
            return Some(UsbInfo {
                vid,
                pid,
                manufacturer: read_trimmed(&dir.join("manufacturer")),
                product: read_trimmed(&dir.join("product")),
                serial_number: read_trimmed(&dir.join("serial")),
            });
        }
        dir = dir.parent()?;
    }
    None
}

fn read_trimmed(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

/// `ttyUSB10` after `ttyUSB9`.
fn natural_key(s: &str) -> (String, u64) {
    let digits = s.len() - s.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let (head, tail) = s.split_at(s.len() - digits);
    (head.to_string(), tail.parse().unwrap_or(0))
}

/// A port named on the command line: it must be a terminal device.
///
/// # Errors
/// A one-line reason naming the path.
pub fn given(path: &Path) -> Result<SerialPort, String> {
    // Non-blocking: a modem line without carrier would block the open; no controlling tty.
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags((nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_NOCTTY).bits())
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if !file.is_terminal() {
        return Err(format!(
            "{}: not a serial port (not a terminal device)",
            path.display()
        ));
    }
    Ok(SerialPort::new(path, None, PortKind::Given, None))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn write(p: &Path, text: &str) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    /// A sysfs and /dev like a Jetson with a CH340 WitMotion IMU, a CDC-ACM board, the
    /// on-board UART, an absent 8250 port and a virtual terminal.
    fn fake_system(root: &Path) -> SerialRoots {
        let sys = root.join("sys");
        let dev = root.join("dev");
        let usb1 = sys.join("devices/usb1/1-2");
        write(&usb1.join("idVendor"), "1a86\n");
        write(&usb1.join("idProduct"), "7523\n");
        write(&usb1.join("product"), "USB Serial\n");
        std::fs::create_dir_all(usb1.join("1-2:1.0/ttyUSB0")).unwrap();
        let usb2 = sys.join("devices/usb1/1-3");
        write(&usb2.join("idVendor"), "2341\n");
        write(&usb2.join("idProduct"), "0043\n");
        write(&usb2.join("manufacturer"), "Arduino (www.arduino.cc)\n");
        write(&usb2.join("serial"), "8503\n");
        std::fs::create_dir_all(usb2.join("1-3:1.0")).unwrap();
        std::fs::create_dir_all(sys.join("devices/platform/3100000.serial")).unwrap();
        std::fs::create_dir_all(sys.join("devices/platform/serial8250")).unwrap();
        let class = sys.join("class/tty");
        for (name, device) in [
            ("ttyUSB0", "devices/usb1/1-2/1-2:1.0/ttyUSB0"),
            ("ttyACM0", "devices/usb1/1-3/1-3:1.0"),
            ("ttyTHS1", "devices/platform/3100000.serial"),
            ("ttyS3", "devices/platform/serial8250"),
        ] {
            std::fs::create_dir_all(class.join(name)).unwrap();
            symlink(sys.join(device), class.join(name).join("device")).unwrap();
            write(&dev.join(name), "");
        }
        write(&class.join("ttyS3/type"), "0\n");
        std::fs::create_dir_all(class.join("tty0")).unwrap();
        write(&dev.join("tty0"), "");
        std::fs::create_dir_all(dev.join("serial/by-id")).unwrap();
        symlink(
            "../../ttyUSB0",
            dev.join("serial/by-id/usb-1a86_USB_Serial-if00-port0"),
        )
        .unwrap();
        SerialRoots {
            sys_class_tty: class,
            dev,
        }
    }

    #[test]
    fn hardware_ports_are_found_with_their_links_and_usb_identity() {
        let tmp = tempfile::tempdir().unwrap();
        let roots = fake_system(tmp.path());
        let ports = scan(&roots).unwrap();
        let names: Vec<&str> = ports
            .iter()
            .map(|p| p.device.rsplit('/').next().unwrap())
            .collect();
        assert_eq!(names, ["ttyACM0", "ttyTHS1", "ttyUSB0"]);
        let ch340 = &ports[2];
        assert_eq!(ch340.kind, PortKind::Usb);
        assert_eq!(ch340.usb_id.as_deref(), Some("1a86:7523"));
        assert!(ch340
            .path
            .ends_with("/dev/serial/by-id/usb-1a86_USB_Serial-if00-port0"));
        assert_eq!(
            ch340.adapter.as_deref(),
            Some("WCH CH340 (WitMotion USB IMUs)")
        );
        let spec = ch340.spec.as_ref().unwrap();
        assert!(spec
            .fields
            .iter()
            .any(|f| f.key == "protocol" && f.value.as_str() == Some("witmotion")));
        let arduino = &ports[0];
        assert_eq!(arduino.usb_id.as_deref(), Some("2341:0043"));
        assert_eq!(arduino.adapter.as_deref(), Some("Arduino board"));
        assert_eq!(arduino.serial_number.as_deref(), Some("8503"));
        assert_eq!(arduino.by_id, None);
        let spec = arduino.spec.as_ref().unwrap();
        assert!(spec
            .fields
            .iter()
            .any(|f| f.key == "protocol" && f.value.as_str() == Some("csv")));
        assert_eq!(ports[1].kind, PortKind::OnBoard);
        assert_eq!(ports[1].usb_id, None);
    }

    #[test]
    fn a_missing_sysfs_is_a_reason_not_a_panic() {
        let roots = SerialRoots {
            sys_class_tty: PathBuf::from("/nonexistent/sys/class/tty"),
            dev: PathBuf::from("/dev"),
        };
        let e = scan(&roots).unwrap_err();
        assert!(
            e.starts_with("cannot read /nonexistent/sys/class/tty: "),
            "{e}"
        );
    }

    #[test]
    fn a_given_path_must_be_a_terminal() {
        let e = given(Path::new("/dev/null")).unwrap_err();
        assert_eq!(e, "/dev/null: not a serial port (not a terminal device)");
        let e = given(Path::new("/dev/ttyEDGEBINDmissing")).unwrap_err();
        assert!(
            e.starts_with("/dev/ttyEDGEBINDmissing: No such file"),
            "{e}"
        );
    }
}
