//! Tier 2: needs the real `opa` CLI. Compiles the shipped Flipt policy to Wasm with
//! `opa build` and checks that the Wasm and interpreted engines agree on every example input.
//!
//! These tests are `#[ignore]`d so that a machine without `opa` reports them as ignored,
//! by name, instead of passing them silently. `scripts/test.sh` runs them (with
//! `--include-ignored`) whenever `opa` is found, and says loudly when it is not.
use std::path::PathBuf;

use serde_json::Value;
use wasmgate::artifact::PolicyContent;
use wasmgate::policy::{EngineKind, EnginePreference, LoadOptions, Loader, PolicySet};
use wasmgate::source::local;

fn flipt() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("policies/flipt")
}

fn load(engine: EnginePreference) -> PolicySet {
    wasmgate::opa_cli::locate(None).expect("this tier needs opa on PATH or WASMGATE_OPA");
    let policy: PolicyContent = local::read_policy(&flipt().join("policy.rego"), 1 << 20).unwrap();
    let (data, _) = local::read_data(&flipt().join("data.json"), 1 << 20).unwrap();
    let options = LoadOptions {
        engine,
        pool_size: 1,
        ..LoadOptions::default()
    };
    Loader::new(options)
        .load(policy, Some(data))
        .expect("the Flipt policy loads")
}

#[test]
#[ignore = "tier 2: needs the opa CLI; scripts/test.sh runs it when opa is on PATH or WASMGATE_OPA is set"]
fn opa_compiled_flipt_policy_agrees_with_the_interpreter_on_every_example() {
    let wasm = load(EnginePreference::Wasm);
    let interpreted = load(EnginePreference::Interpreted);
    assert_eq!(wasm.info().engine, EngineKind::Wasm);
    assert_eq!(interpreted.info().engine, EngineKind::Interpreted);
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(flipt().join("expected.json")).unwrap())
            .unwrap();
    let mut compared = 0;
    for (name, want) in expected.as_object().unwrap() {
        let input: Value = serde_json::from_str(
            &std::fs::read_to_string(flipt().join("inputs").join(name)).unwrap(),
        )
        .unwrap();
        for (entrypoint, key) in [
            ("flipt/authz/v1/allow", "allow"),
            ("flipt/authz/v1/viewable_namespaces", "viewable_namespaces"),
        ] {
            let w = wasm.evaluate(entrypoint, Some(&input)).unwrap();
            let i = interpreted.evaluate(entrypoint, Some(&input)).unwrap();
            assert_eq!(
                w, i,
                "{entrypoint} on {name}: wasm and interpreted disagree"
            );
            assert_eq!(
                w.as_ref(),
                want.get(key).filter(|v| !v.is_null()),
                "{entrypoint} on {name}"
            );
            compared += 1;
        }
    }
    eprintln!("opa tier: {compared} decisions agree between wasm and interpreted");
}
