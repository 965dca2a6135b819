//! What `braid` reads as a workflow file: only regular files, within the size limit, and a
//! directory walk that ends whatever links and special files the directory holds.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::cli::text;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("braid-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `braid` with `args`; a run still going after 20 s is killed and fails the test (a bound
/// so that a hang fails instead of blocking the suite, not a claim about speed).
fn braid_bounded(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_braid"))
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("`braid {args:?}` hung: {}", text(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

const VALID: &str = "version: 1\nname: ok\nnodes:\n  a: { kind: noop }\n";

#[cfg(unix)]
#[test]
fn validate_skips_fifos_and_ends_symlink_loops() {
    let dir = scratch("walk");
    std::fs::write(dir.join("ok.yaml"), VALID).unwrap();
    let status = Command::new("mkfifo")
        .arg(dir.join("pipe.yaml"))
        .status()
        .unwrap();
    assert!(status.success());
    // Two links back to the directory itself: 2^depth paths if followed blindly.
    std::os::unix::fs::symlink(".", dir.join("self-a")).unwrap();
    std::os::unix::fs::symlink(".", dir.join("self-b")).unwrap();
    std::fs::create_dir(dir.join("sub")).unwrap();
    std::os::unix::fs::symlink("..", dir.join("sub/up")).unwrap();
    let out = braid_bounded(&["validate", dir.to_str().unwrap()]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(
        stderr.matches("ok.yaml: ok").count(),
        1,
        "checked once: {stderr}"
    );
    assert!(stderr.contains("in 1 file"), "{stderr}");

    // Named on the command line, a FIFO is reported, not read.
    let fifo = dir.join("pipe.yaml");
    let out = braid_bounded(&["validate", fifo.to_str().unwrap()]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("a FIFO: workflows are read from regular files only"),
        "{stderr}"
    );
    let out = braid_bounded(&["run", fifo.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

#[cfg(unix)]
#[test]
fn a_sub_workflow_path_to_a_device_is_refused_at_once() {
    let dir = scratch("subpath");
    let parent = dir.join("parent.yaml");
    std::fs::write(
        &parent,
        "version: 1\nname: p\nstate:\n  r: { reducer: replace }\nnodes:\n  sub:\n    kind: workflow\n    writes: [r]\n    with: { path: /dev/zero, outputs: { r: r } }\n",
    )
    .unwrap();
    let out = braid_bounded(&["validate", parent.to_str().unwrap()]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "cannot read `/dev/zero`: a device: workflows are read from regular files only"
        ),
        "{stderr}"
    );

    // A file past the 8 MiB limit is refused before it is read whole.
    let big = dir.join("big.yaml");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(9 * 1024 * 1024).unwrap();
    std::fs::write(
        &parent,
        "version: 1\nname: p\nstate:\n  r: { reducer: replace }\nnodes:\n  sub:\n    kind: workflow\n    writes: [r]\n    with: { path: big.yaml, outputs: { r: r } }\n",
    )
    .unwrap();
    let out = braid_bounded(&["validate", parent.to_str().unwrap()]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the file is larger than 8388608 bytes, the limit of a workflow file"),
        "{stderr}"
    );
    let _ = Path::new(&big);
}
