//! `GET /v1/runs/{id}/events`: a run's events as server-sent events, each journaled event with
//! its sequence number as the SSE id, and a node's streamed messages (an LLM's tokens) as
//! `message` events without one.
//!
//! Exactly once across reconnects and replicas: the stream subscribes to the run's live events
//! first ([`crate::hub`]: only events already in the store), then replays the store from
//! `Last-Event-ID + 1`, then the events kept live, then the live ones, skipping every sequence
//! number it already sent. A run not in flight here (finished, left running by a process that
//! died, or running on another replica) is replayed from the store, which is then polled every
//! 250 ms while the run is recorded `running`; a run that leaves this process while streamed
//! (another replica took it over) goes on from the store the same way. The stream ends when the
//! run stops running (it finished or stopped to wait); a stream that falls `hub::CAPACITY` items
//! behind is cut, and reconnecting resumes it without loss.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use braid::durable::{EventRecord, RunState};
use futures_util::Stream;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast::{self, error::RecvError};
use utoipa::IntoParams;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use crate::hub::Live;

/// How often a run not in flight here is looked up again while it is recorded `running`.
const POLL: Duration = Duration::from_millis(250);

/// Query of the events stream.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct EventsQuery {
    /// As the `Last-Event-ID` header (which wins): send only the events after this one.
    pub last_event_id: Option<u64>,
}

/// The run's events, live: journaled ones with their sequence as the SSE id (`run_started`,
/// `node_started`, `node_retrying`, `node_finished`, `run_finished`), and `message` events.
#[utoipa::path(get, path = "/v1/runs/{id}/events", tag = "runs",
    params(("id" = String, Path, description = "The run's id"), EventsQuery,
        ("Last-Event-ID" = Option<u64>, Header, description = "The last event received")),
    responses(
        (status = 200, description = "Server-sent events until the run ends: `id` is the journal sequence, `event` the kind, `data` the event as JSON (`message` events: `{node, payload}`, no id)", content_type = "text/event-stream"),
        (status = 400, description = "A `Last-Event-ID` that is not a number", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody)))]
pub(crate) async fn stream(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<EventsQuery>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let last = match headers.get("last-event-id") {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiError::bad_request("`Last-Event-ID` must be a sequence number")
                })?,
        ),
        None => q.last_event_id,
    };
    // Live first, then the store: nothing can fall between the two.
    let sub = s.runner.hub().subscribe(&id);
    let store = s.runner.durable().store().clone();
    let record = store
        .run(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no run `{id}`")))?;
    let from = last.map_or(0, |l| l + 1);
    let replay = store.events(&id, from, 0).await?;
    let mut st = Streaming {
        run: id,
        last,
        queue: VecDeque::new(),
        phase: Phase::Done,
        store,
    };
    for e in replay {
        st.push(e);
    }
    st.phase = match sub {
        Some(sub) => {
            for e in sub.kept {
                st.push(e);
            }
            Phase::Live(sub.rx)
        }
        None if record.state == RunState::Running => Phase::Poll { now: false },
        None => Phase::Done,
    };
    let events =
        futures_util::stream::unfold(
            st,
            |mut st| async move { st.next().await.map(|e| (Ok(e), st)) },
        );
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

enum Phase {
    Live(broadcast::Receiver<Live>),
    /// Reading the store; `now`: without waiting first.
    Poll {
        now: bool,
    },
    Done,
}

struct Streaming {
    run: String,
    /// The last sequence number sent (or the client had).
    last: Option<u64>,
    queue: VecDeque<Event>,
    phase: Phase,
    store: braid::durable::StoreHandle,
}

impl Streaming {
    /// Queues a journaled event unless it was sent.
    fn push(&mut self, e: EventRecord) {
        if self.last.is_some_and(|l| e.seq <= l) {
            return;
        }
        self.last = Some(e.seq);
        let data = serde_json::to_string(&e).unwrap_or_default();
        self.queue.push_back(
            Event::default()
                .id(e.seq.to_string())
                .event(e.kind.as_str())
                .data(data),
        );
    }

    /// The next SSE event, or `None` when the stream ends.
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(e) = self.queue.pop_front() {
                return Some(e);
            }
            match &mut self.phase {
                Phase::Done => return None,
                Phase::Live(rx) => match rx.recv().await {
                    Ok(Live::Event(e)) => self.push(e),
                    Ok(Live::Message { node, payload }) => {
                        let data = json!({ "node": node, "payload": payload }).to_string();
                        return Some(Event::default().event("message").data(data));
                    }
                    Ok(Live::Ended) | Err(RecvError::Closed) => {
                        // Ended here; the store says whether it ended, or goes on elsewhere.
                        self.phase = Phase::Poll { now: true };
                    }
                    Err(RecvError::Lagged(_)) => self.phase = Phase::Done,
                },
                Phase::Poll { now } => {
                    if !*now {
                        tokio::time::sleep(POLL).await;
                    }
                    *now = false;
                    let from = self.last.map_or(0, |l| l + 1);
                    let more = self.store.events(&self.run, from, 0).await.ok()?;
                    if more.is_empty() {
                        let running = self
                            .store
                            .run(&self.run)
                            .await
                            .ok()
                            .flatten()
                            .is_some_and(|r| r.state == RunState::Running);
                        if !running {
                            // Its end's events were appended with its end: one last look.
                            let tail = self.store.events(&self.run, from, 0).await.ok()?;
                            tail.into_iter().for_each(|e| self.push(e));
                            self.phase = Phase::Done;
                        }
                    }
                    more.into_iter().for_each(|e| self.push(e));
                }
            }
        }
    }
}
