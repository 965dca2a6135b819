//! Signals and pipes, with real processes: `SIGTERM` stops a run as Ctrl-C does, `exec` programs
//! die with a `braid` killed outright (Linux), and a closed stdout is the end of output.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cli::text;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("braid-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A workflow: `first` writes `done: true` at once, then `slow` runs a program that writes its
/// pid to `pidfile` and sleeps for a minute.
fn workflow(dir: &Path, pidfile: &Path) -> PathBuf {
    let yaml = format!(
        r#"version: 1
name: long-exec
state:
  done: {{ reducer: replace, default: false }}
  out:  {{ reducer: replace }}
nodes:
  first:
    kind: transform
    writes: [done]
    with: {{ output: {{ done: true }} }}
  slow:
    kind: exec
    needs: [first]
    writes: [out]
    with:
      command: [sh, -c, "echo $$ > {}.tmp && mv {}.tmp {} && exec sleep 60"]
"#,
        pidfile.display(),
        pidfile.display(),
        pidfile.display()
    );
    let path = dir.join("long-exec.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

fn start(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_braid"))
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the braid binary starts")
}

/// Polls for `what` for at most 20 s: a bound so a broken build fails instead of hanging, not a
/// claim about speed.
fn eventually(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn pid_in(pidfile: &Path) -> u32 {
    eventually("the program to start", || pidfile.exists());
    std::fs::read_to_string(pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Whether a process runs (it exists and is not a zombie waiting to be reaped).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
}

#[test]
fn sigterm_cancels_the_run_kills_programs_and_writes_what_completed() {
    let dir = scratch("sigterm");
    let pidfile = dir.join("pid");
    let wf = workflow(&dir, &pidfile);
    let report = dir.join("report.json");
    let braid = start(&[
        "run",
        wf.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ]);
    let program = pid_in(&pidfile);
    assert!(alive(program));
    signal(braid.id(), "-TERM");
    let out = braid.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(143), "{}", text(&out.stderr));
    let state: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(state["done"], true, "what completed is kept");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(report["status"], "failed");
    assert_eq!(report["error"]["kind"], "cancelled");
    let slow = report["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "slow")
        .unwrap();
    assert_eq!(slow["status"], "cancelled");
    eventually("the program to be killed", || !alive(program));
}

#[cfg(target_os = "linux")]
#[test]
fn programs_die_with_a_braid_killed_outright() {
    let dir = scratch("sigkill");
    let pidfile = dir.join("pid");
    let wf = workflow(&dir, &pidfile);
    let mut braid = start(&["run", wf.to_str().unwrap()]);
    let program = pid_in(&pidfile);
    assert!(alive(program));
    braid.kill().unwrap(); // SIGKILL: no guard, no handler runs
    let _ = braid.wait();
    eventually("the orphaned program to die", || !alive(program));
}

#[test]
fn a_closed_stdout_ends_the_output_without_a_panic() {
    for args in [
        &["run", "workflows/mode3-autonomous.yaml", "--quiet"][..],
        &["schema"][..],
        &["validate", "--format", "json", "workflows/"][..],
    ] {
        let mut braid = Command::new(env!("CARGO_BIN_EXE_braid"))
            .args(args)
            .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // `| head -c 0`: the reader is gone before anything is written.
        drop(braid.stdout.take());
        let out = braid.wait_with_output().unwrap();
        let stderr = text(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
    }
}
