//! The CronJob controller, as Kubernetes' (`pkg/controller/cronjob`, v2): at each time the
//! schedule names (robfig/cron's syntax, in `spec.timeZone`, through
//! `kubeyard_compiler::cron`) it makes a Job from the template, named
//! `<cronjob>-<minutes since the epoch>` so that a time is never run twice, owned by the
//! CronJob and annotated with its scheduled time. Only the latest missed time runs; one
//! older than `startingDeadlineSeconds` is missed (`MissSchedule`). `concurrencyPolicy`
//! `Forbid` skips a time while a Job runs, `Replace` deletes the running ones first.
//! `suspend` stops new Jobs. Finished Jobs leave `status.active` (`SawCompletedJob`), a
//! success moves `lastSuccessfulTime`, and only the newest `successfulJobsHistoryLimit` /
//! `failedJobsHistoryLimit` finished Jobs are kept.
//!
//! Every wait is on the control plane's clock, so advancing a virtual clock an hour runs a
//! `*/1` schedule's sixty Jobs in moments. `decide` is the pure part, table-tested.

use super::{Error, Wakeups, Wiring, owner_reference};
use crate::clock::{self, Clock};
use crate::events::{self, Source, Type};
use crate::informers::{Expectations, Informer, Informers, UNMET_RETRY, Written, key_of_object};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::jiff;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, PostParams, PropagationPolicy};
use kube::runtime::controller::Action;
use kubeyard_compiler::cron::{self, Schedule};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const COMPONENT: &str = "cronjob-controller";
const SCHEDULED: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// `nextScheduleDelta`: woken this long after a scheduled time, to be past it.
const DELTA: Duration = Duration::from_millis(100);
/// More missed times than this are worth a warning.
const MANY_MISSED: i64 = 100;

struct Context {
    client: kube::Client,
    clock: Clock,
    wakeups: Wakeups<CronJob>,
    jobs: Informer<Job>,
    jobs_expected: Expectations<Job>,
    cronjobs_expected: Expectations<CronJob>,
}

/// Runs until the task is dropped.
pub async fn run(client: kube::Client, informers: &Informers, clock: &Clock) {
    let mut wiring = Wiring::of(&informers.cronjobs).owns(&informers.jobs);
    let context = Arc::new(Context {
        client,
        clock: clock.clone(),
        wakeups: wiring.wakeups(clock),
        jobs: informers.jobs.clone(),
        jobs_expected: Expectations::new(&informers.jobs),
        cronjobs_expected: Expectations::new(&informers.cronjobs),
    });
    wiring.run(reconcile, context).await;
}

fn seconds(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn at_seconds(seconds: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::try_from(seconds).unwrap_or(0))
}

/// The schedule's next time after `after`, in whole seconds (`None`: never).
fn next(schedule: &Schedule, zone: &jiff::tz::TimeZone, after: i64) -> Option<i64> {
    let after = jiff::Timestamp::from_second(after).ok()?;
    schedule.next(after, zone).map(|t| t.as_second())
}

/// What `mostRecentScheduleTime` finds: the earliest time considered, the latest due
/// time (if any), and whether many were missed.
struct Due {
    earliest: i64,
    latest: Option<i64>,
    many_missed: bool,
}

fn most_recent(
    cronjob: &CronJob,
    now: i64,
    schedule: &Schedule,
    zone: &jiff::tz::TimeZone,
    with_deadline: bool,
) -> Result<Due, String> {
    let created = cronjob.metadata.creation_timestamp.as_ref().map_or(0, |t| t.0.as_second());
    let mut earliest = status_time(cronjob, |s| s.last_schedule_time.as_ref()).unwrap_or(created);
    if with_deadline && let Some(deadline) = cronjob.spec.as_ref().and_then(|s| s.starting_deadline_seconds) {
        earliest = earliest.max(now.saturating_sub(deadline));
    }
    let invalid = || "time difference between two schedules is less than 1 second".to_string();
    let t1 = next(schedule, zone, earliest);
    let t2 = t1.and_then(|t1| next(schedule, zone, t1));
    match (t1, t2) {
        (Some(t1), _) if now < t1 => return Ok(Due { earliest, latest: None, many_missed: false }),
        (Some(t1), Some(t2)) if now < t2 => return Ok(Due { earliest, latest: Some(t1), many_missed: false }),
        (Some(_), Some(_)) => {}
        _ => return Err(invalid()),
    }
    let (t1, t2) = (t1.unwrap_or_default(), t2.unwrap_or_default());
    let between = t2 - t1;
    if between < 1 {
        return Err(invalid());
    }
    let missed = (now - t1) / between + 1;
    // From a schedule time before the estimate (`t1 + (missed - 2) × between` is not one on
    // an uneven schedule such as `0 0 * * 0,6`), walk forward through times the schedule
    // names, as Kubernetes does: what is kept is always one of them.
    let estimate = t1.saturating_add((missed - 2).max(0).saturating_mul(between));
    let mut latest = t1;
    let mut from = estimate;
    while let Some(t) = next(schedule, zone, from).filter(|t| *t <= now) {
        latest = t;
        from = t;
    }
    if latest < estimate {
        // The estimate landed after every time up to now: walk from `t1` instead.
        from = t1;
        while let Some(t) = next(schedule, zone, from).filter(|t| *t <= now) {
            latest = t;
            from = t;
        }
    }
    Ok(Due { earliest, latest: Some(latest), many_missed: missed > MANY_MISSED })
}

fn status_time(
    cronjob: &CronJob,
    field: impl Fn(
        &k8s_openapi::api::batch::v1::CronJobStatus,
    ) -> Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
) -> Option<i64> {
    cronjob.status.as_ref().and_then(field).map(|t| t.0.as_second())
}

/// How a Job ended: `Complete` or `Failed` (`IsJobFinished`), if it did.
fn finished(job: &Job) -> Option<&'static str> {
    let conditions = job.status.as_ref().and_then(|s| s.conditions.as_ref())?;
    ["Complete", "Failed"].into_iter().find(|kind| conditions.iter().any(|c| c.type_ == *kind && c.status == "True"))
}

/// What a pass decided.
#[derive(Debug, Default, PartialEq)]
struct Decision {
    /// The status to write, when it changed: `active` refs, `lastScheduleTime`,
    /// `lastSuccessfulTime`.
    status: Option<Value>,
    /// Jobs to delete (history beyond its limits, the running ones under `Replace`).
    delete: Vec<String>,
    /// The Job to create and the time it is for.
    create: Option<(Value, i64)>,
    events: Vec<(Type, &'static str, String)>,
    /// When to look again.
    requeue: Option<Duration>,
}

struct Snapshot<'a> {
    cronjob: &'a CronJob,
    jobs: Vec<Arc<Job>>,
    now: SystemTime,
}

fn reference(job: &Job) -> Value {
    json!({"kind": "Job", "namespace": job.namespace(), "name": job.name_any(), "uid": job.uid(),
           "apiVersion": "batch/v1", "resourceVersion": job.resource_version()})
}

/// `cleanupFinishedJobs`: the oldest finished Jobs past each limit (by start time, those
/// without one last, then by name).
fn history_to_delete(cronjob: &CronJob, jobs: &[Arc<Job>]) -> Vec<String> {
    let spec = cronjob.spec.clone().unwrap_or_default();
    let mut delete = Vec::new();
    for (outcome, limit) in
        [("Complete", spec.successful_jobs_history_limit), ("Failed", spec.failed_jobs_history_limit)]
    {
        let Some(limit) = limit else { continue };
        let mut done: Vec<&Arc<Job>> = jobs.iter().filter(|j| finished(j) == Some(outcome)).collect();
        done.sort_by_key(|job| {
            let start = job.status.as_ref().and_then(|s| s.start_time.as_ref()).map(|t| t.0.as_second());
            (start.is_none(), start, job.name_any())
        });
        let excess = done.len().saturating_sub(usize::try_from(limit).unwrap_or(0));
        delete.extend(done.into_iter().take(excess).map(|job| job.name_any()));
    }
    delete
}

fn decide(snapshot: &Snapshot<'_>) -> Decision {
    let cronjob = snapshot.cronjob;
    let spec = cronjob.spec.clone().unwrap_or_default();
    let now = seconds(snapshot.now);
    let mut decision = Decision { delete: history_to_delete(cronjob, &snapshot.jobs), ..Decision::default() };
    let before = serde_json::to_value(cronjob.status.clone().unwrap_or_default()).unwrap_or_else(|_| json!({}));
    let mut active: Vec<Value> = before.get("active").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut last_success = status_time(cronjob, |s| s.last_successful_time.as_ref());
    let mut last_schedule = status_time(cronjob, |s| s.last_schedule_time.as_ref());
    let is_active = |active: &[Value], uid: &str| active.iter().any(|r| r["uid"] == uid);
    let mut events: Vec<(Type, &'static str, String)> = Vec::new();
    let mut event = |kind, reason, message: String| events.push((kind, reason, message));
    for job in &snapshot.jobs {
        let uid = job.uid().unwrap_or_default();
        let found = is_active(&active, &uid);
        match finished(job) {
            None if !found => event(
                Type::Warning,
                "UnexpectedJob",
                format!("Saw a job that the controller did not create or forgot: {}", job.name_any()),
            ),
            Some(outcome) if found => {
                active.retain(|r| r["uid"] != uid.as_str());
                event(
                    Type::Normal,
                    "SawCompletedJob",
                    format!("Saw completed job: {}, status: {outcome}", job.name_any()),
                );
            }
            _ => {}
        }
        if finished(job) == Some("Complete") {
            let completed = job.status.as_ref().and_then(|s| s.completion_time.as_ref()).map(|t| t.0.as_second());
            if let Some(completed) = completed {
                last_success = Some(last_success.map_or(completed, |l| l.max(completed)));
            }
        }
    }
    let uids: Vec<String> = snapshot.jobs.iter().filter_map(|j| j.uid()).collect();
    active.retain(|r| {
        let present = uids.iter().any(|u| r["uid"] == u.as_str());
        if !present {
            event(
                Type::Normal,
                "MissingJob",
                format!("Active job went missing: {}", r["name"].as_str().unwrap_or_default()),
            );
        }
        present
    });
    // History cleanup takes deleted Jobs off the active list too.
    active.retain(|r| !decision.delete.iter().any(|d| r["name"] == d.as_str()));

    let schedule_and_zone = (|| {
        if cronjob.metadata.deletion_timestamp.is_some() {
            return None;
        }
        let zone_name = spec.time_zone.clone().unwrap_or_default();
        let zone = match cron::zone(&zone_name) {
            Ok(zone) => zone,
            Err(why) => {
                event(Type::Warning, "UnknownTimeZone", format!("invalid timeZone: {zone_name:?}: {why}"));
                return None;
            }
        };
        if spec.suspend == Some(true) {
            return None;
        }
        if spec.schedule.contains("TZ") {
            event(
                Type::Warning,
                "UnsupportedSchedule",
                format!(
                    "CRON_TZ or TZ used in schedule {:?} is not officially supported, see \
                     https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/ for more details",
                    spec.schedule
                ),
            );
        }
        match cron::parse(&spec.schedule) {
            Ok(schedule) => Some((schedule, zone)),
            Err(why) => {
                event(
                    Type::Warning,
                    "UnparseableSchedule",
                    format!("unparseable schedule: {:?} : {why}", spec.schedule),
                );
                None
            }
        }
    })();

    if let Some((schedule, zone)) = schedule_and_zone {
        // With the status as this pass leaves it so far.
        let mut seen = cronjob.clone();
        if let Some(status) = seen.status.as_mut() {
            status.last_schedule_time = last_schedule.map(|s| clock_time(at_seconds(s)));
        }
        let requeue = |cronjob: &CronJob| -> Duration {
            let after = match most_recent(cronjob, now, &schedule, &zone, false) {
                Err(_) => now,
                Ok(Due { latest: Some(latest), .. }) => latest,
                Ok(Due { earliest, .. }) => earliest,
            };
            let at = next(&schedule, &zone, after).unwrap_or(now + 365 * 86_400);
            Duration::from_secs(u64::try_from((at - now).max(0)).unwrap_or(0)) + DELTA
        };
        match most_recent(&seen, now, &schedule, &zone, true) {
            Err(why) => event(Type::Warning, "InvalidSchedule", format!("invalid schedule: {} : {why}", spec.schedule)),
            Ok(Due { latest: None, .. }) => decision.requeue = Some(requeue(&seen)),
            Ok(Due { latest: Some(scheduled), many_missed, .. }) => {
                if many_missed {
                    event(
                        Type::Warning,
                        "TooManyMissedTimes",
                        "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew"
                            .into(),
                    );
                }
                let name = format!("{}-{}", cronjob.name_any(), scheduled / 60);
                let too_late = spec.starting_deadline_seconds.is_some_and(|d| scheduled.saturating_add(d) < now);
                if too_late {
                    let when = jiff::Timestamp::from_second(scheduled)
                        .map(|t| t.strftime("%a, %d %b %Y %H:%M:%S +0000").to_string());
                    event(
                        Type::Warning,
                        "MissSchedule",
                        format!("Missed scheduled time to start a job: {}", when.unwrap_or_default()),
                    );
                } else if active.iter().any(|r| r["name"] == name.as_str()) || last_schedule == Some(scheduled) {
                    // Already done.
                } else if spec.concurrency_policy.as_deref() == Some("Forbid") && !active.is_empty() {
                    event(
                        Type::Normal,
                        "JobAlreadyActive",
                        "Not starting job because prior execution is running and concurrency policy is Forbid".into(),
                    );
                } else {
                    if spec.concurrency_policy.as_deref() == Some("Replace") {
                        for reference in active.drain(..) {
                            let name = reference["name"].as_str().unwrap_or_default().to_string();
                            if !decision.delete.contains(&name) {
                                decision.delete.push(name);
                            }
                        }
                    }
                    decision.create = Some((job_from_template(cronjob, &name, scheduled, &zone), scheduled));
                    last_schedule = Some(scheduled);
                }
                let mut seen = seen.clone();
                if let Some(status) = seen.status.as_mut() {
                    status.last_schedule_time = last_schedule.map(|s| clock_time(at_seconds(s)));
                } else {
                    seen.status = Some(k8s_openapi::api::batch::v1::CronJobStatus {
                        last_schedule_time: last_schedule.map(|s| clock_time(at_seconds(s))),
                        ..Default::default()
                    });
                }
                decision.requeue = Some(requeue(&seen));
            }
        }
    }

    let mut status = json!({});
    if !active.is_empty() {
        status["active"] = Value::Array(active);
    }
    if let Some(at) = last_schedule {
        status["lastScheduleTime"] = json!(clock::format(at_seconds(at)));
    }
    if let Some(at) = last_success {
        status["lastSuccessfulTime"] = json!(clock::format(at_seconds(at)));
    }
    if !super::same_content(&before, &status) {
        decision.status = Some(status);
    }
    decision.events = events;
    decision
}

fn clock_time(at: SystemTime) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    super::time_at(at)
}

/// `getJobFromTemplate2`: the template's labels, annotations (and the scheduled time in the
/// CronJob's zone) and spec, owned by the CronJob.
fn job_from_template(cronjob: &CronJob, name: &str, scheduled: i64, zone: &jiff::tz::TimeZone) -> Value {
    let template = cronjob.spec.as_ref().map(|s| s.job_template.clone()).unwrap_or_default();
    let metadata = template.metadata.unwrap_or_default();
    let mut annotations = metadata.annotations.unwrap_or_default();
    if let Ok(at) = jiff::Timestamp::from_second(scheduled) {
        let local = at.to_zoned(zone.clone());
        let text = if local.offset().seconds() == 0 {
            local.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
        } else {
            local.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
        };
        annotations.insert(SCHEDULED.into(), text);
    }
    let mut job = json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": cronjob.namespace(),
            "annotations": annotations,
            "ownerReferences": [owner_reference(cronjob).ok()],
        },
        "spec": template.spec,
    });
    if let Some(labels) = metadata.labels.filter(|l| !l.is_empty()) {
        job["metadata"]["labels"] = json!(labels);
    }
    job
}

async fn reconcile(cronjob: Arc<CronJob>, context: Arc<Context>) -> Result<Action, Error> {
    let key = key_of_object(cronjob.as_ref());
    if !context.jobs_expected.met(&key) || !context.cronjobs_expected.met(&key) {
        return Ok(Action::requeue(UNMET_RETRY));
    }
    let namespace = cronjob.namespace().unwrap_or_default();
    let uid = cronjob.uid().unwrap_or_default();
    let jobs = context.jobs.controlled_by(&namespace, &uid);
    let snapshot = Snapshot { cronjob: &cronjob, jobs, now: context.clock.now() };
    let decision = decide(&snapshot);
    let (jobs_written, cronjobs_written) = (Written::default(), Written::default());
    let result = apply(&cronjob, decision, &context, &jobs_written, &cronjobs_written).await;
    context.jobs_expected.expect(&key, &jobs_written);
    context.cronjobs_expected.expect(&key, &cronjobs_written);
    result
}

async fn apply(
    cronjob: &CronJob,
    mut decision: Decision,
    context: &Context,
    jobs_written: &Written,
    cronjobs_written: &Written,
) -> Result<Action, Error> {
    let namespace = cronjob.namespace().unwrap_or_default();
    let jobs: Api<Job> = Api::namespaced(context.client.clone(), &namespace);
    let object = json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": cronjob.metadata});
    let source = Source { component: COMPONENT, host: None };
    let timestamp = context.clock.timestamp();
    let say = |kind, reason: &'static str, message: String| {
        let (client, object, timestamp) = (context.client.clone(), object.clone(), timestamp.clone());
        async move { events::record(&client, &object, source, kind, reason, &message, &timestamp).await }
    };
    for (kind, reason, message) in std::mem::take(&mut decision.events) {
        say(kind, reason, message).await;
    }
    for name in &decision.delete {
        let background = DeleteParams { propagation_policy: Some(PropagationPolicy::Background), ..Default::default() };
        match jobs.delete(name, &background).await {
            Ok(_) => say(Type::Normal, "SuccessfulDelete", format!("Deleted job {name}")).await,
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(error) => {
                say(Type::Warning, "FailedDelete", format!("Deleted job: {error}")).await;
                return Err(error.into());
            }
        }
    }
    let mut status = decision.status.take();
    if let Some((job, _)) = decision.create.take() {
        let job: Job = serde_json::from_value(job).map_err(|e| Error::Invalid(e.to_string()))?;
        let created = match jobs.create(&PostParams::default(), &job).await {
            Ok(created) => {
                say(Type::Normal, "SuccessfulCreate", format!("Created job {}", created.name_any())).await;
                jobs_written.note(&created);
                created
            }
            Err(kube::Error::Api(error)) if error.code == 409 => {
                // Made by an earlier pass whose status write was lost: adopt it if ours.
                let existing = jobs.get(&job.name_any()).await?;
                if crate::informers::controller_of(&existing) != cronjob.uid().as_deref() {
                    return Err(Error::Invalid(format!(
                        "job {} exists and is not owned by this CronJob",
                        job.name_any()
                    )));
                }
                existing
            }
            Err(error) => {
                say(Type::Warning, "FailedCreate", format!("Error creating job: {error}")).await;
                return Err(error.into());
            }
        };
        let status = status.get_or_insert_with(|| json!({}));
        let active = status.as_object_mut().map(|s| s.entry("active").or_insert_with(|| json!([])));
        if let Some(Value::Array(active)) = active
            && !active.iter().any(|r| r["uid"] == created.uid().unwrap_or_default().as_str())
        {
            active.push(reference(&created));
        }
    }
    if let Some(status) = status {
        let mut next = cronjob.clone();
        next.status = Some(serde_json::from_value(status).map_err(|e| Error::Invalid(e.to_string()))?);
        let api: Api<CronJob> = Api::namespaced(context.client.clone(), &namespace);
        let written = api.replace_status(&cronjob.name_any(), &PostParams::default(), &next).await?;
        cronjobs_written.note(&written);
    }
    if let Some(after) = decision.requeue {
        context.wakeups.after(cronjob, after);
    }
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cronjob(spec: Value, status: Value) -> CronJob {
        let mut spec = spec;
        spec["jobTemplate"] = json!({"metadata": {"labels": {"app": "report"}},
                                     "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox"}],
                                                                     "restartPolicy": "OnFailure"}}}});
        serde_json::from_value(json!({
            "metadata": {"name": "report", "namespace": "ops", "uid": "cj-1", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": spec,
            "status": status,
        }))
        .unwrap()
    }

    fn job(name: &str, uid: &str, outcome: Option<&str>, start: &str) -> Arc<Job> {
        let mut job = json!({"metadata": {"name": name, "namespace": "ops", "uid": uid},
                             "status": {"startTime": start}});
        if let Some(outcome) = outcome {
            job["status"]["conditions"] = json!([{"type": outcome, "status": "True"}]);
            job["status"]["completionTime"] = json!(start);
        }
        Arc::new(serde_json::from_value(job).unwrap())
    }

    fn at(text: &str) -> SystemTime {
        clock::parse(text).unwrap()
    }

    fn decide_at(cronjob: &CronJob, jobs: Vec<Arc<Job>>, now: &str) -> Decision {
        decide(&Snapshot { cronjob, jobs, now: at(now) })
    }

    #[test]
    fn a_due_time_makes_its_job_named_after_the_minute() {
        let cronjob = cronjob(json!({"schedule": "*/1 * * * *"}), json!({}));
        let early = decide_at(&cronjob, Vec::new(), "2026-01-01T00:00:30Z");
        assert_eq!(early.create, None);
        assert_eq!(early.requeue, Some(Duration::from_secs(30) + DELTA));
        let due = decide_at(&cronjob, Vec::new(), "2026-01-01T00:01:00Z");
        let (job, scheduled) = due.create.unwrap();
        assert_eq!(scheduled, seconds(at("2026-01-01T00:01:00Z")));
        assert_eq!(job["metadata"]["name"], format!("report-{}", scheduled / 60));
        assert_eq!(job["metadata"]["labels"], json!({"app": "report"}));
        assert_eq!(job["metadata"]["annotations"][SCHEDULED], "2026-01-01T00:01:00Z");
        assert_eq!(job["metadata"]["ownerReferences"][0]["kind"], "CronJob");
        assert_eq!(job["spec"]["template"]["spec"]["restartPolicy"], "OnFailure");
        assert_eq!(due.status.unwrap()["lastScheduleTime"], "2026-01-01T00:01:00Z");
        assert_eq!(due.requeue, Some(Duration::from_secs(60) + DELTA));
        assert!(due.events.is_empty());
    }

    #[test]
    fn only_the_latest_missed_time_runs_and_a_late_one_is_missed() {
        let cronjob = cronjob(json!({"schedule": "*/1 * * * *"}), json!({}));
        // Three hours late: one Job, for the latest minute, and a warning.
        let late = decide_at(&cronjob, Vec::new(), "2026-01-01T03:00:10Z");
        assert_eq!(late.create.unwrap().1, seconds(at("2026-01-01T03:00:00Z")));
        assert_eq!(late.events[0].1, "TooManyMissedTimes");
        // Past its deadline, a time is not looked for at all (the deadline bounds the
        // search, as in Kubernetes): no Job, no event, the next hour awaited.
        let strict = super::tests::cronjob(json!({"schedule": "0 * * * *", "startingDeadlineSeconds": 30}), json!({}));
        let missed = decide_at(&strict, Vec::new(), "2026-01-01T01:00:45Z");
        assert_eq!((missed.create, missed.events), (None, Vec::new()));
        assert_eq!(missed.requeue, Some(Duration::from_secs(59 * 60 + 15) + DELTA));
        let in_time = decide_at(&strict, Vec::new(), "2026-01-01T01:00:25Z");
        assert_eq!(in_time.create.unwrap().1, seconds(at("2026-01-01T01:00:00Z")));
    }

    #[test]
    fn an_uneven_schedule_runs_only_at_times_it_names() {
        // Weekends at midnight; created on Thursday 2026-01-01, looked at the next Friday.
        let weekends = cronjob(json!({"schedule": "0 0 * * 0,6"}), json!({}));
        let (_, scheduled) = decide_at(&weekends, Vec::new(), "2026-01-09T12:00:00Z").create.unwrap();
        assert_eq!(scheduled, seconds(at("2026-01-04T00:00:00Z")), "Sunday the 4th, the last weekend midnight");
        let weekdays = cronjob(json!({"schedule": "0 9 * * 1-5"}), json!({}));
        let (_, scheduled) = decide_at(&weekdays, Vec::new(), "2026-01-20T08:00:00Z").create.unwrap();
        assert_eq!(scheduled, seconds(at("2026-01-19T09:00:00Z")), "Monday the 19th at nine");
    }

    #[test]
    fn concurrency_policies_forbid_or_replace_a_running_job() {
        let running = json!({"active": [{"kind": "Job", "name": "report-1", "namespace": "ops", "uid": "j-1"}],
                             "lastScheduleTime": "2026-01-01T00:01:00Z"});
        let jobs = || vec![job("report-1", "j-1", None, "2026-01-01T00:01:00Z")];
        let forbid = cronjob(json!({"schedule": "*/1 * * * *", "concurrencyPolicy": "Forbid"}), running.clone());
        let decision = decide_at(&forbid, jobs(), "2026-01-01T00:02:00Z");
        assert_eq!(decision.create, None);
        assert_eq!(decision.events[0].1, "JobAlreadyActive");
        let replace = cronjob(json!({"schedule": "*/1 * * * *", "concurrencyPolicy": "Replace"}), running.clone());
        let decision = decide_at(&replace, jobs(), "2026-01-01T00:02:00Z");
        assert_eq!(decision.delete, vec!["report-1".to_string()]);
        assert!(decision.create.is_some());
        let allow = cronjob(json!({"schedule": "*/1 * * * *"}), running);
        let decision = decide_at(&allow, jobs(), "2026-01-01T00:02:00Z");
        assert!(decision.create.is_some() && decision.delete.is_empty());
    }

    #[test]
    fn finished_jobs_leave_the_active_list_and_old_ones_are_deleted() {
        let status = json!({"active": [{"kind": "Job", "name": "report-3", "uid": "j-3"},
                                       {"kind": "Job", "name": "gone", "uid": "j-9"}],
                            "lastScheduleTime": "2026-01-01T00:03:00Z"});
        let cronjob = cronjob(
            json!({"schedule": "*/1 * * * *", "successfulJobsHistoryLimit": 1, "failedJobsHistoryLimit": 0}),
            status,
        );
        let jobs = vec![
            job("report-1", "j-1", Some("Complete"), "2026-01-01T00:01:00Z"),
            job("report-2", "j-2", Some("Failed"), "2026-01-01T00:02:00Z"),
            job("report-3", "j-3", Some("Complete"), "2026-01-01T00:03:00Z"),
        ];
        let decision = decide_at(&cronjob, jobs, "2026-01-01T00:03:30Z");
        assert_eq!(decision.delete, vec!["report-1".to_string(), "report-2".to_string()]);
        let reasons: Vec<&str> = decision.events.iter().map(|e| e.1).collect();
        assert_eq!(reasons, ["SawCompletedJob", "MissingJob"]);
        assert_eq!(decision.events[0].2, "Saw completed job: report-3, status: Complete");
        let status = decision.status.unwrap();
        assert!(status.get("active").is_none(), "{status}");
        assert_eq!(status["lastSuccessfulTime"], "2026-01-01T00:03:00Z");
    }

    #[test]
    fn suspended_zoned_and_broken_schedules() {
        let suspended = cronjob(json!({"schedule": "*/1 * * * *", "suspend": true}), json!({}));
        let decision = decide_at(&suspended, Vec::new(), "2026-01-01T00:05:00Z");
        assert_eq!((decision.create, decision.requeue), (None, None));
        let zoned = cronjob(json!({"schedule": "0 9 * * *", "timeZone": "Asia/Tokyo"}), json!({}));
        let (job, scheduled) = decide_at(&zoned, Vec::new(), "2026-01-02T00:00:30Z").create.unwrap();
        assert_eq!(scheduled, seconds(at("2026-01-02T00:00:00Z")), "09:00 in Tokyo is midnight UTC");
        assert_eq!(job["metadata"]["annotations"][SCHEDULED], "2026-01-02T09:00:00+09:00");
        let unknown = cronjob(json!({"schedule": "0 9 * * *", "timeZone": "Mars/Olympus"}), json!({}));
        let decision = decide_at(&unknown, Vec::new(), "2026-01-01T10:00:00Z");
        assert_eq!(decision.events[0].2, "invalid timeZone: \"Mars/Olympus\": unknown time zone Mars/Olympus");
        let broken = cronjob(json!({"schedule": "not a schedule"}), json!({}));
        let decision = decide_at(&broken, Vec::new(), "2026-01-01T10:00:00Z");
        assert_eq!(
            decision.events[0].2,
            "unparseable schedule: \"not a schedule\" : expected exactly 5 fields, found 3: [not a schedule]"
        );
        let never = cronjob(json!({"schedule": "59 23 31 2 *"}), json!({}));
        let decision = decide_at(&never, Vec::new(), "2026-01-01T10:00:00Z");
        assert_eq!(decision.events[0].1, "InvalidSchedule");
    }
}
