//! lnm-proxy
