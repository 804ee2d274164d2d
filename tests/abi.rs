//! The OPA Wasm host (`wasmgate::abi`) driven by WAT doubles of `opa build` output.
mod common;

use std::time::Duration;

use common::opa_double::{Arg, Body, OpaDouble};
use serde_json::{Value, json};
use wasmgate::abi::{AbiError, CompiledPolicy, Limits};
use wasmgate::builtins::Builtins;

fn compile(double: &OpaDouble) -> Result<CompiledPolicy, AbiError> {
    CompiledPolicy::compile(&double.wasm(), &Builtins::flipt(), Limits::default())
}

fn eval(
    policy: &CompiledPolicy,
    data: &str,
    ep: &str,
    input: Option<&str>,
) -> Result<Option<Value>, AbiError> {
    let mut instance = policy.instantiate(data.as_bytes())?;
    let id = policy.entrypoint_id(ep)?;
    instance.evaluate(id, input.map(str::as_bytes))
}

#[test]
fn entrypoints_resolve_by_name_and_by_id() {
    let policy = compile(
        &OpaDouble::new()
            .returns("a/allow", r#"[{"result":1}]"#)
            .returns("a/b", r#"[{"result":2}]"#),
    )
    .unwrap();
    assert_eq!(policy.entrypoints().len(), 2);
    assert_eq!(policy.entrypoint_id("a/b").unwrap(), 1);
    assert_eq!(
        policy.entrypoint_id("/a/b").unwrap(),
        1,
        "a leading slash is accepted"
    );
    assert_eq!(policy.entrypoint_id("0").unwrap(), 0);
    assert_eq!(eval(&policy, "{}", "a/b", None).unwrap(), Some(json!(2)));
    assert_eq!(eval(&policy, "{}", "0", None).unwrap(), Some(json!(1)));
}

#[test]
fn unknown_entrypoint_is_an_error_naming_it() {
    let policy = compile(&OpaDouble::new().returns("a/allow", "[]")).unwrap();
    let err = policy.entrypoint_id("a/deny").unwrap_err();
    assert!(
        matches!(err, AbiError::UnknownEntrypoint(ref e) if e == "a/deny"),
        "{err}"
    );
    assert!(
        policy.entrypoint_id("7").is_err(),
        "an id the module does not have"
    );
}

#[test]
fn data_is_loaded_once_and_visible_to_every_evaluation() {
    let policy = compile(&OpaDouble::new().returns("d", r#"[{"result":$DATA}]"#)).unwrap();
    let mut instance = policy.instantiate(br#"{"roles":["admin"]}"#).unwrap();
    for _ in 0..3 {
        assert_eq!(
            instance.evaluate(0, None).unwrap(),
            Some(json!({"roles": ["admin"]}))
        );
    }
}

#[test]
fn undefined_is_distinct_from_false() {
    let policy = compile(
        &OpaDouble::new()
            .returns("undef", "[]")
            .returns("no", r#"[{"result":false}]"#),
    )
    .unwrap();
    assert_eq!(eval(&policy, "{}", "undef", None).unwrap(), None);
    assert_eq!(eval(&policy, "{}", "no", None).unwrap(), Some(json!(false)));
}

#[test]
fn no_input_is_distinct_from_null_input() {
    let policy = compile(&OpaDouble::new().returns("echo", r#"[{"result":$INPUT}]"#)).unwrap();
    assert_eq!(eval(&policy, "{}", "echo", None).unwrap(), None);
    assert_eq!(
        eval(&policy, "{}", "echo", Some("null")).unwrap(),
        Some(Value::Null)
    );
}

#[test]
fn heap_is_reset_so_memory_stays_flat_over_10000_evaluations() {
    for abi in [Some((1, 2)), Some((1, 1))] {
        let policy = compile(
            &OpaDouble::new()
                .abi(abi)
                .returns("echo", r#"[{"result":{"in":$INPUT,"data":$DATA}}]"#),
        )
        .unwrap();
        let mut instance = policy
            .instantiate(br#"{"k":"a data document of some size"}"#)
            .unwrap();
        let input = format!(r#"{{"pad":"{}"}}"#, "x".repeat(512));
        instance.evaluate(0, Some(input.as_bytes())).unwrap();
        let (memory, heap) = (instance.memory_bytes(), instance.heap_ptr().unwrap());
        for _ in 0..10_000 {
            instance.evaluate(0, Some(input.as_bytes())).unwrap();
        }
        // 10,000 x ~1.6 KiB would be ~16 MiB had the heap not been reset.
        assert_eq!(
            instance.memory_bytes(),
            memory,
            "memory grew under ABI {abi:?}"
        );
        assert_eq!(
            instance.heap_ptr().unwrap(),
            heap,
            "heap pointer drifted under ABI {abi:?}"
        );
    }
}

#[test]
fn both_eval_paths_give_the_same_result() {
    let body = r#"[{"result":{"input":$INPUT,"data":$DATA}}]"#;
    let input = r#"{"user":"alice","n":[1,2,3]}"#;
    let mut results = Vec::new();
    for abi in [None, Some((1, 1)), Some((1, 2))] {
        let policy = compile(&OpaDouble::new().abi(abi).returns("e", body)).unwrap();
        results.push(eval(&policy, r#"{"x":true}"#, "e", Some(input)).unwrap());
    }
    assert_eq!(
        results[0],
        Some(json!({"input": {"user": "alice", "n": [1, 2, 3]}, "data": {"x": true}}))
    );
    assert!(results.iter().all(|r| *r == results[0]), "{results:?}");
}

#[test]
fn abi_version_is_read_from_the_module() {
    let v12 = compile(&OpaDouble::new().returns("e", "[]")).unwrap();
    assert_eq!((v12.abi().major, v12.abi().minor), (1, 2));
    let v10 = compile(&OpaDouble::new().abi(None).returns("e", "[]")).unwrap();
    assert_eq!(
        (v10.abi().major, v10.abi().minor),
        (1, 0),
        "no globals means ABI 1.0"
    );
}

#[test]
fn abi_major_version_other_than_1_is_rejected() {
    let err = compile(&OpaDouble::new().abi(Some((2, 0))).returns("e", "[]")).unwrap_err();
    assert!(
        matches!(err, AbiError::UnsupportedAbi { major: 2, minor: 0 }),
        "{err}"
    );
    assert!(err.to_string().contains("2.0"), "{err}");
}

#[test]
fn abi_1_2_without_opa_eval_is_rejected() {
    let err = compile(
        &OpaDouble::new()
            .without_export("opa_eval")
            .returns("e", "[]"),
    )
    .unwrap_err();
    assert!(err.to_string().contains("opa_eval"), "{err}");
}

#[test]
fn module_without_opa_exports_names_what_is_missing() {
    let err = compile(
        &OpaDouble::new()
            .without_export("opa_json_dump")
            .without_export("entrypoints")
            .returns("e", "[]"),
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("opa_json_dump") && msg.contains("entrypoints"),
        "{msg}"
    );
    assert!(msg.contains("not an OPA policy module"), "{msg}");
}

#[test]
fn plain_wasm_module_is_not_an_opa_policy() {
    let wasm = wat::parse_str(r#"(module (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))"#).unwrap();
    let err = CompiledPolicy::compile(&wasm, &Builtins::empty(), Limits::default()).unwrap_err();
    assert!(
        err.to_string().contains("not an OPA policy module"),
        "{err}"
    );
}

#[test]
fn foreign_imports_are_rejected() {
    let err = compile(&OpaDouble::new().with_foreign_import().returns("e", "[]")).unwrap_err();
    assert!(
        err.to_string().contains("wasi_snapshot_preview1.fd_write"),
        "{err}"
    );
}

#[test]
fn module_that_defines_its_own_memory_is_rejected() {
    let err = compile(&OpaDouble::new().with_own_memory().returns("e", "[]")).unwrap_err();
    assert!(matches!(err, AbiError::NoMemoryImport), "{err}");
}

#[test]
fn garbage_bytes_are_not_a_module() {
    let err = CompiledPolicy::compile(
        b"\0asm\x01\0\0\0garbage",
        &Builtins::empty(),
        Limits::default(),
    )
    .unwrap_err();
    assert!(matches!(err, AbiError::InvalidModule(_)), "{err}");
}

#[test]
fn memory_is_sized_for_data_segments_beyond_the_declared_minimum() {
    // Declares 2 pages (128 KiB) but writes a segment at 200 KiB, as OPA 1.17 modules do.
    let policy = compile(
        &OpaDouble::new()
            .with_data_segment_at(200 * 1024)
            .returns("e", r#"[{"result":true}]"#),
    )
    .unwrap();
    assert_eq!(eval(&policy, "{}", "e", None).unwrap(), Some(json!(true)));
}

#[test]
fn missing_custom_builtin_is_rejected_at_load_naming_it() {
    let double = OpaDouble::new()
        .requires_builtin("acme.lookup")
        .requires_builtin("flipt.is_auth_method")
        .returns("e", "[]");
    let err =
        CompiledPolicy::compile(&double.wasm(), &Builtins::flipt(), Limits::default()).unwrap_err();
    assert!(
        matches!(err, AbiError::MissingBuiltins(ref names) if names == &["acme.lookup"]),
        "{err}"
    );
    assert!(err.to_string().contains("acme.lookup"), "{err}");
}

#[test]
fn builtins_are_dispatched_through_opa_builtin_n() {
    let double = OpaDouble::new().entrypoint(
        "jwt",
        Body::Builtin {
            name: "flipt.is_auth_method".into(),
            args: vec![Arg::Input, Arg::Literal(r#""jwt""#.into())],
        },
    );
    let policy = compile(&double).unwrap();
    let jwt = eval(
        &policy,
        "{}",
        "jwt",
        Some(r#"{"authentication":{"method":5}}"#),
    )
    .unwrap();
    let token = eval(
        &policy,
        "{}",
        "jwt",
        Some(r#"{"authentication":{"method":1}}"#),
    )
    .unwrap();
    assert_eq!(jwt, Some(json!(true)));
    assert_eq!(token, Some(json!(false)));
}

#[test]
fn failing_builtin_makes_the_call_undefined_not_an_error() {
    let double = OpaDouble::new().entrypoint(
        "e",
        Body::Builtin {
            name: "flipt.is_auth_method".into(),
            args: vec![Arg::Input, Arg::Literal(r#""none""#.into())],
        },
    );
    let policy = compile(&double).unwrap();
    assert_eq!(
        eval(
            &policy,
            "{}",
            "e",
            Some(r#"{"authentication":{"method":2}}"#)
        )
        .unwrap(),
        None
    );
    assert_eq!(
        eval(&policy, "{}", "e", Some(r#"{}"#)).unwrap(),
        None,
        "no authentication"
    );
}

#[test]
fn custom_builtins_from_the_registry_get_every_argument() {
    let mut builtins = Builtins::empty();
    builtins.register(wasmgate::builtins::Builtin::new("acme.concat", 3, |args| {
        Ok(json!(
            args.iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join("|")
        ))
    }));
    let double = OpaDouble::new().entrypoint(
        "e",
        Body::Builtin {
            name: "acme.concat".into(),
            args: vec![
                Arg::Literal("1".into()),
                Arg::Input,
                Arg::Literal(r#"{"a":[true]}"#.into()),
            ],
        },
    );
    let policy = CompiledPolicy::compile(&double.wasm(), &builtins, Limits::default()).unwrap();
    let out = eval(&policy, "{}", "e", Some(r#""x""#)).unwrap();
    assert_eq!(out, Some(json!(r#"1|"x"|{"a":[true]}"#)));
}

#[test]
fn opa_abort_fails_the_decision_with_its_message() {
    let policy =
        compile(&OpaDouble::new().entrypoint("e", Body::Abort("object insert conflict".into())))
            .unwrap();
    let err = eval(&policy, "{}", "e", None).unwrap_err();
    assert!(
        matches!(err, AbiError::Abort(ref m) if m == "object insert conflict"),
        "{err}"
    );
}

#[test]
fn evaluation_past_the_deadline_is_interrupted() {
    let limits = Limits {
        eval_timeout: Duration::from_millis(50),
        ..Limits::default()
    };
    let policy = CompiledPolicy::compile(
        &OpaDouble::new().entrypoint("e", Body::Spin).wasm(),
        &Builtins::empty(),
        limits,
    )
    .unwrap();
    let err = eval(&policy, "{}", "e", None).unwrap_err();
    assert!(
        matches!(err, AbiError::Deadline(d) if d == Duration::from_millis(50)),
        "{err}"
    );
}

#[test]
fn allocation_past_the_memory_cap_fails_the_decision() {
    let limits = Limits {
        max_memory_bytes: 4 << 20,
        ..Limits::default()
    };
    let double = OpaDouble::new()
        .entrypoint("big", Body::Alloc(8 << 20))
        .entrypoint("small", Body::Alloc(1024));
    let policy = CompiledPolicy::compile(&double.wasm(), &Builtins::empty(), limits).unwrap();
    assert!(eval(&policy, "{}", "big", None).is_err());
    assert_eq!(
        eval(&policy, "{}", "small", None).unwrap(),
        Some(json!(true))
    );
}

#[test]
fn memory_cap_below_what_the_module_needs_is_a_load_error() {
    let limits = Limits {
        max_memory_bytes: 64 * 1024,
        ..Limits::default()
    };
    let err = CompiledPolicy::compile(
        &OpaDouble::new().returns("e", "[]").wasm(),
        &Builtins::empty(),
        limits,
    )
    .unwrap_err();
    assert!(matches!(err, AbiError::MemoryCap { .. }), "{err}");
}

#[test]
fn big_integers_keep_every_digit() {
    let policy = compile(&OpaDouble::new().returns("echo", r#"[{"result":$INPUT}]"#)).unwrap();
    let out = eval(
        &policy,
        "{}",
        "echo",
        Some(r#"{"n":123456789012345678901234567890}"#),
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        serde_json::to_string(&out).unwrap(),
        r#"{"n":123456789012345678901234567890}"#
    );
}

#[test]
fn println_does_not_disturb_the_result() {
    let policy = compile(&OpaDouble::new().entrypoint(
        "e",
        Body::Println("hello from rego".into(), r#"[{"result":"ok"}]"#.into()),
    ))
    .unwrap();
    assert_eq!(eval(&policy, "{}", "e", None).unwrap(), Some(json!("ok")));
}

#[test]
fn data_the_policy_cannot_parse_is_a_load_error() {
    let policy = compile(&OpaDouble::new().returns("e", "[]")).unwrap();
    let err = policy.instantiate(b"").err().expect("empty data must fail");
    assert!(matches!(err, AbiError::Data(_)), "{err}");
}
