//! The interpreted engine: the same Rego policies evaluated by `regorus`, without Wasm.
//!
//! It exists for three reasons (DESIGN.md, "Interpreted fallback"): it serves decisions when
//! no `opa` binary is available to compile `.rego` to Wasm (or when configured to), it is the
//! baseline the Wasm path is benchmarked against, and it is the oracle for differential tests
//! of the Wasm host. Because of the last role it must follow OPA's semantics where regorus
//! defaults differ: builtin errors are *undefined* (non-strict), sets come back as sorted
//! arrays, and numbers keep every digit.
//!
//! Concurrency: `regorus::Engine::eval_rule` takes `&mut self`, so one engine cannot serve two
//! threads. Rather than a global lock, [`InterpretedPolicy`] keeps one prepared (analysed)
//! engine as a template and a lock-free pool of clones of it; a clone shares the parsed
//! modules and the data document (`Arc`s inside regorus), so taking one is cheap.

use std::sync::Arc;

use crossbeam_queue::ArrayQueue;
use serde::Deserialize;
use serde_json::Value;

use crate::artifact::RegoSource;
use crate::builtins::{Builtin, Builtins};

/// Why an interpreted policy could not be built or evaluated. Each variant names what was
/// wrong — the Rego file, the entrypoint or the builtin — and carries regorus' own message,
/// which holds the line and column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InterpError {
    /// A Rego file does not parse (syntax, or v0 syntax where Rego v1 is required).
    #[error("{path}: cannot parse Rego: {message}")]
    Parse { path: String, message: String },
    /// The files parse but do not form a valid policy together (unsafe variables, recursion,
    /// conflicting imports). regorus analyses all modules at once, so the variant lists them
    /// all and the message — which starts with `--> file:line:col` — says which one.
    #[error("cannot compile Rego ({files}): {message}")]
    Compile { files: String, message: String },
    /// The data document was rejected (not an object, or not representable in regorus).
    #[error("data document: {message}")]
    Data { message: String },
    /// A custom builtin could not be registered (arity too large, duplicate name).
    #[error("builtin `{name}`: {message}")]
    Builtin { name: String, message: String },
    /// The entrypoint is not a valid slash path such as `flipt/authz/v1/allow`.
    #[error("entrypoint `{entrypoint}`: {message}")]
    Entrypoint { entrypoint: String, message: String },
    /// The input document could not be handed to regorus.
    #[error("entrypoint `{entrypoint}`: input document: {message}")]
    Input { entrypoint: String, message: String },
    /// Evaluation failed: a complete rule with two values, a call to a function that is
    /// neither a regorus builtin nor a registered custom builtin (regorus finds that only
    /// when the call runs, not at load), or one of the regorus builtins that raise errors
    /// even in non-strict mode.
    #[error("entrypoint `{entrypoint}`: evaluation failed: {message}")]
    Eval { entrypoint: String, message: String },
    /// The result could not be converted to JSON.
    #[error("entrypoint `{entrypoint}`: result is not representable as JSON: {message}")]
    Result { entrypoint: String, message: String },
}

/// A Rego policy with its data and custom builtins, ready to evaluate from many threads.
///
/// Build it once per policy revision (parsing and analysis happen in [`new`](Self::new), so
/// a broken policy is rejected before it serves anything); evaluate it as often as needed.
pub struct InterpretedPolicy {
    /// The analysed engine every evaluation starts from. Never evaluated itself, only cloned,
    /// so it holds no input and no per-evaluation state.
    template: regorus::Engine,
    /// Engines that finished an evaluation and can take the next one. Popping and pushing is
    /// lock-free; when the pool is empty a fresh clone of the template is made, and when it
    /// is full the returning engine is dropped, so the pool never blocks and never grows past
    /// its capacity.
    idle: ArrayQueue<regorus::Engine>,
}

/// regorus' message when `eval_rule` is given a path that names no rule (a package, a data
/// document, or nothing). Such paths are answered by a query instead; see `evaluate`.
/// A unit test pins this text so a regorus upgrade that changes it fails loudly.
const NOT_A_RULE_PATH: &str = "not a valid rule path";

impl InterpretedPolicy {
    /// Compile the Rego sources with the data document and the custom builtins.
    ///
    /// Sources are Rego v1 (OPA 1.x's default: `if`, `contains`, optional `import rego.v1`).
    /// `data` must be a JSON object (its keys become `data.<key>`); `null` is taken as "no
    /// data". Each builtin is registered as a regorus extension whose failure makes the call
    /// undefined, as in OPA's non-strict mode.
    pub fn new(
        rego: &[RegoSource],
        data: &Value,
        builtins: &Builtins,
    ) -> Result<Self, InterpError> {
        let mut engine = regorus::Engine::new();
        // OPA (and Flipt) evaluate non-strict: a builtin error makes the call undefined.
        // regorus defaults to strict.
        engine.set_strict_builtin_errors(false);

        for source in rego {
            engine
                .add_policy(source.path.clone(), source.text.clone())
                .map_err(|e| InterpError::Parse {
                    path: source.path.clone(),
                    message: regorus_message(&e),
                })?;
        }

        if !data.is_null() {
            if !data.is_object() {
                return Err(InterpError::Data {
                    message: "must be a JSON object".into(),
                });
            }
            let data = to_regorus(data).map_err(|message| InterpError::Data { message })?;
            engine.add_data(data).map_err(|e| InterpError::Data {
                message: regorus_message(&e),
            })?;
        }

        check_data_conflicts(&engine, data)?;
        for builtin in builtins.iter() {
            register(&mut engine, builtin)?;
        }

        // regorus analyses the modules lazily, on the first evaluation. Run that analysis now
        // with a query that touches no rule, so a policy that cannot be scheduled fails here
        // (where the caller keeps the last good revision) rather than on a live decision.
        engine
            .eval_query("true".into(), false)
            .map_err(|e| InterpError::Compile {
                files: rego
                    .iter()
                    .map(|s| s.path.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                message: regorus_message(&e),
            })?;

        Ok(Self {
            template: engine,
            idle: ArrayQueue::new(pool_capacity()),
        })
    }

    /// Bound every evaluation by wall-clock time, as `wasmgate.eval_timeout` bounds the Wasm
    /// engine; an evaluation past it fails (and the caller denies). regorus checks the clock
    /// cooperatively, every few work units, so the bound is approximate.
    pub fn with_eval_timeout(mut self, limit: std::time::Duration) -> Self {
        self.template
            .set_execution_timer_config(regorus::utils::limits::ExecutionTimerConfig {
                limit,
                check_interval: std::num::NonZeroU32::new(64).expect("non-zero"),
            });
        // Engines cloned before this call would not carry the limit.
        while self.idle.pop().is_some() {}
        self
    }

    /// Evaluate an entrypoint given in OPA's slash form (`flipt/authz/v1/allow` is the rule
    /// `data.flipt.authz.v1.allow`), the form `opa build -e` and the decision API use.
    ///
    /// `input: None` means there is no input document, so every reference to `input` is
    /// undefined; `Some(&Value::Null)` is an input that *is* null. Returns `Ok(None)` when the
    /// entrypoint is undefined — including a path that names no rule or document at all, as
    /// OPA's decision API answers `{}` for it — and `Ok(Some(value))` otherwise. Sets come
    /// back as arrays, sorted and de-duplicated; object keys that are not strings are
    /// written as their JSON text (`1` → `"1"`), as OPA does.
    pub fn evaluate(
        &self,
        entrypoint: &str,
        input: Option<&Value>,
    ) -> Result<Option<Value>, InterpError> {
        let path = rule_path(entrypoint)?;
        let input = match input {
            Some(v) => to_regorus(v).map_err(|message| InterpError::Input {
                entrypoint: entrypoint.to_owned(),
                message,
            })?,
            None => regorus::Value::Undefined,
        };

        let mut engine = self.idle.pop().unwrap_or_else(|| self.template.clone());
        engine.set_input(input);
        let outcome = eval_path(&mut engine, path);
        // Drop the input now rather than keep it alive while the engine sits in the pool.
        engine.set_input(regorus::Value::Undefined);
        // A full pool means more threads evaluated at once than it holds; dropping the extra
        // engine is cheaper than making anyone wait.
        let _ = self.idle.push(engine);

        let value = outcome.map_err(|e| InterpError::Eval {
            entrypoint: entrypoint.to_owned(),
            message: regorus_message(&e),
        })?;
        if value == regorus::Value::Undefined {
            return Ok(None);
        }
        to_json(&value)
            .map(Some)
            .map_err(|message| InterpError::Result {
                entrypoint: entrypoint.to_owned(),
                message,
            })
    }
}

impl std::fmt::Debug for InterpretedPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InterpretedPolicy")
            .field("idle_engines", &self.idle.len())
            .finish_non_exhaustive()
    }
}

/// Evaluate a `data.`-rooted path. A rule goes through `eval_rule`, the fast path. Anything
/// else — a package (an object of its rules), a data document, a path that does not exist —
/// is not a rule to regorus, so it is asked as a query; no result means undefined.
/// Refuse data that sits where rules live, as OPA does ("conflicting rule for data path").
/// regorus would otherwise answer `data.p.allow` from a data value `{"p":{"allow":true}}`
/// and silently override `default allow := false` — a data file could turn deny into allow.
fn check_data_conflicts(engine: &regorus::Engine, data: &Value) -> Result<(), InterpError> {
    let packages = engine
        .get_policy_package_components()
        .map_err(|e| InterpError::Data {
            message: regorus_message(&e),
        })?;
    for package in packages {
        let mut node = data;
        let mut walked = Vec::new();
        for component in &package.components {
            match node.get(component) {
                Some(next) => node = next,
                None => break,
            }
            walked.push(component.as_str());
            if walked.len() < package.components.len() && !node.is_object() {
                return Err(package_conflict(
                    &walked,
                    &package,
                    "is not an object, but holds",
                ));
            }
        }
        if walked.len() < package.components.len() {
            continue;
        }
        let Some(keys) = node.as_object() else {
            return Err(package_conflict(&walked, &package, "conflicts with"));
        };
        for key in keys.keys() {
            // A key that is not a valid rule name cannot collide with a rule head.
            if engine
                .has_declared_rule_rooted_at(&package.source_file, key)
                .unwrap_or(false)
            {
                return Err(InterpError::Data {
                    message: format!(
                        "data path {}/{key} conflicts with rule {key} in {}",
                        walked.join("/"),
                        package.source_file
                    ),
                });
            }
        }
    }
    Ok(())
}

fn package_conflict(
    walked: &[&str],
    package: &regorus::PolicyPackageComponents,
    relation: &str,
) -> InterpError {
    InterpError::Data {
        message: format!(
            "data path {} {relation} package {} of {}",
            walked.join("/"),
            package.components.join("."),
            package.source_file
        ),
    }
}

fn eval_path(engine: &mut regorus::Engine, path: String) -> anyhow::Result<regorus::Value> {
    match engine.eval_rule(path.clone()) {
        Err(e) if e.to_string() == NOT_A_RULE_PATH => {
            let results = engine.eval_query(path, false)?;
            Ok(results
                .result
                .into_iter()
                .next()
                .and_then(|r| r.expressions.into_iter().next())
                .map_or(regorus::Value::Undefined, |e| e.value))
        }
        other => other,
    }
}

/// Engines kept idle: two per core covers a thread pool of one thread per core plus the
/// threads momentarily between pop and push, without holding memory nobody uses.
fn pool_capacity() -> usize {
    std::thread::available_parallelism().map_or(4, |n| n.get() * 2)
}

/// Register one custom builtin as a regorus extension.
fn register(engine: &mut regorus::Engine, builtin: &Builtin) -> Result<(), InterpError> {
    let name = builtin.name().to_owned();
    let nargs = u8::try_from(builtin.arity()).map_err(|_| InterpError::Builtin {
        name: name.clone(),
        message: format!("arity {} exceeds regorus' limit of 255", builtin.arity()),
    })?;
    let builtin = Arc::new(builtin.clone());
    engine
        .add_extension(
            name.clone(),
            nargs,
            Box::new(move |args: Vec<regorus::Value>| Ok(call_builtin(&builtin, &args))),
        )
        .map_err(|e| InterpError::Builtin {
            name,
            message: regorus_message(&e),
        })
}

/// Call a builtin the way OPA's non-strict mode does: any failure makes the call undefined.
/// An extension that returned `Err` would fail the whole evaluation in regorus (extensions
/// ignore the strict-builtin-errors switch), so failures are turned into
/// `Value::Undefined` here and only logged.
fn call_builtin(builtin: &Builtin, args: &[regorus::Value]) -> regorus::Value {
    let args: Result<Vec<Value>, String> = args.iter().map(to_json).collect();
    let result = match args {
        Ok(args) => builtin.call(&args).map_err(|e| e.0),
        Err(e) => Err(format!("argument not representable as JSON: {e}")),
    };
    match result.and_then(|v| to_regorus(&v)) {
        Ok(v) => v,
        Err(message) => {
            tracing::debug!(builtin = builtin.name(), %message, "builtin failed; call is undefined");
            regorus::Value::Undefined
        }
    }
}

/// Convert JSON to a regorus value without going through `f64`: with serde_json's
/// `arbitrary_precision` a number is handed over as its literal text, which regorus parses
/// into an exact integer (big integers included) or a float.
fn to_regorus(v: &Value) -> Result<regorus::Value, String> {
    regorus::Value::deserialize(v).map_err(|e| e.to_string())
}

/// regorus formats an error as `\n--> file:line:col\n<source excerpt>\nerror: <what>`; drop
/// the leading newline so the message reads on from our prefix.
fn regorus_message(e: &anyhow::Error) -> String {
    e.to_string().trim_start().to_owned()
}

/// Convert a regorus result to JSON the way OPA writes it.
///
/// regorus' own `Serialize` gets two things differently from OPA: it orders a set holding
/// both objects and sets with the sets first (its `Value` enum puts `Set` before `Object`,
/// OPA's type order is null < boolean < number < string < array < object < set), and it
/// writes undefined as the string `"<undefined>"`. Numbers go through regorus' `Serialize`,
/// which hands serde_json the decimal text, so big integers keep every digit.
fn to_json(v: &regorus::Value) -> Result<Value, String> {
    use regorus::Value as R;
    Ok(match v {
        R::Null => Value::Null,
        R::Bool(b) => Value::Bool(*b),
        R::String(s) => Value::String(s.as_ref().to_owned()),
        R::Number(_) => serde_json::to_value(v).map_err(|e| e.to_string())?,
        R::Array(a) => Value::Array(a.iter().map(to_json).collect::<Result<_, _>>()?),
        R::Set(s) => {
            let mut members: Vec<&R> = s.iter().collect();
            members.sort_by(|a, b| opa_compare(a, b));
            Value::Array(members.into_iter().map(to_json).collect::<Result<_, _>>()?)
        }
        R::Object(o) => {
            let mut map = serde_json::Map::with_capacity(o.len());
            for (k, v) in o.iter() {
                let key = match k {
                    R::String(s) => s.as_ref().to_owned(),
                    // OPA encodes a non-string key as its JSON text: 1 -> "1", [1] -> "[1]".
                    other => to_json(other)?.to_string(),
                };
                map.insert(key, to_json(v)?);
            }
            Value::Object(map)
        }
        R::Undefined => return Err("undefined value inside a document".into()),
    })
}

/// OPA's total order on values (`ast.Compare`): by type first, then by value; arrays, objects
/// (by sorted keys, key then value) and sets (by sorted members) compare element-wise, the
/// shorter first on a tie. Within scalars regorus' own order already agrees with OPA.
fn opa_compare(a: &regorus::Value, b: &regorus::Value) -> std::cmp::Ordering {
    use regorus::Value as R;
    use std::cmp::Ordering;

    fn rank(v: &R) -> u8 {
        match v {
            R::Null => 0,
            R::Bool(_) => 1,
            R::Number(_) => 2,
            R::String(_) => 3,
            R::Array(_) => 4,
            R::Object(_) => 5,
            R::Set(_) => 6,
            R::Undefined => 7,
        }
    }
    fn sorted<'a>(items: impl Iterator<Item = &'a R>) -> Vec<&'a R> {
        let mut v: Vec<&R> = items.collect();
        v.sort_by(|a, b| opa_compare(a, b));
        v
    }
    fn seq<'a>(
        a: impl ExactSizeIterator<Item = &'a R>,
        b: impl ExactSizeIterator<Item = &'a R>,
    ) -> Ordering {
        let (la, lb) = (a.len(), b.len());
        a.zip(b)
            .map(|(x, y)| opa_compare(x, y))
            .find(|o| o.is_ne())
            .unwrap_or_else(|| la.cmp(&lb))
    }

    match (a, b) {
        (R::Array(x), R::Array(y)) => seq(x.iter(), y.iter()),
        (R::Set(x), R::Set(y)) => seq(sorted(x.iter()).into_iter(), sorted(y.iter()).into_iter()),
        (R::Object(x), R::Object(y)) => {
            let (kx, ky) = (sorted(x.keys()), sorted(y.keys()));
            for (ka, kb) in kx.iter().zip(&ky) {
                let by_key = opa_compare(ka, kb);
                if by_key.is_ne() {
                    return by_key;
                }
                let by_value = opa_compare(
                    x.get(ka).unwrap_or(&R::Undefined),
                    y.get(kb).unwrap_or(&R::Undefined),
                );
                if by_value.is_ne() {
                    return by_value;
                }
            }
            kx.len().cmp(&ky.len())
        }
        _ if rank(a) != rank(b) => rank(a).cmp(&rank(b)),
        _ => a.cmp(b),
    }
}

/// Turn OPA's slash form into the `data.`-rooted reference regorus expects. Components that
/// are not plain identifiers (`my-app`, `1.0`, keywords) are written in bracket form so any
/// package name OPA accepts can be addressed.
/// Longest entrypoint path accepted, in segments.
pub const MAX_PATH_SEGMENTS: usize = 64;

fn rule_path(entrypoint: &str) -> Result<String, InterpError> {
    let trimmed = entrypoint.trim_matches('/');
    let invalid = |message: &str| InterpError::Entrypoint {
        entrypoint: entrypoint.to_owned(),
        message: message.to_owned(),
    };
    if trimmed.is_empty() {
        return Err(invalid(
            "is empty; expected a path such as flipt/authz/v1/allow",
        ));
    }
    // regorus resolves paths recursively; a few hundred segments overflow a thread's stack.
    if trimmed.split('/').count() > MAX_PATH_SEGMENTS {
        return Err(invalid(&format!(
            "has more than {MAX_PATH_SEGMENTS} path segments"
        )));
    }
    let mut path = String::from("data");
    for component in trimmed.split('/') {
        if component.is_empty() {
            return Err(invalid("has an empty path component (`//`)"));
        }
        if is_identifier(component) {
            path.push('.');
            path.push_str(component);
        } else {
            path.push('[');
            // A JSON string is a valid Rego string literal.
            path.push_str(&Value::String(component.to_owned()).to_string());
            path.push(']');
        }
    }
    Ok(path)
}

fn is_identifier(s: &str) -> bool {
    const KEYWORDS: &[&str] = &[
        "as", "contains", "data", "default", "else", "every", "false", "if", "import", "in",
        "input", "not", "null", "package", "some", "true", "with",
    ];
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !KEYWORDS.contains(&s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builtins::BuiltinError;
    use serde_json::json;

    fn policy(text: &str) -> InterpretedPolicy {
        policy_with(text, &json!({}), &Builtins::empty())
    }

    fn policy_with(text: &str, data: &Value, builtins: &Builtins) -> InterpretedPolicy {
        let src = RegoSource {
            path: "test.rego".into(),
            text: text.into(),
        };
        InterpretedPolicy::new(&[src], data, builtins).expect("policy compiles")
    }

    fn number(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn evaluation_past_the_timeout_fails_instead_of_running_on() {
        let p = policy("package t\nn := count([x | some x in numbers.range(1, 5000000)])\n")
            .with_eval_timeout(std::time::Duration::from_millis(50));
        let started = std::time::Instant::now();
        let err = p.evaluate("t/n", None).unwrap_err();
        assert!(matches!(err, InterpError::Eval { .. }), "{err}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "the limit stopped it"
        );
    }

    #[test]
    fn data_that_shadows_a_rule_is_refused() {
        let rego = "package flipt.authz.v1\ndefault allow := false\nallow if input.ok\n";
        let src = [RegoSource {
            path: "policy.rego".into(),
            text: rego.into(),
        }];
        let shadow = json!({"flipt": {"authz": {"v1": {"allow": true}}}});
        let err = InterpretedPolicy::new(&src, &shadow, &Builtins::empty()).unwrap_err();
        assert!(
            err.to_string().contains(
                "data path flipt/authz/v1/allow conflicts with rule allow in policy.rego"
            ),
            "{err}"
        );
        let leaf = json!({"flipt": {"authz": 5}});
        let err = InterpretedPolicy::new(&src, &leaf, &Builtins::empty()).unwrap_err();
        assert!(
            err.to_string()
                .contains("data path flipt/authz is not an object"),
            "{err}"
        );
        // Data beside the rules, in the same package namespace, is fine.
        let beside = json!({"flipt": {"authz": {"v1": {"roles": []}}}, "roles": []});
        InterpretedPolicy::new(&src, &beside, &Builtins::empty()).expect("no conflict");
    }

    #[test]
    fn interpreted_policy_is_send_and_sync() {
        fn assert<T: Send + Sync>() {}
        assert::<InterpretedPolicy>();
    }

    #[test]
    fn undefined_is_none_and_false_is_a_value() {
        let p = policy(
            "package t\n\
             default deny := false\n\
             allow if input.user == \"root\"\n",
        );
        let input = json!({"user": "bob"});
        assert_eq!(p.evaluate("t/allow", Some(&input)).unwrap(), None);
        assert_eq!(
            p.evaluate("t/deny", Some(&input)).unwrap(),
            Some(json!(false))
        );
        let root = json!({"user": "root"});
        assert_eq!(
            p.evaluate("t/allow", Some(&root)).unwrap(),
            Some(json!(true))
        );
    }

    #[test]
    fn missing_input_is_undefined_but_null_input_is_a_value() {
        let p = policy(
            "package t\n\
             is_null if input == null\n\
             has_input if input\n\
             echo := input\n",
        );
        assert_eq!(p.evaluate("t/is_null", None).unwrap(), None);
        assert_eq!(p.evaluate("t/echo", None).unwrap(), None);
        assert_eq!(
            p.evaluate("t/is_null", Some(&Value::Null)).unwrap(),
            Some(json!(true))
        );
        assert_eq!(
            p.evaluate("t/echo", Some(&Value::Null)).unwrap(),
            Some(Value::Null)
        );
        // `input` as a condition: null is a value, so the rule holds only when input is
        // non-false — OPA treats any defined value other than `false` as true.
        assert_eq!(
            p.evaluate("t/has_input", Some(&Value::Null)).unwrap(),
            Some(json!(true))
        );
    }

    #[test]
    fn pooled_engine_does_not_leak_input_into_the_next_evaluation() {
        let p = policy("package t\necho := input\n");
        assert_eq!(
            p.evaluate("t/echo", Some(&json!(1))).unwrap(),
            Some(json!(1))
        );
        assert_eq!(p.evaluate("t/echo", None).unwrap(), None);
    }

    #[test]
    fn partial_set_is_a_sorted_deduplicated_array() {
        let p = policy(
            "package t\n\
             names contains n if some n in [\"zed\", \"alice\", \"mallory\", \"alice\"]\n\
             nums contains n if some n in [10, 2, 33, 2, 1]\n\
             empty contains n if some n in []\n",
        );
        assert_eq!(
            p.evaluate("t/names", None).unwrap(),
            Some(json!(["alice", "mallory", "zed"]))
        );
        assert_eq!(
            p.evaluate("t/nums", None).unwrap(),
            Some(json!([1, 2, 10, 33]))
        );
        // A partial set with no members is the empty set, not undefined (as in OPA).
        assert_eq!(p.evaluate("t/empty", None).unwrap(), Some(json!([])));
    }

    #[test]
    fn set_nested_in_an_object_is_an_array() {
        let p = policy("package t\nx := {\"s\": {3, 1, 2}}\n");
        assert_eq!(
            p.evaluate("t/x", None).unwrap(),
            Some(json!({"s": [1, 2, 3]}))
        );
    }

    #[test]
    fn set_members_of_mixed_types_follow_opa_type_order() {
        // OPA: null < boolean < number < string < array < object < set.
        let p = policy(
            "package t\n\
             s contains x if some x in [{2}, {\"a\": 1}, [1], \"s\", 1, false, null]\n\
             nested contains x if some x in [{\"k\": {1}}, {\"k\": {\"a\": 1}}]\n",
        );
        assert_eq!(
            p.evaluate("t/s", None).unwrap(),
            Some(json!([null, false, 1, "s", [1], {"a": 1}, [2]]))
        );
        assert_eq!(
            p.evaluate("t/nested", None).unwrap(),
            Some(json!([{"k": {"a": 1}}, {"k": [1]}]))
        );
    }

    #[test]
    fn opa_order_compares_collections_element_wise_then_by_length() {
        let v = |text: &str| regorus::Value::from_json_str(text).unwrap();
        use std::cmp::Ordering::*;
        assert_eq!(opa_compare(&v("[1, 2]"), &v("[1, 3]")), Less);
        assert_eq!(opa_compare(&v("[1, 2]"), &v("[1]")), Greater);
        assert_eq!(opa_compare(&v(r#"{"a": 2}"#), &v(r#"{"b": 1}"#)), Less);
        assert_eq!(opa_compare(&v(r#"{"a": 2}"#), &v(r#"{"a": 1}"#)), Greater);
        assert_eq!(
            opa_compare(&v(r#"{"a": 1}"#), &v(r#"{"a": 1, "b": 0}"#)),
            Less
        );
        assert_eq!(opa_compare(&v("\"b\""), &v("[]")), Less);
        assert_eq!(opa_compare(&v("2"), &v("10")), Less);
    }

    #[test]
    fn non_string_object_keys_are_written_as_json_text() {
        let p = policy("package t\nx := {1: \"a\", true: \"b\", [1, \"z\"]: \"c\", null: \"d\"}\n");
        assert_eq!(
            p.evaluate("t/x", None).unwrap(),
            Some(json!({"1": "a", "true": "b", "[1,\"z\"]": "c", "null": "d"}))
        );
    }

    #[test]
    fn rego_v1_syntax_with_and_without_the_import() {
        for header in ["", "import rego.v1\n"] {
            let p = policy(&format!(
                "package t\n{header}\
                 allow if {{ \"a\" in input.roles }}\n\
                 tags contains t if {{ some t in input.tags; t != \"\" }}\n\
                 all_ok if {{ every r in input.roles {{ r != \"\" }} }}\n"
            ));
            let input = json!({"roles": ["a"], "tags": ["x", "", "y"]});
            assert_eq!(
                p.evaluate("t/allow", Some(&input)).unwrap(),
                Some(json!(true)),
                "{header:?}"
            );
            assert_eq!(
                p.evaluate("t/tags", Some(&input)).unwrap(),
                Some(json!(["x", "y"]))
            );
            assert_eq!(
                p.evaluate("t/all_ok", Some(&input)).unwrap(),
                Some(json!(true))
            );
        }
    }

    #[test]
    fn rego_v0_syntax_is_rejected_naming_the_file() {
        let src = RegoSource {
            path: "old.rego".into(),
            text: "package t\nallow { true }\n".into(),
        };
        let err = InterpretedPolicy::new(&[src], &json!({}), &Builtins::empty()).unwrap_err();
        assert!(
            matches!(&err, InterpError::Parse { path, .. } if path == "old.rego"),
            "{err}"
        );
    }

    #[test]
    fn parse_error_names_the_file() {
        let good = RegoSource {
            path: "good.rego".into(),
            text: "package a\nx := 1\n".into(),
        };
        let bad = RegoSource {
            path: "policies/bad.rego".into(),
            text: "package b\nallow if {\n".into(),
        };
        let err = InterpretedPolicy::new(&[good, bad], &json!({}), &Builtins::empty()).unwrap_err();
        match &err {
            InterpError::Parse { path, message } => {
                assert_eq!(path, "policies/bad.rego");
                assert!(!message.is_empty());
            }
            other => panic!("expected a parse error, got {other:?}"),
        }
        assert!(err.to_string().starts_with("policies/bad.rego: "), "{err}");
    }

    #[test]
    fn unsafe_variable_is_a_compile_error_at_construction() {
        let src = RegoSource {
            path: "unsafe.rego".into(),
            text: "package t\nallow if { x > 1 }\n".into(),
        };
        let err = InterpretedPolicy::new(&[src], &json!({}), &Builtins::empty());
        match err {
            Err(InterpError::Compile { files, message }) => {
                assert_eq!(files, "unsafe.rego");
                assert!(message.contains("unsafe.rego"), "{message}");
            }
            // If regorus only reports it at evaluation time, pin that instead.
            other => panic!("expected a compile error, got {other:?}"),
        }
    }

    #[test]
    fn data_must_be_an_object() {
        let err = InterpretedPolicy::new(&[], &json!([1]), &Builtins::empty()).unwrap_err();
        assert!(matches!(err, InterpError::Data { .. }), "{err}");
    }

    #[test]
    fn data_document_is_visible_under_its_keys() {
        let p = policy_with(
            "package t\nn := count(data.roles)\n",
            &json!({"roles": [{"name": "a"}, {"name": "b"}]}),
            &Builtins::empty(),
        );
        assert_eq!(p.evaluate("t/n", None).unwrap(), Some(json!(2)));
    }

    fn failing_builtins() -> Builtins {
        let mut b = Builtins::empty();
        b.register(Builtin::new("test.fail", 1, |_| {
            Err(BuiltinError::new("boom"))
        }));
        b.register(Builtin::new("test.double", 1, |args| {
            args[0]
                .as_i64()
                .map(|n| json!(n * 2))
                .ok_or_else(|| BuiltinError::new("not an integer"))
        }));
        b
    }

    #[test]
    fn builtin_error_makes_the_call_undefined_not_an_error() {
        let p = policy_with(
            "package t\n\
             default allow := false\n\
             allow if test.fail(input)\n\
             x := test.fail(1)\n\
             negated if not test.fail(1)\n\
             doubled := test.double(input.n)\n",
            &json!({}),
            &failing_builtins(),
        );
        let input = json!({"n": 21});
        assert_eq!(
            p.evaluate("t/allow", Some(&input)).unwrap(),
            Some(json!(false))
        );
        assert_eq!(p.evaluate("t/x", Some(&input)).unwrap(), None);
        // `not` of an undefined call holds, as in OPA.
        assert_eq!(
            p.evaluate("t/negated", Some(&input)).unwrap(),
            Some(json!(true))
        );
        assert_eq!(
            p.evaluate("t/doubled", Some(&input)).unwrap(),
            Some(json!(42))
        );
        let bad = json!({"n": "x"});
        assert_eq!(p.evaluate("t/doubled", Some(&bad)).unwrap(), None);
    }

    #[test]
    fn flipt_is_auth_method_is_available_as_an_extension() {
        let p = policy_with(
            "package t\nallow if flipt.is_auth_method(input, \"jwt\")\n",
            &json!({}),
            &Builtins::flipt(),
        );
        let jwt = json!({"authentication": {"method": 5}});
        let token = json!({"authentication": {"method": 1}});
        assert_eq!(
            p.evaluate("t/allow", Some(&jwt)).unwrap(),
            Some(json!(true))
        );
        assert_eq!(p.evaluate("t/allow", Some(&token)).unwrap(), None);
        // Missing authentication: the builtin fails, so the call is undefined.
        assert_eq!(p.evaluate("t/allow", Some(&json!({}))).unwrap(), None);
    }

    /// OPA rejects a call to an unknown function at compile time; regorus only when the call
    /// runs. Pinned so the gap is visible: the caller cannot rely on `new` to catch it.
    #[test]
    fn unknown_function_fails_at_evaluation_not_at_load() {
        let p = policy("package t\nallow if not_registered.fn(input)\n");
        let err = p.evaluate("t/allow", Some(&json!({}))).unwrap_err();
        assert!(
            matches!(&err, InterpError::Eval { message, .. }
                if message.contains("could not find function not_registered.fn")),
            "{err}"
        );
    }

    #[test]
    fn native_builtin_error_is_undefined_in_non_strict_mode() {
        let p = policy("package t\nx := to_number(input)\n");
        assert_eq!(
            p.evaluate("t/x", Some(&json!("not a number"))).unwrap(),
            None
        );
        assert_eq!(
            p.evaluate("t/x", Some(&json!("12"))).unwrap(),
            Some(json!(12))
        );
    }

    #[test]
    fn big_integers_in_input_keep_every_digit() {
        let p = policy("package t\nx := input.n\ny := [input.n]\n");
        for digits in [
            "123456789012345678901234567890",
            "-123456789012345678901234567890",
            "12345678901234567890123",
            "18446744073709551615",
            "-9223372036854775808",
        ] {
            let input = json!({"n": number(digits)});
            let out = p.evaluate("t/x", Some(&input)).unwrap().unwrap();
            assert_eq!(out.to_string(), digits);
            let out = p.evaluate("t/y", Some(&input)).unwrap().unwrap();
            assert_eq!(out.to_string(), format!("[{digits}]"));
        }
    }

    #[test]
    fn big_integers_in_data_and_arithmetic_stay_exact() {
        let p = policy_with(
            "package t\nsum := data.n + 1\nbig := 123456789012345678901234567890 * 10\n",
            &json!({"n": number("99999999999999999999999")}),
            &Builtins::empty(),
        );
        assert_eq!(
            p.evaluate("t/sum", None).unwrap().unwrap().to_string(),
            "100000000000000000000000"
        );
        assert_eq!(
            p.evaluate("t/big", None).unwrap().unwrap().to_string(),
            "1234567890123456789012345678900"
        );
    }

    #[test]
    fn big_integers_reach_builtins_exactly() {
        let mut b = Builtins::empty();
        b.register(Builtin::new("test.echo", 1, |args| Ok(args[0].clone())));
        let p = policy_with("package t\nx := test.echo(input)\n", &json!({}), &b);
        let input = number("123456789012345678901234567890");
        assert_eq!(p.evaluate("t/x", Some(&input)).unwrap(), Some(input));
    }

    /// Floats pass through `f64`: regorus keeps the shortest text that round-trips, so
    /// ordinary decimals survive, but digits beyond f64 precision are lost and `1.0`
    /// comes back as `1` (OPA would echo the literal text). Pinned so a change is noticed.
    #[test]
    fn floats_pass_through_f64() {
        let p = policy("package t\nx := input\n");
        for (text, expected) in [
            ("1.5", "1.5"),
            ("0.1", "0.1"),
            ("-2.25", "-2.25"),
            ("1.0", "1"),
            ("1e3", "1000"),
            ("3.14159265358979323846264338327950288", "3.141592653589793"),
        ] {
            let out = p.evaluate("t/x", Some(&number(text))).unwrap().unwrap();
            assert_eq!(out.to_string(), expected, "{text}");
        }
    }

    #[test]
    fn evaluation_from_four_threads_gives_identical_results() {
        let p = policy(
            "package t\n\
             allow if input.user == \"root\"\n\
             names contains n if some n in input.names\n",
        );
        let expected: Vec<_> = (0..50)
            .map(|i| {
                let input = json!({"user": if i % 2 == 0 { "root" } else { "bob" },
                                   "names": [format!("n{i}"), "a"]});
                let allow = p.evaluate("t/allow", Some(&input)).unwrap();
                let names = p.evaluate("t/names", Some(&input)).unwrap();
                (input, allow, names)
            })
            .collect();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..20 {
                        for (input, allow, names) in &expected {
                            assert_eq!(&p.evaluate("t/allow", Some(input)).unwrap(), allow);
                            assert_eq!(&p.evaluate("t/names", Some(input)).unwrap(), names);
                        }
                    }
                });
            }
        });
    }

    #[test]
    fn path_without_a_rule_is_undefined() {
        let p = policy("package t\nallow := true\n");
        assert_eq!(p.evaluate("t/nothing", None).unwrap(), None);
        assert_eq!(p.evaluate("other/pkg/allow", None).unwrap(), None);
    }

    #[test]
    fn regorus_reports_a_missing_rule_with_the_text_we_match() {
        let mut e = regorus::Engine::new();
        e.add_policy("t.rego".into(), "package t\nallow := true\n".into())
            .unwrap();
        let err = e.eval_rule("data.t.nothing".into()).unwrap_err();
        assert_eq!(err.to_string(), NOT_A_RULE_PATH);
    }

    #[test]
    fn package_path_evaluates_to_an_object_of_its_rules() {
        let p = policy("package t\nallow := true\nn := 2\n");
        assert_eq!(
            p.evaluate("t", None).unwrap(),
            Some(json!({"allow": true, "n": 2}))
        );
    }

    #[test]
    fn data_path_evaluates_to_the_document() {
        let p = policy_with(
            "package t\nallow := true\n",
            &json!({"cfg": {"a": 1}}),
            &Builtins::empty(),
        );
        assert_eq!(p.evaluate("cfg", None).unwrap(), Some(json!({"a": 1})));
        assert_eq!(p.evaluate("cfg/a", None).unwrap(), Some(json!(1)));
    }

    #[test]
    fn entrypoint_components_that_are_not_identifiers_use_brackets() {
        assert_eq!(
            rule_path("flipt/authz/v1/allow").unwrap(),
            "data.flipt.authz.v1.allow"
        );
        assert_eq!(rule_path("/a/b/").unwrap(), "data.a.b");
        assert_eq!(
            rule_path("my-app/1.0/if").unwrap(),
            r#"data["my-app"]["1.0"]["if"]"#
        );
        assert!(matches!(rule_path(""), Err(InterpError::Entrypoint { .. })));
        assert!(matches!(
            rule_path("a//b"),
            Err(InterpError::Entrypoint { .. })
        ));
    }

    #[test]
    fn quoted_package_is_reachable_by_its_slash_path() {
        let p = policy("package my_app[\"v-1\"]\nallow := true\n");
        assert_eq!(
            p.evaluate("my_app/v-1/allow", None).unwrap(),
            Some(json!(true))
        );
    }

    #[test]
    fn conflicting_complete_rule_is_an_evaluation_error_naming_the_entrypoint() {
        let p = policy("package t\nx = 1 if input.a\nx = 2 if input.b\n");
        let err = p
            .evaluate("t/x", Some(&json!({"a": true, "b": true})))
            .unwrap_err();
        assert!(
            matches!(&err, InterpError::Eval { entrypoint, .. } if entrypoint == "t/x"),
            "{err}"
        );
    }
}
