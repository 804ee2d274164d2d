//! Policy artifacts: what a source hands over, before anything is compiled.
//!
//! Three kinds arrive — an OPA-compiled `.wasm` module, an OPA bundle (`.tar.gz`), or Rego
//! sources — and the kind is told by content (magic bytes), not only by file name, so a
//! bundle saved as `policy.bin` still loads.

/// One Rego source file, by the path it had in its bundle or directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegoSource {
    pub path: String,
    pub text: String,
}
