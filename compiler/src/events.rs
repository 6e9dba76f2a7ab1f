//! Events between `v1` (core) and `events.k8s.io/v1`, as the API server converts them
//! (`pkg/apis/events/v1/conversion.go`): one stored Event, seen through either API. The
//! newer API renames what the older one said (`involvedObject` is `regarding`, `message`
//! is `note`, `reportingComponent` is `reportingController`) and keeps the older one's
//! own fields as `deprecated*`.

use serde_json::{Map, Value};

/// core/v1 field ↔ events.k8s.io/v1 field, for the fields that are renamed.
const RENAMED: &[(&str, &str)] = &[
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("reportingComponent", "reportingController"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
];

/// Fields both APIs name alike.
const SHARED: &[&str] =
    &["metadata", "eventTime", "series", "reportingInstance", "action", "reason", "related", "type"];

fn convert(event: &Value, api_version: &str, from_core: bool) -> Value {
    let mut out = Map::new();
    out.insert("apiVersion".into(), Value::String(api_version.into()));
    out.insert("kind".into(), Value::String("Event".into()));
    for field in SHARED {
        if let Some(value) = event.get(*field).filter(|v| !v.is_null()) {
            out.insert((*field).into(), value.clone());
        }
    }
    for (core, events) in RENAMED {
        let (from, to) = if from_core { (core, events) } else { (events, core) };
        if let Some(value) = event.get(*from).filter(|v| !v.is_null()) {
            out.insert((*to).into(), value.clone());
        }
    }
    Value::Object(out)
}

/// A core/v1 Event as events.k8s.io/v1 shows it.
pub fn to_events_v1(core: &Value) -> Value {
    convert(core, "events.k8s.io/v1", true)
}

/// An events.k8s.io/v1 Event as core/v1 holds it.
pub fn to_core_v1(event: &Value) -> Value {
    convert(event, "v1", false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn one_event_reads_through_either_api_and_back() {
        let core = json!({"apiVersion": "v1", "kind": "Event",
                          "metadata": {"name": "web-1.17c0d1b2a3f4e5d6", "namespace": "shop"},
                          "involvedObject": {"kind": "Pod", "name": "web-1", "namespace": "shop"},
                          "reason": "Started", "message": "Started container web", "type": "Normal",
                          "source": {"component": "kubelet", "host": "node-1"}, "reportingComponent": "kubelet",
                          "reportingInstance": "node-1", "firstTimestamp": "2026-01-01T00:00:00Z",
                          "lastTimestamp": "2026-01-01T00:00:00Z", "count": 1});
        let newer = to_events_v1(&core);
        assert_eq!(newer["apiVersion"], "events.k8s.io/v1");
        assert_eq!(newer["regarding"]["name"], "web-1");
        assert_eq!(newer["note"], "Started container web");
        assert_eq!(newer["reportingController"], "kubelet");
        assert_eq!(newer["deprecatedCount"], 1);
        assert!(newer.get("involvedObject").is_none() && newer.get("message").is_none());
        assert_eq!(to_core_v1(&newer), core);
    }
}
