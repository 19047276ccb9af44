//! The spanned document: key paths, line and column of offsets, where each key is, and finding,
//! replacing and taking out the value an error points at.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ops::Range;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// A step of a key path.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Seg {
    Key(String),
    Index(usize),
}

pub(super) fn join(prefix: &str, segs: &[Seg]) -> String {
    let mut out = prefix.to_string();
    for seg in segs {
        match seg {
            Seg::Key(k) if out.is_empty() => out.push_str(k),
            Seg::Key(k) => {
                out.push('.');
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Line and column (1-based, in characters) of byte offsets of a text.
pub(super) struct Lines<'t> {
    pub(super) text: &'t str,
    starts: Vec<usize>,
}

impl<'t> Lines<'t> {
    pub(super) fn new(text: &'t str) -> Self {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self { text, starts }
    }

    /// `None` for an offset past the text (a placeholder's).
    pub(super) fn at(&self, offset: usize) -> Option<(usize, usize)> {
        if offset > self.text.len() {
            return None;
        }
        let line = self.starts.partition_point(|&s| s <= offset);
        let start = self.starts[line.saturating_sub(1)];
        let column = self
            .text
            .get(start..offset)
            .map_or(1, |s| s.chars().count() + 1);
        Some((line, column))
    }
}

/// Where each key of a configuration file is: its path (`sources[2].window_ms`) to the line
/// and column of its value (of the header, for a table).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Locations(BTreeMap<String, (usize, usize)>);

impl Locations {
    pub(super) fn of(lines: &Lines<'_>, root: &DeTable<'_>) -> Self {
        let mut map = BTreeMap::new();
        walk(root, &mut Vec::new(), &mut |segs, key, value| {
            let _ = key;
            if let Some(at) = lines.at(value.span().start) {
                map.insert(join("", segs), at);
            }
        });
        Self(map)
    }

    /// The location of `path`, or else of the nearest enclosing key the file has (a key left at
    /// its default is found at its table's header).
    #[must_use]
    pub fn find(&self, path: &str) -> Option<(usize, usize)> {
        let mut path = path;
        loop {
            if let Some(at) = self.0.get(path) {
                return Some(*at);
            }
            let cut = path.rfind(['.', '['])?;
            path = &path[..cut];
        }
    }
}

pub(super) type Visit<'a> =
    dyn FnMut(&[Seg], Option<&Spanned<Cow<'_, str>>>, &Spanned<DeValue<'_>>) + 'a;

/// Calls `f` for every key and array element below `table`, depth first.
pub(super) fn walk(table: &DeTable<'_>, segs: &mut Vec<Seg>, f: &mut Visit<'_>) {
    for (key, value) in table.iter() {
        segs.push(Seg::Key(key.get_ref().to_string()));
        f(segs, Some(key), value);
        walk_value(value, segs, f);
        segs.pop();
    }
}

pub(super) fn walk_value(value: &Spanned<DeValue<'_>>, segs: &mut Vec<Seg>, f: &mut Visit<'_>) {
    match value.get_ref() {
        DeValue::Table(t) => walk(t, segs, f),
        DeValue::Array(a) => {
            for (i, item) in a.iter().enumerate() {
                segs.push(Seg::Index(i));
                f(segs, None, item);
                walk_value(item, segs, f);
                segs.pop();
            }
        }
        _ => {}
    }
}

/// The key (or array element) an error span points at: the value whose span is the error's,
/// else the key whose span is, else the smallest value that contains it.
pub(super) fn locate(table: &DeTable<'_>, span: &Range<usize>) -> Option<Vec<Seg>> {
    let mut value_hit = None;
    let mut key_hit = None;
    let mut containing: Option<(usize, Vec<Seg>)> = None;
    walk(table, &mut Vec::new(), &mut |segs, key, value| {
        let v = value.span();
        if v == *span && value_hit.is_none() {
            value_hit = Some(segs.to_vec());
        }
        if key.is_some_and(|k| k.span() == *span) {
            key_hit = Some(segs.to_vec());
        }
        if v.start <= span.start && span.end <= v.end && v != *span {
            let len = v.end - v.start;
            if containing.as_ref().is_none_or(|(best, _)| len < *best) {
                containing = Some((len, segs.to_vec()));
            }
        }
    });
    value_hit
        .or(key_hit)
        .or_else(|| containing.map(|(_, segs)| segs))
}

/// The table whose span is `span` exactly (`[]` for `root` itself).
pub(super) fn find_table(root: &Spanned<DeTable<'_>>, span: &Range<usize>) -> Option<Vec<Seg>> {
    if root.span() == *span {
        return Some(Vec::new());
    }
    let mut hit = None;
    walk(root.get_ref(), &mut Vec::new(), &mut |segs, _, value| {
        if hit.is_none() && value.span() == *span && matches!(value.get_ref(), DeValue::Table(_)) {
            hit = Some(segs.to_vec());
        }
    });
    hit
}

pub(super) fn child_table<'a, 'i>(
    table: &'a mut DeTable<'i>,
    seg: &Seg,
) -> Option<&'a mut DeTable<'i>> {
    let Seg::Key(k) = seg else { return None };
    match table.get_mut(k.as_str())?.get_mut() {
        DeValue::Table(t) => Some(t),
        _ => None,
    }
}

/// The table at `segs` below `root` (tables all the way).
pub(super) fn table_at<'a, 'i>(
    root: &'a mut DeTable<'i>,
    segs: &[Seg],
) -> Option<&'a mut DeTable<'i>> {
    segs.iter()
        .try_fold(root, |table, seg| child_table(table, seg))
}

pub(super) fn set_value<'i>(
    root: &mut DeTable<'i>,
    segs: &[Seg],
    value: Spanned<DeValue<'i>>,
) -> bool {
    let Some((Seg::Key(last), parent)) = segs.split_last() else {
        return false;
    };
    let Some(table) = table_at(root, parent) else {
        return false;
    };
    let key = Spanned::new(value.span(), Cow::Owned(last.clone()));
    table.insert(key, value);
    true
}

pub(super) fn remove_value(root: &mut DeTable<'_>, segs: &[Seg]) -> bool {
    let Some((Seg::Key(last), parent)) = segs.split_last() else {
        return false;
    };
    table_at(root, parent).is_some_and(|t| t.remove(last.as_str()).is_some())
}

/// Whether `path` is `base`, or a key or element below it.
pub(super) fn is_under(path: &str, base: &str) -> bool {
    path.strip_prefix(base)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
}

pub(super) fn is_under_any(path: &str, bases: &[String]) -> bool {
    bases.iter().any(|b| is_under(path, b))
}
