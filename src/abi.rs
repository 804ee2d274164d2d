//! The OPA Wasm host: loads a module compiled by `opa build -t wasm` into wasmtime and
//! evaluates its entrypoints.
//!
//! Two types wrap the ABI, as in the `opa-wasm` crate: [`CompiledPolicy`] is module-level
//! (validated once per policy version, shared by every instance) and [`PolicyInstance`] is
//! one wasmtime instance with the data document loaded. This module knows nothing about
//! where the bytes came from.
//!
//! ABI facts this host relies on (OPA docs, "WebAssembly"):
//! - the module imports `env.memory` and the functions `opa_abort`, `opa_println`,
//!   `opa_builtin0..4`; everything else it needs it exports;
//! - values live in the module's heap; the host loads data once, remembers the heap pointer
//!   after it, and resets to it before every evaluation so memory stays flat;
//! - from ABI 1.2 `opa_eval` evaluates in one call from a JSON input string; older modules
//!   use the evaluation-context exports.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde_json::Value;
use wasmtime::{
    Caller, Engine, Extern, ExternType, Func, Instance, Memory, MemoryType, Module, Store,
    StoreLimits, StoreLimitsBuilder, Trap, TypedFunc, Val,
};

use crate::builtins::{Builtin, Builtins};

const PAGE: u64 = 65_536;
/// How often the shared engine's epoch advances; evaluation deadlines are counted in ticks.
const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Exports every OPA module has had since ABI 1.0. `opa_eval` (1.2) is checked separately.
const REQUIRED_EXPORTS: &[&str] = &[
    "opa_malloc",
    "opa_json_parse",
    "opa_json_dump",
    "opa_heap_ptr_get",
    "opa_heap_ptr_set",
    "opa_eval_ctx_new",
    "opa_eval_ctx_set_input",
    "opa_eval_ctx_set_data",
    "opa_eval_ctx_set_entrypoint",
    "opa_eval_ctx_get_result",
    "eval",
    "entrypoints",
    "builtins",
];

/// Why a module could not be loaded or an evaluation failed.
#[derive(Debug, thiserror::Error)]
pub enum AbiError {
    #[error("not a valid WebAssembly module: {0}")]
    InvalidModule(String),
    #[error("not an OPA policy module: missing export(s) {}", .0.join(", "))]
    MissingExports(Vec<String>),
    #[error("not an OPA policy module: export `{name}` has the wrong type: {detail}")]
    WrongExportType { name: String, detail: String },
    #[error("not an OPA policy module: it imports `{0}`, which is not part of the OPA Wasm ABI")]
    UnexpectedImport(String),
    #[error("not an OPA policy module: it does not import `env.memory`")]
    NoMemoryImport,
    #[error("unsupported OPA Wasm ABI version {major}.{minor} (wasmgate supports 1.x)")]
    UnsupportedAbi { major: i32, minor: i32 },
    #[error(
        "the policy needs builtin(s) the host does not provide: {}; register them with Builtins::register",
        .0.join(", ")
    )]
    MissingBuiltins(Vec<String>),
    #[error(
        "the policy needs {needed} bytes of memory but the cap is {cap} bytes (wasmgate.max_memory)"
    )]
    MemoryCap { needed: u64, cap: u64 },
    #[error("could not instantiate the policy module: {0}")]
    Instantiate(String),
    #[error("the policy module returned malformed {what}: {detail}")]
    Malformed { what: &'static str, detail: String },
    #[error("loading the data document into the policy failed: {0}")]
    Data(String),
    #[error("entrypoint `{0}` is not compiled into this policy")]
    UnknownEntrypoint(String),
    #[error("evaluation exceeded the deadline of {0:?} (wasmgate.eval_timeout)")]
    Deadline(Duration),
    #[error("policy aborted: {0}")]
    Abort(String),
    #[error("evaluation failed: {0}")]
    Eval(String),
}

/// Limits applied to every instance of a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Linear memory cap per instance. A policy that needs more fails that decision.
    pub max_memory_bytes: u64,
    /// Wall-clock deadline per evaluation, enforced by wasmtime epoch interruption.
    pub eval_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_memory_bytes: 256 << 20,
            eval_timeout: Duration::from_secs(1),
        }
    }
}

/// The process-wide wasmtime engine. One engine means compiled code and the epoch ticker are
/// shared by every policy version; a hot swap compiles a module, it never builds an engine.
pub fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        let engine = Engine::new(&config).expect("the wasmtime configuration is valid");
        let ticker = engine.clone();
        std::thread::Builder::new()
            .name("wasmgate-epoch".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(EPOCH_TICK);
                    ticker.increment_epoch();
                }
            })
            .expect("spawning the epoch ticker thread");
        engine
    })
}

/// The OPA ABI version a module declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct AbiVersion {
    pub major: i32,
    pub minor: i32,
}

impl AbiVersion {
    /// `opa_eval`, the one-call evaluation path, exists from ABI 1.2.
    fn has_fast_path(self) -> bool {
        self >= AbiVersion { major: 1, minor: 2 }
    }
}

/// How an import of the module is satisfied, in the module's import order.
#[derive(Debug, Clone, Copy)]
enum ImportSlot {
    Memory,
    Abort,
    Println,
    Builtin(usize),
}

/// A validated, compiled OPA policy module: entrypoints, builtins and ABI version known.
/// Cheap to share (`Arc`); instances are made from it without recompiling.
pub struct CompiledPolicy {
    module: Module,
    imports: Vec<ImportSlot>,
    memory_min_pages: u64,
    memory_max_pages: u64,
    abi: AbiVersion,
    entrypoints: BTreeMap<String, i32>,
    /// Host builtins by the id the module uses in `opa_builtinN` calls.
    builtins: Arc<[Option<Builtin>]>,
    limits: Limits,
}

impl std::fmt::Debug for CompiledPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledPolicy")
            .field("abi", &self.abi)
            .field("entrypoints", &self.entrypoints)
            .field("memory_min_pages", &self.memory_min_pages)
            .finish_non_exhaustive()
    }
}

impl CompiledPolicy {
    /// Compile and validate `wasm`: OPA exports present with the right types, imports limited
    /// to the ABI, ABI major version 1, and every builtin the module lists in `builtins()`
    /// available in `builtins` — a missing one is a load error now, not a failure at the
    /// first decision that happens to call it.
    pub fn compile(wasm: &[u8], builtins: &Builtins, limits: Limits) -> Result<Self, AbiError> {
        let module =
            Module::new(engine(), wasm).map_err(|e| AbiError::InvalidModule(format!("{e:#}")))?;
        let (imports, declared_min) = check_imports(&module)?;
        check_exports(&module)?;

        // Modules from OPA 1.17 declare 2 pages yet place a data segment past 128 KiB: size
        // the memory for the segments, not for the declared minimum.
        let needed = declared_min.max(data_segments_end(wasm).div_ceil(PAGE));
        let cap_pages = limits.max_memory_bytes / PAGE;
        if needed > cap_pages {
            return Err(AbiError::MemoryCap {
                needed: needed * PAGE,
                cap: limits.max_memory_bytes,
            });
        }
        let declared_max = module.imports().find_map(|i| match i.ty() {
            ExternType::Memory(m) => m.maximum(),
            _ => None,
        });
        let memory_max_pages = declared_max.map_or(cap_pages, |m| m.min(cap_pages));

        let mut compiled = CompiledPolicy {
            module,
            imports,
            memory_min_pages: needed,
            memory_max_pages,
            abi: AbiVersion { major: 1, minor: 0 },
            entrypoints: BTreeMap::new(),
            builtins: Arc::from(Vec::new()),
            limits,
        };

        // Entrypoints, builtins and the ABI version are only known to a live instance.
        let mut probe = compiled.instantiate_bare()?;
        compiled.abi = probe.abi_version()?;
        if compiled.abi.major != 1 {
            return Err(AbiError::UnsupportedAbi {
                major: compiled.abi.major,
                minor: compiled.abi.minor,
            });
        }
        if compiled.abi.has_fast_path() && probe.exports.eval_fast.is_none() {
            return Err(AbiError::MissingExports(vec!["opa_eval".into()]));
        }
        let (entrypoints, builtins_fn) = (
            probe.exports.entrypoints.clone(),
            probe.exports.builtins.clone(),
        );
        compiled.entrypoints = probe.name_map("entrypoints", entrypoints)?;
        let wanted = probe.name_map("builtins", builtins_fn)?;
        compiled.builtins = resolve_builtins(&wanted, builtins)?;
        Ok(compiled)
    }

    pub fn abi(&self) -> AbiVersion {
        self.abi
    }

    /// Entrypoint names (`flipt/authz/v1/allow`) and their ids.
    pub fn entrypoints(&self) -> &BTreeMap<String, i32> {
        &self.entrypoints
    }

    /// Resolve an entrypoint by name, or by its numeric id written as a string.
    pub fn entrypoint_id(&self, entrypoint: &str) -> Result<i32, AbiError> {
        if let Some(id) = self.entrypoints.get(entrypoint.trim_start_matches('/')) {
            return Ok(*id);
        }
        match entrypoint.parse::<i32>() {
            Ok(id) if self.entrypoints.values().any(|v| *v == id) => Ok(id),
            _ => Err(AbiError::UnknownEntrypoint(entrypoint.to_string())),
        }
    }

    /// A new instance with `data_json` (a JSON document) loaded as `data`.
    pub fn instantiate(&self, data_json: &[u8]) -> Result<PolicyInstance, AbiError> {
        let mut instance = self.instantiate_bare()?;
        instance.load_data(data_json)?;
        Ok(instance)
    }

    fn instantiate_bare(&self) -> Result<PolicyInstance, AbiError> {
        let limits = StoreLimitsBuilder::new()
            .memory_size(usize::try_from(self.limits.max_memory_bytes).unwrap_or(usize::MAX))
            .instances(1)
            .build();
        let mut store = Store::new(
            engine(),
            HostState {
                limits,
                builtins: Arc::clone(&self.builtins),
                memory: None,
                exports: None,
                abort: None,
            },
        );
        store.limiter(|s| &mut s.limits);
        // Instantiation runs start functions; give it the same deadline as an evaluation.
        store.set_epoch_deadline(self.deadline_ticks());

        let memory = Memory::new(
            &mut store,
            MemoryType::new(
                self.memory_min_pages as u32,
                Some(self.memory_max_pages as u32),
            ),
        )
        .map_err(|e| AbiError::Instantiate(format!("creating memory: {e:#}")))?;
        let externs: Vec<Extern> = self
            .imports
            .iter()
            .map(|slot| match *slot {
                ImportSlot::Memory => memory.into(),
                ImportSlot::Abort => Func::wrap(&mut store, host_abort).into(),
                ImportSlot::Println => Func::wrap(&mut store, host_println).into(),
                ImportSlot::Builtin(arity) => builtin_import(&mut store, arity).into(),
            })
            .collect();
        let instance = Instance::new(&mut store, &self.module, &externs)
            .map_err(|e| AbiError::Instantiate(format!("{e:#}")))?;
        let exports = Exports::resolve(&instance, &mut store)?;
        store.data_mut().memory = Some(memory);
        store.data_mut().exports = Some(exports.clone());
        Ok(PolicyInstance {
            store,
            instance,
            memory,
            exports,
            data: 0,
            base_heap: 0,
            fast_path: self.abi.has_fast_path(),
            deadline_ticks: self.deadline_ticks(),
            eval_timeout: self.limits.eval_timeout,
        })
    }

    fn deadline_ticks(&self) -> u64 {
        let tick = EPOCH_TICK.as_nanos();
        (self.limits.eval_timeout.as_nanos().div_ceil(tick) as u64).max(1) + 1
    }
}

/// What the host keeps per store; read by the imported functions.
struct HostState {
    limits: StoreLimits,
    builtins: Arc<[Option<Builtin>]>,
    memory: Option<Memory>,
    exports: Option<Exports>,
    /// The message of the last `opa_abort`, reported instead of the bare trap.
    abort: Option<String>,
}

/// `opa_eval(reserved, entrypoint, data, input_addr, input_len, heap_ptr, format) -> str_addr`.
type OpaEval = TypedFunc<(i32, i32, i32, i32, i32, i32, i32), i32>;

/// Typed handles to the exports the host calls. Resolved once per instance.
#[derive(Clone)]
struct Exports {
    malloc: TypedFunc<i32, i32>,
    json_parse: TypedFunc<(i32, i32), i32>,
    json_dump: TypedFunc<i32, i32>,
    heap_ptr_get: TypedFunc<(), i32>,
    heap_ptr_set: TypedFunc<i32, ()>,
    ctx_new: TypedFunc<(), i32>,
    ctx_set_input: TypedFunc<(i32, i32), ()>,
    ctx_set_data: TypedFunc<(i32, i32), ()>,
    ctx_set_entrypoint: TypedFunc<(i32, i32), ()>,
    ctx_get_result: TypedFunc<i32, i32>,
    eval: TypedFunc<i32, i32>,
    entrypoints: TypedFunc<(), i32>,
    builtins: TypedFunc<(), i32>,
    eval_fast: Option<OpaEval>,
}

impl Exports {
    fn resolve(instance: &Instance, store: &mut Store<HostState>) -> Result<Self, AbiError> {
        fn typed<P: wasmtime::WasmParams, R: wasmtime::WasmResults>(
            instance: &Instance,
            store: &mut Store<HostState>,
            name: &str,
        ) -> Result<TypedFunc<P, R>, AbiError> {
            instance
                .get_typed_func::<P, R>(&mut *store, name)
                .map_err(|e| AbiError::WrongExportType {
                    name: name.to_string(),
                    detail: format!("{e:#}"),
                })
        }
        let eval_fast = match instance.get_func(&mut *store, "opa_eval") {
            Some(_) => Some(typed(instance, store, "opa_eval")?),
            None => None,
        };
        Ok(Exports {
            malloc: typed(instance, store, "opa_malloc")?,
            json_parse: typed(instance, store, "opa_json_parse")?,
            json_dump: typed(instance, store, "opa_json_dump")?,
            heap_ptr_get: typed(instance, store, "opa_heap_ptr_get")?,
            heap_ptr_set: typed(instance, store, "opa_heap_ptr_set")?,
            ctx_new: typed(instance, store, "opa_eval_ctx_new")?,
            ctx_set_input: typed(instance, store, "opa_eval_ctx_set_input")?,
            ctx_set_data: typed(instance, store, "opa_eval_ctx_set_data")?,
            ctx_set_entrypoint: typed(instance, store, "opa_eval_ctx_set_entrypoint")?,
            ctx_get_result: typed(instance, store, "opa_eval_ctx_get_result")?,
            eval: typed(instance, store, "eval")?,
            entrypoints: typed(instance, store, "entrypoints")?,
            builtins: typed(instance, store, "builtins")?,
            eval_fast,
        })
    }
}

/// One wasmtime instance of a policy with its data loaded. Not shareable between threads at
/// once (`&mut self` to evaluate); a pool hands instances out.
pub struct PolicyInstance {
    store: Store<HostState>,
    instance: Instance,
    memory: Memory,
    exports: Exports,
    /// Address of the parsed data document.
    data: i32,
    /// Heap pointer right after the data was loaded: every evaluation starts from here.
    base_heap: i32,
    fast_path: bool,
    deadline_ticks: u64,
    eval_timeout: Duration,
}

impl PolicyInstance {
    /// Evaluate entrypoint `id` with `input` (a JSON document, or `None` for no input).
    /// Returns the raw result set as JSON text: `[{"result": ...}]`, or `[]` when undefined.
    pub fn evaluate_raw(&mut self, id: i32, input: Option<&[u8]>) -> Result<String, AbiError> {
        self.store.set_epoch_deadline(self.deadline_ticks);
        self.store.data_mut().abort = None;
        let out = if self.fast_path {
            self.eval_fast(id, input)
        } else {
            self.eval_ctx(id, input)
        };
        out.map_err(|e| self.describe(e))
    }

    /// Evaluate and unwrap OPA's result set: `Ok(None)` when undefined.
    pub fn evaluate(&mut self, id: i32, input: Option<&[u8]>) -> Result<Option<Value>, AbiError> {
        parse_result_set(&self.evaluate_raw(id, input)?)
    }

    /// Current size of the instance's linear memory, in bytes.
    pub fn memory_bytes(&self) -> usize {
        self.memory.data_size(&self.store)
    }

    /// The module's heap pointer (where the next allocation goes).
    pub fn heap_ptr(&mut self) -> Result<i32, AbiError> {
        self.exports
            .heap_ptr_get
            .call(&mut self.store, ())
            .map_err(|e| self.describe(e))
    }

    /// The ABI 1.2 path: input JSON written at the base heap, one call, a JSON string back.
    fn eval_fast(&mut self, id: i32, input: Option<&[u8]>) -> wasmtime::Result<String> {
        let input = input.unwrap_or_default();
        let input_addr = self.base_heap;
        let heap = self.write_at(input_addr, input)?;
        let eval = self.exports.eval_fast.clone().expect("checked at compile");
        let out = eval.call(
            &mut self.store,
            (0, id, self.data, input_addr, input.len() as i32, heap, 0),
        )?;
        self.read_cstr(out)
    }

    /// The ABI 1.0 path: evaluation context built export by export.
    fn eval_ctx(&mut self, id: i32, input: Option<&[u8]>) -> wasmtime::Result<String> {
        let ex = self.exports.clone();
        let store = &mut self.store;
        ex.heap_ptr_set.call(&mut *store, self.base_heap)?;
        let ctx = ex.ctx_new.call(&mut *store, ())?;
        if let Some(input) = input {
            let value = self.parse_json(input)?;
            if value == 0 {
                wasmtime::bail!("the policy could not parse the input document");
            }
            ex.ctx_set_input.call(&mut self.store, (ctx, value))?;
        }
        ex.ctx_set_data.call(&mut self.store, (ctx, self.data))?;
        ex.ctx_set_entrypoint.call(&mut self.store, (ctx, id))?;
        let code = ex.eval.call(&mut self.store, ctx)?;
        if code != 0 {
            wasmtime::bail!("eval returned error code {code}");
        }
        let result = ex.ctx_get_result.call(&mut self.store, ctx)?;
        let dumped = ex.json_dump.call(&mut self.store, result)?;
        self.read_cstr(dumped)
    }

    fn load_data(&mut self, data_json: &[u8]) -> Result<(), AbiError> {
        self.store.set_epoch_deadline(self.deadline_ticks);
        let addr = self
            .parse_json(data_json)
            .map_err(|e| AbiError::Data(self.describe(e).to_string()))?;
        if addr == 0 {
            return Err(AbiError::Data(
                "the policy could not parse the data document".into(),
            ));
        }
        self.data = addr;
        self.base_heap = self.heap_ptr()?;
        Ok(())
    }

    fn parse_json(&mut self, json: &[u8]) -> wasmtime::Result<i32> {
        let addr = self
            .exports
            .malloc
            .call(&mut self.store, json.len() as i32)?;
        self.write_at(addr, json)?;
        self.exports
            .json_parse
            .call(&mut self.store, (addr, json.len() as i32))
    }

    /// Copy `bytes` to `addr`, growing memory if needed; returns the next 8-aligned address.
    fn write_at(&mut self, addr: i32, bytes: &[u8]) -> wasmtime::Result<i32> {
        let start = addr as u32 as usize;
        let end = start + bytes.len();
        let size = self.memory.data_size(&self.store);
        if end > size {
            let pages = (end - size).div_ceil(PAGE as usize) as u64;
            self.memory.grow(&mut self.store, pages)?;
        }
        self.memory.data_mut(&mut self.store)[start..end].copy_from_slice(bytes);
        Ok(((end + 7) & !7) as i32)
    }

    fn read_cstr(&self, addr: i32) -> wasmtime::Result<String> {
        read_cstr(self.memory.data(&self.store), addr)
    }

    fn abi_version(&mut self) -> Result<AbiVersion, AbiError> {
        // Modules from before ABI 1.1 export no version globals: they are 1.0.
        let mut global = |name: &str, default: i32| -> Result<i32, AbiError> {
            match self.instance.get_global(&mut self.store, name) {
                None => Ok(default),
                Some(g) => match g.get(&mut self.store) {
                    Val::I32(v) => Ok(v),
                    other => Err(AbiError::WrongExportType {
                        name: name.to_string(),
                        detail: format!(
                            "expected an i32 global, found {:?}",
                            other.ty(&self.store)
                        ),
                    }),
                },
            }
        };
        Ok(AbiVersion {
            major: global("opa_wasm_abi_version", 1)?,
            minor: global("opa_wasm_abi_minor_version", 0)?,
        })
    }

    /// Read a JSON object of name -> id from an export such as `entrypoints()`.
    fn name_map(
        &mut self,
        export: &'static str,
        func: TypedFunc<(), i32>,
    ) -> Result<BTreeMap<String, i32>, AbiError> {
        let text = (|| {
            let value = func.call(&mut self.store, ())?;
            let dumped = self.exports.json_dump.call(&mut self.store, value)?;
            self.read_cstr(dumped)
        })()
        .map_err(|e| self.describe(e))?;
        serde_json::from_str(&text).map_err(|e| AbiError::Malformed {
            what: export,
            detail: format!("{e}: {}", excerpt(&text)),
        })
    }

    /// Turn a wasmtime error into the most useful [`AbiError`]: the abort message, the
    /// deadline, or the trap text.
    fn describe(&mut self, error: wasmtime::Error) -> AbiError {
        if let Some(msg) = self.store.data_mut().abort.take() {
            return AbiError::Abort(msg);
        }
        if let Some(Trap::Interrupt) = error.downcast_ref::<Trap>() {
            return AbiError::Deadline(self.eval_timeout);
        }
        AbiError::Eval(format!("{error:#}"))
    }
}

/// Unwrap OPA's result set: `[]` is undefined, `[{"result": X}]` is X.
pub fn parse_result_set(text: &str) -> Result<Option<Value>, AbiError> {
    let malformed = |detail: String| AbiError::Malformed {
        what: "result set",
        detail,
    };
    let set: Vec<serde_json::Map<String, Value>> =
        serde_json::from_str(text).map_err(|e| malformed(format!("{e}: {}", excerpt(text))))?;
    match set.len() {
        0 => Ok(None),
        1 => {
            let mut row = set.into_iter().next().expect("one row");
            row.remove("result")
                .map(Some)
                .ok_or_else(|| malformed(format!("no `result` key: {}", excerpt(text))))
        }
        n => Err(malformed(format!(
            "{n} results for one entrypoint: {}",
            excerpt(text)
        ))),
    }
}

/// The start of a long text, for error messages that must not echo a whole input back.
pub(crate) fn excerpt(text: &str) -> String {
    const MAX: usize = 200;
    if text.len() <= MAX {
        return text.to_string();
    }
    let cut = (0..=MAX)
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    format!("{}… ({} bytes)", &text[..cut], text.len())
}

fn read_cstr(memory: &[u8], addr: i32) -> wasmtime::Result<String> {
    let start = addr as u32 as usize;
    let tail = memory
        .get(start..)
        .ok_or_else(|| wasmtime::format_err!("string address {start:#x} is outside memory"))?;
    let len = tail
        .iter()
        .position(|&b| b == 0)
        .ok_or_else(|| wasmtime::format_err!("string at {start:#x} is not NUL-terminated"))?;
    String::from_utf8(tail[..len].to_vec())
        .map_err(|e| wasmtime::format_err!("string at {start:#x} is not UTF-8: {e}"))
}

fn host_abort(mut caller: Caller<'_, HostState>, addr: i32) -> wasmtime::Result<()> {
    let msg = match caller.data().memory {
        Some(memory) => read_cstr(memory.data(&caller), addr).unwrap_or_else(|e| e.to_string()),
        None => "abort during instantiation".to_string(),
    };
    caller.data_mut().abort = Some(msg.clone());
    wasmtime::bail!("opa_abort: {msg}")
}

fn host_println(caller: Caller<'_, HostState>, addr: i32) {
    if let Some(memory) = caller.data().memory {
        match read_cstr(memory.data(&caller), addr) {
            Ok(msg) => tracing::info!(target: "wasmgate::policy", "{msg}"),
            Err(e) => tracing::warn!(target: "wasmgate::policy", "opa_println: {e}"),
        }
    }
}

/// The `opa_builtinN` import for arity `n`: `(builtin_id, ctx, args...) -> value_addr`.
fn builtin_import(store: &mut Store<HostState>, arity: usize) -> Func {
    match arity {
        0 => Func::wrap(
            &mut *store,
            |mut c: Caller<'_, HostState>, id: i32, _ctx: i32| call_builtin(&mut c, id, &[]),
        ),
        1 => Func::wrap(
            &mut *store,
            |mut c: Caller<'_, HostState>, id: i32, _ctx: i32, a: i32| {
                call_builtin(&mut c, id, &[a])
            },
        ),
        2 => Func::wrap(
            &mut *store,
            |mut c: Caller<'_, HostState>, id: i32, _ctx: i32, a: i32, b: i32| {
                call_builtin(&mut c, id, &[a, b])
            },
        ),
        3 => Func::wrap(
            &mut *store,
            |mut c: Caller<'_, HostState>, id: i32, _ctx: i32, a: i32, b: i32, d: i32| {
                call_builtin(&mut c, id, &[a, b, d])
            },
        ),
        _ => Func::wrap(
            &mut *store,
            |mut c: Caller<'_, HostState>, id: i32, _ctx: i32, a: i32, b: i32, d: i32, e: i32| {
                call_builtin(&mut c, id, &[a, b, d, e])
            },
        ),
    }
}

/// Dispatch a builtin call from the policy: dump each argument to JSON, call the Rust
/// builtin, and hand the result back as a parsed value. A failing builtin returns 0 (NULL),
/// which the compiled policy treats as undefined — OPA's non-strict semantics.
fn call_builtin(
    caller: &mut Caller<'_, HostState>,
    id: i32,
    args: &[i32],
) -> wasmtime::Result<i32> {
    let state = caller.data();
    let builtin = state
        .builtins
        .get(id as usize)
        .and_then(Option::as_ref)
        .cloned()
        .ok_or_else(|| wasmtime::format_err!("the policy called unknown builtin id {id}"))?;
    let exports = state
        .exports
        .clone()
        .expect("exports are set before evaluation");
    let memory = state.memory.expect("memory is set before evaluation");

    let mut values = Vec::with_capacity(args.len());
    for &arg in args {
        let dumped = exports.json_dump.call(&mut *caller, arg)?;
        let text = read_cstr(memory.data(&*caller), dumped)?;
        values.push(serde_json::from_str::<Value>(&text)?);
    }
    let result = match builtin.call(&values) {
        Ok(v) => v,
        Err(e) => {
            tracing::debug!(builtin = builtin.name(), error = %e, "builtin call is undefined");
            return Ok(0);
        }
    };
    let bytes = serde_json::to_vec(&result)?;
    let addr = exports.malloc.call(&mut *caller, bytes.len() as i32)?;
    let start = addr as u32 as usize;
    memory
        .data_mut(&mut *caller)
        .get_mut(start..start + bytes.len())
        .ok_or_else(|| wasmtime::format_err!("opa_malloc returned an address outside memory"))?
        .copy_from_slice(&bytes);
    exports
        .json_parse
        .call(&mut *caller, (addr, bytes.len() as i32))
}

fn check_imports(module: &Module) -> Result<(Vec<ImportSlot>, u64), AbiError> {
    let mut slots = Vec::new();
    let mut memory_min = None;
    for import in module.imports() {
        let name = format!("{}.{}", import.module(), import.name());
        let slot = match (import.module(), import.name(), import.ty()) {
            ("env", "memory", ExternType::Memory(m)) => {
                memory_min = Some(m.minimum());
                ImportSlot::Memory
            }
            ("env", "opa_abort", ExternType::Func(_)) => ImportSlot::Abort,
            ("env", "opa_println", ExternType::Func(_)) => ImportSlot::Println,
            ("env", f, ExternType::Func(_)) if f.starts_with("opa_builtin") => {
                match f["opa_builtin".len()..].parse::<usize>() {
                    Ok(n) if n <= 4 => ImportSlot::Builtin(n),
                    _ => return Err(AbiError::UnexpectedImport(name)),
                }
            }
            _ => return Err(AbiError::UnexpectedImport(name)),
        };
        slots.push(slot);
    }
    let min = memory_min.ok_or(AbiError::NoMemoryImport)?;
    Ok((slots, min))
}

fn check_exports(module: &Module) -> Result<(), AbiError> {
    let exported: Vec<&str> = module.exports().map(|e| e.name()).collect();
    let missing: Vec<String> = REQUIRED_EXPORTS
        .iter()
        .filter(|name| !exported.contains(name))
        .map(|name| name.to_string())
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(AbiError::MissingExports(missing))
    }
}

/// The highest byte written by an active data segment with a constant offset.
fn data_segments_end(wasm: &[u8]) -> u64 {
    use wasmparser::{DataKind, Operator, Parser, Payload};
    let mut end = 0u64;
    for payload in Parser::new(0).parse_all(wasm) {
        let Ok(Payload::DataSection(reader)) = payload else {
            continue;
        };
        for data in reader.into_iter().flatten() {
            if let DataKind::Active { offset_expr, .. } = data.kind {
                let mut ops = offset_expr.get_operators_reader();
                if let Ok(Operator::I32Const { value }) = ops.read() {
                    end = end.max(value as u32 as u64 + data.data.len() as u64);
                }
            }
        }
    }
    end
}

fn resolve_builtins(
    wanted: &BTreeMap<String, i32>,
    builtins: &Builtins,
) -> Result<Arc<[Option<Builtin>]>, AbiError> {
    let missing: Vec<String> = wanted
        .keys()
        .filter(|name| builtins.get(name).is_none())
        .cloned()
        .collect();
    if !missing.is_empty() {
        return Err(AbiError::MissingBuiltins(missing));
    }
    let len = wanted
        .values()
        .map(|&id| id.max(0) as usize + 1)
        .max()
        .unwrap_or(0);
    let mut by_id = vec![None; len];
    for (name, &id) in wanted {
        by_id[id.max(0) as usize] = builtins.get(name).cloned();
    }
    Ok(Arc::from(by_id))
}
