//! lnm-benches
