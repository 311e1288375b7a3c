//! The `kanaria` command (see `src/bin/kanaria.rs`).
pub fn placeholder() {}
