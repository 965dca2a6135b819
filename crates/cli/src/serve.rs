//! `braid serve DIR`: the `braid-serve` service behind a command line, and `braid worker`, a
//! replica without HTTP. The signals are here: SIGTERM and SIGINT drain and stop, SIGHUP
//! rescans the directory.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use braid_serve::{Config, ReplicaConfig, Service, Tokens, Worker};

use crate::{exit, output, telemetry};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The directory of workflow files (its `*.yaml` and `*.yml`; sub-directories hold the files
    /// they include).
    #[arg(required_unless_present = "openapi")]
    dir: Option<PathBuf>,
    /// The address to listen on. Loopback by default: put a proxy with TLS in front, or give
    /// tokens, before listening elsewhere.
    #[arg(long, default_value = "127.0.0.1:8088", value_name = "ADDR")]
    listen: SocketAddr,
    /// Where runs are kept: `sqlite:PATH`, `postgres://USER@HOST/DB`, or `memory` (nothing
    /// kept past the process).
    #[arg(
        long,
        env = "BRAID_STORE",
        default_value = "sqlite:braid-serve.db",
        value_name = "URL"
    )]
    store: String,
    /// A file of bearer tokens, one per line; requests without one get `401`. Tokens are also
    /// read from `BRAID_SERVE_TOKENS` (comma-separated).
    #[arg(long, value_name = "PATH")]
    tokens_file: Option<PathBuf>,
    /// The largest request body, in bytes.
    #[arg(long, default_value_t = 1 << 20, value_name = "BYTES")]
    max_body: usize,
    /// Runs in flight at once; beyond it, `429` with `Retry-After`.
    #[arg(long, default_value_t = 1024, value_name = "N")]
    max_runs: usize,
    /// An origin allowed by CORS (repeat it); none: CORS stays off.
    #[arg(long = "cors-origin", value_name = "ORIGIN")]
    cors_origins: Vec<String>,
    /// How long a shutdown waits for runs in flight; the rest stay recorded and resume at the
    /// next start.
    #[arg(long, default_value = "30s", value_parser = duration, value_name = "DURATION")]
    drain_timeout: Duration,
    /// How often the directory is rescanned besides file-system events (`0s`: never).
    #[arg(long, default_value = "2s", value_parser = duration, value_name = "DURATION")]
    poll: Duration,
    /// Do not resume the runs the store holds as `running` at start (a single process; replicas
    /// never do, their peers recover a dead one's runs).
    #[arg(long)]
    no_resume: bool,
    /// Do not serve the browser console at `/` (the API stays).
    #[arg(long)]
    no_console: bool,
    #[command(flatten)]
    replica: ReplicaArgs,
    /// Print the API's OpenAPI document and exit.
    #[arg(long)]
    openapi: bool,
}

/// How a process shares a store's runs with other replicas.
#[derive(Debug, clap::Args)]
pub(crate) struct ReplicaArgs {
    /// Share the store's runs with other replicas: `auto` (the default) does with a PostgreSQL
    /// store, which several processes can share, and not with SQLite or memory; `on` and `off`
    /// decide.
    #[arg(long, value_enum, default_value_t = Sharing::Auto, value_name = "WHEN")]
    shared: Sharing,
    #[command(flatten)]
    lease: LeaseArgs,
}

/// A replica's lease, id and claim poll: `braid serve` as a replica and `braid worker` alike.
#[derive(Debug, clap::Args)]
pub(crate) struct LeaseArgs {
    /// How long a replica's runs stay its own after its last heartbeat; then others take them
    /// over. Heartbeats go every third of it.
    #[arg(long, default_value = "10s", value_parser = duration, value_name = "DURATION")]
    lease_ttl: Duration,
    /// This replica's id, unique among those sharing the store (default: HOST-PID-XXXX).
    #[arg(long, value_name = "ID")]
    replica_id: Option<String>,
    /// How often the queue is looked at when no wake-up came.
    #[arg(long, default_value = "1s", value_parser = duration, value_name = "DURATION")]
    claim_poll: Duration,
}

impl LeaseArgs {
    fn config(&self) -> ReplicaConfig {
        let mut config = ReplicaConfig::new();
        if let Some(id) = &self.replica_id {
            config.id.clone_from(id);
        }
        config.lease_ttl = self.lease_ttl;
        config.poll = self.claim_poll;
        config
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Sharing {
    Auto,
    On,
    Off,
}

impl ReplicaArgs {
    /// The replica's configuration, if the store is shared.
    fn config(&self, store: &str) -> Option<ReplicaConfig> {
        let postgres = store.starts_with("postgres://") || store.starts_with("postgresql://");
        let shared = match self.shared {
            Sharing::Auto => postgres,
            Sharing::On => true,
            Sharing::Off => false,
        };
        shared.then(|| self.lease.config())
    }
}

/// `braid worker`.
#[derive(Debug, clap::Args)]
pub(crate) struct WorkerArgs {
    /// The store shared with the other replicas: `postgres://USER@HOST/DB` (or `sqlite:PATH`
    /// for several processes on one machine).
    #[arg(long, env = "BRAID_STORE", value_name = "URL")]
    store: String,
    /// Runs in flight at once: it claims no more.
    #[arg(long, default_value_t = 1024, value_name = "N")]
    max_runs: usize,
    /// How long a shutdown waits for runs in flight; the rest are handed back to the queue, for
    /// another replica to continue at once.
    #[arg(long, default_value = "30s", value_parser = duration, value_name = "DURATION")]
    drain_timeout: Duration,
    #[command(flatten)]
    lease: LeaseArgs,
}

pub(crate) fn worker(engine: &braid::Engine, args: &WorkerArgs) -> anyhow::Result<u8> {
    telemetry::init_metrics();
    let replica = args.lease.config();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let store = braid::durable::open_store(&args.store).await?;
        let worker = Worker::new(
            engine.clone(),
            store,
            replica,
            args.max_runs,
            args.drain_timeout,
        );
        output::err(&format!(
            "braid worker: replica {} on {}, up to {} runs at once\n",
            worker.id(),
            redact(&args.store),
            args.max_runs
        ));
        let stopped = worker.run(signals(None)).await;
        output::err(&format!(
            "braid worker: stopped ({} run(s) handed back to the queue)\n",
            stopped.handed_back
        ));
        Ok(exit::OK)
    })
}

fn duration(s: &str) -> Result<Duration, String> {
    braid::parse_duration(s).map_err(|e| e.to_string())
}

pub(crate) fn main(engine: &braid::Engine, args: &Args) -> anyhow::Result<u8> {
    if args.openapi {
        output::out(&format!("{}\n", braid_serve::openapi_json()))?;
        return Ok(exit::OK);
    }
    let Some(dir) = args.dir.clone() else {
        anyhow::bail!("give the directory of workflow files");
    };
    telemetry::init_metrics();
    let mut tokens = Tokens::from_env("BRAID_SERVE_TOKENS");
    if let Some(path) = &args.tokens_file {
        let from_file = Tokens::from_file(path)
            .with_context(|| format!("cannot read the tokens file `{}`", path.display()))?;
        tokens = tokens.and(from_file);
    }
    let mut config = Config::new(dir);
    config.tokens = tokens;
    config.max_body_bytes = args.max_body;
    config.max_runs = args.max_runs;
    config.cors_origins = args.cors_origins.clone();
    config.drain_timeout = args.drain_timeout;
    config.reload.poll_interval = (!args.poll.is_zero()).then_some(args.poll);
    config.resume_on_start = !args.no_resume;
    config.replica = args.replica.config(&args.store);
    config.console = !args.no_console;
    config.metrics = telemetry::prometheus();
    let config_replica = config.replica.clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let store = braid::durable::open_store(&args.store).await?;
        let service = Service::new(engine.clone(), store, config).await?;
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let addr = listener.local_addr()?;
        tracing::info!(%addr, store = %redact(&args.store), "braid serve listening");
        output::err(&format!("braid serve: listening on http://{addr}\n"));
        if let Some(replica) = &config_replica {
            output::err(&format!(
                "braid serve: replica {} sharing the store's runs (lease {} ms)\n",
                replica.id,
                replica.lease_ttl.as_millis()
            ));
        }
        let stopped = service
            .serve(listener, signals(Some(service.reloader())))
            .await?;
        if config_replica.is_some() {
            output::err(&format!(
                "braid serve: stopped ({} run(s) handed back to the queue)\n",
                stopped.handed_back
            ));
        } else {
            output::err(&format!(
                "braid serve: stopped ({} run(s) resumed at start, {} left to resume)\n",
                stopped.resumed, stopped.left_running
            ));
        }
        Ok(exit::OK)
    })
}

/// Resolves on SIGTERM or SIGINT; SIGHUP asks for a rescan (of a service's directory).
async fn signals(reloader: Option<braid_serve::Reloader>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => return,
            _ = tokio::signal::ctrl_c() => return,
            _ = hup.recv() => {
                if let Some(reloader) = &reloader {
                    tracing::info!("SIGHUP: rescanning the workflow directory");
                    reloader.reload();
                }
            }
        }
    }
}

/// A store URL without its password, for logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}
