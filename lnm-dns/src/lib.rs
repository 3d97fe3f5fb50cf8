//! lnm-dns
