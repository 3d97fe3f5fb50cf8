//! End-to-end test suites of lnm. Each file in `tests/` is one integration binary per area:
//!
//! - `policy_hops.rs`: the shipped configurations, and the allowlist composed with hops as tower
//!   services over an in-process network.
