//! The `wasmgate` binary end to end: `eval` on every artifact kind, and `serve` answering
//! HTTP decisions. Wasm policies are WAT doubles of `opa build` output (`common::opa_double`);
//! `.rego` is compiled by a stand-in `opa` placed on PATH (`common::stand_in_opa`) or, with
//! no `opa` anywhere, interpreted by regorus.
mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use common::opa_double::OpaDouble;
use common::stand_in_opa::StandInOpa;
use serde_json::{Value, json};
use wasmgate::bundle::write_bundle;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The binary with no way to find a real `opa`: PATH holds only system directories.
fn wasmgate(path_dirs: &[&Path]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wasmgate"));
    let mut dirs: Vec<PathBuf> = path_dirs.iter().map(|p| p.to_path_buf()).collect();
    dirs.extend([PathBuf::from("/usr/bin"), PathBuf::from("/bin")]);
    cmd.env("PATH", std::env::join_paths(dirs).unwrap());
    cmd.env_remove("WASMGATE_OPA");
    cmd.env_remove("RUST_LOG");
    cmd
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("the wasmgate binary runs")
}

fn stdout_json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "wasmgate failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {:?}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `wasmgate eval <args>` run in `dir`, with no `opa` reachable.
fn eval_in(dir: &Path, args: &[&str]) -> Output {
    run(wasmgate(&[]).current_dir(dir).arg("eval").args(args))
}

/// `wasmgate eval` of the shipped Flipt policy's allow rule, plus `extra` flags.
fn eval_flipt_allow(extra: &[&str]) -> Output {
    let policy = repo().join("policies/flipt/policy.rego");
    let args = ["-p", policy.to_str().unwrap(), "-e", "flipt/authz/v1/allow"];
    eval_in(&repo(), &[&args[..], extra].concat())
}

/// A temporary directory holding `p.wasm`, the echo double.
fn echo_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.wasm"), echo_double().wasm()).unwrap();
    dir
}

/// Assert the command failed; its stderr, which must say why.
fn failed(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "expected a failure, got: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    stderr(out)
}

fn echo_double() -> OpaDouble {
    OpaDouble::new()
        .returns("test/echo", r#"[{"result":{"input":$INPUT,"data":$DATA}}]"#)
        .returns("test/undefined", "[]")
        .returns("test/deny", r#"[{"result":false}]"#)
}

#[test]
fn eval_a_wasm_module_prints_the_result() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.wasm"), echo_double().wasm()).unwrap();
    std::fs::write(dir.path().join("input.json"), r#"{"user":"alice"}"#).unwrap();
    let out = eval_in(
        dir.path(),
        &[
            "--policy",
            "policy.wasm",
            "-e",
            "test/echo",
            "--input",
            "input.json",
        ],
    );
    assert_eq!(
        stdout_json(&out),
        json!({"result": {"input": {"user": "alice"}, "data": {}}})
    );
    assert!(stderr(&out).contains("engine wasm"), "{}", stderr(&out));
}

#[test]
fn eval_prints_false_and_undefined_distinctly() {
    let dir = echo_dir();
    let deny = eval_in(dir.path(), &["-p", "p.wasm", "-e", "test/deny"]);
    assert_eq!(stdout_json(&deny), json!({"result": false}));
    let undefined = eval_in(dir.path(), &["-p", "p.wasm", "-e", "test/undefined"]);
    assert_eq!(stdout_json(&undefined), json!({}));
}

#[test]
fn eval_without_input_flag_evaluates_with_no_input_document() {
    let dir = echo_dir();
    // The echo entrypoint is undefined without input; with `null` input it is defined.
    let none = eval_in(dir.path(), &["-p", "p.wasm", "-e", "test/echo"]);
    assert_eq!(stdout_json(&none), json!({}));
    std::fs::write(dir.path().join("null.json"), "null").unwrap();
    let null = eval_in(
        dir.path(),
        &["-p", "p.wasm", "-e", "test/echo", "-i", "null.json"],
    );
    assert_eq!(
        stdout_json(&null),
        json!({"result": {"input": null, "data": {}}})
    );
}

#[test]
fn eval_reads_input_from_stdin() {
    let dir = echo_dir();
    let mut child = wasmgate(&[])
        .current_dir(dir.path())
        .args(["eval", "-p", "p.wasm", "-e", "test/echo", "--input", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(br#"[1,2]"#).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(stdout_json(&out)["result"]["input"], json!([1, 2]));
}

#[test]
fn eval_a_bundle_sees_bundle_data_and_the_data_flag() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = echo_double().wasm();
    let manifest = br#"{"revision":"r7","roots":[""],"wasm":[{"entrypoint":"test/echo","module":"/policy.wasm"}]}"#;
    let bundle = write_bundle(&[
        ("/.manifest", manifest),
        ("/data.json", br#"{"roles":["admin"]}"#),
        ("/nested/data.json", br#"{"x":1}"#),
        ("/policy.wasm", &wasm),
    ])
    .unwrap();
    // A bundle is recognised by content, whatever its name.
    std::fs::write(dir.path().join("policy.bin"), bundle).unwrap();
    std::fs::write(dir.path().join("extra.json"), r#"{"extra":true}"#).unwrap();
    let out = run(wasmgate(&[])
        .current_dir(dir.path())
        .args([
            "eval",
            "-p",
            "policy.bin",
            "-e",
            "test/echo",
            "--data",
            "extra.json",
            "-i",
            "/dev/stdin",
        ])
        .stdin(Stdio::null()));
    // A device is not an input file (it could block or never end): a clear error.
    let err = failed(&out);
    assert!(
        err.contains("/dev/stdin") && err.contains("not a regular file"),
        "{err}"
    );
    std::fs::write(dir.path().join("empty.json"), "").unwrap();
    let out = eval_in(
        dir.path(),
        &["-p", "policy.bin", "-e", "test/echo", "-i", "empty.json"],
    );
    let err = failed(&out);
    assert!(err.contains("empty.json is not valid JSON"), "{err}");
    let out = eval_in(
        dir.path(),
        &[
            "-p",
            "policy.bin",
            "-e",
            "test/echo",
            "--data",
            "extra.json",
        ],
    );
    assert_eq!(stdout_json(&out), json!({}), "no input: echo is undefined");
    std::fs::write(dir.path().join("in.json"), "{}").unwrap();
    let out = eval_in(
        dir.path(),
        &[
            "-p",
            "policy.bin",
            "-e",
            "test/echo",
            "--data",
            "extra.json",
            "-i",
            "in.json",
        ],
    );
    assert_eq!(
        stdout_json(&out)["result"]["data"],
        json!({"roles": ["admin"], "nested": {"x": 1}, "extra": true})
    );
    assert!(
        stderr(&out).contains("bundle policy, revision r7+"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn eval_rego_without_opa_falls_back_to_the_interpreter_loudly() {
    let flipt = repo().join("policies/flipt");
    let out = run(wasmgate(&[]).args([
        "eval",
        "-p",
        flipt.join("policy.rego").to_str().unwrap(),
        "--data",
        flipt.join("data.json").to_str().unwrap(),
        "-e",
        "flipt/authz/v1/allow",
        "-i",
        flipt
            .join("inputs/admin_jwt_create_flag.json")
            .to_str()
            .unwrap(),
    ]));
    assert_eq!(stdout_json(&out), json!({"result": true}));
    let err = stderr(&out);
    assert!(
        err.contains("FALLING BACK TO THE INTERPRETED ENGINE"),
        "{err}"
    );
    assert!(err.contains("engine interpreted"), "{err}");
}

#[test]
fn eval_rego_with_engine_wasm_and_no_opa_names_the_three_ways_to_provide_it() {
    let out = eval_flipt_allow(&["--engine", "wasm"]);
    let err = failed(&out);
    for hint in [
        "no `opa` binary found",
        "wasmgate.opa",
        "WASMGATE_OPA",
        "PATH",
    ] {
        assert!(err.contains(hint), "stderr should mention {hint}: {err}");
    }
}

#[test]
fn eval_rego_compiles_with_opa_found_on_path() {
    let dir = tempfile::tempdir().unwrap();
    let double =
        OpaDouble::new().returns("flipt/authz/v1/allow", r#"[{"result":"compiled by opa"}]"#);
    let opa = StandInOpa::install(&dir.path().join("bin"), &double.wasm());
    let flipt = repo().join("policies/flipt/policy.rego");
    let out = run(wasmgate(&[&opa.dir]).args([
        "eval",
        "-p",
        flipt.to_str().unwrap(),
        "-e",
        "flipt/authz/v1/allow",
        "--engine",
        "wasm",
    ]));
    assert_eq!(stdout_json(&out), json!({"result": "compiled by opa"}));
    let calls = opa.calls();
    assert_eq!(
        calls.first().map(String::as_str),
        Some("capabilities --current"),
        "{calls:?}"
    );
    let build = calls
        .iter()
        .find(|c| c.starts_with("build"))
        .expect("opa build was run");
    assert!(
        build.starts_with("build -t wasm -e flipt/authz/v1/allow --capabilities "),
        "{build}"
    );
    assert!(
        build.contains(" -o ") && build.contains("bundle.tar.gz"),
        "{build}"
    );
}

#[test]
fn eval_uses_the_opa_named_by_the_environment_variable() {
    let dir = tempfile::tempdir().unwrap();
    let double = OpaDouble::new().returns("a/b", r#"[{"result":42}]"#);
    let opa = StandInOpa::install(&dir.path().join("elsewhere"), &double.wasm());
    std::fs::write(dir.path().join("p.rego"), "package a\n\nb := 42\n").unwrap();
    let out = run(wasmgate(&[])
        .current_dir(dir.path())
        .env("WASMGATE_OPA", opa.path())
        .args(["eval", "-p", "p.rego", "-e", "a/b"]));
    assert_eq!(stdout_json(&out), json!({"result": 42}));
    assert!(stderr(&out).contains("engine wasm"), "{}", stderr(&out));
}

#[test]
fn opa_build_errors_are_passed_through() {
    let dir = tempfile::tempdir().unwrap();
    let opa = StandInOpa::install(&dir.path().join("bin"), &echo_double().wasm());
    std::fs::write(dir.path().join("p.rego"), "package a\nSYNTAX ERROR\n").unwrap();
    let out = run(wasmgate(&[&opa.dir])
        .current_dir(dir.path())
        .args(["eval", "-p", "p.rego", "-e", "a/b"]));
    let err = failed(&out);
    assert!(err.contains("rego_parse_error"), "{err}");
}

#[test]
fn eval_reports_a_policy_that_is_not_opa_wasm() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.wasm"),
        wat::parse_str("(module)").unwrap(),
    )
    .unwrap();
    let out = eval_in(dir.path(), &["-p", "p.wasm", "-e", "a/b"]);
    let err = failed(&out);
    assert!(
        err.contains("loading p.wasm") && err.contains("not an OPA policy module"),
        "{err}"
    );
}

#[test]
fn eval_unknown_entrypoint_is_an_error() {
    let dir = echo_dir();
    let out = eval_in(dir.path(), &["-p", "p.wasm", "-e", "test/nope"]);
    let err = failed(&out);
    assert!(err.contains("test/nope"), "{err}");
}

#[test]
fn eval_matches_expected_decisions_for_every_shipped_flipt_input() {
    let flipt = repo().join("policies/flipt");
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(flipt.join("expected.json")).unwrap())
            .unwrap();
    let expected = expected.as_object().expect("expected.json is an object");
    assert!(expected.len() >= 8);
    for (name, want) in expected {
        let input = flipt.join("inputs").join(name);
        let input = if input.exists() {
            input
        } else {
            flipt.join("inputs").join(format!("{name}.json"))
        };
        let eval_flipt = |entrypoint: &str| {
            let (policy, data) = (flipt.join("policy.rego"), flipt.join("data.json"));
            let args = [
                "-p",
                policy.to_str().unwrap(),
                "--data",
                data.to_str().unwrap(),
            ];
            let more = ["-e", entrypoint, "-i", input.to_str().unwrap()];
            stdout_json(&eval_in(&flipt, &[&args[..], &more[..]].concat()))
        };
        assert_eq!(
            eval_flipt("flipt/authz/v1/allow").get("result"),
            want.get("allow"),
            "allow for {name}"
        );
        let ns = eval_flipt("flipt/authz/v1/viewable_namespaces");
        let want_ns = want.get("viewable_namespaces").filter(|v| !v.is_null());
        assert_eq!(ns.get("result"), want_ns, "viewable_namespaces for {name}");
    }
}

/// A running `wasmgate serve`, killed on drop.
struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(config: &Path, path_dirs: &[&Path]) -> Server {
    let mut child = wasmgate(path_dirs)
        .args([
            "serve",
            "--config",
            config.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line from serve: {line:?}"))
        .to_string();
    Server { child, base }
}

fn post(server: &Server, path: &str, body: &str) -> (u16, Value, Option<String>) {
    let resp = reqwest::blocking::Client::new()
        .post(format!("{}{path}", server.base))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .unwrap();
    let status = resp.status().as_u16();
    let revision = resp
        .headers()
        .get("x-wasmgate-revision")
        .map(|v| v.to_str().unwrap().to_string());
    (status, resp.json().unwrap_or(Value::Null), revision)
}

fn get(server: &Server, path: &str) -> (u16, Value) {
    let resp = reqwest::blocking::get(format!("{}{path}", server.base)).unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().unwrap_or(Value::Null))
}

#[test]
fn serve_answers_flipt_decisions_over_http() {
    // The shipped example config, as a user would run it (no opa: interpreted).
    let server = serve(&repo().join("policies/flipt/wasmgate.yml"), &[]);
    let admin =
        std::fs::read_to_string(repo().join("policies/flipt/inputs/admin_jwt_create_flag.json"))
            .unwrap();
    let (status, body, revision) = post(
        &server,
        "/v1/data/flipt/authz/v1/allow",
        &format!(r#"{{"input":{admin}}}"#),
    );
    assert_eq!((status, body), (200, json!({"result": true})));
    assert!(revision.is_some(), "every decision names its revision");

    let token = r#"{"input":{"request":{"resource":"flag","action":"read","namespace":"default"},"authentication":{"method":1,"metadata":{"io.flipt.auth.role":"admin"}}}}"#;
    assert_eq!(
        post(&server, "/v1/data/flipt/authz/v1/allow", token).1,
        json!({"result": false})
    );

    let (status, health) = get(&server, "/health");
    assert_eq!((status, health), (200, json!({})));
    let (_, status_doc) = get(&server, "/v1/status");
    assert_eq!(status_doc["engine"], "interpreted");
    let note = status_doc["policy"]["engine_note"]
        .as_str()
        .unwrap_or_default();
    assert!(
        note.contains("interpreted fallback") && note.contains("no `opa`"),
        "{status_doc}"
    );
    assert_eq!(status_doc["ready"], true);
    assert_eq!(status_doc["reloads_ok"], 1);
    assert_eq!(status_doc["reloads_failed"], 0);
    assert!(
        status_doc["revision"].is_string() && status_doc["loaded_at"].is_string(),
        "{status_doc}"
    );
    assert!(
        status_doc["source"]
            .as_str()
            .unwrap()
            .contains("policy.rego"),
        "{status_doc}"
    );
}

#[test]
fn serve_rejects_bad_requests_with_4xx_and_keeps_running() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.wasm"), echo_double().wasm()).unwrap();
    std::fs::write(dir.path().join("wasmgate.yml"), "authorization:\n  local:\n    policy: {path: policy.wasm}\nwasmgate:\n  entrypoints: [test/echo]\n").unwrap();
    let server = serve(&dir.path().join("wasmgate.yml"), &[]);

    let (status, body, _) = post(&server, "/v1/data/test/echo", "{not json");
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], "invalid_parameter");
    let (status, body, _) = post(&server, "/v1/data/test/echo", "[1,2]");
    assert_eq!(status, 400, "a body that is not an object: {body}");
    let (status, body, _) = post(&server, "/v1/data/test/missing", r#"{"input":{}}"#);
    assert_eq!(status, 404, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("test/missing"),
        "{body}"
    );
    let huge = format!(r#"{{"input":"{}"}}"#, "x".repeat(5 << 20));
    let (status, _, _) = post(&server, "/v1/data/test/echo", &huge);
    assert_eq!(status, 413, "oversized body");

    // Still serving, undefined is an empty object, defined has `result`.
    let (status, body, _) = post(&server, "/v1/data/test/undefined", r#"{"input":{}}"#);
    assert_eq!((status, body), (200, json!({})));
    let (status, body, _) = post(
        &server,
        "/v1/data/test/echo",
        r#"{"input":{"n":123456789012345678901234567890}}"#,
    );
    assert_eq!(status, 200);
    assert_eq!(
        body["result"]["input"].to_string(),
        r#"{"n":123456789012345678901234567890}"#
    );
    let (status, body, _) = post(&server, "/v1/data/test/echo", "");
    assert_eq!(
        (status, body),
        (200, json!({})),
        "no body: no input, echo undefined"
    );
    let (status, metrics) = {
        let resp = reqwest::blocking::get(format!("{}/metrics", server.base)).unwrap();
        (resp.status().as_u16(), resp.text().unwrap())
    };
    assert_eq!(status, 200);
    assert!(
        metrics.contains("wasmgate_decisions_total{outcome=\"client_error\"} 4"),
        "{metrics}"
    );
}

#[test]
fn serve_fails_at_start_with_a_clear_message_for_bad_config() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("wasmgate.yml"),
        "authorization:\n  local:\n    policy: {path: p.rego, poll_interval: 5x}\n",
    )
    .unwrap();
    let out = run(wasmgate(&[]).args([
        "serve",
        "--config",
        dir.path().join("wasmgate.yml").to_str().unwrap(),
    ]));
    let err = failed(&out);
    assert!(
        err.contains("authorization.local.policy.poll_interval"),
        "{err}"
    );
}

#[test]
fn eval_a_directory_of_rego_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("lib")).unwrap();
    std::fs::write(
        dir.path().join("main.rego"),
        "package app\n\nimport data.lib.util\n\nallow if util.is_admin(input)\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("lib/util.rego"),
        "package lib.util\n\nis_admin(x) if x.role == \"admin\"\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("in.json"), r#"{"role":"admin"}"#).unwrap();
    let out = eval_in(dir.path(), &["-p", ".", "-e", "app/allow", "-i", "in.json"]);
    assert_eq!(stdout_json(&out), json!({"result": true}));
}

#[test]
fn serve_degraded_reports_503_until_a_policy_appears() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("wasmgate.yml"),
        "authorization:\n  local:\n    policy: {path: policy.wasm, poll_interval: 100ms}\nwasmgate:\n  entrypoints: [test/deny]\n  start_degraded: true\n",
    )
    .unwrap();
    let server = serve(&dir.path().join("wasmgate.yml"), &[]);
    // The first load runs in the background; once it has failed, health gives the reason.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let (status, body) = get(&server, "/health");
        assert_eq!(status, 503, "{body}");
        if body["message"].as_str().unwrap().contains("policy.wasm") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the reason never named the file: {body}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let (status, _, _) = post(&server, "/v1/data/test/deny", r#"{"input":{}}"#);
    assert_eq!(status, 503, "no policy: no answer, never an allow");

    let tmp = dir.path().join("policy.tmp");
    std::fs::write(&tmp, echo_double().wasm()).unwrap();
    std::fs::rename(&tmp, dir.path().join("policy.wasm")).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while get(&server, "/health").0 != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "the policy never loaded"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(
        post(&server, "/v1/data/test/deny", r#"{"input":{}}"#).1,
        json!({"result": false})
    );
}

#[test]
fn build_policies_script_without_opa_explains_how_to_provide_it() {
    let out = run(Command::new("bash")
        .arg(repo().join("scripts/build-policies.sh"))
        .env("PATH", "/usr/bin:/bin")
        .env_remove("WASMGATE_OPA"));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    for hint in ["wasmgate.opa", "WASMGATE_OPA", "PATH"] {
        assert!(err.contains(hint), "should mention {hint}: {err}");
    }
}

#[test]
fn data_that_shadows_a_rule_is_refused_instead_of_allowing() {
    let dir = tempfile::tempdir().unwrap();
    let flipt = repo().join("policies/flipt");
    let mut data: Value =
        serde_json::from_str(&std::fs::read_to_string(flipt.join("data.json")).unwrap()).unwrap();
    data["flipt"] = json!({"authz": {"v1": {"allow": true}}});
    std::fs::write(dir.path().join("evil.json"), data.to_string()).unwrap();
    let policy = flipt.join("policy.rego");
    let input = flipt.join("inputs/missing_authentication.json");
    let out = eval_in(
        dir.path(),
        &[
            "-p",
            policy.to_str().unwrap(),
            "-d",
            "evil.json",
            "-e",
            "flipt/authz/v1/allow",
            "-i",
            input.to_str().unwrap(),
        ],
    );
    let err = failed(&out);
    assert!(
        err.contains("data path flipt/authz/v1/allow conflicts with rule allow"),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "no decision is printed");

    // The same through a Wasm policy's entrypoint.
    let wasm = dir.path().join("p.wasm");
    std::fs::write(&wasm, echo_double().wasm()).unwrap();
    std::fs::write(dir.path().join("shadow.json"), r#"{"test":{"deny":true}}"#).unwrap();
    let out = eval_in(
        dir.path(),
        &["-p", "p.wasm", "-d", "shadow.json", "-e", "test/deny"],
    );
    let err = failed(&out);
    assert!(
        err.contains("data path test/deny conflicts with entrypoint test/deny"),
        "{err}"
    );
}

#[test]
fn a_configured_opa_that_does_not_exist_is_an_error_not_a_fallback() {
    let out = eval_flipt_allow(&["--opa", "/nonexistent/opa"]);
    let err = failed(&out);
    assert!(err.contains("/nonexistent/opa"), "{err}");
}

#[test]
fn serve_answers_only_entrypoints_and_never_crashes_on_odd_paths() {
    let server = serve(&repo().join("policies/flipt/wasmgate.yml"), &[]);
    // Data documents and helper rules are not decisions.
    for path in [
        "/v1/data/roles",
        "/v1/data/flipt/authz/v1",
        "/v1/data/flipt.authz.v1.allow",
    ] {
        let (status, body, _) = post(&server, path, r#"{"input":{}}"#);
        assert_eq!(status, 404, "{path}: {body}");
        assert_eq!(body["code"], "not_found", "{path}");
    }
    // A very deep path is a 404, not a stack overflow.
    let deep = format!("/v1/data/{}", vec!["a"; 450].join("/"));
    let (status, body) = get(&server, &deep);
    assert_eq!(status, 404);
    let message = body["message"].as_str().unwrap();
    assert!(
        message.len() < 400,
        "the path is excerpted, not echoed: {} bytes",
        message.len()
    );
    // Unknown endpoints and methods answer in OPA's error shape.
    let (status, body) = get(&server, "/v2/nothing");
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
    let resp = reqwest::blocking::Client::new()
        .delete(format!("{}/health", server.base))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 405);
    assert_eq!(resp.json::<Value>().unwrap()["code"], "method_not_allowed");
    // A path that is not UTF-8 is a client error in the same shape.
    let (status, body) = get(&server, "/v1/data/x%FF");
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_parameter")),
        "{body}"
    );
    // Still alive.
    assert_eq!(get(&server, "/health").0, 200);
}

#[test]
fn serve_refuses_deeply_nested_input_as_a_client_error() {
    let dir = echo_dir();
    std::fs::write(dir.path().join("wasmgate.yml"), "authorization:\n  local:\n    policy: {path: p.wasm}\nwasmgate:\n  entrypoints: [test/echo]\n").unwrap();
    let server = serve(&dir.path().join("wasmgate.yml"), &[]);
    let deep = format!(r#"{{"input":{}1{}}}"#, "[".repeat(150), "]".repeat(150));
    let (status, body, _) = post(&server, "/v1/data/test/echo", &deep);
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("nested deeper than 100"),
        "{body}"
    );
    let (status, body, _) = post(&server, "/v1/data/test/echo", &"x".repeat(5 << 20));
    assert_eq!(
        (status, body["code"].as_str()),
        (413, Some("request_too_large")),
        "{body}"
    );
}

#[test]
fn a_decision_running_to_its_deadline_does_not_stall_health_checks() {
    let dir = tempfile::tempdir().unwrap();
    let spin = OpaDouble::new().entrypoint("test/spin", common::opa_double::Body::Spin);
    std::fs::write(dir.path().join("p.wasm"), spin.wasm()).unwrap();
    std::fs::write(
        dir.path().join("wasmgate.yml"),
        "authorization:\n  local:\n    policy: {path: p.wasm}\nwasmgate:\n  entrypoints: [test/spin]\n  eval_timeout: 2s\n",
    )
    .unwrap();
    let server = serve(&dir.path().join("wasmgate.yml"), &[]);
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let spinners: Vec<_> = (0..4)
        .map(|_| {
            let (url, done) = (format!("{}/v1/data/test/spin", server.base), done.clone());
            std::thread::spawn(move || {
                let status = reqwest::blocking::Client::new()
                    .post(url)
                    .body(r#"{"input":{}}"#)
                    .send()
                    .unwrap()
                    .status();
                done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                status.as_u16()
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(300));
    // The async workers are free: health answers while every spinning decision still runs.
    assert_eq!(get(&server, "/health").0, 200);
    assert_eq!(
        done.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "health answered only after the spins ended"
    );
    for s in spinners {
        assert_eq!(
            s.join().unwrap(),
            500,
            "a decision past its deadline is an error (deny)"
        );
    }
}
