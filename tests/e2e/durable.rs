//! Durable runs with real processes: `braid run --store` killed with `SIGKILL` at random moments,
//! then `braid resume`: the final state is the one an uninterrupted run ends with, and every node
//! whose end was recorded before the kill ran exactly once (each node appends a line to a file
//! each time it runs, so executions are counted outside Braid). Also the commands' answers to bad
//! input, and a degraded run retried.
//!
//! The test suite runs 20 trials on SQLite (and 10 on PostgreSQL when
//! `BRAID_TEST_POSTGRES_URL` is set); `scripts/kill-resume.sh` runs 200 (`BRAID_KILL_TRIALS`).

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::cli::text;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("braid-durable-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn braid(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_braid"))
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("BRAID_STORE")
        .stdin(Stdio::null())
        .output()
        .expect("the braid binary runs")
}

/// The nodes of the counted workflow: name, needs, how long it sleeps (ms). The shape of the
/// seed's pipeline: three retrievals, the LLM, three post-processors.
const NODES: [(&str, &[&str], u32); 7] = [
    ("rag", &[], 120),
    ("tools", &[], 60),
    ("memory", &[], 30),
    ("llm", &["rag", "tools", "memory"], 200),
    ("quality", &["llm"], 40),
    ("citations", &["llm"], 80),
    ("cost", &["llm"], 20),
];

/// A workflow whose every node appends `NODE ATTEMPT` to `count` when it starts, sleeps, and
/// appends its name to the state's `log` (an `append` key: the order is canonical, whatever the
/// timing).
fn counted(dir: &Path, count: &Path) -> PathBuf {
    let mut y = String::from(
        "version: 1\nname: counted\nstate:\n  log: { reducer: append, default: [] }\n  total: { reducer: sum, default: 0 }\nnodes:\n",
    );
    for (i, (name, needs, ms)) in NODES.iter().enumerate() {
        y.push_str(&format!("  {name}:\n    kind: exec\n"));
        if !needs.is_empty() {
            y.push_str(&format!("    needs: [{}]\n", needs.join(", ")));
        }
        y.push_str(&format!(
            "    writes: [log, total]\n    with:\n      env: {{ COUNT: \"{}\" }}\n      command: [sh, -c, 'echo \"$BRAID_NODE $BRAID_ATTEMPT\" >> \"$COUNT\"; sleep {}; printf \"{{\\\"log\\\": [\\\"%s\\\"], \\\"total\\\": {}}}\" \"$BRAID_NODE\"']\n",
            count.display(),
            f64::from(*ms) / 1000.0,
            i + 1
        ));
    }
    let path = dir.join("counted.yaml");
    std::fs::write(&path, y).unwrap();
    path
}

/// How many times each node ran, from the count file.
fn executions(count: &Path) -> BTreeMap<String, usize> {
    let mut n = BTreeMap::new();
    for line in std::fs::read_to_string(count).unwrap_or_default().lines() {
        let node = line.split(' ').next().unwrap_or_default().to_owned();
        *n.entry(node).or_default() += 1;
    }
    n
}

/// A small deterministic generator, so a failing trial can be run again.
fn lcg(x: &mut u64) -> u64 {
    *x = x
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    *x >> 33
}

/// Starts `braid run FILE --store URL`, waits until it says the run is journaled, and gives the
/// child and the run's id.
fn start_durable(file: &Path, store: &str) -> (std::process::Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_braid"))
        .args(["run", file.to_str().unwrap(), "--store", store])
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the braid binary starts");
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let id = loop {
        let line = lines
            .next()
            .expect("braid says the run is journaled before it ends")
            .unwrap();
        if let Some(rest) = line.strip_prefix("run ")
            && let Some((id, _)) = rest.split_once(" journaled in ")
        {
            break id.to_owned();
        }
    };
    // Keep draining stderr so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, id)
}

/// The run as recorded: its status and the nodes whose end was recorded as succeeded.
fn recorded(store: &str, id: &str) -> (String, Vec<String>, Value) {
    let out = braid(&["runs", "show", id, "--store", store, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let settled = doc["report"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["status"] == "succeeded")
        .map(|n| n["name"].as_str().unwrap().to_owned())
        .collect();
    (
        doc["run"]["status"].as_str().unwrap().to_owned(),
        settled,
        doc["state"].clone(),
    )
}

/// `trials` kills and resumes against `store(i)`.
fn kill_and_resume(name: &str, trials: u64, store: impl Fn(&Path, u64) -> String) {
    let dir = scratch(name);
    // The state of an uninterrupted run, without a store.
    let expected = {
        let count = dir.join("expected.count");
        let file = counted(&dir, &count);
        let out = braid(&["run", file.to_str().unwrap(), "-q"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    assert_eq!(expected["total"], 28);
    let mut seed = 0x5eed_u64 ^ trials;
    let mut resumed = 0;
    for trial in 0..trials {
        let count = dir.join(format!("{trial}.count"));
        let file = counted(&dir, &count);
        let url = store(&dir, trial);
        let (mut child, id) = start_durable(&file, &url);
        // Anywhere from before the first node ends to after the run ends (about 400 ms).
        let delay = lcg(&mut seed) % 500;
        std::thread::sleep(Duration::from_millis(delay));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let (status, settled, _) = recorded(&url, &id);
        let state = if status == "succeeded" {
            // It ended before the kill: there is nothing to resume, and the command says so.
            let again = braid(&["resume", &id, "--store", &url, "-q"]);
            assert_eq!(again.status.code(), Some(2), "trial {trial}");
            assert!(
                text(&again.stderr).contains("nothing to resume"),
                "trial {trial}"
            );
            recorded(&url, &id).2
        } else {
            assert_eq!(status, "running", "trial {trial}: killed mid-run");
            resumed += 1;
            let out = braid(&["resume", &id, "--store", &url, "-q"]);
            assert_eq!(
                out.status.code(),
                Some(0),
                "trial {trial} (killed after {delay} ms): {}",
                text(&out.stderr)
            );
            serde_json::from_slice(&out.stdout).unwrap()
        };
        assert_eq!(
            state, expected,
            "trial {trial} (killed after {delay} ms): the state differs"
        );
        let runs = executions(&count);
        for (node, _, _) in NODES {
            let n = runs.get(node).copied().unwrap_or(0);
            assert!(n >= 1, "trial {trial}: `{node}` never ran");
            if settled.iter().any(|s| s == node) {
                assert_eq!(
                    n, 1,
                    "trial {trial} (killed after {delay} ms): `{node}` settled before the kill but ran {n} times"
                );
            }
        }
        // The journal says it ended, with every node.
        let (status, settled, _) = recorded(&url, &id);
        assert_eq!(status, "succeeded", "trial {trial}");
        assert_eq!(settled.len(), NODES.len(), "trial {trial}");
    }
    // Most kills land mid-run; a run of trials that never resumed would test nothing.
    assert!(
        resumed * 2 >= trials,
        "only {resumed} of {trials} trials were killed mid-run"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn trials(default: u64) -> u64 {
    std::env::var("BRAID_KILL_TRIALS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(default)
}

#[test]
fn a_run_killed_at_random_moments_resumes_without_running_settled_nodes_again_sqlite() {
    kill_and_resume("sqlite", trials(20), |dir, trial| {
        // One store for all trials, as a user would keep one: runs share the file.
        let _ = trial;
        format!("sqlite:{}", dir.join("runs.db").display())
    });
}

/// A workflow whose `fetch` fails (falls back) until `flag` exists; `first` before it and
/// `summarize` after it count their runs in `count`.
fn flaky(dir: &Path, flag: &Path, count: &Path) -> PathBuf {
    let y = format!(
        r#"version: 1
name: flaky
state:
  log:  {{ reducer: append, default: [] }}
  data: {{ reducer: replace, default: none }}
nodes:
  first:
    kind: exec
    writes: [log]
    with:
      command: [sh, -c, 'echo first >> "{count}"; echo "{{\"log\": [\"first\"]}}"']
  fetch:
    kind: exec
    needs: [first]
    on_error: continue
    fallback: {{ data: missing }}
    writes: [data]
    with:
      command: [sh, -c, 'echo fetch >> "{count}"; test -e "{flag}" && echo "{{\"data\": \"fresh\"}}"']
  summarize:
    kind: exec
    needs: [fetch]
    reads: [data]
    writes: [log]
    with:
      command: [sh, -c, 'echo summarize >> "{count}"; echo "{{\"log\": [\"summarized\"]}}"']
"#,
        count = count.display(),
        flag = flag.display()
    );
    let path = dir.join("flaky.yaml");
    std::fs::write(&path, y).unwrap();
    path
}

/// The run id a durable command announced on stderr.
fn run_id(out: &Output) -> String {
    let stderr = text(&out.stderr);
    stderr
        .lines()
        .find_map(|l| {
            l.strip_prefix("run ")?
                .split_once(" journaled in ")
                .map(|(id, _)| id.to_owned())
        })
        .unwrap_or_else(|| panic!("no run id in: {stderr}"))
}

#[test]
fn a_degraded_run_retried_runs_only_the_failed_node_and_what_follows_it() {
    let dir = scratch("retry");
    let (flag, count) = (dir.join("flag"), dir.join("count"));
    let file = flaky(&dir, &flag, &count);
    let store = format!("sqlite:{}", dir.join("runs.db").display());
    let out = braid(&["run", file.to_str().unwrap(), "--store", &store]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "degraded: {}",
        text(&out.stderr)
    );
    let id = run_id(&out);
    let state: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(state["data"], "missing");

    // Nothing to resume in a finished run; retry is the way.
    let again = braid(&["resume", &id, "--store", &store]);
    assert_eq!(again.status.code(), Some(2));
    assert!(
        text(&again.stderr).contains("is degraded"),
        "{}",
        text(&again.stderr)
    );

    std::fs::write(&flag, "").unwrap();
    let out = braid(&["retry", &id, "--store", &store]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr)
            .contains("settled before this run continued (kept, not run again): first\n"),
        "{}",
        text(&out.stderr)
    );
    let state: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(state["data"], "fresh");
    assert_eq!(state["log"], serde_json::json!(["first", "summarized"]));
    assert_eq!(
        executions(&count),
        BTreeMap::from([
            ("fetch".to_owned(), 2),
            ("first".to_owned(), 1),
            ("summarize".to_owned(), 2)
        ]),
        "`first` succeeded the first time and kept its writes"
    );

    // --from runs one node and what follows it, in a run that succeeded.
    let out = braid(&["retry", &id, "--store", &store, "--from", "summarize", "-q"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(executions(&count)["summarize"], 3);
    assert_eq!(executions(&count)["fetch"], 2);
    let bad = braid(&["retry", &id, "--store", &store, "--from", "nope"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        text(&bad.stderr).contains("has no node `nope`"),
        "{}",
        text(&bad.stderr)
    );

    // The list and the journal agree.
    let list = braid(&["runs", "list", "--store", &store, "--json"]);
    assert_eq!(list.status.code(), Some(0), "{}", text(&list.stderr));
    let runs: Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(runs[0]["run_id"], id.as_str());
    assert_eq!(runs[0]["status"], "succeeded");
    assert_eq!(runs[0]["restarts"], 2);
    let timeline = dir.join("timeline.html");
    let shown = braid(&[
        "runs",
        "show",
        &id,
        "--store",
        &store,
        "--timeline",
        timeline.to_str().unwrap(),
    ]);
    assert_eq!(shown.status.code(), Some(0), "{}", text(&shown.stderr));
    let html = std::fs::read_to_string(&timeline).unwrap();
    assert!(
        html.contains("summarize"),
        "the timeline draws the journaled nodes"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn durable_commands_refuse_bad_input_and_change_nothing() {
    let dir = scratch("bad");
    let store_path = dir.join("runs.db");
    let store = format!("sqlite:{}", store_path.display());

    // An unknown run in a new store.
    let out = braid(&["resume", "0123456789abcdef", "--store", &store]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no run `0123456789abcdef` in the store"),
        "{}",
        text(&out.stderr)
    );
    let out = braid(&["runs", "show", "nope", "--store", &store]);
    assert_eq!(out.status.code(), Some(2));

    // A file that is not a store is left as it was.
    let notes = dir.join("notes.txt");
    std::fs::write(&notes, "my notes, not a database\n").unwrap();
    let url = format!("sqlite:{}", notes.display());
    let count = dir.join("count");
    let file = counted(&dir, &count);
    for args in [
        vec!["run", file.to_str().unwrap(), "--store", &url],
        vec!["runs", "list", "--store", &url],
        vec!["resume", "x", "--store", &url],
    ] {
        let out = braid(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            text(&out.stderr).contains("is not a Braid store"),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    assert_eq!(
        std::fs::read_to_string(&notes).unwrap(),
        "my notes, not a database\n"
    );
    assert!(!count.exists(), "nothing ran");

    // A store URL that is not one.
    let out = braid(&["runs", "list", "--store", "mysql://x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("is not a store URL"),
        "{}",
        text(&out.stderr)
    );

    // A PostgreSQL server that is not there: an error, not a hang.
    let out = braid(&[
        "runs",
        "list",
        "--store",
        "postgres://postgres@127.0.0.1:1/none",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("cannot reach the store"),
        "{}",
        text(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `sql` against the database `BRAID_TEST_POSTGRES_URL` names.
fn postgres(base: &str, sql: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (client, connection) = tokio_postgres::connect(base, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("BRAID_TEST_POSTGRES_URL is set but unreachable: {e}"));
        let task = tokio::spawn(connection);
        client.batch_execute(sql).await.unwrap();
        drop(client);
        let _ = task.await;
    });
}

#[test]
#[allow(clippy::print_stderr)] // a skipped test says so
fn a_run_killed_at_random_moments_resumes_without_running_settled_nodes_again_postgres() {
    let Ok(base) = std::env::var("BRAID_TEST_POSTGRES_URL") else {
        eprintln!("skipped: BRAID_TEST_POSTGRES_URL is not set");
        return;
    };
    // A schema of the test's own, so tests can run in parallel.
    let schema = format!("braid_e2e_kill_{}", std::process::id());
    postgres(
        &base,
        &format!("DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"),
    );
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
    kill_and_resume("postgres", trials(10), |_, _| url.clone());
    postgres(&base, &format!("DROP SCHEMA {schema} CASCADE"));
}

/// `draft` and `publish` count their runs in `count`; `approve` waits for a person, for at most
/// `deadline`.
fn approval(dir: &Path, count: &Path, deadline: &str) -> PathBuf {
    let y = format!(
        r#"version: 1
name: approval-counted
state:
  draft:    {{ reducer: replace }}
  approval: {{ reducer: replace }}
  post:     {{ reducer: replace, default: none }}
nodes:
  draft:
    kind: exec
    writes: [draft]
    with:
      command: [sh, -c, 'echo draft >> "{count}"; echo "{{\"draft\": \"hello\"}}"']
  approve:
    kind: wait
    needs: [draft]
    writes: [approval]
    on_error: continue
    fallback: {{ approval: {{ approved: false }} }}
    with:
      prompt: "Publish {{{{ state.draft }}}}?"
      schema:
        type: object
        properties: {{ approved: {{ type: boolean }} }}
        required: [approved]
      output: approval
      deadline: {deadline}
  publish:
    kind: exec
    needs: [approve]
    when: state.approval.approved
    writes: [post]
    with:
      command: [sh, -c, 'echo publish >> "{count}"; echo "{{\"post\": \"published\"}}"']
"#,
        count = count.display()
    );
    let path = dir.join("approval.yaml");
    std::fs::write(&path, y).unwrap();
    path
}

#[test]
fn a_run_waits_for_a_person_and_resumes_with_the_answer_without_running_anything_again() {
    let dir = scratch("wait");
    let count = dir.join("count");
    let file = approval(&dir, &count, "24h");
    let store = format!("sqlite:{}", dir.join("runs.db").display());
    let out = braid(&["run", file.to_str().unwrap(), "--store", &store]);
    assert_eq!(out.status.code(), Some(5), "waiting: {}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("Publish hello?"),
        "{}",
        text(&out.stderr)
    );
    let id = run_id(&out);
    let (status, _, _) = recorded(&store, &id);
    assert_eq!(status, "waiting");

    // No answer, a wrong answer, an answer for a node that does not wait: refused, nothing
    // recorded.
    for (args, says) in [
        (vec![], "waits at node `approve` for an answer"),
        (
            vec!["--value", r#"{"approved": "yes"}"#],
            "does not fit its schema",
        ),
        (
            vec!["--value", "true", "--node", "draft"],
            "is not waiting for an answer",
        ),
        (
            vec!["--value", "true", "--node", "nope"],
            "has no node `nope`",
        ),
    ] {
        let mut all = vec!["resume", id.as_str(), "--store", store.as_str()];
        all.extend(args);
        let out = braid(&all);
        assert_eq!(out.status.code(), Some(2), "{all:?}");
        assert!(
            text(&out.stderr).contains(says),
            "{all:?}: {}",
            text(&out.stderr)
        );
    }
    let list = braid(&[
        "runs", "list", "--store", &store, "--status", "waiting", "--json",
    ]);
    let runs: Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(
        runs[0]["restarts"], 0,
        "nothing was recorded by the refusals"
    );

    let out = braid(&[
        "resume",
        &id,
        "--store",
        &store,
        "--value",
        r#"{"approved": true}"#,
        "-q",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let state: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(state["approval"], serde_json::json!({ "approved": true }));
    assert_eq!(state["post"], "published");
    assert_eq!(
        executions(&count),
        BTreeMap::from([("draft".to_owned(), 1), ("publish".to_owned(), 1)]),
        "the draft made before the wait was not made again"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_wait_past_its_deadline_applies_its_on_error_policy() {
    let dir = scratch("deadline");
    let count = dir.join("count");
    let file = approval(&dir, &count, "1ms");
    let store = format!("sqlite:{}", dir.join("runs.db").display());
    let out = braid(&["run", file.to_str().unwrap(), "--store", &store]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    let id = run_id(&out);
    std::thread::sleep(Duration::from_millis(20));
    let late = braid(&[
        "resume",
        &id,
        "--store",
        &store,
        "--value",
        r#"{"approved": true}"#,
    ]);
    assert_eq!(late.status.code(), Some(2));
    assert!(
        text(&late.stderr).contains("deadline passed"),
        "{}",
        text(&late.stderr)
    );
    // Without a value, the node fails `timeout` and falls back: not approved, nothing published.
    let out = braid(&["resume", &id, "--store", &store, "-q"]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "degraded: {}",
        text(&out.stderr)
    );
    let state: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(state["approval"], serde_json::json!({ "approved": false }));
    assert_eq!(state["post"], "none");
    assert_eq!(
        executions(&count),
        BTreeMap::from([("draft".to_owned(), 1)])
    );
    let _ = std::fs::remove_dir_all(&dir);
}
