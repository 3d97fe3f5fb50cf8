//! lnm-tests
