//! # lnm-proxy: the sniffing forward proxy of Layered Network Management
//!
//! # Layout
//! - `sniff/`: the TLS and HTTP sniffers
pub mod sniff;
