#![forbid(unsafe_code)]
//! The Jailfile grammar (placeholder until the grammar lands).
