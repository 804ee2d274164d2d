#!/usr/bin/env bash
# The main job on the shipped example, end to end: build wasmgate, evaluate one decision
# with the CLI, then run the decision server on policies/flipt/wasmgate.yml and ask it for
# a decision on every example input. Without `opa` the Rego policy is interpreted (a loud
# warning says so); with `opa` it is compiled to Wasm first.
set -euo pipefail
cd "$(dirname "$0")/.."
flipt=policies/flipt

echo "== building wasmgate"
cargo build --locked --quiet
bin=target/debug/wasmgate

echo "== wasmgate eval (admin with a JWT creates a flag)"
"$bin" eval --policy "$flipt/policy.rego" --data "$flipt/data.json" \
  --entrypoint flipt/authz/v1/allow --input "$flipt/inputs/admin_jwt_create_flag.json"

port=${WASMGATE_DEMO_PORT:-8181}
echo "== wasmgate serve --config $flipt/wasmgate.yml (127.0.0.1:$port)"
log=$(mktemp)
"$bin" serve --config "$flipt/wasmgate.yml" --listen "127.0.0.1:$port" >"$log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 100); do
  grep -q "listening on" "$log" && break
  kill -0 $server 2>/dev/null || { cat "$log"; echo "wasmgate serve exited" >&2; exit 1; }
  sleep 0.1
done
grep -q "listening on" "$log" || { cat "$log"; echo "wasmgate serve did not start" >&2; exit 1; }

post() { # entrypoint input-file
  python3 - "$port" "$1" "$2" <<'PY'
import json, sys, urllib.request
port, entrypoint, path = sys.argv[1:]
body = json.dumps({"input": json.load(open(path))}).encode()
req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/data/{entrypoint}", body, {"content-type": "application/json"})
with urllib.request.urlopen(req) as r:
    print(json.dumps(json.load(r).get("result")))
PY
}

printf '%-45s %-7s %s\n' "input" "allow" "viewable_namespaces"
for input in "$flipt"/inputs/*.json; do
  printf '%-45s %-7s %s\n' "$(basename "$input")" \
    "$(post flipt/authz/v1/allow "$input")" \
    "$(post flipt/authz/v1/viewable_namespaces "$input")"
done
echo "== GET /v1/status"
python3 -c "import json,urllib.request; print(json.dumps(json.load(urllib.request.urlopen('http://127.0.0.1:$port/v1/status')), indent=2))"
