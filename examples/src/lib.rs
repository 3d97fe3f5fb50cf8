//! Runnable examples of lnm.
//!
//! - `examples/allowlist.rs`: load a level's configuration (an Azure IoT LNM custom resource or
//!   the lnm format) and show what its allowlist decides for some names —
//!   `cargo run -p lnm-examples --example allowlist -- [CONFIG] [NAME[:PORT] ...]`.
//!
//! The files in `configs/` are complete level configurations to start from.
