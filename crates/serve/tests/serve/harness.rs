//! A service on a loopback port over a temporary directory of workflow files, and a client.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use braid_serve::{Config, Service, Stopped};
use reqwest::StatusCode;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long a test waits for something that should happen soon.
pub(crate) const PATIENCE: Duration = Duration::from_secs(20);

/// A workflow of two mock nodes, 300 ms each; `out` says which version ran.
pub(crate) fn slow(name: &str, version: &str) -> String {
    format!(
        r#"version: 1
name: {name}
inputs:
  tag: {{ type: string, default: t }}
state:
  out: {{ reducer: replace }}
  more: {{ reducer: replace }}
nodes:
  first:
    kind: mock
    writes: [out]
    with: {{ latency: 300ms, output: {{ out: "{version} {{{{ inputs.tag }}}}" }} }}
  second:
    kind: mock
    needs: [first]
    writes: [more]
    with: {{ latency: 300ms, output: {{ more: 1 }} }}
"#
    )
}

/// A workflow of one instant node writing `out: VERSION`.
pub(crate) fn quick(name: &str, version: &str) -> String {
    format!(
        "version: 1\nname: {name}\nstate:\n  out: {{ reducer: replace }}\nnodes:\n  only:\n    kind: mock\n    writes: [out]\n    with: {{ output: {{ out: {version} }} }}\n"
    )
}

pub(crate) struct Server {
    pub base: String,
    pub client: reqwest::Client,
    pub dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<Stopped, braid_serve::ServeError>>>,
}

impl Server {
    /// Serves `files` (name, text) with a memory store.
    pub(crate) async fn start(files: &[(&str, &str)]) -> Server {
        Server::start_with(files, |_| {}).await
    }

    pub(crate) async fn start_with(
        files: &[(&str, &str)],
        tweak: impl FnOnce(&mut Config),
    ) -> Server {
        Server::start_on("memory", files, tweak).await
    }

    /// Serves `files` with the store `url` (`{dir}` in it: the served directory).
    pub(crate) async fn start_on(
        url: &str,
        files: &[(&str, &str)],
        tweak: impl FnOnce(&mut Config),
    ) -> Server {
        Server::start_full(braid::Engine::new(), url, files, tweak).await
    }

    /// Serves `files` with the node handlers of `engine` and the store `url`.
    pub(crate) async fn start_full(
        engine: braid::Engine,
        url: &str,
        files: &[(&str, &str)],
        tweak: impl FnOnce(&mut Config),
    ) -> Server {
        // reqwest is built without a TLS provider of its own; plain HTTP still asks for one.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().expect("temp dir");
        for (name, text) in files {
            write(&dir.path().join(name), text);
        }
        let mut config = Config::new(dir.path());
        config.reload.poll_interval = Some(Duration::from_millis(200));
        config.reload.debounce = Duration::from_millis(50);
        config.drain_timeout = Duration::from_secs(10);
        config.metrics = Some(recorder());
        tweak(&mut config);
        let url = url.replace("{dir}", &dir.path().display().to_string());
        let store = braid::durable::open_store(&url)
            .await
            .expect("the store opens");
        let service = Service::new(engine, store, config).await.expect("service");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            service
                .serve(listener, async move {
                    let _ = stopped.await;
                })
                .await
        });
        Server {
            base,
            client: reqwest::Client::new(),
            dir,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub(crate) fn write(&self, name: &str, text: &str) {
        write(&self.path(name), text);
    }

    pub(crate) async fn get(&self, path: &str) -> (StatusCode, Value) {
        let r = self.client.get(self.url(path)).send().await.expect("GET");
        json(r).await
    }

    pub(crate) async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let r = self
            .client
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .expect("POST");
        json(r).await
    }

    /// Starts a run and answers its id.
    pub(crate) async fn start_run(&self, workflow: &str, inputs: Value) -> String {
        let (status, body) = self
            .post(
                &format!("/v1/workflows/{workflow}/runs"),
                serde_json::json!({ "inputs": inputs }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["run_id"].as_str().expect("run_id").to_owned()
    }

    /// Waits until the run is no longer `running`, and answers it.
    pub(crate) async fn finished(&self, run: &str) -> Value {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let (_, body) = self.get(&format!("/v1/runs/{run}")).await;
            if body["status"] != "running" {
                return body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "run {run} still running: {body}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops it (as SIGTERM does) and answers what it did.
    pub(crate) async fn stop(mut self) -> Stopped {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let task = self.task.take().expect("running");
        tokio::time::timeout(PATIENCE, task)
            .await
            .expect("stops in time")
            .expect("joins")
            .expect("serves")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub(crate) fn write(path: &std::path::Path, text: &str) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(path, text).expect("write");
}

pub(crate) async fn json(r: reqwest::Response) -> (StatusCode, Value) {
    let status = r.status();
    let text = r.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

/// Polls `check` until it holds, or fails the test after [`PATIENCE`].
pub(crate) async fn eventually<F, Fut>(mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The test binary's Prometheus recorder, installed once.
fn recorder() -> metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> =
        std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            metrics_exporter_prometheus::PrometheusBuilder::new()
                .install_recorder()
                .expect("one recorder")
        })
        .clone()
}
