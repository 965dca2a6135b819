//! Which writers may run at the same time as a node that reads their key, and which writers of a
//! `replace` key may run at the same time as each other: the pairs the read-from-non-upstream and
//! concurrent-writer checks report.
//!
//! Both checks ask one question about pairs of nodes: is either one upstream of the other? The
//! checks used to answer it from the whole ancestry relation, one bit per pair of nodes, which is
//! quadratic in memory (1.25 GB for 100,000 nodes). They only ask it of some pairs, though: a
//! writer of a key and a node that reads that key, or two writers of one `replace` key. So
//! [`Conflicts::new`] answers exactly those, offline and bit-parallel:
//!
//! - The *sources* are the nodes that write a key some node reads, or a `replace` key with more
//!   than one writer. Taken in canonical order, [`BATCH`] at a time, each source of a batch gets
//!   one bit.
//! - A forward sweep in canonical order gives each node the set of the batch's sources upstream of
//!   it (itself included); a backward sweep, the set downstream of it. The sweeps cover only the
//!   positions between the batch's sources and the farthest node they are asked about: nothing
//!   before the first source can be downstream of one, nothing after the last upstream of one.
//! - For each key a source of the batch writes, each of the key's *targets* (its readers, and its
//!   other writers when it is a `replace` key) is concurrent with the writers whose bit is in
//!   neither of its sets.
//!
//! Memory is linear: two rows of at most [`BATCH`] bits per node, the graph's edges both ways as
//! `u32`s, and the pairs found (each one a diagnostic). Time is one sweep per batch: at worst
//! `O(sources × (nodes + edges) / 64)`, the old bitsets' cost (a chain of 100,000 nodes that all
//! read and write one key), and close to linear when keys are read near where they are written.
//! A workflow whose nodes read no state costs nothing.

/// The most sources one sweep carries, one bit each: wide enough to amortise the sweeps' loop
/// overhead, narrow enough that the rows stay small (64 bytes per node and direction).
const BATCH: usize = 512;

const WORDS: usize = BATCH / 64;

/// The writer pairs that may run concurrently, over file positions.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Conflicts {
    /// `(reader, key, writer)`: `writer` writes `key`, which `reader` reads, and neither is
    /// upstream of the other. Sorted.
    reads: Vec<(u32, u32, u32)>,
    /// `(key, a, b)`, `a < b`: both write `replace` key `key` and neither is upstream of the other.
    /// Sorted.
    replace: Vec<(u32, u32, u32)>,
}

/// What the checks know about the workflow's data flow, over file positions.
pub struct DataFlow<'a> {
    /// Per node, the nodes it needs.
    pub needs: &'a [Vec<usize>],
    /// The canonical order (topological).
    pub order: &'a [usize],
    /// Per key, the nodes that write it, in file order.
    pub writers: &'a [Vec<usize>],
    /// Per node, the keys it reads.
    pub reads: &'a [Vec<usize>],
    /// Per key, whether its reducer is `replace` (so two writers of it must never run at once).
    pub replace: &'a [bool],
}

/// Rows of `u32`s, one slice per index (compressed sparse rows).
struct Rows {
    start: Vec<u32>,
    items: Vec<u32>,
}

impl Rows {
    /// Builds `rows` rows from the `(row, item)` pairs `each` yields; it is called twice (to count,
    /// then to fill), and must yield the same pairs both times. Items keep their order.
    fn new(rows: usize, each: impl Fn(&mut dyn FnMut(usize, u32))) -> Self {
        let mut start = vec![0u32; rows + 1];
        each(&mut |r, _| start[r + 1] += 1);
        for r in 0..rows {
            start[r + 1] += start[r];
        }
        let mut next: Vec<u32> = start[..rows].to_vec();
        let mut items = vec![0u32; start[rows] as usize];
        each(&mut |r, item| {
            items[next[r] as usize] = item;
            next[r] += 1;
        });
        Rows { start, items }
    }

    fn row(&self, r: usize) -> &[u32] {
        &self.items[self.start[r] as usize..self.start[r + 1] as usize]
    }

    fn bytes(&self) -> usize {
        (self.start.capacity() + self.items.capacity()) * size_of::<u32>()
    }
}

/// A target of a key: `position * 2 + role`.
const READER: u32 = 0;
const WRITER: u32 = 1;

const NONE: u32 = u32::MAX;

impl Conflicts {
    /// Finds every concurrent pair the checks report (see the module doc).
    pub fn new(flow: &DataFlow<'_>) -> Self {
        Self::with_peak(flow).0
    }

    /// [`Conflicts::new`], and the most bytes its working structures held at once (a deterministic
    /// figure, for tests of its memory).
    pub fn with_peak(flow: &DataFlow<'_>) -> (Self, usize) {
        let n = flow.order.len();
        let keys = flow.writers.len();
        let mut pos = vec![0u32; n];
        for (p, &v) in flow.order.iter().enumerate() {
            pos[v] = p as u32;
        }
        let mut readers = vec![0u32; keys];
        for read in flow.reads {
            for &k in read {
                readers[k] += 1;
            }
        }
        let relevant: Vec<bool> = (0..keys)
            .map(|k| {
                let ws = flow.writers[k].len();
                ws > 0 && (readers[k] > 0 || (flow.replace[k] && ws > 1))
            })
            .collect();
        drop(readers);
        // Per key, its targets; per position, the relevant keys the node there writes.
        let targets = Rows::new(keys, |push| {
            for (v, read) in flow.reads.iter().enumerate() {
                for &k in read {
                    if relevant[k] {
                        push(k, pos[v] * 2 + READER);
                    }
                }
            }
            for (k, ws) in flow.writers.iter().enumerate() {
                if relevant[k] && flow.replace[k] {
                    for &w in ws {
                        push(k, pos[w] * 2 + WRITER);
                    }
                }
            }
        });
        let written = Rows::new(n, |push| {
            for (k, ws) in flow.writers.iter().enumerate() {
                if relevant[k] {
                    for &w in ws {
                        push(pos[w] as usize, k as u32);
                    }
                }
            }
        });
        let sources: Vec<u32> = (0..n as u32)
            .filter(|&p| !written.row(p as usize).is_empty())
            .collect();
        let mut found = Conflicts::default();
        if sources.is_empty() {
            let peak = pos.capacity() * 4 + targets.bytes() + written.bytes() + keys;
            return (found, peak);
        }
        let preds = Rows::new(n, |push| {
            for (v, needs) in flow.needs.iter().enumerate() {
                for &u in needs {
                    push(pos[v] as usize, pos[u]);
                }
            }
        });
        let succs = Rows::new(n, |push| {
            for (v, needs) in flow.needs.iter().enumerate() {
                for &u in needs {
                    push(pos[u] as usize, pos[v]);
                }
            }
        });
        let words = sources.len().div_ceil(64).min(WORDS);
        let mut sweep = Sweep {
            words,
            up: vec![0u64; n * words],
            down: vec![0u64; n * words],
            bit: vec![NONE; n],
        };
        let mut slot = vec![NONE; keys];
        let mut touched: Vec<u32> = Vec::new();
        let mut masks: Vec<u64> = Vec::new();
        for batch in sources.chunks(words * 64) {
            for (j, &s) in batch.iter().enumerate() {
                sweep.bit[s as usize] = j as u32;
                for &k in written.row(s as usize) {
                    let k = k as usize;
                    if slot[k] == NONE {
                        slot[k] = touched.len() as u32;
                        touched.push(k as u32);
                        masks.extend(std::iter::repeat_n(0, words));
                    }
                    masks[slot[k] as usize * words + j / 64] |= 1 << (j % 64);
                }
            }
            let (first, last) = (batch[0] as usize, batch[batch.len() - 1] as usize);
            let (mut lo, mut hi) = (usize::MAX, 0);
            for &k in &touched {
                for &t in targets.row(k as usize) {
                    let p = (t / 2) as usize;
                    lo = lo.min(p);
                    hi = hi.max(p);
                }
            }
            sweep.forward(&preds, first, hi);
            sweep.backward(&succs, lo, last);
            for (s, &k) in touched.iter().enumerate() {
                let mask = &masks[s * words..(s + 1) * words];
                for &t in targets.row(k as usize) {
                    let p = (t / 2) as usize;
                    for (i, &m) in mask.iter().enumerate() {
                        let mut concurrent = m;
                        if p >= first {
                            concurrent &= !sweep.up[p * words + i];
                        }
                        if p <= last {
                            concurrent &= !sweep.down[p * words + i];
                        }
                        while concurrent != 0 {
                            let j = i * 64 + concurrent.trailing_zeros() as usize;
                            concurrent &= concurrent - 1;
                            let w = flow.order[batch[j] as usize] as u32;
                            let v = flow.order[p] as u32;
                            if t % 2 == READER {
                                found.reads.push((v, k, w));
                            } else if w < v {
                                // The pair is found from both sides: keep it once.
                                found.replace.push((k, w, v));
                            }
                        }
                    }
                }
            }
            for &s in batch {
                sweep.bit[s as usize] = NONE;
            }
            for &k in &touched {
                slot[k as usize] = NONE;
            }
            touched.clear();
            masks.clear();
        }
        let peak = pos.capacity() * 4
            + keys
            + targets.bytes()
            + written.bytes()
            + sources.capacity() * 4
            + preds.bytes()
            + succs.bytes()
            + sweep.bytes()
            + slot.capacity() * 4
            + touched.capacity() * 4
            + masks.capacity() * 8
            + (found.reads.capacity() + found.replace.capacity()) * 12;
        found.reads.sort_unstable();
        found.reads.dedup();
        found.replace.sort_unstable();
        found.replace.dedup();
        (found, peak)
    }

    /// The writers of `key` that may run concurrently with `reader`, which reads it, in file
    /// order.
    pub fn readers(&self, reader: usize, key: usize) -> impl Iterator<Item = usize> + '_ {
        let at = (reader as u32, key as u32);
        let from = self.reads.partition_point(|&(r, k, _)| (r, k) < at);
        self.reads[from..]
            .iter()
            .take_while(move |&&(r, k, _)| (r, k) == at)
            .map(|&(_, _, w)| w as usize)
    }

    /// Every pair `(key, a, b)` of writers of a `replace` key that may run concurrently, by key,
    /// then `a`, then `b` (file positions, `a < b`).
    pub fn replace(&self) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
        self.replace
            .iter()
            .map(|&(k, a, b)| (k as usize, a as usize, b as usize))
    }
}

/// One batch's sets, a row of `words` words per position: `up[p]` holds the sources upstream of
/// the node at position `p` (itself included), `down[p]` those downstream of it.
struct Sweep {
    words: usize,
    up: Vec<u64>,
    down: Vec<u64>,
    /// Per position, the bit of the source there in this batch, or `NONE`.
    bit: Vec<u32>,
}

impl Sweep {
    /// Fills `up` over positions `first..=to`, `first` being the batch's first source: positions
    /// before it hold no source of the batch and are read as empty.
    fn forward(&mut self, preds: &Rows, first: usize, to: usize) {
        let w = self.words;
        for p in first..=to {
            let (done, rest) = self.up.split_at_mut(p * w);
            let row = &mut rest[..w];
            row.fill(0);
            let b = self.bit[p];
            if b != NONE {
                row[b as usize / 64] |= 1 << (b % 64);
            }
            for &q in preds.row(p) {
                let q = q as usize;
                if q >= first {
                    for (x, y) in row.iter_mut().zip(&done[q * w..(q + 1) * w]) {
                        *x |= y;
                    }
                }
            }
        }
    }

    /// Fills `down` over positions `from..=last` backwards, `last` being the batch's last source:
    /// positions after it hold no source of the batch and are read as empty.
    fn backward(&mut self, succs: &Rows, from: usize, last: usize) {
        let w = self.words;
        for p in (from..=last).rev() {
            let (head, done) = self.down.split_at_mut((p + 1) * w);
            let row = &mut head[p * w..];
            row.fill(0);
            let b = self.bit[p];
            if b != NONE {
                row[b as usize / 64] |= 1 << (b % 64);
            }
            for &q in succs.row(p) {
                let q = q as usize;
                if q <= last {
                    let at = (q - p - 1) * w;
                    for (x, y) in row.iter_mut().zip(&done[at..at + w]) {
                        *x |= y;
                    }
                }
            }
        }
    }

    fn bytes(&self) -> usize {
        (self.up.capacity() + self.down.capacity()) * 8 + self.bit.capacity() * 4
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::{Conflicts, DataFlow};

    /// A random workflow's data flow: `n` nodes whose canonical order is a random permutation of
    /// their file positions, up to three needs each (near or far), `keys` keys each written and
    /// read by random nodes, some of them `replace`.
    struct Case {
        needs: Vec<Vec<usize>>,
        order: Vec<usize>,
        writers: Vec<Vec<usize>>,
        reads: Vec<Vec<usize>>,
        replace: Vec<bool>,
    }

    impl Case {
        fn new(n: usize, keys: usize, density: u64, seed: u64) -> Self {
            let mut s = seed | 1;
            let mut next = move |below: usize| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s % below.max(1) as u64) as usize
            };
            let mut order: Vec<usize> = (0..n).collect();
            for i in (1..n).rev() {
                order.swap(i, next(i + 1));
            }
            let mut needs = vec![Vec::new(); n];
            for p in 1..n {
                for _ in 0..next(4) {
                    let back = if next(2) == 0 {
                        1 + next(4)
                    } else {
                        1 + next(p)
                    };
                    let u = order[p.saturating_sub(back)];
                    if !needs[order[p]].contains(&u) {
                        needs[order[p]].push(u);
                    }
                }
            }
            let mut writers = vec![Vec::new(); keys];
            let mut reads = vec![Vec::new(); n];
            for (v, read) in reads.iter_mut().enumerate() {
                for (k, ws) in writers.iter_mut().enumerate() {
                    if (next(100) as u64) < density {
                        ws.push(v);
                    }
                    if (next(100) as u64) < density {
                        read.push(k);
                    }
                }
            }
            let replace = (0..keys).map(|_| next(2) == 0).collect();
            Case {
                needs,
                order,
                writers,
                reads,
                replace,
            }
        }

        fn flow(&self) -> DataFlow<'_> {
            DataFlow {
                needs: &self.needs,
                order: &self.order,
                writers: &self.writers,
                reads: &self.reads,
                replace: &self.replace,
            }
        }

        /// The old way: the whole ancestry relation, then every pair asked.
        fn naive(&self) -> Conflicts {
            let n = self.order.len();
            let mut upstream = vec![vec![false; n]; n];
            for &v in &self.order {
                for &u in &self.needs[v] {
                    let row = upstream[u].clone();
                    for (x, y) in upstream[v].iter_mut().zip(row) {
                        *x |= y;
                    }
                    upstream[v][u] = true;
                }
            }
            let concurrent = |a: usize, b: usize| a != b && !upstream[a][b] && !upstream[b][a];
            let mut c = Conflicts::default();
            for (v, keys) in self.reads.iter().enumerate() {
                for &k in keys {
                    for &w in &self.writers[k] {
                        if concurrent(v, w) {
                            c.reads.push((v as u32, k as u32, w as u32));
                        }
                    }
                }
            }
            for (k, ws) in self.writers.iter().enumerate() {
                if !self.replace[k] {
                    continue;
                }
                for (i, &a) in ws.iter().enumerate() {
                    for &b in &ws[i + 1..] {
                        if concurrent(a, b) {
                            c.replace.push((k as u32, a as u32, b as u32));
                        }
                    }
                }
            }
            c
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// The sweeps find exactly the pairs the whole ancestry relation finds, on small graphs
        /// (one partial batch) and on graphs with more sources than one batch carries.
        #[test]
        fn sweeps_answer_as_the_whole_ancestry_does(
            n in prop_oneof![1usize..40, 40usize..1_300],
            keys in 1usize..6,
            density in 1u64..60,
            seed in any::<u64>(),
        ) {
            let case = Case::new(n, keys, density, seed);
            prop_assert_eq!(Conflicts::new(&case.flow()), case.naive());
        }
    }

    /// A 100,000-node chain in which every node writes a key of its own, reads its predecessor's,
    /// and appends to one key the last node reads: the working memory is linear (the ancestry
    /// bitsets were 1.25 GB).
    #[test]
    fn memory_is_linear_on_a_long_chain() {
        let n = 100_000;
        let needs: Vec<Vec<usize>> = (0..n)
            .map(|i| if i == 0 { vec![] } else { vec![i - 1] })
            .collect();
        let order: Vec<usize> = (0..n).collect();
        let mut writers: Vec<Vec<usize>> = (0..n).map(|i| vec![i]).collect();
        writers.push((0..n).collect());
        let reads: Vec<Vec<usize>> = (0..n)
            .map(|i| match i {
                0 => vec![],
                i if i == n - 1 => vec![i - 1, n],
                i => vec![i - 1],
            })
            .collect();
        let replace = vec![true; n + 1];
        let flow = DataFlow {
            needs: &needs,
            order: &order,
            writers: &writers,
            reads: &reads,
            replace: &replace,
        };
        let (conflicts, peak) = Conflicts::with_peak(&flow);
        assert_eq!(conflicts, Conflicts::default());
        assert!(peak < 24 << 20, "{peak} bytes");
    }
}
