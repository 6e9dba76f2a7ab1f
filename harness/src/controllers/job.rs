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
use super::pods::{Naming, Pods, creation, deleting, from_template, is_ready, is_terminal, phase, template_metadata};
use super::{Wakeups, Wiring, label_selector, owner_reference, same_content};
use crate::clock::Clock;
use crate::informers::{Expectations, Informer, Informers, UNMET_RETRY, Written, key_of_object};
use futures_util::StreamExt;
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
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
    let pods = Pods::new(&context.client, &context.pods, &namespace);
    let written = Written::default();
    let result = manage(job.as_ref().clone(), &context, &pods, &written).await;
    // The next pass reads the caches: it waits until they hold what this one wrote.
    context.pods_expected.expect(&key, pods.written());
    context.jobs_expected.expect(&key, &written);
    result
}

async fn manage(job: Job, context: &Context, pods: &Pods, written: &Written) -> Result<Action, Error> {
    let namespace = job.namespace().unwrap_or_else(|| "default".into());
    if job.spec.as_ref().and_then(|s| s.managed_by.as_deref()).is_some_and(|m| m != MANAGER) {
        return Ok(Action::await_change());
    }
    let jobs: Api<Job> = Api::namespaced(context.client.clone(), &namespace);
    let selector = job.spec.as_ref().and_then(|s| s.selector.as_ref());
    let selector = label_selector(&selector.ok_or_else(|| Error::Invalid("a Job without a selector".into()))?)?;
    let owner = owner_reference(&job)?;
    let going = job.metadata.deletion_timestamp.is_some();
    let claimed = pods.claim(&selector, &owner, |_| true, !going).await?;
    if going || has_condition(&job, COMPLETE) || has_condition(&job, FAILED) {
        // Nothing more to count: its pods may go.
        for pod in claimed.iter().filter(|p| tracked(p)) {
            release(pods, pod).await?;
        }
        return Ok(Action::await_change());
    }
    let settings = Settings::of(&job)?;
    Sync { jobs, pods, job, settings, deferred: None, written, context }.sync(claimed).await
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

/// Which active pod goes first (`controller.ActivePods`): unscheduled, then pending,
/// then not ready, then the newest.
fn removal_rank(pod: &Pod) -> (bool, u8, bool, std::cmp::Reverse<Option<Timestamp>>) {
    let scheduled = pod.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some_and(|n| !n.is_empty());
    let phase = match phase(pod) {
        "Pending" | "" => 0,
        "Unknown" => 1,
        _ => 2,
    };
    (scheduled, phase, is_ready(pod), std::cmp::Reverse(creation(pod)))
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

/// One pass over one Job.
struct Sync<'a> {
    context: &'a Context,
    jobs: Api<Job>,
    pods: &'a Pods,
    written: &'a Written,
    /// As last read or written.
    job: Job,
    settings: Settings,
    /// A pod write that failed: reported once the finished pods are counted, so a pod
    /// that cannot be made (its namespace terminating) does not hold the others'
    /// finalizers.
    deferred: Option<Error>,
}

/// How the Job stands after this pass's decisions.
struct Outcome {
    active: usize,
    terminating: usize,
    /// `FailureTarget`'s reason and message, or `None`.
    failure: Option<(&'static str, &'static str)>,
    success: bool,
}

impl Sync<'_> {
    fn name(&self) -> String {
        self.job.name_any()
    }

    /// Now, on the control plane's clock.
    fn now(&self) -> Time {
        super::time(&self.context.clock)
    }

    async fn sync(mut self, claimed: Vec<Pod>) -> Result<Action, Error> {
        let mut status = self.job.status.clone().unwrap_or_default();
        if status.start_time.is_none() && !self.settings.suspended {
            status.start_time = Some(self.now());
        }
        let mut uncounted = Uncounted::of(&status);
        for pod in &claimed {
            uncounted.note(pod, &self.settings);
        }
        let active: Vec<&Pod> = claimed.iter().filter(|p| !is_terminal(p) && !deleting(p)).collect();
        let terminating = claimed.iter().filter(|p| deleting(p) && !is_terminal(p)).count();
        let mut indexes = parse_indexes(status.completed_indexes.as_deref().unwrap_or_default());
        if self.settings.indexed {
            let succeeded: HashSet<&String> = uncounted.succeeded.iter().collect();
            let done = claimed.iter().filter(|p| p.uid().is_some_and(|u| succeeded.contains(&u)));
            indexes.extend(done.filter_map(|p| index_of(p, self.settings.completions)));
        }
        let succeeded =
            if self.settings.indexed { indexes.len() } else { count(status.succeeded) + uncounted.succeeded.len() };
        let failed = count(status.failed) + uncounted.failed.len();

        let outcome = self.decide(&status, &active, terminating, succeeded, failed, &indexes).await;

        // The finished pods are recorded before their finalizers go, so none is lost
        // if this pass stops between the two writes.
        if uncounted.grew {
            status.uncounted_terminated_pods = Some(uncounted.status());
            self.write(status.clone()).await?;
        }
        for pod in claimed.iter().filter(|p| p.uid().is_some_and(|u| uncounted.contains(&u)) && tracked(p)) {
            release(self.pods, pod).await?;
        }
        status.succeeded = nonzero(succeeded);
        status.failed = nonzero(failed);
        status.uncounted_terminated_pods = Some(UncountedTerminatedPods::default());
        if self.settings.indexed {
            status.completed_indexes = Some(format_indexes(&indexes));
        }
        status.active = nonzero(outcome.active);
        status.terminating = Some(i32::try_from(outcome.terminating).unwrap_or(i32::MAX));
        let ready = active.iter().filter(|p| is_ready(p)).count();
        status.ready = Some(i32::try_from(if outcome.active == 0 { 0 } else { ready }).unwrap_or(i32::MAX));
        self.conclude(&mut status, &outcome);
        if !same_content(&Some(&status), &self.job.status.as_ref()) {
            self.write(status.clone()).await?;
        }
        match self.deferred.take() {
            Some(error) => Err(error),
            None => Ok(self.next_check(&status)),
        }
    }

    /// Failure, success, or pods made and deleted toward them.
    async fn decide(
        &mut self,
        status: &JobStatus,
        active: &[&Pod],
        terminating: usize,
        succeeded: usize,
        failed: usize,
        indexes: &BTreeSet<i32>,
    ) -> Outcome {
        let conditions = status.conditions.as_deref().unwrap_or_default();
        let mut outcome = Outcome {
            active: active.len(),
            terminating,
            failure: None,
            success: condition_true(conditions, SUCCESS_CRITERIA_MET),
        };
        if let Some(target) = conditions.iter().find(|c| c.type_ == FAILURE_TARGET && c.status == "True") {
            outcome.failure = Some(if target.reason.as_deref() == Some(DEADLINE_EXCEEDED.0) {
                DEADLINE_EXCEEDED
            } else {
                BACKOFF_LIMIT_EXCEEDED
            });
        } else if !outcome.success {
            let limit = usize::try_from(self.settings.backoff_limit).unwrap_or(0);
            if failed > limit || self.past_backoff_on_failure(active) {
                outcome.failure = Some(BACKOFF_LIMIT_EXCEEDED);
            } else if self.past_deadline(status) {
                outcome.failure = Some(DEADLINE_EXCEEDED);
            }
        }
        if outcome.failure.is_some() || outcome.success {
            // Finished either way: whatever still runs is stopped.
            let deleted = self.delete(active).await;
            outcome.active -= deleted;
            outcome.terminating += deleted;
            return outcome;
        }
        let (active_now, deleted) = self.manage(active, terminating, succeeded, indexes).await;
        outcome.active = active_now;
        outcome.terminating += deleted;
        outcome.success = outcome.active == 0
            && match self.settings.completions {
                None => succeeded > 0,
                Some(completions) => succeeded >= usize::try_from(completions).unwrap_or(0),
            };
        outcome
    }

    /// `pastBackoffLimitOnFailure`: with `OnFailure` the kubelet restarts failed
    /// containers, so their restarts count against the limit.
    fn past_backoff_on_failure(&self, active: &[&Pod]) -> bool {
        if !self.settings.restart_on_failure {
            return false;
        }
        let restarts: i32 = active
            .iter()
            .filter_map(|p| p.status.as_ref())
            .flat_map(|s| s.init_container_statuses.iter().flatten().chain(s.container_statuses.iter().flatten()))
            .map(|c| c.restart_count)
            .sum();
        if self.settings.backoff_limit == 0 { restarts > 0 } else { restarts >= self.settings.backoff_limit }
    }

    fn started(&self, status: &JobStatus) -> Option<SystemTime> {
        status.start_time.as_ref().and_then(|t| crate::clock::parse(&t.0.to_string()))
    }

    fn past_deadline(&self, status: &JobStatus) -> bool {
        let (Some(deadline), Some(start)) = (self.settings.deadline, self.started(status)) else { return false };
        !self.settings.suspended && start + seconds(deadline) <= self.context.clock.now()
    }

    /// Looked at again when the deadline falls (on the control plane's clock), and now
    /// and then.
    fn next_check(&self, status: &JobStatus) -> Action {
        // A suspended Job's clock is stopped, and a decided one has nothing left to time.
        let decided = status.completion_time.is_some()
            || status.conditions.iter().flatten().any(|c| {
                matches!(c.type_.as_str(), "Complete" | "Failed" | "FailureTarget" | "SuccessCriteriaMet")
                    && c.status == "True"
            });
        if self.settings.suspended || decided {
            return Action::requeue(RESYNC);
        }
        if let (Some(deadline), Some(start)) = (self.settings.deadline, self.started(status)) {
            let left = (start + seconds(deadline)).duration_since(self.context.clock.now()).unwrap_or_default();
            self.context.wakeups.after(&self.job, left.max(Duration::from_millis(100)));
        }
        Action::requeue(RESYNC)
    }

    /// `manageJob`: the active pods brought to what is wanted. Returns the active pods
    /// after it and how many it deleted.
    async fn manage(
        &mut self,
        active: &[&Pod],
        terminating: usize,
        succeeded: usize,
        indexes: &BTreeSet<i32>,
    ) -> (usize, usize) {
        if self.settings.suspended {
            let deleted = self.delete(active).await;
            return (active.len() - deleted, deleted);
        }
        let want = self.settings.want_active(active.len(), succeeded);
        let mut surplus = self.surplus(active, indexes);
        let beyond = active.len().saturating_sub(want);
        if surplus.len() < beyond {
            let mut rest: Vec<&Pod> = active.iter().copied().filter(|p| !surplus.contains(p)).collect();
            rest.sort_by_key(|p| removal_rank(p));
            surplus.extend(rest.into_iter().take(beyond - surplus.len()));
        }
        if !surplus.is_empty() {
            let deleted = self.delete(&surplus).await;
            return (active.len() - deleted, deleted);
        }
        // Terminating pods hold their place until they failed, if asked to.
        let running = active.len() + if self.settings.only_replace_failed { terminating } else { 0 };
        let missing = want.saturating_sub(running).min(BURST);
        let indexes: Vec<Option<i32>> = if self.settings.indexed {
            self.pending_indexes(active, indexes, missing).into_iter().map(Some).collect()
        } else {
            vec![None; missing]
        };
        let mut made = 0;
        for index in indexes {
            if !self.create(index).await {
                break;
            }
            made += 1;
        }
        (active.len() + made, 0)
    }

    /// Indexed pods that should not run: no valid index, an index already done, or a
    /// second pod for the same index.
    fn surplus<'a>(&self, active: &[&'a Pod], indexes: &BTreeSet<i32>) -> Vec<&'a Pod> {
        if !self.settings.indexed {
            return Vec::new();
        }
        let mut seen = BTreeSet::new();
        let mut sorted = active.to_vec();
        // The oldest pod of an index stays.
        sorted.sort_by_key(|p| creation(p));
        sorted
            .into_iter()
            .filter(|pod| match index_of(pod, self.settings.completions) {
                Some(index) => indexes.contains(&index) || !seen.insert(index),
                None => true,
            })
            .collect()
    }

    /// The lowest indexes neither done nor running.
    fn pending_indexes(&self, active: &[&Pod], indexes: &BTreeSet<i32>, most: usize) -> Vec<i32> {
        let running: BTreeSet<i32> = active.iter().filter_map(|p| index_of(p, self.settings.completions)).collect();
        (0..self.settings.completions.unwrap_or(0))
            .filter(|i| !indexes.contains(i) && !running.contains(i))
            .take(most)
            .collect()
    }

    /// Deletes pods until one fails (kept for the end of the pass); how many went.
    async fn delete(&mut self, pods: &[&Pod]) -> usize {
        let mut deleted = 0;
        for pod in pods.iter().take(BURST) {
            if let Err(error) = self.pods.delete(&pod.name_any()).await {
                self.deferred = Some(error);
                break;
            }
            deleted += 1;
        }
        deleted
    }

    /// Makes a pod; a failure is kept for the end of the pass.
    async fn create(&mut self, index: Option<i32>) -> bool {
        let made = match self.new_pod(index) {
            Ok(pod) => self.pods.create(&pod).await.map(drop).map_err(Error::from),
            Err(error) => Err(error),
        };
        made.map_err(|error| self.deferred = Some(error)).is_ok()
    }

    /// A pod from the template, owned, tracked, and for an Indexed Job given its index.
    fn new_pod(&self, index: Option<i32>) -> Result<Pod, Error> {
        let template = self.job.spec.as_ref().map(|s| &s.template);
        let template = serde_json::to_value(template).map_err(|e| Error::Invalid(e.to_string()))?;
        let (mut labels, mut annotations) = template_metadata(&template);
        let mut spec = template.get("spec").cloned().unwrap_or_else(|| json!({}));
        let name = self.name();
        let generate_name = match index {
            Some(index) => {
                labels[INDEX] = json!(index.to_string());
                annotations[INDEX] = json!(index.to_string());
                with_index(&mut spec, &format!("{name}-{index}"));
                format!("{name}-{index}-")
            }
            None => format!("{name}-"),
        };
        let owner = serde_json::to_value(owner_reference(&self.job)?).map_err(|e| Error::Invalid(e.to_string()))?;
        let namespace = self.job.namespace().unwrap_or_default();
        from_template(
            Naming::Generated(generate_name),
            &namespace,
            (labels, annotations),
            spec,
            owner,
            &[TRACKING_FINALIZER],
        )
    }

    /// The conditions this pass leads to: the interim `FailureTarget` or
    /// `SuccessCriteriaMet` at once, `Failed` or `Complete` once no pod is terminating;
    /// `Suspended` following `suspend` otherwise.
    fn conclude(&self, status: &mut JobStatus, outcome: &Outcome) {
        let mut conditions = status.conditions.take().unwrap_or_default();
        let now = self.now();
        let settled = outcome.terminating == 0 && outcome.active == 0;
        if let Some(reason) = outcome.failure {
            set_condition(&mut conditions, FAILURE_TARGET, "True", reason, &now);
            if settled {
                set_condition(&mut conditions, FAILED, "True", reason, &now);
            }
        } else if outcome.success {
            set_condition(&mut conditions, SUCCESS_CRITERIA_MET, "True", COMPLETIONS_REACHED, &now);
            if settled {
                set_condition(&mut conditions, COMPLETE, "True", COMPLETIONS_REACHED, &now);
                status.completion_time = Some(self.now());
            }
        } else if self.settings.suspended {
            set_condition(&mut conditions, SUSPENDED, "True", ("JobSuspended", "Job suspended"), &now);
        } else if condition_true(&conditions, SUSPENDED) {
            set_condition(&mut conditions, SUSPENDED, "False", ("JobResumed", "Job resumed"), &now);
            // `activeDeadlineSeconds` counts time continuously active: it starts again.
            status.start_time = Some(self.now());
        }
        status.conditions = Some(conditions).filter(|c| !c.is_empty());
    }

    /// Writes the whole status against the version it was decided on.
    async fn write(&mut self, status: JobStatus) -> Result<(), Error> {
        let mut job = self.job.clone();
        job.status = Some(status);
        self.job = self.jobs.replace_status(&self.name(), &PostParams::default(), &job).await?;
        self.written.note(&self.job);
        Ok(())
    }
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
}
