#!/usr/bin/env bash
# Compile the shipped Flipt example policy to an OPA Wasm bundle:
#   policies/flipt/bundle.tar.gz  (policy.wasm + data.json, entrypoints allow and
#   viewable_namespaces)
#
# `opa build` type-checks every call, so it has to be told about Flipt's custom builtin
# `flipt.is_auth_method`: the script writes a capabilities file that is OPA's own current
# capabilities plus that declaration. wasmgate supplies the builtin at run time.
#
# OPA is taken from $WASMGATE_OPA, else from PATH. The bundle is a build output: do not
# commit it.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
policy_dir="$repo_root/policies/flipt"
bundle="$policy_dir/bundle.tar.gz"

no_opa() {
  cat >&2 <<MSG
build-policies: $1
OPA is needed to compile Rego to Wasm. Provide it in one of three ways:
  - the config key wasmgate.opa: wasmgate: { opa: /path/to/opa }   (used by wasmgate itself)
  - the environment variable:  WASMGATE_OPA=/path/to/opa $0
  - the PATH:                  put an 'opa' executable on PATH
Download: https://www.openpolicyagent.org/docs/latest/#running-opa
Without OPA, wasmgate still serves the policy through its interpreted engine (engine: auto).
MSG
  exit 2
}

if [[ -n "${WASMGATE_OPA:-}" ]]; then
  opa="$WASMGATE_OPA"
  [[ -x "$opa" ]] || no_opa "WASMGATE_OPA=$opa is not an executable file."
else
  opa="$(command -v opa || true)"
  [[ -n "$opa" ]] || no_opa "no 'opa' found (WASMGATE_OPA is unset and PATH has none)."
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
capabilities="$work/capabilities.json"

"$opa" capabilities --current > "$work/opa-capabilities.json"

# Declaration of flipt.is_auth_method(input: any, label: string) -> boolean, in OPA's
# types.Function JSON form. It must match Builtins::flipt() in src/builtins.rs.
decl='{"name": "flipt.is_auth_method", "decl": {"type": "function", "args": [{"type": "any"}, {"type": "string"}], "result": {"type": "boolean"}}}'

if command -v python3 > /dev/null; then
  python3 - "$work/opa-capabilities.json" "$capabilities" "$decl" <<'PY'
import json, sys
src, dst, decl = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
with open(src) as f:
    caps = json.load(f)
# Replace any earlier declaration of the same name rather than declare it twice.
caps["builtins"] = [b for b in caps.get("builtins", []) if b.get("name") != decl["name"]]
caps["builtins"].append(decl)
with open(dst, "w") as f:
    json.dump(caps, f, indent=2)
PY
elif command -v jq > /dev/null; then
  jq --argjson decl "$decl" \
    '.builtins = ([(.builtins // [])[] | select(.name != $decl.name)] + [$decl])' \
    "$work/opa-capabilities.json" > "$capabilities"
else
  echo "build-policies: python3 or jq is needed to write the capabilities file." >&2
  exit 2
fi

# Build from inside the policy directory so the bundle holds plain `policy.rego` and
# `data.json` (data at the root of the data document, as Flipt's local backend loads it).
cd "$policy_dir"
"$opa" build -t wasm \
  -e flipt/authz/v1/allow \
  -e flipt/authz/v1/viewable_namespaces \
  --capabilities "$capabilities" \
  -o "$bundle" \
  policy.rego data.json

echo "build-policies: wrote ${bundle#"$repo_root"/} with $("$opa" version | head -n 1)"
