//! lnm-policy
