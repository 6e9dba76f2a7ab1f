//! Cluster IPs and node ports for Services, as Kubernetes' Service REST storage hands
//! them out (`pkg/registry/core/service/storage` with its `ipallocator` and
//! `portallocator`): a Service of type ClusterIP, NodePort or LoadBalancer gets a free
//! address of the service CIDR unless it asks for one (or for none: headless), each port
//! of a NodePort or LoadBalancer Service a free node port unless it asks for one, and the
//! IP family fields are filled in; an update keeps what the client left out, clusterIP
//! may not change, and a change of type drops what the new type has no use for.
//!
//! What is in use is what the stored Services hold. The index of it (address or port →
//! the store key of the Service holding it) is built from the store on the first Service
//! write and kept by every later one: each write takes the index's lock, allocates
//! against it, writes to the store and records what the key holds now before letting go.
//! So two writers never get the same address or port, a dry run or a failed write holds
//! nothing, a deleted Service's address and ports are free again, and a restarted server
//! rebuilds the same index from what the store kept. A write whose outcome is unknown (a
//! storage failure) drops the index, to be rebuilt from the store on the next write.
//! With other API servers on the same store (`Options::shared_store`: several API
//! servers over one etcd), the index alone would not know their writes: each allocating
//! write then first takes a lock kept in the store itself (a key created, or taken over
//! once expired, by compare-and-swap), rebuilds the index from the store under it, and
//! lets it go after its write (or, if the write's outcome is unknown, leaves it to expire).
//! Kubernetes keeps allocation bitmaps in etcd, changed by compare-and-swap, to the same
//! end. The quota admission plugin's lock (`quota`) stays per server: two servers may
//! each admit the last pod a quota allows at the same instant.

use super::status::{ApiError, Subject};
use super::{ApiServer, Target, resources};
use crate::store::StoreError;
use serde_json::{Map, Value, json};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::{Range, RangeInclusive};
use tokio::sync::{Mutex, MutexGuard};

/// Kubernetes' default `--service-cluster-ip-range`.
pub const DEFAULT_SERVICE_CIDR: &str = "10.96.0.0/12";

/// Kubernetes' default `--service-node-port-range` (the `service/node-port` rule refuses
/// ports outside it at admission).
pub const NODE_PORTS: RangeInclusive<u16> = 30000..=32767;

const IPV4: &str = "IPv4";
const IPV6: &str = "IPv6";
const POLICIES: [&str; 3] = ["PreferDualStack", "RequireDualStack", "SingleStack"];

/// The addresses cluster IPs come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceCidr {
    network: u128,
    prefix: u8,
    v6: bool,
    /// The CIDR's size, network address included.
    total: u128,
    /// Usable addresses, from the one after the network address: an IPv4 range leaves
    /// out its broadcast address, an IPv6 one stops after 65535 (as Kubernetes' bitmap).
    size: u128,
}

impl ServiceCidr {
    /// `10.96.0.0/12` or `fd00:10:96::/108`; the host bits of the address are ignored.
    /// Kubernetes' limits apply: at most a /12 for IPv4 and a /108 for IPv6.
    pub fn parse(text: &str) -> Result<ServiceCidr, String> {
        let text = text.trim();
        let (address, prefix) =
            text.split_once('/').ok_or_else(|| format!("\"{text}\" is not a CIDR (address/prefix length)"))?;
        let address: IpAddr =
            address.parse().map_err(|_| format!("\"{address}\" in \"{text}\" is not an IP address"))?;
        let v6 = address.is_ipv6();
        let bits: u8 = if v6 { 128 } else { 32 };
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= bits)
            .ok_or_else(|| format!("\"{prefix}\" in \"{text}\" is not a prefix length from 0 to {bits}"))?;
        if prefix < if v6 { 108 } else { 12 } {
            return Err(format!(
                "the service CIDR {text} is too large; for 32-bit addresses, the mask must be >= 12; \
                 for 128-bit addresses, the mask must be >= 108"
            ));
        }
        let host_bits = u32::from(bits - prefix);
        let total = 1u128 << host_bits;
        let network = number(address) & !(total - 1);
        let size = if v6 { total.min(1 << 16) - 1 } else { total.saturating_sub(2) };
        if size == 0 {
            return Err(format!("the service CIDR {text} has no usable address"));
        }
        Ok(ServiceCidr { network, prefix, v6, total, size })
    }

    pub fn family(&self) -> &'static str {
        if self.v6 { IPV6 } else { IPV4 }
    }

    /// The position of a usable address, if it is one.
    fn offset(&self, ip: IpAddr) -> Option<u128> {
        if ip.is_ipv6() != self.v6 {
            return None;
        }
        let offset = number(ip).checked_sub(self.network + 1)?;
        (offset < self.size).then_some(offset)
    }

    fn address(&self, offset: u128) -> IpAddr {
        let value = self.network + 1 + offset;
        if self.v6 {
            IpAddr::V6(Ipv6Addr::from(value))
        } else {
            // A v4 CIDR's addresses fit in 32 bits.
            IpAddr::V4(Ipv4Addr::from(u32::try_from(value).unwrap_or(u32::MAX)))
        }
    }
}

impl fmt::Display for ServiceCidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let network = if self.v6 {
            IpAddr::V6(Ipv6Addr::from(self.network))
        } else {
            IpAddr::V4(Ipv4Addr::from(u32::try_from(self.network).unwrap_or(u32::MAX)))
        };
        write!(f, "{network}/{}", self.prefix)
    }
}

fn number(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn family_of(ip: IpAddr) -> &'static str {
    if ip.is_ipv6() { IPV6 } else { IPV4 }
}

/// How many positions at the start of a range are left to clients who ask for a given
/// address or port: dynamic allocation looks above them first, so a chosen value is
/// rarely taken already (KEP-3070, KEP-3668): min(max(floor, size / step), ceiling),
/// none for ranges no larger than the floor.
fn static_band(total: u128, floor: u128, step: u128, ceiling: u128) -> u128 {
    if total <= floor { 0 } else { (total / step).clamp(floor, ceiling) }
}

/// A free position in `range`, from a random start, that `taken` does not refuse.
fn probe(range: Range<u128>, taken: impl Fn(u128) -> bool) -> Option<u128> {
    if range.is_empty() {
        return None;
    }
    let width = range.end - range.start;
    let start = fastrand::u128(..width);
    (0..width).map(|i| range.start + (start + i) % width).find(|&position| !taken(position))
}

/// What one stored Service holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Held {
    ips: Vec<IpAddr>,
    ports: Vec<u16>,
}

/// Every held address and port, with the store key of the Service holding it.
#[derive(Debug, Default)]
struct Index {
    held: HashMap<String, Held>,
    ips: HashMap<IpAddr, String>,
    ports: HashMap<u16, String>,
}

impl Index {
    fn set(&mut self, key: &str, object: &Value) {
        self.remove(key);
        let held = held(object);
        for ip in &held.ips {
            self.ips.insert(*ip, key.to_string());
        }
        for port in &held.ports {
            self.ports.insert(*port, key.to_string());
        }
        if held != Held::default() {
            self.held.insert(key.to_string(), held);
        }
    }

    fn remove(&mut self, key: &str) {
        let Some(held) = self.held.remove(key) else { return };
        for ip in held.ips {
            if self.ips.get(&ip).is_some_and(|owner| owner == key) {
                self.ips.remove(&ip);
            }
        }
        for port in held.ports {
            if self.ports.get(&port).is_some_and(|owner| owner == key) {
                self.ports.remove(&port);
            }
        }
    }
}

/// The addresses and ports a stored Service holds: whatever it shows, so that nothing
/// it shows is handed to another.
fn held(object: &Value) -> Held {
    let Some(spec) = object.get("spec").and_then(Value::as_object) else { return Held::default() };
    let mut ips: Vec<IpAddr> = Vec::new();
    if service_type(spec) != "ExternalName" {
        for text in cluster_ips(spec).iter().map(String::as_str).chain([text(spec, "clusterIP")]) {
            if let Ok(ip) = text.parse::<IpAddr>()
                && !ips.contains(&ip)
            {
                ips.push(ip);
            }
        }
    }
    let mut ports: Vec<u16> = Vec::new();
    let node_ports = ports_of(spec).iter().map(|p| number_at(p, "nodePort")).collect::<Vec<_>>();
    for port in node_ports.into_iter().chain([number_at(spec, "healthCheckNodePort")]) {
        if let Ok(port) = u16::try_from(port)
            && port != 0
            && !ports.contains(&port)
        {
            ports.push(port);
        }
    }
    Held { ips, ports }
}

/// The allocation state of one API server.
pub struct Allocator {
    cidr: Result<ServiceCidr, String>,
    /// `None` until the first Service write builds it from the store (and again after a
    /// write whose outcome is unknown).
    index: Mutex<Option<Index>>,
}

impl Allocator {
    /// An unusable CIDR is reported by every Service write that needs an address.
    pub fn new(service_cidr: &str) -> Allocator {
        Allocator { cidr: ServiceCidr::parse(service_cidr), index: Mutex::new(None) }
    }

    /// The range's first address: the `kubernetes` Service's.
    pub fn first_address(&self) -> Option<IpAddr> {
        self.cidr.as_ref().ok().map(|cidr| cidr.address(0))
    }

    fn cidr(&self) -> Result<&ServiceCidr, ApiError> {
        self.cidr.as_ref().map_err(|why| ApiError::internal(format!("the service CIDR is not usable: {why}")))
    }
}

/// The allocation lock, held from allocating until the write is recorded with `settle`.
/// Writes of anything but a Service hold nothing.
#[must_use = "a claim records what the write did with `settle`"]
pub(super) struct Claim<'a> {
    guard: Option<MutexGuard<'a, Option<Index>>>,
    /// The lock in the store, with other API servers on it.
    _shared: Option<SharedLock>,
}

/// The key of the lock API servers sharing a store allocate under.
const SHARED_LOCK: &str = "/registry/ranges/service-allocation-lock";
/// How long a lock stays its holder's: one whose server died is taken over after it.
/// Longer than a holder can take (waiting out an election, the rebuild's reads, its
/// write: each store call gives up within 25 s), so no live holder loses it.
const SHARED_LOCK_EXPIRES: std::time::Duration = std::time::Duration::from_secs(90);
/// How long a write waits for the lock before it gives up.
const SHARED_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(15);

/// The store's allocation lock, held: let go (deleted at the revision it was taken at)
/// when dropped.
struct SharedLock {
    store: std::sync::Arc<dyn crate::store::Store>,
    revision: u64,
    /// The write under it has an unknown outcome (etcd may still apply it): the lock is
    /// left to expire rather than let another allocate against a store that may change.
    keep: bool,
}

impl Drop for SharedLock {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        let (store, revision) = (std::sync::Arc::clone(&self.store), self.revision);
        // Not letting go (the store away) costs the others `SHARED_LOCK_EXPIRES`, no more.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = store.delete(SHARED_LOCK, Some(revision)).await;
            });
        }
    }
}

/// The server's clock in whole seconds: the servers sharing a store share the host's.
fn unix_seconds(server: &ApiServer) -> u64 {
    server.options.clock.now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Takes the store's allocation lock: creates its key, or takes it over by
/// compare-and-swap once its holder's time is up.
async fn take_shared_lock(server: &ApiServer) -> Result<SharedLock, ApiError> {
    let store = std::sync::Arc::clone(&server.store);
    let started = std::time::Instant::now();
    let failed = |e: StoreError| ApiError::internal(format!("cannot take the Service allocation lock: {e}"));
    loop {
        let expires = unix_seconds(server) + SHARED_LOCK_EXPIRES.as_secs();
        let value = bytes::Bytes::from(json!({"expires": expires}).to_string());
        match store.create(SHARED_LOCK, value.clone()).await {
            Ok(revision) => return Ok(SharedLock { store, revision, keep: false }),
            Err(StoreError::Exists(_)) => {}
            Err(error) => return Err(failed(error)),
        }
        if let Some(held) = store.get(SHARED_LOCK).await.map_err(failed)? {
            let expires = serde_json::from_slice::<Value>(&held.value)
                .ok()
                .and_then(|v| v.get("expires").and_then(Value::as_u64))
                .unwrap_or(0);
            if expires <= unix_seconds(server)
                && let Ok(revision) = store.update(SHARED_LOCK, value, Some(held.revision)).await
            {
                return Ok(SharedLock { store, revision, keep: false });
            }
        }
        if started.elapsed() > SHARED_LOCK_WAIT {
            return Err(ApiError::internal(format!(
                "the Service allocation lock was not free for {SHARED_LOCK_WAIT:?}: another API server holds it"
            )));
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

impl Claim<'_> {
    fn none() -> Claim<'static> {
        Claim { guard: None, _shared: None }
    }

    /// Records the store's answer for `key`: `Ok(Some(object))` written, `Ok(None)`
    /// deleted. A refused write changed nothing; a failed one may have, so the index is
    /// rebuilt from the store.
    pub(super) fn settle(mut self, key: &str, outcome: Result<Option<&Value>, &StoreError>) {
        let Some(guard) = self.guard.as_mut() else { return };
        match outcome {
            Ok(Some(object)) => {
                if let Some(index) = guard.as_mut() {
                    index.set(key, object);
                }
            }
            Ok(None) => {
                if let Some(index) = guard.as_mut() {
                    index.remove(key);
                }
            }
            Err(StoreError::Conflict { .. } | StoreError::Exists(_) | StoreError::NotFound(_)) => {}
            Err(_) => {
                **guard = None;
                if let Some(shared) = self._shared.as_mut() {
                    shared.keep = true;
                }
            }
        }
    }
}

/// Writes to the Service itself allocate; its status is another endpoint (as in
/// Kubernetes, where the status store has no allocation hooks).
fn allocates(target: &Target) -> bool {
    target.resource.builtin_kind() == "Service" && target.subresource.is_none()
}

async fn lock(server: &ApiServer, build: bool) -> Result<Claim<'_>, ApiError> {
    let mut guard = server.allocator.index.lock().await;
    let mut shared = None;
    if build && server.options.shared_store {
        // Other servers may have allocated since: read what the store holds, under its lock.
        shared = Some(take_shared_lock(server).await?);
        *guard = None;
    }
    if guard.is_none() && build {
        *guard = Some(rebuild(server).await?);
    }
    Ok(Claim { guard: Some(guard), _shared: shared })
}

/// The index from every stored Service, read in pages.
async fn rebuild(server: &ApiServer) -> Result<Index, ApiError> {
    let services = resources::by_kind("", "Service").ok_or_else(|| ApiError::internal("services are not served"))?;
    let prefix = services.prefix(None);
    let mut index = Index::default();
    let mut after: Option<String> = None;
    loop {
        let listing = server
            .store
            .list(&prefix, after.as_deref(), Some(1000))
            .await
            .map_err(|e| ApiError::internal(format!("cannot read the Services to allocate from: {e}")))?;
        for entry in &listing.entries {
            // An object that does not decode holds nothing anyone can see.
            if let Ok(object) = serde_json::from_slice::<Value>(&entry.value) {
                index.set(&entry.key, &object);
            }
        }
        match listing.entries.last() {
            Some(last) if listing.more => after = Some(last.key.clone()),
            _ => return Ok(index),
        }
    }
}

/// A Service being created: its addresses and ports, allocated and written into it.
pub(super) async fn create<'a>(
    server: &'a ApiServer,
    target: &Target,
    key: &str,
    object: &mut Value,
) -> Result<Claim<'a>, ApiError> {
    if !allocates(target) {
        return Ok(Claim::none());
    }
    let cidr = server.allocator.cidr()?;
    let claim = lock(server, true).await?;
    if let Some(index) = claim.guard.as_ref().and_then(|g| g.as_ref()) {
        let name = text_at(object, "/metadata/name").to_string();
        Allocation { cidr, index, key, name: &name, causes: Vec::new() }.run(None, spec_mut(object))?;
    }
    Ok(claim)
}

/// A Service being updated from `current` to `next` (admitted): what the client left out
/// of `next` kept from `current`, clusterIP unchanged, new addresses and ports allocated.
pub(super) async fn update<'a>(
    server: &'a ApiServer,
    target: &Target,
    key: &str,
    current: &Value,
    next: &mut Value,
) -> Result<Claim<'a>, ApiError> {
    if !allocates(target) {
        return Ok(Claim::none());
    }
    let cidr = server.allocator.cidr()?;
    let claim = lock(server, true).await?;
    if let Some(index) = claim.guard.as_ref().and_then(|g| g.as_ref()) {
        let name = text_at(next, "/metadata/name").to_string();
        let old = current.get("spec").and_then(Value::as_object).cloned().unwrap_or_default();
        Allocation { cidr, index, key, name: &name, causes: Vec::new() }.run(Some(&old), spec_mut(next))?;
    }
    Ok(claim)
}

/// A Service being deleted: nothing to allocate, but its deletion must be recorded
/// before another write allocates.
pub(super) async fn delete<'a>(server: &'a ApiServer, target: &Target) -> Result<Claim<'a>, ApiError> {
    if !allocates(target) {
        return Ok(Claim::none());
    }
    lock(server, false).await
}

/// Before admission, on an update of a Service: the fields of the old type the new type
/// has no use for, when the client left them as they were (so they were likely set by
/// the server), are dropped, as Kubernetes' `dropTypeDependentFields` does. Changing
/// NodePort to ClusterIP thus releases the node ports; changed values stay, for
/// validation to refuse.
pub(super) fn drop_type_dependent_fields(current: &Value, next: &mut Value) {
    let Some(old) = current.get("spec").and_then(Value::as_object) else { return };
    let Some(new) = next.get_mut("spec").and_then(Value::as_object_mut) else { return };
    if needs_cluster_ip(old) && !needs_cluster_ip(new) {
        if same(old, new, "clusterIP") && same(old, new, "clusterIPs") {
            new.remove("clusterIP");
            new.remove("clusterIPs");
        }
        for field in ["ipFamilies", "ipFamilyPolicy"] {
            if same(old, new, field) {
                new.remove(field);
            }
        }
    }
    if needs_node_port(old) && !needs_node_port(new) {
        let old_ports = node_ports(old);
        if node_ports(new).is_subset(&old_ports) {
            for port in ports_mut(new) {
                port.remove("nodePort");
            }
        }
    }
    if needs_health_check_port(old) && !needs_health_check_port(new) && same(old, new, "healthCheckNodePort") {
        new.remove("healthCheckNodePort");
    }
    if service_type(old) == "LoadBalancer" && service_type(new) != "LoadBalancer" {
        for field in ["allocateLoadBalancerNodePorts", "loadBalancerClass"] {
            if same(old, new, field) {
                new.remove(field);
            }
        }
    }
    if externally_accessible(old) && !externally_accessible(new) && same(old, new, "externalTrafficPolicy") {
        new.remove("externalTrafficPolicy");
    }
    let load_balancer = service_type(new) == "LoadBalancer";
    // No longer a LoadBalancer: its load balancer status goes too, as in Kubernetes.
    if !load_balancer
        && let Some(status) = next.get_mut("status").and_then(Value::as_object_mut)
        && status.get("loadBalancer").is_some_and(|lb| lb.as_object().is_none_or(|m| !m.is_empty()))
    {
        status.insert("loadBalancer".into(), json!({}));
    }
}

/// One create or update of a Service, against the index, collecting field causes.
struct Allocation<'a> {
    cidr: &'a ServiceCidr,
    index: &'a Index,
    /// Addresses and ports this key holds are its own to keep.
    key: &'a str,
    name: &'a str,
    causes: Vec<(String, String, String)>,
}

impl Allocation<'_> {
    fn run(mut self, old: Option<&Map<String, Value>>, spec: &mut Map<String, Value>) -> Result<(), ApiError> {
        if let Some(old) = old {
            patch_allocated_values(old, spec);
        }
        normalize_cluster_ips(old, spec);
        if service_type(spec) == "ExternalName" {
            self.external_name(spec);
            return self.done();
        }
        self.immutable(old, spec);
        self.headless_types(spec);
        self.done()?;
        self.ip_families(old, spec)?;
        self.allocate_cluster_ip(old, spec)?;
        self.allocate_node_ports(old, spec)?;
        self.allocate_health_check_port(old, spec)?;
        self.done()
    }

    fn done(&mut self) -> Result<(), ApiError> {
        if self.causes.is_empty() {
            return Ok(());
        }
        let causes = std::mem::take(&mut self.causes);
        Err(ApiError::invalid(Subject { group: "", kind: "Service", name: self.name }, causes))
    }

    fn invalid(&mut self, field: &str, value: impl fmt::Display, detail: &str) {
        let message = format!("Invalid value: {value}: {detail}");
        self.causes.push((field.to_string(), message, "FieldValueInvalid".into()));
    }

    fn forbidden(&mut self, field: &str, detail: &str) {
        self.causes.push((field.to_string(), format!("Forbidden: {detail}"), "FieldValueForbidden".into()));
    }

    fn unsupported(&mut self, field: &str, value: &str, supported: &[&str]) {
        let supported: Vec<String> = supported.iter().map(|s| quoted(s)).collect();
        let message = format!("Unsupported value: {}: supported values: {}", quoted(value), supported.join(", "));
        self.causes.push((field.to_string(), message, "FieldValueNotSupported".into()));
    }

    fn duplicate(&mut self, field: &str, value: impl fmt::Display) {
        self.causes.push((field.to_string(), format!("Duplicate value: {value}"), "FieldValueDuplicate".into()));
    }

    fn ip_free(&self, ip: IpAddr) -> bool {
        self.index.ips.get(&ip).is_none_or(|owner| owner == self.key)
    }

    fn port_free(&self, port: u16) -> bool {
        self.index.ports.get(&port).is_none_or(|owner| owner == self.key)
    }

    /// An ExternalName Service is a DNS name: no address, no IP family.
    fn external_name(&mut self, spec: &Map<String, Value>) {
        if !text(spec, "clusterIP").is_empty() || !cluster_ips(spec).is_empty() {
            self.forbidden("spec.clusterIPs", "may not be set for ExternalName services");
        }
        if !strings(spec, "ipFamilies").is_empty() {
            self.forbidden("spec.ipFamilies", "may not be set for ExternalName services");
        }
        if spec.get("ipFamilyPolicy").is_some_and(|p| !p.is_null()) {
            self.forbidden("spec.ipFamilyPolicy", "may not be set for ExternalName services");
        }
    }

    /// clusterIP never changes once set, unless to or from ExternalName
    /// (`ValidateServiceUpdate`).
    fn immutable(&mut self, old: Option<&Map<String, Value>>, spec: &Map<String, Value>) {
        let Some(old) = old.filter(|old| service_type(old) != "ExternalName") else { return };
        let (before, after) = (text(old, "clusterIP"), text(spec, "clusterIP"));
        if !before.is_empty() && before != after {
            self.invalid("spec.clusterIP", quoted(after), "field is immutable");
            return;
        }
        let (before, after) = (cluster_ips(old), cluster_ips(spec));
        if let (Some(first), Some(now)) = (before.first(), after.first())
            && first != now
        {
            self.invalid("spec.clusterIPs[0]", go_strings(&after), "may not change once set");
        }
    }

    /// Only a ClusterIP Service may be headless.
    fn headless_types(&mut self, spec: &Map<String, Value>) {
        let kind = service_type(spec);
        if matches!(kind, "NodePort" | "LoadBalancer") && cluster_ips(spec).first().is_some_and(|ip| ip == "None") {
            self.invalid(
                "spec.clusterIPs[0]",
                quoted("None"),
                &format!("may not be set to 'None' for {kind} services"),
            );
        }
    }

    /// `ipFamilyPolicy` and `ipFamilies` on a single-stack cluster, as Kubernetes'
    /// `initIPFamilyFields` fills and checks them.
    fn ip_families(&mut self, old: Option<&Map<String, Value>>, spec: &mut Map<String, Value>) -> Result<(), ApiError> {
        let family = self.cidr.family();
        let other = if family == IPV4 { IPV6 } else { IPV4 };
        let headless = text(spec, "clusterIP") == "None";
        let selectorless = spec.get("selector").and_then(Value::as_object).is_none_or(Map::is_empty);
        let policy = match spec.get("ipFamilyPolicy").and_then(Value::as_str) {
            Some(policy) => policy.to_string(),
            None => match old.and_then(|old| old.get("ipFamilyPolicy")).and_then(Value::as_str) {
                Some(policy) => policy.to_string(),
                // Headless without a selector: its endpoints may be of either family.
                None if headless && selectorless => "RequireDualStack".into(),
                None => "SingleStack".into(),
            },
        };
        if !POLICIES.contains(&policy.as_str()) {
            self.unsupported("spec.ipFamilyPolicy", &policy, &POLICIES);
            return self.done();
        }
        let ips = cluster_ips(spec);
        let mut families = strings(spec, "ipFamilies");
        self.related_fields(spec, &ips, &families);
        self.done()?;
        if policy == "SingleStack" {
            if ips.len() == 2 {
                let detail = "must be 'RequireDualStack' or 'PreferDualStack' when multiple cluster IPs are specified";
                self.invalid("spec.ipFamilyPolicy", quoted(&policy), detail);
            }
            if families.len() == 2 {
                let detail = "must be 'RequireDualStack' or 'PreferDualStack' when multiple IP families are specified";
                self.invalid("spec.ipFamilyPolicy", quoted(&policy), detail);
            }
        }
        // Families follow the addresses asked for.
        for (i, ip) in ips.iter().enumerate().take_while(|(_, ip)| *ip != "None") {
            let Ok(ip) = ip.parse::<IpAddr>() else { continue };
            if i >= families.len() {
                if family_of(ip) == family {
                    families.push(family.to_string());
                } else {
                    let detail = format!("{} is not configured on this cluster", family_of(ip));
                    self.invalid(&format!("spec.clusterIPs[{i}]"), go_strings(&ips), &detail);
                }
            }
        }
        self.done()?;
        if headless && selectorless {
            if families.is_empty() {
                families.push(family.to_string());
            }
            if families.len() < 2 && policy != "SingleStack" {
                families.push(other.to_string());
            }
        } else {
            if policy == "RequireDualStack" {
                self.invalid(
                    "spec.ipFamilyPolicy",
                    quoted(&policy),
                    "this cluster is not configured for dual-stack services",
                );
            }
            for (i, wanted) in families.iter().enumerate() {
                if families[..i].contains(wanted) {
                    self.duplicate(&format!("spec.ipFamilies[{i}]"), quoted(wanted));
                } else if wanted != family {
                    self.invalid(&format!("spec.ipFamilies[{i}]"), quoted(wanted), "not configured on this cluster");
                }
            }
            self.done()?;
            if families.is_empty() {
                families.push(family.to_string());
            }
        }
        spec.insert("ipFamilyPolicy".into(), json!(policy));
        spec.insert("ipFamilies".into(), json!(families));
        Ok(())
    }

    /// The shape of clusterIP, clusterIPs and ipFamilies together
    /// (`ValidateServiceClusterIPsRelatedFields`).
    fn related_fields(&mut self, spec: &Map<String, Value>, ips: &[String], families: &[String]) {
        let cluster_ip = text(spec, "clusterIP");
        if ips.len() > 2 {
            let message = format!("Too many: {}: must have at most 2 items", ips.len());
            self.causes.push(("spec.clusterIPs".into(), message, "FieldValueTooMany".into()));
        }
        if !ips.is_empty() && cluster_ip.is_empty() {
            self.invalid("spec.clusterIPs", go_strings(ips), "must be empty when `clusterIP` is not specified");
        } else if ips.first().is_some_and(|first| first != cluster_ip) {
            self.invalid("spec.clusterIPs", go_strings(ips), "first value must match `clusterIP`");
        }
        for (i, ip) in ips.iter().enumerate() {
            if i == 0 && ip == "None" {
                continue;
            }
            match ip.parse::<IpAddr>() {
                Ok(parsed) => {
                    if let Some(wanted) = families.get(i)
                        && wanted != family_of(parsed)
                    {
                        let detail = format!("expected an {wanted} value as indicated by `ipFamilies[{i}]`");
                        self.invalid(&format!("spec.clusterIPs[{i}]"), quoted(ip), &detail);
                    }
                }
                Err(_) => self.invalid(
                    &format!("spec.clusterIPs[{i}]"),
                    quoted(ip),
                    "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                ),
            }
        }
        if families.len() > 2 {
            let message = format!("Too many: {}: must have at most 2 items", families.len());
            self.causes.push(("spec.ipFamilies".into(), message, "FieldValueTooMany".into()));
        }
        for (i, wanted) in families.iter().enumerate() {
            if !matches!(wanted.as_str(), IPV4 | IPV6) {
                self.unsupported(&format!("spec.ipFamilies[{i}]"), wanted, &[IPV4, IPV6]);
            } else if families[..i].contains(wanted) {
                self.duplicate(&format!("spec.ipFamilies[{i}]"), quoted(wanted));
            }
        }
    }

    /// The cluster IP: the one asked for if it is in range and free, else a free one.
    fn allocate_cluster_ip(
        &mut self,
        old: Option<&Map<String, Value>>,
        spec: &mut Map<String, Value>,
    ) -> Result<(), ApiError> {
        let ips = cluster_ips(spec);
        let kept = old.map(cluster_ips).unwrap_or_default();
        let ip = match ips.first().map(String::as_str) {
            Some("None") => return Ok(()),
            // Kept from before: it was allocated then (perhaps from another range).
            Some(ip) if kept.first().is_some_and(|k| k == ip) => return Ok(()),
            Some(ip) => {
                let Ok(parsed) = ip.parse::<IpAddr>() else { return Ok(()) };
                if self.cidr.offset(parsed).is_none() {
                    let detail = format!(
                        "failed to allocate IP {ip}: the provided IP ({ip}) is not in the valid range. \
                         The range of valid IPs is {}",
                        self.cidr
                    );
                    self.invalid("spec.clusterIPs", go_strings(&ips), &detail);
                } else if !self.ip_free(parsed) {
                    let detail = format!("failed to allocate IP {ip}: provided IP is already allocated");
                    self.invalid("spec.clusterIPs", go_strings(&ips), &detail);
                }
                return self.done();
            }
            None => self.next_ip().ok_or_else(|| {
                ApiError::internal("Internal error occurred: failed to allocate a serviceIP: range is full")
            })?,
        };
        spec.insert("clusterIP".into(), json!(ip.to_string()));
        spec.insert("clusterIPs".into(), json!([ip.to_string()]));
        Ok(())
    }

    /// A free address, above the static band first. The first address is never handed
    /// out: it is the `kubernetes` Service's.
    fn next_ip(&self) -> Option<IpAddr> {
        let cidr = self.cidr;
        let band = static_band(cidr.total, 16, 16, 256).clamp(1, cidr.size);
        let taken = |offset: u128| self.index.ips.contains_key(&cidr.address(offset));
        probe(band..cidr.size, taken).or_else(|| probe(1..band, taken)).map(|offset| cidr.address(offset))
    }

    /// Node ports of a NodePort or LoadBalancer Service: those asked for if free, a free
    /// one for each other port (unless a LoadBalancer opts out), shared on create by the
    /// ports of one number (TCP and UDP 53 get one node port). A node port may repeat
    /// within a Service only for another protocol; across Services, never.
    fn allocate_node_ports(
        &mut self,
        old: Option<&Map<String, Value>>,
        spec: &mut Map<String, Value>,
    ) -> Result<(), ApiError> {
        if !needs_node_port(spec) {
            return Ok(());
        }
        let create = old.is_none();
        let kept = old.map(node_ports).unwrap_or_default();
        let allocate_missing = service_type(spec) == "NodePort"
            || spec.get("allocateLoadBalancerNodePorts").and_then(Value::as_bool) != Some(false);
        let mut assigned: HashMap<u16, Vec<String>> = HashMap::new();
        let mut by_number: HashMap<i64, u16> = HashMap::new();
        for (i, port) in ports_of(spec).iter().enumerate() {
            let requested = number_at(port, "nodePort");
            if requested == 0 {
                continue;
            }
            let field = format!("spec.ports[{i}].nodePort");
            let protocol = port.get("protocol").and_then(Value::as_str).unwrap_or("TCP").to_string();
            let Some(node_port) = u16::try_from(requested).ok().filter(|p| NODE_PORTS.contains(p) || kept.contains(p))
            else {
                let detail = format!(
                    "provided port is not in the valid range. The range of valid ports is {}-{}",
                    NODE_PORTS.start(),
                    NODE_PORTS.end()
                );
                self.invalid(&field, requested, &detail);
                continue;
            };
            let protocols = assigned.entry(node_port).or_default();
            if protocols.contains(&protocol) {
                self.duplicate(&field, requested);
                continue;
            }
            if protocols.is_empty() && !self.port_free(node_port) {
                self.invalid(&field, requested, "provided port is already allocated");
                continue;
            }
            protocols.push(protocol);
            by_number.entry(number_at(port, "port")).or_insert(node_port);
        }
        self.done()?;
        if !allocate_missing {
            return Ok(());
        }
        for port in ports_mut(spec) {
            if number_at(port, "nodePort") != 0 {
                continue;
            }
            let protocol = port.get("protocol").and_then(Value::as_str).unwrap_or("TCP").to_string();
            let shared = by_number
                .get(&number_at(port, "port"))
                .copied()
                .filter(|shared| create && !assigned.get(shared).is_some_and(|p| p.contains(&protocol)));
            let node_port = match shared {
                Some(shared) => shared,
                None => self.next_port(&assigned).ok_or_else(|| {
                    ApiError::internal("Internal error occurred: failed to allocate a nodePort: range is full")
                })?,
            };
            assigned.entry(node_port).or_default().push(protocol);
            by_number.entry(number_at(port, "port")).or_insert(node_port);
            port.insert("nodePort".into(), json!(node_port));
        }
        Ok(())
    }

    /// A LoadBalancer keeping traffic on the node (`externalTrafficPolicy: Local`) gets a
    /// node port for the load balancer's health checks, which may not change after.
    fn allocate_health_check_port(
        &mut self,
        old: Option<&Map<String, Value>>,
        spec: &mut Map<String, Value>,
    ) -> Result<(), ApiError> {
        let field = "spec.healthCheckNodePort";
        let requested = number_at(spec, "healthCheckNodePort");
        if !needs_health_check_port(spec) {
            if requested != 0 {
                let detail = "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'";
                self.invalid(field, requested, detail);
            }
            return self.done();
        }
        let before =
            old.filter(|old| needs_health_check_port(old)).map_or(0, |old| number_at(old, "healthCheckNodePort"));
        if before != 0 {
            if requested != before {
                let detail = "cannot change healthCheckNodePort on loadBalancer service with externalTraffic=Local during update";
                self.invalid(field, requested, detail);
            }
            return self.done();
        }
        let node_ports = node_ports(spec);
        if requested != 0 {
            match u16::try_from(requested).ok().filter(|p| NODE_PORTS.contains(p)) {
                Some(port) if node_ports.contains(&port) || !self.port_free(port) => {
                    self.invalid(field, requested, "provided port is already allocated");
                }
                Some(_) => {}
                None => {
                    let detail = format!(
                        "provided port is not in the valid range. The range of valid ports is {}-{}",
                        NODE_PORTS.start(),
                        NODE_PORTS.end()
                    );
                    self.invalid(field, requested, &detail);
                }
            }
            return self.done();
        }
        let assigned: HashMap<u16, Vec<String>> = node_ports.into_iter().map(|p| (p, Vec::new())).collect();
        let port = self.next_port(&assigned).ok_or_else(|| {
            ApiError::internal("Internal error occurred: failed to allocate a nodePort: range is full")
        })?;
        spec.insert("healthCheckNodePort".into(), json!(port));
        Ok(())
    }

    /// A free node port, above the static band first.
    fn next_port(&self, assigned: &HashMap<u16, Vec<String>>) -> Option<u16> {
        let first = *NODE_PORTS.start();
        let total = u128::from(NODE_PORTS.end() - first) + 1;
        let band = static_band(total, 16, 32, 128);
        let port = |offset: u128| first + u16::try_from(offset).unwrap_or(0);
        let taken = |offset: u128| {
            let port = port(offset);
            self.index.ports.contains_key(&port) || assigned.contains_key(&port)
        };
        probe(band..total, taken).or_else(|| probe(0..band, taken)).map(port)
    }
}

/// Clients may leave out what the server allocated: an update without clusterIP or
/// nodePort keeps the current ones (Kubernetes' `patchAllocatedValues`), node ports
/// matched by port name and not already used by another port of the Service.
fn patch_allocated_values(old: &Map<String, Value>, new: &mut Map<String, Value>) {
    if needs_cluster_ip(old) && needs_cluster_ip(new) {
        if text(new, "clusterIP").is_empty()
            && let Some(ip) = old.get("clusterIP")
        {
            new.insert("clusterIP".into(), ip.clone());
        }
        if cluster_ips(new).is_empty() && !cluster_ips(old).is_empty() {
            new.insert("clusterIPs".into(), json!(cluster_ips(old)));
        }
    }
    if needs_node_port(old) && needs_node_port(new) {
        let used: HashSet<u16> = node_ports(old).intersection(&node_ports(new)).copied().collect();
        let by_name: HashMap<&str, i64> = ports_of(old)
            .iter()
            .map(|p| (p.get("name").and_then(Value::as_str).unwrap_or(""), number_at(p, "nodePort")))
            .collect();
        for port in ports_mut(new) {
            if number_at(port, "nodePort") != 0 {
                continue;
            }
            let name = port.get("name").and_then(Value::as_str).unwrap_or("");
            if let Some(&before) = by_name.get(name)
                && before != 0
                && u16::try_from(before).is_ok_and(|p| !used.contains(&p))
            {
                port.insert("nodePort".into(), json!(before));
            }
        }
    }
    if needs_health_check_port(old)
        && needs_health_check_port(new)
        && number_at(new, "healthCheckNodePort") == 0
        && let Some(port) = old.get("healthCheckNodePort")
    {
        new.insert("healthCheckNodePort".into(), port.clone());
    }
}

/// clusterIP and clusterIPs say the same (Kubernetes' `normalizeClusterIPs`): an old
/// client sends only clusterIP; an update that clears clusterIP clears clusterIPs, one
/// that changes it (for validation to refuse) changes clusterIPs too.
fn normalize_cluster_ips(old: Option<&Map<String, Value>>, new: &mut Map<String, Value>) {
    let cluster_ip = text(new, "clusterIP").to_string();
    let Some(old) = old else {
        if !cluster_ip.is_empty() && cluster_ips(new).is_empty() {
            new.insert("clusterIPs".into(), json!([cluster_ip]));
        }
        return;
    };
    if !cluster_ips(old).is_empty() && cluster_ips(new).is_empty() && text(old, "clusterIP") == cluster_ip {
        new.insert("clusterIPs".into(), json!(cluster_ips(old)));
    }
    if text(old, "clusterIP") != cluster_ip && same(old, new, "clusterIPs") {
        if cluster_ip.is_empty() {
            new.remove("clusterIPs");
        } else {
            new.insert("clusterIPs".into(), json!([cluster_ip]));
        }
    }
}

fn spec_mut(object: &mut Value) -> &mut Map<String, Value> {
    if !object.get("spec").is_some_and(Value::is_object) {
        object["spec"] = json!({});
    }
    object["spec"].as_object_mut().expect("spec was just made a map")
}

fn text<'a>(map: &'a Map<String, Value>, field: &str) -> &'a str {
    map.get(field).and_then(Value::as_str).unwrap_or("")
}

fn text_at<'a>(object: &'a Value, pointer: &str) -> &'a str {
    object.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn number_at(map: &Map<String, Value>, field: &str) -> i64 {
    map.get(field).and_then(Value::as_i64).unwrap_or(0)
}

fn strings(map: &Map<String, Value>, field: &str) -> Vec<String> {
    map.get(field)
        .and_then(Value::as_array)
        .map(|items| items.iter().map(|v| v.as_str().unwrap_or("").to_string()).collect())
        .unwrap_or_default()
}

fn cluster_ips(spec: &Map<String, Value>) -> Vec<String> {
    strings(spec, "clusterIPs")
}

/// The type, as defaulting leaves it.
fn service_type(spec: &Map<String, Value>) -> &str {
    spec.get("type").and_then(Value::as_str).filter(|t| !t.is_empty()).unwrap_or("ClusterIP")
}

fn needs_cluster_ip(spec: &Map<String, Value>) -> bool {
    service_type(spec) != "ExternalName"
}

fn needs_node_port(spec: &Map<String, Value>) -> bool {
    matches!(service_type(spec), "NodePort" | "LoadBalancer")
}

fn needs_health_check_port(spec: &Map<String, Value>) -> bool {
    service_type(spec) == "LoadBalancer" && text(spec, "externalTrafficPolicy") == "Local"
}

/// Reachable from outside the cluster: node ports, a load balancer, or external IPs.
fn externally_accessible(spec: &Map<String, Value>) -> bool {
    needs_node_port(spec)
        || (service_type(spec) == "ClusterIP"
            && spec.get("externalIPs").and_then(Value::as_array).is_some_and(|a| !a.is_empty()))
}

fn ports_of(spec: &Map<String, Value>) -> Vec<&Map<String, Value>> {
    spec.get("ports").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_object).collect()
}

fn ports_mut(spec: &mut Map<String, Value>) -> impl Iterator<Item = &mut Map<String, Value>> {
    spec.get_mut("ports").and_then(Value::as_array_mut).into_iter().flatten().filter_map(Value::as_object_mut)
}

fn node_ports(spec: &Map<String, Value>) -> HashSet<u16> {
    ports_of(spec).iter().filter_map(|p| u16::try_from(number_at(p, "nodePort")).ok()).filter(|p| *p != 0).collect()
}

/// Two values of a field are the same, an absent one the same as an empty one.
fn same(old: &Map<String, Value>, new: &Map<String, Value>, field: &str) -> bool {
    let present = |map: &Map<String, Value>| {
        map.get(field)
            .filter(|v| {
                !matches!(v, Value::Null) && v.as_str() != Some("") && v.as_array().is_none_or(|a| !a.is_empty())
            })
            .cloned()
    };
    present(old) == present(new)
}

/// A string as Go's `%q` shows it in a field error.
fn quoted(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_default()
}

/// A string list as Go's `%#v` shows it in a field error: `[]string{"10.96.0.10"}`.
fn go_strings(items: &[String]) -> String {
    let items: Vec<String> = items.iter().map(|s| quoted(s)).collect();
    format!("[]string{{{}}}", items.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_parse_with_kubernetes_limits() {
        let cidr = ServiceCidr::parse(DEFAULT_SERVICE_CIDR).unwrap();
        assert_eq!(cidr.to_string(), "10.96.0.0/12");
        assert_eq!(cidr.size, (1 << 20) - 2);
        assert_eq!(cidr.address(0), "10.96.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(cidr.offset("10.111.255.254".parse().unwrap()), Some(cidr.size - 1));
        for outside in ["10.96.0.0", "10.111.255.255", "10.112.0.1", "fd00::1"] {
            assert_eq!(cidr.offset(outside.parse().unwrap()), None, "{outside}");
        }
        assert_eq!(ServiceCidr::parse("10.96.7.9/24").unwrap().to_string(), "10.96.7.0/24");
        let v6 = ServiceCidr::parse("fd00:10:96::/108").unwrap();
        assert_eq!((v6.family(), v6.size), (IPV6, 65535));
        for bad in ["10.0.0.0/8", "10.96.0.0", "10.96.0.0/33", "ten/12", "10.96.0.1/32", "fd00::/64"] {
            assert!(ServiceCidr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dynamic_allocation_prefers_the_upper_band_and_skips_the_first_address() {
        assert_eq!(static_band(1 << 20, 16, 16, 256), 256);
        assert_eq!(static_band(2768, 16, 32, 128), 86);
        assert_eq!(static_band(16, 16, 16, 256), 0);
        let cidr = ServiceCidr::parse("10.0.0.0/29").unwrap();
        let index = Index::default();
        let allocation = Allocation { cidr: &cidr, index: &index, key: "k", name: "n", causes: Vec::new() };
        let first: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..50 {
            let ip = allocation.next_ip().unwrap();
            assert_ne!(ip, first);
            assert!(cidr.offset(ip).is_some());
        }
    }

    #[test]
    fn a_full_range_hands_out_nothing() {
        let cidr = ServiceCidr::parse("10.0.0.0/30").unwrap();
        let mut index = Index::default();
        // Of 10.0.0.1 and .2, the first is reserved: one Service fills the range.
        index.set("/a", &json!({"spec": {"clusterIP": "10.0.0.2", "clusterIPs": ["10.0.0.2"]}}));
        let allocation = Allocation { cidr: &cidr, index: &index, key: "/b", name: "b", causes: Vec::new() };
        assert_eq!(allocation.next_ip(), None);
    }

    #[test]
    fn the_index_follows_what_keys_hold() {
        let mut index = Index::default();
        let service = json!({"spec": {"type": "NodePort", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
            "ports": [{"port": 80, "nodePort": 30080}, {"port": 81, "nodePort": 30081}]}});
        index.set("/registry/core/services/a/web", &service);
        assert_eq!(index.ips.len(), 1);
        assert_eq!(index.ports.len(), 2);
        index.set("/registry/core/services/a/web", &json!({"spec": {"type": "ExternalName", "externalName": "x.y"}}));
        assert!(index.ips.is_empty() && index.ports.is_empty() && index.held.is_empty());
        index.set("/registry/core/services/a/web", &service);
        index.remove("/registry/core/services/a/web");
        assert!(index.ips.is_empty() && index.ports.is_empty());
    }

    #[test]
    fn type_changes_drop_what_the_server_set() {
        let current = json!({"spec": {"type": "NodePort", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
            "externalTrafficPolicy": "Cluster", "ports": [{"port": 80, "nodePort": 30080}]}});
        let mut next = current.clone();
        next["spec"]["type"] = json!("ClusterIP");
        drop_type_dependent_fields(&current, &mut next);
        assert_eq!(next["spec"]["ports"], json!([{"port": 80}]));
        assert_eq!(next["spec"]["clusterIP"], "10.96.0.10");
        assert!(next["spec"].get("externalTrafficPolicy").is_none());
        let mut named = current.clone();
        named["spec"]["type"] = json!("ExternalName");
        drop_type_dependent_fields(&current, &mut named);
        assert!(named["spec"].get("clusterIP").is_none() && named["spec"].get("clusterIPs").is_none());
        // A node port the client changed stays, for validation to refuse.
        let mut changed = current.clone();
        changed["spec"]["type"] = json!("ClusterIP");
        changed["spec"]["ports"][0]["nodePort"] = json!(30099);
        drop_type_dependent_fields(&current, &mut changed);
        assert_eq!(changed["spec"]["ports"][0]["nodePort"], 30099);
    }

    #[test]
    fn field_values_print_as_go_prints_them() {
        assert_eq!(go_strings(&["10.96.0.10".into()]), r#"[]string{"10.96.0.10"}"#);
        assert_eq!(quoted("None"), r#""None""#);
    }
}
