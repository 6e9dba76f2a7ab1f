//! The HorizontalPodAutoscaler controller, as Kubernetes' (`pkg/controller/podautoscaler`):
//! every 15 s of the control plane's clock, each autoscaler reads its target's `scale`,
//! the usage of the target's pods from the resource metrics API (`metrics.k8s.io`, served
//! from the nodes: simulated pods use what their `kubeyard.dev/usage` annotation says)
//! and their requests, proposes a replica count per metric with Kubernetes' replica
//! calculator (utilization over requests, the 10% tolerance, pods without metrics or not
//! ready counted against the direction of the change, the CPU initialization period), takes
//! the largest, and normalizes it: without `behavior`, the highest recommendation of the
//! last 5 minutes and at most `max(2 × current, 4)`; with `behavior`, its stabilization
//! windows and its rate policies over the recorded scale events. Then it writes the
//! target's `scale` (`SuccessfulRescale`) and its own status and conditions (`AbleToScale`,
//! `ScalingActive`, `ScalingLimited`) in Kubernetes' words.
//!
//! Resource metrics (`cpu`, `memory`; `Utilization` and `AverageValue`) are computed;
//! `Pods`, `Object`, `External` and `ContainerResource` metrics are refused as a metric that
//! cannot be read (`ScalingActive: False`), since no custom metrics API is served.

use super::{Error, Wakeups, Wiring};
use crate::clock::{self, Clock};
use crate::events::{self, Source, Type};
use crate::informers::{Informer, Informers};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, DynamicObject, PostParams};
use kube::runtime::controller::Action;
use kubeyard_compiler::quantity::Quantity;
use kubeyard_compiler::selector::Selector;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

const COMPONENT: &str = "horizontal-pod-autoscaler";
/// `--horizontal-pod-autoscaler-sync-period`.
pub const SYNC_PERIOD: Duration = Duration::from_secs(15);
/// `--horizontal-pod-autoscaler-tolerance`.
const TOLERANCE: f64 = 0.1;
/// `--horizontal-pod-autoscaler-downscale-stabilization`.
const DOWNSCALE_STABILIZATION: Duration = Duration::from_secs(300);
/// `--horizontal-pod-autoscaler-cpu-initialization-period`.
const CPU_INITIALIZATION: Duration = Duration::from_secs(300);
/// `--horizontal-pod-autoscaler-initial-readiness-delay`.
const INITIAL_READINESS_DELAY: Duration = Duration::from_secs(30);

/// What the controller remembers of an autoscaler between passes (Kubernetes keeps it in
/// memory too): its recent recommendations and scale events.
#[derive(Debug, Default, Clone)]
struct History {
    recommendations: Vec<(SystemTime, i64)>,
    /// (when, replicas added).
    ups: Vec<(SystemTime, i64)>,
    /// (when, replicas removed).
    downs: Vec<(SystemTime, i64)>,
}

struct Context {
    client: kube::Client,
    clock: Clock,
    wakeups: Wakeups<HorizontalPodAutoscaler>,
    pods: Informer<Pod>,
    history: Mutex<HashMap<String, History>>,
    /// Per autoscaler: when it was last synced, at which generation.
    synced: Mutex<HashMap<String, (SystemTime, i64)>>,
}

/// Runs until the task is dropped.
pub async fn run(client: kube::Client, informers: &Informers, clock: &Clock) {
    let mut wiring = Wiring::of(&informers.horizontal_pod_autoscalers).reads(&informers.pods);
    let context = Arc::new(Context {
        client,
        clock: clock.clone(),
        wakeups: wiring.wakeups(clock),
        pods: informers.pods.clone(),
        history: Mutex::default(),
        synced: Mutex::default(),
    });
    wiring.run(reconcile, context).await;
}

/// A pod as the replica calculator sees it, for one resource.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    phase: String,
    deleting: bool,
    /// The Ready condition: true or not, since when.
    ready: Option<(bool, SystemTime)>,
    started: Option<SystemTime>,
    /// The sum of its containers' requests (milli-units), or the container that has none.
    request: Result<i64, String>,
    /// Its containers' usage (milli-units), when the metrics API has it.
    usage: Option<i64>,
}

/// How the pods divide (`groupPods`).
#[derive(Debug, Default)]
struct Groups {
    ready: Vec<String>,
    unready: Vec<String>,
    missing: Vec<String>,
}

fn group(samples: &[Sample], cpu: bool, now: SystemTime, metric_time: SystemTime, window: Duration) -> Groups {
    let mut groups = Groups::default();
    for sample in samples {
        if sample.deleting || sample.phase == "Failed" {
            continue;
        }
        if sample.phase == "Pending" {
            groups.unready.push(sample.name.clone());
            continue;
        }
        if sample.usage.is_none() {
            groups.missing.push(sample.name.clone());
            continue;
        }
        if cpu {
            let unready = match (sample.ready, sample.started) {
                (Some((ready, since)), Some(started)) => {
                    if started + CPU_INITIALIZATION > now {
                        !ready || metric_time < since + window
                    } else {
                        !ready && started + INITIAL_READINESS_DELAY > since
                    }
                }
                _ => true,
            };
            if unready {
                groups.unready.push(sample.name.clone());
                continue;
            }
        }
        groups.ready.push(sample.name.clone());
    }
    groups
}

/// A metric's target.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Target {
    /// Percent of the pods' requests.
    Utilization(i64),
    /// Per pod, in milli-units.
    AverageValue(i64),
}

/// What one metric proposes.
#[derive(Debug, PartialEq)]
struct Proposal {
    replicas: i64,
    /// The utilization, in percent of requests (for `Utilization` targets).
    utilization: Option<i64>,
    /// The average usage per pod, in milli-units.
    average: i64,
}

fn within_tolerance(ratio: f64) -> bool {
    (1.0 - ratio).abs() <= TOLERANCE
}

/// `GetResourceUtilizationRatio` / `GetMetricUsageRatio` over the pods with metrics.
fn ratio(
    usage: &BTreeMap<String, i64>,
    requests: &BTreeMap<String, i64>,
    target: Target,
) -> Result<(f64, Option<i64>, i64), String> {
    match target {
        Target::Utilization(percent) => {
            let (mut used, mut requested, mut counted) = (0i64, 0i64, 0i64);
            for (pod, value) in usage {
                let Some(request) = requests.get(pod) else { continue };
                used += value;
                requested += request;
                counted += 1;
            }
            if requested == 0 {
                return Err("no metrics returned matched known pods".into());
            }
            let utilization = used * 100 / requested;
            Ok((utilization as f64 / percent as f64, Some(utilization), used / counted.max(1)))
        }
        Target::AverageValue(per_pod) => {
            let total: i64 = usage.values().sum();
            let average = total / i64::try_from(usage.len()).unwrap_or(1).max(1);
            Ok((average as f64 / per_pod as f64, None, average))
        }
    }
}

/// `GetResourceReplicas` / `GetRawResourceReplicas`: the replicas one resource metric
/// proposes.
fn propose(
    current: i64,
    target: Target,
    samples: &[Sample],
    cpu: bool,
    now: SystemTime,
    window: Duration,
) -> Result<Proposal, String> {
    if samples.is_empty() {
        return Err("no pods returned by selector while calculating replica count".into());
    }
    let groups = group(samples, cpu, now, now, window);
    let mut usage: BTreeMap<String, i64> = samples
        .iter()
        .filter(|s| groups.ready.contains(&s.name))
        .filter_map(|s| Some((s.name.clone(), s.usage?)))
        .collect();
    if usage.is_empty() {
        return Err("did not receive metrics for targeted pods (pods might be unready)".into());
    }
    let mut requests = BTreeMap::new();
    if let Target::Utilization(_) = target {
        for sample in samples {
            requests.insert(sample.name.clone(), sample.request.clone()?);
        }
    }
    let (usage_ratio, utilization, average) = ratio(&usage, &requests, target)?;
    let proposal = |replicas| Proposal { replicas, utilization, average };
    let scale_up_with_unready = !groups.unready.is_empty() && usage_ratio > 1.0;
    if !scale_up_with_unready && groups.missing.is_empty() {
        if within_tolerance(usage_ratio) {
            return Ok(proposal(current));
        }
        return Ok(proposal((usage_ratio * usage.len() as f64).ceil() as i64));
    }
    // Pods without metrics count against the change: at their full request (or the
    // target) on a scale-down, at nothing on a scale-up; pods not ready count as nothing.
    for pod in &groups.missing {
        let assumed = match target {
            Target::Utilization(percent) if usage_ratio < 1.0 => {
                requests.get(pod).copied().unwrap_or(0) * percent.max(100) / 100
            }
            Target::AverageValue(per_pod) if usage_ratio < 1.0 => per_pod,
            _ if usage_ratio > 1.0 => 0,
            _ => continue,
        };
        usage.insert(pod.clone(), assumed);
    }
    if scale_up_with_unready {
        for pod in &groups.unready {
            usage.insert(pod.clone(), 0);
        }
    }
    let (new_ratio, _, _) = ratio(&usage, &requests, target)?;
    if within_tolerance(new_ratio) || (usage_ratio < 1.0 && new_ratio > 1.0) || (usage_ratio > 1.0 && new_ratio < 1.0) {
        return Ok(proposal(current));
    }
    let replicas = (new_ratio * usage.len() as f64).ceil() as i64;
    if (new_ratio < 1.0 && replicas > current) || (new_ratio > 1.0 && replicas < current) {
        return Ok(proposal(current));
    }
    Ok(proposal(replicas))
}

/// A condition as the controller sets it: type, status, reason, message.
type Condition = (&'static str, &'static str, String, String);

fn set(conditions: &mut Vec<Condition>, kind: &'static str, status: &'static str, reason: &str, message: String) {
    conditions.retain(|c| c.0 != kind);
    conditions.push((kind, status, reason.to_string(), message));
}

/// A direction's scaling rules, with the API's defaults.
#[derive(Debug, Clone)]
struct Rules {
    window: Duration,
    select: String,
    /// (type, value, period).
    policies: Vec<(String, i64, Duration)>,
}

fn rules(behavior: &Value, direction: &str) -> Rules {
    let rules = behavior.get(direction).cloned().unwrap_or(Value::Null);
    let up = direction == "scaleUp";
    let window = rules.get("stabilizationWindowSeconds").and_then(Value::as_u64).map(Duration::from_secs);
    let window = window.unwrap_or(if up { Duration::ZERO } else { DOWNSCALE_STABILIZATION });
    let policies = match rules.get("policies").and_then(Value::as_array) {
        Some(policies) => policies
            .iter()
            .map(|p| {
                let period = Duration::from_secs(p["periodSeconds"].as_u64().unwrap_or(15));
                (p["type"].as_str().unwrap_or_default().to_string(), p["value"].as_i64().unwrap_or(0), period)
            })
            .collect(),
        None if up => {
            vec![("Pods".into(), 4, Duration::from_secs(15)), ("Percent".into(), 100, Duration::from_secs(15))]
        }
        None => vec![("Percent".into(), 100, Duration::from_secs(15))],
    };
    let select = rules.get("selectPolicy").and_then(Value::as_str).unwrap_or("Max").to_string();
    Rules { window, select, policies }
}

fn changed_within(events: &[(SystemTime, i64)], period: Duration, now: SystemTime) -> i64 {
    events.iter().filter(|(at, _)| now.duration_since(*at).unwrap_or_default() < period).map(|(_, n)| n).sum()
}

/// `calculateScaleUpLimitWithScalingRules` and its scale-down twin.
fn rate_limit(current: i64, history: &History, rules: &Rules, up: bool, now: SystemTime) -> i64 {
    if rules.select == "Disabled" {
        return current;
    }
    let min_change = rules.select == "Min";
    let mut result: Option<i64> = None;
    for (kind, value, period) in &rules.policies {
        let start = current - changed_within(&history.ups, *period, now) + changed_within(&history.downs, *period, now);
        let proposed = match (kind.as_str(), up) {
            ("Pods", true) => start + value,
            ("Pods", false) => start - value,
            (_, true) => (start as f64 * (1.0 + *value as f64 / 100.0)).ceil() as i64,
            (_, false) => (start as f64 * (1.0 - *value as f64 / 100.0)) as i64,
        };
        // Max takes the largest change: the highest limit up, the lowest down.
        let pick = if up != min_change { i64::max } else { i64::min };
        result = Some(result.map_or(proposed, |r| pick(r, proposed)));
    }
    result.unwrap_or(current)
}

/// `convertDesiredReplicasWithRules`: the replicas within the bounds and the scale-up
/// limit, and what limited them.
fn bounded(desired: i64, min: i64, max: i64, upper: i64) -> (i64, &'static str, &'static str) {
    if desired < min {
        return (min, "TooFewReplicas", "the desired replica count is less than the minimum replica count");
    }
    if desired > upper.min(max) {
        return if upper < max {
            (upper, "ScaleUpLimit", "the desired replica count is increasing faster than the maximum scale rate")
        } else {
            (max, "TooManyReplicas", "the desired replica count is more than the maximum replica count")
        };
    }
    (desired, "DesiredWithinRange", "the desired count is within the acceptable range")
}

/// `normalizeDesiredReplicas` (no behavior) or `...WithBehaviors`: the replicas to set,
/// with the `AbleToScale` and `ScalingLimited` conditions; records the recommendation.
#[allow(clippy::too_many_arguments)]
fn normalize(
    behavior: Option<&Value>,
    history: &mut History,
    now: SystemTime,
    current: i64,
    desired: i64,
    min: i64,
    max: i64,
    conditions: &mut Vec<Condition>,
) -> i64 {
    let Some(behavior) = behavior else {
        // The highest recommendation of the last five minutes.
        let stabilized = history
            .recommendations
            .iter()
            .filter(|(at, _)| now.duration_since(*at).unwrap_or_default() < DOWNSCALE_STABILIZATION)
            .map(|(_, r)| *r)
            .fold(desired, i64::max);
        history.recommendations.retain(|(at, _)| now.duration_since(*at).unwrap_or_default() < DOWNSCALE_STABILIZATION);
        history.recommendations.push((now, desired));
        if stabilized != desired {
            let message =
                "recent recommendations were higher than current one, applying the highest recent recommendation";
            set(conditions, "AbleToScale", "True", "ScaleDownStabilized", message.into());
        } else {
            set(conditions, "AbleToScale", "True", "ReadyForNewScale", "recommended size matches current size".into());
        }
        let upper = (2 * current).max(4);
        let (replicas, reason, message) = bounded(stabilized, min, max, upper);
        let limited = if replicas == stabilized { "False" } else { "True" };
        set(conditions, "ScalingLimited", limited, reason, message.into());
        return replicas;
    };
    let (up, down) = (rules(behavior, "scaleUp"), rules(behavior, "scaleDown"));
    let within = |window: Duration| move |at: &SystemTime| now.duration_since(*at).unwrap_or_default() < window;
    let mut up_recommendation = desired;
    let mut down_recommendation = desired;
    for (at, recommendation) in &history.recommendations {
        if within(up.window)(at) {
            up_recommendation = up_recommendation.min(*recommendation);
        }
        if within(down.window)(at) {
            down_recommendation = down_recommendation.max(*recommendation);
        }
    }
    let longest = up.window.max(down.window);
    history.recommendations.retain(|(at, _)| within(longest)(at));
    history.recommendations.push((now, desired));
    let stabilized = current.max(up_recommendation).min(down_recommendation);
    if stabilized != desired {
        let (reason, message) = if desired >= current {
            (
                "ScaleUpStabilized",
                "recent recommendations were lower than current one, applying the lowest recent recommendation",
            )
        } else {
            (
                "ScaleDownStabilized",
                "recent recommendations were higher than current one, applying the highest recent recommendation",
            )
        };
        set(conditions, "AbleToScale", "True", reason, message.into());
    } else {
        set(conditions, "AbleToScale", "True", "ReadyForNewScale", "recommended size matches current size".into());
    }
    let (replicas, reason, message) = if stabilized > current {
        let limit = rate_limit(current, history, &up, true, now).max(current);
        if max > limit {
            if stabilized > limit {
                (limit, "ScaleUpLimit", "the desired replica count is increasing faster than the maximum scale rate")
            } else {
                (stabilized, "DesiredWithinRange", "the desired count is within the acceptable range")
            }
        } else if stabilized > max {
            (max, "TooManyReplicas", "the desired replica count is more than the maximum replica count")
        } else {
            (stabilized, "DesiredWithinRange", "the desired count is within the acceptable range")
        }
    } else if stabilized < current {
        let limit = rate_limit(current, history, &down, false, now).min(current);
        if min < limit {
            if stabilized < limit {
                (limit, "ScaleDownLimit", "the desired replica count is decreasing faster than the maximum scale rate")
            } else {
                (stabilized, "DesiredWithinRange", "the desired count is within the acceptable range")
            }
        } else if stabilized < min {
            (min, "TooFewReplicas", "the desired replica count is less than the minimum replica count")
        } else {
            (stabilized, "DesiredWithinRange", "the desired count is within the acceptable range")
        }
    } else {
        (stabilized, "DesiredWithinRange", "the desired count is within the acceptable range")
    };
    let limited = if replicas == stabilized { "False" } else { "True" };
    set(conditions, "ScalingLimited", limited, reason, message.into());
    replicas
}

/// `storeScaleEvent`: kept only for autoscalers with `behavior`, for their rate policies.
fn record_scale(history: &mut History, behavior: Option<&Value>, now: SystemTime, from: i64, to: i64) {
    let Some(behavior) = behavior else { return };
    let longest = ["scaleUp", "scaleDown"]
        .iter()
        .flat_map(|d| rules(behavior, d).policies.into_iter().map(|p| p.2))
        .max()
        .unwrap_or_default();
    let keep = |events: &mut Vec<(SystemTime, i64)>| {
        events.retain(|(at, _)| now.duration_since(*at).unwrap_or_default() < longest)
    };
    keep(&mut history.ups);
    keep(&mut history.downs);
    if to > from {
        history.ups.push((now, to - from));
    } else if to < from {
        history.downs.push((now, from - to));
    }
}

/// The pods of the target as samples for `resource`, their usage from the metrics API's
/// answer.
fn samples(pods: &[Arc<Pod>], usage: &HashMap<String, BTreeMap<String, i64>>, resource: &str) -> Vec<Sample> {
    let time = |t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time| {
        SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(t.0.as_second()).unwrap_or(0))
    };
    pods.iter()
        .map(|pod| {
            let status = pod.status.clone().unwrap_or_default();
            let ready = status.conditions.iter().flatten().find(|c| c.type_ == "Ready").map(|c| {
                (c.status == "True", c.last_transition_time.as_ref().map(time).unwrap_or(SystemTime::UNIX_EPOCH))
            });
            let mut request = Ok(0);
            for container in pod.spec.iter().flat_map(|s| &s.containers) {
                let amount =
                    container.resources.as_ref().and_then(|r| r.requests.as_ref()).and_then(|r| r.get(resource));
                match amount.and_then(|q| q.0.parse::<Quantity>().ok()) {
                    Some(quantity) => {
                        request =
                            request.map(|sum: i64| sum + i64::try_from(quantity.millis_ceil()).unwrap_or(i64::MAX))
                    }
                    None => {
                        request = Err(format!(
                            "missing request for {resource} in container {} of Pod {}",
                            container.name,
                            pod.name_any()
                        ));
                        break;
                    }
                }
            }
            Sample {
                name: pod.name_any(),
                phase: status.phase.clone().unwrap_or_default(),
                deleting: pod.metadata.deletion_timestamp.is_some(),
                ready,
                started: status.start_time.as_ref().map(time),
                request,
                usage: usage.get(&pod.name_any()).and_then(|u| u.get(resource).copied()),
            }
        })
        .collect()
}

/// Usage per pod and resource (milli-units), from a `PodMetricsList`.
fn usage_of(list: &Value) -> HashMap<String, BTreeMap<String, i64>> {
    let mut found = HashMap::new();
    for item in list["items"].as_array().into_iter().flatten() {
        let mut total: BTreeMap<String, i64> = BTreeMap::new();
        for container in item["containers"].as_array().into_iter().flatten() {
            for (name, amount) in container["usage"].as_object().into_iter().flatten() {
                let milli = amount.as_str().and_then(|a| a.parse::<Quantity>().ok()).map_or(0, |q| q.millis_ceil());
                *total.entry(name.clone()).or_default() += i64::try_from(milli).unwrap_or(i64::MAX);
            }
        }
        found.insert(item.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string(), total);
    }
    found
}

fn milli_quantity(milli: i64) -> String {
    if milli % 1000 == 0 { (milli / 1000).to_string() } else { format!("{milli}m") }
}

/// What the metrics say: the largest proposal, its metric's name, the statuses, and the
/// first error (with its condition reason) if any metric failed.
struct Computed {
    replicas: i64,
    metric: String,
    statuses: Vec<Value>,
    invalid: usize,
    first_error: Option<(String, String)>,
}

fn compute(
    metrics: &[Value],
    current: i64,
    pods: &[Arc<Pod>],
    usage: &HashMap<String, BTreeMap<String, i64>>,
    now: SystemTime,
) -> Computed {
    let mut computed =
        Computed { replicas: 0, metric: String::new(), statuses: Vec::new(), invalid: 0, first_error: None };
    for metric in metrics {
        let kind = metric["type"].as_str().unwrap_or_default();
        let result: Result<(Proposal, String, Value), (String, String)> = match kind {
            "Resource" => {
                let name = metric.pointer("/resource/name").and_then(Value::as_str).unwrap_or_default();
                let target = metric.pointer("/resource/target").cloned().unwrap_or(Value::Null);
                let target = if let Some(value) = target.get("averageValue").and_then(Value::as_str) {
                    value
                        .parse::<Quantity>()
                        .ok()
                        .map(|q| Target::AverageValue(i64::try_from(q.millis_ceil()).unwrap_or(i64::MAX)))
                } else {
                    target.get("averageUtilization").and_then(Value::as_i64).map(Target::Utilization)
                };
                match target {
                    None => Err((
                        "FailedGetResourceMetric".into(),
                        "invalid resource metric source: neither an average utilization target nor an average value (usage) target was set".into(),
                    )),
                    Some(target) => {
                        let samples = samples(pods, usage, name);
                        let what = if matches!(target, Target::Utilization(_)) { "utilization" } else { "usage" };
                        propose(current, target, &samples, name == "cpu", now, Duration::from_secs(15))
                            .map(|proposal| {
                                let metric_name = match target {
                                    Target::Utilization(_) => format!("{name} resource utilization (percentage of request)"),
                                    Target::AverageValue(_) => format!("{name} resource"),
                                };
                                let mut current_value = json!({"averageValue": milli_quantity(proposal.average)});
                                if let Some(utilization) = proposal.utilization {
                                    current_value["averageUtilization"] = json!(utilization);
                                }
                                let status = json!({"type": "Resource", "resource": {"name": name, "current": current_value}});
                                (proposal, metric_name, status)
                            })
                            .map_err(|why| {
                                (
                                    "FailedGetResourceMetric".into(),
                                    format!("failed to get {name} resource metric value: failed to get {name} {what}: {why}"),
                                )
                            })
                    }
                }
            }
            other => {
                let reason = match other {
                    "Pods" => "FailedGetPodsMetric",
                    "Object" => "FailedGetObjectMetric",
                    "External" => "FailedGetExternalMetric",
                    _ => "FailedGetContainerResourceMetric",
                };
                Err((
                    reason.into(),
                    format!("unable to get {other} metrics: kubeyard serves no custom or external metrics API"),
                ))
            }
        };
        match result {
            Ok((proposal, name, status)) => {
                if computed.replicas == 0 || proposal.replicas > computed.replicas {
                    computed.replicas = proposal.replicas;
                    computed.metric = name;
                }
                computed.statuses.push(status);
            }
            Err(error) => {
                computed.invalid += 1;
                if computed.first_error.is_none() {
                    computed.first_error = Some(error);
                }
            }
        }
    }
    computed
}

fn default_metrics() -> Vec<Value> {
    vec![
        json!({"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}),
    ]
}

async fn reconcile(hpa: Arc<HorizontalPodAutoscaler>, context: Arc<Context>) -> Result<Action, Error> {
    let key = format!("{}/{}", hpa.namespace().unwrap_or_default(), hpa.name_any());
    let now = context.clock.now();
    let generation = hpa.metadata.generation.unwrap_or(0);
    // Once per sync period, as Kubernetes enqueues autoscalers: the controller's own
    // status writes come back as changes, and a spec change (a new generation) is acted
    // on at once.
    {
        let mut synced = context.synced.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match synced.get(&key) {
            Some((at, seen)) if *seen == generation && now.duration_since(*at).unwrap_or_default() < SYNC_PERIOD => {
                return Ok(Action::await_change());
            }
            _ => {
                synced.insert(key, (now, generation));
            }
        }
    }
    context.wakeups.after(hpa.as_ref(), SYNC_PERIOD);
    // A failure is in the autoscaler's conditions and events already; the next pass comes
    // with the period, as in Kubernetes, not with kube-runtime's retry.
    let _ = sync(&hpa, &context).await;
    Ok(Action::await_change())
}

async fn sync(hpa: &HorizontalPodAutoscaler, context: &Context) -> Result<(), Error> {
    let namespace = hpa.namespace().unwrap_or_default();
    let key = format!("{namespace}/{}", hpa.name_any());
    let now = context.clock.now();
    let timestamp = clock::format(now);
    let object = json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": hpa.metadata});
    let say = |kind: Type, reason: &str, message: String| {
        let (client, object, timestamp, reason) =
            (context.client.clone(), object.clone(), timestamp.clone(), reason.to_string());
        async move {
            let source = Source { component: COMPONENT, host: None };
            events::record(&client, &object, source, kind, &reason, &message, &timestamp).await;
        }
    };
    let spec = serde_json::to_value(hpa.spec.clone().unwrap_or_default()).unwrap_or_default();
    let before = serde_json::to_value(hpa.status.clone().unwrap_or_default()).unwrap_or_default();
    let mut conditions: Vec<Condition> = Vec::new();
    for condition in before["conditions"].as_array().into_iter().flatten() {
        let text = |k: &str| condition[k].as_str().unwrap_or_default().to_string();
        let kind = match text("type").as_str() {
            "AbleToScale" => "AbleToScale",
            "ScalingActive" => "ScalingActive",
            "ScalingLimited" => "ScalingLimited",
            _ => continue,
        };
        let status = if text("status") == "True" { "True" } else { "False" };
        conditions.push((kind, status, text("reason"), text("message")));
    }
    let reference = &spec["scaleTargetRef"];
    let (api_version, kind, name) = (
        reference["apiVersion"].as_str().unwrap_or_default(),
        reference["kind"].as_str().unwrap_or_default(),
        reference["name"].as_str().unwrap_or_default(),
    );
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let gvk = kube::api::GroupVersionKind::gvk(group, version, kind);
    let scale = match kube::discovery::pinned_kind(&context.client, &gvk).await {
        Ok((resource, _)) => {
            let api: Api<DynamicObject> = Api::namespaced_with(context.client.clone(), &namespace, &resource);
            api.get_subresource("scale", name).await.map(|scale| (api, scale)).map_err(|e| e.to_string())
        }
        Err(error) => Err(error.to_string()),
    };
    let (scales, mut scale) = match scale {
        Ok(found) => found,
        Err(why) => {
            say(Type::Warning, "FailedGetScale", why.clone()).await;
            let message = format!("the HPA controller was unable to get the target's current scale: {why}");
            set(&mut conditions, "AbleToScale", "False", "FailedGetScale", message);
            return write_status(context, hpa, &before, status_with(&before, &conditions, None, &timestamp)).await;
        }
    };
    set(
        &mut conditions,
        "AbleToScale",
        "True",
        "SucceededGetScale",
        "the HPA controller was able to get the target's current scale".into(),
    );
    let current = scale.data.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0);
    let previous_desired = before["desiredReplicas"].as_i64().unwrap_or(current);
    let min = spec["minReplicas"].as_i64().unwrap_or(1);
    let max = spec["maxReplicas"].as_i64().unwrap_or(1);
    let mut statuses = Vec::new();
    let mut reason = String::new();
    let (desired, rescale) = if current == 0 && min != 0 {
        set(
            &mut conditions,
            "ScalingActive",
            "False",
            "ScalingDisabled",
            "scaling is disabled since the replica count of the target is zero".into(),
        );
        (0, false)
    } else if current > max {
        reason = "Current number of replicas above Spec.MaxReplicas".into();
        (max, true)
    } else if current < min {
        reason = "Current number of replicas below Spec.MinReplicas".into();
        (min, true)
    } else {
        let selector_text =
            scale.data.pointer("/status/selector").and_then(Value::as_str).unwrap_or_default().to_string();
        let selector: Selector = match selector_text.parse() {
            Ok(selector) => selector,
            Err(error) => {
                let why = format!("couldn't convert selector into a corresponding internal selector object: {error}");
                say(Type::Warning, "InvalidSelector", why.clone()).await;
                set(
                    &mut conditions,
                    "ScalingActive",
                    "False",
                    "InvalidSelector",
                    format!("the HPA target's scale has an invalid selector: {why}"),
                );
                return write_status(
                    context,
                    hpa,
                    &before,
                    status_with(&before, &conditions, Some((current, previous_desired, &[])), &timestamp),
                )
                .await;
            }
        };
        let pods: Vec<Arc<Pod>> = context
            .pods
            .in_namespace(&namespace)
            .into_iter()
            .filter(|p| selector.matches(&p.labels().iter().map(|(k, v)| (k.clone(), v.clone())).collect()))
            .collect();
        let query = serde_urlencoded::to_string([("labelSelector", selector_text.as_str())]).unwrap_or_default();
        let path = format!("/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods?{query}");
        let usage = match http::Request::get(path).body(Vec::new()) {
            Ok(request) => {
                context.client.request::<Value>(request).await.map(|list| usage_of(&list)).unwrap_or_default()
            }
            Err(_) => HashMap::new(),
        };
        let metrics = spec["metrics"].as_array().filter(|m| !m.is_empty()).cloned().unwrap_or_else(default_metrics);
        let computed = compute(&metrics, current, &pods, &usage, now);
        statuses = computed.statuses;
        if computed.invalid >= metrics.len() || (computed.invalid > 0 && computed.replicas < current) {
            let (condition_reason, why) = computed.first_error.unwrap_or_default();
            let message = format!(
                "invalid metrics ({} invalid out of {}), first error is: {why}",
                computed.invalid,
                metrics.len()
            );
            say(Type::Warning, &condition_reason, why.clone()).await;
            set(
                &mut conditions,
                "ScalingActive",
                "False",
                &condition_reason,
                format!("the HPA was unable to compute the replica count: {why}"),
            );
            say(Type::Warning, "FailedComputeMetricsReplicas", message).await;
            return write_status(
                context,
                hpa,
                &before,
                status_with(&before, &conditions, Some((current, previous_desired, &statuses)), &timestamp),
            )
            .await;
        }
        set(
            &mut conditions,
            "ScalingActive",
            "True",
            "ValidMetricFound",
            format!("the HPA was able to successfully calculate a replica count from {}", computed.metric),
        );
        let proposed = computed.replicas;
        if proposed > current {
            reason = format!("{} above target", computed.metric);
        } else if proposed < current {
            reason = "All metrics below target".into();
        }
        let behavior = spec.get("behavior").filter(|b| !b.is_null());
        let desired = {
            let mut histories = context.history.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            // `recordInitialRecommendation`: a new autoscaler starts from the current size,
            // so it does not scale down before the stabilization window has passed.
            let history = histories
                .entry(key.clone())
                .or_insert_with(|| History { recommendations: vec![(now, current)], ..History::default() });
            normalize(behavior, history, now, current, proposed, min, max, &mut conditions)
        };
        (desired, desired != current)
    };
    let mut scaled_at = None;
    if rescale {
        scale.data["spec"]["replicas"] = json!(desired);
        match scales.replace_subresource("scale", name, &PostParams::default(), &scale).await {
            Ok(_) => {
                set(
                    &mut conditions,
                    "AbleToScale",
                    "True",
                    "SucceededRescale",
                    format!("the HPA controller was able to update the target scale to {desired}"),
                );
                say(Type::Normal, "SuccessfulRescale", format!("New size: {desired}; reason: {reason}")).await;
                let behavior = spec.get("behavior").filter(|b| !b.is_null());
                let mut histories = context.history.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                record_scale(histories.entry(key.clone()).or_default(), behavior, now, current, desired);
                scaled_at = Some(timestamp.clone());
            }
            Err(error) => {
                say(Type::Warning, "FailedRescale", format!("New size: {desired}; reason: {reason}; error: {error}"))
                    .await;
                set(
                    &mut conditions,
                    "AbleToScale",
                    "False",
                    "FailedUpdateScale",
                    format!("the HPA controller was unable to update the target scale: {error}"),
                );
            }
        }
    }
    let shown = if scaled_at.is_some() { desired } else { current };
    let mut status = status_with(&before, &conditions, Some((current, shown, &statuses)), &timestamp);
    if let Some(at) = scaled_at {
        status["lastScaleTime"] = json!(at);
    }
    status["observedGeneration"] = json!(hpa.metadata.generation.unwrap_or(0));
    write_status(context, hpa, &before, status).await
}

/// The status with `conditions` (a transition time kept while a condition's status holds)
/// and, when given, the replicas and current metrics.
fn status_with(before: &Value, conditions: &[Condition], replicas: Option<(i64, i64, &[Value])>, now: &str) -> Value {
    let mut status = before.clone();
    if !status.is_object() {
        status = json!({});
    }
    let previous = before["conditions"].as_array().cloned().unwrap_or_default();
    let written: Vec<Value> = conditions
        .iter()
        .map(|(kind, state, reason, message)| {
            let kept = previous
                .iter()
                .find(|c| c["type"] == *kind && c["status"] == *state)
                .and_then(|c| c.get("lastTransitionTime").cloned());
            json!({"type": kind, "status": state, "reason": reason, "message": message,
                   "lastTransitionTime": kept.unwrap_or_else(|| json!(now))})
        })
        .collect();
    status["conditions"] = Value::Array(written);
    if let Some((current, desired, metrics)) = replicas {
        status["currentReplicas"] = json!(current);
        status["desiredReplicas"] = json!(desired);
        if metrics.is_empty() {
            status.as_object_mut().map(|s| s.remove("currentMetrics"));
        } else {
            status["currentMetrics"] = Value::Array(metrics.to_vec());
        }
    }
    status
}

async fn write_status(
    context: &Context,
    hpa: &HorizontalPodAutoscaler,
    before: &Value,
    status: Value,
) -> Result<(), Error> {
    if super::same_content(before, &status) {
        return Ok(());
    }
    let mut next = hpa.clone();
    next.status = Some(serde_json::from_value(status).map_err(|e| Error::Invalid(e.to_string()))?);
    let api: Api<HorizontalPodAutoscaler> =
        Api::namespaced(context.client.clone(), &hpa.namespace().unwrap_or_default());
    api.replace_status(&hpa.name_any(), &PostParams::default(), &next).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
    }

    fn sample(name: &str, usage: Option<i64>, request: i64) -> Sample {
        Sample {
            name: name.into(),
            phase: "Running".into(),
            deleting: false,
            ready: Some((true, at(0))),
            started: Some(at(0)),
            request: Ok(request),
            usage,
        }
    }

    const NOW: u64 = 10_000;

    fn proposal(current: i64, target: Target, samples: &[Sample]) -> Result<Proposal, String> {
        propose(current, target, samples, true, at(NOW), Duration::from_secs(15))
    }

    #[test]
    fn the_replica_calculator_scales_by_utilization_outside_the_tolerance() {
        // 2 pods at 90% of their 200m request against 50%: ceil(1.8 × 2) = 4.
        let busy = [sample("a", Some(180), 200), sample("b", Some(180), 200)];
        assert_eq!(
            proposal(2, Target::Utilization(50), &busy).unwrap(),
            Proposal { replicas: 4, utilization: Some(90), average: 180 }
        );
        // Within 10% of the target: no change.
        let close = [sample("a", Some(105), 200), sample("b", Some(105), 200)];
        assert_eq!(proposal(2, Target::Utilization(50), &close).unwrap().replicas, 2);
        // Idle: ceil(0.1 × 4) = 1.
        let idle = [
            sample("a", Some(10), 200),
            sample("b", Some(10), 200),
            sample("c", Some(10), 200),
            sample("d", Some(10), 200),
        ];
        assert_eq!(proposal(4, Target::Utilization(50), &idle).unwrap().replicas, 1);
        // Average value: 300m per pod against 100m.
        let valued = [sample("a", Some(300), 0), sample("b", Some(300), 0)];
        assert_eq!(
            proposal(2, Target::AverageValue(100), &valued).unwrap(),
            Proposal { replicas: 6, utilization: None, average: 300 }
        );
    }

    #[test]
    fn pods_without_metrics_or_readiness_count_against_the_change() {
        // Scaling up with a pod that has no metrics yet: it counts as using nothing.
        let with_missing = [sample("a", Some(200), 200), sample("b", None, 200)];
        // Ratio 2.0 (100% against 50%); with b at 0: 50% → ratio 1.0, within tolerance: keep.
        assert_eq!(proposal(2, Target::Utilization(50), &with_missing).unwrap().replicas, 2);
        // Scaling down with a missing pod: it counts as using its whole request.
        let down = [sample("a", Some(20), 200), sample("b", None, 200)];
        // Ratio 0.2; with b at 100%: (20+200)/400 = 55% → 1.1, the other way: keep.
        assert_eq!(proposal(2, Target::Utilization(50), &down).unwrap().replicas, 2);
        // A pod that just became ready (within the CPU initialization period and less than a
        // window ago) is not ready for the calculator.
        let mut fresh = sample("b", Some(400), 200);
        fresh.started = Some(at(NOW - 60));
        fresh.ready = Some((true, at(NOW - 5)));
        let unready = [sample("a", Some(200), 200), fresh];
        // Ready a: 100% → ratio 2.0; with b at 0: 50% → 1.0: keep.
        assert_eq!(proposal(2, Target::Utilization(50), &unready).unwrap().replicas, 2);
        let mut no_request = sample("a", Some(1), 0);
        no_request.request = Err("missing request for cpu in container web of Pod a".into());
        assert_eq!(
            proposal(1, Target::Utilization(50), &[no_request]).unwrap_err(),
            "missing request for cpu in container web of Pod a"
        );
        assert_eq!(
            proposal(1, Target::Utilization(50), &[]).unwrap_err(),
            "no pods returned by selector while calculating replica count"
        );
    }

    #[test]
    fn without_behavior_scale_downs_wait_five_minutes_and_scale_ups_at_most_double() {
        let mut history = History::default();
        let mut conditions = Vec::new();
        let up = normalize(None, &mut history, at(1_000), 2, 10, 1, 20, &mut conditions);
        assert_eq!(up, 4, "max(2 × 2, 4)");
        assert!(conditions.contains(&(
            "ScalingLimited",
            "True",
            "ScaleUpLimit".into(),
            "the desired replica count is increasing faster than the maximum scale rate".into()
        )));
        // A minute later the load is gone: the recommendation of 10 still stands.
        let held = normalize(None, &mut history, at(1_060), 4, 1, 1, 20, &mut conditions);
        assert_eq!(held, 8, "the highest recent recommendation (10), within the scale-up limit max(2 × 4, 4)");
        assert!(conditions.iter().any(|c| c.2 == "ScaleDownStabilized"));
        // Past five minutes of low recommendations, it goes down.
        for minute in 2..=6 {
            normalize(None, &mut history, at(1_000 + minute * 60), 4, 1, 1, 20, &mut conditions);
        }
        assert_eq!(normalize(None, &mut history, at(1_000 + 7 * 60), 4, 1, 1, 20, &mut conditions), 1);
        assert!(conditions.contains(&(
            "AbleToScale",
            "True",
            "ReadyForNewScale".into(),
            "recommended size matches current size".into()
        )));
        assert_eq!(normalize(None, &mut History::default(), at(0), 3, 30, 1, 5, &mut conditions), 5);
        assert!(conditions.iter().any(|c| c.2 == "TooManyReplicas"));
    }

    #[test]
    fn behavior_policies_limit_the_rate_over_their_periods() {
        let behavior = json!({"scaleUp": {"policies": [{"type": "Pods", "value": 2, "periodSeconds": 60}], "selectPolicy": "Max"},
                              "scaleDown": {"stabilizationWindowSeconds": 0, "policies": [{"type": "Percent", "value": 50, "periodSeconds": 60}]}});
        let mut history = History::default();
        let mut conditions = Vec::new();
        let first = normalize(Some(&behavior), &mut history, at(100), 2, 10, 1, 20, &mut conditions);
        assert_eq!(first, 4, "two pods more per minute");
        record_scale(&mut history, Some(&behavior), at(100), 2, 4);
        // Within the same minute, nothing more may be added.
        assert_eq!(normalize(Some(&behavior), &mut history, at(130), 4, 10, 1, 20, &mut conditions), 4);
        assert!(conditions.iter().any(|c| c.2 == "ScaleUpLimit"));
        // A minute later, two more.
        assert_eq!(normalize(Some(&behavior), &mut history, at(161), 4, 10, 1, 20, &mut conditions), 6);
        // Down: half per minute.
        let mut quiet = History::default();
        assert_eq!(normalize(Some(&behavior), &mut quiet, at(500), 10, 1, 1, 20, &mut conditions), 5);
        assert!(conditions.iter().any(|c| c.2 == "ScaleDownLimit"));
    }

    #[test]
    fn metrics_other_than_resources_are_refused_in_kubernetes_words() {
        let computed = compute(&[json!({"type": "Pods", "pods": {}})], 1, &[], &HashMap::new(), at(0));
        assert_eq!(computed.invalid, 1);
        assert_eq!(computed.first_error.unwrap().0, "FailedGetPodsMetric");
        let computed = compute(&default_metrics(), 1, &[], &HashMap::new(), at(0));
        assert_eq!(
            computed.first_error.unwrap().1,
            "failed to get cpu resource metric value: failed to get cpu utilization: no pods returned by selector while calculating replica count"
        );
        let list = json!({"items": [{"metadata": {"name": "a"}, "containers": [
            {"name": "web", "usage": {"cpu": "250m", "memory": "1Mi"}}, {"name": "side", "usage": {"cpu": "50m"}}]}]});
        let usage = usage_of(&list);
        assert_eq!(usage["a"]["cpu"], 300);
        assert_eq!(usage["a"]["memory"], 1_048_576_000);
    }
}
