//! Ready-to-paste `[[sources]]` blocks: built as ordered keys and values, named uniquely across
//! everything `edgebind devices` lists, then rendered as TOML that `edgebind check` accepts.

use std::collections::HashSet;

use serde::Serialize;

/// One `key = value` line, with an optional comment after it.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    /// The key.
    pub key: &'static str,
    /// The value (rendered with TOML's quoting).
    pub value: toml::Value,
    /// Said after the value (`# …`).
    pub comment: Option<String>,
}

/// A `[[sources]]` block before it is named.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BlockSpec {
    /// Comment lines above the block.
    pub notes: Vec<String>,
    /// The source `type`.
    pub source_type: &'static str,
    /// The name wanted (made unique when the inventory is finished).
    pub name_hint: String,
    /// The source's keys after `type` and `name`, in order.
    pub fields: Vec<Field>,
    /// Keys of the `[sources.preprocess]` table (none: no table).
    pub preprocess: Vec<Field>,
    /// Commented-out alternative lines shown after the keys (`# key = value`).
    pub alternatives: Vec<String>,
    /// Sub-tables that are sensors of their own (`[sources.colour]`), after the others.
    pub streams: Vec<StreamTable>,
}

/// A sub-table of a block feeding a sensor of its own (a RealSense's colour stream): named
/// uniquely like the block.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StreamTable {
    /// Its key under `sources` (`colour`).
    pub key: &'static str,
    /// The name wanted.
    pub name_hint: String,
    /// Its keys after `name`, in order.
    pub fields: Vec<Field>,
}

impl StreamTable {
    /// A `[sources.<key>]` table named after `name_hint`.
    #[must_use]
    pub fn new(key: &'static str, name_hint: &str) -> Self {
        Self {
            key,
            name_hint: name_hint.to_string(),
            fields: Vec::new(),
        }
    }

    /// Adds `key = value`.
    #[must_use]
    pub fn field(mut self, key: &'static str, value: impl Into<toml::Value>) -> Self {
        self.fields.push(Field {
            key,
            value: value.into(),
            comment: None,
        });
        self
    }
}

impl BlockSpec {
    /// A block of `source_type` named after `name_hint`.
    #[must_use]
    pub fn new(source_type: &'static str, name_hint: &str) -> Self {
        Self {
            source_type,
            name_hint: name_hint.to_string(),
            ..Self::default()
        }
    }

    /// Adds `key = value`.
    #[must_use]
    pub fn field(mut self, key: &'static str, value: impl Into<toml::Value>) -> Self {
        self.fields.push(Field {
            key,
            value: value.into(),
            comment: None,
        });
        self
    }

    /// Adds `key = value  # comment`.
    #[must_use]
    pub fn field_noted(
        mut self,
        key: &'static str,
        value: impl Into<toml::Value>,
        comment: &str,
    ) -> Self {
        self.fields.push(Field {
            key,
            value: value.into(),
            comment: Some(comment.to_string()),
        });
        self
    }

    /// Adds `key = value` to `[sources.preprocess]`.
    #[must_use]
    pub fn preprocess(mut self, key: &'static str, value: impl Into<toml::Value>) -> Self {
        self.preprocess.push(Field {
            key,
            value: value.into(),
            comment: None,
        });
        self
    }

    /// Adds a comment line above the block.
    #[must_use]
    pub fn note(mut self, line: &str) -> Self {
        self.notes.push(line.to_string());
        self
    }

    /// Adds a commented-out alternative (`# key = value`) after the keys.
    #[must_use]
    pub fn alternative(mut self, line: &str) -> Self {
        self.alternatives.push(line.to_string());
        self
    }

    /// Adds a sub-table feeding a sensor of its own.
    #[must_use]
    pub fn stream(mut self, table: StreamTable) -> Self {
        self.streams.push(table);
        self
    }

    /// The block as TOML under `name`, its [`streams`](Self::streams) under `stream_names`.
    #[must_use]
    pub fn render(&self, name: &str, stream_names: &[String]) -> String {
        let mut out = String::new();
        for n in &self.notes {
            out.push_str(&format!("# {n}\n"));
        }
        out.push_str("[[sources]]\n");
        out.push_str(&format!("type = {}\n", toml::Value::from(self.source_type)));
        out.push_str(&format!("name = {}\n", toml::Value::from(name)));
        render_fields(&mut out, &self.fields);
        for a in &self.alternatives {
            out.push_str(&format!("# {a}\n"));
        }
        if !self.preprocess.is_empty() {
            out.push_str("[sources.preprocess]\n");
            render_fields(&mut out, &self.preprocess);
        }
        for (table, name) in self.streams.iter().zip(stream_names) {
            out.push_str(&format!("[sources.{}]\n", table.key));
            out.push_str(&format!("name = {}\n", toml::Value::from(name.as_str())));
            render_fields(&mut out, &table.fields);
        }
        out
    }
}

fn render_fields(out: &mut String, fields: &[Field]) {
    for f in fields {
        match &f.comment {
            Some(c) => out.push_str(&format!("{} = {}  # {c}\n", f.key, f.value)),
            None => out.push_str(&format!("{} = {}\n", f.key, f.value)),
        }
    }
}

/// A named block, as printed and in `--json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceBlock {
    /// The sensor name the block gives (unique across the listing).
    pub name: String,
    /// The `[[sources]]` block, TOML.
    pub toml: String,
}

/// Gives out sensor names: letters, digits, `-`, `_`, at most 64 characters, each once.
#[derive(Debug, Default)]
pub struct Names {
    taken: HashSet<String>,
}

impl Names {
    /// A unique name close to `hint`.
    pub fn unique(&mut self, hint: &str) -> String {
        let base = sanitize(hint);
        let mut name = base.clone();
        let mut n = 2;
        while !self.taken.insert(name.clone()) {
            let suffix = format!("-{n}");
            let keep = 64usize.saturating_sub(suffix.len());
            name = format!("{}{suffix}", truncate(&base, keep));
            n += 1;
        }
        name
    }

    /// Names and renders `spec`.
    pub fn block(&mut self, spec: &BlockSpec) -> SourceBlock {
        let name = self.unique(&spec.name_hint);
        let stream_names: Vec<String> = spec
            .streams
            .iter()
            .map(|t| self.unique(&t.name_hint))
            .collect();
        SourceBlock {
            toml: spec.render(&name, &stream_names),
            name,
        }
    }
}

/// Lower-case letters and digits, other runs turned into one `-`, at most 64 characters.
#[must_use]
pub fn sanitize(hint: &str) -> String {
    let mut out = String::new();
    for c in hint.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    let out = truncate(out.trim_end_matches('-'), 64)
        .trim_end_matches('-')
        .to_string();
    if out.is_empty() {
        "sensor".to_string()
    } else {
        out
    }
}

fn truncate(s: &str, max: usize) -> &str {
    // ASCII only (see `sanitize`), so any byte index is a character boundary.
    &s[..s.len().min(max)]
}

/// Reads the first `[[sources]]` table of a rendered block the way a configuration file is read.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) fn parse_first_source(text: &str) -> crate::config::SourceConfig {
    let doc: toml::Table = text.parse().unwrap_or_else(|e| panic!("{e}\n{text}"));
    let mut table = doc["sources"].as_array().unwrap()[0]
        .as_table()
        .unwrap()
        .clone();
    let type_name = table.remove("type").unwrap();
    crate::config::SourceConfig::read(type_name.as_str().unwrap(), toml::Value::Table(table))
        .unwrap_or_else(|| panic!("unknown type in\n{text}"))
        .unwrap_or_else(|e| panic!("{e}\n{text}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_are_sanitised_and_unique() {
        let mut names = Names::default();
        assert_eq!(names.unique("imu ttyUSB0"), "imu-ttyusb0");
        assert_eq!(names.unique("imu-ttyUSB0"), "imu-ttyusb0-2");
        assert_eq!(
            names.unique("mic plughw:CARD=Device,DEV=0"),
            "mic-plughw-card-device-dev-0"
        );
        assert_eq!(names.unique("///"), "sensor");
        let long = "x".repeat(100);
        let a = names.unique(&long);
        let b = names.unique(&long);
        assert_eq!(a.len(), 64);
        assert_eq!(b.len(), 64);
        assert_ne!(a, b);
    }

    #[test]
    fn a_rendered_block_parses_as_a_source() {
        let spec = BlockSpec::new("v4l2_thermal", "thermal video0")
            .note("PureThermal \"Lepton\"")
            .field_noted("device", "/dev/v4l/by-id/usb-x", "stable link")
            .field("layout", "lepton")
            .alternative("pixel_format = \"UYVY\"")
            .preprocess("agc", "min_max");
        let block = Names::default().block(&spec);
        assert_eq!(block.name, "thermal-video0");
        let source = parse_first_source(&block.toml);
        assert_eq!(source.name(), "thermal-video0");
        assert!(block
            .toml
            .starts_with("# PureThermal \"Lepton\"\n[[sources]]\n"));
    }
}
