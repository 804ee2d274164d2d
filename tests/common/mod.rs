//! Shared test support. See `opa_double` for the WAT doubles of `opa build` output.
#![allow(dead_code)]
pub mod opa_double;
pub mod stand_in_opa;
