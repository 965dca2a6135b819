//! What `braid run` and `braid bench` show about a run: live lines, trace, timeline, metrics, logs.

use prometheus_parse::{Scrape, Value as Metric};
use serde_json::Value;

use crate::cli::{braid, text};

#[test]
fn run_writes_trace_timeline_and_prometheus_metrics() {
    let dir = std::env::temp_dir().join(format!("braid-e2e-obs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (trace, html, prom) = (dir.join("t.json"), dir.join("t.html"), dir.join("m.prom"));
    let out = braid(&[
        "run",
        "workflows/mode3-autonomous.yaml",
        "--trace",
        trace.to_str().unwrap(),
        "--timeline",
        html.to_str().unwrap(),
        "--metrics-file",
        prom.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    // Not a terminal: one plain line per event.
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(
            "] code_exec: attempt 1 failed (error: sandbox was not ready); retrying in 0.10s"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("] synthesize: succeeded"), "{stderr}");

    // Chrome trace: one complete event per attempt, one named row per node.
    let trace: Value = serde_json::from_str(&std::fs::read_to_string(&trace).unwrap()).unwrap();
    let events = trace["traceEvents"].as_array().unwrap();
    let complete: Vec<&Value> = events
        .iter()
        .filter(|e| e["ph"] == "X" && e["cat"] == "node")
        .collect();
    assert_eq!(complete.len(), 7, "6 nodes, code_exec twice");
    let code_exec: Vec<&&Value> = complete
        .iter()
        .filter(|e| e["name"].as_str().unwrap().starts_with("code_exec"))
        .collect();
    assert_eq!(code_exec[0]["args"]["outcome"], "error");
    assert_eq!(code_exec[1]["args"]["outcome"], "succeeded");
    assert!(code_exec[1]["ts"].as_u64() > code_exec[0]["ts"].as_u64());

    // HTML Gantt: a row per node, a bar per attempt, the backoff, the critical path marked.
    let html = std::fs::read_to_string(&html).unwrap();
    assert!(html.starts_with("<!doctype html>"));
    assert_eq!(html.matches("data-node=\"").count(), 6);
    assert_eq!(html.matches("data-attempt=\"").count(), 7);
    assert_eq!(html.matches("class=\"bar backoff\"").count(), 1);
    assert_eq!(html.matches("class=\"label crit\"").count(), 4);
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "self-contained"
    );

    // Prometheus exposition text, parsed as a scraper would.
    let text = std::fs::read_to_string(&prom).unwrap();
    let scrape =
        Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("valid exposition format");
    let find = |name: &'static str| scrape.samples.iter().filter(move |s| s.metric == name);
    // Every node and failure type has its series from the start, at 0 until it happens.
    let failures: Vec<_> = find("parallel_task_failures_total").collect();
    assert_eq!(failures.len(), 6 * 5, "a series per node and failure type");
    for f in &failures {
        let counted = match f.value {
            Metric::Counter(c) => c,
            ref other => panic!("{other:?}"),
        };
        let expected = if f.labels.get("task_name") == Some("code_exec")
            && f.labels.get("failure_type") == Some("error")
        {
            1.0
        } else {
            0.0
        };
        assert_eq!(counted, expected, "{:?}", f.labels);
    }
    let runs: Vec<_> = find("braid_runs_total").collect();
    assert_eq!(runs.len(), 4, "succeeded, degraded, failed, waiting");
    let histogram = find("parallel_execution_duration_ms")
        .next()
        .expect("the origin document's histogram");
    let Metric::Histogram(buckets) = &histogram.value else {
        panic!("{:?}", histogram.value)
    };
    let bounds: Vec<f64> = buckets
        .iter()
        .map(|b| b.less_than)
        .filter(|b| b.is_finite())
        .collect();
    assert_eq!(bounds, [100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0]);
    let speedup = find("parallel_speedup_ratio")
        .next()
        .expect("speedup gauge");
    assert!(matches!(speedup.value, Metric::Gauge(g) if g > 1.2));
    for name in [
        "braid_runs_total",
        "braid_run_duration_ms",
        "braid_node_duration_ms",
        "braid_node_attempts_total",
        "braid_nodes_in_flight",
    ] {
        assert!(find(name).next().is_some(), "missing {name}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bench_reports_percentiles_speedup_and_the_critical_path() {
    let out = braid(&[
        "bench",
        "workflows/mode1-manual.yaml",
        "-n",
        "30",
        "--simulate",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["runs"], 30);
    assert_eq!(doc["parallel"]["p50_ms"], 2650.0);
    assert_eq!(doc["parallel"]["p99_ms"], 2650.0);
    assert_eq!(doc["sequential"]["p50_ms"], 3300.0);
    assert!((doc["saved_percent_p50"].as_f64().unwrap() - 19.6969).abs() < 0.01);
    assert_eq!(
        doc["critical_path"]["nodes"],
        serde_json::json!(["rag", "llm", "citations"])
    );
    let llm = doc["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "llm")
        .unwrap();
    assert_eq!(llm["p95_ms"], 2000.0);
    assert_eq!(llm["failure_rate"], 0.0);

    let out = braid(&[
        "bench",
        "workflows/mode1-manual.yaml",
        "-n",
        "5",
        "--simulate",
    ]);
    let table = text(&out.stdout);
    assert!(
        table.contains("speedup 1.25x at p50: parallel saves 19.7% of the sequential time"),
        "{table}"
    );
    assert!(
        table.contains("critical path: rag -> llm -> citations (in 5 of 5 runs)"),
        "{table}"
    );
}

#[test]
fn json_logs_carry_the_run_span() {
    let out = braid(&[
        "--log-format",
        "json",
        "-v",
        "run",
        "--quiet",
        "tests/workflows/degrades.yaml",
    ]);
    assert_eq!(out.status.code(), Some(4));
    let stderr = text(&out.stderr);
    let finished = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["fields"]["message"] == "run finished")
        .unwrap_or_else(|| panic!("no `run finished` log line in {stderr}"));
    assert_eq!(finished["fields"]["status"], "degraded");
    assert_eq!(finished["span"]["workflow"], "degrades");
}
