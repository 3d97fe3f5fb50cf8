//! The operator (to come).
