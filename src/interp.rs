//! Interpreted engine (placeholder until the interp module lands).
