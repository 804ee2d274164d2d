//! OPA bundles (placeholder until the bundle module lands).
