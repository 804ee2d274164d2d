//! Test doubles of `opa build -t wasm` output.
//!
//! No `opa` binary can be installed on CI machines, so the host is tested against small
//! modules written here in WAT and assembled with the `wat` crate. They are doubles of the
//! modules OPA's Wasm compiler emits: they speak the same ABI (version 1.0–1.2) but contain
//! no Rego — each entrypoint returns a fixed or input/data-derived result set. They test the
//! host (memory, heap reset, entrypoints, builtins dispatch, both eval paths, limits), not
//! Rego semantics, which are tested through `regorus`.
//!
//! ABI surface mimicked:
//! - imports `env.memory` (declared minimum 2 pages, like OPA 1.17), `env.opa_abort`,
//!   `env.opa_println`, and `env.opa_builtin0..4` when a builtin is used;
//! - exports `opa_malloc` (bump allocator that grows memory), `opa_free` (no-op),
//!   `opa_json_parse`/`opa_value_parse` (keep a copy of the bytes, return a handle),
//!   `opa_json_dump`/`opa_value_dump` (NUL-terminated copy), `opa_heap_ptr_get/set`,
//!   `opa_eval_ctx_new/_set_input/_set_data/_set_entrypoint/_get_result`, `eval`,
//!   `entrypoints`, `builtins`, `opa_value_add_path/remove_path` (return OPA_ERR_INTERNAL),
//!   `opa_eval` (ABI 1.2 only) and the globals `opa_wasm_abi_version`/`_minor_version`.
//!
//! A "value" in the double is a handle to `{ptr: i32, len: i32}` holding JSON text.

#![allow(dead_code)]

use std::fmt::Write;

/// What an entrypoint does when evaluated.
#[derive(Clone, Debug)]
pub enum Body {
    /// A result-set JSON template. `$INPUT` and `$DATA` are replaced by the input and data
    /// documents. When the template mentions `$INPUT` and there is no input, the result is
    /// `[]` (undefined), as a Rego rule referencing an undefined input would be.
    Template(String),
    /// Call a host builtin with the given arguments and return `[{"result": <value>}]`,
    /// or `[]` when the builtin returns NULL (undefined).
    Builtin { name: String, args: Vec<Arg> },
    /// Call `opa_abort` with this message.
    Abort(String),
    /// Loop forever (tests the evaluation deadline).
    Spin,
    /// Allocate this many bytes, then return `[{"result":true}]` (tests the memory cap).
    Alloc(u32),
    /// Print a message through `opa_println`, then return the template.
    Println(String, String),
}

#[derive(Clone, Debug)]
pub enum Arg {
    Input,
    Literal(String),
}

/// Builder of a double module.
#[derive(Clone, Debug)]
pub struct OpaDouble {
    abi: Option<(i32, i32)>,
    entrypoints: Vec<(String, Body)>,
    builtins: Vec<String>,
    omit_exports: Vec<String>,
    extra_import: bool,
    high_segment: Option<u32>,
    own_memory: bool,
}

impl OpaDouble {
    /// ABI 1.2 with no entrypoints yet.
    pub fn new() -> Self {
        Self {
            abi: Some((1, 2)),
            entrypoints: Vec::new(),
            builtins: Vec::new(),
            omit_exports: Vec::new(),
            extra_import: false,
            high_segment: None,
            own_memory: false,
        }
    }

    /// Declare ABI `major.minor`; `None` exports no version globals (ABI 1.0 modules).
    pub fn abi(mut self, version: Option<(i32, i32)>) -> Self {
        self.abi = version;
        self
    }

    pub fn entrypoint(mut self, name: &str, body: Body) -> Self {
        if let Body::Builtin { name: b, .. } = &body
            && !self.builtins.contains(b)
        {
            self.builtins.push(b.clone());
        }
        self.entrypoints.push((name.to_string(), body));
        self
    }

    /// Shorthand for a template entrypoint.
    pub fn returns(self, name: &str, template: &str) -> Self {
        self.entrypoint(name, Body::Template(template.to_string()))
    }

    /// List a builtin in `builtins()` without calling it.
    pub fn requires_builtin(mut self, name: &str) -> Self {
        self.builtins.push(name.to_string());
        self
    }

    pub fn without_export(mut self, name: &str) -> Self {
        self.omit_exports.push(name.to_string());
        self
    }

    /// Import a WASI function, which no OPA module does.
    pub fn with_foreign_import(mut self) -> Self {
        self.extra_import = true;
        self
    }

    /// Place a data segment at this offset although memory declares only 2 pages (OPA 1.17).
    pub fn with_data_segment_at(mut self, offset: u32) -> Self {
        self.high_segment = Some(offset);
        self
    }

    /// Define the memory inside the module instead of importing it.
    pub fn with_own_memory(mut self) -> Self {
        self.own_memory = true;
        self
    }

    pub fn wasm(&self) -> Vec<u8> {
        wat::parse_str(self.wat()).expect("the double's WAT assembles")
    }

    pub fn wat(&self) -> String {
        let mut lits = Literals::default();
        let ep_json = json_object(
            self.entrypoints
                .iter()
                .enumerate()
                .map(|(i, (n, _))| (n.as_str(), i)),
        );
        let bi_json = json_object(
            self.builtins
                .iter()
                .enumerate()
                .map(|(i, n)| (n.as_str(), i)),
        );
        let ep_lit = lits.add(&ep_json);
        let bi_lit = lits.add(&bi_json);
        let empty = lits.add("[]");
        let bad_ep = lits.add("invalid entrypoint id\0");
        let oom = lits.add("opa_malloc: out of memory\0");
        let res_open = lits.add("[{\"result\":");
        let res_close = lits.add("}]");

        let mut bodies = String::new();
        for (i, (_, body)) in self.entrypoints.iter().enumerate() {
            let _ = writeln!(
                bodies,
                "      (if (i32.eq (local.get $ep) (i32.const {i})) (then"
            );
            bodies.push_str(&self.body_code(body, &mut lits, empty, res_open, res_close));
            bodies.push_str("      ))\n");
        }

        let lit_end = 16 + lits.bytes.len() as u32;
        let mut heap_start = (lit_end + 1024 + 7) & !7;
        let mut high = String::new();
        if let Some(off) = self.high_segment {
            let _ = writeln!(high, "  (data (i32.const {off}) \"high segment\")");
            heap_start = heap_start.max((off + 64 + 7) & !7);
        }

        let arities: Vec<usize> = {
            let mut v: Vec<usize> = self
                .entrypoints
                .iter()
                .filter_map(|(_, b)| match b {
                    Body::Builtin { args, .. } => Some(args.len()),
                    _ => None,
                })
                .collect();
            v.sort();
            v.dedup();
            v
        };
        let mut imports = String::new();
        if !self.own_memory {
            imports.push_str("  (import \"env\" \"memory\" (memory 2))\n");
        }
        imports.push_str("  (import \"env\" \"opa_abort\" (func $abort (param i32)))\n");
        imports.push_str("  (import \"env\" \"opa_println\" (func $println (param i32)))\n");
        for n in &arities {
            let params = "i32 ".repeat(n + 2);
            let _ = writeln!(
                imports,
                "  (import \"env\" \"opa_builtin{n}\" (func $builtin{n} (param {params}) (result i32)))"
            );
        }
        if self.extra_import {
            imports.push_str(
                "  (import \"wasi_snapshot_preview1\" \"fd_write\" (func (param i32 i32 i32 i32) (result i32)))\n",
            );
        }

        let mut globals = String::new();
        if self.own_memory {
            globals.push_str("  (memory 2)\n");
        }
        if let Some((major, minor)) = self.abi {
            let _ = writeln!(
                globals,
                "  (global (export \"opa_wasm_abi_version\") i32 (i32.const {major}))"
            );
            let _ = writeln!(
                globals,
                "  (global (export \"opa_wasm_abi_minor_version\") i32 (i32.const {minor}))"
            );
        }
        let fast = matches!(self.abi, Some((_, m)) if m >= 2);

        let mut exports = vec![
            ("opa_malloc", "$malloc"),
            ("opa_free", "$free"),
            ("opa_json_parse", "$parse"),
            ("opa_value_parse", "$parse"),
            ("opa_json_dump", "$dump"),
            ("opa_value_dump", "$dump"),
            ("opa_heap_ptr_get", "$heap_get"),
            ("opa_heap_ptr_set", "$heap_set"),
            ("opa_eval_ctx_new", "$ctx_new"),
            ("opa_eval_ctx_set_input", "$ctx_set_input"),
            ("opa_eval_ctx_set_data", "$ctx_set_data"),
            ("opa_eval_ctx_set_entrypoint", "$ctx_set_entrypoint"),
            ("opa_eval_ctx_get_result", "$ctx_get_result"),
            ("eval", "$eval"),
            ("entrypoints", "$entrypoints"),
            ("builtins", "$builtins"),
            ("opa_value_add_path", "$add_path"),
            ("opa_value_remove_path", "$remove_path"),
        ];
        if fast {
            exports.push(("opa_eval", "$opa_eval"));
        }
        let mut export_lines = String::new();
        for (name, func) in exports {
            if !self.omit_exports.iter().any(|o| o == name) {
                let _ = writeln!(export_lines, "  (export \"{name}\" (func {func}))");
            }
        }

        format!(
            r#"(module
{imports}{globals}  (global $heap (mut i32) (i32.const {heap_start}))
  (global $out (mut i32) (i32.const 0))
  (data (i32.const 16) "{data}")
{high}
  ;; bump allocation of `len` bytes without alignment; grows memory, aborts when it cannot
  (func $reserve (param $len i32) (result i32) (local $addr i32) (local $end i32) (local $have i32)
    (local.set $addr (global.get $heap))
    (local.set $end (i32.add (local.get $addr) (local.get $len)))
    (local.set $have (i32.mul (memory.size) (i32.const 65536)))
    (if (i32.gt_u (local.get $end) (local.get $have)) (then
      (if (i32.eq (memory.grow (i32.div_u (i32.add (i32.sub (local.get $end) (local.get $have)) (i32.const 65535)) (i32.const 65536))) (i32.const -1))
        (then (call $abort (i32.const {oom})) (unreachable)))))
    (global.set $heap (local.get $end))
    (local.get $addr))
  (func $malloc (param $len i32) (result i32)
    (global.set $heap (i32.and (i32.add (global.get $heap) (i32.const 7)) (i32.const -8)))
    (call $reserve (local.get $len)))
  (func $free (param i32))
  (func $heap_get (result i32) (global.get $heap))
  (func $heap_set (param i32) (global.set $heap (local.get 0)))
  (func $handle (param $ptr i32) (param $len i32) (result i32) (local $h i32)
    (local.set $h (call $malloc (i32.const 8)))
    (i32.store (local.get $h) (local.get $ptr))
    (i32.store offset=4 (local.get $h) (local.get $len))
    (local.get $h))
  ;; keeps a copy of the JSON bytes; empty text is not a value (NULL)
  (func $parse (param $ptr i32) (param $len i32) (result i32) (local $copy i32)
    (if (i32.eqz (local.get $len)) (then (return (i32.const 0))))
    (local.set $copy (call $malloc (local.get $len)))
    (memory.copy (local.get $copy) (local.get $ptr) (local.get $len))
    (call $handle (local.get $copy) (local.get $len)))
  (func $dump (param $h i32) (result i32) (local $p i32) (local $len i32)
    (local.set $len (i32.load offset=4 (local.get $h)))
    (local.set $p (call $malloc (i32.add (local.get $len) (i32.const 1))))
    (memory.copy (local.get $p) (i32.load (local.get $h)) (local.get $len))
    (i32.store8 (i32.add (local.get $p) (local.get $len)) (i32.const 0))
    (local.get $p))
  (func $add_path (param i32 i32 i32) (result i32) (i32.const 1))
  (func $remove_path (param i32 i32) (result i32) (i32.const 1))
  ;; output building: begin, append literal/value bytes, finish into a handle
  (func $begin (global.set $out (global.get $heap)))
  (func $lit (param $off i32) (param $len i32)
    (memory.copy (call $reserve (local.get $len)) (local.get $off) (local.get $len)))
  (func $val (param $h i32)
    (call $lit (i32.load (local.get $h)) (i32.load offset=4 (local.get $h))))
  (func $finish (result i32) (local $start i32)
    (local.set $start (global.get $out))
    (call $handle (local.get $start) (i32.sub (global.get $heap) (local.get $start))))
  (func $entrypoints (result i32) (call $handle (i32.const {ep_off}) (i32.const {ep_len})))
  (func $builtins (result i32) (call $handle (i32.const {bi_off}) (i32.const {bi_len})))
  (func $ctx_new (result i32) (local $c i32)
    (local.set $c (call $malloc (i32.const 16)))
    (memory.fill (local.get $c) (i32.const 0) (i32.const 16))
    (local.get $c))
  (func $ctx_set_input (param $c i32) (param $v i32) (i32.store (local.get $c) (local.get $v)))
  (func $ctx_set_data (param $c i32) (param $v i32) (i32.store offset=4 (local.get $c) (local.get $v)))
  (func $ctx_set_entrypoint (param $c i32) (param $v i32) (i32.store offset=8 (local.get $c) (local.get $v)))
  (func $ctx_get_result (param $c i32) (result i32) (i32.load offset=12 (local.get $c)))
  (func $eval (param $c i32) (result i32)
    (i32.store offset=12 (local.get $c)
      (call $run (i32.load offset=8 (local.get $c)) (i32.load offset=4 (local.get $c)) (i32.load (local.get $c))))
    (i32.const 0))
  (func $opa_eval (param $reserved i32) (param $ep i32) (param $data i32) (param $in i32) (param $in_len i32) (param $heap_ptr i32) (param $format i32) (result i32)
    (global.set $heap (local.get $heap_ptr))
    (call $dump (call $run (local.get $ep) (local.get $data) (call $parse (local.get $in) (local.get $in_len)))))
  (func $run (param $ep i32) (param $data i32) (param $input i32) (result i32) (local $r i32)
{bodies}    (call $abort (i32.const {bad_ep}))
    (unreachable))
{export_lines})
"#,
            data = lits.escaped(),
            oom = oom.0,
            ep_off = ep_lit.0,
            ep_len = ep_lit.1,
            bi_off = bi_lit.0,
            bi_len = bi_lit.1,
            bad_ep = bad_ep.0,
        )
    }

    fn body_code(
        &self,
        body: &Body,
        lits: &mut Literals,
        empty: (u32, u32),
        open: (u32, u32),
        close: (u32, u32),
    ) -> String {
        let undefined = format!(
            "        (return (call $handle (i32.const {}) (i32.const {})))\n",
            empty.0, empty.1
        );
        match body {
            Body::Template(t) => template_code(t, lits, &undefined),
            Body::Println(msg, t) => {
                let m = lits.add(&format!("{msg}\0"));
                format!(
                    "        (call $println (i32.const {}))\n{}",
                    m.0,
                    template_code(t, lits, &undefined)
                )
            }
            Body::Abort(msg) => {
                let m = lits.add(&format!("{msg}\0"));
                format!("        (call $abort (i32.const {})) (unreachable)\n", m.0)
            }
            Body::Spin => "        (loop $forever (br $forever))\n".to_string(),
            Body::Alloc(n) => {
                let t = lits.add("[{\"result\":true}]");
                format!(
                    "        (drop (call $malloc (i32.const {n})))\n        (return (call $handle (i32.const {}) (i32.const {})))\n",
                    t.0, t.1
                )
            }
            Body::Builtin { name, args } => {
                let id = self
                    .builtins
                    .iter()
                    .position(|b| b == name)
                    .expect("registered");
                let mut call_args = String::new();
                for arg in args {
                    match arg {
                        Arg::Input => call_args.push_str(" (local.get $input)"),
                        Arg::Literal(json) => {
                            let l = lits.add(json);
                            let _ = write!(
                                call_args,
                                " (call $handle (i32.const {}) (i32.const {}))",
                                l.0, l.1
                            );
                        }
                    }
                }
                format!(
                    "        (local.set $r (call $builtin{n} (i32.const {id}) (i32.const 0){call_args}))\n        (if (i32.eqz (local.get $r)) (then\n  {undefined}        ))\n        (call $begin) (call $lit (i32.const {o0}) (i32.const {o1})) (call $val (local.get $r)) (call $lit (i32.const {c0}) (i32.const {c1}))\n        (return (call $finish))\n",
                    n = args.len(),
                    o0 = open.0,
                    o1 = open.1,
                    c0 = close.0,
                    c1 = close.1,
                )
            }
        }
    }
}

fn template_code(template: &str, lits: &mut Literals, undefined: &str) -> String {
    let mut code = String::new();
    if template.contains("$INPUT") {
        let _ = write!(
            code,
            "        (if (i32.eqz (local.get $input)) (then\n  {undefined}        ))\n"
        );
    }
    code.push_str("        (call $begin)\n");
    let mut rest = template;
    while !rest.is_empty() {
        let next = [("$INPUT", "$input"), ("$DATA", "$data")]
            .iter()
            .filter_map(|(p, local)| rest.find(p).map(|i| (i, *p, *local)))
            .min_by_key(|(i, _, _)| *i);
        match next {
            Some((i, placeholder, local)) => {
                if i > 0 {
                    let l = lits.add(&rest[..i]);
                    let _ = writeln!(
                        code,
                        "        (call $lit (i32.const {}) (i32.const {}))",
                        l.0, l.1
                    );
                }
                let _ = writeln!(code, "        (call $val (local.get {local}))");
                rest = &rest[i + placeholder.len()..];
            }
            None => {
                let l = lits.add(rest);
                let _ = writeln!(
                    code,
                    "        (call $lit (i32.const {}) (i32.const {}))",
                    l.0, l.1
                );
                rest = "";
            }
        }
    }
    code.push_str("        (return (call $finish))\n");
    code
}

fn json_object<'a>(entries: impl Iterator<Item = (&'a str, usize)>) -> String {
    let map: serde_json::Map<String, serde_json::Value> = entries
        .map(|(k, v)| (k.to_string(), serde_json::Value::from(v as u64)))
        .collect();
    serde_json::Value::Object(map).to_string()
}

/// String literals laid out in one data segment starting at address 16 (0 stays NULL).
#[derive(Default)]
struct Literals {
    bytes: Vec<u8>,
}

impl Literals {
    fn add(&mut self, s: &str) -> (u32, u32) {
        let off = 16 + self.bytes.len() as u32;
        self.bytes.extend_from_slice(s.as_bytes());
        (off, s.len() as u32)
    }

    fn escaped(&self) -> String {
        self.bytes.iter().map(|b| format!("\\{b:02x}")).collect()
    }
}
