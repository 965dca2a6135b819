//! Durable runs: a run journaled in a store as it goes, so that it outlives its process.
//!
//! [`Durable`] pairs an [`Engine`] with a [`StoreHandle`] (SQLite, PostgreSQL or memory; see
//! `braid_store`). [`Durable::start`] records the workflow's definition (every file, under its
//! fingerprint) and the run, then runs it with a journal as its observer: each node's end — its
//! status, attempts, timings, failure and **the writes it contributed** — is in the store before
//! any node that needs it starts, and the run's events are kept with a sequence number. No state
//! snapshot is ever stored: the writes, folded in canonical order, rebuild it exactly.
//!
//! * [`Durable::resume`] continues a run that did not finish (its process died, it was
//!   cancelled, or it waits at a `wait` node, with the answer): the nodes that settled keep their
//!   writes and never run again; a node that had started but whose end was not recorded runs
//!   again (its idempotency key, `RUN_ID:NODE`, is the same).
//! * [`Durable::retry`] re-runs a failed or degraded run's failed nodes (or one node) and
//!   everything downstream of them; the rest keeps its recorded writes.
//! * [`Durable::show`] rebuilds a run's state and report from its journal.
//! * [`Durable::submit`] queues a run for any replica sharing the store; a replica that
//!   claimed it ([`Store::claim`]) runs it with [`Durable::run_claimed`], every write fenced
//!   with the claim's epoch: once another replica claimed it since, the segment stops with
//!   [`DurableError::Fenced`] and writes nothing more (`docs/scaling.md`).
//!
//! A continued run always uses the definition recorded under its fingerprint, not what the file
//! says now, and the options it was started with (mode, seed, concurrency, timeout).

mod cache;
mod error;
mod journal;
mod recorded;
mod segment;

use std::sync::Arc;

pub use braid_store::{
    BoxFuture, Claim, Definition, DefinitionFile, Entry, EventKind, EventRecord, Micros, NewRun,
    NodeRecord, NodeState, Reopen, RunFilter, RunRecord, RunState, Store, StoreError, StoreHandle,
    Take, now_micros, open as open_store,
};
use serde_json::{Value, json};

use crate::{Engine, Error, PartialRun, RunOptions, Workflow};
pub use error::DurableError;
use error::fenced_or;
pub use journal::{Flush, Listener};
pub use recorded::RecordedRun;
pub use segment::Started;
use segment::{apply_options, encode_options};

/// An answer for a node that waits.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// The waiting node; `None`: the run's only waiting node.
    pub node: Option<String>,
    /// The answer: checked against the node's schema before anything is recorded.
    pub value: Value,
}

/// Starts, continues and reads durable runs: an engine (the kinds and reducers definitions are
/// compiled with) and a store. Cheap to clone.
#[derive(Clone)]
pub struct Durable {
    engine: Engine,
    store: StoreHandle,
    /// Definitions compiled, by fingerprint: a service resuming a thousand runs of one workflow
    /// compiles it once. Bounded (`cache`): every valid edit of a served file is a new one.
    compiled: Arc<cache::Bounded<Workflow>>,
    /// Fingerprints whose definitions this handle put in the store: a service starting ten
    /// thousand runs of one workflow writes its definition once. Only a hint: a `gc` may have
    /// deleted one since (it deletes definitions no run uses); the store then refuses the run
    /// as of an unknown definition, and [`Durable::start`] puts it again. Bounded as
    /// `compiled` is: one forgotten is put again, an idempotent write.
    stored: Arc<cache::Bounded<()>>,
    /// Told of every run's events as they happen.
    listener: Option<Arc<dyn Listener>>,
    /// The replica this handle acts for, if it is one ([`Durable::as_replica`]).
    replica: Option<Take>,
}

impl std::fmt::Debug for Durable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Durable")
            .field("store", &self.store.location())
            .finish_non_exhaustive()
    }
}

impl Durable {
    /// Durable runs of workflows compiled by `engine`, journaled in `store`.
    pub fn new(engine: Engine, store: StoreHandle) -> Self {
        Durable {
            engine,
            store,
            compiled: Arc::default(),
            stored: Arc::default(),
            listener: None,
            replica: None,
        }
    }

    /// Acts for `replica` (a service sharing the store with others, `docs/scaling.md`):
    /// [`resume`](Durable::resume) and [`retry`](Durable::retry) take the run over for it
    /// ([`Reopen::take`]) and fence every write of the segment with the epoch that gives, so a
    /// run continued from any replica is owned by the one continuing it, and recovered by
    /// another if that one dies. `ttl` is the replica's lease.
    #[must_use]
    pub fn as_replica(mut self, replica: impl Into<String>, ttl: std::time::Duration) -> Self {
        self.replica = Some(Take {
            replica: replica.into(),
            ttl,
        });
        self
    }

    /// Tells `listener` of the events of every run this handle starts or continues, as they
    /// happen (a service's live streams).
    #[must_use]
    pub fn with_listener(mut self, listener: Arc<dyn Listener>) -> Self {
        self.listener = Some(listener);
        self
    }

    /// Opens the store `url` names ([`braid_store::open`]).
    ///
    /// # Errors
    ///
    /// When the store cannot be opened; nothing is written then.
    pub async fn open(engine: Engine, url: &str) -> Result<Self, DurableError> {
        Ok(Durable::new(engine, braid_store::open(url).await?))
    }

    /// The store.
    pub fn store(&self) -> &StoreHandle {
        &self.store
    }

    /// Starts a durable run of `workflow`: records its definition and the run (id: `options.run_id`,
    /// or a new one), then runs it. Returns once the run is recorded, with its id; await the
    /// returned [`Started`] to run it.
    ///
    /// # Errors
    ///
    /// [`Error::Inputs`] when the inputs do not fit; [`DurableError::Store`] when the store
    /// refuses (a taken run id, a store that went away). Nothing runs then.
    pub async fn start(
        &self,
        workflow: &Workflow,
        inputs: Value,
        mut options: RunOptions,
    ) -> Result<Started, Error> {
        let (id, inputs) = self.create(workflow, inputs, &mut options, false).await?;
        Ok(self.segment(workflow.clone(), None, inputs, id, 0, options, None, None))
    }

    /// Queues a run of `workflow` for any replica sharing the store ([`Store::submit`]):
    /// records its definition and the run, `running` and owned by no one, and wakes waiting
    /// claimers. Returns its id; a replica runs it with [`Durable::run_claimed`] once it
    /// claimed it. `options` gives what is recorded (id, mode, seed, concurrency, timeout).
    ///
    /// # Errors
    ///
    /// As [`Durable::start`]; a store without a queue answers [`StoreError::Unsupported`].
    pub async fn submit(
        &self,
        workflow: &Workflow,
        inputs: Value,
        mut options: RunOptions,
    ) -> Result<String, Error> {
        Ok(self.create(workflow, inputs, &mut options, true).await?.0)
    }

    /// Runs a run this replica claimed ([`Store::claim`]), under the claim's epoch: every
    /// write of the segment (each node end, the run's end, the reopen) is fenced. A run never
    /// started runs from its start; one another replica had begun continues from its journal as
    /// [`Durable::resume`] does (what settled is not run again). `options` gives only what is
    /// not recorded (events, cancel token).
    ///
    /// When another replica claims the run meanwhile (this one's lease expired), the next
    /// write is refused and the segment ends with [`DurableError::Fenced`]: drop the run.
    ///
    /// # Errors
    ///
    /// [`DurableError::Fenced`] when it was claimed again before this started;
    /// [`DurableError::WrongState`] for a run that is not `running`; as [`Durable::resume`].
    pub async fn run_claimed(
        &self,
        claim: &Claim,
        mut options: RunOptions,
    ) -> Result<Started, Error> {
        let record = self.record(&claim.run).await?;
        if record.state != RunState::Running {
            return Err(DurableError::WrongState {
                run: record.id,
                state: record.state,
                hint: "only a running run is claimed; it ended or waits since",
            }
            .into());
        }
        if record.next_seq == 0 && record.restarts == 0 {
            // Never started (a run's first segment journals its `run_started` event first).
            let workflow = self.definition(&record).await?;
            apply_options(&record.options, &mut options);
            return Ok(self.segment(
                workflow,
                None,
                record.inputs,
                record.id,
                0,
                options,
                None,
                Some(claim.epoch),
            ));
        }
        self.continue_run(record, None, options, Some(claim.epoch))
            .await
    }

    /// Records the definition (once per handle) and a new run, queued or not; returns its id
    /// and resolved inputs.
    async fn create(
        &self,
        workflow: &Workflow,
        inputs: Value,
        options: &mut RunOptions,
        queued: bool,
    ) -> Result<(String, Value), Error> {
        let inputs = workflow.inputs(inputs)?;
        let fingerprint = workflow.fingerprint().to_string();
        let plan = workflow.plan();
        let def = Definition {
            fingerprint: fingerprint.clone(),
            workflow: plan.name().to_string(),
            files: workflow
                .files()
                .iter()
                .map(|f| DefinitionFile {
                    key: f.key.clone(),
                    text: f.text.to_string(),
                })
                .collect(),
        };
        if !self.is_stored(&fingerprint) {
            self.put_definition(&def).await?;
        }
        let id = match options.run_id.take() {
            Some(id) => id.to_string(),
            None => braid_core::RunId::default().get().to_string(),
        };
        let new = NewRun {
            id: id.clone(),
            workflow: plan.name().to_string(),
            fingerprint,
            inputs: inputs.clone(),
            options: encode_options(options),
            created_at: braid_store::now_micros(),
        };
        let create = || async {
            if queued {
                self.store.submit(&new).await
            } else {
                self.store.create_run(&new).await
            }
        };
        match create().await {
            Err(StoreError::UnknownDefinition { .. }) => {
                // Collected since this handle put it: put it again, once.
                self.put_definition(&def).await?;
                create().await.map_err(DurableError::from)?;
            }
            created => created.map_err(DurableError::from)?,
        }
        Ok((id, inputs))
    }

    /// Continues a run that did not finish: its process died (it is still `running` in the
    /// store), it was cancelled, or it waits at a `wait` node (give the answer in `reply`). The
    /// nodes that settled keep their writes and never run again; the rest runs, on the
    /// definition and options the run was started with. `options` gives only the events, the
    /// cancel token and what else is not recorded.
    ///
    /// Do not resume a run that is still running in another process: both would run its
    /// remaining nodes (only one's records would stay).
    ///
    /// # Errors
    ///
    /// [`DurableError::WrongState`] for a finished run, [`DurableError::Answer`] for a reply that
    /// does not fit (or none where one is needed), and store errors: nothing changed then.
    pub async fn resume(
        &self,
        run_id: &str,
        reply: Option<Reply>,
        options: RunOptions,
    ) -> Result<Started, Error> {
        let record = self.record(run_id).await?;
        self.continue_run(record, reply, options, None).await
    }

    /// Continues `record` ([`Durable::resume`]), fenced with `epoch` if given.
    async fn continue_run(
        &self,
        record: RunRecord,
        reply: Option<Reply>,
        mut options: RunOptions,
        epoch: Option<u64>,
    ) -> Result<Started, Error> {
        let run_id = record.id.as_str();
        match record.state {
            RunState::Running | RunState::Waiting | RunState::Cancelled => {}
            RunState::Succeeded | RunState::Degraded => {
                return Err(DurableError::WrongState {
                    run: record.id,
                    state: record.state,
                    hint: "it finished; there is nothing to resume (`braid retry --from NODE` runs part of it again)",
                }
                .into());
            }
            RunState::Failed => {
                return Err(DurableError::WrongState {
                    run: record.id,
                    state: record.state,
                    hint: "it finished; `braid retry` runs its failed nodes again",
                }
                .into());
            }
        }
        let workflow = self.definition(&record).await?;
        let nodes = self.store.nodes(run_id).await.map_err(DurableError::from)?;
        let answers = recorded::answers(&record, &workflow, &nodes, reply)?;
        let from = match epoch {
            // A claimed run is `running`; any other state means it ended or stopped since.
            Some(_) => vec![RunState::Running],
            None => vec![RunState::Running, RunState::Waiting, RunState::Cancelled],
        };
        let priors = recorded::priors(&nodes, |_| true)?;
        let partial = PartialRun::new(workflow.plan().clone(), priors).map_err(|e| {
            DurableError::Journal {
                run: record.id.clone(),
                message: e.to_string(),
            }
        })?;
        // A claimed run is owned already; one continued by a replica is taken over.
        let take = if epoch.is_none() {
            self.replica.clone()
        } else {
            None
        };
        let reopened = self
            .store
            .reopen(&Reopen {
                run: record.id.clone(),
                from,
                reset: Vec::new(),
                at: braid_store::now_micros(),
                epoch,
                take: take.clone(),
            })
            .await
            .map_err(|e| fenced_or(&record.id, e))?;
        let epoch = epoch.or(take.map(|_| reopened.epoch));
        apply_options(&record.options, &mut options);
        recorded::give_answers(&mut options, answers);
        let note = json!({ "resumed": reopened.restarts });
        Ok(self.segment(
            workflow,
            Some(partial),
            record.inputs,
            record.id,
            reopened.next_seq,
            options,
            Some(note),
            epoch,
        ))
    }

    /// Cancels a run wherever it is: running on another replica, waiting, or queued. Takes it over
    /// for this handle's replica ([`Durable::as_replica`]) — from then on every write of the
    /// replica that ran it is refused, and that replica drops it — then records it `cancelled`
    /// with a `run_finished` event, keeping what settled (resume it to go on). The nodes that
    /// were in flight elsewhere have no record: they run again on a resume. (A run in flight in
    /// this process is better cancelled through its token: its nodes in flight then settle as
    /// `cancelled`.)
    ///
    /// # Errors
    ///
    /// [`DurableError::WrongState`] unless the run is running or waiting;
    /// [`StoreError::Unsupported`] for a handle that is not a replica's; store errors.
    pub async fn cancel_taken(&self, run_id: &str) -> Result<RunRecord, Error> {
        let record = self.record(run_id).await?;
        let from = vec![RunState::Running, RunState::Waiting];
        if !from.contains(&record.state) {
            return Err(DurableError::WrongState {
                run: record.id,
                state: record.state,
                hint: "only a running or waiting run is cancelled",
            }
            .into());
        }
        let Some(take) = self.replica.clone() else {
            return Err(DurableError::from(
                self.store.unsupported("cancelling runs of other processes"),
            )
            .into());
        };
        let at = braid_store::now_micros();
        let reopened = self
            .store
            .reopen(&Reopen {
                run: record.id.clone(),
                from,
                reset: Vec::new(),
                at,
                epoch: None,
                take: Some(take.clone()),
            })
            .await
            .map_err(|e| fenced_or(&record.id, e))?;
        let message = format!("cancelled through replica `{}`", take.replica);
        let end = vec![
            Entry::Fence {
                run: record.id.clone(),
                epoch: reopened.epoch,
            },
            Entry::Events {
                run: record.id.clone(),
                events: vec![EventRecord {
                    seq: reopened.next_seq,
                    at,
                    kind: EventKind::RunFinished,
                    node: None,
                    attempt: None,
                    data: Some(Value::from("cancelled")),
                }],
            },
            Entry::End {
                run: record.id.clone(),
                state: RunState::Cancelled,
                error: Some(json!({ "kind": "cancelled", "message": message })),
                at,
            },
        ];
        self.store
            .append(end)
            .await
            .map_err(|e| fenced_or(&record.id, e))?;
        Ok(self.record(run_id).await?)
    }

    /// Retries a failed or degraded run: its failed and fallen-back nodes and everything
    /// downstream of them run again; every other node keeps its recorded writes. With `from`,
    /// that node and everything downstream of it run again instead (also in a run that
    /// succeeded).
    ///
    /// # Errors
    ///
    /// [`DurableError::WrongState`] for a run that did not finish (resume it),
    /// [`DurableError::UnknownNode`], [`DurableError::NothingToRetry`], and store errors:
    /// nothing changed then.
    pub async fn retry(
        &self,
        run_id: &str,
        from: Option<&str>,
        mut options: RunOptions,
    ) -> Result<Started, Error> {
        let record = self.record(run_id).await?;
        let allowed: &[RunState] = if from.is_some() {
            &[RunState::Failed, RunState::Degraded, RunState::Succeeded]
        } else {
            &[RunState::Failed, RunState::Degraded]
        };
        if !allowed.contains(&record.state) {
            return Err(DurableError::WrongState {
                run: record.id,
                state: record.state,
                hint: if record.state == RunState::Succeeded {
                    "every node succeeded; `--from NODE` runs one node and what follows it again"
                } else {
                    "it has not finished; `braid resume` continues it"
                },
            }
            .into());
        }
        let workflow = self.definition(&record).await?;
        let plan = workflow.plan();
        let nodes = self.store.nodes(run_id).await.map_err(DurableError::from)?;
        let seeds: Vec<String> = match from {
            Some(node) => {
                if plan.node_by_name(node).is_none() {
                    return Err(DurableError::UnknownNode {
                        run: record.id,
                        workflow: plan.name().to_string(),
                        node: node.to_owned(),
                    }
                    .into());
                }
                vec![node.to_owned()]
            }
            None => nodes
                .iter()
                .filter(|n| !n.state.carries_over() || n.state == NodeState::FellBack)
                .map(|n| n.node.clone())
                .collect(),
        };
        if seeds.is_empty() {
            return Err(DurableError::NothingToRetry { run: record.id }.into());
        }
        let rerun = recorded::downstream(plan, &seeds);
        let priors = recorded::priors(&nodes, |n| !rerun.contains(n))?;
        let partial = PartialRun::new(plan.clone(), priors).map_err(|e| DurableError::Journal {
            run: record.id.clone(),
            message: e.to_string(),
        })?;
        let reset: Vec<String> = nodes
            .iter()
            .filter(|n| rerun.contains(&n.node))
            .map(|n| n.node.clone())
            .collect();
        let reopened = self
            .store
            .reopen(&Reopen {
                run: record.id.clone(),
                from: allowed.to_vec(),
                reset,
                at: braid_store::now_micros(),
                epoch: None,
                take: self.replica.clone(),
            })
            .await
            .map_err(DurableError::from)?;
        let epoch = self.replica.as_ref().map(|_| reopened.epoch);
        apply_options(&record.options, &mut options);
        let mut again: Vec<&String> = rerun.iter().collect();
        again.sort();
        let note = json!({ "retry": reopened.restarts, "from": from, "nodes": again });
        Ok(self.segment(
            workflow,
            Some(partial),
            record.inputs,
            record.id,
            reopened.next_seq,
            options,
            Some(note),
            epoch,
        ))
    }

    /// A run as its journal records it: the record, the state its writes fold into, and a
    /// report rebuilt from its nodes' records (times from the run's creation).
    ///
    /// # Errors
    ///
    /// An unknown run, a definition that does not compile here, a damaged journal, a store
    /// error.
    pub async fn show(&self, run_id: &str) -> Result<RecordedRun, Error> {
        let record = self.record(run_id).await?;
        let workflow = self.definition(&record).await?;
        let nodes = self.store.nodes(run_id).await.map_err(DurableError::from)?;
        Ok(recorded::rebuild(record, &workflow, &nodes)?)
    }

    /// Whether this handle put the definition under `fingerprint`.
    fn is_stored(&self, fingerprint: &str) -> bool {
        self.stored.contains(fingerprint)
    }

    /// Puts `def` in the store, and remembers it did.
    async fn put_definition(&self, def: &Definition) -> Result<(), DurableError> {
        self.store.put_definition(def).await?;
        self.stored.insert(def.fingerprint.clone(), ());
        Ok(())
    }

    /// The run's record.
    async fn record(&self, run_id: &str) -> Result<RunRecord, DurableError> {
        self.store
            .run(run_id)
            .await?
            .ok_or_else(|| StoreError::UnknownRun {
                run: run_id.to_owned(),
            })
            .map_err(DurableError::from)
    }

    /// The run's workflow, compiled from the definition recorded under its fingerprint.
    async fn definition(&self, record: &RunRecord) -> Result<Workflow, DurableError> {
        if let Some(w) = self.cached(&record.fingerprint) {
            return Ok(w);
        }
        let def = self
            .store
            .definition(&record.fingerprint)
            .await?
            .ok_or_else(|| StoreError::UnknownDefinition {
                fingerprint: record.fingerprint.clone(),
            })?;
        let name = format!(
            "{} (recorded {})",
            record.workflow,
            short(&record.fingerprint)
        );
        let workflow = self
            .engine
            .load_recorded(
                &name,
                def.files.iter().map(|f| (f.key.as_str(), f.text.as_str())),
            )
            .map_err(|e| DurableError::Definition {
                run: record.id.clone(),
                workflow: record.workflow.clone(),
                fingerprint: record.fingerprint.clone(),
                message: e.to_string(),
            })?;
        if workflow.fingerprint().to_string() != record.fingerprint {
            return Err(DurableError::Journal {
                run: record.id.clone(),
                message: format!(
                    "its recorded files hash to {}, not to the fingerprint recorded, {}",
                    workflow.fingerprint(),
                    record.fingerprint
                ),
            });
        }
        self.compiled
            .insert(record.fingerprint.clone(), workflow.clone());
        Ok(workflow)
    }

    /// The workflow compiled from the definition under `fingerprint`, if it was.
    fn cached(&self, fingerprint: &str) -> Option<Workflow> {
        self.compiled.get(fingerprint)
    }
}

/// The first 12 hex digits of a fingerprint, for names.
fn short(fingerprint: &str) -> &str {
    fingerprint.get(..12).unwrap_or(fingerprint)
}
