//! Placeholder, replaced by the protocol work.
