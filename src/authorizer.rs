//! The public entry point: an [`Authorizer`] holds the current policy version, answers
//! decisions synchronously from any thread, and keeps its sources polled in the background.
//!
//! The current version sits behind an `ArcSwap`: a decision loads the pointer (lock-free),
//! evaluates on that version and drops it. A swap replaces the pointer; decisions already
//! running keep their `Arc` to the old version and finish on it, so a swap never fails or
//! blocks one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use serde::Serialize;
use serde_json::Value;
use tokio::task::JoinHandle;

use crate::artifact::PolicyContent;
use crate::config::{Backend, Config, EngineChoice, FileSource, Settings};
use crate::policy::{
    EngineKind, EnginePreference, EvalError, LoadError, LoadOptions, Loader, PolicyInfo, PolicySet,
};
use crate::source::local::{self, SourceError};

/// The answer to one question, with the policy version that gave it.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The entrypoint's value; `None` when the policy leaves it undefined.
    pub result: Option<Value>,
    /// The revision of the policy version that evaluated this decision.
    pub revision: Arc<str>,
    pub engine: EngineKind,
}

/// Why a decision has no answer. Callers must deny.
#[derive(Debug, thiserror::Error)]
pub enum DecisionError {
    #[error("no policy is loaded yet")]
    NoPolicy,
    #[error("{source} (policy revision {revision})")]
    Eval {
        source: EvalError,
        revision: Arc<str>,
    },
}

/// Why the authorizer could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("authorization.backend {0} is not yet supported by wasmgate (only `local` is)")]
    Unsupported(&'static str),
    #[error("authorization.local: must be configured for backend local")]
    NoLocal,
    #[error("loading the first policy version failed: {0}")]
    FirstLoad(#[from] ReloadError),
}

/// Why a new version was not swapped in.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("the loader task stopped unexpectedly: {0}")]
    Task(String),
}

/// Health of the policy pipeline, as `/v1/status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// Whether a policy is loaded and decisions can be answered.
    pub ready: bool,
    pub backend: &'static str,
    /// Where the policy (and data) come from.
    pub source: String,
    pub engine: Option<EngineKind>,
    pub revision: Option<Arc<str>>,
    /// Full description of the serving version.
    pub policy: Option<PolicyInfo>,
    pub loaded_at: Option<String>,
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
    pub reloads_ok: u64,
    pub reloads_failed: u64,
}

#[derive(Default)]
struct Health {
    last_error: Option<(String, SystemTime)>,
}

struct Shared {
    current: ArcSwapOption<PolicySet>,
    health: Mutex<Health>,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
    source: String,
    allow_entrypoint: String,
}

impl Shared {
    fn swap_in(&self, set: PolicySet) {
        tracing::info!(
            revision = %set.info().revision,
            engine = %set.info().engine,
            artifact = set.info().artifact,
            "policy version loaded"
        );
        self.current.store(Some(Arc::new(set)));
        self.reloads_ok.fetch_add(1, Ordering::Relaxed);
    }

    fn clear_error(&self) {
        self.health.lock().expect("health lock").last_error = None;
    }

    fn record_failure(&self, error: &ReloadError) {
        if self.current.load().is_some() {
            tracing::error!(error = %error, "policy update rejected; the last good version keeps serving");
        } else {
            tracing::error!(error = %error, "policy load failed; no policy is serving, every decision is denied");
        }
        self.reloads_failed.fetch_add(1, Ordering::Relaxed);
        self.health.lock().expect("health lock").last_error =
            Some((error.to_string(), SystemTime::now()));
    }
}

/// Aborts the background pollers when the last handle of the authorizer goes away.
struct Pollers(Vec<JoinHandle<()>>);

impl Drop for Pollers {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Evaluates decisions against the current policy version and keeps it fresh. Clone it
/// freely: clones share the policy and the pollers.
#[derive(Clone)]
pub struct Authorizer {
    shared: Arc<Shared>,
    _pollers: Arc<Pollers>,
}

impl std::fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorizer")
            .field("source", &self.shared.source)
            .finish_non_exhaustive()
    }
}

/// Map the `wasmgate:` settings to loader options.
pub fn load_options(settings: &Settings) -> LoadOptions {
    LoadOptions {
        engine: match settings.engine {
            EngineChoice::Auto => EnginePreference::Auto,
            EngineChoice::Wasm => EnginePreference::Wasm,
            EngineChoice::Interpreted => EnginePreference::Interpreted,
        },
        opa: settings.opa.clone(),
        entrypoints: settings.entrypoints.clone(),
        limits: crate::abi::Limits {
            max_memory_bytes: settings.max_memory_bytes,
            eval_timeout: settings.eval_timeout,
        },
        bundle_limits: crate::bundle::BundleLimits {
            max_bytes: settings.max_bundle_bytes,
            ..Default::default()
        },
        pool_size: settings.pool_size,
        ..LoadOptions::default()
    }
}

impl Authorizer {
    /// Load the first policy version from the configured source and start polling it.
    /// Must run inside a tokio runtime. Fails if the first load fails, unless
    /// `wasmgate.start_degraded` is set (then every decision is denied until a load works).
    pub async fn start(config: Config) -> Result<Self, StartError> {
        Self::start_with(config, crate::builtins::Builtins::flipt()).await
    }

    /// [`Authorizer::start`] with a custom builtin registry.
    pub async fn start_with(
        config: Config,
        builtins: crate::builtins::Builtins,
    ) -> Result<Self, StartError> {
        let local = match config.authorization.backend {
            Backend::Local => config
                .authorization
                .local
                .clone()
                .ok_or(StartError::NoLocal)?,
            Backend::Bundle => return Err(StartError::Unsupported("bundle")),
            Backend::Object => return Err(StartError::Unsupported("object")),
        };
        let options = LoadOptions {
            builtins,
            ..load_options(&config.wasmgate)
        };
        let allow_entrypoint = options
            .entrypoints
            .first()
            .cloned()
            .unwrap_or_else(|| "flipt/authz/v1/allow".into());
        let source = match &local.data {
            Some(d) => format!(
                "policy {} + data {}",
                local.policy.path.display(),
                d.path.display()
            ),
            None => format!("policy {}", local.policy.path.display()),
        };
        let max_bytes = options.bundle_limits.max_bytes;
        let shared = Arc::new(Shared {
            current: ArcSwapOption::empty(),
            health: Mutex::default(),
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
            source,
            allow_entrypoint,
        });
        let mut poller = LocalPoller {
            loader: Arc::new(Loader::new(options)),
            policy: local.policy.clone(),
            data: local.data.clone(),
            max_bytes,
            good: None,
        };
        if config.wasmgate.start_degraded {
            // Come up at once and load in the background: a slow first load (a large bundle,
            // a slow `opa build`) must not keep the server from answering /health.
            tracing::info!(
                "start_degraded: serving now, denying every decision until a policy loads"
            );
        } else {
            shared.swap_in(poller.load_everything().await?);
        }
        let task = tokio::spawn(poller.run(Arc::clone(&shared)));
        Ok(Self {
            shared,
            _pollers: Arc::new(Pollers(vec![task])),
        })
    }

    /// Evaluate `entrypoint` (`flipt/authz/v1/allow`) with `input`. Synchronous and
    /// lock-free; call it from any thread.
    pub fn evaluate(&self, entrypoint: &str, input: &Value) -> Result<Decision, DecisionError> {
        self.decide(|set| set.evaluate(entrypoint, Some(input)))
    }

    /// Evaluate with the input as JSON text (`None`: no input document), skipping a parse
    /// on the Wasm path.
    pub fn evaluate_json(
        &self,
        entrypoint: &str,
        input_json: Option<&[u8]>,
    ) -> Result<Decision, DecisionError> {
        self.decide(|set| set.evaluate_json(entrypoint, input_json))
    }

    fn decide(
        &self,
        eval: impl FnOnce(&PolicySet) -> Result<Option<Value>, EvalError>,
    ) -> Result<Decision, DecisionError> {
        let set = self
            .shared
            .current
            .load_full()
            .ok_or(DecisionError::NoPolicy)?;
        let info = set.info();
        match eval(&set) {
            Ok(result) => Ok(Decision {
                result,
                revision: Arc::clone(&info.revision),
                engine: info.engine,
            }),
            Err(source) => Err(DecisionError::Eval {
                source,
                revision: Arc::clone(&info.revision),
            }),
        }
    }

    /// Whether the first configured entrypoint (by default `flipt/authz/v1/allow`) is
    /// exactly `true` for `input`. Fails closed: undefined, a non-boolean, an evaluation
    /// error or no policy all deny, and the reason is logged.
    pub fn is_allowed(&self, input: &Value) -> bool {
        match self.evaluate(&self.shared.allow_entrypoint, input) {
            Ok(Decision {
                result: Some(Value::Bool(allowed)),
                ..
            }) => allowed,
            Ok(Decision { result: None, .. }) => false,
            Ok(Decision {
                result: Some(other),
                revision,
                ..
            }) => {
                tracing::warn!(%revision, "deny: {} returned a non-boolean: {other}", self.shared.allow_entrypoint);
                false
            }
            Err(e) => {
                tracing::warn!("deny: {e}");
                false
            }
        }
    }

    /// The policy version serving right now.
    pub fn current(&self) -> Option<Arc<PolicySet>> {
        self.shared.current.load_full()
    }

    pub fn status(&self) -> Status {
        let current = self.shared.current.load_full();
        let info = current.as_ref().map(|s| s.info().clone());
        let health = self.shared.health.lock().expect("health lock");
        let fmt_time = |t: SystemTime| humantime::format_rfc3339_millis(t).to_string();
        Status {
            ready: info.is_some(),
            backend: "local",
            source: self.shared.source.clone(),
            engine: info.as_ref().map(|i| i.engine),
            revision: info.as_ref().map(|i| Arc::clone(&i.revision)),
            loaded_at: info.as_ref().map(|i| fmt_time(i.loaded_at)),
            policy: info,
            last_error: health.last_error.as_ref().map(|(e, _)| e.clone()),
            last_error_at: health.last_error.as_ref().map(|(_, t)| fmt_time(*t)),
            reloads_ok: self.shared.reloads_ok.load(Ordering::Relaxed),
            reloads_failed: self.shared.reloads_failed.load(Ordering::Relaxed),
        }
    }
}

/// The last version that loaded: its inputs, so a change to one file rebuilds with the
/// other as it was.
struct Good {
    policy: PolicyContent,
    policy_hash: String,
    data: Option<(Value, String)>,
}

struct LocalPoller {
    loader: Arc<Loader>,
    policy: FileSource,
    data: Option<FileSource>,
    max_bytes: u64,
    good: Option<Good>,
}

impl LocalPoller {
    async fn load_everything(&mut self) -> Result<PolicySet, ReloadError> {
        let policy = local::read_policy(&self.policy.path, self.max_bytes)?;
        let data = match &self.data {
            Some(d) => Some(local::read_data(&d.path, self.max_bytes)?),
            None => None,
        };
        self.build(policy, data).await
    }

    /// Build a version off the async runtime (it may run `opa` and compile Wasm) and, on
    /// success, remember its inputs.
    async fn build(
        &mut self,
        policy: PolicyContent,
        data: Option<(Value, String)>,
    ) -> Result<PolicySet, ReloadError> {
        let loader = Arc::clone(&self.loader);
        let (p, d) = (policy.clone(), data.as_ref().map(|(v, _)| v.clone()));
        let set = tokio::task::spawn_blocking(move || loader.load(p, d))
            .await
            .map_err(|e| ReloadError::Task(e.to_string()))??;
        // The loader hashed this content already; the poller compares against that hash.
        self.good = Some(Good {
            policy_hash: set.info().policy_hash.clone(),
            policy,
            data,
        });
        Ok(set)
    }

    async fn run(mut self, shared: Arc<Shared>) {
        let mut policy_tick = ticker(self.policy.poll_interval);
        // With no data file the data timer never fires.
        let mut data_tick = ticker(
            self.data
                .as_ref()
                .map_or(Duration::from_secs(86_400 * 365), |d| d.poll_interval),
        );
        policy_tick.tick().await;
        data_tick.tick().await;
        if self.good.is_none() {
            // Started degraded: the first load happens here, not in `start`.
            match self.load_everything().await {
                Ok(set) => shared.swap_in(set),
                Err(e) => shared.record_failure(&e),
            }
        }
        // Whether the last poll of each file failed: the status error is cleared only when
        // neither is failing, so a data swap does not hide a policy file still broken.
        let mut failing = [self.good.is_none(), false];
        loop {
            let which = tokio::select! {
                _ = policy_tick.tick() => 0,
                _ = data_tick.tick(), if self.data.is_some() => 1,
            };
            let outcome = if which == 0 {
                self.poll_policy().await
            } else {
                self.poll_data().await
            };
            match outcome {
                Ok(Some(set)) => {
                    shared.swap_in(set);
                    failing[which] = false;
                }
                Ok(None) => failing[which] = false,
                Err(e) => {
                    failing[which] = true;
                    shared.record_failure(&e);
                }
            }
            if !failing.contains(&true) {
                shared.clear_error();
            }
        }
    }

    async fn poll_policy(&mut self) -> Result<Option<PolicySet>, ReloadError> {
        let policy = local::read_policy(&self.policy.path, self.max_bytes)?;
        let good = self.good.as_ref();
        if good.is_some_and(|g| g.policy_hash == crate::policy::content_hash(&policy)) {
            return Ok(None);
        }
        tracing::info!(path = %self.policy.path.display(), "policy file changed; rebuilding");
        let Some(good) = good else {
            // Never loaded (started degraded): read the data too.
            let data = self.read_data()?;
            return self.build(policy, data).await.map(Some);
        };
        let data = good.data.clone();
        let good_data_hash = data.as_ref().map(|(_, h)| h.clone());
        match self.build(policy.clone(), data).await {
            Ok(set) => Ok(Some(set)),
            // A policy may only be valid with data that changed alongside it (a renamed
            // rule and its data); try the data on disk before giving up.
            Err(first) => match self.read_data() {
                Ok(Some(fresh)) if Some(&fresh.1) != good_data_hash.as_ref() => self
                    .build(policy, Some(fresh))
                    .await
                    .map(Some)
                    .map_err(|_| first),
                _ => Err(first),
            },
        }
    }

    async fn poll_data(&mut self) -> Result<Option<PolicySet>, ReloadError> {
        let Some((value, hash)) = self.read_data()? else {
            return Ok(None);
        };
        let (policy, policy_hash) = match &self.good {
            Some(g) if g.data.as_ref().is_some_and(|(_, h)| *h == hash) => return Ok(None),
            Some(g) => (g.policy.clone(), Some(g.policy_hash.clone())),
            None => (local::read_policy(&self.policy.path, self.max_bytes)?, None),
        };
        tracing::info!("data file changed; rebuilding");
        match self
            .build(policy, Some((value.clone(), hash.clone())))
            .await
        {
            Ok(set) => Ok(Some(set)),
            // As above, the other way round: new data may need the policy on disk.
            Err(first) => match local::read_policy(&self.policy.path, self.max_bytes) {
                Ok(fresh)
                    if policy_hash.is_some()
                        && Some(crate::policy::content_hash(&fresh)) != policy_hash =>
                {
                    self.build(fresh, Some((value, hash)))
                        .await
                        .map(Some)
                        .map_err(|_| first)
                }
                _ => Err(first),
            },
        }
    }

    fn read_data(&self) -> Result<Option<(Value, String)>, ReloadError> {
        match &self.data {
            Some(d) => Ok(Some(local::read_data(&d.path, self.max_bytes)?)),
            None => Ok(None),
        }
    }
}

fn ticker(period: Duration) -> tokio::time::Interval {
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval
}
