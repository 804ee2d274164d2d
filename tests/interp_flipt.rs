//! Flipt conformance through the interpreted engine.
//!
//! Flipt's own v1 engine tests (reference `flipt-authz.md` section 5.4, cases 1–16) run
//! against restated copies of its test policies in `tests/fixtures/flipt/`; then the policy
//! wasmgate ships in `policies/flipt/` is checked against its `expected.json`, which the Wasm
//! tier checks too, so both engines are held to the same answers.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use wasmgate::artifact::RegoSource;
use wasmgate::builtins::Builtins;
use wasmgate::interp::InterpretedPolicy;

const ALLOW: &str = "flipt/authz/v1/allow";
const VIEWABLE_NAMESPACES: &str = "flipt/authz/v1/viewable_namespaces";

fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn read(relative: &str) -> String {
    let path = repo_path(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn read_json(relative: &str) -> Value {
    serde_json::from_str(&read(relative)).unwrap_or_else(|e| panic!("parsing {relative}: {e}"))
}

/// Load one Rego file (and optionally a data file) with Flipt's builtins, as Flipt's local
/// engine does: the policy is a single module, the data document sits at the root.
fn load(rego: &str, data: Option<&str>) -> InterpretedPolicy {
    let source = RegoSource {
        path: rego.to_owned(),
        text: read(rego),
    };
    let data = data.map_or_else(|| json!({}), read_json);
    InterpretedPolicy::new(&[source], &data, &Builtins::flipt())
        .unwrap_or_else(|e| panic!("loading {rego}: {e}"))
}

/// Flipt's local engine reads `allow` as a bool and an undefined result as `false`.
fn is_allowed(policy: &InterpretedPolicy, input: &Value, case: &str) -> bool {
    match policy.evaluate(ALLOW, Some(input)) {
        Ok(None) => false,
        Ok(Some(Value::Bool(b))) => b,
        other => panic!("{case}: allow must be a bool or undefined, got {other:?}"),
    }
}

/// A v1 input as Flipt's authz middleware builds it; method 5 is JWT.
fn rbac_input(role: &str, resource: &str, action: &str, namespace: Option<&str>) -> Value {
    let mut request = json!({
        "resource": resource,
        "subject": resource,
        "action": action,
        "status": "success",
    });
    if let Some(ns) = namespace {
        request["namespace"] = json!(ns);
    }
    json!({
        "request": request,
        "authentication": {"method": 5, "metadata": {"io.flipt.auth.role": role}},
    })
}

fn rbac() -> InterpretedPolicy {
    load(
        "tests/fixtures/flipt/rbac.rego",
        Some("tests/fixtures/flipt/rbac.json"),
    )
}

/// Cases 1–10: Flipt's `TestEngine_IsAllowed` table over rbac.rego.
#[test]
fn cases_1_to_10_rbac_allow_table() {
    let policy = rbac();
    let table = [
        (1, "admin", "flag", "create", Some("default"), true),
        (2, "admin", "flag", "read", Some("default"), true),
        (3, "editor", "flag", "create", Some("default"), true),
        (4, "editor", "flag", "read", Some("default"), true),
        (5, "editor", "namespace", "create", Some("default"), false),
        (6, "viewer", "segment", "read", Some("default"), true),
        (7, "viewer", "flag", "create", Some("default"), false),
        (8, "namespaced_viewer", "flag", "read", Some("foo"), true),
        (9, "namespaced_viewer", "flag", "read", Some("bar"), false),
        (10, "namespaced_viewer", "flag", "read", None, false),
    ];
    for (case, role, resource, action, namespace, expected) in table {
        let input = rbac_input(role, resource, action, namespace);
        let label = format!("case {case}: {role} {action} {resource} in {namespace:?}");
        assert_eq!(is_allowed(&policy, &input, &label), expected, "{label}");
    }
}

/// Case 11: rbac.rego has no `viewable_namespaces`, so asking for it is undefined (Flipt's
/// engine turns that into an error; ours reports `None`, not a failure).
#[test]
fn case_11_rbac_viewable_namespaces_is_undefined() {
    let policy = rbac();
    let result = policy.evaluate(VIEWABLE_NAMESPACES, Some(&json!({})));
    assert_eq!(result, Ok(None), "case 11");
}

fn is_auth_method() -> InterpretedPolicy {
    load("tests/fixtures/flipt/is_auth_method.rego", None)
}

/// Case 12: every label Flipt knows matches its method number.
#[test]
fn case_12_is_auth_method_allows_each_label_with_its_method() {
    let policy = is_auth_method();
    for (method, label) in [
        (1, "token"),
        (2, "oidc"),
        (3, "k8s"),
        (3, "kubernetes"),
        (4, "github"),
        (5, "jwt"),
    ] {
        let input = json!({"label": label, "authentication": {"method": method}});
        let case = format!("case 12: method {method} with label {label}");
        assert!(is_allowed(&policy, &input, &case), "{case}");
    }
}

/// Case 13: an unknown label makes the builtin fail; the decision is a plain deny.
#[test]
fn case_13_unknown_auth_method_label_denies_without_error() {
    let policy = is_auth_method();
    let input = json!({"label": "none", "authentication": {"method": 2}});
    assert_eq!(
        policy.evaluate(ALLOW, Some(&input)),
        Ok(Some(json!(false))),
        "case 13"
    );
}

/// Cases 14–16: Flipt's `TestViewableNamespaces`; sets come back sorted and de-duplicated.
#[test]
fn cases_14_to_16_viewable_namespaces() {
    let policy = load(
        "tests/fixtures/flipt/viewable_namespaces.rego",
        Some("tests/fixtures/flipt/viewable_namespaces.json"),
    );
    let table = [
        (14, json!([]), json!([])),
        (15, json!(["devs"]), json!(["local", "staging"])),
        (
            16,
            json!(["devs", "ops"]),
            json!(["local", "production", "staging"]),
        ),
    ];
    for (case, roles, expected) in table {
        let input = json!({"roles": roles});
        let result = policy.evaluate(VIEWABLE_NAMESPACES, Some(&input));
        assert_eq!(result, Ok(Some(expected)), "case {case}: roles {roles}");
    }
}

/// The companion `allow` of the viewable-namespaces policy: inside the union only.
#[test]
fn viewable_namespaces_policy_allows_only_inside_the_union() {
    let policy = load(
        "tests/fixtures/flipt/viewable_namespaces.rego",
        Some("tests/fixtures/flipt/viewable_namespaces.json"),
    );
    let input = |ns: &str| json!({"roles": ["devs"], "request": {"namespace": ns}});
    assert!(is_allowed(&policy, &input("staging"), "devs in staging"));
    assert!(!is_allowed(
        &policy,
        &input("production"),
        "devs in production"
    ));
}

/// Derived from 5.1 (not a Flipt test): the JWT requirement holds even for admins.
#[test]
fn rbac_admin_with_a_static_token_is_denied() {
    let policy = rbac();
    let mut input = rbac_input("admin", "flag", "create", Some("default"));
    input["authentication"]["method"] = json!(1);
    assert!(!is_allowed(&policy, &input, "admin with static token"));
}

fn shipped() -> InterpretedPolicy {
    load(
        "policies/flipt/policy.rego",
        Some("policies/flipt/data.json"),
    )
}

/// Every example input of the shipped policy gives the answers recorded in expected.json.
#[test]
fn shipped_policy_matches_expected_for_every_example_input() {
    let policy = shipped();
    let expected = read_json("policies/flipt/expected.json");
    let expected = expected.as_object().expect("expected.json is an object");

    let mut names: Vec<String> = std::fs::read_dir(repo_path("policies/flipt/inputs"))
        .expect("policies/flipt/inputs exists")
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".json"))
        .collect();
    names.sort();
    assert!(names.len() >= 8, "only {} example inputs", names.len());
    let listed: Vec<&String> = expected.keys().collect();
    assert_eq!(
        listed,
        names.iter().collect::<Vec<_>>(),
        "expected.json must list exactly the files in inputs/"
    );

    for name in &names {
        let input = read_json(&format!("policies/flipt/inputs/{name}"));
        let want = &expected[name];
        let allow = policy.evaluate(ALLOW, Some(&input));
        assert_eq!(allow, Ok(Some(want["allow"].clone())), "{name}: allow");
        let namespaces = policy
            .evaluate(VIEWABLE_NAMESPACES, Some(&input))
            .map(|v| v.unwrap_or(Value::Null));
        assert_eq!(
            namespaces,
            Ok(want["viewable_namespaces"].clone()),
            "{name}: viewable_namespaces"
        );
    }
}

/// The same derived rule on the shipped policy, independent of the example files.
#[test]
fn shipped_policy_denies_admin_with_a_static_token() {
    let policy = shipped();
    for method in [1, 2, 3, 4] {
        let mut input = rbac_input("admin", "flag", "create", Some("default"));
        input["authentication"]["method"] = json!(method);
        let case = format!("admin with method {method}");
        assert!(!is_allowed(&policy, &input, &case), "{case}");
        assert_eq!(
            policy.evaluate(VIEWABLE_NAMESPACES, Some(&input)),
            Ok(Some(json!([]))),
            "{case}: viewable_namespaces"
        );
    }
}

/// The shipped policy answers Flipt's rbac table (cases 1–10) the same way as Flipt's own
/// test policy: it is that policy plus `viewable_namespaces`.
#[test]
fn shipped_policy_agrees_with_the_rbac_fixture() {
    let (shipped, fixture) = (shipped(), rbac());
    for role in ["admin", "editor", "viewer", "namespaced_viewer", "nobody"] {
        for resource in ["namespace", "flag", "segment", "authentication"] {
            for action in ["create", "read", "update", "delete"] {
                for namespace in [None, Some("default"), Some("foo"), Some("bar")] {
                    let input = rbac_input(role, resource, action, namespace);
                    let case = format!("{role} {action} {resource} in {namespace:?}");
                    assert_eq!(
                        is_allowed(&shipped, &input, &case),
                        is_allowed(&fixture, &input, &case),
                        "{case}"
                    );
                }
            }
        }
    }
}
