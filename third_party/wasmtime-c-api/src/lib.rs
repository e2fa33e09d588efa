//! Re-exports Wasmtime's C API so that cargo emits a static library holding
//! every `wasm_*`, `wasi_*` and `wasmtime_*` symbol.
pub use wasmtime_c_api::*;
