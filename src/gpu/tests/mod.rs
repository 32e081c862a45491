//! GPU-side tests that need the crate's internals: each kernel alone
//! against the CPU reference, and every generated WGSL module validated
//! with naga and kept as golden files. The integration tests in tests/
//! use the public API only.

#[path = "../../../tests/common/mod.rs"]
mod common;
mod kernels;
mod shaders;
