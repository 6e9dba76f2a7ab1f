//! `object/*`: objects as wholes: the values the API server takes in any of their
//! fields, and the objects of a run as a set.

mod duplicate;
mod unsupported_value;

use super::Rule;

pub(super) const RULES: &[&Rule] = &[&duplicate::RULE, &unsupported_value::RULE];
