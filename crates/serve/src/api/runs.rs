//! `GET /v1/runs`, `GET /v1/runs/{id}`, and a run's cancel, resume and retry.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use braid::durable::{Reply, RunFilter, RunState};

use super::error::{ApiError, ErrorBody};
use super::types::{ListQuery, ResumeRun, RetryRun, RunList, RunView};
use super::{AppState, body as parse};
use axum::body::Bytes;

/// The runs, newest first, filtered and paginated.
#[utoipa::path(get, path = "/v1/runs", tag = "runs", params(ListQuery),
    responses(
        (status = 200, description = "A page of runs", body = RunList),
        (status = 400, description = "A bad filter or cursor", body = ErrorBody)))]
pub(crate) async fn list(
    State(s): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<RunList>, ApiError> {
    let state = match q.status.as_deref() {
        None => None,
        Some(name) => Some(RunState::parse(name).ok_or_else(|| {
            ApiError::bad_request(format!(
                "`{name}` is not a run status: use running, waiting, succeeded, degraded, failed or cancelled"
            ))
        })?),
    };
    let limit = q.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("`limit` must be between 1 and 1000"));
    }
    let before = q.cursor.as_deref().map(parse_cursor).transpose()?;
    let filter = RunFilter {
        workflow: q.workflow,
        state,
        before,
        limit: limit + 1,
    };
    let mut runs = s.runner.durable().store().list_runs(&filter).await?;
    let next_cursor = if runs.len() > limit {
        runs.truncate(limit);
        runs.last().map(|r| format!("{}.{}", r.created_at, r.id))
    } else {
        None
    };
    Ok(Json(RunList {
        runs: runs.iter().map(RunView::record).collect(),
        next_cursor,
    }))
}

fn parse_cursor(c: &str) -> Result<(i64, String), ApiError> {
    c.split_once('.')
        .and_then(|(t, id)| Some((t.parse().ok()?, id.to_owned())))
        .filter(|(_, id)| !id.is_empty())
        .ok_or_else(|| ApiError::bad_request("`cursor` is not one this service gave"))
}

/// A run: status, state so far, report.
#[utoipa::path(get, path = "/v1/runs/{id}", tag = "runs",
    params(("id" = String, Path, description = "The run's id")),
    responses(
        (status = 200, description = "The run", body = RunView),
        (status = 400, description = "A malformed request", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody)))]
pub(crate) async fn get(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<RunView>, ApiError> {
    Ok(Json(full(&s, &id).await?))
}

/// The run in full: record, inputs, state and report.
async fn full(s: &AppState, id: &str) -> Result<RunView, ApiError> {
    let recorded = s.runner.durable().show(id).await?;
    let mut view = RunView::record(&recorded.record);
    view.inputs = Some(recorded.record.inputs.clone());
    view.state = Some(recorded.result.state.clone());
    view.report = serde_json::to_value(&recorded.result.report).ok();
    Ok(view)
}

/// Waits until the run stops running (it ended, or waits for an answer), wherever it runs, and
/// answers it in full. Looks at the store at a growing interval (10 ms to 250 ms).
pub(crate) async fn until_settled(s: &AppState, id: &str) -> Result<RunView, ApiError> {
    let mut every = std::time::Duration::from_millis(10);
    loop {
        let record = s
            .runner
            .durable()
            .store()
            .run(id)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no run `{id}`")))?;
        if record.state != RunState::Running {
            return full(s, id).await;
        }
        tokio::time::sleep(every).await;
        every = (every * 2).min(std::time::Duration::from_millis(250));
    }
}

/// Cancels a run: one in flight here ends `cancelled`, keeping what completed (resume it to go
/// on). A replica sharing its store (`docs/scaling.md`) also cancels a run running on another
/// replica, queued, or waiting: it takes the run over and records it `cancelled` at once; the
/// replica that ran it drops it at its next write or heartbeat.
#[utoipa::path(post, path = "/v1/runs/{id}/cancel", tag = "runs",
    params(("id" = String, Path, description = "The run's id")),
    responses(
        (status = 202, description = "Cancelling", body = RunView),
        (status = 400, description = "A malformed request", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody),
        (status = 409, description = "The run is not running (without a shared store: not in this process)", body = ErrorBody)))]
pub(crate) async fn cancel(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<RunView>), ApiError> {
    let record = s
        .runner
        .durable()
        .store()
        .run(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no run `{id}`")))?;
    if !s.runner.shared() {
        if s.runner.cancel(&id) {
            return Ok((StatusCode::ACCEPTED, Json(RunView::record(&record))));
        }
    } else if matches!(record.state, RunState::Running | RunState::Waiting) {
        let _owning = s.runner.owning.lock().await;
        if record.owner.as_deref() == s.runner.replica() && s.runner.cancel(&id) {
            return Ok((StatusCode::ACCEPTED, Json(RunView::record(&record))));
        }
        // Running on another replica, queued, or waiting: taken over and recorded cancelled
        // here; the replica that ran it drops it at its next write or heartbeat.
        let cancelled = s.runner.durable().cancel_taken(&id).await?;
        s.runner.drop_run(&id, "taken");
        return Ok((StatusCode::ACCEPTED, Json(RunView::record(&cancelled))));
    } else {
        return Err(ApiError::conflict(format!(
            "run `{id}` is {}; nothing to cancel",
            record.state
        )));
    }
    Err(ApiError::conflict(format!(
        "run `{id}` is {} and not running in this process; nothing to cancel",
        record.state
    )))
}

/// Continues a run that stopped: waiting at a node (give the `value`), cancelled, or left
/// running by a process that died.
#[utoipa::path(post, path = "/v1/runs/{id}/resume", tag = "runs",
    params(("id" = String, Path, description = "The run's id")),
    request_body = ResumeRun,
    responses(
        (status = 202, description = "Resumed", body = RunView),
        (status = 400, description = "A body that is not JSON", body = ErrorBody),
        (status = 413, description = "A body past the size limit", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody),
        (status = 409, description = "The run finished, runs here now, or (replicas) is running on one", body = ErrorBody),
        (status = 422, description = "The value does not fit the waiting node", body = ErrorBody),
        (status = 429, description = "Too many runs in flight", body = ErrorBody)))]
pub(crate) async fn resume(
    State(s): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<RunView>), ApiError> {
    if !s.runner.shared() && s.runner.is_here(&id) {
        return Err(ApiError::conflict(format!(
            "run `{id}` is running in this process"
        )));
    }
    let body = parse::<ResumeRun>(&body)?;
    let reply = body.value.map(|value| Reply {
        node: body.node,
        value,
    });
    let _owning = if s.runner.shared() {
        let owning = s.runner.owning.lock().await;
        if let Some(r) = s.runner.durable().store().run(&id).await?
            && r.state == RunState::Running
        {
            return Err(ApiError::conflict(format!(
                "run `{id}` is running{}; it continues by itself (another replica takes it over if that one stops)",
                r.owner
                    .map(|o| format!(" on replica `{o}`"))
                    .unwrap_or_default()
            )));
        }
        Some(owning)
    } else {
        None
    };
    let (run_id, _task) = s.runner.resume(&id, reply).await?;
    continued(&s, run_id).await
}

/// Runs a failed or degraded run's failed nodes again (or one node and what follows it).
#[utoipa::path(post, path = "/v1/runs/{id}/retry", tag = "runs",
    params(("id" = String, Path, description = "The run's id")),
    request_body = RetryRun,
    responses(
        (status = 202, description = "Retrying", body = RunView),
        (status = 400, description = "A body that is not JSON", body = ErrorBody),
        (status = 413, description = "A body past the size limit", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody),
        (status = 409, description = "The run has not finished, or nothing failed", body = ErrorBody),
        (status = 422, description = "No such node", body = ErrorBody),
        (status = 429, description = "Too many runs in flight", body = ErrorBody)))]
pub(crate) async fn retry(
    State(s): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<RunView>), ApiError> {
    let from = parse::<RetryRun>(&body)?.from;
    // A replica takes the run over as it retries it (the owner changes under this lock only).
    let _owning = if s.runner.shared() {
        let owning = s.runner.owning.lock().await;
        if let Some(r) = s.runner.durable().store().run(&id).await?
            && r.state != RunState::Running
        {
            // Not running: a copy still here is stale (it ended or was taken over elsewhere).
            s.runner.evict(&id).await;
        }
        Some(owning)
    } else {
        None
    };
    let (run_id, _task) = s.runner.retry(&id, from.as_deref()).await?;
    continued(&s, run_id).await
}

async fn continued(s: &AppState, run_id: String) -> Result<(StatusCode, Json<RunView>), ApiError> {
    let record = s
        .runner
        .durable()
        .store()
        .run(&run_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no run `{run_id}`")))?;
    Ok((StatusCode::ACCEPTED, Json(RunView::record(&record))))
}
