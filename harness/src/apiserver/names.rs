//! The five characters Kubernetes appends to a `generateName`: drawn at random, as
//! Kubernetes draws them, or from the cluster's seed. A seeded cluster (every
//! `kubeyard test` in process) names the n-th object made under a prefix the same way
//! on every run, so a report that names `web-7d4b9c-x2k8p` names it again; which of a
//! ReplicaSet's identical pods gets which name is all that concurrency still decides.

use std::collections::HashMap;
use std::sync::Mutex;

const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

#[derive(Debug, Default)]
pub struct Names {
    seed: Option<u64>,
    /// Per prefix (with its namespace), how many names were drawn.
    drawn: Mutex<HashMap<String, u64>>,
}

impl Names {
    pub fn random() -> Names {
        Names::default()
    }

    pub fn seeded(seed: u64) -> Names {
        Names { seed: Some(seed), drawn: Mutex::default() }
    }

    /// The next suffix for `prefix` in `scope` (a namespace, or "" for cluster objects).
    pub fn suffix(&self, scope: &str, prefix: &str) -> String {
        let Some(seed) = self.seed else {
            return (0..5).map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char).collect();
        };
        let key = format!("{scope}/{prefix}");
        let n = {
            let mut drawn = self.drawn.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let count = drawn.entry(key.clone()).or_insert(0);
            *count += 1;
            *count
        };
        let mut rng = fastrand::Rng::with_seed(seed ^ stable_hash(&key) ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        (0..5).map(|_| ALPHABET[rng.usize(..ALPHABET.len())] as char).collect()
    }
}

/// FNV-1a: the same number for the same text on every run and machine (std's hashers
/// are seeded per process), for seeds derived from names.
pub fn stable_hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_repeats_its_names_and_prefixes_do_not_share_them() {
        let draw = |names: &Names| -> Vec<String> {
            ["web-", "web-", "api-", "web-"].iter().map(|p| names.suffix("shop", p)).collect()
        };
        let (first, again) = (draw(&Names::seeded(7)), draw(&Names::seeded(7)));
        assert_eq!(first, again);
        assert_ne!(first, draw(&Names::seeded(8)));
        assert_ne!(first[0], first[1], "the second web- is another name");
        // Interleaving other prefixes changes nothing for web-.
        let names = Names::seeded(7);
        let _ = names.suffix("shop", "api-");
        let _ = names.suffix("other", "web-");
        assert_eq!(names.suffix("shop", "web-"), first[0]);
        for suffix in first.iter().chain(&draw(&Names::random())) {
            assert_eq!(suffix.len(), 5);
            assert!(suffix.bytes().all(|b| ALPHABET.contains(&b)), "{suffix}");
        }
    }
}
