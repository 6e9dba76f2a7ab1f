//! `admission/*`: admission configurations the API server would refuse.

mod invalid_webhook;

use super::Rule;

pub(super) const RULES: &[&Rule] = &[&invalid_webhook::RULE];
