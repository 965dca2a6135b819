//! `braid serve` as a real process: SIGTERM with runs in flight drains what finishes within the
//! drain timeout, leaves the rest recorded `running`, exits 0; the next start resumes them on
//! the version they started with, even after the file changed. SIGHUP rescans the directory.
//! A minimal HTTP/1.1 client over `TcpStream` keeps the test free of an HTTP crate.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("braid-serve-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("workflows")).unwrap();
    dir
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `first` takes `ms_first`, `second` 300 ms; `out` names the version.
fn workflow(name: &str, version: &str, ms_first: u32) -> String {
    format!(
        "version: 1\nname: {name}\nstate:\n  out: {{ reducer: replace }}\n  more: {{ reducer: replace }}\nnodes:\n  first:\n    kind: mock\n    writes: [out]\n    with: {{ latency: {ms_first}ms, output: {{ out: {version} }} }}\n  second:\n    kind: mock\n    needs: [first]\n    writes: [more]\n    with: {{ latency: 300ms, output: {{ more: done }} }}\n"
    )
}

fn serve(dir: &Path, port: u16) -> Child {
    let child = Command::new(env!("CARGO_BIN_EXE_braid"))
        .args([
            "serve",
            "workflows",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .args([
            "--store",
            "sqlite:serve.db",
            "--drain-timeout",
            "1500ms",
            "--poll",
            "200ms",
        ])
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env_remove("BRAID_STORE")
        .env_remove("BRAID_SERVE_TOKENS")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("braid serve starts");
    eventually("the server to answer", || {
        request(port, "GET", "/healthz", "").is_some_and(|(s, _)| s == 200)
    });
    child
}

/// One request; `None` when nothing answers.
fn request(port: u16, method: &str, path: &str, body: &str) -> Option<(u16, Value)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.get(9..12)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Some((status, serde_json::from_str(body).unwrap_or(Value::Null)))
}

fn eventually(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ok() {
        assert!(Instant::now() < deadline, "waited too long for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn start_run(port: u16, workflow: &str) -> String {
    let (status, body) = request(
        port,
        "POST",
        &format!("/v1/workflows/{workflow}/runs"),
        "{}",
    )
    .unwrap();
    assert_eq!(status, 201, "{body}");
    body["run_id"].as_str().unwrap().to_owned()
}

fn run(port: u16, id: &str) -> Value {
    request(port, "GET", &format!("/v1/runs/{id}"), "")
        .unwrap()
        .1
}

fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn sigterm_drains_then_a_restart_resumes_what_was_left_on_its_version() {
    let dir = scratch("drain");
    std::fs::write(
        dir.join("workflows/short.yaml"),
        workflow("short", "s1", 200),
    )
    .unwrap();
    std::fs::write(
        dir.join("workflows/long.yaml"),
        workflow("long", "l1", 4000),
    )
    .unwrap();
    let port = free_port();
    let mut server = serve(&dir, port);
    let short = start_run(port, "short");
    let long = start_run(port, "long");
    signal(&server, "-TERM");
    let status = server.wait().unwrap();
    assert_eq!(status.code(), Some(0), "a drained shutdown exits 0");

    // The file changes while the service is down: the left run keeps its version.
    std::fs::write(dir.join("workflows/long.yaml"), workflow("long", "l2", 100)).unwrap();
    let port = free_port();
    let mut server = serve(&dir, port);
    let short = run(port, &short);
    assert_eq!(short["status"], "succeeded", "finished within the drain");
    assert_eq!(
        short["restarts"], 0,
        "not resumed: it finished before the exit"
    );
    eventually("the left run to be resumed and finish", || {
        run(port, &long)["status"] == "succeeded"
    });
    let resumed = run(port, &long);
    assert_eq!(resumed["state"]["out"], "l1", "{resumed}");
    assert_eq!(resumed["state"]["more"], "done");
    assert_eq!(resumed["restarts"], 1);

    // SIGHUP: a rescan at once (the poll would find it too; either way the new version serves).
    std::fs::write(
        dir.join("workflows/short.yaml"),
        workflow("short", "s2", 10),
    )
    .unwrap();
    signal(&server, "-HUP");
    eventually("the edit to serve", || {
        let (_, body) = request(port, "POST", "/v1/workflows/short/runs?wait=true", "{}").unwrap();
        body["state"]["out"] == "s2"
    });
    signal(&server, "-INT");
    assert_eq!(server.wait().unwrap().code(), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}

/// One request; the status and the body as text (an event stream, metrics).
fn request_text(port: u16, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, text)
}

/// A server that answers every request `500` with the request's head (its query string and
/// `Authorization` header included) echoed in the body, as a careless service does.
fn echo_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 16384];
            let n = s.read(&mut buf).unwrap_or(0);
            let head = String::from_utf8_lossy(&buf[..n]).replace(['"', '\\'], "'");
            let body = format!(
                "{{\"error\": \"rejected: {}\"}}",
                head.replace("\r\n", " | ")
            );
            let _ = write!(
                s,
                "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

#[test]
fn a_secret_never_leaves_the_service_in_a_response_an_event_a_metric_or_a_log() {
    let dir = scratch("secret");
    let echo = echo_server();
    // Long (a JWT is longer than the 200 characters an error is cut to), with characters a URL
    // encodes.
    let secret = format!("tok-{}/+= é", "Zq9xW3".repeat(50));
    std::fs::write(
        dir.join("workflows/leaky.yaml"),
        format!(
            r#"version: 1
name: leaky
state:
  out: {{ reducer: replace, default: none }}
nodes:
  call:
    kind: http
    on_error: continue
    fallback: {{ out: failed }}
    writes: [out]
    with:
      url: "http://127.0.0.1:{echo}/search?key={{{{ secrets.token }}}}"
      headers: {{ Authorization: "Bearer {{{{ secrets.token }}}}" }}
      secrets: {{ token: BRAID_E2E_SECRET }}
      output: {{ out: /x }}
"#
        ),
    )
    .unwrap();
    let port = free_port();
    let log = std::fs::File::create(dir.join("serve.log")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_braid"))
        .args([
            "-vvv",
            "serve",
            "workflows",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .args(["--store", "sqlite:serve.db"])
        .current_dir(&dir)
        .env("NO_COLOR", "1")
        .env("BRAID_E2E_SECRET", &secret)
        .env_remove("BRAID_STORE")
        .env_remove("BRAID_SERVE_TOKENS")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("braid serve starts");
    eventually("the server to answer", || {
        request(port, "GET", "/healthz", "").is_some_and(|(s, _)| s == 200)
    });

    let (status, finished) = request_text(port, "POST", "/v1/workflows/leaky/runs?wait=true", "{}");
    assert_eq!(status, 200, "{finished}");
    assert!(
        finished.contains("\"degraded\""),
        "the call failed and fell back: {finished}"
    );
    assert!(
        finished.contains("rejected: GET /search?key=***") && finished.contains("Bearer ***"),
        "the server's echo reached the report, redacted: {finished}"
    );
    let id = finished
        .split("\"run_id\":\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_owned();
    let outputs = [
        ("the run", finished),
        (
            "the run again",
            request_text(port, "GET", &format!("/v1/runs/{id}"), "").1,
        ),
        ("the runs", request_text(port, "GET", "/v1/runs", "").1),
        (
            "its events",
            request_text(port, "GET", &format!("/v1/runs/{id}/events"), "").1,
        ),
        ("the metrics", request_text(port, "GET", "/metrics", "").1),
    ];
    signal(&child, "-TERM");
    child.wait().unwrap();
    let log = std::fs::read_to_string(dir.join("serve.log")).unwrap();
    assert!(log.contains("leaky"), "the log is the service's: {log}");
    // Any 24 characters of the secret in a row would be a leak, in any of its forms.
    let forms = [
        secret.clone(),
        secret
            .replace('/', "%2F")
            .replace('+', "%2B")
            .replace('=', "%3D"),
    ];
    for (what, text) in outputs.iter().chain([("the log", log)].iter()) {
        for form in &forms {
            let chars: Vec<char> = form.chars().collect();
            for w in chars.windows(24).step_by(12) {
                let piece: String = w.iter().collect();
                assert!(
                    !text.contains(&piece),
                    "{what} holds part of the secret: {piece}"
                );
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
