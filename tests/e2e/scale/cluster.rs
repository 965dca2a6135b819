//! The harness of the scale-out tests: a schema of the test's own in the PostgreSQL database
//! `BRAID_TEST_POSTGRES_URL` names, real `braid serve` and `braid worker` processes on free
//! loopback ports sharing it, a minimal HTTP/1.1 client (chunked bodies, server-sent events,
//! Prometheus text) over `TcpStream`, and a workflow whose nodes count their executions in a
//! file, outside Braid.
//!
//! Every process started here is killed when its [`Replica`] is dropped, so a failed assertion
//! leaves no replica running.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

/// The database the tests run against, or `None` (the test is skipped).
pub(super) fn base_url() -> Option<String> {
    std::env::var("BRAID_TEST_POSTGRES_URL").ok()
}

/// Microseconds since the epoch, as the store's times are.
pub(super) fn now_micros() -> i64 {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    i64::try_from(d.as_micros()).unwrap()
}

/// Waits for `ok`, for at most `limit`: a hang guard, never a measure of speed.
pub(super) fn eventually(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ok() {
        assert!(Instant::now() < deadline, "waited {limit:?} for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A connection of the test's own to the database, in a schema (or none, for the admin's).
pub(super) struct Db {
    rt: tokio::runtime::Runtime,
    client: Client,
}

impl Db {
    /// Connects to `url`; panics when it cannot: the variable is set, so the database must be
    /// there.
    pub(super) fn connect(url: &str) -> Db {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let client = rt.block_on(async {
            let (client, connection) = tokio_postgres::connect(url, NoTls)
                .await
                .unwrap_or_else(|e| panic!("BRAID_TEST_POSTGRES_URL is set but unreachable: {e}"));
            tokio::spawn(async move {
                let _ = connection.await;
            });
            client
        });
        Db { rt, client }
    }

    /// Runs statements.
    pub(super) fn execute(&self, sql: &str) {
        self.rt
            .block_on(self.client.batch_execute(sql))
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// The rows of a query, each column as text (`None` for null).
    pub(super) fn rows(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        let messages = self
            .rt
            .block_on(self.client.simple_query(sql))
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        messages
            .into_iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::Row(row) => Some(
                    (0..row.len())
                        .map(|i| row.get(i).map(str::to_owned))
                        .collect(),
                ),
                _ => None,
            })
            .collect()
    }

    /// The first column of the first row, as a number.
    pub(super) fn number(&self, sql: &str) -> i64 {
        self.rows(sql)[0][0]
            .as_deref()
            .unwrap_or("0")
            .parse()
            .unwrap()
    }

    /// The first column of every row.
    pub(super) fn column(&self, sql: &str) -> Vec<String> {
        self.rows(sql)
            .into_iter()
            .map(|r| r[0].clone().unwrap_or_default())
            .collect()
    }
}

/// A schema of the test's own (dropped at the end unless the test failed), the store URL of its
/// replicas, and a scratch directory with the workflows they serve.
pub(super) struct Cluster {
    pub(super) name: String,
    pub(super) dir: PathBuf,
    /// The URL the replicas connect with: the schema as `search_path`, and the schema's name as
    /// `application_name`, so that the test can find (and kill) its replicas' connections and
    /// no other test's.
    pub(super) url: String,
    /// The test's own connection, in the schema.
    pub(super) db: Db,
    admin: Db,
    /// `--lease-ttl`.
    pub(super) ttl: String,
    /// `--max-runs`.
    pub(super) max_runs: u32,
}

impl Cluster {
    pub(super) fn new(test: &str, base: &str, ttl: &str, max_runs: u32) -> Cluster {
        let name = format!("braid_e2e_scale_{test}_{}", std::process::id());
        let admin = Db::connect(base);
        admin.execute(&format!(
            "DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}"
        ));
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{sep}options=-c%20search_path%3D{name}&application_name={name}");
        let db = Db::connect(&format!(
            "{base}{sep}options=-c%20search_path%3D{name}&application_name={name}_test"
        ));
        let dir = std::env::temp_dir().join(format!("braid-{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("workflows")).unwrap();
        Cluster {
            name,
            dir,
            url,
            db,
            admin,
            ttl: ttl.to_owned(),
            max_runs,
        }
    }

    /// Writes a workflow file the replicas serve.
    pub(super) fn workflow(&self, file: &str, text: &str) {
        std::fs::write(self.dir.join("workflows").join(file), text).unwrap();
    }

    /// The file the nodes of [`counted`] append to.
    pub(super) fn count_file(&self) -> PathBuf {
        self.dir.join("count")
    }

    /// Starts `braid serve` as replica `id`, and waits until it answers.
    pub(super) fn serve(&self, id: &str) -> Replica {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let max = self.max_runs.to_string();
        let args = [
            "serve",
            "workflows",
            "--listen",
            &listen,
            "--store",
            &self.url,
            "--max-runs",
            &max,
            "--lease-ttl",
            &self.ttl,
            "--replica-id",
            id,
            "--poll",
            "200ms",
            "--drain-timeout",
            "2s",
        ];
        let mut replica = self.spawn(id, &args, Some(port));
        eventually(
            &format!("replica `{id}` to answer"),
            Duration::from_secs(60),
            || replica.alive() && get_status(port, "/readyz") == Some(200),
        );
        replica
    }

    /// Starts `braid worker` as replica `id`, and waits until it registered.
    pub(super) fn worker(&self, id: &str) -> Replica {
        let max = self.max_runs.to_string();
        let args = [
            "worker",
            "--store",
            &self.url,
            "--max-runs",
            &max,
            "--lease-ttl",
            &self.ttl,
            "--replica-id",
            id,
        ];
        let mut replica = self.spawn(id, &args, None);
        eventually(
            &format!("worker `{id}` to register"),
            Duration::from_secs(60),
            || {
                replica.alive()
                    && self.db.number(&format!(
                        "SELECT count(*) FROM braid_replicas WHERE id = '{id}'"
                    )) == 1
            },
        );
        replica
    }

    fn spawn(&self, id: &str, args: &[&str], port: Option<u16>) -> Replica {
        let log = self.dir.join(format!("{id}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_braid"))
            .args(args)
            .current_dir(&self.dir)
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "warn")
            .env_remove("BRAID_STORE")
            .env_remove("BRAID_SERVE_TOKENS")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("the braid binary starts");
        Replica {
            child,
            id: id.to_owned(),
            port,
            log,
        }
    }

    /// Submits `n` runs of `workflow` to `replica`; their ids, in order.
    pub(super) fn submit(&self, replica: &Replica, workflow: &str, n: usize) -> Vec<String> {
        (0..n)
            .map(|_| {
                let (status, body) = replica.post(&format!("/v1/workflows/{workflow}/runs"), "{}");
                assert_eq!(status, 201, "{body}");
                json(&body)["run_id"].as_str().unwrap().to_owned()
            })
            .collect()
    }

    /// How many of the schema's runs are still `running`.
    pub(super) fn running(&self) -> i64 {
        self.db
            .number("SELECT count(*) FROM braid_runs WHERE state = 0")
    }

    /// Waits until every run ended.
    pub(super) fn wait_all_ended(&self, runs: usize) {
        let limit = Duration::from_secs(120 + 2 * runs as u64);
        eventually("every run to end", limit, || self.running() == 0);
    }

    /// The running runs `replica` owns, each with the nodes recorded settled for it, as they
    /// are now.
    pub(super) fn owned(&self, replica: &str) -> BTreeMap<String, Vec<String>> {
        let mut owned: BTreeMap<String, Vec<String>> = self
            .db
            .column(&format!(
                "SELECT id FROM braid_runs WHERE owner = '{replica}' AND state = 0"
            ))
            .into_iter()
            .map(|id| (id, Vec::new()))
            .collect();
        for row in self.db.rows(&format!(
            "SELECT r.id, n.node FROM braid_nodes n JOIN braid_runs r ON r.key = n.run
             WHERE r.owner = '{replica}' AND r.state = 0"
        )) {
            if let (Some(run), Some(node)) = (&row[0], &row[1])
                && let Some(nodes) = owned.get_mut(run)
            {
                nodes.push(node.clone());
            }
        }
        owned
    }

    /// Every node recorded settled, as (run, node).
    pub(super) fn settled(&self) -> Vec<(String, String)> {
        self.db
            .rows("SELECT r.id, n.node FROM braid_nodes n JOIN braid_runs r ON r.key = n.run")
            .into_iter()
            .map(|r| (r[0].clone().unwrap(), r[1].clone().unwrap()))
            .collect()
    }

    /// Terminates the replicas' connections to the database (not the test's, not another
    /// test's); how many.
    pub(super) fn kill_connections(&self) -> i64 {
        self.admin.number(&format!(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()
               AND application_name = '{}') t",
            self.name
        ))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Kept for a look when the test failed.
        if !std::thread::panicking() {
            self.admin
                .execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name));
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A `braid serve` or `braid worker` process, killed when dropped.
pub(super) struct Replica {
    child: Child,
    pub(super) id: String,
    /// The HTTP port (`serve` only).
    pub(super) port: Option<u16>,
    log: PathBuf,
}

impl Replica {
    fn port(&self) -> u16 {
        self.port.expect("a serve replica")
    }

    /// `true` while the process runs; a panic with its log when it exited.
    pub(super) fn alive(&mut self) -> bool {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("replica `{}` exited ({status}): {}", self.id, self.log());
        }
        true
    }

    /// Sends a signal (`-STOP`, `-CONT`, `-TERM`).
    pub(super) fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// SIGKILL, and reaps it.
    pub(super) fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    pub(super) fn get(&self, path: &str) -> (u16, String) {
        http(self.port(), "GET", path, "", &[])
    }

    pub(super) fn post(&self, path: &str, body: &str) -> (u16, String) {
        http(self.port(), "POST", path, body, &[])
    }

    /// `GET /v1/runs/{id}`.
    pub(super) fn run(&self, id: &str) -> Value {
        let (status, body) = self.get(&format!("/v1/runs/{id}"));
        assert_eq!(status, 200, "run {id} from `{}`: {body}", self.id);
        json(&body)
    }

    /// `GET /v1/runs/{id}/events` to its end (`from`: `Last-Event-ID`).
    pub(super) fn events(&self, id: &str, from: Option<u64>) -> Vec<Event> {
        let last = from.map(|n| n.to_string());
        let headers: Vec<(&str, &str)> = last
            .as_deref()
            .map(|n| vec![("Last-Event-ID", n)])
            .unwrap_or_default();
        let (status, body) = http(
            self.port(),
            "GET",
            &format!("/v1/runs/{id}/events"),
            "",
            &headers,
        );
        assert_eq!(status, 200, "events of {id} from `{}`: {body}", self.id);
        sse(&body)
    }

    /// The sum of a metric's samples (every label set), 0 when absent.
    pub(super) fn metric(&self, name: &str) -> f64 {
        let (status, text) = self.get("/metrics");
        assert_eq!(status, 200, "{text}");
        metric(&text, name)
    }

    /// What it logged.
    pub(super) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        // A stopped process dies of SIGKILL too.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn get_status(port: u16, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.get(9..12)?.parse().ok()
}

/// One request; the status and the body (de-chunked). A read that takes more than two minutes
/// fails the test (a hang guard).
pub(super) fn http(
    port: u16,
    method: &str,
    path: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    (
        status,
        if chunked {
            dechunk(rest)
        } else {
            rest.to_owned()
        },
    )
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
            .unwrap_or_else(|_| panic!("a chunk size: {size:?}"));
        if size == 0 {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].strip_prefix("\r\n").unwrap_or(&after[size..]);
    }
    out
}

pub(super) fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// A journaled event as a stream carries it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Event {
    /// The SSE `id`: its sequence number.
    pub(super) id: u64,
    pub(super) kind: String,
    pub(super) data: Value,
}

/// The journaled events of a server-sent event stream (those with an `id`; `message` events
/// are live only and carry none).
pub(super) fn sse(body: &str) -> Vec<Event> {
    let mut events = Vec::new();
    for block in body.split("\n\n") {
        let (mut id, mut kind, mut data) = (None, None, Value::Null);
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("id:") {
                id = Some(v.trim().parse::<u64>().unwrap());
            } else if let Some(v) = line.strip_prefix("event:") {
                kind = Some(v.trim().to_owned());
            } else if let Some(v) = line.strip_prefix("data:") {
                data = json(v.trim());
            }
        }
        if let (Some(id), Some(kind)) = (id, kind) {
            events.push(Event { id, kind, data });
        }
    }
    events
}

/// The sum of a metric's samples in Prometheus text.
pub(super) fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with('{') || r.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .fold(0.0, |a, b| a + b)
}

/// The nodes of the counted workflow: name, needs, how long it sleeps (ms). A fetch, two
/// branches, a join: 50 to 200 ms each.
pub(super) const NODES: [(&str, &[&str], u32); 4] = [
    ("fetch", &[], 60),
    ("parse", &["fetch"], 150),
    ("enrich", &["fetch"], 90),
    ("answer", &["parse", "enrich"], 120),
];

/// A workflow named `name` whose every node appends `RUN NODE` to `count` when it starts,
/// sleeps, and appends its name to the state's `log` (an `append` key: its order is canonical)
/// and its number to `total`. `slow` multiplies the sleeps.
pub(super) fn counted(name: &str, count: &Path, slow: u32) -> String {
    let mut y = format!(
        "version: 1\nname: {name}\nstate:\n  log: {{ reducer: append, default: [] }}\n  total: {{ reducer: sum, default: 0 }}\nnodes:\n"
    );
    for (i, (node, needs, ms)) in NODES.iter().enumerate() {
        y.push_str(&format!("  {node}:\n    kind: exec\n"));
        if !needs.is_empty() {
            y.push_str(&format!("    needs: [{}]\n", needs.join(", ")));
        }
        y.push_str(&format!(
            "    writes: [log, total]\n    with:\n      env: {{ COUNT: \"{}\" }}\n      command: [sh, -c, 'echo \"$BRAID_RUN_ID $BRAID_NODE\" >> \"$COUNT\"; sleep {}; printf \"{{\\\"log\\\": [\\\"%s\\\"], \\\"total\\\": {}}}\" \"$BRAID_NODE\"']\n",
            count.display(),
            f64::from(ms * slow) / 1000.0,
            i + 1
        ));
    }
    y
}

/// How many times each node of each run ran, from the count file: run → node → executions.
pub(super) fn executions(count: &Path) -> BTreeMap<String, BTreeMap<String, usize>> {
    let mut n: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for line in std::fs::read_to_string(count).unwrap_or_default().lines() {
        let mut parts = line.split(' ');
        let (Some(run), Some(node)) = (parts.next(), parts.next()) else {
            panic!("a torn line in the count file: {line:?}");
        };
        *n.entry(run.to_owned())
            .or_default()
            .entry(node.to_owned())
            .or_default() += 1;
    }
    n
}

/// The final state of an uninterrupted single-process run of `file` (no store).
pub(super) fn single_process_state(file: &Path) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_braid"))
        .args(["run", file.to_str().unwrap(), "-q"])
        .env("NO_COLOR", "1")
        .env_remove("BRAID_STORE")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
