//! The commands of durable runs: `braid resume`, `braid retry` and `braid runs list|show|gc`
//! (and `braid run --store`, through [`open`] and [`announce`]). The state goes to stdout, the
//! summary to stderr, with the exit codes of `braid run`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use braid::durable::{Durable, Reply, RunFilter, RunRecord, RunState, Started};
use braid::{Engine, Event, FailureKind, NodeStatus, RunOptions};
use serde_json::{Value, json};

use crate::run::{Outputs, execute};
use crate::{exit, live, timeline, validate};

/// The store flag every durable command takes.
#[derive(Debug, clap::Args)]
pub(crate) struct StoreArg {
    /// The store the run is journaled in: `sqlite:PATH` or `postgres://USER@HOST/DB`.
    #[arg(long, env = "BRAID_STORE", value_name = "URL")]
    store: String,
}

#[derive(Debug, clap::Args)]
pub(crate) struct ResumeArgs {
    /// The run's id (`braid runs list` shows them).
    run_id: String,
    #[command(flatten)]
    store: StoreArg,
    /// The answer for the node the run waits at, as JSON (`true`, `{"approved": true}`; a bare
    /// word is taken as a string).
    #[arg(long, value_name = "JSON")]
    value: Option<String>,
    /// The waiting node the value answers, when the run waits at more than one.
    #[arg(long, value_name = "NODE", requires = "value")]
    node: Option<String>,
    #[command(flatten)]
    out: Outputs,
}

#[derive(Debug, clap::Args)]
pub(crate) struct RetryArgs {
    /// The run's id.
    run_id: String,
    #[command(flatten)]
    store: StoreArg,
    /// Run this node and everything downstream of it again, instead of the failed nodes.
    #[arg(long, value_name = "NODE")]
    from: Option<String>,
    #[command(flatten)]
    out: Outputs,
}

/// `braid runs …`
#[derive(Debug, clap::Subcommand)]
pub(crate) enum RunsCommand {
    /// List the runs in a store, newest first.
    List(ListArgs),
    /// Show a run as recorded: its report and state, rebuilt from its journal.
    Show(ShowArgs),
    /// Delete finished runs (succeeded, degraded, failed) that ended long enough ago.
    Gc(GcArgs),
}

#[derive(Debug, clap::Args)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    store: StoreArg,
    /// Only runs in this state: running, waiting, succeeded, degraded, failed, cancelled.
    #[arg(long, value_name = "STATE", value_parser = parse_state)]
    status: Option<RunState>,
    /// Only runs of this workflow (its `name:`).
    #[arg(long, value_name = "NAME")]
    workflow: Option<String>,
    /// At most this many.
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// One JSON array on stdout instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub(crate) struct ShowArgs {
    /// The run's id.
    run_id: String,
    #[command(flatten)]
    store: StoreArg,
    /// One JSON document on stdout (the record, the report and the state) instead of the
    /// state and a summary.
    #[arg(long)]
    json: bool,
    /// Draw the run's timeline, from its journal, as a self-contained HTML Gantt chart.
    #[arg(long, value_name = "FILE.html")]
    timeline: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub(crate) struct GcArgs {
    #[command(flatten)]
    store: StoreArg,
    /// Delete the finished runs that ended longer ago than this, such as `30d` or `12h`.
    #[arg(long, value_name = "DURATION", value_parser = parse_age)]
    older_than: Duration,
}

fn parse_state(s: &str) -> Result<RunState, String> {
    RunState::parse(s).ok_or_else(|| {
        let all: Vec<&str> = RunState::ALL.iter().map(|s| s.as_str()).collect();
        format!("`{s}` is not a run state: use one of {}", all.join(", "))
    })
}

/// A duration such as `30d`, `12h` or `90m` (days allowed, unlike in workflow files).
fn parse_age(s: &str) -> Result<Duration, String> {
    if let Some(days) = s.strip_suffix('d') {
        let n: u64 = days
            .parse()
            .map_err(|_| format!("`{s}` is not a duration: use `30d`, `12h`, `90m`"))?;
        return Ok(Duration::from_secs(n.saturating_mul(86_400)));
    }
    braid::parse_duration(s).map_err(|e| e.to_string())
}

/// Opens the store of a durable command.
pub(crate) async fn open(engine: Engine, url: &str) -> Result<Durable, braid::Error> {
    Ok(Durable::open(engine, url).await?)
}

/// Tells the user the run's id as soon as it is recorded: if this process dies, that is what
/// `braid resume` needs.
pub(crate) fn announce(started: &Started, durable: &Durable, quiet: bool) {
    if !quiet {
        crate::output::err(&format!(
            "run {} journaled in {}\n",
            started.run_id(),
            durable.store().location()
        ));
    }
}

/// A runtime for the commands that only read or write the store.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// Prints a durable error and gives its exit code: the user's mistake or a store problem.
fn refused(e: &braid::Error) -> u8 {
    crate::output::err(&format!("error: {e}\n"));
    exit::USAGE
}

/// How a run is continued.
enum Continue {
    Resume(Option<Reply>),
    Retry(Option<String>),
}

/// Reads the run's record and workflow first (so a wrong id or state is told before anything
/// runs), then continues it and runs it as `braid run` does.
fn continue_run(
    engine: &Engine,
    url: &str,
    run_id: &str,
    out: &Outputs,
    how: Continue,
) -> anyhow::Result<u8> {
    // One runtime for all of it: a store's connections live on the runtime that opened them.
    let rt = crate::run::runtime()?;
    let shown = rt.block_on(async {
        let durable = open(engine.clone(), url).await?;
        let shown = durable.show(run_id).await?;
        Ok::<_, braid::Error>((durable, shown))
    });
    let (durable, shown) = match shown {
        Ok(ok) => ok,
        Err(e) => return Ok(refused(&e)),
    };
    let plan = shown.workflow.plan().clone();
    let quiet = out.quiet;
    let id = run_id.to_owned();
    let code = execute(
        &rt,
        out,
        plan,
        RunOptions::default(),
        move |options| async move {
            let started = match how {
                Continue::Resume(reply) => durable.resume(&id, reply, options).await,
                Continue::Retry(from) => durable.retry(&id, from.as_deref(), options).await,
            }?;
            crate::durable::announce(&started, &durable, quiet);
            started.await
        },
    );
    match code {
        Err(e) => match e.downcast::<braid::Error>() {
            Ok(e) => Ok(refused(&e)),
            Err(e) => Err(e),
        },
        ok => ok,
    }
}

pub(crate) fn resume(engine: &Engine, args: &ResumeArgs) -> anyhow::Result<u8> {
    let reply = args.value.as_ref().map(|raw| Reply {
        node: args.node.clone(),
        value: serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.clone())),
    });
    continue_run(
        engine,
        &args.store.store,
        &args.run_id,
        &args.out,
        Continue::Resume(reply),
    )
}

pub(crate) fn retry(engine: &Engine, args: &RetryArgs) -> anyhow::Result<u8> {
    continue_run(
        engine,
        &args.store.store,
        &args.run_id,
        &args.out,
        Continue::Retry(args.from.clone()),
    )
}

pub(crate) fn runs(engine: &Engine, command: &RunsCommand) -> anyhow::Result<u8> {
    let rt = runtime()?;
    let done = rt.block_on(async {
        match command {
            RunsCommand::List(a) => list(engine, a).await,
            RunsCommand::Show(a) => show(engine, a).await,
            RunsCommand::Gc(a) => gc(engine, a).await,
        }
    });
    match done {
        Ok(code) => Ok(code),
        Err(Failed::Braid(e)) => Ok(refused(&e)),
        Err(Failed::Other(e)) => Err(e),
    }
}

/// A command's failure: a durable error (told plainly, exit 2), or another.
enum Failed {
    Braid(braid::Error),
    Other(anyhow::Error),
}

impl From<braid::Error> for Failed {
    fn from(e: braid::Error) -> Self {
        Failed::Braid(e)
    }
}

impl From<braid::durable::DurableError> for Failed {
    fn from(e: braid::durable::DurableError) -> Self {
        Failed::Braid(e.into())
    }
}

impl From<anyhow::Error> for Failed {
    fn from(e: anyhow::Error) -> Self {
        Failed::Other(e)
    }
}

fn micros_to_rfc3339(t: i64) -> String {
    let secs = t.div_euclid(1_000_000);
    let time = std::time::UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap_or(0));
    httpdate_like(time)
}

/// `YYYY-MM-DDTHH:MM:SSZ` (UTC), without a date crate: days from the civil calendar.
fn httpdate_like(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Howard Hinnant's days_from_civil, inverted.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

fn run_json(r: &RunRecord) -> Value {
    json!({
        "run_id": r.id,
        "workflow": r.workflow,
        "fingerprint": r.fingerprint,
        "status": r.state.as_str(),
        "created_at": micros_to_rfc3339(r.created_at),
        "updated_at": micros_to_rfc3339(r.updated_at),
        "ended_at": r.ended_at.map(micros_to_rfc3339),
        "restarts": r.restarts,
        "inputs": r.inputs,
        "error": r.error,
    })
}

async fn list(engine: &Engine, a: &ListArgs) -> Result<u8, Failed> {
    let durable = open(engine.clone(), &a.store.store).await?;
    let filter = RunFilter {
        workflow: a.workflow.clone(),
        state: a.status,
        before: None,
        limit: a.limit,
    };
    let runs = durable
        .store()
        .list_runs(&filter)
        .await
        .map_err(braid::durable::DurableError::from)?;
    if a.json {
        let list: Vec<Value> = runs.iter().map(run_json).collect();
        crate::output::out(&format!(
            "{}\n",
            serde_json::to_string_pretty(&list).map_err(anyhow::Error::from)?
        ))?;
        return Ok(exit::OK);
    }
    let wf_w = runs
        .iter()
        .map(|r| r.workflow.len())
        .max()
        .unwrap_or(8)
        .max(8);
    let mut text = format!(
        "{:<32}  {:<wf_w$}  {:<9}  {:<20}  {}\n",
        "run", "workflow", "status", "created", "restarts"
    );
    for r in &runs {
        text.push_str(&format!(
            "{:<32}  {:<wf_w$}  {:<9}  {:<20}  {}\n",
            r.id,
            r.workflow,
            r.state.as_str(),
            micros_to_rfc3339(r.created_at),
            r.restarts
        ));
    }
    crate::output::out(&text)?;
    Ok(exit::OK)
}

async fn show(engine: &Engine, a: &ShowArgs) -> Result<u8, Failed> {
    let durable = open(engine.clone(), &a.store.store).await?;
    let shown = durable.show(&a.run_id).await?;
    if let Some(path) = &a.timeline {
        let events = durable
            .store()
            .events(&a.run_id, 0, 0)
            .await
            .map_err(braid::durable::DurableError::from)?;
        let plan = shown.workflow.plan();
        let mut rec = live::Recorder::new(plan);
        for e in &events {
            if let Some(event) = event_of(e, shown.record.created_at) {
                rec.apply(&event);
            }
        }
        std::fs::write(path, timeline::html(&shown.result.report, &rec))
            .with_context(|| format!("cannot write `{}`", path.display()))?;
    }
    if a.json {
        let doc = json!({
            "run": run_json(&shown.record),
            "report": shown.result.report,
            "state": shown.result.state,
        });
        crate::output::out(&format!(
            "{}\n",
            serde_json::to_string_pretty(&doc).map_err(anyhow::Error::from)?
        ))?;
        return Ok(exit::OK);
    }
    crate::output::out(&format!(
        "{}\n",
        serde_json::to_string_pretty(&shown.result.state).map_err(anyhow::Error::from)?
    ))?;
    let r = &shown.record;
    crate::output::err(&format!(
        "run {} of `{}`: {} (created {}, restarts {})\n",
        r.id,
        r.workflow,
        r.state.as_str(),
        micros_to_rfc3339(r.created_at),
        r.restarts
    ));
    crate::output::err(&crate::run::summary(&shown.result, validate::color()));
    Ok(exit::OK)
}

/// A journaled event as the run's event (times from the run's creation).
fn event_of(e: &braid::durable::EventRecord, origin: i64) -> Option<Event> {
    use braid::durable::EventKind;
    let at = Duration::from_micros(u64::try_from(e.at.saturating_sub(origin)).unwrap_or(0));
    let node = || e.node.as_deref().map(std::sync::Arc::<str>::from);
    Some(match e.kind {
        EventKind::NodeStarted => Event::NodeStarted {
            node: node()?,
            attempt: e.attempt?,
            at,
        },
        EventKind::NodeRetrying => {
            let data = e.data.as_ref()?;
            Event::NodeRetrying {
                node: node()?,
                attempt: e.attempt?,
                failure: FailureKind::parse(data["kind"].as_str()?)?,
                message: data["message"].as_str()?.to_owned(),
                delay: Duration::from_millis(data["delay_ms"].as_u64()?),
                at,
            }
        }
        EventKind::NodeFinished => Event::NodeFinished {
            node: node()?,
            status: node_status(e.data.as_ref()?.as_str()?)?,
            at,
        },
        _ => return None,
    })
}

fn node_status(s: &str) -> Option<NodeStatus> {
    [
        NodeStatus::Succeeded,
        NodeStatus::FellBack,
        NodeStatus::Failed,
        NodeStatus::Skipped,
        NodeStatus::Cancelled,
        NodeStatus::NotStarted,
    ]
    .into_iter()
    .find(|n| n.as_str() == s)
}

async fn gc(engine: &Engine, a: &GcArgs) -> Result<u8, Failed> {
    let durable = open(engine.clone(), &a.store.store).await?;
    let age = i64::try_from(a.older_than.as_micros()).unwrap_or(i64::MAX);
    let cutoff = braid::durable::now_micros().saturating_sub(age);
    let n = durable
        .store()
        .gc(cutoff)
        .await
        .map_err(braid::durable::DurableError::from)?;
    crate::output::err(&format!(
        "deleted {n} finished run{} that ended before {}\n",
        if n == 1 { "" } else { "s" },
        micros_to_rfc3339(cutoff)
    ));
    Ok(exit::OK)
}
