//! ljspawn library (placeholder).
