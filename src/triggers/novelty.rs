//! The novelty memory of one engine: the unit embeddings of its most recent windows in f16 (half
//! the memory of f32; a cosine moves by ~1e-3 at most), in a ring of fixed capacity. Every
//! `novelty` trigger of the engine reads the same memory, so a window is compared with it once
//! however many novelty triggers there are; each trigger then looks at its own span of it.

use half::f16;
use half::slice::HalfFloatSliceExt;

use super::config::NoveltyParams;
use super::vector::dot;

/// Remembered unit embeddings, newest last, at most `capacity`.
#[derive(Debug, Clone)]
pub struct NoveltyMemory {
    dim: usize,
    capacity: usize,
    /// Row-major rows; grows to `capacity` rows, then `next` overwrites the oldest.
    rows: Vec<f16>,
    len: usize,
    next: usize,
}

impl NoveltyMemory {
    /// An empty memory of `capacity` rows of `dim` values (allocated as it fills).
    #[must_use]
    pub fn new(dim: usize, capacity: usize) -> Self {
        Self {
            dim,
            capacity,
            rows: Vec::new(),
            len: 0,
            next: 0,
        }
    }

    /// The memory every trigger of `params` needs: each compares against `memory_windows` rows
    /// after skipping its `ignore_recent_windows` newest.
    #[must_use]
    pub fn capacity_for<'a>(params: impl IntoIterator<Item = &'a NoveltyParams>) -> usize {
        params
            .into_iter()
            .map(|p| p.memory_windows as usize + p.ignore_recent_windows as usize)
            .max()
            .unwrap_or(0)
    }

    /// Rows remembered.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is remembered.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Most rows kept.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Width of a row.
    #[must_use]
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Bytes held by the rows.
    #[must_use]
    pub fn heap_bytes(&self) -> usize {
        self.rows.capacity() * std::mem::size_of::<f16>()
    }

    /// Remembers a unit embedding of width `dim` (others are ignored), forgetting the oldest when
    /// full.
    pub fn push(&mut self, unit: &[f32]) {
        if unit.len() != self.dim || self.capacity == 0 {
            return;
        }
        if self.len < self.capacity {
            // One allocation of the full size: the memory's footprint is fixed from the start.
            self.rows
                .reserve_exact(self.capacity * self.dim - self.rows.len());
            self.rows.extend(unit.iter().map(|v| f16::from_f32(*v)));
            self.len += 1;
            self.next = self.len % self.capacity;
        } else {
            let at = self.next * self.dim;
            self.rows[at..at + self.dim].convert_from_f32_slice(unit);
            self.next = (self.next + 1) % self.capacity;
        }
    }

    /// Rows from newest to oldest.
    pub fn newest_first(&self) -> impl Iterator<Item = &[f16]> {
        let (len, cap, next, dim) = (self.len, self.capacity.max(1), self.next, self.dim);
        (0..len).map(move |k| {
            let i = (next + cap - 1 - k) % cap;
            &self.rows[i * dim..(i + 1) * dim]
        })
    }

    /// Cosines of `unit` with every row, newest first, into `out` (`scratch` holds one row in
    /// f32).
    pub fn similarities(&self, unit: &[f32], scratch: &mut Vec<f32>, out: &mut Vec<f32>) {
        out.clear();
        if unit.len() != self.dim {
            return;
        }
        scratch.resize(self.dim, 0.0);
        for row in self.newest_first() {
            row.convert_to_f32_slice(scratch);
            out.push(dot(unit, scratch).clamp(-1.0, 1.0));
        }
    }

    /// This memory with a new capacity, keeping the newest rows that fit.
    #[must_use]
    pub fn resized(&self, capacity: usize) -> Self {
        let mut rows: Vec<&[f16]> = self.newest_first().take(capacity).collect();
        rows.reverse();
        Self::from_rows(self.dim, capacity, rows)
    }

    /// A memory holding `rows` (oldest first; only the newest `capacity` are kept).
    pub(crate) fn from_rows<'a>(
        dim: usize,
        capacity: usize,
        rows: impl IntoIterator<Item = &'a [f16]>,
    ) -> Self {
        let mut m = Self::new(dim, capacity);
        let rows: Vec<&[f16]> = rows.into_iter().filter(|r| r.len() == dim).collect();
        let skip = rows.len().saturating_sub(capacity);
        for row in &rows[skip..] {
            m.rows.extend_from_slice(row);
            m.len += 1;
        }
        m.next = if capacity == 0 { 0 } else { m.len % capacity };
        m
    }
}

/// A novelty trigger's score from the cosines of the window with the memory (newest first):
/// 1 − the best cosine among its span, or `None` while fewer than `warmup_windows` rows are in
/// its span.
#[must_use]
pub fn novelty_score(params: &NoveltyParams, similarities: &[f32]) -> Option<f32> {
    let span = similarities
        .iter()
        .skip(params.ignore_recent_windows as usize)
        .take(params.memory_windows as usize);
    let (count, best) = span.fold((0u32, f32::NEG_INFINITY), |(n, b), &s| (n + 1, b.max(s)));
    (count >= params.warmup_windows).then_some(1.0 - best)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn axis(dim: usize, i: usize) -> Vec<f32> {
        let mut v = vec![0.0; dim];
        v[i % dim] = 1.0;
        v
    }

    #[test]
    fn the_ring_keeps_the_newest_rows_in_order() {
        let mut m = NoveltyMemory::new(4, 3);
        for i in 0..5 {
            m.push(&axis(4, i));
        }
        assert_eq!(m.len(), 3);
        let (mut scratch, mut sims) = (Vec::new(), Vec::new());
        m.similarities(&axis(4, 4), &mut scratch, &mut sims);
        assert_eq!(sims, [1.0, 0.0, 0.0]);
        m.similarities(&axis(4, 2), &mut scratch, &mut sims);
        assert_eq!(sims, [0.0, 0.0, 1.0]);
        let smaller = m.resized(2);
        smaller.similarities(&axis(4, 3), &mut scratch, &mut sims);
        assert_eq!(sims, [0.0, 1.0]);
    }

    #[test]
    fn memory_stays_bounded_however_many_windows() {
        let mut m = NoveltyMemory::new(16, 8);
        for i in 0..10_000 {
            m.push(&axis(16, i));
        }
        assert_eq!(m.len(), 8);
        assert_eq!(m.heap_bytes(), 8 * 16 * 2);
    }

    #[test]
    fn score_waits_for_warmup_and_skips_the_newest() {
        let p = NoveltyParams {
            memory_windows: 2,
            warmup_windows: 2,
            ignore_recent_windows: 1,
        };
        assert_eq!(novelty_score(&p, &[1.0, 0.2]), None);
        assert_eq!(novelty_score(&p, &[1.0, 0.2, 0.5]), Some(0.5));
        assert_eq!(novelty_score(&p, &[1.0, 0.2, 0.5, 1.0]), Some(0.5));
    }
}
