//! Who a request comes from, and whether they may: authentication (the cluster's token,
//! a user of `--token-auth-file`, a ServiceAccount token) and, with `--authorization rbac`,
//! Kubernetes' RBAC authorizer (`kubeyard_compiler::rbac`) over the stored Roles,
//! ClusterRoles and their bindings, refusing with its 403. Without it every authenticated
//! user may do everything, as before. The access and identity reviews (`kubectl auth
//! can-i`, `can-i --list`, `whoami`) and TokenReviews answer from the same.
//!
//! `system:masters` (the cluster's own token: kubectl's kubeconfig, the components) is
//! allowed everything before RBAC is asked, as in Kubernetes. The cluster starts with
//! Kubernetes' user-facing bootstrap roles and bindings (`cluster-admin`, `admin`, `edit`,
//! `view`, discovery: `kubeyard_compiler::rbac::bootstrap`); discovery, OpenAPI, `/version`
//! and health are allowed to every authenticated user, as those bindings allow them.
//!
//! A request may act as another user (`kubectl --as`, `--as-group`: the `Impersonate-*`
//! headers) when its own user may `impersonate` them, and a user may write a role or a
//! binding only with what it grants already held, or leave to `escalate` or `bind`
//! (RBAC's escalation check).

use super::objects::{self, from_entry};
use super::resources::{self, Resource};
use super::status::ApiError;
use super::{ApiServer, Query, Target};
use axum::http::{HeaderMap, Method, header};
use kubeyard_compiler::rbac::escalation::{self, AGGREGATION_NEEDS_ADMIN};
use kubeyard_compiler::rbac::{Attributes, Policy, User};
use serde_json::{Value, json};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// Which authorizer: everything allowed, or RBAC.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    #[default]
    AlwaysAllow,
    Rbac,
}

impl std::str::FromStr for Mode {
    type Err = String;

    fn from_str(text: &str) -> Result<Mode, String> {
        match text.to_ascii_lowercase().as_str() {
            "alwaysallow" | "always-allow" => Ok(Mode::AlwaysAllow),
            "rbac" => Ok(Mode::Rbac),
            other => Err(format!("unknown authorization mode {other:?}: rbac or always-allow")),
        }
    }
}

/// The cluster's own identity (its token, and any request when it has none).
pub fn admin() -> User {
    User {
        name: "kubernetes-admin".into(),
        uid: String::new(),
        groups: vec!["system:masters".into(), "system:authenticated".into()],
    }
}

/// Users by bearer token, from a `--token-auth-file` (Kubernetes' static token file:
/// `token,user,uid,"group1,group2"` per line).
pub fn read_token_file(text: &str) -> Result<HashMap<String, User>, String> {
    let mut users = HashMap::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (head, groups) = match line.split_once('"') {
            Some((head, rest)) => (head, rest.trim_end_matches('"')),
            None => (line, ""),
        };
        let fields: Vec<&str> = head.split(',').map(str::trim).collect();
        let (Some(token), Some(name)) =
            (fields.first().filter(|t| !t.is_empty()), fields.get(1).filter(|n| !n.is_empty()))
        else {
            return Err(format!("line {}: want token,user,uid[,\"groups\"]", number + 1));
        };
        let mut groups: Vec<String> =
            groups.split(',').map(str::trim).filter(|g| !g.is_empty()).map(str::to_string).collect();
        groups.push("system:authenticated".into());
        let uid = fields.get(2).copied().unwrap_or_default().to_string();
        users.insert(token.to_string(), User { name: name.to_string(), uid, groups });
    }
    Ok(users)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ").map(str::trim)
}

/// Who the request is from; `None`: nobody this server knows (401).
pub(super) async fn authenticate(server: &ApiServer, headers: &HeaderMap) -> Option<User> {
    let given = bearer(headers);
    if let Some(given) = given {
        if let Some(user) = server.options.users.get(given) {
            return Some(user.clone());
        }
        if let Some(token) = &server.options.token
            && super::tls::same_secret(given.as_bytes(), token.as_bytes())
        {
            return Some(admin());
        }
        if given.contains('.')
            && let Ok(name) = super::tokens::authenticate(server, given).await
        {
            let mut parts = name.splitn(4, ':').skip(2);
            let (namespace, account) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
            return Some(User::service_account(namespace, account, ""));
        }
    }
    // Under RBAC, a request without credentials is `system:anonymous`, for RBAC to judge
    // (Kubernetes' anonymous requests); otherwise a server without a token takes everyone as its
    // administrator, and one with a token refuses the unknown (401).
    match (server.options.authorization, &server.options.token, given) {
        // A token nobody knows is refused (401), as Kubernetes refuses it.
        (Mode::Rbac, _, Some(_)) => None,
        (Mode::Rbac, _, None) => Some(anonymous()),
        (_, None, _) => Some(admin()),
        (_, Some(_), _) => None,
    }
}

tokio::task_local! {
    /// Who the request being served is from (after impersonation), for what checks the
    /// user beyond authorization (the escalation check).
    static REQUESTER: RefCell<Option<User>>;
}

/// Serves a request with room to remember who it is from.
pub(super) async fn serving<F: std::future::Future>(request: F) -> F::Output {
    REQUESTER.scope(RefCell::new(None), request).await
}

/// Remembers who the request being served is from.
pub(super) fn remember(user: &User) {
    let _ = REQUESTER.try_with(|requester| *requester.borrow_mut() = Some(user.clone()));
}

/// Who the request being served is from; `None` outside a request (the server's own
/// writes).
pub fn requester() -> Option<User> {
    REQUESTER.try_with(|requester| requester.borrow().clone()).ok().flatten()
}

const IMPERSONATE_USER: &str = "impersonate-user";
const IMPERSONATE_UID: &str = "impersonate-uid";
const IMPERSONATE_GROUP: &str = "impersonate-group";
const IMPERSONATE_EXTRA: &str = "impersonate-extra-";

/// What a request's `Impersonate-*` headers ask.
#[derive(Debug, Default, PartialEq)]
struct Impersonation {
    user: Option<String>,
    groups: Vec<String>,
    uid: Option<String>,
    /// (key, value), the key unescaped.
    extras: Vec<(String, String)>,
}

impl Impersonation {
    fn read(headers: &HeaderMap) -> Impersonation {
        let value = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty());
        let groups = headers.get_all(IMPERSONATE_GROUP).iter().filter_map(|v| v.to_str().ok());
        let extras = headers.iter().filter_map(|(name, v)| {
            let key = name.as_str().strip_prefix(IMPERSONATE_EXTRA)?;
            let key = percent_encoding::percent_decode_str(key).decode_utf8_lossy().into_owned();
            Some((key, v.to_str().ok()?.to_string()))
        });
        Impersonation {
            user: value(IMPERSONATE_USER).map(str::to_string),
            groups: groups.map(str::to_string).collect(),
            uid: value(IMPERSONATE_UID).map(str::to_string),
            extras: extras.collect(),
        }
    }

    /// What must be authorized (`impersonate` on each part) and the user the request then
    /// is (`WithImpersonation`); `Ok(None)`: nothing asked. Groups, a uid or extras
    /// without a user are an error, in Kubernetes' words (Go's print of the requests).
    fn plan(self) -> Result<Option<(Vec<Attributes>, User)>, String> {
        let asks = |resource: &str, group: &str, namespace: &str, name: &str| Attributes {
            verb: "impersonate".into(),
            group: group.into(),
            resource: resource.into(),
            namespace: namespace.into(),
            name: name.into(),
            ..Attributes::default()
        };
        let mut checks = Vec::new();
        let mut groups = self.groups;
        let account = self.user.as_deref().and_then(service_account_of);
        match (&self.user, &account) {
            (None, _) => {}
            (Some(_), Some((namespace, name))) => {
                checks.push(asks("serviceaccounts", "", namespace, name));
                if groups.is_empty() {
                    groups = vec!["system:serviceaccounts".into(), format!("system:serviceaccounts:{namespace}")];
                }
            }
            (Some(user), None) => checks.push(asks("users", "", "", user)),
        }
        checks.extend(groups.iter().map(|group| asks("groups", "", "", group)));
        for (key, value) in &self.extras {
            let mut check = asks("userextras", "authentication.k8s.io", "", value);
            check.subresource = key.clone();
            checks.push(check);
        }
        checks.extend(self.uid.iter().map(|uid| asks("uids", "authentication.k8s.io", "", uid)));
        let Some(name) = self.user else {
            if checks.is_empty() {
                return Ok(None);
            }
            // Go's `%v` of the requested `ObjectReference`s: kind, namespace, name, uid,
            // API version, resource version, field path.
            let shown: Vec<String> = checks
                .iter()
                .map(|c| {
                    let (kind, api_version, field) = match c.resource.as_str() {
                        "groups" => ("Group", "", ""),
                        "uids" => ("UID", "authentication.k8s.io/v1", ""),
                        _ => ("UserExtra", "authentication.k8s.io/v1", c.subresource.as_str()),
                    };
                    format!("{{{kind}  {}  {api_version}  {field}}}", c.name)
                })
                .collect();
            return Err(format!("requested [{}] without impersonating a user", shown.join(" ")));
        };
        // `system:authenticated` joins a named user's groups, unless one of the two
        // all-groups was asked; `system:unauthenticated` an anonymous one's.
        if name == anonymous().name {
            if !groups.iter().any(|g| g == "system:unauthenticated") {
                groups.push("system:unauthenticated".into());
            }
        } else if !groups.iter().any(|g| g == "system:authenticated" || g == "system:unauthenticated") {
            groups.push("system:authenticated".into());
        }
        Ok(Some((checks, User { name, uid: self.uid.unwrap_or_default(), groups })))
    }
}

/// A ServiceAccount's namespace and name from its user name (`SplitUsername`: exactly
/// two valid names after `system:serviceaccount:`); `None` for any other user.
fn service_account_of(user: &str) -> Option<(String, String)> {
    let rest = user.strip_prefix("system:serviceaccount:")?;
    let (namespace, name) = rest.split_once(':')?;
    let valid = !name.contains(':')
        && kubeyard_compiler::names::dns1123_label(namespace).is_empty()
        && kubeyard_compiler::names::dns1123_subdomain(name).is_empty();
    valid.then(|| (namespace.to_string(), name.to_string()))
}

/// The user the request acts as: `user` itself, or the one its `Impersonate-*` headers
/// name when `user` may impersonate each part of it (403 in Kubernetes' words otherwise).
pub(super) async fn impersonate(server: &ApiServer, user: User, headers: &HeaderMap) -> Result<User, ApiError> {
    let planned = Impersonation::read(headers).plan();
    let Some((checks, acting)) =
        planned.map_err(|why| ApiError::internal(format!("Internal error occurred: {why}")))?
    else {
        return Ok(user);
    };
    for check in &checks {
        authorize(server, &user, check).await?;
    }
    Ok(acting)
}

/// Whether an update changes only what the garbage collector changes (`ownerReferences`,
/// `finalizers`: `IsOnlyMutatingGCFields`), which is never an escalation.
fn only_gc_fields(object: &Value, old: &Value) -> bool {
    let without = |value: &Value| {
        let mut value = value.clone();
        if let Some(metadata) = value.get_mut("metadata").and_then(Value::as_object_mut) {
            for field in ["ownerReferences", "finalizers", "resourceVersion", "managedFields", "generation"] {
                metadata.remove(field);
            }
        }
        value
    };
    without(object) == without(old)
}

/// Whether a ClusterRole aggregates: a rule with at least one selector.
fn aggregates(role: &Value) -> bool {
    role.pointer("/aggregationRule/clusterRoleSelectors").and_then(Value::as_array).is_some_and(|s| !s.is_empty())
}

/// RBAC's escalation check on a write of a role or binding (`object` as it would be
/// stored, `old` what it replaces), under `--authorization rbac`: refused with
/// Kubernetes' 403 when it would grant what the writer does not hold, unless the writer
/// may `escalate` (roles) or `bind` the role (bindings), or is a cluster administrator
/// (`system:masters`). Run where Kubernetes' registry runs it: after mutating admission,
/// before validating admission.
pub(super) async fn confirm_no_escalation(
    server: &ApiServer,
    resource: &Resource,
    object: &Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    const RBAC: &str = "rbac.authorization.k8s.io";
    if resource.group != RBAC || server.options.authorization != Mode::Rbac {
        return Ok(());
    }
    let Some(user) = requester().filter(|user| !user.is_master()) else { return Ok(()) };
    if old.is_some_and(|old| only_gc_fields(object, old)) {
        return Ok(());
    }
    let name = text(object, "/metadata/name");
    let namespace = text(object, "/metadata/namespace");
    let policy = policy(server).await?;
    let forbidden = |why: &str| ApiError {
        details: Some(json!({"name": name, "group": RBAC, "kind": resource.plural})),
        ..ApiError::forbidden(format!("{}.{RBAC} \"{name}\" is forbidden: {why}", resource.plural))
    };
    let may = |verb: &str, plural: &str, name: &str| {
        let asked = Attributes {
            verb: verb.into(),
            group: RBAC.into(),
            resource: plural.into(),
            name: name.into(),
            namespace: namespace.into(),
            ..Attributes::default()
        };
        policy.allows(&user, &asked).is_some()
    };
    let granted = match resource.kind {
        "Role" | "ClusterRole" => {
            // The request's own name: none on a create.
            if may("escalate", resource.plural, if old.is_some() { name } else { "" }) {
                return Ok(());
            }
            if (aggregates(object) || old.is_some_and(aggregates))
                && !escalation::not_held(&policy.rules_for(&user, ""), &escalation::full_authority()).is_empty()
            {
                return Err(forbidden(AGGREGATION_NEEDS_ADMIN));
            }
            object.get("rules").and_then(Value::as_array).cloned().unwrap_or_default()
        }
        "RoleBinding" | "ClusterRoleBinding" => {
            let role_kind = text(object, "/roleRef/kind");
            let role_name = text(object, "/roleRef/name");
            let plural = if role_kind == "Role" { "roles" } else { "clusterroles" };
            if may("bind", plural, role_name) {
                return Ok(());
            }
            // A role that is not there is the lister's 404, as in Kubernetes.
            policy.role_rules(object).ok_or_else(|| ApiError {
                details: Some(json!({"name": role_name, "group": RBAC, "kind": plural})),
                ..ApiError::new(404, "NotFound", format!("{plural}.{RBAC} \"{role_name}\" not found"))
            })?
        }
        _ => return Ok(()),
    };
    let missing = escalation::not_held(&policy.rules_for(&user, namespace), &granted);
    if missing.is_empty() { Ok(()) } else { Err(forbidden(&escalation::escalation_message(&user, &missing))) }
}

/// Who an unauthenticated request is, under RBAC.
pub fn anonymous() -> User {
    User { name: "system:anonymous".into(), uid: String::new(), groups: vec!["system:unauthenticated".into()] }
}

/// The RBAC objects, read once and kept until one of them is written.
/// (The policy, and the generation it was read at: a write of a role or binding while it
/// was being read makes it stale before it is kept.)
#[derive(Default)]
pub struct PolicyCache(RwLock<(Option<Arc<Policy>>, u64)>);

impl PolicyCache {
    pub(super) fn forget(&self) {
        let mut cache = self.0.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        cache.0 = None;
        cache.1 += 1;
    }
}

async fn listed(server: &ApiServer, kind: &str) -> Result<Vec<Value>, ApiError> {
    let resource = resources::by_kind("rbac.authorization.k8s.io", kind)
        .ok_or_else(|| ApiError::internal(format!("{kind} is not served")))?;
    let listing =
        server.store.list(&resource.prefix(None), None, None).await.map_err(|e| ApiError::internal(e.to_string()))?;
    listing.entries.iter().map(from_entry).collect()
}

pub(super) async fn policy(server: &ApiServer) -> Result<Arc<Policy>, ApiError> {
    let generation = {
        let cache = server.policy_cache.0.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(policy) = cache.0.clone() {
            return Ok(policy);
        }
        cache.1
    };
    let policy = Arc::new(Policy {
        roles: listed(server, "Role").await?,
        cluster_roles: listed(server, "ClusterRole").await?,
        role_bindings: listed(server, "RoleBinding").await?,
        cluster_role_bindings: listed(server, "ClusterRoleBinding").await?,
    });
    let mut cache = server.policy_cache.0.write().unwrap_or_else(std::sync::PoisonError::into_inner);
    if cache.1 == generation {
        cache.0 = Some(Arc::clone(&policy));
    }
    Ok(policy)
}

/// The attributes of a request for an object or collection (`RequestInfo`).
pub(super) fn attributes(method: &Method, target: &Target, query: &Query) -> Attributes {
    let sub = target.subresource.clone().unwrap_or_default();
    let verb = match (method.as_str(), target.name.is_some()) {
        // Streams are creates whatever the method (websocket clients GET them).
        (_, true) if matches!(sub.as_str(), "exec" | "attach" | "portforward") => "create",
        ("GET" | "HEAD", _) if objects::flag(query, "watch") => "watch",
        ("GET" | "HEAD", true) => "get",
        ("GET" | "HEAD", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        (other, _) => return Attributes { verb: other.to_lowercase(), ..Attributes::default() },
    };
    // A namespace is in itself (`RequestInfo`): a RoleBinding there may grant it.
    let namespace = match (&target.namespace, target.resource.group, target.resource.plural, &target.name) {
        (None, "", "namespaces", Some(name)) => name.clone(),
        (namespace, ..) => namespace.clone().unwrap_or_default(),
    };
    Attributes {
        verb: verb.into(),
        group: target.resource.group.into(),
        resource: target.resource.plural.into(),
        subresource: sub,
        name: target.name.clone().unwrap_or_default(),
        namespace,
        path: String::new(),
    }
}

/// Refuses what RBAC does not allow the user (with `--authorization rbac`).
pub(super) async fn authorize(server: &ApiServer, user: &User, request: &Attributes) -> Result<(), ApiError> {
    if server.options.authorization != Mode::Rbac || user.is_master() {
        return Ok(());
    }
    if policy(server).await?.allows(user, request).is_some() {
        return Ok(());
    }
    let kind = if request.path.is_empty() { request.resource.as_str() } else { "" };
    Err(ApiError {
        details: Some(json!({"name": request.name, "group": request.group, "kind": kind})),
        ..ApiError::forbidden(kubeyard_compiler::rbac::forbidden_message(user, request))
    })
}

/// Whether `resource` is one of the review kinds, which are answered, not stored.
pub fn is_review(resource: &Resource) -> bool {
    matches!(resource.group, "authorization.k8s.io" | "authentication.k8s.io")
}

/// The reviews of oneself, which every user may ask (`system:basic-user`); asking of
/// others (SubjectAccessReview, TokenReview) is RBAC's to allow.
pub fn is_self_review(resource: &Resource) -> bool {
    is_review(resource) && resource.kind.starts_with("SelfSubject")
}

fn text<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
}

/// The attributes an access review asks about.
fn asked(spec: &Value) -> Attributes {
    if let Some(non_resource) = spec.get("nonResourceAttributes") {
        return Attributes {
            verb: text(non_resource, "/verb").into(),
            path: text(non_resource, "/path").into(),
            ..Attributes::default()
        };
    }
    let resource = spec.get("resourceAttributes").cloned().unwrap_or(Value::Null);
    Attributes {
        verb: text(&resource, "/verb").into(),
        group: text(&resource, "/group").into(),
        resource: text(&resource, "/resource").into(),
        subresource: text(&resource, "/subresource").into(),
        name: text(&resource, "/name").into(),
        namespace: text(&resource, "/namespace").into(),
        path: String::new(),
    }
}

/// Whether the user may, and why, as a review's `status` says it.
async fn decide(server: &ApiServer, user: &User, request: &Attributes) -> Result<Value, ApiError> {
    if server.options.authorization != Mode::Rbac {
        return Ok(json!({"allowed": true}));
    }
    if user.is_master() {
        return Ok(json!({"allowed": true}));
    }
    Ok(match policy(server).await?.allows(user, request) {
        Some(why) => json!({"allowed": true, "reason": why}),
        None => json!({"allowed": false}),
    })
}

/// `POST` of a review: the object back with its `status`, 201.
pub(super) async fn review(
    server: &ApiServer,
    user: &User,
    target: &Target,
    headers: &HeaderMap,
    body: &bytes::Bytes,
) -> Result<Value, ApiError> {
    let mut review = objects::decode(headers, body)?;
    let expected = target.resource.api_version();
    objects::check_type(target.resource, &mut review, &expected, target.resource.kind)?;
    let spec = review.get("spec").cloned().unwrap_or(Value::Null);
    let status = match target.resource.kind {
        "SelfSubjectAccessReview" => decide(server, user, &asked(&spec)).await?,
        "SubjectAccessReview" | "LocalSubjectAccessReview" => {
            let mut request = asked(&spec);
            if target.resource.kind == "LocalSubjectAccessReview" {
                let namespace = target.namespace.clone().unwrap_or_default();
                if !request.namespace.is_empty() && request.namespace != namespace {
                    return Err(ApiError::bad_request(format!(
                        "spec.resourceAttributes.namespace must match namespace: {namespace}"
                    )));
                }
                request.namespace = namespace;
            }
            let subject = User {
                name: text(&spec, "/user").into(),
                uid: text(&spec, "/uid").into(),
                groups: spec
                    .get("groups")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect(),
            };
            decide(server, &subject, &request).await?
        }
        "SelfSubjectRulesReview" => {
            let namespace = text(&spec, "/namespace");
            if server.options.authorization != Mode::Rbac || user.is_master() {
                json!({"resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
                       "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}], "incomplete": false})
            } else {
                let (resource_rules, non_resource_rules) = policy(server).await?.rules(user, namespace);
                json!({"resourceRules": resource_rules, "nonResourceRules": non_resource_rules, "incomplete": false})
            }
        }
        "SelfSubjectReview" => {
            let mut info = json!({"username": user.name, "groups": user.groups});
            if !user.uid.is_empty() {
                info["uid"] = json!(user.uid);
            }
            json!({"userInfo": info})
        }
        "TokenReview" => {
            let mut headers = HeaderMap::new();
            let token = text(&spec, "/token");
            if let Ok(value) = format!("Bearer {token}").parse() {
                headers.insert(header::AUTHORIZATION, value);
            }
            match authenticate(server, &headers).await.filter(|_| !token.is_empty()) {
                Some(found) => json!({"authenticated": true,
                                      "user": {"username": found.name, "uid": found.uid, "groups": found.groups}}),
                None => json!({"authenticated": false, "error": "invalid bearer token"}),
            }
        }
        other => return Err(ApiError::internal(format!("{other} is not a review"))),
    };
    review["status"] = status;
    if review.get("metadata").is_none_or(Value::is_null) {
        review["metadata"] = json!({});
    }
    Ok(review)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_file_names_users_and_their_groups() {
        let users = read_token_file("# users\nt0k3n,jane,1001,\"devs,ops\"\nother,bob,1002\n").unwrap();
        assert_eq!(
            users["t0k3n"],
            User {
                name: "jane".into(),
                uid: "1001".into(),
                groups: vec!["devs".into(), "ops".into(), "system:authenticated".into()]
            }
        );
        assert_eq!(users["other"].groups, vec!["system:authenticated".to_string()]);
        assert!(read_token_file("lonely\n").unwrap_err().contains("line 1"));
        assert_eq!("RBAC".parse::<Mode>(), Ok(Mode::Rbac));
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                axum::http::HeaderValue::from_str(value).unwrap(),
            );
        }
        headers
    }

    fn plan(pairs: &[(&str, &str)]) -> Result<Option<(Vec<Attributes>, User)>, String> {
        Impersonation::read(&headers(pairs)).plan()
    }

    #[test]
    fn impersonation_checks_each_part_and_makes_kubernetes_user() {
        assert_eq!(plan(&[]), Ok(None));
        assert_eq!(plan(&[("Impersonate-User", "")]), Ok(None), "an empty user is no impersonation");
        let (checks, user) = plan(&[
            ("Impersonate-User", "jane"),
            ("Impersonate-Group", "devs"),
            ("Impersonate-Uid", "u-1"),
            ("Impersonate-Extra-Acme.com%2Fscopes", "view"),
        ])
        .unwrap()
        .unwrap();
        let asked: Vec<(&str, &str, &str, &str)> = checks
            .iter()
            .map(|c| (c.group.as_str(), c.resource.as_str(), c.subresource.as_str(), c.name.as_str()))
            .collect();
        assert_eq!(
            asked,
            [
                ("", "users", "", "jane"),
                ("", "groups", "", "devs"),
                ("authentication.k8s.io", "userextras", "acme.com/scopes", "view"),
                ("authentication.k8s.io", "uids", "", "u-1"),
            ]
        );
        assert!(checks.iter().all(|c| c.verb == "impersonate"));
        assert_eq!(
            user,
            User { name: "jane".into(), uid: "u-1".into(), groups: vec!["devs".into(), "system:authenticated".into()] }
        );

        // A ServiceAccount: checked in its namespace, with its groups when none are asked.
        let (checks, user) = plan(&[("Impersonate-User", "system:serviceaccount:shop:ci")]).unwrap().unwrap();
        assert_eq!(
            (checks[0].resource.as_str(), checks[0].namespace.as_str(), checks[0].name.as_str()),
            ("serviceaccounts", "shop", "ci")
        );
        assert_eq!(user.groups, ["system:serviceaccounts", "system:serviceaccounts:shop", "system:authenticated"]);
        // Not a ServiceAccount's name: a user.
        let (checks, _) = plan(&[("Impersonate-User", "system:serviceaccount:a:b:c")]).unwrap().unwrap();
        assert_eq!(checks[0].resource, "users");
        // Asking for system:unauthenticated keeps system:authenticated out; anonymous gets
        // system:unauthenticated.
        let (_, user) =
            plan(&[("Impersonate-User", "jane"), ("Impersonate-Group", "system:unauthenticated")]).unwrap().unwrap();
        assert_eq!(user.groups, ["system:unauthenticated"]);
        let (_, user) = plan(&[("Impersonate-User", "system:anonymous")]).unwrap().unwrap();
        assert_eq!(user.groups, ["system:unauthenticated"]);
        // Groups without a user: Kubernetes' words, Go's print of the requests.
        assert_eq!(
            plan(&[("Impersonate-Group", "system:masters")]),
            Err("requested [{Group  system:masters    }] without impersonating a user".into())
        );
    }
}
