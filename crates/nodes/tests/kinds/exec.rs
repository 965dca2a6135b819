//! `exec`: real processes, real time (a child process does not run on tokio's virtual clock).

use std::path::Path;
use std::time::Duration;

use braid::{NodeStatus, RunStatus};
use serde_json::{Value, json};

use crate::{failure, load, run};

/// Writes a Python script into `dir` and returns its path as a string.
fn script(dir: &Path, name: &str, body: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, body).expect("write the script");
    path.to_str().expect("a UTF-8 temp path").to_owned()
}

/// Whether process `pid` is alive (a zombie waiting to be reaped counts as dead).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => false,
        // The state follows the parenthesised command name: `123 (sleep) S ...`.
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
    }
}

/// Polls, in real time, until `pid` is dead, for at most five seconds.
async fn wait_dead(pid: u32) -> bool {
    for _ in 0..100 {
        if !alive(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Waits for a script to write a pid file, then reads it.
fn read_pid(path: &Path) -> u32 {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("no pid file {}: {e}", path.display()));
    text.trim().parse().expect("a pid")
}

const ECHO: &str = r#"
import json, os, sys
payload = json.load(sys.stdin)
print(json.dumps({"out": {
    "argv": sys.argv[1:],
    "stdin": payload,
    "cwd": os.getcwd(),
    "greeting": os.environ.get("GREETING"),
    "home": os.environ.get("HOME"),
}}))
"#;

#[tokio::test]
async fn a_program_gets_its_input_on_stdin_and_prints_its_update() {
    let dir = tempfile::tempdir().unwrap();
    let echo = script(dir.path(), "echo.py", ECHO);
    let wf = load(
        r#"
version: 1
name: exec-echo
inputs:
  script: { type: string }
  k: { type: integer, default: 3 }
  workdir: { type: string }
state:
  docs: { reducer: replace }
  secret: { reducer: replace }
  out: { reducer: replace }
nodes:
  fetch:
    kind: transform
    writes: [docs, secret]
    with: { output: { docs: ["a.md", "b.md"], secret: "not for exec" } }
  run:
    kind: exec
    needs: [fetch]
    reads: [docs]
    writes: [out]
    with:
      command: [python3, "{{ inputs.script }}", "--k", "{{ inputs.k }}", "{{ state.docs | length }} docs"]
      cwd: "{{ inputs.workdir }}"
      env: { GREETING: "hello {{ inputs.k }}" }
"#,
    );
    let workdir = dir.path().canonicalize().unwrap();
    let r = run(&wf, json!({ "script": echo, "workdir": workdir })).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.report.error);
    let out = &r.state["out"];
    assert_eq!(out["argv"], json!(["--k", "3", "2 docs"]));
    assert_eq!(out["cwd"], json!(workdir));
    assert_eq!(out["greeting"], "hello 3");
    // Braid's environment is inherited by default.
    assert_eq!(out["home"], json!(std::env::var("HOME").ok()));
    let stdin = &out["stdin"];
    assert_eq!(stdin["node"], "run");
    assert_eq!(stdin["attempt"], 1);
    assert_eq!(stdin["inputs"]["k"], 3);
    // The state the node may read, and nothing else.
    assert_eq!(stdin["state"], json!({ "docs": ["a.md", "b.md"] }));
}

#[tokio::test]
async fn inherit_env_false_passes_only_what_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let echo = script(dir.path(), "echo.py", ECHO);
    let wf = load(
        r#"
version: 1
name: exec-env
inputs: { script: { type: string } }
state: { out: { reducer: replace } }
nodes:
  run:
    kind: exec
    writes: [out]
    with:
      command: [python3, "{{ inputs.script }}"]
      inherit_env: false
      pass_env: [PATH]
      env: { GREETING: hi }
"#,
    );
    let r = run(&wf, json!({ "script": echo })).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.report.error);
    assert_eq!(r.state["out"]["greeting"], "hi");
    assert_eq!(r.state["out"]["home"], json!(null));
}

#[tokio::test]
async fn arguments_are_never_shell_interpreted() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("x");
    std::fs::write(&victim, "still here").unwrap();
    let wf = load(
        r#"
version: 1
name: exec-no-shell
inputs: { victim: { type: string } }
state: { out: { reducer: replace } }
nodes:
  run:
    kind: exec
    writes: [out]
    with:
      command:
        - python3
        - -c
        - "import json, sys; print(json.dumps({'out': sys.argv[1:]}))"
        - "; rm -rf {{ inputs.victim }}"
        - "$(touch {{ inputs.victim }}-2)"
        - "$HOME *"
"#,
    );
    let v = victim.to_str().unwrap();
    let r = run(&wf, json!({ "victim": v })).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.report.error);
    assert_eq!(
        r.state["out"],
        json!([
            format!("; rm -rf {v}"),
            format!("$(touch {v}-2)"),
            "$HOME *"
        ])
    );
    assert!(victim.exists());
    assert!(!dir.path().join("x-2").exists());
}

const FAILS: &str = r#"
version: 1
name: exec-fails
inputs: { code: { type: string } }
state: { out: { reducer: replace } }
nodes:
  run:
    kind: exec
    retry: { attempts: 3 }
    writes: [out]
    with:
      command: [python3, -c, "{{ inputs.code }}"]
"#;

#[tokio::test]
async fn a_non_zero_exit_fails_with_the_status_and_the_tail_of_stderr() {
    let wf = load(FAILS);
    let code = "import sys\nfor i in range(50): print(f'line {i}', file=sys.stderr)\nsys.exit(3)";
    let r = run(&wf, json!({ "code": code })).await;
    assert_eq!(r.status, RunStatus::Failed);
    let (kind, message) = failure(&r, "run");
    assert_eq!(kind, "error");
    assert!(message.contains("exited with status 3"), "{message}");
    assert!(
        message.contains("line 30\n") && message.ends_with("line 49"),
        "{message}"
    );
    assert!(
        !message.contains("line 29\n"),
        "only the last 20 lines: {message}"
    );
    // A non-zero exit may be transient: it is retried.
    assert_eq!(r.report.node("run").unwrap().attempts, 3);
}

#[tokio::test]
async fn output_that_is_not_a_json_object_is_invalid_output() {
    let wf = load(FAILS);
    for (code, expect) in [
        ("print('hello')", "not one JSON object"),
        ("print('[1, 2]')", "printed a list"),
        (
            "import sys; print('oops', file=sys.stderr)",
            "printed nothing",
        ),
    ] {
        let r = run(&wf, json!({ "code": code })).await;
        assert_eq!(r.status, RunStatus::Failed, "{code}");
        let (kind, message) = failure(&r, "run");
        assert_eq!(kind, "invalid_output", "{code}");
        assert!(message.contains(expect), "{code}: {message}");
        // Permanent: the same program would print the same thing.
        assert_eq!(r.report.node("run").unwrap().attempts, 1, "{code}");
    }
    let r = run(
        &wf,
        json!({ "code": "import sys; print('oops', file=sys.stderr)" }),
    )
    .await;
    assert!(
        failure(&r, "run")
            .1
            .ends_with("standard error ends with:\noops"),
        "{}",
        failure(&r, "run").1
    );
}

#[tokio::test]
async fn a_program_that_does_not_exist_is_a_permanent_failure() {
    let wf = load(
        r#"
version: 1
name: exec-missing
state: { out: { reducer: replace } }
nodes:
  run:
    kind: exec
    retry: { attempts: 3 }
    writes: [out]
    with: { command: [braid-no-such-program-anywhere, --flag] }
"#,
    );
    let r = run(&wf, json!({})).await;
    assert_eq!(r.status, RunStatus::Failed);
    let (kind, message) = failure(&r, "run");
    assert_eq!(kind, "error");
    assert!(
        message.contains("`braid-no-such-program-anywhere`") && message.contains("not found"),
        "{message}"
    );
    assert_eq!(r.report.node("run").unwrap().attempts, 1);
}

#[tokio::test]
async fn large_input_and_output_do_not_deadlock_and_output_is_capped() {
    // The program writes megabytes to stdout and stderr before it reads its (large) input.
    let wf = load(FAILS);
    let code = "import json, sys\nsys.stderr.write('e' * 3_000_000)\nbig = 'x' * 3_000_000\nsys.stdout.write(json.dumps({'out': len(big)}) + ' ' * 3_000_000)\nn = len(sys.stdin.read())\n";
    let big_input = "y".repeat(2_000_000);
    let wf2 = load(&FAILS.replace(
        "code: { type: string }",
        "code: { type: string }, pad: { type: string }",
    ));
    let r = run(&wf2, json!({ "code": code, "pad": big_input })).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.report.error);
    assert_eq!(r.state["out"], 3_000_000);

    let r = run(
        &wf,
        json!({ "code": "import sys\nsys.stdout.write('x' * (17 << 20))" }),
    )
    .await;
    let (kind, message) = failure(&r, "run");
    assert_eq!(kind, "invalid_output");
    assert!(message.contains("more than 16 MiB"), "{message}");
}

/// A script that starts a grandchild `sleep 60` in its process group, writes the grandchild's pid,
/// then hangs.
const SPAWNS_AND_HANGS: &str = r#"
import subprocess, sys, time
child = subprocess.Popen(["sleep", "60"])
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(str(child.pid))
import os
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(60)
"#;

#[tokio::test]
async fn a_timeout_kills_the_whole_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let hang = script(dir.path(), "hang.py", SPAWNS_AND_HANGS);
    let pidfile = dir.path().join("grandchild.pid");
    let wf = load(
        r#"
version: 1
name: exec-timeout
inputs: { script: { type: string }, pidfile: { type: string } }
state: { out: { reducer: replace } }
nodes:
  run:
    kind: exec
    timeout: 3s
    writes: [out]
    with: { command: [python3, "{{ inputs.script }}", "{{ inputs.pidfile }}"] }
"#,
    );
    let r = run(&wf, json!({ "script": hang, "pidfile": pidfile })).await;
    assert_eq!(failure(&r, "run").0, "timeout");
    let pid = read_pid(&pidfile);
    assert!(
        wait_dead(pid).await,
        "the grandchild `sleep` (pid {pid}) outlived the node's timeout"
    );
}

#[tokio::test]
async fn cancellation_kills_the_whole_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let hang = script(dir.path(), "hang.py", SPAWNS_AND_HANGS);
    let pidfile = dir.path().join("grandchild.pid");
    let wf = load(
        r#"
version: 1
name: exec-cancelled
inputs: { script: { type: string }, pidfile: { type: string } }
state: { out: { reducer: replace }, other: { reducer: replace } }
nodes:
  run:
    kind: exec
    writes: [out]
    with: { command: [python3, "{{ inputs.script }}", "{{ inputs.pidfile }}"] }
  breaks:
    kind: mock
    writes: [other]
    with: { latency: 3s, fail_first: 1, error: boom }
"#,
    );
    let r = run(&wf, json!({ "script": hang, "pidfile": pidfile })).await;
    assert_eq!(r.status, RunStatus::Failed);
    assert_eq!(r.report.node("breaks").unwrap().status, NodeStatus::Failed);
    assert_eq!(r.report.node("run").unwrap().status, NodeStatus::Cancelled);
    let pid = read_pid(&pidfile);
    assert!(
        wait_dead(pid).await,
        "the grandchild `sleep` (pid {pid}) outlived the cancelled run"
    );
}

#[tokio::test]
async fn what_a_program_leaves_running_is_killed_when_it_exits() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("left.pid");
    let wf = load(
        r#"
version: 1
name: exec-leftovers
inputs: { pidfile: { type: string } }
state: { out: { reducer: replace } }
nodes:
  run:
    kind: exec
    timeout: 20s
    writes: [out]
    with:
      command:
        - python3
        - -c
        - "import subprocess, sys; c = subprocess.Popen(['sleep', '60']); open(sys.argv[1], 'w').write(str(c.pid)); print('{\"out\": 1}')"
        - "{{ inputs.pidfile }}"
"#,
    );
    let r = run(&wf, json!({ "pidfile": pidfile })).await;
    // The leftover `sleep` holds the pipes open: without the group kill this would hit the timeout.
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.report.error);
    assert!(r.report.node("run").unwrap().duration() < Duration::from_secs(20));
    let pid = read_pid(&pidfile);
    assert!(
        wait_dead(pid).await,
        "the leftover `sleep` (pid {pid}) is still running"
    );
}

#[test]
fn bad_parameters_are_compile_errors() {
    use braid::Code;
    let engine = braid::Engine::new();
    for (with, code, fragment) in [
        ("{ command: [] }", Code::InvalidValue, "command"),
        (
            "{ command: [python3], pass_env: [PATH] }",
            Code::InvalidParams,
            "inherit_env: false",
        ),
        (
            "{ command: [python3], shell: true }",
            Code::UnknownField,
            "shell",
        ),
        (
            "{ command: [python3, '{{ inputs.nope + }}'] }",
            Code::TemplateSyntax,
            "does not compile",
        ),
    ] {
        let yaml = format!(
            "version: 1\nname: bad\nstate: {{ out: {{ reducer: replace }} }}\nnodes:\n  run:\n    kind: exec\n    writes: [out]\n    with: {with}\n"
        );
        let c = engine.compile(&braid::Source::new("bad.yaml", yaml));
        assert!(c.plan.is_none(), "{with} compiled");
        let found: Vec<(Code, &str)> = c
            .diagnostics
            .iter()
            .map(|d| (d.code, d.message.as_str()))
            .collect();
        assert!(
            found
                .iter()
                .any(|(c, m)| *c == code && m.contains(fragment)),
            "{with}: {found:?}"
        );
    }
}

#[tokio::test]
async fn the_shipped_retriever_ranks_the_documents() {
    let script = format!(
        "{}/../../examples/retrieval/retrieve.py",
        env!("CARGO_MANIFEST_DIR")
    );
    let wf = load(
        r#"
version: 1
name: exec-retrieval
inputs: { query: { type: string }, script: { type: string }, k: { type: integer, default: 2 } }
state: { rag_results: { reducer: replace, default: [] } }
nodes:
  rag:
    kind: exec
    timeout: 20s
    writes: [rag_results]
    with: { command: [python3, "{{ inputs.script }}", --k, "{{ inputs.k }}"] }
"#,
    );
    let r = run(
        &wf,
        json!({ "query": "how do I rotate a leaked API key?", "script": script }),
    )
    .await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.report.error);
    let results = r.state["rag_results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    let docs: Vec<&str> = results.iter().map(|d| d["doc"].as_str().unwrap()).collect();
    assert!(
        docs.contains(&"api-key-rotation.md") && docs.contains(&"leaked-credentials.md"),
        "{docs:?}"
    );
    assert!(results[0]["score"].as_f64().unwrap() >= results[1]["score"].as_f64().unwrap());
}

#[tokio::test]
async fn inside_a_map_each_process_sees_its_item_and_index() {
    let wf = load(
        r#"
version: 1
name: exec-in-map
state: { results: { reducer: replace } }
nodes:
  fan:
    kind: map
    writes: [results]
    with:
      over: [apple, kiwi, fig]
      max_concurrency: 2
      into: results
      collect: out
      node:
        kind: exec
        with:
          command:
            - python3
            - -c
            - "import json, sys; p = json.load(sys.stdin); print(json.dumps({'out': [sys.argv[1], p['item'], p['index'], p['node']]}))"
            - "{{ item | upper }}"
"#,
    );
    let r = run(&wf, json!({})).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.report.error);
    assert_eq!(
        r.state["results"],
        json!([
            ["APPLE", "apple", 0, "fan"],
            ["KIWI", "kiwi", 1, "fan"],
            ["FIG", "fig", 2, "fan"]
        ])
    );
}

#[tokio::test]
async fn a_program_is_told_its_run_node_attempt_and_idempotency_key() {
    let dir = tempfile::tempdir().unwrap();
    let keys = script(
        dir.path(),
        "keys.py",
        r#"
import json, os
names = ["BRAID_RUN_ID", "BRAID_NODE", "BRAID_ATTEMPT", "BRAID_IDEMPOTENCY_KEY"]
print(json.dumps({"out": {n: os.environ.get(n) for n in names}}))
"#,
    );
    let wf = load(
        r#"
version: 1
name: exec-keys
inputs: { script: { type: string } }
state: { out: { reducer: replace }, items: { reducer: replace } }
nodes:
  run:
    kind: exec
    writes: [out]
    with:
      command: [python3, "{{ inputs.script }}"]
      inherit_env: false
      pass_env: [PATH]
  each:
    kind: map
    writes: [items]
    with:
      over: [a, b]
      into: items
      collect: out
      node: { kind: exec, with: { command: [python3, "{{ inputs.script }}"] } }
"#,
    );
    let options = braid::RunOptions {
        run_id: Some("r7".into()),
        ..braid::RunOptions::default()
    };
    let r = wf
        .run(json!({ "script": keys }), options)
        .await
        .expect("inputs");
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.report.error);
    assert_eq!(
        r.state["out"],
        json!({
            "BRAID_RUN_ID": "r7",
            "BRAID_NODE": "run",
            "BRAID_ATTEMPT": "1",
            "BRAID_IDEMPOTENCY_KEY": "r7:run"
        })
    );
    // Each item of a map has a key of its own.
    let items: Vec<&Value> = r.state["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| &o["BRAID_IDEMPOTENCY_KEY"])
        .collect();
    assert_eq!(items, [&json!("r7:each:0"), &json!("r7:each:1")]);
}
