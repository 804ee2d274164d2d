//! wasmgate's configuration: Flipt's `authorization:` section plus wasmgate's own `wasmgate:`.
//!
//! Users point wasmgate at the file Flipt already reads, so the `authorization` schema, its
//! defaults and its `FLIPT_AUTHORIZATION_*` environment overrides follow Flipt v1, and the
//! rest of a Flipt file (`server:`, `authentication:`, …) is ignored. Where Flipt is lax,
//! wasmgate is strict, because a policy engine that quietly runs the wrong policy is worse
//! than one that refuses to start:
//! - defaults and validation apply whatever `required` says (Flipt skips both when false);
//! - an unknown key inside `authorization` or `wasmgate` is an error, so a typo cannot fall
//!   back to a default;
//! - an unknown `backend` is an error (Flipt turns it into an OPA client with no config).
//!
//! Only the selected backend is validated. The other blocks are still checked for unknown
//! keys and wrong types, and kept when they can be represented; a block that cannot (a `local`
//! without `policy`, an `object` of an unsupported type) is `None`.
//!
//! Values pass through three steps: `FLIPT_AUTHORIZATION_*` variables replace file values,
//! `${NAME}` inside strings is expanded, then each field is parsed and checked. Every error
//! names the source and the field path, e.g.
//! `wasmgate.yml: authorization.local.policy.poll_interval: must be greater than zero`.

mod byte_size;
mod duration;
mod env;
mod yaml;

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use yaml_serde::{Mapping, Value};

pub use byte_size::parse_byte_size;
pub use duration::{DurationError, parse_go_duration};

use env::Env;
use yaml::{FieldError, Node};

/// Flipt's default: policies change rarely and recompiling is not free.
const DEFAULT_POLICY_POLL_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// Flipt's default (its schema says 5m, its Go code 30s; the code is what runs).
const DEFAULT_DATA_POLL_INTERVAL: Duration = Duration::from_secs(30);
/// The two rules Flipt v1 queries.
const DEFAULT_ENTRYPOINTS: [&str; 2] =
    ["flipt/authz/v1/allow", "flipt/authz/v1/viewable_namespaces"];
const MIB: u64 = 1 << 20;
/// The most a wasm32 module can address; OPA compiles to wasm32.
const WASM32_MAX_MEMORY: u64 = 4 << 30;

/// Everything wasmgate reads from its configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Where policies and data come from, in Flipt's schema.
    pub authorization: Authorization,
    /// How wasmgate serves them; all defaults when the section is absent.
    pub wasmgate: Settings,
}

/// Flipt's `authorization` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    /// Kept so Flipt configs load unchanged; wasmgate enforces decisions whatever it says.
    pub required: bool,
    /// Which source serves policies; the matching field below is always `Some`.
    pub backend: Backend,
    pub local: Option<LocalSources>,
    pub bundle: Option<BundleBackend>,
    pub object: Option<ObjectBackend>,
}

/// Where policies come from (YAML: `local`, `bundle`, `object`); defaults to `local`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// Files on disk, polled.
    Local,
    /// OPA bundle services, described by a raw OPA configuration.
    Bundle,
    /// A `bundle.tar.gz` in object storage.
    Object,
}

/// The `local` backend: a policy and, optionally, a data document, each polled for changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalSources {
    /// A `.rego`, `.wasm` or `.tar.gz` bundle, or a directory of `.rego` files.
    pub policy: FileSource,
    /// A JSON document mounted at `data`.
    pub data: Option<FileSource>,
}

/// A polled file. The path is absolute when the configuration came from a file, so it keeps
/// meaning the same thing whatever the working directory is later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSource {
    pub path: PathBuf,
    /// Always greater than zero for the selected backend.
    pub poll_interval: Duration,
}

/// The `bundle` backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleBackend {
    /// OPA's own `services`/`bundles` configuration, kept verbatim (after `${NAME}` expansion)
    /// because its schema is OPA's, not ours.
    pub configuration: String,
}

/// The `object` backend (YAML key `type` selects the store).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectBackend {
    pub kind: ObjectKind,
    /// Always `Some` when this is the selected backend.
    pub s3: Option<S3Source>,
}

/// Object stores wasmgate can fetch bundles from; Flipt only ever shipped S3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    S3,
}

/// Where the bundle lives in S3 (or an S3-compatible store). Empty strings count as unset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Source {
    /// Picks the AWS endpoint when `endpoint` is unset.
    pub region: Option<String>,
    pub bucket: String,
    pub prefix: Option<String>,
    /// An `http://` or `https://` URL, for MinIO and other S3-compatible stores.
    pub endpoint: Option<String>,
}

/// The `wasmgate` section: wasmgate's own knobs, every one optional.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Address of the decision API; loopback by default so nothing is exposed by accident.
    pub listen: SocketAddr,
    /// Rules compiled as Wasm entrypoints, slash separated (`flipt/authz/v1/allow`), the form
    /// `opa build -e` and the decision API path use.
    pub entrypoints: Vec<String>,
    /// The `opa` binary that compiles `.rego`; `None` means look for `opa` on `PATH`. A bare
    /// name is kept for `PATH` lookup; other relative paths are resolved like policy paths.
    pub opa: Option<PathBuf>,
    pub engine: EngineChoice,
    /// Evaluator instances; 0 means one per available core.
    pub pool_size: usize,
    /// Deadline of one evaluation; a runaway policy fails its decision, not the server.
    pub eval_timeout: Duration,
    /// Linear-memory cap of one Wasm instance (YAML `max_memory`), 1 MiB to 4 GiB.
    pub max_memory_bytes: u64,
    /// Largest bundle accepted (YAML `max_bundle_size`), against decompression bombs.
    pub max_bundle_bytes: u64,
    /// Serve at once and load the first policy in the background (denying until it loads),
    /// instead of failing startup when that load fails; for deployments where the policy
    /// source may come up after wasmgate.
    pub start_degraded: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 8181)),
            entrypoints: DEFAULT_ENTRYPOINTS.map(String::from).to_vec(),
            opa: None,
            engine: EngineChoice::Auto,
            pool_size: 0,
            eval_timeout: Duration::from_secs(1),
            max_memory_bytes: 256 * MIB,
            max_bundle_bytes: 64 * MIB,
            start_degraded: false,
        }
    }
}

/// How policies are evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EngineChoice {
    /// Wasm when the policy is (or can be compiled to) Wasm, the interpreter otherwise.
    Auto,
    /// Wasm only; a policy that cannot be compiled fails to load.
    Wasm,
    /// The `regorus` interpreter only.
    Interpreted,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Local => "local",
            Backend::Bundle => "bundle",
            Backend::Object => "object",
        })
    }
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ObjectKind::S3 => "s3",
        })
    }
}

impl fmt::Display for EngineChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EngineChoice::Auto => "auto",
            EngineChoice::Wasm => "wasm",
            EngineChoice::Interpreted => "interpreted",
        })
    }
}

/// Why a configuration was rejected. The text always starts with the source (file path or
/// `<string>`) so it can be shown to the user as is.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// Not YAML; the library's message carries the line and column.
    #[error("{origin}: invalid YAML: {message}")]
    Syntax {
        origin: String,
        /// 1-based position, when the YAML library knows it.
        line: Option<usize>,
        column: Option<usize>,
        message: String,
    },
    /// A field is missing, mistyped or out of range.
    #[error("{origin}: {}{message}", field_prefix(field))]
    Field {
        origin: String,
        /// Dotted path such as `authorization.local.policy.path` or `wasmgate.entrypoints[1]`;
        /// empty when the document as a whole is wrong.
        field: String,
        message: String,
    },
}

fn field_prefix(field: &str) -> String {
    if field.is_empty() {
        String::new()
    } else {
        format!("{field}: ")
    }
}

impl ConfigError {
    /// The dotted path of the offending field, for callers (and tests) that must not parse
    /// the message.
    pub fn field(&self) -> Option<&str> {
        match self {
            ConfigError::Field { field, .. } if !field.is_empty() => Some(field),
            _ => None,
        }
    }

    fn from_field(origin: &str, error: FieldError) -> Self {
        ConfigError::Field {
            origin: origin.to_owned(),
            field: error.field,
            message: error.message,
        }
    }
}

impl Config {
    /// Reads and validates a config file; relative paths inside are resolved against the
    /// file's directory (made absolute), as a user reading the file would expect.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Io {
            path: path.to_path_buf(),
            error,
        })?;
        Self::from_yaml_str(&text, &config_dir(path), &path.display().to_string())
    }

    /// Parses and validates configuration text, with the process environment for `${NAME}`
    /// and `FLIPT_AUTHORIZATION_*`. `base_dir` resolves relative paths; `origin` names the
    /// source in errors (a file path, or `<string>`).
    pub fn from_yaml_str(text: &str, base_dir: &Path, origin: &str) -> Result<Config, ConfigError> {
        Self::from_yaml_str_with_env(text, base_dir, origin, &|name| std::env::var(name).ok())
    }

    /// [`Config::from_yaml_str`] with an injected environment, so tests never mutate the
    /// process environment.
    pub(crate) fn from_yaml_str_with_env(
        text: &str,
        base_dir: &Path,
        origin: &str,
        env: Env<'_>,
    ) -> Result<Config, ConfigError> {
        let mut root: Value = yaml_serde::from_str(text).map_err(|e| syntax_error(origin, &e))?;
        // Flipt's YAML reader honours `<<: *anchor` merges; so do we.
        root.apply_merge().map_err(|e| syntax_error(origin, &e))?;
        let fields = match &mut root {
            Value::Mapping(fields) => fields,
            Value::Null => {
                root = Value::Mapping(Mapping::new());
                root.as_mapping_mut().expect("just made a mapping")
            }
            _ => {
                let error =
                    FieldError::new("", "expected a mapping with an `authorization` section");
                return Err(ConfigError::from_field(origin, error));
            }
        };
        let overrides = env::apply_flipt_overrides(fields, env)
            .map_err(|e| ConfigError::from_field(origin, e))?;
        parse_document(&Node::root(&root, env), base_dir)
            .map_err(|e| ConfigError::from_field(origin, overrides.annotate(e)))
    }
}

fn syntax_error(origin: &str, error: &yaml_serde::Error) -> ConfigError {
    let location = error.location();
    ConfigError::Syntax {
        origin: origin.to_owned(),
        line: location.as_ref().map(|l| l.line()),
        column: location.as_ref().map(|l| l.column()),
        message: error.to_string(),
    }
}

/// The directory relative paths in the file at `path` are resolved against.
fn config_dir(path: &Path) -> PathBuf {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf())
}

fn parse_document(root: &Node<'_>, base_dir: &Path) -> yaml::Result<Config> {
    // The top level is shared with Flipt: keys other than ours are Flipt's business.
    let top = root.any_section()?;
    let authorization = top
        .get("authorization")
        .ok_or_else(|| FieldError::new("authorization", "must be configured"))?;
    Ok(Config {
        authorization: parse_authorization(&authorization, base_dir)?,
        wasmgate: match top.get("wasmgate") {
            Some(node) => parse_settings(&node, base_dir)?,
            None => Settings::default(),
        },
    })
}

fn parse_authorization(node: &Node<'_>, base_dir: &Path) -> yaml::Result<Authorization> {
    let section = node.section(&["required", "backend", "local", "bundle", "object"])?;
    let required = section.read("required", Node::bool)?.unwrap_or(false);
    let backend = section
        .read("backend", parse_backend)?
        .unwrap_or(Backend::Local);
    let local = section
        .read("local", |n| {
            parse_local(n, base_dir, backend == Backend::Local)
        })?
        .flatten();
    let bundle = section.read("bundle", |n| parse_bundle(n, backend == Backend::Bundle))?;
    let object = section
        .read("object", |n| parse_object(n, backend == Backend::Object))?
        .flatten();
    let configured = match backend {
        Backend::Local => local.is_some(),
        Backend::Bundle => bundle.is_some(),
        Backend::Object => object.is_some(),
    };
    if !configured {
        return Err(FieldError::new(
            section.path_of(&backend.to_string()),
            format!("must be configured for backend {backend}"),
        ));
    }
    Ok(Authorization {
        required,
        backend,
        local,
        bundle,
        object,
    })
}

fn parse_backend(node: &Node<'_>) -> yaml::Result<Backend> {
    parse_choice(
        node,
        "backend",
        &[
            ("local", Backend::Local),
            ("bundle", Backend::Bundle),
            ("object", Backend::Object),
        ],
    )
}

/// A string that must be one of a fixed set of names; the error lists them.
fn parse_choice<T: Copy>(node: &Node<'_>, what: &str, choices: &[(&str, T)]) -> yaml::Result<T> {
    let value = node.string()?;
    match choices.iter().find(|(name, _)| *name == value) {
        Some((_, choice)) => Ok(*choice),
        None => {
            let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
            Err(node.error(format!(
                "unknown {what} {value:?} (expected one of: {})",
                names.join(", ")
            )))
        }
    }
}

/// `None` for an unselected block without a policy, which the type cannot represent.
fn parse_local(
    node: &Node<'_>,
    base_dir: &Path,
    selected: bool,
) -> yaml::Result<Option<LocalSources>> {
    let section = node.section(&["policy", "data"])?;
    let policy = section.read("policy", |n| {
        parse_file_source(n, base_dir, DEFAULT_POLICY_POLL_INTERVAL, selected)
    })?;
    let data = section.read("data", |n| {
        parse_file_source(n, base_dir, DEFAULT_DATA_POLL_INTERVAL, selected)
    })?;
    match policy {
        Some(policy) => Ok(Some(LocalSources { policy, data })),
        None if selected => Err(FieldError::new(
            section.path_of("policy"),
            "must be configured",
        )),
        None => Ok(None),
    }
}

fn parse_file_source(
    node: &Node<'_>,
    base_dir: &Path,
    default_interval: Duration,
    selected: bool,
) -> yaml::Result<FileSource> {
    let section = node.section(&["path", "poll_interval"])?;
    let path = section.read("path", Node::string)?.unwrap_or_default();
    if selected && path.trim().is_empty() {
        return Err(FieldError::new(
            section.path_of("path"),
            "must be a non-empty string",
        ));
    }
    let poll_interval = if selected {
        section.read("poll_interval", positive_duration)?
    } else {
        section.read("poll_interval", |n| Ok(n.duration()?.or_zero()))?
    };
    Ok(FileSource {
        // An unset path stays empty rather than becoming `base_dir` itself.
        path: if path.is_empty() {
            PathBuf::new()
        } else {
            resolve(base_dir, &path)
        },
        poll_interval: poll_interval.unwrap_or(default_interval),
    })
}

fn parse_bundle(node: &Node<'_>, selected: bool) -> yaml::Result<BundleBackend> {
    let section = node.section(&["configuration"])?;
    let configuration = section
        .read("configuration", Node::string)?
        .unwrap_or_default();
    if selected && configuration.trim().is_empty() {
        return Err(FieldError::new(
            section.path_of("configuration"),
            "must be a non-empty string (an OPA configuration with services and bundles)",
        ));
    }
    Ok(BundleBackend { configuration })
}

/// `None` for an unselected block of an unsupported type, which the type cannot represent.
fn parse_object(node: &Node<'_>, selected: bool) -> yaml::Result<Option<ObjectBackend>> {
    let section = node.section(&["type", "s3"])?;
    let kind = section.read("type", Node::string)?;
    let s3 = section.read("s3", |n| parse_s3(n, selected))?;
    let type_path = section.path_of("type");
    let kind = match kind.as_deref() {
        Some("s3") => ObjectKind::S3,
        _ if !selected => return Ok(None),
        None | Some("") => {
            return Err(FieldError::new(
                type_path,
                "must be configured (expected one of: s3)",
            ));
        }
        Some(other) => {
            return Err(FieldError::new(
                type_path,
                format!("unsupported object storage type {other:?} (expected one of: s3)"),
            ));
        }
    };
    if selected && s3.is_none() {
        return Err(FieldError::new(
            section.path_of("s3"),
            "must be configured for type s3",
        ));
    }
    Ok(Some(ObjectBackend { kind, s3 }))
}

fn parse_s3(node: &Node<'_>, selected: bool) -> yaml::Result<S3Source> {
    let section = node.section(&["region", "bucket", "prefix", "endpoint"])?;
    let optional = |key| -> yaml::Result<Option<String>> {
        Ok(section.read(key, Node::string)?.filter(|s| !s.is_empty()))
    };
    let source = S3Source {
        region: optional("region")?,
        bucket: section.read("bucket", Node::string)?.unwrap_or_default(),
        prefix: optional("prefix")?,
        endpoint: optional("endpoint")?,
    };
    if selected && source.bucket.trim().is_empty() {
        return Err(FieldError::new(
            section.path_of("bucket"),
            "must be a non-empty string",
        ));
    }
    if selected
        && let Some(endpoint) = &source.endpoint
        && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
    {
        return Err(FieldError::new(
            section.path_of("endpoint"),
            format!("{endpoint:?} must be a URL starting with http:// or https://"),
        ));
    }
    Ok(source)
}

fn parse_settings(node: &Node<'_>, base_dir: &Path) -> yaml::Result<Settings> {
    let section = node.section(&[
        "listen",
        "entrypoints",
        "opa",
        "engine",
        "pool_size",
        "eval_timeout",
        "max_memory",
        "max_bundle_size",
        "start_degraded",
    ])?;
    let defaults = Settings::default();
    Ok(Settings {
        listen: section
            .read("listen", parse_listen)?
            .unwrap_or(defaults.listen),
        entrypoints: section
            .read("entrypoints", parse_entrypoints)?
            .unwrap_or(defaults.entrypoints),
        opa: section.read("opa", |n| parse_program(n, base_dir))?,
        engine: section
            .read("engine", parse_engine)?
            .unwrap_or(defaults.engine),
        pool_size: section
            .read("pool_size", parse_pool_size)?
            .unwrap_or(defaults.pool_size),
        eval_timeout: section
            .read("eval_timeout", positive_duration)?
            .unwrap_or(defaults.eval_timeout),
        max_memory_bytes: section
            .read("max_memory", parse_max_memory)?
            .unwrap_or(defaults.max_memory_bytes),
        max_bundle_bytes: section
            .read("max_bundle_size", parse_max_bundle)?
            .unwrap_or(defaults.max_bundle_bytes),
        start_degraded: section
            .read("start_degraded", Node::bool)?
            .unwrap_or(defaults.start_degraded),
    })
}

/// Largest pool accepted: each instance holds a linear memory, and a typo of a few extra
/// digits must be a config error, not an allocation failure at start.
const MAX_POOL_SIZE: usize = 1024;

fn parse_pool_size(node: &Node<'_>) -> yaml::Result<usize> {
    let size = node.usize()?;
    if size > MAX_POOL_SIZE {
        return Err(node.error(format!(
            "{size} is more than the maximum of {MAX_POOL_SIZE} (0 means one per core)"
        )));
    }
    Ok(size)
}

fn parse_listen(node: &Node<'_>) -> yaml::Result<SocketAddr> {
    let text = node.string()?;
    text.parse()
        .map_err(|_| node.error(format!("invalid socket address {text:?}")))
}

fn parse_entrypoints(node: &Node<'_>) -> yaml::Result<Vec<String>> {
    let items = node.items()?;
    if items.is_empty() {
        return Err(node.error("must list at least one entrypoint, e.g. [flipt/authz/v1/allow]"));
    }
    let mut entrypoints: Vec<String> = Vec::with_capacity(items.len());
    for item in &items {
        let entrypoint = parse_entrypoint(item)?;
        if entrypoints.contains(&entrypoint) {
            return Err(item.error(format!("duplicate entrypoint {entrypoint:?}")));
        }
        entrypoints.push(entrypoint);
    }
    Ok(entrypoints)
}

/// Entrypoints are written the way `opa build -e` and the Wasm `entrypoints()` table name
/// them; the query forms (`data.x.y`, `/x/y`) would silently match nothing there.
fn parse_entrypoint(node: &Node<'_>) -> yaml::Result<String> {
    let entrypoint = node.string()?;
    let problem = if entrypoint.trim().is_empty() {
        "must be a non-empty rule path like flipt/authz/v1/allow"
    } else if entrypoint.starts_with("data.") {
        "must not start with \"data.\"; write the rule path slash separated, \
         e.g. flipt/authz/v1/allow"
    } else if entrypoint.starts_with('/') {
        "must not start with '/'; write it like flipt/authz/v1/allow"
    } else if entrypoint.split('/').any(str::is_empty) {
        "must not contain an empty path segment (\"//\" or a trailing '/')"
    } else if entrypoint.split('/').count() > crate::interp::MAX_PATH_SEGMENTS {
        "has more than 64 path segments"
    } else {
        return Ok(entrypoint);
    };
    Err(node.error(format!("{entrypoint:?} {problem}")))
}

fn parse_engine(node: &Node<'_>) -> yaml::Result<EngineChoice> {
    parse_choice(
        node,
        "engine",
        &[
            ("auto", EngineChoice::Auto),
            ("wasm", EngineChoice::Wasm),
            ("interpreted", EngineChoice::Interpreted),
        ],
    )
}

fn parse_program(node: &Node<'_>, base_dir: &Path) -> yaml::Result<PathBuf> {
    let program = node.string()?;
    if program.trim().is_empty() {
        return Err(node.error("must be a non-empty path to the opa binary"));
    }
    // A bare name (`opa`) means "search PATH", as in a shell; resolving it against the
    // config directory would break exactly that.
    if Path::new(&program).parent() == Some(Path::new("")) {
        return Ok(PathBuf::from(program));
    }
    Ok(resolve(base_dir, &program))
}

fn parse_max_memory(node: &Node<'_>) -> yaml::Result<u64> {
    let bytes = node.byte_size()?;
    if bytes < MIB {
        return Err(node.error("must be at least 1MiB"));
    }
    if bytes > WASM32_MAX_MEMORY {
        return Err(node.error("must be at most 4GiB, all a wasm32 module can address"));
    }
    Ok(bytes)
}

fn parse_max_bundle(node: &Node<'_>) -> yaml::Result<u64> {
    match node.byte_size()? {
        0 => Err(node.error("must be greater than zero")),
        bytes => Ok(bytes),
    }
}

/// A duration that must be > 0: Go accepts `0` and `-5m`, but neither means anything as an
/// interval or deadline.
fn positive_duration(node: &Node<'_>) -> yaml::Result<Duration> {
    let duration = node.duration()?;
    if !duration.is_positive() {
        return Err(node.error("must be greater than zero"));
    }
    Ok(duration.magnitude)
}

fn resolve(base_dir: &Path, path: &str) -> PathBuf {
    let path = Path::new(path);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base_dir.join(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "/etc/wasmgate";
    const SECS: fn(u64) -> Duration = Duration::from_secs;

    fn parse_with(yaml: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env = |name: &str| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.to_string())
        };
        Config::from_yaml_str_with_env(yaml, Path::new(BASE), "wasmgate.yml", &env)
    }

    fn parse(yaml: &str) -> Result<Config, ConfigError> {
        parse_with(yaml, &[])
    }

    fn parse_ok(yaml: &str) -> Config {
        parse(yaml).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The field path and full text of the error `yaml` must produce.
    fn rejected(yaml: &str) -> (String, String) {
        let err = parse(yaml).expect_err(yaml);
        (err.field().unwrap_or_default().to_owned(), err.to_string())
    }

    fn at(path: &str) -> PathBuf {
        Path::new(BASE).join(path)
    }

    const FULL_EXAMPLE: &str = r#"
authorization:
  required: true
  backend: local
  local:
    policy: { path: policy.rego, poll_interval: 5m }
    data:   { path: data.json,   poll_interval: 30s }
  bundle:
    configuration: |
      services:
        acme: { url: https://bundles.example.com }
  object:
    type: s3
    s3: { region: us-east-1, bucket: b, prefix: p, endpoint: http://127.0.0.1:9000 }
wasmgate:
  listen: 127.0.0.1:8181
  entrypoints: [flipt/authz/v1/allow]
  opa: /usr/local/bin/opa
  engine: auto
  pool_size: 0
  eval_timeout: 1s
  max_memory: 256MiB
  max_bundle_size: 64MiB
  start_degraded: false
"#;

    #[test]
    fn full_example_parses_to_the_exact_struct() {
        let want = Config {
            authorization: Authorization {
                required: true,
                backend: Backend::Local,
                local: Some(LocalSources {
                    policy: FileSource {
                        path: at("policy.rego"),
                        poll_interval: SECS(300),
                    },
                    data: Some(FileSource {
                        path: at("data.json"),
                        poll_interval: SECS(30),
                    }),
                }),
                bundle: Some(BundleBackend {
                    configuration: "services:\n  acme: { url: https://bundles.example.com }\n"
                        .into(),
                }),
                object: Some(ObjectBackend {
                    kind: ObjectKind::S3,
                    s3: Some(S3Source {
                        region: Some("us-east-1".into()),
                        bucket: "b".into(),
                        prefix: Some("p".into()),
                        endpoint: Some("http://127.0.0.1:9000".into()),
                    }),
                }),
            },
            wasmgate: Settings {
                listen: "127.0.0.1:8181".parse().unwrap(),
                entrypoints: vec!["flipt/authz/v1/allow".into()],
                opa: Some(PathBuf::from("/usr/local/bin/opa")),
                engine: EngineChoice::Auto,
                pool_size: 0,
                eval_timeout: SECS(1),
                max_memory_bytes: 256 << 20,
                max_bundle_bytes: 64 << 20,
                start_degraded: false,
            },
        };
        assert_eq!(parse_ok(FULL_EXAMPLE), want);
    }

    #[test]
    fn minimal_flipt_config_gets_flipt_defaults_and_no_data() {
        let config = parse_ok("authorization: {required: true, local: {policy: {path: p.rego}}}");
        assert_eq!(
            config.authorization,
            Authorization {
                required: true,
                backend: Backend::Local,
                local: Some(LocalSources {
                    policy: FileSource {
                        path: at("p.rego"),
                        poll_interval: SECS(300),
                    },
                    data: None,
                }),
                bundle: None,
                object: None,
            }
        );
        assert_eq!(config.wasmgate, Settings::default());
    }

    #[test]
    fn defaults_apply_even_when_required_is_false_or_absent() {
        let config = parse_ok("authorization: {local: {policy: {path: p.rego}}}");
        assert!(!config.authorization.required);
        assert_eq!(config.authorization.backend, Backend::Local);
        assert_eq!(
            config.authorization.local.unwrap().policy.poll_interval,
            SECS(300)
        );
    }

    #[test]
    fn data_path_without_interval_polls_every_30s() {
        let config =
            parse_ok("authorization: {local: {policy: {path: p.rego}, data: {path: d.json}}}");
        let data = config.authorization.local.unwrap().data.unwrap();
        assert_eq!(
            data,
            FileSource {
                path: at("d.json"),
                poll_interval: SECS(30)
            }
        );
    }

    #[test]
    fn advanced_flipt_config_keeps_explicit_intervals() {
        let config = parse_ok(
            "
authorization:
  required: true
  local:
    policy: { path: /etc/flipt/authz/policy.rego, poll_interval: 1m }
    data: { path: /etc/flipt/authz/data.json, poll_interval: 1m }
",
        );
        let local = config.authorization.local.unwrap();
        assert_eq!(local.policy.poll_interval, SECS(60));
        assert_eq!(local.data.unwrap().poll_interval, SECS(60));
    }

    #[test]
    fn settings_default_matches_the_documented_defaults() {
        let settings = Settings::default();
        assert_eq!(settings.listen, "127.0.0.1:8181".parse().unwrap());
        assert_eq!(
            settings.entrypoints,
            ["flipt/authz/v1/allow", "flipt/authz/v1/viewable_namespaces"]
        );
        assert_eq!(settings.opa, None);
        assert_eq!(settings.engine, EngineChoice::Auto);
        assert_eq!(settings.pool_size, 0);
        assert_eq!(settings.eval_timeout, SECS(1));
        assert_eq!(settings.max_memory_bytes, 256 * 1024 * 1024);
        assert_eq!(settings.max_bundle_bytes, 64 * 1024 * 1024);
        assert!(!settings.start_degraded);
    }

    #[test]
    fn wasmgate_section_reads_every_setting() {
        let config = parse_ok(
            "
authorization: {local: {policy: {path: p.rego}}}
wasmgate:
  listen: '[::]:9000'
  entrypoints: [a/allow, b/c/d]
  opa: bin/opa
  engine: interpreted
  pool_size: 4
  eval_timeout: 250ms
  max_memory: 1048576
  max_bundle_size: 1.5GiB
  start_degraded: true
",
        );
        assert_eq!(
            config.wasmgate,
            Settings {
                listen: "[::]:9000".parse().unwrap(),
                entrypoints: vec!["a/allow".into(), "b/c/d".into()],
                opa: Some(at("bin/opa")),
                engine: EngineChoice::Interpreted,
                pool_size: 4,
                eval_timeout: Duration::from_millis(250),
                max_memory_bytes: 1 << 20,
                max_bundle_bytes: 3 << 29,
                start_degraded: true,
            }
        );
        let wasm =
            parse_ok("authorization: {local: {policy: {path: p}}}\nwasmgate: {engine: wasm}");
        assert_eq!(wasm.wasmgate.engine, EngineChoice::Wasm);
    }

    #[test]
    fn bundle_and_object_backends_parse_when_selected() {
        let bundle =
            parse_ok("authorization: {backend: bundle, bundle: {configuration: 'services: {}'}}");
        assert_eq!(bundle.authorization.backend, Backend::Bundle);
        assert_eq!(
            bundle.authorization.bundle.unwrap().configuration,
            "services: {}"
        );
        assert_eq!(bundle.authorization.local, None);

        let object = parse_ok(
            "authorization: {backend: object, object: {type: s3, s3: {bucket: 2024, prefix: ''}}}",
        );
        assert_eq!(object.authorization.backend, Backend::Object);
        assert_eq!(
            object.authorization.object,
            Some(ObjectBackend {
                kind: ObjectKind::S3,
                s3: Some(S3Source {
                    region: None,
                    bucket: "2024".into(),
                    prefix: None,
                    endpoint: None,
                }),
            })
        );
    }

    #[test]
    fn bad_duration_error_reads_origin_field_and_reason() {
        let err =
            parse("authorization: {local: {policy: {path: p, poll_interval: 5x}}}").unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"wasmgate.yml: authorization.local.policy.poll_interval: invalid duration "5x": unknown unit "x""#
        );
    }

    #[test]
    fn every_validation_error_names_its_field() {
        let local = |policy: &str| format!("authorization: {{local: {{policy: {policy}}}}}");
        let with_data =
            |data: &str| format!("authorization: {{local: {{policy: {{path: p}}, data: {data}}}}}");
        let settings = |body: &str| {
            format!("authorization: {{local: {{policy: {{path: p}}}}}}\nwasmgate: {body}")
        };
        let table: Vec<(&str, String, &str, &str)> = vec![
            (
                "entrypoint too deep",
                settings(&format!("{{entrypoints: [{}]}}", vec!["a"; 65].join("/"))),
                "wasmgate.entrypoints[0]",
                "more than 64 path segments",
            ),
            (
                "absurd pool size",
                settings("{pool_size: 100000000}"),
                "wasmgate.pool_size",
                "more than the maximum of 1024",
            ),
            (
                "empty policy path",
                local("{path: ''}"),
                "authorization.local.policy.path",
                "must be a non-empty string",
            ),
            (
                "missing policy path",
                local("{poll_interval: 1m}"),
                "authorization.local.policy.path",
                "must be a non-empty string",
            ),
            (
                "zero policy interval",
                local("{path: p, poll_interval: 0s}"),
                "authorization.local.policy.poll_interval",
                "must be greater than zero",
            ),
            (
                "bare zero policy interval",
                local("{path: p, poll_interval: '0'}"),
                "authorization.local.policy.poll_interval",
                "must be greater than zero",
            ),
            (
                "negative policy interval",
                local("{path: p, poll_interval: -5m}"),
                "authorization.local.policy.poll_interval",
                "must be greater than zero",
            ),
            (
                "zero data interval",
                with_data("{path: d, poll_interval: 0s}"),
                "authorization.local.data.poll_interval",
                "must be greater than zero",
            ),
            (
                "negative data interval",
                with_data("{path: d, poll_interval: -1s}"),
                "authorization.local.data.poll_interval",
                "must be greater than zero",
            ),
            (
                "data without path",
                with_data("{poll_interval: 1m}"),
                "authorization.local.data.path",
                "must be a non-empty string",
            ),
            (
                "bad duration text",
                local("{path: p, poll_interval: 5d}"),
                "authorization.local.policy.poll_interval",
                r#"invalid duration "5d": unknown unit "d""#,
            ),
            (
                "yaml int as duration",
                local("{path: p, poll_interval: 30}"),
                "authorization.local.policy.poll_interval",
                "expected a duration string like 30s",
            ),
            (
                "unknown backend",
                "authorization: {backend: gcs}".into(),
                "authorization.backend",
                r#"unknown backend "gcs" (expected one of: local, bundle, object)"#,
            ),
            (
                "backend of wrong type",
                "authorization: {backend: [local]}".into(),
                "authorization.backend",
                "expected a string",
            ),
            (
                "missing local block",
                "authorization: {required: true}".into(),
                "authorization.local",
                "must be configured for backend local",
            ),
            (
                "local without policy",
                "authorization: {local: {data: {path: d}}}".into(),
                "authorization.local.policy",
                "must be configured",
            ),
            (
                "local not a mapping",
                "authorization: {local: p.rego}".into(),
                "authorization.local",
                "expected a mapping",
            ),
            (
                "bundle block missing",
                "authorization: {backend: bundle}".into(),
                "authorization.bundle",
                "must be configured for backend bundle",
            ),
            (
                "bundle without configuration",
                "authorization: {backend: bundle, bundle: {configuration: ' '}}".into(),
                "authorization.bundle.configuration",
                "must be a non-empty string",
            ),
            (
                "object block missing",
                "authorization: {backend: object}".into(),
                "authorization.object",
                "must be configured for backend object",
            ),
            (
                "object of type gcs",
                "authorization: {backend: object, object: {type: gcs, s3: {bucket: b}}}".into(),
                "authorization.object.type",
                r#"unsupported object storage type "gcs" (expected one of: s3)"#,
            ),
            (
                "object without type",
                "authorization: {backend: object, object: {s3: {bucket: b}}}".into(),
                "authorization.object.type",
                "must be configured",
            ),
            (
                "object without s3",
                "authorization: {backend: object, object: {type: s3}}".into(),
                "authorization.object.s3",
                "must be configured for type s3",
            ),
            (
                "s3 without bucket",
                "authorization: {backend: object, object: {type: s3, s3: {region: eu-west-1}}}".into(),
                "authorization.object.s3.bucket",
                "must be a non-empty string",
            ),
            (
                "s3 endpoint without scheme",
                "authorization: {backend: object, object: {type: s3, s3: {bucket: b, endpoint: 'minio:9000'}}}".into(),
                "authorization.object.s3.endpoint",
                "must be a URL",
            ),
            (
                "unknown key in authorization",
                "authorization: {requird: true, local: {policy: {path: p}}}".into(),
                "authorization.requird",
                "unknown field (expected one of: required, backend, local, bundle, object)",
            ),
            (
                "unknown key in local",
                "authorization: {local: {polcy: {path: p}}}".into(),
                "authorization.local.polcy",
                "unknown field (expected one of: policy, data)",
            ),
            (
                "unknown key in file source",
                local("{path: p, interval: 1m}"),
                "authorization.local.policy.interval",
                "unknown field (expected one of: path, poll_interval)",
            ),
            (
                "unknown key in s3",
                "authorization: {backend: object, object: {type: s3, s3: {bucket: b, regoin: x}}}".into(),
                "authorization.object.s3.regoin",
                "unknown field",
            ),
            (
                "non-string key in authorization",
                "authorization: {local: {policy: {path: p}}, 1: x}".into(),
                "authorization.1",
                "unknown field",
            ),
            (
                "required not a boolean",
                "authorization: {required: 1, local: {policy: {path: p}}}".into(),
                "authorization.required",
                "expected a boolean",
            ),
            (
                "unknown key in wasmgate",
                settings("{pool: 2}"),
                "wasmgate.pool",
                "unknown field (expected one of: listen, entrypoints, opa, engine, pool_size, eval_timeout, max_memory, max_bundle_size, start_degraded)",
            ),
            ("wasmgate not a mapping", settings("[1]"), "wasmgate", "expected a mapping"),
            (
                "bad listen address",
                settings("{listen: x}"),
                "wasmgate.listen",
                r#"invalid socket address "x""#,
            ),
            (
                "host name as listen address",
                settings("{listen: 'localhost:8181'}"),
                "wasmgate.listen",
                "invalid socket address",
            ),
            (
                "bad engine",
                settings("{engine: jit}"),
                "wasmgate.engine",
                r#"unknown engine "jit" (expected one of: auto, wasm, interpreted)"#,
            ),
            (
                "negative pool size",
                settings("{pool_size: -1}"),
                "wasmgate.pool_size",
                "expected a non-negative integer",
            ),
            (
                "zero eval timeout",
                settings("{eval_timeout: 0s}"),
                "wasmgate.eval_timeout",
                "must be greater than zero",
            ),
            (
                "int eval timeout",
                settings("{eval_timeout: 1}"),
                "wasmgate.eval_timeout",
                "expected a duration string like 30s",
            ),
            (
                "max memory too small",
                settings("{max_memory: 512KiB}"),
                "wasmgate.max_memory",
                "must be at least 1MiB",
            ),
            (
                "max memory beyond wasm32",
                settings("{max_memory: 5GiB}"),
                "wasmgate.max_memory",
                "must be at most 4GiB",
            ),
            (
                "max memory not a size",
                settings("{max_memory: lots}"),
                "wasmgate.max_memory",
                r#"invalid byte size "lots""#,
            ),
            (
                "zero max bundle size",
                settings("{max_bundle_size: 0}"),
                "wasmgate.max_bundle_size",
                "must be greater than zero",
            ),
            (
                "empty entrypoint",
                settings("{entrypoints: ['']}"),
                "wasmgate.entrypoints[0]",
                "must be a non-empty rule path",
            ),
            (
                "entrypoint with data. prefix",
                settings("{entrypoints: [a/b, data.flipt.authz.v1.allow]}"),
                "wasmgate.entrypoints[1]",
                r#"must not start with "data.""#,
            ),
            (
                "entrypoint with leading slash",
                settings("{entrypoints: [/flipt/authz/v1/allow]}"),
                "wasmgate.entrypoints[0]",
                "must not start with '/'",
            ),
            (
                "entrypoint with empty segment",
                settings("{entrypoints: [flipt//allow]}"),
                "wasmgate.entrypoints[0]",
                "empty path segment",
            ),
            (
                "no entrypoints",
                settings("{entrypoints: []}"),
                "wasmgate.entrypoints",
                "at least one",
            ),
            (
                "duplicate entrypoint",
                settings("{entrypoints: [a/b, a/b]}"),
                "wasmgate.entrypoints[1]",
                "duplicate",
            ),
            (
                "entrypoints not a list",
                settings("{entrypoints: a/b}"),
                "wasmgate.entrypoints",
                "expected a list",
            ),
            ("empty opa path", settings("{opa: ''}"), "wasmgate.opa", "must be a non-empty path"),
            (
                "start_degraded not a boolean",
                settings("{start_degraded: 'yes'}"),
                "wasmgate.start_degraded",
                r#"expected a boolean, got "yes""#,
            ),
        ];
        for (case, yaml, field, message) in table {
            let (got_field, text) = rejected(&yaml);
            assert_eq!(got_field, field, "{case}: {text}");
            assert!(
                text.starts_with(&format!("wasmgate.yml: {field}: ")) && text.contains(message),
                "{case}: {text:?} lacks {message:?}"
            );
        }
    }

    #[test]
    fn validation_runs_even_when_required_is_false() {
        let (field, _) = rejected("authorization: {required: false, local: {policy: {path: ''}}}");
        assert_eq!(field, "authorization.local.policy.path");
    }

    #[test]
    fn unselected_backends_are_checked_for_typos_but_not_validated() {
        let config = parse_ok(
            "
authorization:
  backend: bundle
  bundle: { configuration: 'services: {}' }
  local: { policy: { path: '', poll_interval: -1s } }
  object: { type: gcs }
",
        );
        let local = config.authorization.local.unwrap();
        assert_eq!(
            local.policy,
            FileSource {
                path: PathBuf::new(),
                poll_interval: Duration::ZERO
            }
        );
        assert_eq!(config.authorization.object, None);

        let (field, _) = rejected(
            "authorization: {backend: bundle, bundle: {configuration: x}, local: {policy: {path: p, pol_interval: 1m}}}",
        );
        assert_eq!(field, "authorization.local.policy.pol_interval");
        let (field, _) = rejected(
            "authorization: {backend: bundle, bundle: {configuration: x}, local: {policy: {path: p, poll_interval: 5}}}",
        );
        assert_eq!(field, "authorization.local.policy.poll_interval");
    }

    #[test]
    fn missing_authorization_section_is_an_error() {
        for yaml in [
            "",
            "# nothing but a comment\n",
            "server: {http_port: 8080}",
            "authorization:",
            "authorization: ~",
        ] {
            let err = parse(yaml).expect_err(yaml);
            assert_eq!(err.field(), Some("authorization"), "{yaml:?}");
            assert_eq!(
                err.to_string(),
                "wasmgate.yml: authorization: must be configured"
            );
        }
    }

    #[test]
    fn a_document_that_is_not_a_mapping_is_an_error_without_field() {
        let err = parse("- authorization").unwrap_err();
        assert_eq!(err.field(), None);
        assert_eq!(
            err.to_string(),
            "wasmgate.yml: expected a mapping with an `authorization` section"
        );
    }

    #[test]
    fn unknown_top_level_keys_are_ignored() {
        let config = parse_ok(
            "
log: { level: debug }
server: { http_port: 8080, secret: '${NOT_SET_AND_NOT_OURS}' }
authentication:
  required: true
  methods: { token: { enabled: true } }
authorization: {required: true, local: {policy: {path: p.rego}}}
",
        );
        assert_eq!(
            config.authorization.local.unwrap().policy.path,
            at("p.rego")
        );
    }

    #[test]
    fn yaml_merge_keys_are_honoured() {
        let config = parse_ok(
            "
poll: &poll { poll_interval: 2m }
authorization:
  local:
    policy: { <<: *poll, path: p.rego }
",
        );
        assert_eq!(
            config.authorization.local.unwrap().policy.poll_interval,
            SECS(120)
        );
    }

    #[test]
    fn env_variables_expand_in_paths_and_inside_longer_strings() {
        let config = parse_with(
            r#"
authorization:
  required: ${REQUIRED}
  local:
    policy: { path: "${POLICY_DIR}/policy.rego", poll_interval: "${POLL}" }
  bundle:
    configuration: |
      services:
        acme:
          url: https://${HOST}:${PORT}/bundles
          credentials: { bearer: { token: "${TOKEN}" } }
wasmgate:
  pool_size: ${POOL}
"#,
            &[
                ("POLICY_DIR", "/srv/policies"),
                ("POLL", "45s"),
                ("HOST", "bundles.example.com"),
                ("PORT", "8443"),
                ("TOKEN", "s3cr$t"),
                ("REQUIRED", "true"),
                ("POOL", "3"),
            ],
        )
        .unwrap();
        let local = config.authorization.local.unwrap();
        assert_eq!(
            local.policy.path,
            PathBuf::from("/srv/policies/policy.rego")
        );
        assert_eq!(local.policy.poll_interval, SECS(45));
        assert!(config.authorization.required);
        assert_eq!(config.wasmgate.pool_size, 3);
        assert_eq!(
            config.authorization.bundle.unwrap().configuration,
            "services:\n  acme:\n    url: https://bundles.example.com:8443/bundles\n    \
             credentials: { bearer: { token: \"s3cr$t\" } }\n"
        );
    }

    #[test]
    fn unset_env_variable_names_the_field_and_the_variable() {
        let err =
            parse("authorization: {local: {policy: {path: '${POLICY_DIR}/p.rego'}}}").unwrap_err();
        assert_eq!(err.field(), Some("authorization.local.policy.path"));
        assert_eq!(
            err.to_string(),
            "wasmgate.yml: authorization.local.policy.path: environment variable POLICY_DIR is not set"
        );
    }

    #[test]
    fn flipt_environment_variables_override_file_values() {
        let config = parse_with(
            "authorization: {required: false, local: {policy: {path: file.rego, poll_interval: 1m}}}",
            &[
                ("FLIPT_AUTHORIZATION_REQUIRED", "true"),
                ("FLIPT_AUTHORIZATION_LOCAL_POLICY_PATH", "/env/policy.rego"),
                ("FLIPT_AUTHORIZATION_LOCAL_POLICY_POLL_INTERVAL", "10s"),
                ("FLIPT_AUTHORIZATION_LOCAL_DATA_PATH", "env-data.json"),
                ("FLIPT_AUTHORIZATION_BACKEND", ""), // empty counts as unset, as in viper
            ],
        )
        .unwrap();
        let auth = config.authorization;
        assert!(auth.required);
        assert_eq!(auth.backend, Backend::Local);
        let local = auth.local.unwrap();
        assert_eq!(
            local.policy,
            FileSource {
                path: "/env/policy.rego".into(),
                poll_interval: SECS(10)
            }
        );
        assert_eq!(
            local.data,
            Some(FileSource {
                path: at("env-data.json"),
                poll_interval: SECS(30)
            })
        );
    }

    #[test]
    fn flipt_environment_variables_alone_configure_every_backend() {
        let object = parse_with(
            "",
            &[
                ("FLIPT_AUTHORIZATION_BACKEND", "object"),
                ("FLIPT_AUTHORIZATION_OBJECT_TYPE", "s3"),
                ("FLIPT_AUTHORIZATION_OBJECT_S3_REGION", "eu-west-1"),
                ("FLIPT_AUTHORIZATION_OBJECT_S3_BUCKET", "authz"),
                ("FLIPT_AUTHORIZATION_OBJECT_S3_PREFIX", "prod/"),
                (
                    "FLIPT_AUTHORIZATION_OBJECT_S3_ENDPOINT",
                    "http://minio:9000",
                ),
            ],
        )
        .unwrap();
        assert_eq!(
            object.authorization.object,
            Some(ObjectBackend {
                kind: ObjectKind::S3,
                s3: Some(S3Source {
                    region: Some("eu-west-1".into()),
                    bucket: "authz".into(),
                    prefix: Some("prod/".into()),
                    endpoint: Some("http://minio:9000".into()),
                }),
            })
        );

        let bundle = parse_with(
            "server: {}",
            &[
                ("FLIPT_AUTHORIZATION_BACKEND", "bundle"),
                ("FLIPT_AUTHORIZATION_BUNDLE_CONFIGURATION", "services: {}"),
            ],
        )
        .unwrap();
        assert_eq!(
            bundle.authorization.bundle.unwrap().configuration,
            "services: {}"
        );

        let local = parse_with(
            "authorization: {local: ~}",
            &[
                ("FLIPT_AUTHORIZATION_LOCAL_POLICY_PATH", "p.rego"),
                ("FLIPT_AUTHORIZATION_LOCAL_DATA_PATH", "d.json"),
                ("FLIPT_AUTHORIZATION_LOCAL_DATA_POLL_INTERVAL", "2m"),
            ],
        )
        .unwrap();
        assert_eq!(
            local
                .authorization
                .local
                .unwrap()
                .data
                .unwrap()
                .poll_interval,
            SECS(120)
        );
    }

    #[test]
    fn errors_in_overridden_values_name_the_variable() {
        let err = parse_with(
            "authorization: {local: {policy: {path: p}}}",
            &[("FLIPT_AUTHORIZATION_LOCAL_POLICY_POLL_INTERVAL", "5x")],
        )
        .unwrap_err();
        assert_eq!(
            err.field(),
            Some("authorization.local.policy.poll_interval")
        );
        assert!(
            err.to_string()
                .ends_with("(set by FLIPT_AUTHORIZATION_LOCAL_POLICY_POLL_INTERVAL)"),
            "{err}"
        );
        let err = parse_with(
            "authorization: {local: {policy: {path: p}}}",
            &[("FLIPT_AUTHORIZATION_REQUIRED", "yes")],
        )
        .unwrap_err();
        assert_eq!(err.field(), Some("authorization.required"));
        let err = parse_with(
            "authorization: {local: x}",
            &[("FLIPT_AUTHORIZATION_LOCAL_POLICY_PATH", "p")],
        )
        .unwrap_err();
        assert_eq!(err.field(), Some("authorization.local"));
    }

    #[test]
    fn relative_paths_resolve_against_base_dir_and_absolute_paths_stay() {
        let config = parse_ok(
            "
authorization:
  local:
    policy: { path: policies/policy.rego }
    data: { path: /var/lib/authz/data.json }
wasmgate: { opa: ./tools/opa }
",
        );
        let local = config.authorization.local.unwrap();
        assert_eq!(
            local.policy.path,
            PathBuf::from("/etc/wasmgate/policies/policy.rego")
        );
        assert_eq!(
            local.data.unwrap().path,
            PathBuf::from("/var/lib/authz/data.json")
        );
        assert_eq!(
            config.wasmgate.opa,
            Some(PathBuf::from("/etc/wasmgate/./tools/opa"))
        );
    }

    #[test]
    fn bare_opa_program_name_is_kept_for_path_lookup() {
        let config = parse_ok("authorization: {local: {policy: {path: p}}}\nwasmgate: {opa: opa}");
        assert_eq!(config.wasmgate.opa, Some(PathBuf::from("opa")));
    }

    #[test]
    fn malformed_yaml_reports_origin_line_and_column() {
        let err = parse("authorization:\n  local:\n    policy: [unclosed\n").unwrap_err();
        let ConfigError::Syntax { line, column, .. } = &err else {
            panic!("expected a syntax error, got {err}");
        };
        assert!(line.is_some() && column.is_some(), "{err:?}");
        let text = err.to_string();
        assert!(text.starts_with("wasmgate.yml: invalid YAML: "), "{text}");
        assert!(text.contains(&format!("line {}", line.unwrap())), "{text}");
    }

    #[test]
    fn load_reads_a_file_and_resolves_paths_against_its_directory() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("wasmgate.yml");
        std::fs::write(
            &file,
            "authorization: {local: {policy: {path: policy.rego}}}\n",
        )
        .unwrap();
        let config = Config::load(&file).unwrap();
        let policy = config.authorization.local.unwrap().policy.path;
        assert_eq!(
            policy,
            std::path::absolute(dir.path()).unwrap().join("policy.rego")
        );

        std::fs::write(&file, "authorization: {local: {policy: {path: ''}}}\n").unwrap();
        let err = Config::load(&file).unwrap_err();
        assert!(
            err.to_string().starts_with(&format!(
                "{}: authorization.local.policy.path: ",
                file.display()
            )),
            "{err}"
        );
    }

    #[test]
    fn load_of_a_missing_file_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("absent.yml");
        let err = Config::load(&file).unwrap_err();
        assert!(matches!(err, ConfigError::Io { .. }), "{err:?}");
        assert!(
            err.to_string().contains(&file.display().to_string()),
            "{err}"
        );
        assert_eq!(err.field(), None);
    }

    #[test]
    fn config_dir_of_a_bare_file_name_is_the_absolute_working_directory() {
        let dir = config_dir(Path::new("wasmgate.yml"));
        // Only absoluteness: comparing with current_dir() would race any test that changes it.
        assert!(dir.is_absolute(), "{}", dir.display());
    }
}
