//! CronJob schedules as Kubernetes reads them: robfig/cron v3's `ParseStandard` (five
//! fields `minute hour day-of-month month day-of-week`, lists, ranges, steps, month and day
//! names, `?`, the `@hourly`…`@yearly` descriptors and `@every <duration>`), with its
//! error words, and its `Next` (day of month and day of week OR-ed when both are
//! restricted, a daylight-saving gap or fold handled as Go's time arithmetic does, nothing
//! found within five years). Time zones come from the IANA database bundled into the
//! build, as `kube-controller-manager` embeds Go's: the same answer on every machine, and
//! no file read.
//!
//! One home for it: the API server's validation, `kubeyard lint` and the CronJob
//! controller all parse through [`parse`].

use jiff::civil::DateTime;
use jiff::tz::{TimeZone, TimeZoneDatabase};
use jiff::{Timestamp, ToSpan, Zoned};
use std::sync::LazyLock;

static ZONES: LazyLock<TimeZoneDatabase> = LazyLock::new(TimeZoneDatabase::bundled);

/// `time.LoadLocation`: `""` and `UTC` are UTC; any other name must be in the database.
pub fn zone(name: &str) -> Result<TimeZone, String> {
    match name {
        "" | "UTC" => Ok(TimeZone::UTC),
        // Go reads "Local" as the machine's zone; Kubernetes refuses it in `timeZone`.
        // The database finds names whatever their case; Go's `LoadLocation` does not.
        _ => ZONES
            .get(name)
            .ok()
            .filter(|zone| zone.iana_name() == Some(name))
            .ok_or_else(|| format!("unknown time zone {name}")),
    }
}

/// Set in a field's bits when it was `*` or `?`: day matching treats such a field as
/// unrestricted (robfig's `starBit`).
const STAR: u64 = 1 << 63;

#[derive(Clone, Copy)]
struct Bounds {
    min: u32,
    max: u32,
    names: &'static [(&'static str, u32)],
}

const MINUTES: Bounds = Bounds { min: 0, max: 59, names: &[] };
const HOURS: Bounds = Bounds { min: 0, max: 23, names: &[] };
const DAYS: Bounds = Bounds { min: 1, max: 31, names: &[] };
const MONTHS: Bounds = Bounds {
    min: 1,
    max: 12,
    names: &[
        ("jan", 1),
        ("feb", 2),
        ("mar", 3),
        ("apr", 4),
        ("may", 5),
        ("jun", 6),
        ("jul", 7),
        ("aug", 8),
        ("sep", 9),
        ("oct", 10),
        ("nov", 11),
        ("dec", 12),
    ],
};
const WEEKDAYS: Bounds = Bounds {
    min: 0,
    max: 6,
    names: &[("sun", 0), ("mon", 1), ("tue", 2), ("wed", 3), ("thu", 4), ("fri", 5), ("sat", 6)],
};

/// A parsed schedule.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    when: When,
    /// A `TZ=`/`CRON_TZ=` prefix's zone, which wins over the one `next` is given.
    zone: Option<TimeZone>,
}

#[derive(Clone, Debug, PartialEq)]
enum When {
    /// Bits per field (robfig's `SpecSchedule`; seconds are always 0 here).
    Spec { minute: u64, hour: u64, dom: u64, month: u64, dow: u64 },
    /// `@every`: whole seconds, at least one.
    Every(i64),
}

/// `strconv.Atoi` and robfig's `mustParseInt`.
fn number(text: &str) -> Result<u32, String> {
    let parsed: i64 = text.parse().map_err(|_| {
        let why = if text.trim_start_matches(['-', '+']).chars().all(|c| c.is_ascii_digit()) && !text.is_empty() {
            "value out of range"
        } else {
            "invalid syntax"
        };
        format!("failed to parse int from {text}: strconv.Atoi: parsing {text:?}: {why}")
    })?;
    if parsed < 0 {
        return Err(format!("negative number ({parsed}) not allowed: {text}"));
    }
    u32::try_from(parsed)
        .map_err(|_| format!("failed to parse int from {text}: strconv.Atoi: parsing {text:?}: value out of range"))
}

fn number_or_name(text: &str, bounds: Bounds) -> Result<u32, String> {
    let lower = text.to_ascii_lowercase();
    match bounds.names.iter().find(|(name, _)| *name == lower) {
        Some((_, value)) => Ok(*value),
        None => number(text),
    }
}

/// Bits `start..=end` every `step`.
fn bits(start: u32, end: u32, step: u32) -> u64 {
    if step == 1 {
        return (!(u64::MAX << (end + 1))) & (u64::MAX << start);
    }
    (start..=end).step_by(step as usize).fold(0, |bits, i| bits | (1 << i))
}

/// robfig's `getRange`: `*`, `?`, `N`, `N-M`, each with an optional `/step`.
fn range(expression: &str, bounds: Bounds) -> Result<u64, String> {
    let range_and_step: Vec<&str> = expression.split('/').collect();
    let low_and_high: Vec<&str> = range_and_step[0].split('-').collect();
    let single = low_and_high.len() == 1;
    let (start, mut end, mut extra) = if low_and_high[0] == "*" || low_and_high[0] == "?" {
        (bounds.min, bounds.max, STAR)
    } else {
        let start = number_or_name(low_and_high[0], bounds)?;
        let end = match low_and_high.len() {
            1 => start,
            2 => number_or_name(low_and_high[1], bounds)?,
            _ => return Err(format!("too many hyphens: {expression}")),
        };
        (start, end, 0)
    };
    let step = match range_and_step.len() {
        1 => 1,
        2 => {
            let step = number(range_and_step[1])?;
            // `N/step` means `N-max/step`.
            if single {
                end = bounds.max;
            }
            if step > 1 {
                extra = 0;
            }
            step
        }
        _ => return Err(format!("too many slashes: {expression}")),
    };
    if start < bounds.min {
        return Err(format!("beginning of range ({start}) below minimum ({}): {expression}", bounds.min));
    }
    if end > bounds.max {
        return Err(format!("end of range ({end}) above maximum ({}): {expression}", bounds.max));
    }
    if start > end {
        return Err(format!("beginning of range ({start}) beyond end of range ({end}): {expression}"));
    }
    if step == 0 {
        return Err(format!("step of range should be a positive number: {expression}"));
    }
    Ok(bits(start, end, step) | extra)
}

/// robfig's `getField`: ranges separated by commas.
fn field(text: &str, bounds: Bounds) -> Result<u64, String> {
    text.split(',').filter(|r| !r.is_empty()).try_fold(0, |all, expression| Ok(all | range(expression, bounds)?))
}

fn all(bounds: Bounds) -> u64 {
    bits(bounds.min, bounds.max, 1) | STAR
}

fn descriptor(text: &str) -> Result<When, String> {
    let spec = |minute, hour, dom, month, dow| Ok(When::Spec { minute, hour, dom, month, dow });
    let first = |bounds: Bounds| 1u64 << bounds.min;
    match text {
        "@yearly" | "@annually" => spec(first(MINUTES), first(HOURS), first(DAYS), first(MONTHS), all(WEEKDAYS)),
        "@monthly" => spec(first(MINUTES), first(HOURS), first(DAYS), all(MONTHS), all(WEEKDAYS)),
        "@weekly" => spec(first(MINUTES), first(HOURS), all(DAYS), all(MONTHS), first(WEEKDAYS)),
        "@daily" | "@midnight" => spec(first(MINUTES), first(HOURS), all(DAYS), all(MONTHS), all(WEEKDAYS)),
        "@hourly" => spec(first(MINUTES), all(HOURS), all(DAYS), all(MONTHS), all(WEEKDAYS)),
        _ => match text.strip_prefix("@every ") {
            Some(duration) => {
                let parsed: crate::duration::Duration = duration
                    .parse()
                    .map_err(|_| format!("failed to parse duration {text}: time: invalid duration {duration:?}"))?;
                // Whole seconds, at least one, as `Every` rounds.
                Ok(When::Every((parsed.0 / 1_000_000_000).max(1)))
            }
            None => Err(format!("unrecognized descriptor: {text}")),
        },
    }
}

/// robfig/cron v3 `ParseStandard`, with its messages.
pub fn parse(spec: &str) -> Result<Schedule, String> {
    if spec.is_empty() {
        return Err("empty spec string".into());
    }
    let mut spec = spec;
    let mut zone = None;
    if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
        let space = spec.find(' ').unwrap_or(spec.len());
        let equals = spec.find('=').unwrap_or(0);
        let name = spec.get(equals + 1..space).unwrap_or_default();
        zone = Some(self::zone(name).map_err(|why| format!("provided bad location {name}: {why}"))?);
        spec = spec[space..].trim();
    }
    if spec.starts_with('@') {
        return Ok(Schedule { when: descriptor(spec)?, zone });
    }
    let fields: Vec<&str> = spec.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!("expected exactly 5 fields, found {}: [{}]", fields.len(), fields.join(" ")));
    }
    let when = When::Spec {
        minute: field(fields[0], MINUTES)?,
        hour: field(fields[1], HOURS)?,
        dom: field(fields[2], DAYS)?,
        month: field(fields[3], MONTHS)?,
        dow: field(fields[4], WEEKDAYS)?,
    };
    Ok(Schedule { when, zone })
}

fn has(bits: u64, value: i8) -> bool {
    bits & (1u64 << value) != 0
}

/// Midnight (or the given hour) of a civil date in a zone, as Go's `time.Date` resolves a
/// gap or a fold: the compatible choice.
fn at(zone: &TimeZone, civil: DateTime) -> Option<Zoned> {
    civil.to_zoned(zone.clone()).ok()
}

impl Schedule {
    /// The first time after `after` the schedule fires, in `zone` (unless the schedule
    /// names its own), or `None` when nothing comes within five years.
    pub fn next(&self, after: Timestamp, zone: &TimeZone) -> Option<Timestamp> {
        let zone = self.zone.as_ref().unwrap_or(zone);
        match &self.when {
            When::Every(seconds) => {
                let whole = Timestamp::from_second(after.as_second()).ok()?;
                whole.checked_add((*seconds).seconds()).ok()
            }
            When::Spec { minute, hour, dom, month, dow } => {
                next_spec((*minute, *hour, *dom, *month, *dow), after, zone)
            }
        }
    }
}

/// robfig's `SpecSchedule.Next`, with seconds fixed at 0.
fn next_spec(
    (minute, hour, dom, month, dow): (u64, u64, u64, u64, u64),
    after: Timestamp,
    zone: &TimeZone,
) -> Option<Timestamp> {
    let day_matches = |t: &Zoned| {
        let dom_match = has(dom, t.day());
        let dow_match = has(dow, t.weekday().to_sunday_zero_offset());
        if dom & STAR != 0 || dow & STAR != 0 { dom_match && dow_match } else { dom_match || dow_match }
    };
    // The upcoming whole second.
    let mut t = Timestamp::from_second(after.as_second().checked_add(1)?).ok()?.to_zoned(zone.clone());
    let mut added = false;
    let year_limit = t.year() + 5;
    'wrap: loop {
        if t.year() > year_limit {
            return None;
        }
        while !has(month, t.month()) {
            if !added {
                added = true;
                t = at(zone, jiff::civil::date(t.year(), t.month(), 1).at(0, 0, 0, 0))?;
            }
            t = at(zone, t.datetime().checked_add(1_i32.month()).ok()?)?;
            if t.month() == 1 {
                continue 'wrap;
            }
        }
        while !day_matches(&t) {
            if !added {
                added = true;
                t = at(zone, t.date().at(0, 0, 0, 0))?;
            }
            t = at(zone, t.datetime().checked_add(1_i32.day()).ok()?)?;
            // Past a daylight-saving change the day may not start at midnight.
            if t.hour() != 0 {
                let shift = if t.hour() > 12 { i64::from(24 - t.hour()) } else { -i64::from(t.hour()) };
                t = t.checked_add(shift.hours()).ok()?;
            }
            if t.day() == 1 {
                continue 'wrap;
            }
        }
        while !has(hour, t.hour()) {
            if !added {
                added = true;
                t = at(zone, t.date().at(t.hour(), 0, 0, 0))?;
            }
            t = t.checked_add(1_i32.hour()).ok()?;
            if t.hour() == 0 {
                continue 'wrap;
            }
        }
        while !has(minute, t.minute()) {
            if !added {
                added = true;
                t = Timestamp::from_second(t.timestamp().as_second().div_euclid(60) * 60).ok()?.to_zoned(zone.clone());
            }
            t = t.checked_add(1_i32.minute()).ok()?;
            if t.minute() == 0 {
                continue 'wrap;
            }
        }
        // Seconds: only 0 fires.
        while t.second() != 0 {
            if !added {
                added = true;
                t = Timestamp::from_second(t.timestamp().as_second()).ok()?.to_zoned(zone.clone());
            }
            t = t.checked_add(1_i32.second()).ok()?;
            if t.second() == 0 {
                continue 'wrap;
            }
        }
        return Some(t.timestamp());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn next(spec: &str, after: &str) -> Option<String> {
        parse(spec).unwrap().next(utc(after), &TimeZone::UTC).map(|t| t.to_string())
    }

    #[test]
    fn schedules_fire_at_their_next_minute() {
        assert_eq!(next("*/1 * * * *", "2026-01-01T00:00:00Z").as_deref(), Some("2026-01-01T00:01:00Z"));
        assert_eq!(next("*/1 * * * *", "2026-01-01T00:00:30Z").as_deref(), Some("2026-01-01T00:01:00Z"));
        assert_eq!(next("*/15 * * * *", "2026-01-01T00:16:00Z").as_deref(), Some("2026-01-01T00:30:00Z"));
        assert_eq!(next("0 9 * * MON-FRI", "2026-01-02T10:00:00Z").as_deref(), Some("2026-01-05T09:00:00Z"));
        assert_eq!(next("30 2 1 * *", "2026-01-15T00:00:00Z").as_deref(), Some("2026-02-01T02:30:00Z"));
        assert_eq!(next("0 0 29 2 *", "2026-03-01T00:00:00Z").as_deref(), Some("2028-02-29T00:00:00Z"));
        assert_eq!(next("@hourly", "2026-01-01T00:00:00Z").as_deref(), Some("2026-01-01T01:00:00Z"));
        assert_eq!(next("@weekly", "2026-01-01T00:00:00Z").as_deref(), Some("2026-01-04T00:00:00Z"));
        assert_eq!(next("@yearly", "2026-01-01T00:00:00Z").as_deref(), Some("2027-01-01T00:00:00Z"));
        assert_eq!(next("@every 90s", "2026-01-01T00:00:00.5Z").as_deref(), Some("2026-01-01T00:01:30Z"));
        // Never: February has no 31st, and robfig gives up after five years.
        assert_eq!(next("0 0 31 2 *", "2026-01-01T00:00:00Z"), None);
    }

    #[test]
    fn day_of_month_and_day_of_week_are_or_ed_when_both_are_restricted() {
        // The 13th, or any Friday: 2026-01-02 is a Friday.
        assert_eq!(next("0 0 13 * 5", "2026-01-01T00:00:00Z").as_deref(), Some("2026-01-02T00:00:00Z"));
        // A star in either makes it AND.
        assert_eq!(next("0 0 13 * *", "2026-01-01T00:00:00Z").as_deref(), Some("2026-01-13T00:00:00Z"));
        assert_eq!(next("0 0 ? * 5", "2026-01-03T00:00:00Z").as_deref(), Some("2026-01-09T00:00:00Z"));
    }

    #[test]
    fn time_zones_move_the_wall_clock_and_keep_daylight_saving() {
        let schedule = parse("0 9 * * *").unwrap();
        let new_york = zone("America/New_York").unwrap();
        // 09:00 in New York is 14:00 UTC in winter, 13:00 in summer.
        let winter = schedule.next(utc("2026-01-10T00:00:00Z"), &new_york).unwrap();
        assert_eq!(winter.to_string(), "2026-01-10T14:00:00Z");
        let summer = schedule.next(utc("2026-07-10T00:00:00Z"), &new_york).unwrap();
        assert_eq!(summer.to_string(), "2026-07-10T13:00:00Z");
        // A TZ= prefix wins over the zone given.
        let prefixed = parse("TZ=Asia/Tokyo 0 9 * * *").unwrap();
        assert_eq!(prefixed.next(utc("2026-01-10T00:00:00Z"), &new_york).unwrap().to_string(), "2026-01-11T00:00:00Z");
        assert_eq!(zone("Mars/Olympus").unwrap_err(), "unknown time zone Mars/Olympus");
        assert_eq!(
            parse("TZ=Mars/Olympus * * * * *").unwrap_err(),
            "provided bad location Mars/Olympus: unknown time zone Mars/Olympus"
        );
    }

    #[test]
    fn bad_schedules_say_what_robfig_says() {
        let error = |spec: &str| parse(spec).unwrap_err();
        assert_eq!(error(""), "empty spec string");
        assert_eq!(error("bad"), "expected exactly 5 fields, found 1: [bad]");
        assert_eq!(error("* * * * * *"), "expected exactly 5 fields, found 6: [* * * * * *]");
        assert_eq!(error("60 * * * *"), "end of range (60) above maximum (59): 60");
        assert_eq!(error("* * 0 * *"), "beginning of range (0) below minimum (1): 0");
        assert_eq!(error("* * * * 7"), "end of range (7) above maximum (6): 7");
        assert_eq!(error("5-1 * * * *"), "beginning of range (5) beyond end of range (1): 5-1");
        assert_eq!(error("*/0 * * * *"), "step of range should be a positive number: */0");
        assert_eq!(error("1-2-3 * * * *"), "too many hyphens: 1-2-3");
        assert_eq!(error("*/2/3 * * * *"), "too many slashes: */2/3");
        assert_eq!(error("x * * * *"), "failed to parse int from x: strconv.Atoi: parsing \"x\": invalid syntax");
        assert_eq!(error("@fortnightly"), "unrecognized descriptor: @fortnightly");
        assert!(parse("0 0 * JAN-mar sun,SAT").is_ok());
        assert!(parse("0 0 1,15 * *").is_ok());
    }
}
