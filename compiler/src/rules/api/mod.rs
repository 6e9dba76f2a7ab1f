//! `api/*`: API versions on their way out, references to versions already gone, and
//! API extensions (CRDs) the API server refuses.

mod deprecated;
mod invalid_crd;
mod removed_reference;

use super::Rule;

pub(super) const RULES: &[&Rule] = &[&deprecated::RULE, &removed_reference::RULE, &invalid_crd::RULE];
