//! wasmgate: OPA policies compiled to WebAssembly, evaluated on wasmtime.
pub mod abi;
pub mod artifact;
pub mod builtins;
pub mod bundle;
pub mod config;
pub mod interp;
