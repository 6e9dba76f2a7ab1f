//! `metadata/*`: names, labels and annotations, the syntax the API server enforces on
//! every object.

mod invalid_annotation;
mod invalid_label;
mod invalid_name;

use super::Rule;

pub(super) const RULES: &[&Rule] = &[&invalid_name::RULE, &invalid_label::RULE, &invalid_annotation::RULE];
