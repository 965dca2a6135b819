//! The `braid` command as a user runs it: exit codes, output formats, files in the repository.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub(crate) fn braid(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_braid"))
        .args(args)
        .current_dir(root())
        .env("NO_COLOR", "1")
        .output()
        .expect("the braid binary runs")
}

pub(crate) fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn every_example_workflow_is_valid() {
    let out = braid(&["validate", "workflows/"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("no problems in 6 files"), "{stderr}");
}

#[test]
fn every_example_workflow_declares_the_schema_for_editors() {
    for entry in std::fs::read_dir(root().join("workflows")).unwrap() {
        let path = entry.unwrap().path();
        let first = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned();
        assert_eq!(
            first,
            "# yaml-language-server: $schema=../schemas/workflow.schema.json",
            "{}",
            path.display()
        );
    }
}

#[test]
fn invalid_files_exit_1_with_located_diagnostics() {
    let out = braid(&[
        "validate",
        "tests/workflows/fails.yaml",
        "tests/fixtures/invalid/",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("tests/workflows/fails.yaml: ok"),
        "{stderr}"
    );
    assert!(stderr.contains("error["), "{stderr}");
    assert!(stderr.contains(" --> tests/fixtures/invalid/"), "{stderr}");
}

#[test]
fn files_that_crashed_the_compiler_get_diagnostics_not_a_panic() {
    let out = braid(&["validate", "tests/fixtures/fuzz/"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("error[expression-syntax]: node `n`'s `when` does not compile"),
        "{stderr}"
    );
    assert!(
        stderr.contains(" --> tests/fixtures/fuzz/when-extra-closing-braces.yaml:11:13"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    // `run` and `graph` load through the facade: the same diagnostic, nothing ran.
    for command in ["run", "graph"] {
        let out = braid(&[
            command,
            "tests/fixtures/fuzz/when-extra-closing-braces.yaml",
        ]);
        assert_eq!(
            out.status.code(),
            Some(3),
            "{command}: {}",
            text(&out.stderr)
        );
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("error[expression-syntax]"),
            "{command}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{command}: {stderr}");
    }
}

#[test]
fn github_format_annotates_each_problem() {
    let out = braid(&["validate", "--format", "github", "tests/fixtures/invalid/"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines.len() >= 25, "{stdout}");
    for line in lines {
        assert!(
            line.starts_with("::error file=tests/fixtures/invalid/")
                || line.starts_with("::warning file="),
            "{line}"
        );
        assert!(
            line.contains(",line=") && line.contains(",col=") && line.contains("::"),
            "{line}"
        );
    }
}

#[test]
fn json_format_is_one_document_for_tools() {
    let out = braid(&[
        "validate",
        "--format",
        "json",
        "tests/fixtures/invalid/",
        "workflows/",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let doc: Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    assert!(doc["errors"].as_u64().unwrap() >= 25);
    let first = &doc["diagnostics"][0];
    for field in [
        "file", "line", "column", "code", "severity", "message", "labels",
    ] {
        assert!(first.get(field).is_some(), "missing `{field}` in {first}");
    }
}

#[test]
fn usage_and_io_errors_exit_2() {
    assert_eq!(
        braid(&["validate", "no/such/file.yaml"]).status.code(),
        Some(2)
    );
    assert_eq!(braid(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(
        braid(&["run", "workflows/mode1-manual.yaml", "--input", "nonsense"])
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn schema_command_prints_the_committed_schema() {
    let out = braid(&["schema"]);
    assert_eq!(out.status.code(), Some(0));
    let committed = std::fs::read_to_string(root().join("schemas/workflow.schema.json")).unwrap();
    assert!(
        text(&out.stdout) == committed,
        "schemas/workflow.schema.json is stale: run `cargo run -p braid-cli -- schema > schemas/workflow.schema.json`"
    );
}

#[test]
fn graph_renders_mermaid_and_dot() {
    let out = braid(&["graph", "workflows/mode1-manual.yaml"]);
    assert_eq!(out.status.code(), Some(0));
    let mermaid = text(&out.stdout);
    assert!(mermaid.starts_with("flowchart TD\n"), "{mermaid}");
    assert_eq!(mermaid.matches(" --> ").count(), 6, "{mermaid}");
    assert!(
        mermaid.contains("class n0,n1 conditional"),
        "rag and tools are conditional: {mermaid}"
    );
    let out = braid(&["graph", "--format", "dot", "workflows/mode1-manual.yaml"]);
    let dot = text(&out.stdout);
    assert!(dot.contains("\"rag\" -> \"llm\";"), "{dot}");
    assert!(dot.contains("when: inputs.enable_rag"), "{dot}");
}

#[test]
fn run_prints_state_on_stdout_and_summary_on_stderr() {
    let report = std::env::temp_dir().join(format!("braid-e2e-report-{}.json", std::process::id()));
    let out = braid(&[
        "run",
        "workflows/mode1-manual.yaml",
        "--input",
        "enable_rag=false",
        "--input",
        "query=what is braid?",
        "--report",
        report.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let state: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(state["rag_results"], serde_json::json!([]));
    assert!(
        state["response"]
            .as_str()
            .unwrap()
            .contains("what is braid?")
    );
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("mode1-manual succeeded (parallel)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("critical path: tools -> llm -> citations"),
        "{stderr}"
    );
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(report["status"], "succeeded");
    assert_eq!(report["nodes"].as_array().unwrap().len(), 7);
    assert_eq!(report["nodes"][0]["name"], "rag");
    assert_eq!(report["nodes"][0]["status"], "skipped");
}

#[test]
fn run_exit_codes_tell_degraded_failed_and_invalid_apart() {
    let out = braid(&["run", "tests/workflows/degrades.yaml"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    let state: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(state["answer"], "0 documents");

    let out = braid(&["run", "tests/workflows/fails.yaml", "--input", "n=7"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let state: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        state["done"],
        serde_json::json!(["first 7"]),
        "completed results are kept"
    );
    assert!(text(&out.stderr).contains("node `broken` failed (error): the service said no"));

    let out = braid(&["run", "tests/workflows/fails.yaml"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stderr).contains("missing input `n`"),
        "{}",
        text(&out.stderr)
    );

    let out = braid(&["run", "tests/workflows/fails.yaml", "--input", "n=seven"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stderr).contains("input `n` must be of type `integer`"),
        "{}",
        text(&out.stderr)
    );

    let out = braid(&["run", "tests/fixtures/invalid/cycle-two-nodes.yaml"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stderr).contains("error[cycle]"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_run_that_reaches_a_wait_node_exits_5_and_says_what_it_waits_for() {
    let dir = std::env::temp_dir().join(format!("braid-e2e-wait-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (report, html, trace, prom) = (
        dir.join("r.json"),
        dir.join("t.html"),
        dir.join("t.json"),
        dir.join("m.prom"),
    );
    let out = braid(&[
        "run",
        "workflows/approval.yaml",
        "--report",
        report.to_str().unwrap(),
        "--timeline",
        html.to_str().unwrap(),
        "--trace",
        trace.to_str().unwrap(),
        "--metrics-file",
        prom.to_str().unwrap(),
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    // The state so far: what ran before and beside the wait, nothing after it.
    let state: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(state["draft"], "A short post about braids.");
    assert_eq!(state["tags"], serde_json::json!(["braids", "howto"]));
    assert_eq!(state["approval"], Value::Null);
    assert_eq!(state["published"], Value::Null);
    assert!(stderr.contains("] approve: waiting\n"), "{stderr}");
    assert!(
        stderr.contains("approval waiting (parallel) after "),
        "{stderr}"
    );
    assert!(stderr.contains("  approve  waiting "), "{stderr}");
    assert!(stderr.contains("  publish  not_started "), "{stderr}");
    assert!(
        stderr.contains(
            "waiting for an answer:\n  approve: Publish this post? A short post about braids.\n"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("run it with `--store` to resume it later"),
        "{stderr}"
    );

    let report: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(report["status"], "waiting");
    assert!(report.get("error").is_none(), "{report}");
    let approve = report["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "approve")
        .unwrap();
    assert_eq!(approve["status"], "waiting");
    assert_eq!(
        approve["prompt"],
        "Publish this post? A short post about braids."
    );

    // The timeline and the trace show the waiting node as such, with what it asks.
    let html = std::fs::read_to_string(&html).unwrap();
    assert_eq!(html.matches("class=\"waiting\"").count(), 1, "{html}");
    assert!(html.contains("asks: Publish this post?"), "{html}");
    let trace: Value = serde_json::from_str(&std::fs::read_to_string(&trace).unwrap()).unwrap();
    let waiting: Vec<&Value> = trace["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["name"] == "approve (waiting)")
        .collect();
    assert_eq!(waiting.len(), 1);
    assert_eq!(
        waiting[0]["args"]["prompt"],
        "Publish this post? A short post about braids."
    );

    // Waiting is not a failure: no failure counted, the run counted as waiting.
    let text = std::fs::read_to_string(&prom).unwrap();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("valid exposition format");
    for s in &scrape.samples {
        let value = match s.value {
            prometheus_parse::Value::Counter(c) => c,
            _ => continue,
        };
        if s.metric == "parallel_task_failures_total" {
            assert_eq!(value, 0.0, "{:?}", s.labels);
        }
        if s.metric == "braid_runs_total" {
            let expected = if s.labels.get("status") == Some("waiting") {
                1.0
            } else {
                0.0
            };
            assert_eq!(value, expected, "{:?}", s.labels);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn ctrl_c_cancels_the_run_and_still_writes_state_and_report() {
    let report =
        std::env::temp_dir().join(format!("braid-e2e-interrupt-{}.json", std::process::id()));
    let child = Command::new(env!("CARGO_BIN_EXE_braid"))
        .args([
            "run",
            "workflows/mode1-manual.yaml",
            "--quiet",
            "--report",
            report.to_str().unwrap(),
        ])
        .current_dir(root())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // rag, tools and memory finish within 500 ms; llm is running until 2.5 s.
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    let state: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        state["suggested_tools"],
        serde_json::json!(["secrets_manager", "audit_log"]),
        "completed results kept"
    );
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(report["error"]["kind"], "cancelled");
    let llm = report["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "llm")
        .unwrap();
    assert_eq!(llm["status"], "cancelled");
}
