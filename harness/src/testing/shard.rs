//! Spreading a suite over machines, as `cargo nextest --partition` does: `kubeyard test
//! --shard K/N` runs the K-th of N parts, and every machine that runs a part computes
//! the same split from the same tests, with nothing shared between them.
//!
//! - `path` (the default) puts a test in the part its key's hash names (the key: its
//!   file's path as given, `/`-separated, and its name). A test stays in its part when
//!   others are added or removed, so a part's timings stay comparable from run to run.
//! - `count` deals the tests, sorted by key, round-robin: parts differ by one test at most.
//! - `duration` balances the time, from a report of an earlier run (JUnit or JSON, `--durations`):
//!   the longest test first, each to the part with the least time so far (tests the report
//!   lacks count as its median).
//!
//! The reports of the parts merge into one (`kubeyard test merge-reports`).

use crate::apiserver::names::stable_hash;
use quick_junit::Report;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// More parts than machines anyone runs a suite on is a typo.
const MAX_PARTS: usize = 10_000;

/// The K-th (from 1) of N parts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl std::str::FromStr for Shard {
    type Err = String;

    fn from_str(text: &str) -> Result<Shard, String> {
        let wrong = || format!("--shard wants K/N with 1 <= K <= N <= {MAX_PARTS} (e.g. 2/4), not {text:?}");
        let (index, count) = text.split_once('/').ok_or_else(wrong)?;
        let index: usize = index.trim().parse().map_err(|_| wrong())?;
        let count: usize = count.trim().parse().map_err(|_| wrong())?;
        if index == 0 || count == 0 || index > count || count > MAX_PARTS {
            return Err(wrong());
        }
        Ok(Shard { index, count })
    }
}

/// How tests are split.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ShardBy {
    /// By a hash of each test's path and name: a test keeps its part as the suite changes.
    #[default]
    Path,
    /// Round-robin over the tests sorted by path: parts of equal size.
    Count,
    /// By the durations of an earlier run's report (--durations): parts of equal time.
    Duration,
}

/// A test's key: its file's path relative to the directory kubeyard runs in (`.` and
/// `..` resolved, `/`-separated; an absolute path under it made relative), and its name.
/// Machines that run from their checkout's root agree, however the paths were typed.
pub fn key(file: &std::path::Path, name: &str) -> String {
    let here = std::env::current_dir().unwrap_or_default();
    key_from(&here, file, name)
}

fn key_from(here: &std::path::Path, file: &std::path::Path, name: &str) -> String {
    use std::path::Component;
    let mut parts: Vec<String> = Vec::new();
    let absolute = here.join(file);
    for component in absolute.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop();
            }
            Component::Normal(part) => parts.push(part.to_string_lossy().into_owned()),
            Component::RootDir | Component::Prefix(_) => parts.clear(),
        }
    }
    let base: Vec<String> = here
        .components()
        .filter_map(|c| match c {
            Component::Normal(part) => Some(part.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect();
    let relative = match parts.strip_prefix(base.as_slice()) {
        Some(under) => under.join("/"),
        None => format!("/{}", parts.join("/")),
    };
    format!("{relative}#{name}")
}

/// Which part each test (by key) is in, 1 to `count`.
pub fn assign(keys: &[String], count: usize, by: ShardBy, durations: &HashMap<String, f64>) -> Vec<usize> {
    let count = count.max(1);
    match by {
        // FNV-1a, the same on every machine (std's hasher is seeded per process).
        ShardBy::Path => keys.iter().map(|key| (stable_hash(key) % count as u64) as usize + 1).collect(),
        ShardBy::Count => {
            let mut order: Vec<usize> = (0..keys.len()).collect();
            order.sort_by(|a, b| keys[*a].cmp(&keys[*b]));
            let mut parts = vec![0; keys.len()];
            for (position, test) in order.into_iter().enumerate() {
                parts[test] = position % count + 1;
            }
            parts
        }
        ShardBy::Duration => {
            // Parts past the number of tests would stay empty: no need to weigh them.
            let count = count.min(keys.len().max(1));
            let lookup = |key: &String| durations.get(key).or_else(|| durations.get(name_of(key))).copied();
            let mut known: Vec<f64> = keys.iter().filter_map(lookup).collect();
            known.sort_by(f64::total_cmp);
            let median = known.get(known.len() / 2).copied().unwrap_or(1.0);
            let seconds = |key: &String| lookup(key).unwrap_or(median);
            let mut order: Vec<usize> = (0..keys.len()).collect();
            // Longest first; equal ones by key, so every machine deals the same.
            order.sort_by(|a, b| seconds(&keys[*b]).total_cmp(&seconds(&keys[*a])).then(keys[*a].cmp(&keys[*b])));
            let mut load = vec![0.0f64; count];
            let mut parts = vec![0; keys.len()];
            for test in order {
                let lightest = (0..count).min_by(|a, b| load[*a].total_cmp(&load[*b]).then(a.cmp(b))).unwrap_or(0);
                load[lightest] += seconds(&keys[test]);
                parts[test] = lightest + 1;
            }
            parts
        }
    }
}

/// A key's test name (after the last `#`: names hold no `#` a path would not).
fn name_of(key: &str) -> &str {
    key.rsplit_once('#').map_or(key, |(_, name)| name)
}

/// How long each test took, from a report of `kubeyard test` (JUnit: a suite per test,
/// its cases' class name its file; JSON: `tests[]`): by key (file and name), and by name
/// alone where only one test has it.
pub fn durations(report: &str) -> Result<HashMap<String, f64>, String> {
    let timed: Vec<(String, String, f64)> = if report.trim_start().starts_with('{') {
        let value: Value = serde_json::from_str(report).map_err(|e| format!("not a JSON report: {e}"))?;
        let tests = value.get("tests").and_then(Value::as_array).ok_or("a JSON report without `tests`")?;
        tests
            .iter()
            .filter_map(|t| {
                let file = t.get("file").and_then(Value::as_str).unwrap_or_default().to_string();
                Some((file, t.get("name")?.as_str()?.to_string(), t.get("seconds")?.as_f64()?))
            })
            .collect()
    } else {
        let report = Report::deserialize_from_str(report).map_err(|e| format!("not a JUnit report: {e}"))?;
        report
            .test_suites
            .iter()
            .map(|suite| {
                let file = suite.test_cases.first().and_then(|c| c.classname.as_ref()).map(|c| c.as_str().to_string());
                let seconds = suite.time.unwrap_or(Duration::ZERO).as_secs_f64();
                (file.unwrap_or_default(), suite.name.as_str().to_string(), seconds)
            })
            .collect()
    };
    let mut named: HashMap<String, usize> = HashMap::new();
    for (_, name, _) in &timed {
        *named.entry(name.clone()).or_default() += 1;
    }
    let mut durations = HashMap::new();
    for (file, name, seconds) in timed {
        if !file.is_empty() {
            durations.insert(key(std::path::Path::new(&file), &name), seconds);
        }
        if named.get(&name) == Some(&1) {
            durations.insert(name, seconds);
        }
    }
    Ok(durations)
}

/// The reports of several parts (`(file, text)`, all JUnit or all JSON) as one: every
/// test of each, the counts summed, and the longest part's time. A test in two reports is
/// an error: the parts were not of one split.
pub fn merge(reports: &[(String, String)]) -> Result<String, String> {
    // Each test's key (its file and name), and the report it came from.
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let mut once = |file: &str, name: &str, report: &str| -> Result<(), String> {
        let key = format!("{file}#{name}");
        if let Some(first) = seen.get(&key) {
            return Err(format!("{key} is in both {first} and {report}: were they parts of one split?"));
        }
        seen.insert(key, report.to_string());
        Ok(())
    };
    if reports.first().is_some_and(|(_, text)| text.trim_start().starts_with('{')) {
        let mut tests = Vec::new();
        for (report, text) in reports {
            let value: Value = serde_json::from_str(text).map_err(|e| format!("{report}: not a JSON report: {e}"))?;
            let listed = value.get("tests").and_then(Value::as_array).ok_or(format!("{report}: no `tests`"))?;
            for test in listed {
                let text_of = |field: &str| test.get(field).and_then(Value::as_str).unwrap_or_default();
                once(text_of("file"), text_of("name"), report)?;
                tests.push(test.clone());
            }
        }
        let failed = tests.iter().filter(|t| t.get("passed") != Some(&json!(true))).count();
        let merged = json!({"tests": tests, "summary": {"total": tests.len(), "passed": tests.len() - failed, "failed": failed}});
        return Ok(format!("{merged:#}\n"));
    }
    let mut merged = Report::new("kubeyard test");
    let mut longest: Option<Duration> = None;
    for (report, text) in reports {
        let parsed = Report::deserialize_from_str(text).map_err(|e| format!("{report}: not a JUnit report: {e}"))?;
        longest = longest.max(parsed.time);
        for suite in &parsed.test_suites {
            // A suite is a test; its cases carry the file as their class name.
            let file = suite.test_cases.first().and_then(|c| c.classname.as_ref()).map(|c| c.as_str().to_string());
            once(&file.unwrap_or_default(), suite.name.as_str(), report)?;
        }
        merged.add_test_suites(parsed.test_suites);
    }
    if let Some(longest) = longest {
        merged.set_time(longest);
    }
    merged.to_string().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn keys(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("fixtures/e2e/case-{i}/test.yaml#case-{i}")).collect()
    }

    #[test]
    fn shards_read_as_k_of_n() {
        assert_eq!("2/4".parse::<Shard>(), Ok(Shard { index: 2, count: 4 }));
        for wrong in ["0/4", "5/4", "1/0", "2", "a/b", ""] {
            assert!(wrong.parse::<Shard>().unwrap_err().contains("K/N"), "{wrong}");
        }
    }

    #[test]
    fn keys_do_not_depend_on_how_the_path_was_written() {
        let here = std::path::Path::new("/ci/checkout");
        let key = |path: &str| key_from(here, std::path::Path::new(path), "quota");
        let plain = key("fixtures/e2e/quota/test.yaml");
        assert_eq!(plain, "fixtures/e2e/quota/test.yaml#quota");
        for written in [
            "./fixtures/e2e/quota/test.yaml",
            "fixtures/e2e/../e2e/quota/test.yaml",
            "/ci/checkout/fixtures/e2e/quota/test.yaml",
        ] {
            assert_eq!(key(written), plain, "{written}");
        }
        assert_eq!(key("/elsewhere/test.yaml"), "/elsewhere/test.yaml#quota");
    }

    #[test]
    fn counts_and_durations_balance_the_parts() {
        let parts = assign(&keys(10), 3, ShardBy::Count, &HashMap::new());
        let sizes: Vec<usize> = (1..=3).map(|k| parts.iter().filter(|p| **p == k).count()).collect();
        assert_eq!(sizes, [4, 3, 3]);
        // One long test alone in its part, the short ones together.
        let keys = keys(4);
        let durations: HashMap<String, f64> = [("case-0", 60.0), ("case-1", 20.0), ("case-2", 20.0), ("case-3", 20.0)]
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect();
        let parts = assign(&keys, 2, ShardBy::Duration, &durations);
        assert_eq!(parts, [1, 2, 2, 2]);
    }

    #[test]
    fn a_test_keeps_its_part_as_others_come_and_go() {
        let before = assign(&keys(20), 4, ShardBy::Path, &HashMap::new());
        let mut grown = keys(20);
        grown.push("fixtures/e2e/new/test.yaml#new".into());
        let after = assign(&grown, 4, ShardBy::Path, &HashMap::new());
        assert_eq!(before[..], after[..20]);
    }

    proptest! {
        #[test]
        fn every_test_is_in_exactly_one_part(n in 0usize..60, count in 1usize..9, seconds in proptest::collection::vec(0.0f64..100.0, 60)) {
            let keys = keys(n);
            let durations: HashMap<String, f64> =
                (0..n).filter(|i| i % 3 != 0).map(|i| (format!("case-{i}"), seconds[i])).collect();
            for by in [ShardBy::Path, ShardBy::Count, ShardBy::Duration] {
                let parts = assign(&keys, count, by, &durations);
                prop_assert_eq!(parts.len(), n);
                prop_assert!(parts.iter().all(|p| (1..=count).contains(p)));
            }
        }
    }

    fn junit(tests: &[(&str, &str, f64, bool)], time: f64) -> String {
        let mut report = Report::new("kubeyard test");
        for (name, file, seconds, passed) in tests {
            let mut suite = quick_junit::TestSuite::new(*name);
            suite.set_time(Duration::from_secs_f64(*seconds));
            let status = if *passed {
                quick_junit::TestCaseStatus::success()
            } else {
                quick_junit::TestCaseStatus::non_success(quick_junit::NonSuccessKind::Failure)
            };
            let mut case = quick_junit::TestCase::new("converged", status);
            case.set_classname(*file);
            suite.add_test_case(case);
            report.add_test_suite(suite);
        }
        report.set_time(Duration::from_secs_f64(time));
        report.to_string().unwrap()
    }

    #[test]
    fn parts_reports_merge_into_one_and_give_durations() {
        let first = junit(&[("quota", "fixtures/e2e/quota/test.yaml", 12.5, true)], 13.0);
        let second = junit(
            &[
                ("cordon", "fixtures/e2e/cordon/test.yaml", 6.0, true),
                ("taints", "fixtures/e2e/taints/test.yaml", 3.0, false),
            ],
            9.0,
        );
        let merged = merge(&[("1.xml".into(), first.clone()), ("2.xml".into(), second)]).unwrap();
        let report = Report::deserialize_from_str(&merged).unwrap();
        assert_eq!((report.tests, report.failures, report.test_suites.len()), (3, 1, 3));
        assert_eq!(report.time, Some(Duration::from_secs(13)), "the longest part's time");
        let durations = durations(&merged).unwrap();
        assert_eq!(durations["quota"], 12.5);
        let twice = merge(&[("1.xml".into(), first.clone()), ("again.xml".into(), first)]).unwrap_err();
        assert!(twice.contains("in both 1.xml and again.xml"), "{twice}");
        let json_report = |name: &str| {
            format!(r#"{{"tests": [{{"name": "{name}", "file": "f/{name}", "passed": true, "seconds": 2.0}}]}}"#)
        };
        let merged = merge(&[("a.json".into(), json_report("a")), ("b.json".into(), json_report("b"))]).unwrap();
        let merged: Value = serde_json::from_str(&merged).unwrap();
        assert_eq!(merged["summary"], json!({"total": 2, "passed": 2, "failed": 0}));
    }
}
