//! # lnm-proxy: the sniffing forward proxy of Layered Network Management (not built yet)
//!
//! This crate will hold the TLS-SNI / HTTP-Host sniffers, the proxy service that enforces the
//! allowlist and forwards untouched bytes through a `lnm_core::Hop`, the listeners, and the
//! `Gateway` that runs one Purdue level.
//!
//! It is empty today: it exists so the workspace has its final shape. Nothing in it works yet.
