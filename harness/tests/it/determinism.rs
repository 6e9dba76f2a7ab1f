//! A seed reproduces a run in process: the same placements, the same generated names, the
//! same order of events, the same report. `fixtures/determinism` holds tests whose outcome
//! turns on everything that could vary (which pods a lost node's room goes to, which are
//! left Pending); each runs 20 times and every report must be the first one, timings aside.

use crate::support::{case_dirs, kubeyard};
use serde_json::Value;

/// The JSON report without what real time decides (how long each step took).
fn without_timings(mut report: Value) -> Value {
    fn strip(value: &mut Value) {
        match value {
            Value::Object(map) => {
                map.remove("seconds");
                map.remove("clusterSeconds");
                map.values_mut().for_each(strip);
            }
            Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    strip(&mut report);
    report
}

#[test]
fn a_seed_gives_the_same_report_every_time() {
    let cases = case_dirs("determinism");
    assert!(!cases.is_empty());
    for case in cases {
        let path = case.display().to_string();
        let run = || {
            let output = kubeyard(&["test", "--output", "json", &path], None);
            let report: Value = serde_json::from_slice(&output.stdout)
                .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&output.stdout)));
            without_timings(report)
        };
        let first = run();
        // The case must fail with something to compare: Pending pods, named.
        let text = first.to_string();
        assert!(text.contains("is Pending"), "{path} must leave pods Pending: {text}");
        for attempt in 2..=20 {
            let again = run();
            assert_eq!(
                again,
                first,
                "run {attempt} of {path} differs from the first:\n{}",
                similar::TextDiff::from_lines(
                    &serde_json::to_string_pretty(&first).unwrap_or_default(),
                    &serde_json::to_string_pretty(&again).unwrap_or_default()
                )
                .unified_diff()
            );
        }
    }
}
