//! lnm-examples
