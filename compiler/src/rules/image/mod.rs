//! `image/*`: the image each container runs. Each container's image is parsed once
//! (`Container::image`) for both rules.

mod invalid_reference;
mod latest_tag;

use super::Rule;

pub(super) const RULES: &[&Rule] = &[&latest_tag::RULE, &invalid_reference::RULE];
