//! The workloads, defined once. Every runner builds its graph from a [`Workload`]: Braid from the
//! YAML [`Workload::to_yaml`] writes, LangGraph from the JSON [`Workload::to_json`] writes (the
//! Python runner reads it), the floor, dagx and dagrs from the struct itself.

use std::fmt::Write as _;

use serde_json::{Value, json};

/// How a state key folds contributions (Braid's reducer names; LangGraph gets the equivalent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reducer {
    Replace,
    Append,
    Merge,
    Sum,
}

impl Reducer {
    pub fn name(self) -> &'static str {
        match self {
            Reducer::Replace => "replace",
            Reducer::Append => "append",
            Reducer::Merge => "merge",
            Reducer::Sum => "sum",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Key {
    pub name: String,
    pub reducer: Reducer,
    pub default: Option<Value>,
}

#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    /// Simulated latency (an async sleep); zero: the node returns at once.
    pub latency_ms: u64,
    /// Indices of the nodes this one needs (all earlier in `nodes`).
    pub needs: Vec<usize>,
    /// The update the node returns: key -> value.
    pub output: Vec<(String, Value)>,
    /// The memory workload's blocking node: counts itself in flight, then sleeps "forever".
    pub probe: bool,
}

#[derive(Debug, Clone)]
pub struct Workload {
    pub name: String,
    pub keys: Vec<Key>,
    pub nodes: Vec<Node>,
}

fn node(name: impl Into<String>, latency_ms: u64, needs: Vec<usize>) -> Node {
    Node { name: name.into(), latency_ms, needs, output: Vec::new(), probe: false }
}

fn key(name: &str, reducer: Reducer, default: Option<Value>) -> Key {
    Key { name: name.to_owned(), reducer, default }
}

impl Workload {
    /// Mode 1 (`workflows/mode1-manual.yaml`): rag 500 ‖ tools 300 ‖ memory 200 -> llm 2000 ->
    /// quality 100 ‖ citations 150 ‖ cost_tracking 50, with its state keys and reducers and
    /// static outputs (no templates: no peer renders any). `latency: false` zeroes every latency.
    pub fn mode1(latency: bool) -> Workload {
        let l = |ms: u64| if latency { ms } else { 0 };
        let keys = vec![
            key("rag_results", Reducer::Replace, Some(json!([]))),
            key("suggested_tools", Reducer::Replace, Some(json!([]))),
            key("memory", Reducer::Merge, Some(json!({}))),
            key("response", Reducer::Replace, None),
            key("quality_score", Reducer::Replace, None),
            key("citations", Reducer::Append, Some(json!([]))),
            key("cost_usd", Reducer::Sum, Some(json!(0))),
            key("cost_report", Reducer::Replace, None),
        ];
        let mut nodes = vec![
            node("rag", l(500), vec![]),
            node("tools", l(300), vec![]),
            node("memory", l(200), vec![]),
            node("llm", l(2000), vec![0, 1, 2]),
            node("quality", l(100), vec![3]),
            node("citations", l(150), vec![3]),
            node("cost_tracking", l(50), vec![3]),
        ];
        let out = |v: &[(&str, Value)]| v.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect::<Vec<_>>();
        nodes[0].output = out(&[(
            "rag_results",
            json!([{ "doc": "key-rotation-guide.pdf", "score": 0.91 }, { "doc": "security-faq.md", "score": 0.84 }]),
        )]);
        nodes[1].output = out(&[("suggested_tools", json!(["secrets_manager", "audit_log"]))]);
        nodes[2].output = out(&[("memory", json!({ "user": "user-42", "preferences": { "tone": "concise" } }))]);
        nodes[3].output = out(&[
            ("response", json!("Answer to 'How do I rotate my API keys?' from 2 documents and 2 tools, for user-42.")),
            ("cost_usd", json!(0.002)),
        ]);
        nodes[4].output = out(&[("quality_score", json!(0.87))]);
        nodes[5].output = out(&[("citations", json!(["key-rotation-guide.pdf", "security-faq.md"]))]);
        nodes[6].output = out(&[("cost_report", json!({ "total_usd": 0.002, "model": "mock-llm" }))]);
        Workload { name: if latency { "mode1" } else { "mode1-zero" }.to_owned(), keys, nodes }
    }

    /// Mode 1 with zero latencies except `rag`, which blocks until the process exits: 10,000 of
    /// these are held in flight at once to measure memory per run.
    pub fn mode1_blocked() -> Workload {
        let mut w = Workload::mode1(false);
        w.name = "mode1-blocked".to_owned();
        w.nodes[0].probe = true;
        w
    }

    /// A 100 ms -> C 100 ms; B 300 ms; B and C -> D. Ready-set ideal 300 ms, supersteps 400 ms.
    pub fn straggler() -> Workload {
        Workload {
            name: "straggler".to_owned(),
            keys: Vec::new(),
            nodes: vec![node("a", 100, vec![]), node("b", 300, vec![]), node("c", 100, vec![0]), node("d", 0, vec![1, 2])],
        }
    }

    /// `n` no-op nodes in a chain (same shape as `crates/bench`'s `chain`).
    pub fn chain(n: usize) -> Workload {
        let nodes = (0..n).map(|i| node(format!("n{i}"), 0, if i == 0 { vec![] } else { vec![i - 1] })).collect();
        Workload { name: "chain".to_owned(), keys: Vec::new(), nodes }
    }

    /// `n` no-op nodes in all: `src`, `n - 2` branches needing it, one `join` needing every
    /// branch (same shape as `crates/bench`'s `fan_out`).
    pub fn fan_out(n: usize) -> Workload {
        let mut nodes = vec![node("src", 0, vec![])];
        nodes.extend((0..n - 2).map(|i| node(format!("b{i}"), 0, vec![0])));
        nodes.push(node("join", 0, (1..n - 1).collect()));
        Workload { name: "fan-out".to_owned(), keys: Vec::new(), nodes }
    }

    /// `layers` layers of `width` no-op nodes; node i of a layer needs nodes i and i+1 (mod
    /// width) of the layer before (same shape as `crates/bench`'s `layered`).
    pub fn layered(layers: usize, width: usize) -> Workload {
        let mut nodes = Vec::with_capacity(layers * width);
        for l in 0..layers {
            for i in 0..width {
                let needs = if l == 0 { vec![] } else { vec![(l - 1) * width + i, (l - 1) * width + (i + 1) % width] };
                nodes.push(node(format!("l{l}_{i}"), 0, needs));
            }
        }
        Workload { name: "layered".to_owned(), keys: Vec::new(), nodes }
    }

    /// `n` independent nodes of `latency_ms` each, all ready at once (issue 16, item 22: 10,000
    /// parallel 10 ms nodes).
    pub fn parallel(n: usize, latency_ms: u64) -> Workload {
        let nodes = (0..n).map(|i| node(format!("p{i}"), latency_ms, vec![])).collect();
        Workload { name: "parallel".to_owned(), keys: Vec::new(), nodes }
    }

    /// A random DAG of `n` nodes of `latency_ms` each (issue 16, item 23: 2,000 nodes of 1 ms):
    /// node i needs up to 3 distinct nodes among the 40 before it (none for about one node in
    /// eight), drawn from a fixed-seed generator, so every runner and every run gets the same
    /// graph.
    pub fn random(n: usize, latency_ms: u64) -> Workload {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            // xorshift64*
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            x.wrapping_mul(0x2545_f491_4f6c_dd1d)
        };
        let mut nodes = Vec::with_capacity(n);
        for i in 0..n {
            let mut needs = Vec::new();
            if i > 0 && next() % 8 != 0 {
                let k = 1 + (next() % 3) as usize;
                for _ in 0..k {
                    let back = 1 + (next() % 40) as usize;
                    let d = i.saturating_sub(back);
                    if !needs.contains(&d) {
                        needs.push(d);
                    }
                }
                needs.sort_unstable();
            }
            nodes.push(node(format!("r{i}"), latency_ms, needs));
        }
        Workload { name: "random".to_owned(), keys: Vec::new(), nodes }
    }

    /// Braid's YAML for this workload: every node the registered kind `bench_node` (the node code
    /// every runner shares, `crate::node_body`), its latency, blocking flag and output under
    /// `with:`.
    pub fn to_yaml(&self) -> String {
        let mut out = String::with_capacity(self.nodes.len() * 64);
        self.yaml_head(&mut out);
        for n in &self.nodes {
            self.yaml_node(&mut out, n, "bench_node");
            // Defaults (no latency, no output, not blocking) are left out, as a user would.
            let mut with = Vec::new();
            if n.latency_ms > 0 {
                with.push(format!("latency_ms: {}", n.latency_ms));
            }
            if n.probe {
                with.push("probe: true".to_owned());
            }
            if !n.output.is_empty() {
                with.push(format!("output: {}", self.output_json(n)));
            }
            if !with.is_empty() {
                let _ = writeln!(out, "    with: {{ {} }}", with.join(", "));
            }
        }
        out
    }

    /// Braid's YAML as a user writes it without code: `noop` for latency-free nodes without
    /// output, `mock` for the others (which aims its sleep 0.9 ms early), the registered
    /// `probe_sleep` handler for the blocking node.
    pub fn to_yaml_builtin(&self) -> String {
        let mut out = String::with_capacity(self.nodes.len() * 48);
        self.yaml_head(&mut out);
        for n in &self.nodes {
            let kind = if n.probe {
                "probe_sleep"
            } else if n.latency_ms == 0 && n.output.is_empty() {
                "noop"
            } else {
                "mock"
            };
            self.yaml_node(&mut out, n, kind);
            if kind == "mock" {
                let mut with = Vec::new();
                if n.latency_ms > 0 {
                    with.push(format!("latency: {}ms", n.latency_ms));
                }
                if !n.output.is_empty() {
                    with.push(format!("output: {}", self.output_json(n)));
                }
                let _ = writeln!(out, "    with: {{ {} }}", with.join(", "));
            }
        }
        out
    }

    fn yaml_head(&self, out: &mut String) {
        let _ = writeln!(out, "version: 1\nname: {}", self.name);
        if !self.keys.is_empty() {
            out.push_str("state:\n");
            for k in &self.keys {
                let _ = write!(out, "  {}: {{ reducer: {}", k.name, k.reducer.name());
                if let Some(d) = &k.default {
                    let _ = write!(out, ", default: {d}");
                }
                out.push_str(" }\n");
            }
        }
        out.push_str("nodes:\n");
    }

    fn yaml_node(&self, out: &mut String, n: &Node, kind: &str) {
        let _ = write!(out, "  {}:\n    kind: {kind}\n", n.name);
        if !n.needs.is_empty() {
            let needs: Vec<&str> = n.needs.iter().map(|&i| self.nodes[i].name.as_str()).collect();
            let _ = writeln!(out, "    needs: [{}]", needs.join(", "));
        }
        if !n.output.is_empty() {
            let writes: Vec<&str> = n.output.iter().map(|(k, _)| k.as_str()).collect();
            let _ = writeln!(out, "    writes: [{}]", writes.join(", "));
        }
    }

    /// A node's output as one JSON object (JSON is YAML; `{{` never appears in these values, so
    /// nothing is a template).
    fn output_json(&self, n: &Node) -> Value {
        Value::Object(n.output.iter().cloned().collect())
    }

    /// The workload as JSON, for the LangGraph runner.
    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "keys": self.keys.iter().map(|k| json!({ "name": k.name, "reducer": k.reducer.name(), "default": k.default })).collect::<Vec<_>>(),
            "nodes": self.nodes.iter().map(|n| json!({
                "name": n.name,
                "latency_ms": n.latency_ms,
                "needs": n.needs,
                "output": n.output.iter().cloned().collect::<serde_json::Map<String, Value>>(),
                "probe": n.probe,
            })).collect::<Vec<_>>(),
        })
    }

    /// The longest latency path (the ready-set ideal makespan), in milliseconds.
    pub fn critical_path_ms(&self) -> u64 {
        let mut finish = vec![0u64; self.nodes.len()];
        for (i, n) in self.nodes.iter().enumerate() {
            finish[i] = n.needs.iter().map(|&d| finish[d]).max().unwrap_or(0) + n.latency_ms;
        }
        finish.into_iter().max().unwrap_or(0)
    }

    /// Every node's dependents (the reverse of `needs`).
    pub fn dependents(&self) -> Vec<Vec<usize>> {
        let mut out = vec![Vec::new(); self.nodes.len()];
        for (i, n) in self.nodes.iter().enumerate() {
            for &d in &n.needs {
                out[d].push(i);
            }
        }
        out
    }

    pub fn by_name(name: &str) -> Option<Workload> {
        let n = 10_000;
        Some(match name {
            "mode1" => Workload::mode1(true),
            "mode1-zero" => Workload::mode1(false),
            "mode1-blocked" => Workload::mode1_blocked(),
            "straggler" => Workload::straggler(),
            "chain" => Workload::chain(n),
            "fan-out" => Workload::fan_out(n),
            "layered" => Workload::layered(n / 100, 100),
            "parallel" => Workload::parallel(n, 10),
            "random" => Workload::random(2_000, 1),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every runner runs the same node code (issue 16, item 23): Braid's YAML names no kind but
    /// the registered `bench_node`, whose body is `node_body`, as the floor's and the peers' are.
    #[test]
    fn braid_runs_the_shared_node_code_everywhere() {
        for name in ["mode1", "mode1-zero", "mode1-blocked", "straggler", "parallel", "random", "chain", "fan-out", "layered"] {
            let yaml = Workload::by_name(name).expect("a workload").to_yaml();
            let kinds: Vec<&str> = yaml.lines().filter_map(|l| l.trim().strip_prefix("kind: ")).collect();
            assert!(!kinds.is_empty(), "{name}");
            assert!(kinds.iter().all(|k| *k == "bench_node"), "{name}: {kinds:?}");
        }
    }

    #[test]
    fn ideals() {
        assert_eq!(Workload::mode1(true).critical_path_ms(), 2650);
        assert_eq!(Workload::straggler().critical_path_ms(), 300);
        assert_eq!(Workload::chain(10).nodes.len(), 10);
        assert_eq!(Workload::fan_out(10_000).nodes.len(), 10_000);
        assert_eq!(Workload::layered(100, 100).nodes.len(), 10_000);
        assert_eq!(Workload::parallel(10_000, 10).critical_path_ms(), 10);
        let r = Workload::random(2_000, 1);
        assert!(r.nodes.iter().enumerate().all(|(i, n)| n.needs.iter().all(|&d| d < i)));
        assert!(r.critical_path_ms() > 100, "a deep graph: {}", r.critical_path_ms());
    }
}
