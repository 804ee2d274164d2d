//! Builtin functions the host supplies to policies.
//!
//! OPA's Wasm runtime implements most builtins inside the module; the rest (and every custom
//! builtin, such as Flipt's `flipt.is_auth_method`) are listed by the module's `builtins()`
//! export and called back through the `opa_builtinN` imports. The interpreted engine
//! (`regorus`) takes the same custom builtins as extensions, so one [`Builtins`] registry
//! serves both engines.
//!
//! Semantics follow OPA's non-strict mode: a builtin that fails makes the *call* undefined,
//! it never fails the whole decision. That is why a builtin returns `Result` and the engines
//! turn `Err` into "undefined" (logged at debug level), not into an evaluation error.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde_json::{Value, json};

/// Why a builtin call produced no value. The call becomes undefined; the message is logged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BuiltinError(pub String);

impl BuiltinError {
    pub fn new(msg: impl Into<String>) -> Self {
        Self(msg.into())
    }
}

/// The Rust side of a builtin: JSON arguments in, a JSON value (or undefined) out.
pub type BuiltinFn = dyn Fn(&[Value]) -> Result<Value, BuiltinError> + Send + Sync;

/// A host-supplied builtin: its name as Rego spells it, its arity, the type declaration
/// written into the capabilities file for `opa build`, and the implementation.
#[derive(Clone)]
pub struct Builtin {
    name: String,
    arity: usize,
    decl: Value,
    func: Arc<BuiltinFn>,
}

impl Builtin {
    /// A builtin whose arguments and result are declared as `any` to the Rego type checker.
    pub fn new(
        name: impl Into<String>,
        arity: usize,
        func: impl Fn(&[Value]) -> Result<Value, BuiltinError> + Send + Sync + 'static,
    ) -> Self {
        let args = vec![json!({"type": "any"}); arity];
        Self {
            name: name.into(),
            arity,
            decl: json!({"type": "function", "args": args, "result": {"type": "any"}}),
            func: Arc::new(func),
        }
    }

    /// Replace the capabilities declaration (OPA's `types.Function` JSON:
    /// `{"type":"function","args":[...],"result":{...}}`). The type checker of `opa build`
    /// uses it; a precise declaration catches type errors at compile time.
    pub fn with_decl(mut self, decl: Value) -> Self {
        self.decl = decl;
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn arity(&self) -> usize {
        self.arity
    }

    /// The capabilities-file entry for this builtin.
    pub fn capability(&self) -> Value {
        json!({"name": self.name, "decl": self.decl})
    }

    /// Call the builtin. Arity is checked here so no implementation has to.
    pub fn call(&self, args: &[Value]) -> Result<Value, BuiltinError> {
        if args.len() != self.arity {
            return Err(BuiltinError(format!(
                "{}: expected {} arguments, got {}",
                self.name,
                self.arity,
                args.len()
            )));
        }
        (self.func)(args)
    }
}

impl fmt::Debug for Builtin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builtin")
            .field("name", &self.name)
            .field("arity", &self.arity)
            .finish_non_exhaustive()
    }
}

/// The registry of host-supplied builtins, keyed by name. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Builtins {
    by_name: BTreeMap<String, Builtin>,
}

impl Builtins {
    /// An empty registry: only builtins native to the engine are available.
    pub fn empty() -> Self {
        Self::default()
    }

    /// The registry wasmgate ships: Flipt's `flipt.is_auth_method`.
    pub fn flipt() -> Self {
        let mut b = Self::empty();
        b.register(is_auth_method());
        b
    }

    /// Add or replace a builtin.
    pub fn register(&mut self, builtin: Builtin) -> &mut Self {
        self.by_name.insert(builtin.name.clone(), builtin);
        self
    }

    pub fn get(&self, name: &str) -> Option<&Builtin> {
        self.by_name.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Builtin> {
        self.by_name.values()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

/// Flipt's authentication-method numbers (the `auth.Method` proto enum).
fn auth_method_number(label: &str) -> Option<i64> {
    Some(match label {
        "token" => 1,
        "oidc" => 2,
        "kubernetes" | "k8s" => 3,
        "github" => 4,
        "jwt" => 5,
        _ => return None,
    })
}

/// `flipt.is_auth_method(input, label) -> bool`: whether `input.authentication.method`
/// is the method named by `label`. An unknown label or a missing `authentication` is an
/// error, which makes the call undefined (Flipt runs OPA non-strict).
pub fn is_auth_method() -> Builtin {
    Builtin::new("flipt.is_auth_method", 2, |args| {
        let label = args[1]
            .as_str()
            .ok_or_else(|| BuiltinError::new("flipt.is_auth_method: label must be a string"))?;
        let want = auth_method_number(label)
            .ok_or_else(|| BuiltinError(format!("unsupported auth method {label}")))?;
        let auth = args[0]
            .get("authentication")
            .filter(|a| !a.is_null())
            .ok_or_else(|| BuiltinError::new("no authentication found"))?;
        let method = auth.get("method").and_then(Value::as_i64).unwrap_or(0);
        Ok(Value::Bool(method == want))
    })
    .with_decl(json!({
        "type": "function",
        "args": [{"type": "any"}, {"type": "string"}],
        "result": {"type": "boolean"}
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(input: Value, label: &str) -> Result<Value, BuiltinError> {
        is_auth_method().call(&[input, json!(label)])
    }

    #[test]
    fn is_auth_method_matches_every_flipt_label() {
        for (method, label) in [
            (1, "token"),
            (2, "oidc"),
            (3, "kubernetes"),
            (3, "k8s"),
            (4, "github"),
            (5, "jwt"),
        ] {
            let input = json!({"authentication": {"method": method}});
            assert_eq!(call(input, label), Ok(json!(true)), "{label}");
        }
    }

    #[test]
    fn is_auth_method_is_false_for_another_method() {
        assert_eq!(
            call(json!({"authentication": {"method": 1}}), "jwt"),
            Ok(json!(false))
        );
    }

    #[test]
    fn is_auth_method_unknown_label_is_an_error() {
        let err = call(json!({"authentication": {"method": 2}}), "none").unwrap_err();
        assert_eq!(err.0, "unsupported auth method none");
    }

    #[test]
    fn is_auth_method_without_authentication_is_an_error() {
        let err = call(json!({"request": {}}), "jwt").unwrap_err();
        assert_eq!(err.0, "no authentication found");
    }

    #[test]
    fn arity_is_checked_before_the_implementation_runs() {
        let err = is_auth_method().call(&[json!({})]).unwrap_err();
        assert!(err.0.contains("expected 2 arguments, got 1"), "{err}");
    }
}
