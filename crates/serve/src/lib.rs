//! Braid as an HTTP service: the workflows of one directory, kept compiled and reloaded safely
//! as their files change, run durably through a JSON API with live event streams.
//!
//! A [`Service`] is built from a [`braid::Engine`] (with the embedding program's own node
//! handlers), a store ([`braid::durable::StoreHandle`]: SQLite, PostgreSQL or memory) and a
//! [`Config`]. Its [`router`](Service::router) is an axum `Router` to mount beside the program's
//! own routes; [`serve`](Service::serve) runs it on a listener with the file watcher, resumes
//! the runs a previous process left running, and drains on shutdown. `braid serve` is this crate
//! behind a command line.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use braid_serve::{Config, Service};
//!
//! let engine = braid::Engine::builder()
//!     .handler("shout", |_ctx| async { Ok(serde_json::json!({ "loud": "HI" })) })
//!     .build();
//! let store = braid::durable::open_store("sqlite:braid-serve.db").await?;
//! let service = Service::new(engine, store, Config::new("workflows")).await?;
//! let app = axum::Router::new()
//!     .route("/mine", axum::routing::get(|| async { "my own route" }))
//!     .merge(service.router());
//! # drop(app);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8088").await?;
//! service.serve(listener, async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```
//!
//! The modules, in the order a request meets them: `api` (routes, auth, limits), `registry`
//! (the served workflows) and `watch` (when to rescan), `runner` (runs in flight), `hub` (their
//! live events).

pub mod api;
mod auth;
mod hub;
pub mod metrics;
mod registry;
mod replica;
mod runner;
mod watch;

use std::future::{Future, IntoFuture};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use braid::Engine;
use braid::durable::{Durable, StoreHandle};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::{Mutex, mpsc};
use tokio_util::sync::CancellationToken;

pub use api::doc::ApiDoc;
pub use api::error::ApiError;
pub use auth::Tokens;
pub use registry::{Catalog, Entry, Outcome, Problem, Registry};
pub use replica::ReplicaConfig;
pub use watch::{ReloadConfig, Reloader};

/// How a service runs. [`Config::new`] gives the defaults.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// The directory of workflow files.
    pub dir: PathBuf,
    /// How changes to it are noticed.
    pub reload: ReloadConfig,
    /// Bearer tokens; none: no authentication (keep such a service on loopback).
    pub tokens: Tokens,
    /// The largest request body accepted, in bytes (default 1 MiB); larger ones get `413`.
    pub max_body_bytes: usize,
    /// Runs in flight at once in this process (default 1024); beyond it, `429` with
    /// `Retry-After`.
    pub max_runs: usize,
    /// Origins allowed by CORS; none (the default): no CORS headers at all.
    pub cors_origins: Vec<String>,
    /// How long a shutdown waits for runs in flight (default 30 s); the rest stay recorded
    /// `running`, for the next start to resume.
    pub drain_timeout: Duration,
    /// Resume, at start, the runs the store holds as `running` (default true): what a previous
    /// process left. Turn it off when several processes share a store. A replica (below) never
    /// does: its peers recover a dead replica's runs when its lease expires.
    pub resume_on_start: bool,
    /// Share the store's runs with other replicas (`docs/scaling.md`): runs are queued in the
    /// store and claimed by whichever replica has room; `None` (the default): this process runs
    /// what it starts.
    pub replica: Option<ReplicaConfig>,
    /// What `GET /metrics` renders; `None`: it answers an empty text.
    pub metrics: Option<PrometheusHandle>,
}

impl Config {
    /// The defaults, serving `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Config {
            dir: dir.into(),
            reload: ReloadConfig::default(),
            tokens: Tokens::default(),
            max_body_bytes: 1 << 20,
            max_runs: 1024,
            cors_origins: Vec::new(),
            drain_timeout: Duration::from_secs(30),
            resume_on_start: true,
            replica: None,
            metrics: None,
        }
    }
}

/// Why a service could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The workflow directory cannot be read.
    #[error("cannot read the workflow directory `{dir}`")]
    Dir {
        /// The directory.
        dir: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Serving failed (the listener broke).
    #[error("serving failed")]
    Io(#[from] std::io::Error),
}

/// What a service did by the time [`Service::serve`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped {
    /// Runs resumed at start.
    pub resumed: usize,
    /// Runs still in flight when the drain timeout expired: recorded `running`, to be resumed
    /// (by the next start, or, for a replica, at once by the others: see `handed_back`).
    pub left_running: usize,
    /// A replica's runs handed back to the queue as it stopped (its unfinished ones, for another
    /// replica to continue at once).
    pub handed_back: u64,
}

/// How often [`Service::watch`] runs the metrics recorder's upkeep.
pub const UPKEEP: Duration = Duration::from_secs(5);

/// A Braid service. See the crate docs.
pub struct Service {
    state: api::AppState,
    layers: api::Layers,
    config: Config,
    reloader: Reloader,
    triggers: Mutex<Option<mpsc::Receiver<()>>>,
    stop: CancellationToken,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Service {
    /// Builds a service and loads its directory once (an invalid file is served as invalid, not
    /// an error).
    ///
    /// # Errors
    ///
    /// [`ServeError::Dir`] when the directory cannot be listed.
    pub async fn new(
        engine: Engine,
        store: StoreHandle,
        config: Config,
    ) -> Result<Self, ServeError> {
        let registry = Arc::new(Registry::new(engine.clone(), config.dir.clone()));
        let r = registry.clone();
        tokio::task::spawn_blocking(move || r.rescan())
            .await
            .map_err(|e| ServeError::Io(std::io::Error::other(e.to_string())))?
            .map_err(|source| ServeError::Dir {
                dir: config.dir.clone(),
                source,
            })?;
        let hub = Arc::new(hub::Hub::default());
        let mut durable = Durable::new(engine.clone(), store).with_listener(hub.clone());
        if let Some(replica) = &config.replica {
            durable = durable.as_replica(replica.id.clone(), replica.lease_ttl);
        }
        let runner = runner::Runner::new(
            durable,
            hub,
            config.max_runs,
            config.replica.as_ref().map(|r| r.id.clone()),
        );
        let state = api::AppState::new(api::Shared {
            registry,
            runner,
            engine,
            tokens: config.tokens.clone(),
            metrics: config.metrics.clone(),
            draining: AtomicBool::new(false),
        });
        let (reloader, triggers) = watch::channel();
        Ok(Service {
            state,
            layers: api::Layers {
                max_body_bytes: config.max_body_bytes,
                cors_origins: config.cors_origins.clone(),
            },
            config,
            reloader,
            triggers: Mutex::new(Some(triggers)),
            stop: CancellationToken::new(),
        })
    }

    /// The API's router, to serve or to mount into a program's own.
    pub fn router(&self) -> axum::Router {
        api::router(self.state.clone(), &self.layers)
    }

    /// The workflows served.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.state.registry
    }

    /// Asks for a rescan of the directory (what SIGHUP does in `braid serve`).
    pub fn reloader(&self) -> Reloader {
        self.reloader.clone()
    }

    /// Watches the directory and reloads until the service stops ([`Service::serve`] runs it;
    /// a program that mounts the router runs it itself). Returns at once if already running.
    ///
    /// Beside it, it keeps [`Config::metrics`]'s recorder drained (its upkeep, every
    /// [`UPKEEP`]): a Prometheus recorder installed without its own upkeep task keeps every
    /// histogram sample (a few per run) until `/metrics` is scraped, so a service nobody
    /// scrapes would grow with its runs.
    pub async fn watch(&self) {
        let Some(triggers) = self.triggers.lock().await.take() else {
            return;
        };
        let upkeep = async {
            let Some(handle) = &self.config.metrics else {
                return;
            };
            let mut every = tokio::time::interval(UPKEEP);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = every.tick() => handle.run_upkeep(),
                    () = self.stop.cancelled() => return,
                }
            }
        };
        let watcher = watch::watch(
            self.state.registry.clone(),
            self.config.reload.clone(),
            self.reloader.clone(),
            triggers,
            self.stop.clone(),
        );
        tokio::join!(watcher, upkeep);
    }

    /// Resumes the runs the store holds as `running` (see [`Config::resume_on_start`]);
    /// returns how many.
    pub async fn recover(&self) -> usize {
        self.state.runner.recover().await
    }

    /// Stops starting runs, waits up to the drain timeout for those in flight, and stops the
    /// watcher; returns how many runs were still in flight (left recorded `running`).
    pub async fn drain(&self) -> usize {
        self.state.draining.store(true, Ordering::Release);
        let left = self.state.runner.drain(self.config.drain_timeout).await;
        self.stop.cancel();
        left
    }

    /// Serves on `listener` until `shutdown` resolves: resumes left-over runs first (when
    /// configured), watches the directory, then on shutdown stops accepting, drains the runs in
    /// flight up to the drain timeout, and returns.
    ///
    /// # Errors
    ///
    /// When the listener fails.
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<Stopped, ServeError> {
        let resumed = if self.config.resume_on_start && self.config.replica.is_none() {
            self.recover().await
        } else {
            0
        };
        let replica_stop = CancellationToken::new();
        let replica = async {
            if let Some(config) = &self.config.replica {
                replica::run(
                    self.state.runner.clone(),
                    config.clone(),
                    replica_stop.clone(),
                )
                .await;
            }
        };
        let (stop_accepting, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = axum::serve(listener, self.router())
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .into_future();
        let main = async {
            let mut server = std::pin::pin!(server);
            tokio::select! {
                r = &mut server => {
                    self.stop.cancel();
                    r?;
                    return Ok(0);
                }
                () = shutdown => {}
            }
            tracing::info!(
                runs = self.state.runner.in_flight(),
                "shutting down: draining the runs in flight"
            );
            self.state.draining.store(true, Ordering::Release);
            replica_stop.cancel();
            let _ = stop_accepting.send(());
            let grace = self.config.drain_timeout + Duration::from_secs(1);
            let (left, _) = tokio::join!(self.drain(), tokio::time::timeout(grace, &mut server));
            Ok::<_, ServeError>(left)
        };
        let (left, (), ()) = tokio::join!(main, self.watch(), replica);
        let left_running = left?;
        let handed_back = match &self.config.replica {
            Some(config) => hand_back(&self.state.runner, config).await,
            None => {
                if left_running > 0 {
                    tracing::warn!(
                        runs = left_running,
                        "drain timeout: runs left recorded as running; the next start resumes them"
                    );
                }
                0
            }
        };
        Ok(Stopped {
            resumed,
            left_running,
            handed_back,
        })
    }
}

/// A replica's end: drops the runs still here after the drain and hands back every run it owns,
/// so that another replica continues them at once rather than after the lease. Returns how many.
async fn hand_back(runner: &Arc<runner::Runner>, config: &ReplicaConfig) -> u64 {
    let dropped = runner.drop_all("stopping");
    runner.stopped().await;
    match runner.durable().store().release(&config.id).await {
        Ok(n) => {
            if n > 0 || dropped > 0 {
                tracing::info!(
                    runs = n,
                    "handed this replica's unfinished runs back to the queue"
                );
            }
            n
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot hand the runs back; other replicas take them when the lease expires");
            0
        }
    }
}

/// A replica that runs workflows without serving HTTP (`braid worker`): it claims queued runs
/// from its store while it has room, runs them on the definitions recorded under their
/// fingerprints, and hands back what it did not finish when it stops (`docs/scaling.md`).
#[derive(Debug)]
pub struct Worker {
    runner: Arc<runner::Runner>,
    replica: ReplicaConfig,
    drain_timeout: Duration,
}

impl Worker {
    /// A worker of `engine`'s kinds on `store`, running at most `max_runs` runs at once.
    pub fn new(
        engine: Engine,
        store: StoreHandle,
        replica: ReplicaConfig,
        max_runs: usize,
        drain_timeout: Duration,
    ) -> Self {
        let hub = Arc::new(hub::Hub::default());
        let durable = Durable::new(engine, store)
            .with_listener(hub.clone())
            .as_replica(replica.id.clone(), replica.lease_ttl);
        Worker {
            runner: runner::Runner::new(durable, hub, max_runs, Some(replica.id.clone())),
            replica,
            drain_timeout,
        }
    }

    /// This worker's replica id.
    pub fn id(&self) -> &str {
        &self.replica.id
    }

    /// Claims and runs until `shutdown` resolves; then stops claiming, waits up to the drain
    /// timeout for the runs in flight, and hands back the rest.
    pub async fn run(&self, shutdown: impl Future<Output = ()> + Send) -> Stopped {
        let stop = CancellationToken::new();
        let work = replica::run(self.runner.clone(), self.replica.clone(), stop.clone());
        let ending = async {
            shutdown.await;
            tracing::info!(
                runs = self.runner.in_flight(),
                "shutting down: draining the runs in flight"
            );
            stop.cancel();
            self.runner.drain(self.drain_timeout).await
        };
        let ((), left_running) = tokio::join!(work, ending);
        let handed_back = hand_back(&self.runner, &self.replica).await;
        Stopped {
            resumed: 0,
            left_running,
            handed_back,
        }
    }
}

/// The API's OpenAPI 3.1 document, pretty-printed (what `schemas/openapi.json` holds).
pub fn openapi_json() -> String {
    use utoipa::OpenApi as _;
    ApiDoc::openapi().to_pretty_json().unwrap_or_default()
}
