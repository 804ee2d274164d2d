//! wasmgate: OPA policies compiled to WebAssembly, evaluated on wasmtime, hot-swapped from
//! their sources without dropping a decision.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let config = wasmgate::config::Config::load("wasmgate.yml".as_ref())?;
//! let authz = wasmgate::Authorizer::start(config).await?;
//! let input = serde_json::json!({"request": {"resource": "flag", "action": "read"}});
//! let allowed: bool = authz.is_allowed(&input);
//! let decision = authz.evaluate("flipt/authz/v1/viewable_namespaces", &input)?;
//! println!("{allowed} {:?} from revision {}", decision.result, decision.revision);
//! # Ok(()) }
//! ```
//!
//! Data flows one way: `config` → `source` → `artifact`/`bundle`/`opa_cli` → `abi` or
//! `interp` → `policy` (an immutable `PolicySet`) → `authorizer` (atomic swap) → `server`.
pub mod abi;
pub mod artifact;
pub mod authorizer;
pub mod builtins;
pub mod bundle;
pub mod config;
pub mod interp;
pub mod opa_cli;
pub mod policy;
pub mod pool;
pub mod server;
pub mod source;

pub use authorizer::{Authorizer, Decision, DecisionError, Status};
pub use builtins::{Builtin, BuiltinError, Builtins};
pub use policy::{EngineKind, PolicySet};
