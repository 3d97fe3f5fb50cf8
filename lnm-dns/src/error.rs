//! The error type of lnm-dns's constructors.

/// Why lnm-dns could not build what was asked for.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The name given to [`Query::build`](crate::Query::build) is not a DNS name (an empty
    /// label, a label over 63 bytes, a name over 255 bytes, a bad escape, a non-ASCII
    /// character: convert internationalised names to their `xn--` form first).
    #[error("cannot ask for {name:?}: not a DNS name: {source}")]
    InvalidName {
        /// The name as it was given.
        name: String,
        /// What is wrong with it.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
}
