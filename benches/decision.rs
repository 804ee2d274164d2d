//! Decision-path benchmarks, side by side in one run:
//! - `wasm_host`: the Wasm path on a WAT double of `opa build` output (`tests/common`),
//!   input serialisation included — the host's own cost, the floor wasmgate adds;
//! - `flipt/interpreted`: the shipped Flipt RBAC policy through regorus (the baseline);
//! - `flipt/wasm`: the same policy compiled by the real `opa build` (only where `opa` exists);
//! - `threads`: decisions/s with 1 and 2 threads sharing one policy version;
//! - `reload`: building a new version of an already-compiled module with new data.
//!
//! Run: `cargo bench --bench decision`.
#[path = "../tests/common/opa_double.rs"]
mod opa_double;

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Value, json};
use wasmgate::artifact::PolicyContent;
use wasmgate::policy::{EnginePreference, LoadOptions, Loader, PolicySet};
use wasmgate::source::local;

fn flipt_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("policies/flipt")
}

fn flipt_input() -> Value {
    let text =
        std::fs::read_to_string(flipt_dir().join("inputs/editor_update_variant.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn load_flipt(engine: EnginePreference) -> Option<PolicySet> {
    let policy = local::read_policy(&flipt_dir().join("policy.rego"), 1 << 20).unwrap();
    let (data, _) = local::read_data(&flipt_dir().join("data.json"), 1 << 20).unwrap();
    let options = LoadOptions {
        engine,
        ..LoadOptions::default()
    };
    match Loader::new(options).load(policy, Some(data)) {
        Ok(set) => Some(set),
        Err(e) => {
            eprintln!("skipping flipt/{engine:?}: {e}");
            None
        }
    }
}

fn double_policy() -> PolicySet {
    let wasm = opa_double::OpaDouble::new()
        .returns("bench/allow", r#"[{"result":true}]"#)
        .returns("bench/echo", r#"[{"result":$INPUT}]"#)
        .wasm();
    let content = PolicyContent::File {
        name: "double.wasm".into(),
        bytes: wasm,
    };
    Loader::new(LoadOptions::default())
        .load(content, Some(json!({"roles": [1, 2, 3]})))
        .unwrap()
}

fn decisions(c: &mut Criterion) {
    let input = flipt_input();
    let mut group = c.benchmark_group("decision");
    group.throughput(Throughput::Elements(1));

    let double = double_policy();
    group.bench_function("wasm_host/fixed_result", |b| {
        b.iter(|| {
            double
                .evaluate("bench/allow", Some(black_box(&input)))
                .unwrap()
        })
    });
    group.bench_function("wasm_host/echo_input", |b| {
        b.iter(|| {
            double
                .evaluate("bench/echo", Some(black_box(&input)))
                .unwrap()
        })
    });
    if let Some(interpreted) = load_flipt(EnginePreference::Interpreted) {
        group.bench_function("flipt/interpreted", |b| {
            b.iter(|| {
                interpreted
                    .evaluate("flipt/authz/v1/allow", Some(black_box(&input)))
                    .unwrap()
            })
        });
    }
    if let Some(wasm) = load_flipt(EnginePreference::Wasm) {
        group.bench_function("flipt/wasm", |b| {
            b.iter(|| {
                wasm.evaluate("flipt/authz/v1/allow", Some(black_box(&input)))
                    .unwrap()
            })
        });
    }
    group.finish();
}

fn threads(c: &mut Criterion) {
    let input = Arc::new(flipt_input());
    let double = Arc::new(double_policy());
    let mut group = c.benchmark_group("threads");
    for n in [1usize, 2] {
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(format!("wasm_host/{n}"), |b| {
            // Each iteration is one decision on each of n threads.
            b.iter_custom(|iters| {
                let start = Instant::now();
                std::thread::scope(|s| {
                    for _ in 0..n {
                        let (double, input) = (Arc::clone(&double), Arc::clone(&input));
                        s.spawn(move || {
                            for _ in 0..iters {
                                black_box(double.evaluate("bench/allow", Some(&input)).unwrap());
                            }
                        });
                    }
                });
                start.elapsed()
            })
        });
    }
    group.finish();
}

fn reload(c: &mut Criterion) {
    let wasm = opa_double::OpaDouble::new()
        .returns("bench/allow", r#"[{"result":true}]"#)
        .wasm();
    let loader = Loader::new(LoadOptions {
        pool_size: 2,
        ..LoadOptions::default()
    });
    let content = PolicyContent::File {
        name: "double.wasm".into(),
        bytes: wasm,
    };
    loader.load(content.clone(), None).unwrap();
    let mut n = 0u64;
    c.bench_function("reload/known_module_new_data", |b| {
        b.iter(|| {
            n += 1;
            loader
                .load(content.clone(), Some(json!({"version": n})))
                .unwrap()
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = decisions, threads, reload
}
criterion_main!(benches);
