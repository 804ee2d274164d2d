//! The HTTP decision server, compatible with OPA's Data API for decisions.
//!
//! | method | path | answer |
//! |---|---|---|
//! | `POST` | `/v1/data/<entrypoint>` | body `{"input": ...}` (optional) → `{"result": ...}`, no `result` key when undefined |
//! | `GET`  | `/v1/data/<entrypoint>` | the same, with no input document |
//! | `GET`  | `/health` | 200 once a policy is loaded, 503 before |
//! | `GET`  | `/v1/status` | engine, source, revision, loaded_at, last_error, reload counters |
//! | `GET`  | `/metrics` | Prometheus text format |
//!
//! Every decision response carries the policy revision in the `x-wasmgate-revision` header.
//! Client mistakes (malformed JSON, an entrypoint the policy does not have) get a 4xx with a
//! message in OPA's error shape `{"code": ..., "message": ...}`, never a 500.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use serde_json::value::RawValue;

use crate::authorizer::{Authorizer, DecisionError};
use crate::policy::EvalError;

/// Largest request body accepted; larger ones get 413.
pub const MAX_BODY_BYTES: usize = 4 << 20;

#[derive(Default)]
struct Counters {
    defined: AtomicU64,
    undefined: AtomicU64,
    client_errors: AtomicU64,
    failed: AtomicU64,
}

#[derive(Clone)]
struct AppState {
    authz: Authorizer,
    counters: Arc<Counters>,
    /// Decisions evaluating at once. Beyond this they wait: every running decision holds
    /// its input and possibly a fresh instance, so an unbounded number of concurrent large
    /// requests would exhaust memory.
    running: Arc<tokio::sync::Semaphore>,
}

/// The decision API as an axum router, for embedding or for [`serve`].
pub fn router(authz: Authorizer) -> Router {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let state = AppState {
        authz,
        counters: Arc::default(),
        running: Arc::new(tokio::sync::Semaphore::new(cores * 2)),
    };
    Router::new()
        .route("/v1/data/{*path}", get(get_decision).post(post_decision))
        .route("/health", get(health))
        .route("/v1/status", get(status))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Serve the decision API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    authz: Authorizer,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(authz))
        .with_graceful_shutdown(shutdown)
        .await
}

fn error(status: StatusCode, code: &str, message: impl std::fmt::Display) -> Response {
    (
        status,
        axum::Json(json!({"code": code, "message": message.to_string()})),
    )
        .into_response()
}

async fn get_decision(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    match path {
        Ok(Path(path)) => decide(state, path, None).await,
        Err(rejection) => bad_path(&state, rejection),
    }
}

fn bad_path(state: &AppState, rejection: PathRejection) -> Response {
    state.counters.client_errors.fetch_add(1, Ordering::Relaxed);
    error(
        rejection.status(),
        "invalid_parameter",
        rejection.body_text(),
    )
}

async fn post_decision(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let path = match path {
        Ok(Path(path)) => path,
        Err(rejection) => return bad_path(&state, rejection),
    };
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            state.counters.client_errors.fetch_add(1, Ordering::Relaxed);
            let status = rejection.status();
            let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
                "request_too_large"
            } else {
                "invalid_parameter"
            };
            return error(status, code, rejection.body_text());
        }
    };
    if body.iter().all(u8::is_ascii_whitespace) {
        return decide(state, path, None).await;
    }
    // Keep `input` as raw JSON: the Wasm path hands those bytes straight to the policy.
    let doc: BTreeMap<String, Box<RawValue>> = match serde_json::from_slice(&body) {
        Ok(doc) => doc,
        Err(e) => {
            state.counters.client_errors.fetch_add(1, Ordering::Relaxed);
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_parameter",
                format!("request body must be a JSON object like {{\"input\": ...}}: {e}"),
            );
        }
    };
    let input = doc.get("input").map(|raw| raw.get().to_owned());
    decide(state, path, input).await
}

/// Evaluate on the blocking pool: a decision normally takes microseconds, but one that runs
/// to its deadline must not stall the async workers that answer `/health` and other calls.
async fn decide(state: AppState, path: String, input: Option<String>) -> Response {
    let authz = state.authz.clone();
    let entrypoint = path.trim_matches('/').to_string();
    let ep = entrypoint.clone();
    let permit = Arc::clone(&state.running)
        .acquire_owned()
        .await
        .expect("the semaphore is never closed");
    let outcome = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        authz.evaluate_json(&ep, input.as_deref().map(str::as_bytes))
    })
    .await;
    let counters = &state.counters;
    match outcome {
        Ok(Ok(decision)) => {
            let body = match &decision.result {
                Some(result) => {
                    counters.defined.fetch_add(1, Ordering::Relaxed);
                    json!({ "result": result })
                }
                None => {
                    counters.undefined.fetch_add(1, Ordering::Relaxed);
                    json!({})
                }
            };
            let mut response = axum::Json(body).into_response();
            if let Ok(rev) = HeaderValue::from_str(&decision.revision) {
                response.headers_mut().insert("x-wasmgate-revision", rev);
            }
            response
        }
        Ok(Err(DecisionError::NoPolicy)) => {
            counters.failed.fetch_add(1, Ordering::Relaxed);
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "no policy is loaded yet; see /v1/status",
            )
        }
        Ok(Err(DecisionError::Eval { source, .. })) if source.is_client_error() => {
            counters.client_errors.fetch_add(1, Ordering::Relaxed);
            let status = match source {
                EvalError::UnknownEntrypoint(_) => StatusCode::NOT_FOUND,
                _ => StatusCode::BAD_REQUEST,
            };
            let code = if status == StatusCode::NOT_FOUND {
                "not_found"
            } else {
                "invalid_parameter"
            };
            error(status, code, source)
        }
        Ok(Err(e)) => {
            counters.failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(entrypoint, "decision failed (deny): {e}");
            error(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", e)
        }
        Err(e) => {
            counters.failed.fetch_add(1, Ordering::Relaxed);
            tracing::error!(entrypoint, "decision task failed (deny): {e}");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "the decision task failed",
            )
        }
    }
}

async fn not_found(uri: axum::http::Uri) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no such endpoint {uri}; decisions are at /v1/data/<entrypoint>"),
    )
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on {uri}"),
    )
}

async fn health(State(state): State<AppState>) -> Response {
    if state.authz.current().is_some() {
        axum::Json(json!({})).into_response()
    } else {
        let status = state.authz.status();
        let reason = status
            .last_error
            .unwrap_or_else(|| "no policy loaded yet".into());
        error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", reason)
    }
}

async fn status(State(state): State<AppState>) -> Response {
    axum::Json(state.authz.status()).into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    let s = state.authz.status();
    let c = &state.counters;
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let text = format!(
        "# HELP wasmgate_policy_ready Whether a policy version is loaded.\n\
         # TYPE wasmgate_policy_ready gauge\n\
         wasmgate_policy_ready {}\n\
         # HELP wasmgate_reloads_total Policy versions built, by outcome.\n\
         # TYPE wasmgate_reloads_total counter\n\
         wasmgate_reloads_total{{outcome=\"ok\"}} {}\n\
         wasmgate_reloads_total{{outcome=\"failed\"}} {}\n\
         # HELP wasmgate_decisions_total HTTP decisions, by outcome.\n\
         # TYPE wasmgate_decisions_total counter\n\
         wasmgate_decisions_total{{outcome=\"defined\"}} {}\n\
         wasmgate_decisions_total{{outcome=\"undefined\"}} {}\n\
         wasmgate_decisions_total{{outcome=\"client_error\"}} {}\n\
         wasmgate_decisions_total{{outcome=\"error\"}} {}\n",
        u8::from(s.ready),
        s.reloads_ok,
        s.reloads_failed,
        load(&c.defined),
        load(&c.undefined),
        load(&c.client_errors),
        load(&c.failed),
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
