//! What tests assert about objects: partial matching (`matching.rs`) and expressions on
//! fields (`expr.rs`, parsed with nom). Pure functions of objects, so the harness's test
//! runner, a user's Rust test and any other caller judge alike.

pub mod expr;
pub mod matching;

pub use matching::{Mismatch, Options, matches, mismatches};
