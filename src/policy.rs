//! A loaded policy version (`PolicySet`) and how one is built from an artifact plus data.
//!
//! A `PolicySet` is immutable: policy, data and the instances that evaluate them belong
//! together, so a decision never sees the policy of one version with the data of another.
//! A change builds a whole new `PolicySet` off the request path and the store swaps it in.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::abi::{AbiError, CompiledPolicy, Limits};
use crate::artifact::{ArtifactError, PolicyArtifact, PolicyContent, RegoSource};
use crate::builtins::Builtins;
use crate::bundle::{BundleError, BundleLimits};
use crate::interp::{InterpError, InterpretedPolicy};
use crate::opa_cli::{self, OpaError};
use crate::pool::InstancePool;

/// Which engine evaluates a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// The policy compiled to Wasm by OPA, run on wasmtime.
    Wasm,
    /// The Rego sources interpreted by `regorus`.
    Interpreted,
}

impl std::fmt::Display for EngineKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EngineKind::Wasm => "wasm",
            EngineKind::Interpreted => "interpreted",
        })
    }
}

/// Which engine the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EnginePreference {
    /// Wasm; when `.rego` must be compiled and no `opa` exists, interpret instead (loudly).
    #[default]
    Auto,
    /// Wasm only: a `.rego` policy without `opa` is an error.
    Wasm,
    /// Always interpret the Rego sources.
    Interpreted,
}

/// Why a policy version could not be built. The previous version keeps serving.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    #[error("compiling Rego with opa: {0}")]
    Opa(#[from] OpaError),
    #[error("the bundle written by opa build: {0}")]
    OpaOutput(BundleError),
    #[error("the bundle written by opa build holds no /policy.wasm; was `-t wasm` ignored?")]
    OpaOutputWithoutWasm,
    #[error("loading the Wasm policy: {0}")]
    Abi(#[from] AbiError),
    #[error("interpreting the Rego policy: {0}")]
    Interp(#[from] InterpError),
    #[error("merging the data document into the bundle data: {0}")]
    Data(BundleError),
    #[error(
        "the interpreted engine needs Rego sources, but the policy is a compiled Wasm module{0}"
    )]
    NoRegoSources(&'static str),
    #[error("{0}")]
    DataConflict(String),
    #[error("the bundle holds neither a Wasm module nor Rego sources")]
    EmptyBundle,
}

/// How to build policy versions: engine choice, `opa`, entrypoints, builtins and limits.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub engine: EnginePreference,
    /// `opa` binary from the config; `None` looks at `$WASMGATE_OPA`, then `PATH`.
    pub opa: Option<PathBuf>,
    /// Entrypoints passed to `opa build -e` when compiling Rego.
    pub entrypoints: Vec<String>,
    pub builtins: Builtins,
    pub limits: Limits,
    pub bundle_limits: BundleLimits,
    /// Instances kept per policy version; 0 means one per available core.
    pub pool_size: usize,
    /// How long `opa build` may run before it is killed and the load fails.
    pub opa_timeout: Duration,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            engine: EnginePreference::Auto,
            opa: None,
            entrypoints: vec![
                "flipt/authz/v1/allow".into(),
                "flipt/authz/v1/viewable_namespaces".into(),
            ],
            builtins: Builtins::flipt(),
            limits: Limits::default(),
            bundle_limits: BundleLimits::default(),
            pool_size: 0,
            opa_timeout: Duration::from_secs(120),
        }
    }
}

impl LoadOptions {
    fn pool_size(&self) -> usize {
        match self.pool_size {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        }
    }
}

enum Evaluator {
    Wasm(Box<InstancePool>),
    Interpreted(Box<InterpretedPolicy>),
}

/// One immutable policy version: the evaluator with its data, and where it came from.
pub struct PolicySet {
    evaluator: Evaluator,
    info: PolicyInfo,
}

/// What a policy version is, for status pages and decision logs.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyInfo {
    /// Identifies the policy+data combination; every decision reports it.
    pub revision: Arc<str>,
    pub engine: EngineKind,
    /// `wasm`, `bundle` or `rego`.
    pub artifact: &'static str,
    /// The bundle manifest's revision, when the policy came in a bundle that set one.
    pub bundle_revision: Option<String>,
    pub policy_hash: String,
    pub data_hash: String,
    /// Why this engine serves when it is not the one a user would expect (the interpreted
    /// fallback because no `opa` was found).
    pub engine_note: Option<String>,
    /// The entrypoints this version answers: compiled into the Wasm module, or configured
    /// for the interpreter.
    pub entrypoints: Vec<String>,
    #[serde(serialize_with = "serialize_time")]
    pub loaded_at: SystemTime,
}

fn serialize_time<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_rfc3339_millis(*t).to_string())
}

/// Deepest input nesting accepted. Deeper documents are refused as client errors before
/// evaluation: parsers on both engines recurse, and a 100k-deep array must not reach them.
pub const MAX_INPUT_DEPTH: usize = 100;

/// Why one decision failed. The caller must treat it as a deny.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(
        "entrypoint `{0}` is not one of this policy's entrypoints (see wasmgate.entrypoints and /v1/status)"
    )]
    UnknownEntrypoint(String),
    #[error("input document rejected: {0}")]
    InvalidInput(String),
    #[error(transparent)]
    Wasm(AbiError),
    #[error(transparent)]
    Interpreted(#[from] InterpError),
}

impl EvalError {
    /// Whether the caller, not the policy, is at fault (an HTTP 4xx).
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            EvalError::UnknownEntrypoint(_)
                | EvalError::InvalidInput(_)
                | EvalError::Interpreted(InterpError::Input { .. })
        )
    }
}

impl From<AbiError> for EvalError {
    fn from(e: AbiError) -> Self {
        match e {
            AbiError::UnknownEntrypoint(ep) => EvalError::UnknownEntrypoint(ep),
            other => EvalError::Wasm(other),
        }
    }
}

impl PolicySet {
    pub fn info(&self) -> &PolicyInfo {
        &self.info
    }

    /// Only the policy's entrypoints are answered — compiled ones for Wasm, configured ones
    /// for the interpreter — so both engines accept the same paths and neither exposes data
    /// documents or helper rules.
    fn entrypoint<'a>(&self, entrypoint: &'a str) -> Result<&'a str, EvalError> {
        let entrypoint = entrypoint.trim_matches('/');
        if self.info.entrypoints.iter().any(|e| e == entrypoint) {
            Ok(entrypoint)
        } else {
            // Excerpted: a 10 KB path must not come back in the response and the log.
            Err(EvalError::UnknownEntrypoint(crate::abi::excerpt(
                entrypoint,
            )))
        }
    }

    /// Evaluate with the input given as JSON text (`None`: no input document). The fast path
    /// for callers that already hold JSON bytes, such as the HTTP server.
    pub fn evaluate_json(
        &self,
        entrypoint: &str,
        input_json: Option<&[u8]>,
    ) -> Result<Option<Value>, EvalError> {
        let entrypoint = self.entrypoint(entrypoint)?;
        if let Some(input) = input_json {
            check_depth(input)?;
        }
        match &self.evaluator {
            Evaluator::Wasm(pool) => Ok(pool.evaluate(entrypoint, input_json)?),
            Evaluator::Interpreted(policy) => {
                let input = input_json
                    .map(serde_json::from_slice::<Value>)
                    .transpose()
                    .map_err(|e| EvalError::InvalidInput(e.to_string()))?;
                Ok(policy.evaluate(entrypoint, input.as_ref())?)
            }
        }
    }

    /// Evaluate with an input document (`None`: no input document).
    pub fn evaluate(
        &self,
        entrypoint: &str,
        input: Option<&Value>,
    ) -> Result<Option<Value>, EvalError> {
        let entrypoint = self.entrypoint(entrypoint)?;
        match &self.evaluator {
            Evaluator::Wasm(pool) => {
                let json = input.map(|v| serde_json::to_vec(v).expect("JSON values serialise"));
                Ok(pool.evaluate(entrypoint, json.as_deref())?)
            }
            Evaluator::Interpreted(policy) => Ok(policy.evaluate(entrypoint, input)?),
        }
    }
}

/// Refuse JSON nested deeper than [`MAX_INPUT_DEPTH`]. A byte scan, no parse: brackets
/// inside strings are skipped, escapes honoured.
fn check_depth(json: &[u8]) -> Result<(), EvalError> {
    if crate::artifact::nesting_exceeds(json, MAX_INPUT_DEPTH) {
        return Err(EvalError::InvalidInput(format!(
            "nested deeper than {MAX_INPUT_DEPTH} levels"
        )));
    }
    Ok(())
}

/// OPA refuses data at (or above, as a non-object) the path of a rule: "conflicting rule for
/// data path". Without this check a data file could shadow a compiled entrypoint.
fn check_entrypoint_data(data: &Value, entrypoints: &[String]) -> Result<(), LoadError> {
    for entrypoint in entrypoints {
        let mut node = data;
        let parts: Vec<&str> = entrypoint.split('/').collect();
        for (i, part) in parts.iter().enumerate() {
            let Some(next) = node.get(part) else { break };
            let path = parts[..=i].join("/");
            if i + 1 == parts.len() {
                return Err(LoadError::DataConflict(format!(
                    "data path {path} conflicts with entrypoint {entrypoint}"
                )));
            }
            if !next.is_object() {
                return Err(LoadError::DataConflict(format!(
                    "data path {path} is not an object, but entrypoint {entrypoint} lies under it"
                )));
            }
            node = next;
        }
    }
    Ok(())
}

/// Builds policy versions, remembering the last compiled module and the last `opa build`
/// output so that a data-only change (or a policy reverted to a known version) reloads in
/// milliseconds instead of recompiling.
pub struct Loader {
    options: LoadOptions,
    modules: LastBuilt<Arc<CompiledPolicy>>,
    opa_builds: LastBuilt<Vec<u8>>,
}

impl Loader {
    pub fn new(options: LoadOptions) -> Self {
        Self {
            options,
            modules: LastBuilt::default(),
            opa_builds: LastBuilt::default(),
        }
    }

    /// Build a policy version from the policy content and an optional separately supplied
    /// data document (merged over any bundle data). Blocking: may run `opa` and compile Wasm.
    pub fn load(&self, policy: PolicyContent, data: Option<Value>) -> Result<PolicySet, LoadError> {
        let policy_hash = content_hash(&policy);
        let data = data.unwrap_or_else(|| Value::Object(Default::default()));
        let artifact = PolicyArtifact::from_content(policy, &self.options.bundle_limits)?;
        let artifact_kind = artifact.kind();

        let (wasm, rego, mut merged, bundle_revision) = match artifact {
            PolicyArtifact::Wasm(bytes) => (
                Some(bytes),
                Vec::new(),
                Value::Object(Default::default()),
                None,
            ),
            PolicyArtifact::Rego(sources) => {
                (None, sources, Value::Object(Default::default()), None)
            }
            PolicyArtifact::Bundle(bundle) => {
                if bundle.wasm.is_none() && bundle.rego.is_empty() {
                    return Err(LoadError::EmptyBundle);
                }
                let revision = Some(bundle.manifest.revision.clone()).filter(|r| !r.is_empty());
                (bundle.wasm, bundle.rego, bundle.data, revision)
            }
        };
        crate::bundle::merge_data(&mut merged, data).map_err(LoadError::Data)?;
        let data_json = serde_json::to_vec(&merged).expect("JSON values serialise");
        let data_hash = hex::encode(Sha256::digest(&data_json));

        let mut engine_note = None;
        let (engine, evaluator, entrypoints) = match self.choose(wasm, &rego, artifact_kind)? {
            Choice::Wasm(wasm) => {
                let compiled = self.compile(&wasm)?;
                let entrypoints: Vec<String> = compiled.entrypoints().keys().cloned().collect();
                check_entrypoint_data(&merged, &entrypoints)?;
                let size = self.options.pool_size();
                let pool = InstancePool::new(compiled, Arc::from(data_json), size, size * 2)?;
                (
                    EngineKind::Wasm,
                    Evaluator::Wasm(Box::new(pool)),
                    entrypoints,
                )
            }
            Choice::Interpreted(note) => {
                let policy = InterpretedPolicy::new(&rego, &merged, &self.options.builtins)?
                    .with_eval_timeout(self.options.limits.eval_timeout);
                engine_note = note;
                (
                    EngineKind::Interpreted,
                    Evaluator::Interpreted(Box::new(policy)),
                    self.options
                        .entrypoints
                        .iter()
                        .map(|e| e.trim_matches('/').to_string())
                        .collect(),
                )
            }
        };
        let revision = revision_of(bundle_revision.as_deref(), &policy_hash, &data_hash);
        Ok(PolicySet {
            evaluator,
            info: PolicyInfo {
                revision: Arc::from(revision),
                engine,
                artifact: artifact_kind,
                bundle_revision,
                engine_note,
                policy_hash,
                data_hash,
                entrypoints,
                loaded_at: SystemTime::now(),
            },
        })
    }

    /// Pick the engine: a Wasm module is run as is; Rego is compiled with `opa` when the
    /// preference allows, else interpreted.
    fn choose(
        &self,
        wasm: Option<Vec<u8>>,
        rego: &[RegoSource],
        kind: &'static str,
    ) -> Result<Choice, LoadError> {
        match (self.options.engine, wasm) {
            (EnginePreference::Interpreted, _) if rego.is_empty() => {
                Err(LoadError::NoRegoSources(if kind == "bundle" {
                    " (the bundle carries no .rego files)"
                } else {
                    ""
                }))
            }
            (EnginePreference::Interpreted, _) => Ok(Choice::Interpreted(None)),
            (_, Some(wasm)) => Ok(Choice::Wasm(wasm)),
            (preference, None) => {
                let opa = match opa_cli::locate(self.options.opa.as_deref()) {
                    Ok(opa) => opa,
                    // Only a missing `opa` falls back; a configured path that does not exist
                    // is a mistake to report, not to paper over.
                    Err(e @ OpaError::NotFound) if preference == EnginePreference::Auto => {
                        tracing::warn!(
                            "FALLING BACK TO THE INTERPRETED ENGINE (regorus): {e}. \
                             Decisions are served, but slower than compiled Wasm."
                        );
                        return Ok(Choice::Interpreted(Some(format!(
                            "interpreted fallback: {e}"
                        ))));
                    }
                    Err(e) => return Err(e.into()),
                };
                Ok(Choice::Wasm(self.opa_build(&opa, rego)?))
            }
        }
    }

    fn opa_build(&self, opa: &std::path::Path, rego: &[RegoSource]) -> Result<Vec<u8>, LoadError> {
        let mut hasher = Sha256::new();
        for s in rego {
            hasher.update(s.path.as_bytes());
            hasher.update([0]);
            hasher.update(s.text.as_bytes());
            hasher.update([0]);
        }
        hasher.update(self.options.entrypoints.join("\0").as_bytes());
        let key = hex::encode(hasher.finalize());
        if let Some(wasm) = self.opa_builds.get(&key) {
            return Ok(wasm);
        }
        tracing::info!(opa = %opa.display(), entrypoints = ?self.options.entrypoints, "compiling Rego to Wasm with opa build");
        let bundle = opa_cli::build_wasm_bundle(
            opa,
            rego,
            &self.options.entrypoints,
            &self.options.builtins,
            self.options.opa_timeout,
        )?;
        let bundle = crate::bundle::read_bundle(&bundle, &self.options.bundle_limits)
            .map_err(LoadError::OpaOutput)?;
        let wasm = bundle.wasm.ok_or(LoadError::OpaOutputWithoutWasm)?;
        self.opa_builds.put(key, wasm.clone());
        Ok(wasm)
    }

    fn compile(&self, wasm: &[u8]) -> Result<Arc<CompiledPolicy>, LoadError> {
        let key = hex::encode(Sha256::digest(wasm));
        if let Some(compiled) = self.modules.get(&key) {
            return Ok(compiled);
        }
        let compiled = Arc::new(CompiledPolicy::compile(
            wasm,
            &self.options.builtins,
            self.options.limits,
        )?);
        self.modules.put(key, Arc::clone(&compiled));
        Ok(compiled)
    }
}

/// The most recent build product, by content hash. One entry is enough: reloads mostly
/// change data (same module) or move to a new module for good.
struct LastBuilt<T>(Mutex<Option<(String, T)>>);

impl<T> Default for LastBuilt<T> {
    fn default() -> Self {
        Self(Mutex::new(None))
    }
}

impl<T: Clone> LastBuilt<T> {
    fn get(&self, key: &str) -> Option<T> {
        match &*self.0.lock().expect("cache lock") {
            Some((k, v)) if k == key => Some(v.clone()),
            _ => None,
        }
    }

    fn put(&self, key: String, value: T) {
        *self.0.lock().expect("cache lock") = Some((key, value));
    }
}

enum Choice {
    Wasm(Vec<u8>),
    /// With the reason when it is a fallback.
    Interpreted(Option<String>),
}

/// Hash of the policy content: file bytes, or every `.rego` file of a directory by path.
pub fn content_hash(content: &PolicyContent) -> String {
    let mut hasher = Sha256::new();
    match content {
        PolicyContent::File { bytes, .. } => hasher.update(bytes),
        PolicyContent::RegoDir(sources) => {
            for s in sources {
                hasher.update((s.path.len() as u64).to_le_bytes());
                hasher.update(s.path.as_bytes());
                hasher.update((s.text.len() as u64).to_le_bytes());
                hasher.update(s.text.as_bytes());
            }
        }
    }
    hex::encode(hasher.finalize())
}

fn revision_of(bundle_revision: Option<&str>, policy_hash: &str, data_hash: &str) -> String {
    let combined = hex::encode(Sha256::digest(format!("{policy_hash}:{data_hash}")));
    match bundle_revision {
        Some(rev) => format!("{rev}+{}", &combined[..12]),
        None => combined[..12].to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn input_nesting_is_bounded_without_parsing() {
        let ok = format!(
            "{}{}",
            "[".repeat(MAX_INPUT_DEPTH),
            "]".repeat(MAX_INPUT_DEPTH)
        );
        assert!(check_depth(ok.as_bytes()).is_ok());
        let deep = format!(
            "{}{}",
            "[".repeat(MAX_INPUT_DEPTH + 1),
            "]".repeat(MAX_INPUT_DEPTH + 1)
        );
        let err = check_depth(deep.as_bytes()).unwrap_err();
        assert!(
            err.is_client_error() && err.to_string().contains("nested deeper than 100"),
            "{err}"
        );
        // Brackets inside strings, escaped quotes included, do not count.
        let text = format!(r#"{{"s":"{}\"{}"}}"#, "[".repeat(500), "{".repeat(500));
        assert!(check_depth(text.as_bytes()).is_ok());
    }

    #[test]
    fn data_at_an_entrypoint_path_is_refused() {
        let eps = ["flipt/authz/v1/allow".to_string()];
        let shadow = json!({"flipt": {"authz": {"v1": {"allow": true}}}});
        let err = check_entrypoint_data(&shadow, &eps).unwrap_err();
        assert!(
            err.to_string()
                .contains("data path flipt/authz/v1/allow conflicts with entrypoint"),
            "{err}"
        );
        let leaf = json!({"flipt": {"authz": "x"}});
        let err = check_entrypoint_data(&leaf, &eps).unwrap_err();
        assert!(
            err.to_string()
                .contains("data path flipt/authz is not an object"),
            "{err}"
        );
        let beside = json!({"flipt": {"authz": {"v1": {"roles": []}}}, "roles": []});
        assert!(check_entrypoint_data(&beside, &eps).is_ok());
    }
}
