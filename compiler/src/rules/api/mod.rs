//! `api/*`: API versions on their way out, and references to versions already gone.

mod deprecated;
mod removed_reference;

use super::Rule;

pub(super) const RULES: &[&Rule] = &[&deprecated::RULE, &removed_reference::RULE];
