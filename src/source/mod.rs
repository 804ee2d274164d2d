//! Where policy and data bytes come from. A source knows nothing about Wasm or Rego: it
//! hands over content and lets the loader decide what it is.
pub mod local;
