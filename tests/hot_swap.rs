//! Hot swap through the public API: local policy and data files rewritten while threads
//! evaluate continuously. Policies are WAT doubles of `opa build` output (see
//! `common::opa_double`) whose result names the policy version and echoes the data, so each
//! decision shows exactly which policy and data produced it.
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::opa_double::OpaDouble;
use serde_json::{Value, json};
use wasmgate::Authorizer;
use wasmgate::config::Config;

const POLL: Duration = Duration::from_millis(200);
/// Building and swapping a version takes time on a loaded 2-core CI machine; a change must
/// still be observed within one poll interval plus this.
const BUILD_SLACK: Duration = Duration::from_secs(2);

fn policy(tag: &str) -> Vec<u8> {
    OpaDouble::new()
        .returns(
            "test/decision",
            &format!(r#"[{{"result":{{"policy":"{tag}","data":$DATA}}}}]"#),
        )
        .wasm()
}

fn config(dir: &Path, policy_file: &str, extra: &str) -> Config {
    let yaml = format!(
        "authorization:\n  required: true\n  backend: local\n  local:\n    policy: {{path: {policy_file}, poll_interval: 200ms}}\n    data: {{path: data.json, poll_interval: 200ms}}\nwasmgate:\n  entrypoints: [test/decision]\n  pool_size: 2\n{extra}"
    );
    Config::from_yaml_str(&yaml, dir, "test.yml").expect("valid test config")
}

/// Write atomically (rename), as deployment tools do, so a poll never reads half a file.
fn write(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn wait_for(authz: &Authorizer, what: &str, pred: impl Fn(&Value) -> bool) -> Duration {
    let start = Instant::now();
    loop {
        let d = authz
            .evaluate("test/decision", &json!({}))
            .expect("decision");
        if pred(d.result.as_ref().unwrap()) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < POLL + BUILD_SLACK,
            "{what} not observed within {:?}",
            POLL + BUILD_SLACK
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Wait until the status satisfies `pred`, for at most three polls plus build time.
fn wait_status(authz: &Authorizer, what: &str, pred: impl Fn(&wasmgate::Status) -> bool) {
    let deadline = Instant::now() + POLL * 3 + BUILD_SLACK;
    while !pred(&authz.status()) {
        assert!(Instant::now() < deadline, "{what}: {:?}", authz.status());
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A directory with the double tagged `tag` as policy.wasm and data {"version":1}, and an
/// authorizer started on it (the runtime must outlive the authorizer's pollers).
fn start_double(tag: &str) -> (tempfile::TempDir, tokio::runtime::Runtime, Authorizer) {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("policy.wasm"), &policy(tag));
    write(&dir.path().join("data.json"), br#"{"version":1}"#);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let authz = rt
        .block_on(Authorizer::start(config(dir.path(), "policy.wasm", "")))
        .unwrap();
    (dir, rt, authz)
}

#[test]
fn rewrites_under_load_swap_without_a_failed_or_mixed_decision() {
    let (dir, _rt, authz) = start_double("v1");

    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (authz, stop, failures) = (authz.clone(), stop.clone(), failures.clone());
            std::thread::spawn(move || {
                let mut seen: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
                let mut count = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    match authz.evaluate("test/decision", &json!({"user": "alice"})) {
                        Ok(d) => {
                            let r = d.result.expect("defined");
                            seen.entry(d.revision.to_string())
                                .or_default()
                                .insert(format!(
                                    "{}/{}",
                                    r["policy"].as_str().unwrap(),
                                    r["data"]["version"]
                                ));
                        }
                        Err(e) => {
                            eprintln!("failed decision: {e}");
                            failures.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    count += 1;
                }
                (seen, count)
            })
        })
        .collect();

    std::thread::sleep(Duration::from_millis(100));
    write(&dir.path().join("data.json"), br#"{"version":2}"#);
    let data_latency = wait_for(&authz, "data v2", |r| r["data"]["version"] == 2);
    write(&dir.path().join("policy.wasm"), &policy("v2"));
    let policy_latency = wait_for(&authz, "policy v2", |r| r["policy"] == "v2");
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::Relaxed);

    let mut by_revision: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut total = 0;
    for w in workers {
        let (seen, count) = w.join().unwrap();
        total += count;
        for (rev, versions) in seen {
            by_revision.entry(rev).or_default().extend(versions);
        }
    }
    eprintln!(
        "{total} decisions; data swap seen after {data_latency:?}, policy swap after {policy_latency:?}"
    );
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "no decision may fail during swaps"
    );
    // Each revision answered from exactly one (policy, data) pair: never mixed.
    for (rev, versions) in &by_revision {
        assert_eq!(
            versions.len(),
            1,
            "revision {rev} answered from {versions:?}"
        );
    }
    let pairs: BTreeSet<String> = by_revision.values().flatten().cloned().collect();
    let expected: BTreeSet<String> = ["v1/1", "v1/2", "v2/2"].map(String::from).into();
    assert_eq!(pairs, expected);
    let status = authz.status();
    assert_eq!(
        status.reloads_ok, 3,
        "first load, data change, policy change"
    );
    assert_eq!(status.reloads_failed, 0);
}

#[test]
fn broken_policy_keeps_the_last_good_version_and_is_reported() {
    let (dir, _rt, authz) = start_double("good");
    let revision = authz.status().revision.unwrap();

    // A module without the OPA exports, then malformed data.
    let not_opa = wat::parse_str(r#"(module (func (export "f")))"#).unwrap();
    write(&dir.path().join("policy.wasm"), &not_opa);
    wait_status(&authz, "the broken policy was never noticed", |s| {
        s.reloads_failed > 0
    });
    let status = authz.status();
    let error = status.last_error.expect("the failure is reported");
    assert!(error.contains("not an OPA policy module"), "{error}");
    assert_eq!(
        status.revision.as_deref(),
        Some(&*revision),
        "the good version keeps serving"
    );
    let d = authz.evaluate("test/decision", &json!({})).unwrap();
    assert_eq!(d.result.unwrap()["policy"], "good");

    write(&dir.path().join("data.json"), b"{ not json");
    let failed_before = authz.status().reloads_failed;
    wait_status(&authz, "the malformed data was never reported", |s| {
        s.last_error
            .clone()
            .unwrap_or_default()
            .contains("data.json")
    });
    assert!(authz.status().reloads_failed > failed_before);
    assert_eq!(
        authz
            .evaluate("test/decision", &json!({}))
            .unwrap()
            .result
            .unwrap()["data"]["version"],
        1
    );

    // Fixing both files recovers.
    write(&dir.path().join("policy.wasm"), &policy("fixed"));
    write(&dir.path().join("data.json"), br#"{"version":3}"#);
    wait_for(&authz, "the fixed version", |r| {
        r["policy"] == "fixed" && r["data"]["version"] == 3
    });
    assert_eq!(
        authz.status().last_error,
        None,
        "a good version clears the error"
    );
}

#[test]
fn first_load_failure_fails_startup_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("policy.wasm"), b"\0asm garbage");
    write(&dir.path().join("data.json"), b"{}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let err = rt
        .block_on(Authorizer::start(config(dir.path(), "policy.wasm", "")))
        .unwrap_err();
    assert!(
        err.to_string().contains("not a valid WebAssembly module"),
        "{err}"
    );

    let err = rt
        .block_on(Authorizer::start(config(dir.path(), "missing.wasm", "")))
        .unwrap_err();
    assert!(err.to_string().contains("missing.wasm"), "{err}");
}

#[test]
fn start_degraded_denies_until_a_policy_loads() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("data.json"), br#"{"version":1}"#);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let authz = rt
        .block_on(Authorizer::start(config(
            dir.path(),
            "policy.wasm",
            "  start_degraded: true\n",
        )))
        .expect("degraded start succeeds");
    assert!(!authz.status().ready);
    wait_status(&authz, "the failed first load was never reported", |s| {
        s.last_error.is_some()
    });
    assert!(matches!(
        authz.evaluate("test/decision", &json!({})),
        Err(wasmgate::DecisionError::NoPolicy)
    ));
    assert!(!authz.is_allowed(&json!({})), "no policy means deny");

    write(&dir.path().join("policy.wasm"), &policy("late"));
    wait_status(&authz, "the policy never loaded", |s| s.ready);
    assert_eq!(
        authz
            .evaluate("test/decision", &json!({}))
            .unwrap()
            .result
            .unwrap()["policy"],
        "late"
    );
}

#[test]
fn rego_policy_without_opa_is_interpreted_and_hot_swapped() {
    let dir = tempfile::tempdir().unwrap();
    let rego =
        |v: u32| format!("package test\n\ndecision := {{\"policy\": \"r{v}\", \"data\": data}}\n");
    write(&dir.path().join("policy.rego"), rego(1).as_bytes());
    write(&dir.path().join("data.json"), br#"{"version":1}"#);
    // `opa` pointed at a path that does not exist would be an error; leave it unset and make
    // sure none is found by naming an empty PATH-free engine choice: auto falls back.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cfg = config(dir.path(), "policy.rego", "  engine: interpreted\n");
    let authz = rt.block_on(Authorizer::start(cfg)).unwrap();
    assert_eq!(
        authz.status().engine,
        Some(wasmgate::EngineKind::Interpreted)
    );
    assert_eq!(
        authz
            .evaluate("test/decision", &json!({}))
            .unwrap()
            .result
            .unwrap(),
        json!({"policy": "r1", "data": {"version": 1}})
    );
    write(&dir.path().join("policy.rego"), rego(2).as_bytes());
    wait_for(&authz, "rego r2", |r| r["policy"] == "r2");
}

#[test]
fn is_allowed_fails_closed() {
    let dir = tempfile::tempdir().unwrap();
    let double = OpaDouble::new().returns("a/allow", r#"[{"result":$INPUT}]"#);
    write(&dir.path().join("policy.wasm"), &double.wasm());
    write(&dir.path().join("data.json"), b"{}");
    let yaml = "authorization:\n  local:\n    policy: {path: policy.wasm}\n    data: {path: data.json}\nwasmgate:\n  entrypoints: [a/allow]\n";
    let rt = tokio::runtime::Runtime::new().unwrap();
    let authz = rt
        .block_on(Authorizer::start(
            Config::from_yaml_str(yaml, dir.path(), "t.yml").unwrap(),
        ))
        .unwrap();
    assert!(authz.is_allowed(&json!(true)));
    assert!(!authz.is_allowed(&json!(false)));
    assert!(!authz.is_allowed(&json!("yes")), "a non-boolean is a deny");
    assert!(
        !authz.is_allowed(&json!({"allow": true})),
        "an object is a deny"
    );
}

#[test]
fn bundle_and_object_backends_are_not_yet_supported_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    for (backend, yaml) in [
        (
            "bundle",
            "authorization:\n  backend: bundle\n  bundle:\n    configuration: 'services: {}'\n",
        ),
        (
            "object",
            "authorization:\n  backend: object\n  object:\n    type: s3\n    s3: {bucket: b, region: us-east-1}\n",
        ),
    ] {
        let config = Config::from_yaml_str(yaml, dir.path(), "t.yml").unwrap();
        let err = rt.block_on(Authorizer::start(config)).unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("backend {backend} is not yet supported")),
            "{err}"
        );
    }
}

#[test]
fn policy_and_data_that_are_only_valid_together_swap_together() {
    let dir = tempfile::tempdir().unwrap();
    // Each policy defines a rule where the other version's data puts a value, so neither
    // file can change alone: the loader must pair the new policy with the new data.
    let rego = |v: u32, rule: &str| {
        format!(
            "package test\n\ndecision := {{\"policy\": \"r{v}\", \"data\": data.test}}\n\n{rule} := 1\n"
        )
    };
    write(&dir.path().join("policy.rego"), rego(1, "a").as_bytes());
    write(&dir.path().join("data.json"), br#"{"test":{"b":1}}"#);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cfg = config(dir.path(), "policy.rego", "  engine: interpreted\n");
    let authz = rt.block_on(Authorizer::start(cfg)).unwrap();
    write(&dir.path().join("policy.rego"), rego(2, "b").as_bytes());
    write(&dir.path().join("data.json"), br#"{"test":{"a":1}}"#);
    wait_for(&authz, "the paired version", |r| {
        r["policy"] == "r2" && r["data"]["a"] == 1
    });
}

#[test]
fn restoring_identical_content_clears_the_reported_error() {
    let (dir, _rt, authz) = start_double("p");
    std::fs::remove_file(dir.path().join("data.json")).unwrap();
    wait_status(&authz, "the missing data file was never reported", |s| {
        s.last_error.is_some()
    });
    write(&dir.path().join("data.json"), br#"{"version":1}"#);
    wait_status(
        &authz,
        "the error stayed after the file came back unchanged",
        |s| s.last_error.is_none(),
    );
    assert_eq!(
        authz.status().reloads_ok,
        1,
        "nothing changed, nothing was rebuilt"
    );
}
