//! `object/*`: the objects of a run as a set.

mod duplicate;

use super::Rule;

pub(super) const RULES: &[&Rule] = &[&duplicate::RULE];
