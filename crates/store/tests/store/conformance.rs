//! The conformance suite: what every store must do, as the `Store` trait's docs say it. Each
//! backend's tests run it on a fresh, empty store.

use std::sync::Arc;

use std::time::Duration;

use braid_store::{
    Claim, Entry, EventKind, NodeState, Reopen, RunFilter, RunState, StoreError, StoreHandle, Take,
};
use serde_json::json;

use crate::common::{definition, event, fingerprint, new_run, node};

/// Runs every check on `store`, which must be empty.
pub(crate) async fn suite(store: StoreHandle) {
    definitions(&store).await;
    create_runs(&store).await;
    appends(&store).await;
    atomic_batches(&store).await;
    concurrent_batches(&store).await;
    ends_and_reopens(&store).await;
    listing(&store).await;
    collecting(&store).await;
    shared_work(&store).await;
}

async fn definitions(store: &StoreHandle) {
    let fp = fingerprint(1);
    assert_eq!(store.definition(&fp).await.unwrap(), None);
    let def = definition(&fp);
    store.put_definition(&def).await.unwrap();
    assert_eq!(store.definition(&fp).await.unwrap(), Some(def.clone()));
    // Put again with other content: the one recorded stays.
    let mut other = def.clone();
    other.workflow = "renamed".to_owned();
    store.put_definition(&other).await.unwrap();
    assert_eq!(store.definition(&fp).await.unwrap(), Some(def));
}

async fn create_runs(store: &StoreHandle) {
    let fp = fingerprint(1);
    let unknown = new_run("r-unknown-def", &fingerprint(999), 10);
    assert_eq!(
        store.create_run(&unknown).await,
        Err(StoreError::UnknownDefinition {
            fingerprint: fingerprint(999)
        })
    );
    assert_eq!(store.run("r-unknown-def").await.unwrap(), None);

    let run = new_run("r1", &fp, 100);
    store.create_run(&run).await.unwrap();
    let record = store.run("r1").await.unwrap().unwrap();
    assert_eq!(record.id, "r1");
    assert_eq!(record.workflow, "mode1");
    assert_eq!(record.fingerprint, fp);
    assert_eq!(record.inputs, run.inputs);
    assert_eq!(record.options, run.options);
    assert_eq!(record.state, RunState::Running);
    assert_eq!((record.created_at, record.updated_at), (100, 100));
    assert_eq!(record.ended_at, None);
    assert_eq!(record.error, None);
    assert_eq!((record.restarts, record.next_seq), (0, 0));

    let mut again = new_run("r1", &fp, 200);
    again.inputs = json!({ "other": true });
    assert!(matches!(
        store.create_run(&again).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.run("r1").await.unwrap().unwrap(), record);
    assert!(store.nodes("r1").await.unwrap().is_empty());
    assert!(store.events("r1", 0, 0).await.unwrap().is_empty());
}

async fn appends(store: &StoreHandle) {
    let rag = node(
        "rag",
        NodeState::Succeeded,
        json!({ "rag_results": [1, 2] }),
    );
    store
        .append(vec![
            Entry::Events {
                run: "r1".into(),
                events: vec![
                    event(0, EventKind::RunStarted, None),
                    event(1, EventKind::NodeStarted, Some("rag")),
                ],
            },
            Entry::Node {
                run: "r1".into(),
                record: rag.clone(),
            },
            Entry::Events {
                run: "r1".into(),
                events: vec![event(2, EventKind::NodeFinished, Some("rag"))],
            },
        ])
        .await
        .unwrap();
    assert_eq!(store.nodes("r1").await.unwrap(), vec![rag.clone()]);
    let events = store.events("r1", 0, 0).await.unwrap();
    assert_eq!(
        events,
        vec![
            event(0, EventKind::RunStarted, None),
            event(1, EventKind::NodeStarted, Some("rag")),
            event(2, EventKind::NodeFinished, Some("rag")),
        ]
    );
    assert_eq!(store.run("r1").await.unwrap().unwrap().next_seq, 3);
    // Paging.
    assert_eq!(
        store.events("r1", 1, 1).await.unwrap(),
        events[1..2].to_vec()
    );
    assert_eq!(
        store.events("r1", 2, 0).await.unwrap(),
        events[2..].to_vec()
    );
    assert!(store.events("r1", 3, 0).await.unwrap().is_empty());
    assert!(store.events("no-such-run", 0, 0).await.unwrap().is_empty());

    // A node that runs again replaces its record.
    let mut failed = node("rag", NodeState::Failed, json!({}));
    failed.attempts = 3;
    failed.failure = Some(json!({ "kind": "timeout", "message": "800ms" }));
    failed.started_at = None;
    store
        .append(vec![Entry::Node {
            run: "r1".into(),
            record: failed.clone(),
        }])
        .await
        .unwrap();
    store
        .append(vec![Entry::Node {
            run: "r1".into(),
            record: rag.clone(),
        }])
        .await
        .unwrap();
    assert_eq!(store.nodes("r1").await.unwrap(), vec![rag.clone()]);
    store
        .append(vec![Entry::Node {
            run: "r1".into(),
            record: failed.clone(),
        }])
        .await
        .unwrap();
    assert_eq!(store.nodes("r1").await.unwrap(), vec![failed]);
    store
        .append(vec![Entry::Node {
            run: "r1".into(),
            record: rag,
        }])
        .await
        .unwrap();
    // An empty batch is a no-op.
    store.append(Vec::new()).await.unwrap();
}

async fn atomic_batches(store: &StoreHandle) {
    let before_nodes = store.nodes("r1").await.unwrap();
    let before_run = store.run("r1").await.unwrap().unwrap();
    let llm = node("llm", NodeState::Succeeded, json!({ "response": "hi" }));

    // Events out of sequence (a gap): nothing of the batch is applied.
    let gap = store
        .append(vec![
            Entry::Node {
                run: "r1".into(),
                record: llm.clone(),
            },
            Entry::Events {
                run: "r1".into(),
                events: vec![event(5, EventKind::NodeStarted, Some("llm"))],
            },
        ])
        .await;
    assert!(matches!(gap, Err(StoreError::Conflict(_))), "{gap:?}");
    // A repeat, after a valid event in the same batch.
    let repeat = store
        .append(vec![Entry::Events {
            run: "r1".into(),
            events: vec![
                event(3, EventKind::NodeStarted, Some("llm")),
                event(3, EventKind::NodeStarted, Some("llm")),
            ],
        }])
        .await;
    assert!(matches!(repeat, Err(StoreError::Conflict(_))), "{repeat:?}");
    // An unknown run, after valid entries.
    let unknown = store
        .append(vec![
            Entry::Node {
                run: "r1".into(),
                record: llm.clone(),
            },
            Entry::Node {
                run: "nope".into(),
                record: llm.clone(),
            },
        ])
        .await;
    assert_eq!(unknown, Err(StoreError::UnknownRun { run: "nope".into() }));
    // An end in `running`.
    let running = store
        .append(vec![
            Entry::Node {
                run: "r1".into(),
                record: llm,
            },
            Entry::End {
                run: "r1".into(),
                state: RunState::Running,
                error: None,
                at: 5,
            },
        ])
        .await;
    assert!(
        matches!(running, Err(StoreError::Conflict(_))),
        "{running:?}"
    );

    assert_eq!(store.nodes("r1").await.unwrap(), before_nodes);
    assert_eq!(store.run("r1").await.unwrap().unwrap(), before_run);
    assert_eq!(store.events("r1", 0, 0).await.unwrap().len(), 3);
}

/// Concurrent batches (one group commit, where the store groups them): a bad one fails alone.
async fn concurrent_batches(store: &StoreHandle) {
    let fp = fingerprint(1);
    for i in 0..8 {
        store
            .create_run(&new_run(&format!("c{i}"), &fp, 1_000 + i))
            .await
            .unwrap();
    }
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..8u64 {
        let store = Arc::clone(store);
        tasks.spawn(async move {
            let run = format!("c{i}");
            // Run c3 gets a batch with a gap; the others a valid one.
            let first = if i == 3 { 1 } else { 0 };
            let result = store
                .append(vec![
                    Entry::Node {
                        run: run.clone(),
                        record: node("a", NodeState::Succeeded, json!({ "k": i })),
                    },
                    Entry::Events {
                        run: run.clone(),
                        events: vec![
                            event(first, EventKind::RunStarted, None),
                            event(first + 1, EventKind::NodeStarted, Some("a")),
                        ],
                    },
                ])
                .await;
            (i, result)
        });
    }
    while let Some(done) = tasks.join_next().await {
        let (i, result) = done.unwrap();
        let run = format!("c{i}");
        if i == 3 {
            assert!(matches!(result, Err(StoreError::Conflict(_))), "{result:?}");
            assert!(store.nodes(&run).await.unwrap().is_empty());
            assert_eq!(store.run(&run).await.unwrap().unwrap().next_seq, 0);
        } else {
            assert_eq!(result, Ok(()));
            assert_eq!(store.nodes(&run).await.unwrap().len(), 1);
            assert_eq!(store.run(&run).await.unwrap().unwrap().next_seq, 2);
        }
    }
}

async fn ends_and_reopens(store: &StoreHandle) {
    let error = json!({ "node": "llm", "kind": "timeout" });
    store
        .append(vec![
            Entry::Node {
                run: "r1".into(),
                record: node("llm", NodeState::Failed, json!({})),
            },
            Entry::Node {
                run: "r1".into(),
                record: node("tools", NodeState::Succeeded, json!({ "t": 1 })),
            },
            Entry::End {
                run: "r1".into(),
                state: RunState::Failed,
                error: Some(error.clone()),
                at: 500,
            },
        ])
        .await
        .unwrap();
    let ended = store.run("r1").await.unwrap().unwrap();
    assert_eq!(ended.state, RunState::Failed);
    assert_eq!((ended.ended_at, ended.updated_at), (Some(500), 500));
    assert_eq!(ended.error, Some(error));

    // From a state it does not allow: nothing changes.
    let wrong = Reopen {
        run: "r1".into(),
        from: vec![RunState::Cancelled, RunState::Waiting],
        reset: vec!["llm".into()],
        at: 600,
        epoch: None,
        take: None,
    };
    assert!(matches!(
        store.reopen(&wrong).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.run("r1").await.unwrap().unwrap(), ended);
    assert_eq!(store.nodes("r1").await.unwrap().len(), 3);
    let unknown = Reopen {
        run: "nope".into(),
        ..wrong.clone()
    };
    assert_eq!(
        store.reopen(&unknown).await,
        Err(StoreError::UnknownRun { run: "nope".into() })
    );

    let reopen = Reopen {
        run: "r1".into(),
        from: vec![RunState::Failed, RunState::Cancelled],
        reset: vec!["llm".into(), "not-recorded".into()],
        at: 700,
        epoch: None,
        take: None,
    };
    let reopened = store.reopen(&reopen).await.unwrap();
    assert_eq!(reopened.state, RunState::Running);
    assert_eq!(reopened.ended_at, None);
    assert_eq!(reopened.error, None);
    assert_eq!(reopened.updated_at, 700);
    assert_eq!(reopened.restarts, 1);
    assert_eq!(reopened.next_seq, 3);
    assert_eq!(reopened.created_at, 100);
    assert_eq!(store.run("r1").await.unwrap().unwrap(), reopened);
    let mut names: Vec<String> = store
        .nodes("r1")
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.node)
        .collect();
    names.sort();
    assert_eq!(names, ["rag", "tools"]);
    // Events continue across the restart.
    store
        .append(vec![Entry::Events {
            run: "r1".into(),
            events: vec![event(3, EventKind::RunStarted, None)],
        }])
        .await
        .unwrap();
    assert_eq!(store.run("r1").await.unwrap().unwrap().next_seq, 4);
}

async fn listing(store: &StoreHandle) {
    let fp = fingerprint(1);
    let fp2 = fingerprint(2);
    let mut other = definition(&fp2);
    other.workflow = "other".into();
    store.put_definition(&other).await.unwrap();
    // l0..l9 created at 10_000 + 10 * i; l5 and l5b share a created_at (ties go by id).
    for i in 0..10i64 {
        let mut run = new_run(&format!("l{i}"), &fp, 10_000 + 10 * i);
        if i % 3 == 0 {
            run.workflow = "other".into();
            run.fingerprint = fp2.clone();
        }
        store.create_run(&run).await.unwrap();
    }
    store
        .create_run(&new_run("l5b", &fp, 10_050))
        .await
        .unwrap();
    store
        .append(vec![Entry::End {
            run: "l4".into(),
            state: RunState::Cancelled,
            error: None,
            at: 20_000,
        }])
        .await
        .unwrap();
    let ids = |runs: Vec<braid_store::RunRecord>| -> Vec<String> {
        runs.into_iter().map(|r| r.id).collect()
    };
    let all = ids(store.list_runs(&RunFilter::default()).await.unwrap());
    assert_eq!(
        all[..6],
        ["l9", "l8", "l7", "l6", "l5b", "l5"].map(String::from)
    );
    // 1 + 8 + 11 runs so far: r1, c0..c7, l0..l9 and l5b.
    assert_eq!(all.len(), 20);
    let page = |before: Option<(i64, String)>, limit| RunFilter {
        before,
        limit,
        ..RunFilter::default()
    };
    let first = store.list_runs(&page(None, 3)).await.unwrap();
    assert_eq!(ids(first.clone()), ["l9", "l8", "l7"]);
    let last = first.last().unwrap();
    let second = store
        .list_runs(&page(Some((last.created_at, last.id.clone())), 3))
        .await
        .unwrap();
    assert_eq!(ids(second.clone()), ["l6", "l5b", "l5"]);
    let last = second.last().unwrap();
    let third = store
        .list_runs(&page(Some((last.created_at, last.id.clone())), 2))
        .await
        .unwrap();
    assert_eq!(ids(third), ["l4", "l3"]);

    let other_runs = store
        .list_runs(&RunFilter {
            workflow: Some("other".into()),
            ..RunFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(other_runs.clone()), ["l9", "l6", "l3", "l0"]);
    assert!(other_runs.iter().all(|r| r.fingerprint == fp2));
    let cancelled = store
        .list_runs(&RunFilter {
            state: Some(RunState::Cancelled),
            ..RunFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(cancelled), ["l4"]);
    let both = store
        .list_runs(&RunFilter {
            workflow: Some("mode1".into()),
            state: Some(RunState::Running),
            before: Some((10_050, "l5b".into())),
            limit: 2,
        })
        .await
        .unwrap();
    assert_eq!(ids(both), ["l5", "l2"]);
}

async fn collecting(store: &StoreHandle) {
    let old = fingerprint(3);
    store.put_definition(&definition(&old)).await.unwrap();
    let mut run = new_run("old", &old, 50);
    run.workflow = "old".into();
    store.create_run(&run).await.unwrap();
    store
        .append(vec![
            Entry::Node {
                run: "old".into(),
                record: node("a", NodeState::Succeeded, json!({ "x": 1 })),
            },
            Entry::Events {
                run: "old".into(),
                events: vec![event(0, EventKind::RunStarted, None)],
            },
            Entry::End {
                run: "old".into(),
                state: RunState::Degraded,
                error: None,
                at: 60,
            },
        ])
        .await
        .unwrap();
    // Finished: r1 is running again; l4 cancelled (kept); the rest running (kept). Degrade c0
    // late (kept) and end c1 early as succeeded (deleted).
    store
        .append(vec![
            Entry::End {
                run: "c0".into(),
                state: RunState::Degraded,
                error: None,
                at: 5_000_000,
            },
            Entry::End {
                run: "c1".into(),
                state: RunState::Succeeded,
                error: None,
                at: 70,
            },
        ])
        .await
        .unwrap();
    // A definition put after the cutoff and not yet used is kept; before it (by the clock the
    // store reads), with no run, deleted along with the old run's.
    let before_cutoff = braid_store::now_micros();
    let fresh = fingerprint(4);
    store.put_definition(&definition(&fresh)).await.unwrap();

    let deleted = store.gc(1_000).await.unwrap();
    assert_eq!(deleted, 2, "old and c1");
    assert_eq!(store.run("old").await.unwrap(), None);
    assert_eq!(store.run("c1").await.unwrap(), None);
    assert!(store.nodes("old").await.unwrap().is_empty());
    assert!(store.events("old", 0, 0).await.unwrap().is_empty());
    for kept in ["r1", "l4", "c0", "c2", "l9"] {
        assert!(store.run(kept).await.unwrap().is_some(), "{kept} was kept");
    }
    // gc's cutoff (1_000) is before every definition was put, so none is deleted yet.
    assert!(store.definition(&old).await.unwrap().is_some());

    // With a cutoff after the puts: `old` is unused (deleted), `fresh` too; the used stay.
    let cutoff = braid_store::now_micros() + 1;
    assert!(cutoff > before_cutoff);
    assert_eq!(store.gc(cutoff).await.unwrap(), 1, "c0, ended at 5 s");
    assert_eq!(store.definition(&old).await.unwrap(), None);
    assert_eq!(store.definition(&fresh).await.unwrap(), None);
    assert!(store.definition(&fingerprint(1)).await.unwrap().is_some());
    assert!(store.definition(&fingerprint(2)).await.unwrap().is_some());
    // A run of a deleted definition cannot be created.
    assert!(matches!(
        store.create_run(&new_run("late", &old, 9)).await,
        Err(StoreError::UnknownDefinition { .. })
    ));
    assert_eq!(store.gc(cutoff).await.unwrap(), 0);
}

/// The queue, claims, leases and fencing (`docs/scaling.md`), the same on every store.
async fn shared_work(store: &StoreHandle) {
    let fp = fingerprint(7);
    store.put_definition(&definition(&fp)).await.unwrap();
    let long = Duration::from_secs(60);
    // A waiter is listening before the submissions (PostgreSQL's listens from its first wait).
    let _ = store
        .wait_for_work(Duration::from_millis(10))
        .await
        .unwrap();
    for (i, id) in ["q1", "q2", "q3"].into_iter().enumerate() {
        store
            .submit(&new_run(id, &fp, 1_000 + i as i64))
            .await
            .unwrap();
    }
    assert!(
        store.wait_for_work(Duration::from_secs(10)).await.unwrap(),
        "a submission wakes a waiting claimer"
    );
    // Not queued: never claimed.
    store.create_run(&new_run("local", &fp, 900)).await.unwrap();

    // Oldest first, at most `max`; each claimed once, at epoch 1.
    let a = store.claim("a", 2, long).await.unwrap();
    assert_eq!(
        a,
        vec![
            Claim {
                run: "q1".into(),
                epoch: 1
            },
            Claim {
                run: "q2".into(),
                epoch: 1
            }
        ]
    );
    let b = store.claim("b", 10, long).await.unwrap();
    assert_eq!(
        b,
        vec![Claim {
            run: "q3".into(),
            epoch: 1
        }]
    );
    assert!(store.claim("b", 10, long).await.unwrap().is_empty());
    // A heartbeat answers the runs the replica owns, with their epochs.
    let mut owned = store
        .heartbeat("a")
        .await
        .unwrap()
        .expect("a is registered");
    owned.sort_by(|x, y| x.run.cmp(&y.run));
    assert_eq!(owned, a);
    assert_eq!(store.heartbeat("nobody").await.unwrap(), None);

    // A fenced write under the run's epoch goes in; under another, nothing of the batch does.
    let fenced = |run: &str, epoch: u64, node_name: &str| {
        vec![
            Entry::Fence {
                run: run.into(),
                epoch,
            },
            Entry::Node {
                run: run.into(),
                record: node(node_name, NodeState::Succeeded, json!({ "k": 1 })),
            },
        ]
    };
    store.append(fenced("q1", 1, "x")).await.unwrap();
    let before = (
        store.run("q1").await.unwrap(),
        store.nodes("q1").await.unwrap(),
    );
    assert_eq!(
        store.append(fenced("q1", 0, "y")).await,
        Err(StoreError::Fenced {
            run: "q1".into(),
            epoch: 0,
            current: 1
        })
    );
    let wrong_reopen = Reopen {
        run: "q1".into(),
        from: vec![RunState::Running],
        reset: vec!["x".into()],
        at: 5_000,
        epoch: Some(2),
        take: None,
    };
    assert!(matches!(
        store.reopen(&wrong_reopen).await,
        Err(StoreError::Fenced {
            epoch: 2,
            current: 1,
            ..
        })
    ));
    assert_eq!(
        (
            store.run("q1").await.unwrap(),
            store.nodes("q1").await.unwrap()
        ),
        before,
        "a fenced write changes nothing"
    );

    // Released: handed back with a new epoch (a's late writes are fenced), then claimed again.
    assert_eq!(store.release("a").await.unwrap(), 2);
    assert_eq!(store.heartbeat("a").await.unwrap(), None);
    assert!(matches!(
        store.append(fenced("q2", 1, "x")).await,
        Err(StoreError::Fenced {
            epoch: 1,
            current: 2,
            ..
        })
    ));
    let c = store.claim("c", 10, long).await.unwrap();
    assert_eq!(
        c,
        vec![
            Claim {
                run: "q1".into(),
                epoch: 3
            },
            Claim {
                run: "q2".into(),
                epoch: 3
            }
        ]
    );

    // An expired owner's runs go to the next claimer, epoch + 1; an ended run is never claimed.
    store
        .append(vec![
            Entry::Fence {
                run: "q1".into(),
                epoch: 3,
            },
            Entry::End {
                run: "q1".into(),
                state: RunState::Succeeded,
                error: None,
                at: 6_000,
            },
        ])
        .await
        .unwrap();
    store.submit(&new_run("q4", &fp, 1_004)).await.unwrap();
    let d = store
        .claim("d", 10, Duration::from_millis(1))
        .await
        .unwrap();
    assert_eq!(
        d,
        vec![Claim {
            run: "q4".into(),
            epoch: 1
        }]
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    let e = store.claim("e", 10, long).await.unwrap();
    assert_eq!(
        e,
        vec![Claim {
            run: "q4".into(),
            epoch: 2
        }]
    );
    assert!(store.claim("f", 10, long).await.unwrap().is_empty());
    assert_eq!(store.run("local").await.unwrap().unwrap().restarts, 0);

    // Any replica takes a run over with a reopen (how it continues, retries or cancels a run
    // wherever it runs): it owns it from then on, at a new epoch, and the previous owner's
    // writes are fenced and its heartbeat no longer lists it.
    let take = |from: Vec<RunState>| Reopen {
        run: "q4".into(),
        from,
        reset: Vec::new(),
        at: 7_000,
        epoch: None,
        take: Some(Take {
            replica: "g".into(),
            ttl: long,
        }),
    };
    let before = store.run("q4").await.unwrap().unwrap();
    assert!(matches!(
        store.reopen(&take(vec![RunState::Waiting])).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store.run("q4").await.unwrap().unwrap(),
        before,
        "a take from the wrong state changes nothing"
    );
    let taken = store.reopen(&take(vec![RunState::Running])).await.unwrap();
    assert_eq!(
        (taken.owner.as_deref(), taken.epoch, taken.state),
        (Some("g"), 3, RunState::Running)
    );
    assert_eq!(
        store.run("q4").await.unwrap().unwrap().owner.as_deref(),
        Some("g")
    );
    assert!(matches!(
        store.append(fenced("q4", 2, "late")).await,
        Err(StoreError::Fenced {
            epoch: 2,
            current: 3,
            ..
        })
    ));
    assert_eq!(store.heartbeat("e").await.unwrap(), Some(Vec::new()));
    assert_eq!(
        store.heartbeat("g").await.unwrap(),
        Some(vec![Claim {
            run: "q4".into(),
            epoch: 3
        }])
    );
    assert!(
        store.claim("h", 10, long).await.unwrap().is_empty(),
        "g is alive"
    );
}
