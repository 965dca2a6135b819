//! Errors as the API answers them: a status and a JSON body `{"error": {code, message,
//! problems?}}`. Every message says what to do; none carries a secret (store URLs are shown
//! without their password by the store itself).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use braid::durable::{DurableError, StoreError};
use braid::{Error, InputError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::runner::StartError;

/// An error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable, machine-readable code: `not_found`, `invalid_inputs`, `conflict`, `busy`,
    /// `unauthorized`, `bad_request`, `unavailable`, `internal`.
    pub code: String,
    /// What went wrong and how to fix it.
    pub message: String,
    /// Every problem, for `invalid_inputs`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<InputProblem>,
}

/// One input that does not fit.
#[derive(Debug, Serialize, ToSchema)]
pub struct InputProblem {
    /// The input.
    pub input: String,
    /// `missing`, `wrong_type` or `unknown`.
    pub kind: String,
    /// What is wrong.
    pub message: String,
}

/// An error the API answers with.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    problems: Vec<InputProblem>,
    retry_after: Option<u32>,
}

impl ApiError {
    /// An error with this status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            problems: Vec::new(),
            retry_after: None,
        }
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub(crate) fn conflict(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::CONFLICT, "conflict", message)
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub(crate) fn unauthorized() -> Self {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this service needs a bearer token: send `Authorization: Bearer TOKEN`",
        )
    }

    fn inputs(problems: Vec<InputError>) -> Self {
        let problems: Vec<InputProblem> = problems
            .iter()
            .map(|p| {
                let (input, kind) = match p {
                    InputError::Missing { name, .. } => (name.clone(), "missing"),
                    InputError::WrongType { name, .. } => (name.clone(), "wrong_type"),
                    InputError::Unknown { name, .. } => (name.clone(), "unknown"),
                    _ => (String::new(), "invalid"),
                };
                InputProblem {
                    input,
                    kind: kind.to_owned(),
                    message: p.to_string(),
                }
            })
            .collect();
        ApiError {
            message: format!("{} input(s) do not fit the workflow", problems.len()),
            problems,
            ..ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_inputs", "")
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match &e {
            StoreError::UnknownRun { .. } | StoreError::UnknownDefinition { .. } => {
                ApiError::not_found(e.to_string())
            }
            StoreError::Conflict(_) => ApiError::conflict(e.to_string()),
            StoreError::Unreachable { .. } => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                e.to_string(),
            ),
            _ => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
        }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::Inputs(problems) => ApiError::inputs(problems),
            Error::Durable(d) => match d {
                DurableError::Store(s) => s.into(),
                DurableError::WrongState { .. } | DurableError::NothingToRetry { .. } => {
                    ApiError::conflict(d.to_string())
                }
                DurableError::UnknownNode { .. } | DurableError::Answer(_) => ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_request",
                    d.to_string(),
                ),
                other => ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    other.to_string(),
                ),
            },
            other => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                other.to_string(),
            ),
        }
    }
}

impl From<StartError> for ApiError {
    fn from(e: StartError) -> Self {
        match e {
            StartError::Busy { .. } => ApiError {
                retry_after: Some(1),
                ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "busy", e.to_string())
            },
            StartError::Draining => ApiError {
                retry_after: Some(5),
                ..ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    e.to_string(),
                )
            },
            StartError::Braid(e) => e.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(status = %self.status, code = self.code, "{}", self.message);
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
                problems: self.problems,
            },
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}
