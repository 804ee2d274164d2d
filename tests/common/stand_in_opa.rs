//! A stand-in for the `opa` CLI, written by a test into a temporary directory.
//!
//! It checks the arguments wasmgate passes — `build -t wasm`, the entrypoints, a
//! capabilities file that declares wasmgate's custom builtins, `-o <path>`, a source
//! directory holding `.rego` files — logs them, and writes a bundle around a WAT-built
//! module (a double of real `opa build` output). `capabilities --current` prints a minimal
//! capabilities document.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub struct StandInOpa {
    pub dir: PathBuf,
    pub log: PathBuf,
}

impl StandInOpa {
    /// Install `opa` into `dir`; `opa build` will package `wasm` as `/policy.wasm`.
    pub fn install(dir: &Path, wasm: &[u8]) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let module = dir.join("double.wasm");
        std::fs::write(&module, wasm).unwrap();
        let log = dir.join("opa-args.log");
        let script = format!(
            r#"#!/usr/bin/env bash
set -euo pipefail
echo "$*" >> '{log}'
case "${{1:-}}" in
  capabilities)
    [ "${{2:-}}" = "--current" ] || {{ echo "stand-in opa: expected --current" >&2; exit 3; }}
    echo '{{"builtins":[{{"name":"plus","decl":{{"type":"function","args":[{{"type":"number"}},{{"type":"number"}}],"result":{{"type":"number"}}}}}}]}}'
    ;;
  build)
    shift
    target=""; out=""; caps=""; src=""; eps=()
    while [ $# -gt 0 ]; do
      case "$1" in
        -t) target="$2"; shift 2 ;;
        -e) eps+=("$2"); shift 2 ;;
        -o) out="$2"; shift 2 ;;
        --capabilities) caps="$2"; shift 2 ;;
        -*) echo "stand-in opa: unexpected flag $1" >&2; exit 3 ;;
        *) src="$1"; shift ;;
      esac
    done
    [ "$target" = wasm ] || {{ echo "stand-in opa: -t wasm missing" >&2; exit 3; }}
    [ ${{#eps[@]}} -gt 0 ] || {{ echo "stand-in opa: no -e entrypoint" >&2; exit 3; }}
    [ -n "$out" ] || {{ echo "stand-in opa: no -o output" >&2; exit 3; }}
    grep -q '"flipt.is_auth_method"' "$caps" || {{ echo "stand-in opa: capabilities lack flipt.is_auth_method" >&2; exit 3; }}
    grep -q '"plus"' "$caps" || {{ echo "stand-in opa: capabilities lost the base builtins" >&2; exit 3; }}
    ls "$src"/*.rego >/dev/null 2>&1 || {{ echo "stand-in opa: no .rego in $src" >&2; exit 3; }}
    if grep -q 'SYNTAX ERROR' "$src"/*.rego; then echo "1 error occurred: policy.rego:1: rego_parse_error: unexpected token" >&2; exit 1; fi
    work=$(mktemp -d)
    cp '{module}' "$work/policy.wasm"
    printf '{{"revision":"stand-in","roots":[""],"wasm":[{{"entrypoint":"%s","module":"/policy.wasm"}}]}}' "${{eps[0]}}" > "$work/.manifest"
    tar -czf "$out" -C "$work" .manifest policy.wasm
    rm -rf "$work"
    ;;
  *) echo "stand-in opa: unknown command ${{1:-}}" >&2; exit 3 ;;
esac
"#,
            log = log.display(),
            module = module.display(),
        );
        let opa = dir.join("opa");
        std::fs::write(&opa, script).unwrap();
        std::fs::set_permissions(&opa, std::fs::Permissions::from_mode(0o755)).unwrap();
        Self {
            dir: dir.to_path_buf(),
            log,
        }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join("opa")
    }

    /// Every argument line the stand-in was called with.
    pub fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }
}
