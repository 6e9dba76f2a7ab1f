//! `api/*`: API versions that still work but are on their way out.

mod deprecated;

use super::Rule;

pub(super) const RULES: &[&Rule] = &[&deprecated::RULE];
