//! `metadata.managedFields` as Kubernetes' field manager reads, orders and names it: its
//! entries (who, by which operation, in which version, through which subresource, when,
//! owning which fields), the manager name a request gets when it names none, and the 409
//! an apply gets when it would take fields other managers own, in Kubernetes' words.
//! The fields themselves are `field_set`'s.

use crate::field_set::{FieldSet, Path, path_text};
use serde_json::{Value, json};

/// How a manager last wrote its fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Operation {
    Apply,
    Update,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// One entry of `metadata.managedFields`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub manager: String,
    pub operation: Operation,
    pub api_version: String,
    /// RFC 3339, second precision, UTC.
    pub time: Option<String>,
    pub fields: FieldSet,
    pub subresource: Option<String>,
}

/// Who a manager is: the same manager writing again replaces its entry. An applier is one
/// manager whatever the version it applies in.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Identity {
    pub manager: String,
    pub operation: Operation,
    /// Empty for `Apply`.
    pub api_version: String,
    pub subresource: String,
}

impl Entry {
    pub fn identity(&self) -> Identity {
        Identity {
            manager: self.manager.clone(),
            operation: self.operation,
            api_version: if self.operation == Operation::Apply { String::new() } else { self.api_version.clone() },
            subresource: self.subresource.clone().unwrap_or_default(),
        }
    }

    /// The entry as it is written in an object.
    pub fn to_json(&self) -> Value {
        let mut entry = json!({
            "manager": self.manager,
            "operation": self.operation.as_str(),
            "apiVersion": self.api_version,
            "fieldsType": "FieldsV1",
            "fieldsV1": self.fields.to_fields_v1(),
        });
        if let Some(time) = &self.time {
            entry["time"] = json!(time);
        }
        if let Some(subresource) = &self.subresource {
            entry["subresource"] = json!(subresource);
        }
        entry
    }
}

/// At most this many `Update` entries are kept (Kubernetes' `DefaultMaxUpdateManagers`).
pub const MAX_UPDATE_MANAGERS: usize = 10;
/// The updater the oldest updates are merged into past the cap, one per version.
pub const ANCIENT_CHANGES: &str = "ancient-changes";

impl Identity {
    /// The identity as Kubernetes writes it to compare managers: the entry's JSON without
    /// time and fields (`{"manager":"m","operation":"Update","apiVersion":"v1"}`).
    pub fn key(&self) -> String {
        let quote = |text: &str| Value::String(text.to_string()).to_string();
        let mut key = format!(r#"{{"manager":{},"operation":"{}""#, quote(&self.manager), self.operation.as_str());
        if !self.api_version.is_empty() {
            key.push_str(&format!(r#","apiVersion":{}"#, quote(&self.api_version)));
        }
        if !self.subresource.is_empty() {
            key.push_str(&format!(r#","subresource":{}"#, quote(&self.subresource)));
        }
        key.push('}');
        key
    }
}

/// Keeps at most `MAX_UPDATE_MANAGERS` updaters as Kubernetes' `capManagersManager`
/// does: oldest first (by time, then identity), each updater after the first of its
/// version is merged into that version's `ancient-changes` entry (the first of the
/// version becoming it), which takes the merged updater's time, until few enough are left.
pub fn cap_updates(entries: &mut Vec<Entry>) {
    let mut updaters: Vec<usize> = (0..entries.len()).filter(|&i| entries[i].operation == Operation::Update).collect();
    if updaters.len() <= MAX_UPDATE_MANAGERS {
        return;
    }
    updaters.sort_by_cached_key(|&i| (entries[i].time.clone().unwrap_or_default(), entries[i].identity().key()));
    let bucket_of = |version: &str| Identity {
        manager: ANCIENT_CHANGES.into(),
        operation: Operation::Update,
        api_version: version.into(),
        subresource: String::new(),
    };
    let mut first_of_version: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut removed = vec![false; entries.len()];
    let mut length = updaters.len();
    for &i in &updaters {
        if length <= MAX_UPDATE_MANAGERS {
            break;
        }
        let version = entries[i].api_version.clone();
        let bucket = bucket_of(&version);
        let Some(&first) = first_of_version.get(&version) else {
            first_of_version.insert(version, i);
            continue;
        };
        if entries[i].identity() == bucket {
            // The bucket itself, met after an older updater of its version: Kubernetes
            // deletes it here, its fields with it (the older one merged into it next
            // becomes the bucket again).
            removed[i] = true;
            length -= 1;
            continue;
        }
        let existing = (0..entries.len()).find(|&b| !removed[b] && entries[b].identity() == bucket);
        let target = match existing {
            Some(target) => target,
            None => {
                entries[first].manager = ANCIENT_CHANGES.into();
                entries[first].subresource = None;
                first
            }
        };
        entries[target].fields = entries[i].fields.union(&entries[target].fields);
        entries[target].time = entries[i].time.clone();
        removed[i] = true;
        length -= 1;
    }
    let mut index = 0;
    entries.retain(|_| {
        index += 1;
        !removed[index - 1]
    });
}

/// The manager `kubeyard apply` writes as client-side (kubectl's is
/// `kubectl-client-side-apply`): its server-side applies take over what it owns.
pub const KUBEYARD_CLIENT_SIDE_APPLY: &str = "kubeyard-client-side-apply";

/// client-go's `csaupgrade.UpgradeManagedFields`, which kubectl runs after a server-side
/// apply: the client-side manager `csa`'s fields (its `Update` entry of the main
/// resource) go to the applier `ssa`'s `Apply` entry (the first such `Update` entry
/// becoming it when there is none), and `csa`'s entries go. `None` when `csa` has none.
pub fn upgrade_client_side(entries: &[Entry], csa: &str, ssa: &str) -> Option<Vec<Entry>> {
    let is_csa = |e: &Entry| e.manager == csa && e.operation == Operation::Update && e.subresource.is_none();
    let first = entries.iter().position(is_csa)?;
    let mut entries = entries.to_vec();
    let target = match entries
        .iter()
        .position(|e| e.manager == ssa && e.operation == Operation::Apply && e.subresource.is_none())
    {
        Some(target) => target,
        None => {
            entries[first].operation = Operation::Apply;
            entries[first].manager = ssa.to_string();
            first
        }
    };
    let version = entries[target].api_version.clone();
    if let Some(same) = entries.iter().position(|e| is_csa(e) && e.api_version == version) {
        entries[target].fields = entries[target].fields.union(&entries[same].fields);
    }
    entries.retain(|e| !is_csa(e));
    sort(&mut entries);
    Some(entries)
}

/// A `managedFields` that does not decode, in Kubernetes' words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ManagedFieldsError(pub String);

/// Reads an object's `metadata.managedFields`.
pub fn decode(entries: &Value) -> Result<Vec<Entry>, ManagedFieldsError> {
    let Some(list) = entries.as_array() else { return Ok(Vec::new()) };
    let mut out = Vec::with_capacity(list.len());
    for (index, entry) in list.iter().enumerate() {
        let text = |key: &str| entry.get(key).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string);
        let operation = match text("operation").as_deref() {
            Some("Apply") => Operation::Apply,
            Some("Update") => Operation::Update,
            _ => return Err(ManagedFieldsError("operation must be `Apply` or `Update`".into())),
        };
        let api_version =
            text("apiVersion").ok_or_else(|| ManagedFieldsError("apiVersion must not be empty".into()))?;
        match text("fieldsType").as_deref() {
            Some("FieldsV1") => {}
            None => return Err(ManagedFieldsError(format!("missing fieldsType in managed fields entry {index}"))),
            Some(other) => {
                return Err(ManagedFieldsError(format!(
                    "invalid fieldsType {other:?} in managed fields entry {index}"
                )));
            }
        }
        let fields = FieldSet::from_fields_v1(entry.get("fieldsV1").unwrap_or(&json!({})))
            .map_err(|e| ManagedFieldsError(format!("error decoding fieldsV1 in managed fields entry {index}: {e}")))?;
        out.push(Entry {
            manager: text("manager").unwrap_or_default(),
            operation,
            api_version,
            time: text("time"),
            fields,
            subresource: text("subresource"),
        });
    }
    Ok(out)
}

/// Puts entries in Kubernetes' order: appliers first, then by time, manager, version and
/// subresource.
pub fn sort(entries: &mut [Entry]) {
    entries.sort_by(|a, b| {
        (a.operation, a.time.as_deref().unwrap_or(""), &a.manager, &a.api_version, &a.subresource).cmp(&(
            b.operation,
            b.time.as_deref().unwrap_or(""),
            &b.manager,
            &b.api_version,
            &b.subresource,
        ))
    });
}

/// The manager of a write that names none: the `User-Agent` up to its first `/`, without
/// unprintable characters, at most 128 bytes; `unknown` when that leaves nothing.
pub fn manager_from_user_agent(user_agent: &str) -> String {
    let name: String = user_agent.split('/').next().unwrap_or_default().chars().filter(|c| !c.is_control()).collect();
    let mut end = name.len().min(128);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    match &name[..end] {
        "" => "unknown".to_string(),
        name => name.to_string(),
    }
}

/// How a conflict names a manager: quoted, with its subresource, and the version only for
/// an updater (an applier's version is not part of who it is).
fn manager_text(identity: &Identity, api_version: &str) -> String {
    let mut text = crate::field_error::go_quote(&identity.manager);
    if !identity.subresource.is_empty() {
        text.push_str(&format!(" with subresource {}", crate::field_error::go_quote(&identity.subresource)));
    }
    if identity.operation == Operation::Update {
        text.push_str(&format!(" using {api_version}"));
    }
    text
}

/// An apply's conflicts as the 409's message and causes (`field`, `message`), in
/// Kubernetes' words: `Apply failed with 1 conflict: conflict with "kubectl-edit" using
/// apps/v1: .spec.replicas`.
pub fn conflict_status(conflicts: &[(Entry, Path)]) -> (String, Vec<(String, String)>) {
    let mut sorted: Vec<(Identity, String, String)> = conflicts
        .iter()
        .map(|(entry, path)| (entry.identity(), manager_text(&entry.identity(), &entry.api_version), path_text(path)))
        .collect();
    sorted.sort();
    let causes: Vec<(String, String)> =
        sorted.iter().map(|(_, manager, path)| (path.clone(), format!("conflict with {manager}"))).collect();
    let message = match sorted.as_slice() {
        [(_, manager, path)] => format!("Apply failed with 1 conflict: conflict with {manager}: {path}"),
        _ => {
            let mut lines = Vec::new();
            let mut last: Option<&str> = None;
            for (_, manager, path) in &sorted {
                if last != Some(manager.as_str()) {
                    lines.push(format!("conflicts with {manager}:"));
                    last = Some(manager);
                }
                lines.push(format!("- {path}"));
            }
            format!("Apply failed with {} conflicts: {}", sorted.len(), lines.join("\n"))
        }
    };
    (message, causes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::field_set::PathElement;

    fn entry(manager: &str, operation: Operation, api_version: &str, time: &str) -> Entry {
        Entry {
            manager: manager.into(),
            operation,
            api_version: api_version.into(),
            time: Some(time.into()),
            fields: FieldSet::new(),
            subresource: None,
        }
    }

    #[test]
    fn entries_decode_with_kubernetes_errors_and_sort_appliers_first() {
        let stored = json!([
            {"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "apps/v1",
             "time": "2026-01-01T00:00:02Z", "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {"f:replicas": {}}},
             "subresource": "status"},
            {"manager": "kubectl", "operation": "Apply", "apiVersion": "apps/v1", "time": "2026-01-01T00:00:05Z",
             "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}}}},
        ]);
        let mut entries = decode(&stored).unwrap();
        sort(&mut entries);
        assert_eq!(entries[0].manager, "kubectl");
        assert_eq!(entries[1].subresource.as_deref(), Some("status"));
        assert_eq!(entries[1].to_json(), stored[0]);
        let error = |value: Value| decode(&value).unwrap_err().0;
        assert_eq!(error(json!([{"operation": "Patch", "apiVersion": "v1"}])), "operation must be `Apply` or `Update`");
        assert_eq!(error(json!([{"operation": "Apply"}])), "apiVersion must not be empty");
        assert_eq!(
            error(json!([{"operation": "Apply", "apiVersion": "v1"}])),
            "missing fieldsType in managed fields entry 0"
        );
        assert_eq!(
            error(json!([{"operation": "Apply", "apiVersion": "v1", "fieldsType": "FieldsV2"}])),
            r#"invalid fieldsType "FieldsV2" in managed fields entry 0"#
        );
        // An applier is one manager whatever version it applied in.
        let a = entry("kubectl", Operation::Apply, "apps/v1", "t");
        let b = entry("kubectl", Operation::Apply, "apps/v1beta2", "t");
        assert_eq!(a.identity(), b.identity());
        let c = entry("kubectl", Operation::Update, "apps/v1", "t");
        let d = entry("kubectl", Operation::Update, "apps/v1beta2", "t");
        assert_ne!(c.identity(), d.identity());
    }

    #[test]
    fn past_ten_updaters_the_oldest_merge_into_ancient_changes() {
        let field = |name: &str| {
            let mut set = FieldSet::new();
            set.insert(&[PathElement::Field(name.into())]);
            set
        };
        let mut entries: Vec<Entry> = (0..12)
            .map(|n| Entry {
                fields: field(&format!("f{n}")),
                ..entry(&format!("m{n:02}"), Operation::Update, "v1", &format!("2026-01-01T00:00:{n:02}Z"))
            })
            .collect();
        entries.push(entry("kubectl", Operation::Apply, "v1", "2026-01-01T00:00:00Z"));
        cap_updates(&mut entries);
        let updaters: Vec<&Entry> = entries.iter().filter(|e| e.operation == Operation::Update).collect();
        assert_eq!(updaters.len(), MAX_UPDATE_MANAGERS);
        // m00 became the bucket; m01 and m02 went into it, and it has m02's time.
        let bucket = updaters.iter().find(|e| e.manager == ANCIENT_CHANGES).unwrap();
        assert_eq!(bucket.time.as_deref(), Some("2026-01-01T00:00:02Z"));
        assert_eq!(bucket.fields, field("f0").union(&field("f1")).union(&field("f2")));
        assert!(!entries.iter().any(|e| ["m00", "m01", "m02"].contains(&e.manager.as_str())));
        assert!(entries.iter().any(|e| e.manager == "kubectl"), "appliers are not capped");
        assert_eq!(bucket.identity().key(), r#"{"manager":"ancient-changes","operation":"Update","apiVersion":"v1"}"#);
    }

    #[test]
    fn a_client_side_managers_fields_go_to_the_applier() {
        let field = |name: &str| {
            let mut set = FieldSet::new();
            set.insert(&[PathElement::Field(name.into())]);
            set
        };
        let csa = Entry { fields: field("a"), ..entry("kubeyard-client-side-apply", Operation::Update, "v1", "1") };
        let other = Entry { fields: field("b"), ..entry("ops", Operation::Update, "v1", "2") };
        assert_eq!(upgrade_client_side(std::slice::from_ref(&other), "kubeyard-client-side-apply", "kubeyard"), None);
        // No applier yet: the client-side entry becomes it.
        let upgraded =
            upgrade_client_side(&[csa.clone(), other.clone()], "kubeyard-client-side-apply", "kubeyard").unwrap();
        assert_eq!(upgraded[0].manager, "kubeyard");
        assert_eq!(upgraded[0].operation, Operation::Apply);
        assert_eq!(upgraded[0].fields, field("a"));
        assert_eq!(upgraded[1], other);
        // An applier already: it takes the client-side fields too.
        let applier = Entry { fields: field("c"), ..entry("kubeyard", Operation::Apply, "v1", "3") };
        let upgraded = upgrade_client_side(&[applier, csa], "kubeyard-client-side-apply", "kubeyard").unwrap();
        assert_eq!(upgraded.len(), 1);
        assert_eq!(upgraded[0].fields, field("a").union(&field("c")));
    }

    #[test]
    fn managers_come_from_the_user_agent_as_kubernetes_names_them() {
        assert_eq!(manager_from_user_agent("kubectl/v1.32.0 (linux/amd64) kubernetes/abc"), "kubectl");
        assert_eq!(manager_from_user_agent("OpenAPI-Generator/31.0.0/python"), "OpenAPI-Generator");
        assert_eq!(manager_from_user_agent("Mozilla/5.0 (X11)"), "Mozilla");
        assert_eq!(manager_from_user_agent(""), "unknown");
        assert_eq!(manager_from_user_agent(&"x".repeat(300)).len(), 128);
    }

    #[test]
    fn conflicts_are_worded_as_kubernetes_words_them() {
        let path = |names: &[&str]| names.iter().map(|n| PathElement::Field((*n).into())).collect::<Path>();
        let csa = entry("kubectl-client-side-apply", Operation::Update, "v1", "t");
        let (message, causes) = conflict_status(&[(csa, path(&["data", "color"]))]);
        assert_eq!(
            message,
            r#"Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using v1: .data.color"#
        );
        assert_eq!(
            causes,
            [(".data.color".to_string(), r#"conflict with "kubectl-client-side-apply" using v1"#.to_string())]
        );
        let edit = entry("kubectl-edit", Operation::Update, "apps/v1", "t");
        let mut image = path(&["spec", "template", "spec", "containers"]);
        image.push(PathElement::Key(vec![("name".into(), json!("nginx"))]));
        image.push(PathElement::Field("image".into()));
        let applier = entry("flux", Operation::Apply, "apps/v1", "t");
        let (message, causes) = conflict_status(&[
            (edit.clone(), image),
            (edit, path(&["spec", "replicas"])),
            (applier, path(&["spec", "paused"])),
        ]);
        assert_eq!(
            message,
            "Apply failed with 3 conflicts: conflicts with \"flux\":\n- .spec.paused\nconflicts with \"kubectl-edit\" using apps/v1:\n- .spec.replicas\n- .spec.template.spec.containers[name=\"nginx\"].image"
        );
        assert_eq!(causes.len(), 3);
    }
}
