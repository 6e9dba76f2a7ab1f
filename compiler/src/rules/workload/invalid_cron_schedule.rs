use crate::cron;
use crate::rules::{Finding, ObjectContext};
use crate::yaml::Value;

rule! {
    /// CronJob schedule or time zone the API server refuses
    ///
    /// spec.schedule must read as a standard cron schedule (five fields, a descriptor such as `@hourly`, or
    /// `@every 5m`) as robfig/cron reads it, without a `TZ=` or `CRON_TZ=` prefix, and spec.timeZone, when set, must
    /// name a zone of the IANA database. The schemas only say both are strings, so schema validators pass a schedule
    /// of `61 * * * *` or a zone of `Mars/Olympus`, and the API server refuses them when the manifest is applied.
    ///
    /// Fix: Write five fields (minute hour day-of-month month day-of-week), e.g. `0 3 * * *`, and name the zone in
    /// spec.timeZone (`Europe/Paris`).
    "workload/invalid-cron-schedule", Error, Object(check)
}

/// A `timeZone` part's characters (`validTimeZoneCharacters`).
fn valid_zone_part(part: &str) -> bool {
    (1..=14).contains(&part.len())
        && part.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+'))
        && part != "."
        && part != ".."
        && !part.starts_with('-')
}

/// Why Kubernetes refuses a `timeZone` (`validateTimeZone`), if it does.
fn zone_problem(zone: &str) -> Option<String> {
    if zone.is_empty() {
        return Some("timeZone must be nil or non-empty string".into());
    }
    if !zone.split('/').all(valid_zone_part) {
        return Some(format!("unknown time zone {zone}"));
    }
    if zone.eq_ignore_ascii_case("Local") {
        return Some("timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones".into());
    }
    cron::zone(zone).err()
}

fn check(context: &ObjectContext<'_>, out: &mut Vec<Finding>) {
    if context.info.gvk.group != "batch" || context.info.gvk.kind != "CronJob" {
        return;
    }
    let Some(spec) = context.node.get("spec") else { return };
    if let Some(entry) = spec.entry("schedule")
        && let Value::String(schedule) = &entry.value.value
    {
        // `validateScheduleFormat`: the schedule as robfig reads it (a `TZ=`/`CRON_TZ=`
        // prefix is its own, before the fields), and the prefix refused on its own.
        let mut problems = Vec::new();
        if schedule.is_empty() {
            problems.push(("spec.schedule: Required value".to_string(), "a CronJob needs a schedule"));
        } else {
            let fields = match schedule.strip_prefix("CRON_TZ=").or_else(|| schedule.strip_prefix("TZ=")) {
                Some(rest) => rest.split_once(' ').map_or("", |(_, fields)| fields),
                None => schedule.as_str(),
            };
            if let Err(problem) = cron::parse(fields) {
                let message = format!("spec.schedule: Invalid value: {schedule:?}: {problem}");
                problems.push((message, "not a schedule the API server reads"));
            }
            if schedule.contains("TZ") {
                let message = format!(
                    "spec.schedule: Invalid value: {schedule:?}: cannot use TZ or CRON_TZ in schedule, use timeZone field instead"
                );
                problems.push((message, "the zone goes in spec.timeZone"));
            }
        }
        for (message, label) in problems {
            out.push(Finding::new(&RULE, entry.value.span, message).label(label).path("spec.schedule"));
        }
    }
    if let Some(entry) = spec.entry("timeZone")
        && let Value::String(zone) = &entry.value.value
        && let Some(problem) = zone_problem(zone)
    {
        out.push(
            Finding::new(&RULE, entry.value.span, format!("spec.timeZone: Invalid value: {zone:?}: {problem}"))
                .label("not a time zone of the IANA database")
                .path("spec.timeZone"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_are_refused_in_kubernetes_words() {
        assert_eq!(zone_problem("Europe/Paris"), None);
        assert_eq!(zone_problem("UTC"), None);
        assert_eq!(zone_problem("").as_deref(), Some("timeZone must be nil or non-empty string"));
        assert_eq!(zone_problem("Mars/Base").as_deref(), Some("unknown time zone Mars/Base"));
        assert_eq!(zone_problem("../etc").as_deref(), Some("unknown time zone ../etc"));
        assert!(zone_problem("local").unwrap().starts_with("timeZone must be an explicit time zone"));
        assert_eq!(zone_problem("europe/paris").as_deref(), Some("unknown time zone europe/paris"), "Go's case");
    }
}
