//! A long random secret in a URL, a header and a body, echoed back by the server in its error,
//! never shows in anything `braid run` writes: stdout, stderr at `-vvv` in both log formats,
//! `--report`, `--trace`, `--timeline`, `--metrics-file`.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;

use crate::cli::text;

const MARKS: [&str; 3] = ["Kq7MARKoneZx3vB9", "Lw2MARKtwoYp8nC4", "Mx5MARKthrQs6dE1"];

/// About 3 KiB of printable ASCII (every URL delimiter among it), tabs and non-ASCII, with the
/// markers spread through it; `seed` says which.
fn secret(seed: u64) -> String {
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut random = |n: usize, out: &mut String| {
        for _ in 0..n {
            out.push(match next() % 100 {
                0..=89 => char::from(0x20 + (next() % 95) as u8),
                90..=94 => '\t',
                _ => ['é', '日', '😀', '\u{a0}'][(next() % 4) as usize],
            });
        }
    };
    let mut out = String::new();
    // The first marker early, where an excerpt cut before redaction would keep it.
    for (mark, before) in MARKS.iter().zip([40, 1000, 1000]) {
        random(before, &mut out);
        out.push_str(mark);
    }
    random(1000, &mut out);
    out
}

fn base64(bytes: &[u8]) -> String {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(c.get(1).copied().unwrap_or(0)) << 8)
            | u32::from(c.get(2).copied().unwrap_or(0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(char::from(alphabet[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The markers, raw and as the base64 characters each alone determines at every offset.
fn tells() -> Vec<String> {
    let mut out = Vec::new();
    for mark in MARKS {
        out.push(mark.to_owned());
        for (offset, skip) in [(0usize, 0usize), (1, 2), (2, 3)] {
            let mut bytes = vec![b'x'; offset];
            bytes.extend_from_slice(mark.as_bytes());
            let encoded = base64(&bytes);
            let encoded = encoded.trim_end_matches('=');
            out.push(encoded[skip..encoded.len() - 1].to_owned());
        }
    }
    out
}

/// A loopback server answering every request `401` with the request (head and body) as its
/// body, for as long as the test runs.
fn echo_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream);
                let mut head = String::new();
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    if line == "\r\n" {
                        break;
                    }
                    head.push_str(&line);
                }
                let mut body = vec![0u8; length];
                let _ = reader.read_exact(&mut body);
                let echo = format!("{head}{}", String::from_utf8_lossy(&body));
                let mut stream = reader.into_inner();
                let _ = write!(
                    stream,
                    "HTTP/1.1 401 Unauthorized\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{echo}",
                    echo.len()
                );
            });
        }
    });
    format!("http://{addr}")
}

#[test]
fn a_long_random_secret_shows_in_no_output_of_braid_run() {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let secret = secret(seed);
    let server = echo_server();
    let dir = std::env::temp_dir().join(format!("braid-e2e-secret-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let wf = dir.join("secret.yaml");
    std::fs::write(
        &wf,
        format!(
            r#"version: 1
name: secret-e2e
state:
  status: {{ reducer: replace }}
  answer: {{ reducer: replace }}
nodes:
  call:
    kind: http
    retry: {{ attempts: 2, backoff: 1ms }}
    on_error: continue
    fallback: {{ status: 0 }}
    writes: [status]
    with:
      method: POST
      url: "{server}/v1/{{{{ secrets.key }}}}/items?key={{{{ secrets.key }}}}"
      headers: {{ Authorization: "Bearer {{{{ secrets.key }}}}", X-Api-Key: "{{{{ secrets.key }}}}" }}
      body: {{ token: "{{{{ secrets.key }}}}" }}
      secrets: {{ key: BRAID_E2E_SECRET }}
      output: {{ status: "{{{{ response.status }}}}" }}
  answer:
    kind: llm
    retry: {{ attempts: 2, backoff: 1ms }}
    writes: [answer]
    with:
      base_url: {server}/v1
      model: m
      api_key_env: BRAID_E2E_SECRET
      user: hi
      output: {{ text: answer }}
"#
        ),
    )
    .unwrap();
    for format in ["pretty", "json"] {
        let files: Vec<PathBuf> = ["report.json", "trace.json", "timeline.html", "metrics.prom"]
            .iter()
            .map(|f| dir.join(format!("{format}-{f}")))
            .collect();
        let out = Command::new(env!("CARGO_BIN_EXE_braid"))
            .args(["run", wf.to_str().unwrap(), "-vvv", "--log-format", format])
            .args(["--report", files[0].to_str().unwrap()])
            .args(["--trace", files[1].to_str().unwrap()])
            .args(["--timeline", files[2].to_str().unwrap()])
            .args(["--metrics-file", files[3].to_str().unwrap()])
            .env("BRAID_E2E_SECRET", &secret)
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "the llm node fails: {stderr}");
        assert!(
            stderr.contains("TRACE") || stderr.contains("\"TRACE\""),
            "trace-level logs: {stderr}"
        );
        let report = std::fs::read_to_string(&files[0]).unwrap();
        assert!(report.contains("returned 401 Unauthorized"), "{report}");
        let mut channels = vec![
            ("stdout".to_owned(), text(&out.stdout)),
            (format!("stderr ({format})"), stderr),
        ];
        for f in &files {
            channels.push((f.display().to_string(), std::fs::read_to_string(f).unwrap()));
        }
        for (name, content) in &channels {
            for tell in tells() {
                assert!(
                    !content.contains(&tell),
                    "{name} shows `{tell}` (seed {seed}):\n{content}"
                );
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
