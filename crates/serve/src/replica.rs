//! A replica's loop: how a service (or a `braid worker`) shares its store's runs with the other
//! replicas pointed at it (`docs/scaling.md`).
//!
//! Two tasks, both under the runner's `owning` lock while they change or compare what this
//! replica owns:
//!
//! * **claims**: while there are free slots, claim up to that many queued runs (one statement)
//!   and run each, fenced with its epoch; when a claim finds fewer than asked, wait for a
//!   submission's wake-up (`LISTEN/NOTIFY` on PostgreSQL), a slot freeing, or the polling
//!   interval. A store that does not answer is retried with a growing pause, and nothing is
//!   claimed meanwhile.
//! * **heartbeats**: every third of the lease, one statement renews this replica's lease (and so
//!   every run it owns) and answers the runs the store says it owns. Those it runs but no longer
//!   owns (taken over by a cancel from another replica, or claimed by another after this one's
//!   lease expired) are dropped; those it owns but does not run (a claim whose answer was lost
//!   with its connection, a segment the store failed under) are taken up again. When no
//!   heartbeat went in for a whole lease (the store was unreachable, the process was paused),
//!   every run here is dropped first: another replica may have them by now.
//!
//! A run dropped writes nothing more: its task is aborted, and any write already on its way is
//! refused by the store's fence.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use braid::durable::{Claim, StoreHandle};
use tokio_util::sync::CancellationToken;

use crate::metrics;
use crate::runner::Runner;

/// How a service or worker takes part in sharing its store's runs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ReplicaConfig {
    /// This replica's id, unique among those sharing the store (default: host, process id and
    /// a random suffix).
    pub id: String,
    /// The lease's time to live (default 10 s): another replica takes this one's runs over
    /// this long after its last heartbeat. Heartbeats go every third of it.
    pub lease_ttl: Duration,
    /// How often the queue is looked at when no wake-up came (default 1 s): the fallback for
    /// wake-ups lost while a connection was down, and the only way a SQLite store's other
    /// processes learn of work.
    pub poll: Duration,
}

impl ReplicaConfig {
    /// The defaults, with a generated id.
    pub fn new() -> Self {
        ReplicaConfig {
            id: generated_id(),
            lease_ttl: Duration::from_secs(10),
            poll: Duration::from_secs(1),
        }
    }
}

impl Default for ReplicaConfig {
    fn default() -> Self {
        ReplicaConfig::new()
    }
}

/// `HOST-PID-XXXX`: readable in logs and in the store, unique across restarts.
fn generated_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "braid".to_owned());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{host}-{}-{:04x}", std::process::id(), nanos & 0xffff)
}

/// The longest a claim may take before it is given up (its answer may still come: then the
/// runs it took are owned and not run here, and the next heartbeat takes them up).
const CLAIM_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs the replica's loop until `stop`.
pub(crate) async fn run(runner: Arc<Runner>, config: ReplicaConfig, stop: CancellationToken) {
    let store = runner.durable().store().clone();
    tracing::info!(replica = %config.id, lease_ttl_ms = config.lease_ttl.as_millis() as u64, "sharing the store's runs as a replica");
    let renewed = Renewed(Mutex::new(Instant::now()));
    tokio::join!(
        claims(&runner, &store, &config, &renewed, &stop),
        heartbeats(&runner, &store, &config, &renewed, &stop),
    );
}

/// When this replica's lease was last renewed by a heartbeat, shared by its two tasks: the
/// claims wait while it is older than the lease, until the heartbeat has dropped the runs it
/// may have lost (a run claimed before that would be dropped with them, and its node in flight
/// run again).
struct Renewed(Mutex<Instant>);

impl Renewed {
    fn elapsed(&self) -> Duration {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .elapsed()
    }

    fn set(&self, at: Instant) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = at;
    }
}

/// A pause that doubles on each failure, from 100 ms to 5 s, and a log line per outage.
#[derive(Debug, Default)]
struct Backoff {
    failures: u32,
}

impl Backoff {
    fn failed(&mut self, what: &str, error: &dyn std::fmt::Display) -> Duration {
        if self.failures == 0 {
            tracing::warn!(error = %error, "{what} failed; retrying with a growing pause, claiming nothing meanwhile");
        } else {
            tracing::debug!(error = %error, failures = self.failures, "{what} failed again");
        }
        self.failures = self.failures.saturating_add(1);
        Duration::from_millis(100u64 << self.failures.min(6).saturating_sub(1))
            .min(Duration::from_secs(5))
    }

    fn succeeded(&mut self, what: &str) {
        if self.failures > 0 {
            tracing::info!(failures = self.failures, "{what} works again");
        }
        self.failures = 0;
    }
}

/// Sleeps `pause` unless `stop` comes first; `false` when it did.
async fn pause(pause: Duration, stop: &CancellationToken) -> bool {
    tokio::select! {
        () = tokio::time::sleep(pause) => true,
        () = stop.cancelled() => false,
    }
}

async fn claims(
    runner: &Arc<Runner>,
    store: &StoreHandle,
    config: &ReplicaConfig,
    renewed: &Renewed,
    stop: &CancellationToken,
) {
    let mut backoff = Backoff::default();
    loop {
        if stop.is_cancelled() {
            return;
        }
        let free = runner.free();
        if free > 0 {
            let owning = runner.owning.lock().await;
            if renewed.elapsed() > config.lease_ttl {
                drop(owning);
                if !pause(Duration::from_millis(50), stop).await {
                    return;
                }
                continue;
            }
            let claimed = tokio::time::timeout(
                CLAIM_TIMEOUT,
                store.claim(&config.id, free, config.lease_ttl),
            )
            .await;
            match claimed {
                Ok(Ok(claims)) => {
                    backoff.succeeded("claiming runs");
                    if !claims.is_empty() {
                        metrics::claimed(claims.len());
                    }
                    for claim in &claims {
                        runner.run_claimed(claim, false).await;
                    }
                    drop(owning);
                    if claims.len() == free {
                        // There may be more: claim again at once.
                        continue;
                    }
                }
                Ok(Err(e)) => {
                    drop(owning);
                    if !pause(backoff.failed("claiming runs", &e), stop).await {
                        return;
                    }
                    continue;
                }
                Err(_) => {
                    drop(owning);
                    let e = format!("no answer within {} s", CLAIM_TIMEOUT.as_secs());
                    if !pause(backoff.failed("claiming runs", &e), stop).await {
                        return;
                    }
                    continue;
                }
            }
        }
        tokio::select! {
            woken = store.wait_for_work(config.poll), if free > 0 => {
                if let Err(e) = woken
                    && !pause(backoff.failed("waiting for work", &e), stop).await
                {
                    return;
                }
            }
            () = runner.freed.notified(), if free == 0 => {}
            () = stop.cancelled() => return,
        }
    }
}

async fn heartbeats(
    runner: &Arc<Runner>,
    store: &StoreHandle,
    config: &ReplicaConfig,
    renewed: &Renewed,
    stop: &CancellationToken,
) {
    let every = (config.lease_ttl / 3).max(Duration::from_millis(10));
    let mut backoff = Backoff::default();
    loop {
        if !pause(every, stop).await {
            return;
        }
        let _owning = runner.owning.lock().await;
        if renewed.elapsed() > config.lease_ttl {
            // Another replica may own this one's runs by now: drop them all. Those this one
            // still owns come back below, once the store answers.
            let dropped = runner.drop_all("lease_lost");
            if dropped > 0 {
                tracing::warn!(
                    runs = dropped,
                    "no heartbeat went in for a whole lease; dropped the runs in flight here"
                );
            }
        }
        let sent = Instant::now();
        match tokio::time::timeout(
            every.max(Duration::from_secs(1)),
            store.heartbeat(&config.id),
        )
        .await
        {
            Ok(Ok(Some(owned))) => {
                metrics::heartbeat(true);
                backoff.succeeded("the heartbeat");
                renewed.set(sent);
                reconcile(runner, owned).await;
            }
            Ok(Ok(None)) => {
                // Not registered (it never claimed, or its row was deleted): register.
                metrics::heartbeat(true);
                match store.claim(&config.id, 0, config.lease_ttl).await {
                    Ok(_) => {
                        backoff.succeeded("the heartbeat");
                        renewed.set(sent);
                    }
                    Err(e) => {
                        let _ = backoff.failed("the heartbeat", &e);
                    }
                }
            }
            Ok(Err(e)) => {
                metrics::heartbeat(false);
                let _ = backoff.failed("the heartbeat", &e);
            }
            Err(_) => {
                metrics::heartbeat(false);
                let _ = backoff.failed("the heartbeat", &"no answer in time");
            }
        }
    }
}

/// Compares what runs here with what the store says this replica owns.
async fn reconcile(runner: &Arc<Runner>, owned: Vec<Claim>) {
    let here = runner.here();
    let ids: HashSet<&str> = owned.iter().map(|c| c.run.as_str()).collect();
    for run in &here {
        if !ids.contains(run.as_str()) && runner.still_running(run) {
            runner.drop_run(run, "taken");
        }
    }
    for claim in &owned {
        if !here.contains(&claim.run) && !runner.is_broken(&claim.run) {
            runner.run_claimed(claim, true).await;
        }
    }
}
