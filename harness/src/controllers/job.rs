//! The Job controller, as Kubernetes' (pkg/controller/job) since 1.31: pods run to
//! completion until `completions` of them succeeded (`NonIndexed`), or one per index
//! `0..completions` did (`Indexed`: the index in the `batch.kubernetes.io/job-completion-index`
//! annotation and label, the pod's hostname `<job>-<index>` and `JOB_COMPLETION_INDEX`);
//! never more than `parallelism` at a time. With no `completions`, the first success
//! ends it. Pods are named `<job>-<random>` (`<job>-<index>-<random>`), carry the
//! template's labels (the API server put the Job's own there) and an owner reference.
//!
//! Finished pods are counted as Kubernetes counts them: each pod is made with the
//! `batch.kubernetes.io/job-tracking` finalizer; a finished pod's uid goes into
//! `status.uncountedTerminatedPods` first, then its finalizer is removed, then it moves
//! into `succeeded` or `failed`, so a pod deleted meanwhile is neither lost nor counted
//! twice. A pod deleted before it succeeded counts as failed (unless
//! `podReplacementPolicy: Failed`).
//!
//! More failures than `backoffLimit` (or, with `restartPolicy: OnFailure`, as many
//! container restarts) end the Job with `BackoffLimitExceeded`, running past
//! `activeDeadlineSeconds` with `DeadlineExceeded`: `FailureTarget` first, the active pods
//! deleted, then `Failed` once none is terminating. Success is `SuccessCriteriaMet`
//! (`CompletionsReached`), then `Complete` and `completionTime` once no pod is left
//! running. `suspend` deletes the active pods and sets `Suspended`; resuming resets
//! `startTime`. Left out: the exponential delay before replacing failed pods, pod failure
//! and success policies, `backoffLimitPerIndex`, events.

use super::Error;
use super::pods::{
    Naming, Pods, Reporter, creation, deleting, from_template, is_ready, is_terminal, phase, removal_rank,
    template_metadata,
};
use super::{Wakeups, Wiring, label_selector, owner_reference, same_content};
use crate::clock::Clock;
use crate::informers::{Expectations, Informer, Informers, UNMET_RETRY, Written, key_of_object};
use futures_util::StreamExt;
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use kube::runtime::controller::Action;
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
const INDEX: &str = "batch.kubernetes.io/job-completion-index";
/// `spec.managedBy` of Jobs this controller manages (unset means it too).
const MANAGER: &str = "kubernetes.io/job-controller";
/// Pods made or deleted in one pass at most (`MaxPodCreateDeletePerSync`).
const BURST: usize = 500;
const RESYNC: Duration = Duration::from_secs(10);

const SUCCESS_CRITERIA_MET: &str = "SuccessCriteriaMet";
const COMPLETE: &str = "Complete";
const FAILURE_TARGET: &str = "FailureTarget";
const FAILED: &str = "Failed";
const SUSPENDED: &str = "Suspended";
const COMPLETIONS_REACHED: (&str, &str) = ("CompletionsReached", "Reached expected number of succeeded pods");
const BACKOFF_LIMIT_EXCEEDED: (&str, &str) = ("BackoffLimitExceeded", "Job has reached the specified backoff limit");
const DEADLINE_EXCEEDED: (&str, &str) = ("DeadlineExceeded", "Job was active longer than specified deadline");

struct Context {
    client: kube::Client,
    clock: Clock,
    wakeups: Wakeups<Job>,
    jobs: Informer<Job>,
    pods: Informer<Pod>,
    pods_expected: Expectations<Pod>,
    jobs_expected: Expectations<Job>,
}

/// Runs until the task is dropped.
pub async fn run(client: kube::Client, informers: &Informers, clock: &Clock) {
    let mut wiring = Wiring::of(&informers.jobs).owns(&informers.pods).reads(&informers.jobs);
    let context = Arc::new(Context {
        client,
        clock: clock.clone(),
        wakeups: wiring.wakeups(clock),
        jobs: informers.jobs.clone(),
        pods: informers.pods.clone(),
        pods_expected: Expectations::new(&informers.pods),
        jobs_expected: Expectations::new(&informers.jobs),
    });
    // Orphans are released from the filled caches too.
    wiring.synced().await;
    tokio::join!(wiring.run(reconcile, Arc::clone(&context)), release_orphans(&context));
}

/// What the Job's spec asks for, with the API server's defaults.
#[derive(Debug, PartialEq)]
struct Settings {
    completions: Option<i32>,
    parallelism: i32,
    backoff_limit: i32,
    indexed: bool,
    suspended: bool,
    deadline: Option<i64>,
    /// `podReplacementPolicy: Failed`: a terminating pod is replaced only once it failed.
    only_replace_failed: bool,
    restart_on_failure: bool,
}

impl Settings {
    fn of(job: &Job) -> Result<Settings, Error> {
        let spec = job.spec.as_ref().ok_or_else(|| Error::Invalid("a Job without a spec".into()))?;
        let restart = spec.template.spec.as_ref().and_then(|s| s.restart_policy.as_deref());
        Ok(Settings {
            completions: spec.completions,
            parallelism: spec.parallelism.unwrap_or(1).max(0),
            backoff_limit: spec.backoff_limit.unwrap_or(6),
            indexed: spec.completion_mode.as_deref() == Some("Indexed"),
            suspended: spec.suspend.unwrap_or(false),
            deadline: spec.active_deadline_seconds,
            only_replace_failed: spec.pod_replacement_policy.as_deref() == Some("Failed")
                || spec.pod_failure_policy.is_some(),
            restart_on_failure: restart == Some("OnFailure"),
        })
    }

    /// `isPodFailed`: failed, or (unless only failed pods are replaced) deleted before it
    /// succeeded.
    fn failed(&self, pod: &Pod) -> bool {
        phase(pod) == "Failed" || (!self.only_replace_failed && deleting(pod) && phase(pod) != "Succeeded")
    }

    /// How many pods should be running (`manageJob`'s `wantActive`).
    fn want_active(&self, active: usize, succeeded: usize) -> usize {
        let parallelism = usize::try_from(self.parallelism).unwrap_or(0);
        match self.completions {
            // Once one pod succeeded none is added; those running carry on.
            None if succeeded > 0 => active,
            None => parallelism,
            Some(completions) => usize::try_from(completions).unwrap_or(0).saturating_sub(succeeded).min(parallelism),
        }
    }
}

async fn reconcile(job: Arc<Job>, context: Arc<Context>) -> Result<Action, Error> {
    let key = key_of_object(job.as_ref());
    if !context.pods_expected.met(&key) || !context.jobs_expected.met(&key) {
        return Ok(Action::requeue(UNMET_RETRY));
    }
    let namespace = job.namespace().unwrap_or_else(|| "default".into());
    let pods = Pods::new(&context.client, &context.pods, &namespace).reporting(Reporter::of(
        (&context.client, &context.clock),
        job.as_ref(),
        ("batch/v1", "Job"),
        "job-controller",
    ));
    let written = Written::default();
    let result = sync(job.as_ref().clone(), &context, &pods, &written).await;
    // The next pass reads the caches: it waits until they hold what this one wrote.
    context.pods_expected.expect(&key, pods.written());
    context.jobs_expected.expect(&key, &written);
    result
}

/// `spec.managedBy` leaves the Job to this controller.
fn managed(job: &Job) -> bool {
    job.spec.as_ref().and_then(|s| s.managed_by.as_deref()).is_none_or(|m| m == MANAGER)
}

async fn sync(job: Job, context: &Context, pods: &Pods, written: &Written) -> Result<Action, Error> {
    if !managed(&job) {
        return Ok(Action::await_change());
    }
    let namespace = job.namespace().unwrap_or_else(|| "default".into());
    let selector = job.spec.as_ref().and_then(|s| s.selector.as_ref());
    let selector = label_selector(&selector.ok_or_else(|| Error::Invalid("a Job without a selector".into()))?)?;
    let owner = owner_reference(&job)?;
    let going = job.metadata.deletion_timestamp.is_some();
    let claimed = pods.claim(&selector, &owner, |_| true, !going).await?;
    let snapshot = Snapshot { job, pods: claimed, now: context.clock.now() };
    let plan = decide(&snapshot)?;
    let mut writer = Writer { jobs: Api::namespaced(context.client.clone(), &namespace), pods, written, job: None };
    if let Some(after) = writer.apply(&snapshot.job, &plan).await? {
        context.wakeups.after(&snapshot.job, after);
    }
    Ok(if plan.tally.is_some() { Action::requeue(RESYNC) } else { Action::await_change() })
}

fn tracked(pod: &Pod) -> bool {
    pod.finalizers().iter().any(|f| f == TRACKING_FINALIZER)
}

/// Removes the tracking finalizer; a pod gone already needs nothing.
async fn release(pods: &Pods, pod: &Pod) -> Result<(), Error> {
    let kept: Vec<&String> = pod.finalizers().iter().filter(|f| *f != TRACKING_FINALIZER).collect();
    let patch = json!({"metadata": {"finalizers": kept, "resourceVersion": pod.resource_version()}});
    pods.patch(&pod.name_any(), patch).await.map(drop)
}

/// What the orphan watch sees: a pod changed, or a Job changed or went.
enum Seen {
    Pod(Arc<Pod>),
    Job(Arc<Job>),
}

/// Pods still holding the tracking finalizer whose Job is gone (or that no Job controls)
/// would never be removed: their finalizer is taken off, as Kubernetes does for orphans.
/// A deleted Job's pods are looked at when it goes; otherwise only pods being deleted or
/// without a controller are, the rest being the reconcile's.
async fn release_orphans(context: &Context) {
    let pods = context.pods.subscribe().map(Seen::Pod);
    let jobs = context.jobs.subscribe().map(Seen::Job);
    let seen = futures_util::stream::select(pods, jobs);
    futures_util::pin_mut!(seen);
    while let Some(seen) = seen.next().await {
        match seen {
            Seen::Pod(pod) if tracked(&pod) && orphaned(context, &pod) => {
                let pods = Pods::new(&context.client, &context.pods, &pod.namespace().unwrap_or_default());
                let _ = release(&pods, &pod).await;
            }
            Seen::Pod(_) => {}
            Seen::Job(job) => {
                let gone = context
                    .jobs
                    .get(&job.namespace().unwrap_or_default(), &job.name_any())
                    .is_none_or(|live| live.uid() != job.uid());
                if gone {
                    release_pods_of(context, &job).await;
                }
            }
        }
    }
}

/// Whether a tracked pod has no live Job to count it.
fn orphaned(context: &Context, pod: &Pod) -> bool {
    let Some(reference) = pod.owner_references().iter().find(|r| r.controller == Some(true) && r.kind == "Job") else {
        return true;
    };
    if !deleting(pod) {
        return false;
    }
    let job = context.jobs.get(&pod.namespace().unwrap_or_default(), &reference.name);
    job.is_none_or(|j| j.uid() != Some(reference.uid.clone()))
}

async fn release_pods_of(context: &Context, job: &Job) {
    let (Some(namespace), Some(uid)) = (job.namespace(), job.uid()) else { return };
    let pods = Pods::new(&context.client, &context.pods, &namespace);
    for pod in context.pods.controlled_by(&namespace, &uid).iter().filter(|p| tracked(p)) {
        let _ = release(&pods, pod).await;
    }
}

fn has_condition(job: &Job, kind: &str) -> bool {
    job.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|c| condition_true(c, kind))
}

fn condition_true(conditions: &[JobCondition], kind: &str) -> bool {
    conditions.iter().any(|c| c.type_ == kind && c.status == "True")
}

/// `ensureJobConditionStatus`: a condition changed (or added, when true) with a new
/// transition time; the same status again changes nothing.
fn set_condition(
    conditions: &mut Vec<JobCondition>,
    kind: &str,
    status: &str,
    (reason, message): (&str, &str),
    time: &Time,
) {
    let time = time.clone();
    if let Some(condition) = conditions.iter_mut().find(|c| c.type_ == kind) {
        if condition.status != status {
            *condition = JobCondition {
                status: status.into(),
                reason: Some(reason.into()),
                message: Some(message.into()),
                last_probe_time: Some(time.clone()),
                last_transition_time: Some(time),
                ..condition.clone()
            };
        }
    } else if status == "True" {
        conditions.push(JobCondition {
            type_: kind.into(),
            status: status.into(),
            reason: Some(reason.into()),
            message: Some(message.into()),
            last_probe_time: Some(time.clone()),
            last_transition_time: Some(time),
        });
    }
}

/// The pod's completion index, when it has a valid one below `completions`.
fn index_of(pod: &Pod, completions: Option<i32>) -> Option<i32> {
    let index: i32 = pod.annotations().get(INDEX)?.parse().ok()?;
    (index >= 0 && completions.is_some_and(|c| index < c)).then_some(index)
}

/// `1,3-5,7`: indexes in order, runs of three or more as a range.
fn format_indexes(indexes: &BTreeSet<i32>) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut iter = indexes.iter().copied().peekable();
    while let Some(first) = iter.next() {
        let mut last = first;
        while iter.peek() == Some(&(last + 1)) {
            last += 1;
            iter.next();
        }
        match last - first {
            0 => parts.push(first.to_string()),
            1 => parts.extend([first.to_string(), last.to_string()]),
            _ => parts.push(format!("{first}-{last}")),
        }
    }
    parts.join(",")
}

fn parse_indexes(text: &str) -> BTreeSet<i32> {
    let mut indexes = BTreeSet::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (first, last) = part.split_once('-').unwrap_or((part, part));
        if let (Ok(first), Ok(last)) = (first.parse::<i32>(), last.parse::<i32>()) {
            indexes.extend(first..=last);
        }
    }
    indexes
}

/// Finished pods not yet in the counters, by uid.
#[derive(Default)]
struct Uncounted {
    succeeded: Vec<String>,
    failed: Vec<String>,
    grew: bool,
}

impl Uncounted {
    fn of(status: &JobStatus) -> Uncounted {
        let uncounted = status.uncounted_terminated_pods.clone().unwrap_or_default();
        Uncounted {
            succeeded: uncounted.succeeded.unwrap_or_default(),
            failed: uncounted.failed.unwrap_or_default(),
            grew: false,
        }
    }

    fn contains(&self, uid: &str) -> bool {
        self.succeeded.iter().chain(&self.failed).any(|u| u == uid)
    }

    /// Notes a tracked pod that finished and is not noted yet.
    fn note(&mut self, pod: &Pod, settings: &Settings) {
        let Some(uid) = pod.uid() else { return };
        if !tracked(pod) || self.contains(&uid) {
            return;
        }
        let indexed_ok = !settings.indexed || index_of(pod, settings.completions).is_some();
        if phase(pod) == "Succeeded" {
            self.succeeded.push(uid);
        } else if settings.failed(pod) && indexed_ok {
            self.failed.push(uid);
        } else {
            return;
        }
        self.grew = true;
    }

    fn status(&self) -> UncountedTerminatedPods {
        let list = |uids: &Vec<String>| Some(uids.clone()).filter(|u| !u.is_empty());
        UncountedTerminatedPods { succeeded: list(&self.succeeded), failed: list(&self.failed) }
    }
}

/// What one pass over a Job reads: the Job, the pods it controls, and the time.
struct Snapshot {
    job: Job,
    pods: Vec<Pod>,
    /// Now, on the control plane's clock.
    now: SystemTime,
}

/// What one pass decided, in the order [`Writer::apply`] makes it.
#[derive(Debug, Default, PartialEq)]
struct Plan {
    /// Active pods deleted: surplus, or every one once the Job is decided or suspended.
    delete: Vec<String>,
    /// Pods made, each by its completion index (`None`: `NonIndexed`).
    create: Vec<Option<i32>>,
    /// The status recording newly finished pods in `uncountedTerminatedPods`, written
    /// before their finalizers go, so none is lost if the pass stops between the two.
    record: Option<JobStatus>,
    /// Pods whose tracking finalizer is removed.
    release: Vec<Pod>,
    /// How the Job stands, from which its status is written; `None` for a Job that is
    /// decided or going (its status is left as it is).
    tally: Option<Tally>,
}

/// The pass's count of the Job, before its pod writes: [`Tally::status`] makes the status
/// from it and the writes that were made (a pod that could not be made is not counted).
#[derive(Debug, PartialEq)]
struct Tally {
    /// The status with the counters, completed indexes and start time brought up to date.
    status: JobStatus,
    settings: Settings,
    active: usize,
    terminating: usize,
    /// Of the active pods, the ready ones.
    ready: usize,
    /// `FailureTarget`'s reason and message, or `None`.
    failure: Option<(&'static str, &'static str)>,
    /// Success decided before this pass's writes (`SuccessCriteriaMet`).
    success: bool,
    /// Enough pods succeeded: success once none is active.
    completed: bool,
    now: SystemTime,
}

/// `syncJob`: the finished pods counted, then failure, success, or the active pods
/// brought to what is wanted.
fn decide(snapshot: &Snapshot) -> Result<Plan, Error> {
    let (job, claimed) = (&snapshot.job, &snapshot.pods);
    if job.metadata.deletion_timestamp.is_some() || has_condition(job, COMPLETE) || has_condition(job, FAILED) {
        // Nothing more to count: its pods may go.
        return Ok(Plan { release: claimed.iter().filter(|p| tracked(p)).cloned().collect(), ..Plan::default() });
    }
    let settings = Settings::of(job)?;
    let mut status = job.status.clone().unwrap_or_default();
    if status.start_time.is_none() && !settings.suspended {
        status.start_time = Some(super::time_at(snapshot.now));
    }
    let mut uncounted = Uncounted::of(&status);
    for pod in claimed {
        uncounted.note(pod, &settings);
    }
    let active: Vec<&Pod> = claimed.iter().filter(|p| !is_terminal(p) && !deleting(p)).collect();
    let terminating = claimed.iter().filter(|p| deleting(p) && !is_terminal(p)).count();
    let mut indexes = parse_indexes(status.completed_indexes.as_deref().unwrap_or_default());
    if settings.indexed {
        let succeeded: HashSet<&String> = uncounted.succeeded.iter().collect();
        let done = claimed.iter().filter(|p| p.uid().is_some_and(|u| succeeded.contains(&u)));
        indexes.extend(done.filter_map(|p| index_of(p, settings.completions)));
    }
    let succeeded = if settings.indexed { indexes.len() } else { count(status.succeeded) + uncounted.succeeded.len() };
    let failed = count(status.failed) + uncounted.failed.len();

    let conditions = status.conditions.as_deref().unwrap_or_default();
    let success = condition_true(conditions, SUCCESS_CRITERIA_MET);
    let failure = if let Some(target) = conditions.iter().find(|c| c.type_ == FAILURE_TARGET && c.status == "True") {
        Some(if target.reason.as_deref() == Some(DEADLINE_EXCEEDED.0) {
            DEADLINE_EXCEEDED
        } else {
            BACKOFF_LIMIT_EXCEEDED
        })
    } else if success {
        None
    } else if failed > usize::try_from(settings.backoff_limit).unwrap_or(0) || settings.past_backoff_on_failure(&active)
    {
        Some(BACKOFF_LIMIT_EXCEEDED)
    } else if settings.past_deadline(&status, snapshot.now) {
        Some(DEADLINE_EXCEEDED)
    } else {
        None
    };
    let mut plan = Plan::default();
    if failure.is_some() || success {
        // Finished either way: whatever still runs is stopped.
        plan.delete = names(&active);
    } else {
        (plan.delete, plan.create) = settings.manage(&active, terminating, succeeded, &indexes);
    }

    if uncounted.grew {
        let mut record = status.clone();
        record.uncounted_terminated_pods = Some(uncounted.status());
        plan.record = Some(record);
    }
    let counted = claimed.iter().filter(|p| p.uid().is_some_and(|u| uncounted.contains(&u)) && tracked(p));
    plan.release = counted.cloned().collect();
    status.succeeded = nonzero(succeeded);
    status.failed = nonzero(failed);
    status.uncounted_terminated_pods = Some(UncountedTerminatedPods::default());
    if settings.indexed {
        status.completed_indexes = Some(format_indexes(&indexes));
    }
    let completed = match settings.completions {
        None => succeeded > 0,
        Some(completions) => succeeded >= usize::try_from(completions).unwrap_or(0),
    };
    plan.tally = Some(Tally {
        status,
        active: active.len(),
        terminating,
        ready: active.iter().filter(|p| is_ready(p)).count(),
        failure,
        success,
        completed,
        now: snapshot.now,
        settings,
    });
    Ok(plan)
}

/// The names of at most [`BURST`] pods.
fn names(pods: &[&Pod]) -> Vec<String> {
    pods.iter().take(BURST).map(|p| p.name_any()).collect()
}

impl Settings {
    /// `pastBackoffLimitOnFailure`: with `OnFailure` the kubelet restarts failed
    /// containers, so their restarts count against the limit.
    fn past_backoff_on_failure(&self, active: &[&Pod]) -> bool {
        if !self.restart_on_failure {
            return false;
        }
        let restarts: i32 = active
            .iter()
            .filter_map(|p| p.status.as_ref())
            .flat_map(|s| s.init_container_statuses.iter().flatten().chain(s.container_statuses.iter().flatten()))
            .map(|c| c.restart_count)
            .sum();
        if self.backoff_limit == 0 { restarts > 0 } else { restarts >= self.backoff_limit }
    }

    fn past_deadline(&self, status: &JobStatus, now: SystemTime) -> bool {
        let (Some(deadline), Some(start)) = (self.deadline, started(status)) else { return false };
        !self.suspended && start + seconds(deadline) <= now
    }

    /// `manageJob`: the pods deleted and made to bring the active ones to what is wanted.
    fn manage(
        &self,
        active: &[&Pod],
        terminating: usize,
        succeeded: usize,
        indexes: &BTreeSet<i32>,
    ) -> (Vec<String>, Vec<Option<i32>>) {
        if self.suspended {
            return (names(active), Vec::new());
        }
        let want = self.want_active(active.len(), succeeded);
        let mut surplus = self.surplus(active, indexes);
        let beyond = active.len().saturating_sub(want);
        if surplus.len() < beyond {
            let mut rest: Vec<&Pod> = active.iter().copied().filter(|p| !surplus.contains(p)).collect();
            rest.sort_by_key(|p| removal_rank(p));
            surplus.extend(rest.into_iter().take(beyond - surplus.len()));
        }
        if !surplus.is_empty() {
            return (names(&surplus), Vec::new());
        }
        // Terminating pods hold their place until they failed, if asked to.
        let running = active.len() + if self.only_replace_failed { terminating } else { 0 };
        let missing = want.saturating_sub(running).min(BURST);
        let create = if self.indexed {
            self.pending_indexes(active, indexes, missing).into_iter().map(Some).collect()
        } else {
            vec![None; missing]
        };
        (Vec::new(), create)
    }

    /// Indexed pods that should not run: no valid index, an index already done, or a
    /// second pod for the same index.
    fn surplus<'a>(&self, active: &[&'a Pod], indexes: &BTreeSet<i32>) -> Vec<&'a Pod> {
        if !self.indexed {
            return Vec::new();
        }
        let mut seen = BTreeSet::new();
        let mut sorted = active.to_vec();
        // The oldest pod of an index stays.
        sorted.sort_by_key(|p| creation(p));
        sorted
            .into_iter()
            .filter(|pod| match index_of(pod, self.completions) {
                Some(index) => indexes.contains(&index) || !seen.insert(index),
                None => true,
            })
            .collect()
    }

    /// The lowest indexes neither done nor running.
    fn pending_indexes(&self, active: &[&Pod], indexes: &BTreeSet<i32>, most: usize) -> Vec<i32> {
        let running: BTreeSet<i32> = active.iter().filter_map(|p| index_of(p, self.completions)).collect();
        (0..self.completions.unwrap_or(0)).filter(|i| !indexes.contains(i) && !running.contains(i)).take(most).collect()
    }
}

fn started(status: &JobStatus) -> Option<SystemTime> {
    status.start_time.as_ref().and_then(|t| crate::clock::parse(&t.0.to_string()))
}

impl Tally {
    /// The status once `deleted` of the pods to delete went and `made` of those to make
    /// were made: the interim `FailureTarget` or `SuccessCriteriaMet` at once, `Failed` or
    /// `Complete` once no pod is left running; `Suspended` following `suspend` otherwise.
    fn status(&self, deleted: usize, made: usize) -> JobStatus {
        let active = (self.active + made).saturating_sub(deleted);
        let terminating = self.terminating + deleted;
        let decided = self.failure.is_some() || self.success;
        let success = if decided { self.success } else { active == 0 && self.completed };
        let mut status = self.status.clone();
        status.active = nonzero(active);
        status.terminating = Some(i32::try_from(terminating).unwrap_or(i32::MAX));
        status.ready = Some(i32::try_from(if active == 0 { 0 } else { self.ready }).unwrap_or(i32::MAX));

        let mut conditions = status.conditions.take().unwrap_or_default();
        let now = super::time_at(self.now);
        let settled = terminating == 0 && active == 0;
        if let Some(reason) = self.failure {
            set_condition(&mut conditions, FAILURE_TARGET, "True", reason, &now);
            if settled {
                set_condition(&mut conditions, FAILED, "True", reason, &now);
            }
        } else if success {
            set_condition(&mut conditions, SUCCESS_CRITERIA_MET, "True", COMPLETIONS_REACHED, &now);
            if settled {
                set_condition(&mut conditions, COMPLETE, "True", COMPLETIONS_REACHED, &now);
                status.completion_time = Some(now.clone());
            }
        } else if self.settings.suspended {
            set_condition(&mut conditions, SUSPENDED, "True", ("JobSuspended", "Job suspended"), &now);
        } else if condition_true(&conditions, SUSPENDED) {
            set_condition(&mut conditions, SUSPENDED, "False", ("JobResumed", "Job resumed"), &now);
            // `activeDeadlineSeconds` counts time continuously active: it starts again.
            status.start_time = Some(now);
        }
        status.conditions = Some(conditions).filter(|c| !c.is_empty());
        status
    }

    /// When to look again, on the control plane's clock: when the deadline falls. A
    /// suspended Job's clock is stopped, and a decided one has nothing left to time.
    fn wake_after(&self, status: &JobStatus) -> Option<Duration> {
        let decided = status.completion_time.is_some()
            || status.conditions.iter().flatten().any(|c| {
                matches!(c.type_.as_str(), "Complete" | "Failed" | "FailureTarget" | "SuccessCriteriaMet")
                    && c.status == "True"
            });
        if self.settings.suspended || decided {
            return None;
        }
        let (deadline, start) = (self.settings.deadline?, started(status)?);
        let left = (start + seconds(deadline)).duration_since(self.now).unwrap_or_default();
        Some(left.max(Duration::from_millis(100)))
    }
}

/// Makes a pass's plan through the API.
struct Writer<'a> {
    jobs: Api<Job>,
    pods: &'a Pods,
    written: &'a Written,
    /// The Job as last written, once written.
    job: Option<Job>,
}

impl Writer<'_> {
    /// The pod writes (one that fails ends its kind and is reported once the finished
    /// pods are counted, so a pod that cannot be made, its namespace terminating, does not
    /// hold the others' finalizers), the record of finished pods, their finalizers, the
    /// status. When to look again.
    async fn apply(&mut self, job: &Job, plan: &Plan) -> Result<Option<Duration>, Error> {
        let mut deferred = None;
        let mut deleted = 0;
        for name in &plan.delete {
            if let Err(error) = self.pods.delete(name).await {
                deferred = Some(error);
                break;
            }
            deleted += 1;
        }
        let mut made = 0;
        for index in &plan.create {
            let pod = match new_pod(job, *index) {
                Ok(pod) => self.pods.create(&pod).await.map_err(Error::from),
                Err(error) => Err(error),
            };
            if let Err(error) = pod {
                deferred = Some(error);
                break;
            }
            made += 1;
        }
        if let Some(record) = &plan.record {
            self.write(job, record.clone()).await?;
        }
        for pod in &plan.release {
            release(self.pods, pod).await?;
        }
        let Some(tally) = &plan.tally else { return deferred.map_or(Ok(None), Err) };
        let status = tally.status(deleted, made);
        let last = self.job.as_ref().unwrap_or(job);
        if !same_content(&Some(&status), &last.status.as_ref()) {
            self.write(job, status.clone()).await?;
        }
        match deferred {
            Some(error) => Err(error),
            None => Ok(tally.wake_after(&status)),
        }
    }

    /// Writes the whole status against the version it was decided on (or last written).
    async fn write(&mut self, job: &Job, status: JobStatus) -> Result<(), Error> {
        let mut job = self.job.take().unwrap_or_else(|| job.clone());
        let finished_before = [COMPLETE, FAILED].map(|kind| has_condition(&job, kind));
        job.status = Some(status);
        let written = self.jobs.replace_status(&job.name_any(), &PostParams::default(), &job).await?;
        self.written.note(&written);
        // The Job's end, said once, as the job controller says it.
        if !finished_before[0] && has_condition(&written, COMPLETE) {
            self.pods.say(crate::events::Type::Normal, "Completed", "Job completed".into()).await;
        } else if !finished_before[1] && has_condition(&written, FAILED) {
            let failed = written
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .and_then(|c| c.iter().find(|c| c.type_ == FAILED));
            let (reason, message) = failed.map_or((String::new(), String::new()), |c| {
                (c.reason.clone().unwrap_or_default(), c.message.clone().unwrap_or_default())
            });
            self.pods.say(crate::events::Type::Warning, &reason, message).await;
        }
        self.job = Some(written);
        Ok(())
    }
}

/// A pod from the template, owned, tracked, and for an Indexed Job given its index.
fn new_pod(job: &Job, index: Option<i32>) -> Result<Pod, Error> {
    let template = job.spec.as_ref().map(|s| &s.template);
    let template = serde_json::to_value(template).map_err(|e| Error::Invalid(e.to_string()))?;
    let (mut labels, mut annotations) = template_metadata(&template);
    let mut spec = template.get("spec").cloned().unwrap_or_else(|| json!({}));
    let name = job.name_any();
    let generate_name = match index {
        Some(index) => {
            labels[INDEX] = json!(index.to_string());
            annotations[INDEX] = json!(index.to_string());
            with_index(&mut spec, &format!("{name}-{index}"));
            format!("{name}-{index}-")
        }
        None => format!("{name}-"),
    };
    let owner = serde_json::to_value(owner_reference(job)?).map_err(|e| Error::Invalid(e.to_string()))?;
    let namespace = job.namespace().unwrap_or_default();
    from_template(
        Naming::Generated(generate_name),
        &namespace,
        (labels, annotations),
        spec,
        owner,
        &[TRACKING_FINALIZER],
    )
}

/// An Indexed pod's identity: its hostname and `JOB_COMPLETION_INDEX` in every container.
fn with_index(spec: &mut Value, hostname: &str) {
    if spec.get("hostname").and_then(Value::as_str).is_none_or(str::is_empty) {
        spec["hostname"] = json!(hostname);
    }
    let variable = json!({"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {
        "fieldPath": format!("metadata.annotations['{INDEX}']")}}});
    for list in ["initContainers", "containers"] {
        for container in spec.get_mut(list).and_then(Value::as_array_mut).into_iter().flatten() {
            let env = container.as_object_mut().map(|c| c.entry("env").or_insert_with(|| json!([])));
            if let Some(env) = env.and_then(Value::as_array_mut)
                && !env.iter().any(|e| e["name"] == "JOB_COMPLETION_INDEX")
            {
                env.push(variable.clone());
            }
        }
    }
}

fn count(value: Option<i32>) -> usize {
    usize::try_from(value.unwrap_or(0)).unwrap_or(0)
}

fn nonzero(count: usize) -> Option<i32> {
    Some(i32::try_from(count).unwrap_or(i32::MAX)).filter(|c| *c > 0)
}

fn seconds(value: i64) -> Duration {
    Duration::from_secs(u64::try_from(value).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    #[test]
    fn completed_indexes_read_and_write_as_kubernetes_writes_them() {
        let indexes: BTreeSet<i32> = [1, 3, 4, 5, 7, 9, 10].into_iter().collect();
        assert_eq!(format_indexes(&indexes), "1,3-5,7,9,10");
        assert_eq!(parse_indexes("1,3-5,7,9,10"), indexes);
        assert_eq!(format_indexes(&BTreeSet::new()), "");
    }

    #[test]
    fn active_pods_wanted_follow_completions_and_parallelism() {
        let job: Job = serde_json::from_value(json!({"metadata": {"name": "j"}, "spec": {
            "completions": 5, "parallelism": 2, "template": {"spec": {"containers": []}}}}))
        .unwrap();
        let settings = Settings::of(&job).unwrap();
        assert_eq!(settings.want_active(0, 0), 2);
        assert_eq!(settings.want_active(2, 4), 1);
        assert_eq!(settings.want_active(1, 5), 0);
        let work_queue = Settings { completions: None, ..settings };
        assert_eq!(work_queue.want_active(0, 0), 2);
        assert_eq!(work_queue.want_active(1, 1), 1, "after a success, running pods finish");
    }

    #[test]
    fn indexed_pods_know_their_index() {
        let mut spec = json!({"containers": [{"name": "a", "image": "a"}], "initContainers": [{"name": "i"}]});
        with_index(&mut spec, "j-3");
        assert_eq!(spec["hostname"], "j-3");
        assert_eq!(spec["containers"][0]["env"][0]["name"], "JOB_COMPLETION_INDEX");
        assert_eq!(spec["initContainers"][0]["env"][0]["name"], "JOB_COMPLETION_INDEX");
    }

    #[test]
    fn conditions_change_once() {
        let mut conditions = Vec::new();
        let now = Time(Timestamp::now());
        set_condition(&mut conditions, SUSPENDED, "False", ("JobResumed", "Job resumed"), &now);
        assert!(conditions.is_empty(), "a false condition is not added");
        set_condition(&mut conditions, SUSPENDED, "True", ("JobSuspended", "Job suspended"), &now);
        set_condition(&mut conditions, SUSPENDED, "True", ("JobSuspended", "again"), &now);
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].message.as_deref(), Some("Job suspended"));
        set_condition(&mut conditions, SUSPENDED, "False", ("JobResumed", "Job resumed"), &now);
        assert_eq!((conditions[0].status.as_str(), conditions[0].reason.as_deref()), ("False", Some("JobResumed")));
    }

    const NOW: u64 = 1_800_000_000;

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
    }

    fn stamp(seconds: u64) -> String {
        crate::clock::format(at(seconds))
    }

    fn job(spec: Value, status: Value) -> Job {
        let mut base = json!({"selector": {"matchLabels": {"job": "j"}},
            "template": {"metadata": {"labels": {"job": "j"}},
                         "spec": {"restartPolicy": "Never", "containers": [{"name": "a", "image": "a"}]}}});
        if let (Some(base), Some(extra)) = (base.as_object_mut(), spec.as_object()) {
            base.extend(extra.clone());
        }
        serde_json::from_value(json!({"metadata": {"name": "j", "namespace": "default", "uid": "job-uid"},
                                      "spec": base, "status": status}))
        .unwrap()
    }

    /// A pod of the Job: `name` is its uid too; made `created` seconds before now.
    fn pod(name: &str, phase: &str, tracked: bool, index: Option<i32>, created: u64) -> Pod {
        let finalizers: Vec<&str> = if tracked { vec![TRACKING_FINALIZER] } else { vec![] };
        let annotations = index.map_or(json!({}), |i| json!({INDEX: i.to_string()}));
        let node = if phase == "Pending" { json!(null) } else { json!("node-1") };
        serde_json::from_value(json!({
            "metadata": {"name": name, "uid": name, "namespace": "default", "finalizers": finalizers,
                         "annotations": annotations, "creationTimestamp": stamp(NOW - created)},
            "spec": {"containers": [{"name": "a", "image": "a"}], "nodeName": node},
            "status": {"phase": phase}}))
        .unwrap()
    }

    fn plan(job: Job, pods: Vec<Pod>) -> Plan {
        decide(&Snapshot { job, pods, now: at(NOW) }).unwrap()
    }

    fn condition(status: &JobStatus, kind: &str) -> Option<(String, Option<String>)> {
        let found = status.conditions.iter().flatten().find(|c| c.type_ == kind)?;
        Some((found.status.clone(), found.reason.clone()))
    }

    fn holds(status: &JobStatus, kind: &str, reason: &str) -> bool {
        condition(status, kind) == Some(("True".into(), Some(reason.into())))
    }

    #[test]
    fn a_job_runs_as_many_pods_as_parallelism_and_completions_leave_to_do() {
        let table = [
            (json!({"completions": 5, "parallelism": 2}), json!({}), vec![], 2),
            (json!({"completions": 5, "parallelism": 2}), json!({"succeeded": 4}), vec![], 1),
            (json!({"completions": 5, "parallelism": 2}), json!({}), vec![pod("a", "Running", true, None, 5)], 1),
            (json!({"parallelism": 3}), json!({}), vec![], 3),
            (json!({"completions": 2, "parallelism": 2, "suspend": true}), json!({}), vec![], 0),
        ];
        for (spec, status, pods, made) in table {
            let plan = plan(job(spec.clone(), status), pods);
            assert_eq!(plan.create, vec![None; made], "{spec}");
            assert!(plan.delete.is_empty(), "{spec}");
        }
        let started = plan(job(json!({}), json!({})), vec![]).tally.unwrap();
        assert_eq!(started.status.start_time, Some(super::super::time_at(at(NOW))), "the start is recorded");
    }

    #[test]
    fn finished_pods_are_recorded_before_their_finalizers_go() {
        let spec = json!({"completions": 5, "parallelism": 2});
        let pods = vec![
            pod("done", "Succeeded", true, None, 9),
            pod("broke", "Failed", true, None, 8),
            pod("running", "Running", true, None, 5),
        ];
        let plan = plan(job(spec.clone(), json!({})), pods);
        let record = plan.record.as_ref().and_then(|r| r.uncounted_terminated_pods.clone()).unwrap();
        assert_eq!((record.succeeded, record.failed), (Some(vec!["done".into()]), Some(vec!["broke".into()])));
        let released: Vec<String> = plan.release.iter().map(ResourceExt::name_any).collect();
        assert_eq!(released, ["done", "broke"]);
        assert_eq!(plan.create, vec![None], "one more runs beside the running one");
        let status = plan.tally.unwrap().status(0, 1);
        assert_eq!((status.succeeded, status.failed, status.active), (Some(1), Some(1), Some(2)));
        assert_eq!(status.uncounted_terminated_pods, Some(UncountedTerminatedPods::default()));

        // Recorded already, finalizer gone: counted, not recorded or released again.
        let recorded = json!({"uncountedTerminatedPods": {"succeeded": ["done"]}});
        let plan = self::plan(job(spec, recorded), vec![pod("done", "Succeeded", false, None, 9)]);
        assert_eq!((plan.record, plan.release), (None, vec![]));
        assert_eq!(plan.tally.unwrap().status(0, 0).succeeded, Some(1));
    }

    #[test]
    fn too_many_failures_fail_the_job_once_its_pods_are_gone() {
        let spec = json!({"completions": 3, "parallelism": 2, "backoffLimit": 1});
        let failed = json!({"failed": 2});
        let plan = plan(job(spec.clone(), failed.clone()), vec![pod("running", "Running", true, None, 5)]);
        assert_eq!(plan.delete, ["running"]);
        assert!(plan.create.is_empty());
        let status = plan.tally.unwrap().status(1, 0);
        assert!(holds(&status, FAILURE_TARGET, BACKOFF_LIMIT_EXCEEDED.0));
        assert_eq!(condition(&status, FAILED), None, "a pod is still terminating");
        assert_eq!((status.active, status.terminating), (None, Some(1)));

        let targeted = json!({"failed": 2, "conditions": [{"type": FAILURE_TARGET, "status": "True",
                              "reason": BACKOFF_LIMIT_EXCEEDED.0, "message": BACKOFF_LIMIT_EXCEEDED.1}]});
        let status = self::plan(job(spec, targeted), vec![]).tally.unwrap().status(0, 0);
        assert!(holds(&status, FAILED, BACKOFF_LIMIT_EXCEEDED.0));

        // With OnFailure, container restarts count against the limit.
        let mut restarting = pod("restarting", "Running", true, None, 5);
        restarting.status.as_mut().unwrap().container_statuses = Some(vec![
            serde_json::from_value(json!({"name": "a", "image": "a", "imageID": "", "ready": false,
                                                     "restartCount": 2}))
            .unwrap(),
        ]);
        let mut on_failure = job(json!({"backoffLimit": 2}), json!({}));
        on_failure.spec.as_mut().unwrap().template.spec.as_mut().unwrap().restart_policy = Some("OnFailure".into());
        let plan = self::plan(on_failure, vec![restarting]);
        assert_eq!(plan.delete, ["restarting"]);
        assert_eq!(plan.tally.unwrap().failure, Some(BACKOFF_LIMIT_EXCEEDED));
    }

    #[test]
    fn the_active_deadline_fails_the_job_and_is_woken_for() {
        let spec = json!({"activeDeadlineSeconds": 10});
        let late =
            plan(job(spec.clone(), json!({"startTime": stamp(NOW - 20)})), vec![pod("p", "Running", true, None, 20)]);
        assert_eq!(late.delete, ["p"]);
        let status = late.tally.unwrap().status(1, 0);
        assert!(holds(&status, FAILURE_TARGET, DEADLINE_EXCEEDED.0));

        let early = plan(job(spec, json!({"startTime": stamp(NOW - 4)})), vec![pod("p", "Running", true, None, 4)]);
        let tally = early.tally.unwrap();
        assert_eq!(tally.wake_after(&tally.status(0, 0)), Some(Duration::from_secs(6)));
        let no_deadline = plan(job(json!({}), json!({})), vec![]).tally.unwrap();
        assert_eq!(no_deadline.wake_after(&no_deadline.status(0, 1)), None);
    }

    #[test]
    fn reaching_completions_completes_the_job_once_no_pod_runs() {
        let spec = json!({"completions": 2, "parallelism": 2});
        let plan = plan(job(spec.clone(), json!({"succeeded": 1})), vec![pod("last", "Succeeded", true, None, 3)]);
        let status = plan.tally.unwrap().status(0, 0);
        assert!(holds(&status, SUCCESS_CRITERIA_MET, COMPLETIONS_REACHED.0));
        assert!(holds(&status, COMPLETE, COMPLETIONS_REACHED.0));
        assert_eq!(status.completion_time, Some(super::super::time_at(at(NOW))));
        assert_eq!(status.succeeded, Some(2));

        // A work queue (no completions) succeeds with its first success, once the rest end.
        let queue = json!({"parallelism": 2});
        let pods = vec![pod("first", "Succeeded", true, None, 3), pod("other", "Running", true, None, 3)];
        let plan = self::plan(job(queue, json!({})), pods);
        assert!(plan.create.is_empty() && plan.delete.is_empty());
        assert_eq!(condition(&plan.tally.unwrap().status(0, 0), SUCCESS_CRITERIA_MET), None);
    }

    #[test]
    fn suspending_stops_the_pods_and_resuming_restarts_the_clock() {
        let suspended = json!({"parallelism": 2, "suspend": true});
        let plan =
            plan(job(suspended, json!({"startTime": stamp(NOW - 50)})), vec![pod("p", "Running", true, None, 5)]);
        assert_eq!(plan.delete, ["p"]);
        let status = plan.tally.unwrap().status(1, 0);
        assert!(holds(&status, SUSPENDED, "JobSuspended"));

        let was = json!({"startTime": stamp(NOW - 50), "conditions": [{"type": SUSPENDED, "status": "True",
                         "reason": "JobSuspended", "message": "Job suspended"}]});
        let plan = self::plan(job(json!({"parallelism": 2}), was), vec![]);
        assert_eq!(plan.create.len(), 2);
        let status = plan.tally.unwrap().status(0, 2);
        assert_eq!(condition(&status, SUSPENDED), Some(("False".into(), Some("JobResumed".into()))));
        assert_eq!(status.start_time, Some(super::super::time_at(at(NOW))));
    }

    #[test]
    fn indexed_jobs_run_each_index_once() {
        let spec = json!({"completions": 4, "parallelism": 4, "completionMode": "Indexed"});
        let status = json!({"completedIndexes": "2"});
        let pods = vec![
            pod("zero", "Running", true, Some(0), 9),
            pod("one-old", "Running", true, Some(1), 9),
            pod("one-new", "Running", true, Some(1), 2),
            pod("two-again", "Running", true, Some(2), 2),
            pod("out-of-range", "Running", true, Some(7), 2),
        ];
        let mut surplus = plan(job(spec.clone(), status.clone()), pods).delete;
        surplus.sort();
        assert_eq!(surplus, ["one-new", "out-of-range", "two-again"]);
        let plan = self::plan(job(spec, status), vec![pod("zero", "Running", true, Some(0), 9)]);
        assert_eq!(plan.create, vec![Some(1), Some(3)], "the lowest indexes neither done nor running");
        let pod = new_pod(&job(json!({"completionMode": "Indexed", "completions": 4}), json!({})), Some(3)).unwrap();
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("j-3-"));
        assert_eq!(pod.annotations().get(INDEX).map(String::as_str), Some("3"));
        assert_eq!(pod.finalizers(), [TRACKING_FINALIZER]);
    }

    #[test]
    fn lowered_parallelism_removes_the_least_advanced_pods_first() {
        let pods = vec![pod("running", "Running", true, None, 9), pod("pending", "Pending", true, None, 9)];
        let plan = plan(job(json!({"parallelism": 1}), json!({})), pods);
        assert_eq!(plan.delete, ["pending"]);
        assert_eq!(plan.tally.unwrap().status(1, 0).active, Some(1));
    }

    #[test]
    fn a_pod_that_could_not_be_made_is_not_counted() {
        let tally = plan(job(json!({"parallelism": 3}), json!({})), vec![]).tally.unwrap();
        assert_eq!(tally.status(0, 3).active, Some(3));
        assert_eq!(tally.status(0, 1).active, Some(1));
        assert_eq!(tally.status(0, 0).active, None);
    }

    #[test]
    fn a_decided_or_foreign_job_only_lets_its_pods_go() {
        let complete = json!({"conditions": [{"type": COMPLETE, "status": "True"}]});
        let pods = vec![pod("tracked", "Succeeded", true, None, 9), pod("free", "Succeeded", false, None, 9)];
        let plan = plan(job(json!({}), complete), pods);
        let released: Vec<String> = plan.release.iter().map(ResourceExt::name_any).collect();
        assert_eq!(released, ["tracked"]);
        assert!(plan.tally.is_none() && plan.create.is_empty() && plan.delete.is_empty() && plan.record.is_none());
        assert!(managed(&job(json!({}), json!({}))));
        assert!(managed(&job(json!({"managedBy": MANAGER}), json!({}))));
        assert!(!managed(&job(json!({"managedBy": "kueue.x-k8s.io/multikueue"}), json!({}))));
    }
}
