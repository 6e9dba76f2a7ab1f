//! `namespace/*`: the namespaces objects land in.

mod undeclared;

use super::Rule;

pub(super) const RULES: &[&Rule] = &[&undeclared::RULE];
