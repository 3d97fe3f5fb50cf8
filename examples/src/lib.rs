//! Runnable lnm.
//!
//! Binaries:
//! - `lnm-gateway`: runs one Purdue level from its configuration (`--config`, `--check`,
//!   `export-dns`; SIGHUP reloads, SIGTERM drains);
//! - `purdue-demo`: the quick start — a cloud origin and levels 4, 3, 2 on loopback, real
//!   requests from level 2, a report of every decision at every level.
//!
//! Examples:
//! - `allowlist`: what a configuration's allowlist decides for some names, and why;
//! - `custom_hop`: a user-written `Hop` that reaches the parent through an HTTP CONNECT proxy.
//!
//! The files in `configs/` are complete level configurations to start from.
