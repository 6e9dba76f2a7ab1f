//! `quota/*`: what the workloads ask for against what their namespace's ResourceQuota
//! allows.

mod exceeded;

use super::Rule;

pub(super) const RULES: &[&Rule] = &[&exceeded::RULE];
