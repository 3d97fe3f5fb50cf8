//! # lnm-dns: the DNS rewrite resolver of Layered Network Management (not built yet)
//!
//! This crate will hold the rewrite resolver: allowlisted names (the same matcher as the proxy,
//! from `lnm-policy`) answered with this level's gateway address, everything else forwarded
//! upstream or refused, served over UDP and TCP as a tower service.
//!
//! It is empty today: it exists so the workspace has its final shape. Nothing in it works yet.
