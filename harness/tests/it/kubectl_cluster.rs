//! kubectl 1.32 against a whole cluster (`kubeyard up`: API server, scheduler, controller
//! manager, simulated nodes), for the commands that need controllers behind the API:
//! drain with a PodDisruptionBudget, ...

use crate::support::kubectl::Kubectl;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const KUBEYARD: &str = env!("CARGO_BIN_EXE_kubeyard");

/// A `kubeyard up` cluster with no manifests, stopped when dropped.
struct Up {
    child: Child,
    dir: tempfile::TempDir,
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Up {
    /// Starts a cluster of `nodes` nodes and waits until they are all Ready.
    fn start(nodes: usize, extra: &[&str]) -> Up {
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        let mut child = Command::new(KUBEYARD)
            .args(["up", "--nodes", &nodes.to_string(), "--seed", "1", "--kubeconfig-out"])
            .arg(&kubeconfig)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        // Drained so that the cluster never blocks on a full pipe.
        std::thread::spawn(move || BufReader::new(stderr).lines().map_while(Result::ok).for_each(drop));
        let up = Up { child, dir };
        let start = Instant::now();
        loop {
            if up.kubeconfig().exists() {
                let output = up.kubectl(&["get", "nodes", "--no-headers"]);
                let text = String::from_utf8_lossy(&output.stdout);
                if output.status.success() && text.lines().filter(|l| l.contains(" Ready ")).count() == nodes {
                    return up;
                }
            }
            assert!(start.elapsed() < Duration::from_secs(30), "the cluster did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    fn client(&self) -> Kubectl {
        Kubectl::new(&self.kubeconfig(), self.dir.path())
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        self.client().run(args)
    }

    fn ok(&self, args: &[&str]) -> String {
        self.client().ok(args)
    }

    fn apply(&self, yaml: &str) -> String {
        let path = self.dir.path().join("applied.yaml");
        std::fs::write(&path, yaml).unwrap();
        self.ok(&["apply", "-f", path.to_str().unwrap()])
    }

    fn wait_for(&self, args: &[&str], wanted: impl Fn(&str) -> bool) -> String {
        self.client().wait_for(args, wanted)
    }

    /// Writes a file beside the kubeconfig, for `-f`.
    fn write(&self, name: &str, text: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_string_lossy().into_owned()
    }
}

const GUARDED: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: web, image: nginx:1.25}
      volumes:
      - {name: scratch, emptyDir: {}}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web}
spec:
  minAvailable: 1
  selector: {matchLabels: {app: web}}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      containers:
      - {name: agent, image: busybox:1.36}
";

#[test]
fn kubectl_drain_evicts_through_a_disruption_budget() {
    let cluster = Up::start(2, &[]);
    // Both replicas on node-1: draining it has to wait for the budget.
    cluster.ok(&["cordon", "node-2"]);
    cluster.apply(GUARDED);
    cluster.wait_for(&["get", "pdb", "web", "-o", "jsonpath={.status.disruptionsAllowed}"], |t| t == "1");
    let placed = cluster.ok(&["get", "pods", "-l", "app=web", "-o", "jsonpath={.items[*].spec.nodeName}"]);
    assert_eq!(placed, "node-1 node-1");
    let status = cluster.ok(&["get", "pdb", "web", "-o", "jsonpath={.status}"]);
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(
        (&status["currentHealthy"], &status["desiredHealthy"], &status["expectedPods"]),
        (&serde_json::json!(2), &serde_json::json!(1), &serde_json::json!(2)),
        "{status}"
    );
    cluster.ok(&["uncordon", "node-2"]);

    // Without the flags kubectl refuses, naming the pods, as against Kubernetes.
    let refused = cluster.kubectl(&["drain", "node-1"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    // It cordoned the node before it looked at the pods, as kubectl does.
    assert!(String::from_utf8_lossy(&refused.stdout).contains("node/node-1 cordoned"));
    assert!(stderr.contains("cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore)"), "{stderr}");
    assert!(
        stderr.contains("cannot delete Pods with local storage (use --delete-emptydir-data to override)"),
        "{stderr}"
    );

    let drained =
        cluster.kubectl(&["drain", "node-1", "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=60s"]);
    let (stdout, stderr) = (String::from_utf8_lossy(&drained.stdout), String::from_utf8_lossy(&drained.stderr));
    assert!(drained.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("node/node-1 already cordoned"), "{stdout}");
    assert!(stderr.contains("Warning: ignoring DaemonSet-managed Pods: default/agent-"), "{stderr}");
    // The second eviction waits until the first pod's replacement is ready on node-2.
    assert!(
        stderr.contains("(will retry after 5s): Cannot evict pod as it would violate the pod's disruption budget."),
        "{stderr}"
    );
    assert!(stdout.matches(" evicted").count() >= 2 && stdout.contains("node/node-1 drained"), "{stdout}");
    let placed = cluster.ok(&["get", "pods", "-l", "app=web", "-o", "jsonpath={.items[*].spec.nodeName}"]);
    assert_eq!(placed, "node-2 node-2");
    // The budget recorded what the evictions did, and is whole again.
    cluster.wait_for(&["get", "pdb", "web", "-o", "jsonpath={.status.disruptionsAllowed}"], |t| t == "1");
    let nodes = cluster.ok(&["get", "node", "node-1", "-o", "jsonpath={.spec.unschedulable}"]);
    assert_eq!(nodes, "true");
}

const LOADED: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata:
      labels: {app: web}
      annotations: {kubeyard.dev/usage: \"cpu=50m,memory=32Mi\"}
    spec:
      containers:
      - name: web
        image: nginx:1.25
        resources: {requests: {cpu: 200m, memory: 64Mi}}
";

#[test]
fn kubectl_autoscale_and_top_read_the_resource_metrics() {
    let cluster = Up::start(2, &[]);
    cluster.apply(LOADED);
    let top = cluster.wait_for(&["top", "pods"], |t| t.contains("web-") && t.contains("50m"));
    assert!(top.contains("CPU(cores)") && top.contains("32Mi"), "{top}");
    let nodes = cluster.wait_for(&["top", "nodes"], |t| t.contains("node-1") && t.contains("node-2"));
    assert!(nodes.contains("CPU(cores)") && nodes.contains("MEMORY(%)"), "{nodes}");

    // kubectl autoscale writes autoscaling/v1; the API server keeps it as v2.
    let created = cluster.ok(&["autoscale", "deployment", "web", "--min=1", "--max=3", "--cpu-percent=50"]);
    assert!(created.contains("horizontalpodautoscaler.autoscaling/web autoscaled"), "{created}");
    let v1 = cluster.ok(&[
        "get",
        "horizontalpodautoscalers.v1.autoscaling",
        "web",
        "-o",
        "jsonpath={.spec.targetCPUUtilizationPercentage}",
    ]);
    assert_eq!(v1, "50");
    let v2 = cluster.ok(&["get", "hpa", "web", "-o", "jsonpath={.spec.metrics[0].resource.target.averageUtilization}"]);
    assert_eq!(v2, "50");
    cluster.wait_for(
        &["get", "hpa", "web", "-o", "jsonpath={.status.currentMetrics[0].resource.current.averageUtilization}"],
        |t| t == "25",
    );

    // Load: 400m of 200m against 50% asks for four pods; three is the most.
    cluster.ok(&["annotate", "pods", "-l", "app=web", "kubeyard.dev/usage=cpu=400m", "--overwrite"]);
    cluster.wait_for(&["get", "deployment", "web", "-o", "jsonpath={.spec.replicas}"], |t| t == "3");
    let events = cluster.ok(&[
        "get",
        "events",
        "--field-selector",
        "reason=SuccessfulRescale",
        "-o",
        "jsonpath={.items[*].message}",
    ]);
    assert!(
        events.contains("New size: 3; reason: cpu resource utilization (percentage of request) above target"),
        "{events}"
    );
}

const SHOWN: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: web, image: nginx:1.25}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{port: 80}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: report}
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
      - {name: report, image: busybox:1.36}
";

#[test]
fn kubectl_describes_with_events_and_prints_every_column() {
    let cluster = Up::start(2, &[]);
    cluster.apply(SHOWN);
    cluster.ok(&["rollout", "status", "deployment/web", "--timeout=30s"]);
    cluster.ok(&["wait", "--for=condition=complete", "job/report", "--timeout=30s"]);

    // Lifecycle events, as Kubernetes records them, so describe shows them.
    let pod = cluster.ok(&["get", "pods", "-l", "app=web", "-o", "jsonpath={.items[0].metadata.name}"]);
    let described = cluster.wait_for(&["describe", "pod", &pod], |t| t.contains("Started"));
    for expected in [
        "Scheduled",
        "Successfully assigned default/",
        "Pulled",
        "already present on machine",
        "Created container web",
        "Started container web",
    ] {
        assert!(described.contains(expected), "{expected} missing:\n{described}");
    }
    let deployment = cluster.wait_for(&["describe", "deployment", "web"], |t| t.contains("ScalingReplicaSet"));
    assert!(deployment.contains("Scaled up replica set web-") && deployment.contains(" from 0 to 2"), "{deployment}");
    let node = cluster.wait_for(&["describe", "node", "node-1"], |t| t.contains("RegisteredNode"));
    assert!(node.contains("Registered Node node-1 in Controller") && node.contains("Starting kubelet."), "{node}");
    let job = cluster.wait_for(&["describe", "job", "report"], |t| t.contains("Completed"));
    assert!(job.contains("SuccessfulCreate") && job.contains("Job completed"), "{job}");
    // The same events through events.k8s.io/v1.
    let notes = cluster.ok(&["get", "events.v1.events.k8s.io", "-o", "jsonpath={.items[*].note}"]);
    assert!(notes.contains("Started container web"), "{notes}");

    // Wide columns.
    let pods = cluster.ok(&["get", "pods", "-o", "wide"]);
    let header = pods.lines().next().unwrap_or_default();
    for column in ["IP", "NODE", "NOMINATED NODE", "READINESS GATES"] {
        assert!(header.contains(column), "{pods}");
    }
    assert!(
        pods.lines().any(|l| l.starts_with("report-") && l.contains("Completed")),
        "a finished pod shows Completed:\n{pods}"
    );
    let nodes = cluster.ok(&["get", "nodes", "-o", "wide"]);
    assert!(
        nodes.contains("INTERNAL-IP") && nodes.contains("OS-IMAGE") && nodes.contains("CONTAINER-RUNTIME"),
        "{nodes}"
    );
    let deployments = cluster.ok(&["get", "deployments", "-o", "wide"]);
    assert!(
        deployments.contains("CONTAINERS") && deployments.contains("nginx:1.25") && deployments.contains("app=web"),
        "{deployments}"
    );
    let jobs = cluster.ok(&["get", "jobs"]);
    assert!(jobs.contains("STATUS") && jobs.contains("DURATION") && jobs.contains("Complete"), "{jobs}");
    // A LoadBalancer Service's EXTERNAL-IP: its nodes' addresses.
    let service = cluster.wait_for(&["get", "service", "web"], |t| !t.contains("<pending>"));
    let node_ip =
        cluster.ok(&["get", "node", "node-1", "-o", "jsonpath={.status.addresses[?(@.type==\"InternalIP\")].address}"]);
    assert!(service.contains(&node_ip), "{service}");
}

const QUOTA: &str = "\
apiVersion: v1
kind: ResourceQuota
metadata: {name: compute}
spec:
  hard: {requests.cpu: \"1\", count/configmaps: \"3\", services: \"1\"}
";

#[test]
fn kubectl_meets_quotas_on_objects_and_requests() {
    let cluster = Up::start(1, &[]);
    cluster.apply(QUOTA);
    // kube-root-ca.crt is the namespace's first ConfigMap: two more fit.
    cluster.ok(&["create", "configmap", "one"]);
    cluster.ok(&["create", "configmap", "two"]);
    let refused = cluster.kubectl(&["create", "configmap", "three"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains(
            "configmaps \"three\" is forbidden: exceeded quota: compute, requested: count/configmaps=1, used: count/configmaps=3, limited: count/configmaps=3"
        ),
        "{stderr}"
    );
    // A pod that says no cpu request under a requests.cpu quota.
    let bare = cluster.kubectl(&["run", "bare", "--image=busybox:1.36"]);
    let stderr = String::from_utf8_lossy(&bare.stderr);
    assert!(!bare.status.success());
    assert!(
        stderr.contains("pods \"bare\" is forbidden: failed quota: compute: must specify requests.cpu for: bare"),
        "{stderr}"
    );
    cluster.ok(&["run", "sized", "--image=busybox:1.36", "--overrides={\"spec\":{\"containers\":[{\"name\":\"sized\",\"image\":\"busybox:1.36\",\"resources\":{\"requests\":{\"cpu\":\"250m\"}}}]}}"]);
    // The controller's status, as describe shows it.
    let described = cluster.wait_for(&["describe", "quota", "compute"], |t| t.contains("250m"));
    assert!(described.contains("count/configmaps") && described.contains("3     3"), "{described}");
    let table = cluster.ok(&["get", "quota"]);
    assert!(table.contains("REQUEST") && table.contains("requests.cpu: 250m/1"), "{table}");

    // A scoped quota counts only the pods its scopes select: one long-running pod, any
    // number of pods with a deadline.
    cluster.apply(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: batch}\n---\napiVersion: v1\nkind: ResourceQuota\n\
         metadata: {name: long-running, namespace: batch}\nspec:\n  hard: {pods: \"1\"}\n  scopes: [NotTerminating]\n\
         ---\napiVersion: v1\nkind: ResourceQuota\nmetadata: {name: no-lb, namespace: batch}\nspec:\n  \
         hard: {services.loadbalancers: \"0\"}\n",
    );
    // An update that adds to what is counted is checked too: a Service made a LoadBalancer.
    cluster.ok(&["create", "service", "clusterip", "web", "--tcp=80", "-n", "batch"]);
    let patched =
        cluster.kubectl(&["patch", "service", "web", "-n", "batch", "-p", "{\"spec\":{\"type\":\"LoadBalancer\"}}"]);
    let stderr = String::from_utf8_lossy(&patched.stderr);
    assert!(
        stderr.contains(
            "services \"web\" is forbidden: exceeded quota: no-lb, requested: services.loadbalancers=1, used: services.loadbalancers=0, limited: services.loadbalancers=0"
        ),
        "{stderr}"
    );
    let pod = |name: &str, deadline: bool| {
        let deadline = if deadline { "  activeDeadlineSeconds: 600\n" } else { "" };
        let text = format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: batch}}\nspec:\n{deadline}  \
             containers:\n  - {{name: c, image: busybox:1.36}}\n"
        );
        let path = cluster.write(&format!("{name}.yaml"), &text);
        cluster.kubectl(&["create", "-f", &path])
    };
    assert!(pod("server", false).status.success());
    assert!(pod("job-1", true).status.success() && pod("job-2", true).status.success());
    let refused = pod("server-2", false);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("exceeded quota: long-running, requested: pods=1, used: pods=1, limited: pods=1"),
        "{stderr}"
    );
    let used = cluster
        .wait_for(&["get", "quota", "long-running", "-n", "batch", "-o", "jsonpath={.status.used.pods}"], |t| t == "1");
    assert_eq!(used, "1");
}

#[test]
fn kubectl_exec_port_forward_and_debug_on_simulated_pods_say_why_they_cannot() {
    let cluster = Up::start(1, &[]);
    cluster.ok(&["run", "web", "--image=nginx:1.25"]);
    cluster.ok(&["wait", "--for=condition=Ready", "pod/web", "--timeout=30s"]);
    for (args, doing) in [
        (vec!["exec", "web", "--", "ls"], "simulated containers have no exec"),
        (vec!["port-forward", "pod/web", "18080:80"], "simulated containers have no ports to forward"),
        (vec!["debug", "web", "--image=busybox:1.36"], "simulated containers have no room for an ephemeral container"),
        (vec!["cp", "web:/etc/hostname", "/tmp/kubeyard-cp-test"], "simulated containers have no exec"),
    ] {
        let output = cluster.kubectl(&args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?}");
        assert!(
            stderr.contains("pod web runs on simulated node node-1") && stderr.contains(doing),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("panic"), "{args:?}: {stderr}");
    }
}

const DAEMON_AND_STATEFUL: &str = "\
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      containers:
      - {name: agent, image: busybox:1.36}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  replicas: 2
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers:
      - {name: db, image: redis:7.0}
";

/// The REVISION column of `kubectl rollout history`.
fn revisions(history: &str) -> Vec<String> {
    history
        .lines()
        .skip_while(|l| !l.starts_with("REVISION"))
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

#[test]
fn kubectl_rollout_history_and_undo_on_every_workload_kind() {
    let cluster = Up::start(2, &[]);
    // Made through protobuf (Go's zero values and all), changed, undone: the old
    // ReplicaSet comes back, and history reads 2, 3 as on Kubernetes.
    cluster.ok(&["create", "deployment", "web", "--image=nginx:1.25"]);
    cluster.ok(&["rollout", "status", "deployment/web", "--timeout=30s"]);
    cluster.ok(&["set", "image", "deployment/web", "nginx=nginx:1.26"]);
    cluster.ok(&["rollout", "status", "deployment/web", "--timeout=30s"]);
    cluster.ok(&["rollout", "undo", "deployment/web"]);
    cluster.ok(&["rollout", "status", "deployment/web", "--timeout=30s"]);
    let history = cluster.ok(&["rollout", "history", "deployment/web"]);
    assert_eq!(revisions(&history), ["2", "3"], "{history}");
    let sets = cluster.ok(&["get", "replicasets", "-l", "app=web", "-o", "name"]);
    assert_eq!(sets.lines().count(), 2, "the old ReplicaSet is reused:\n{sets}");

    cluster.apply(DAEMON_AND_STATEFUL);
    cluster.ok(&["rollout", "status", "daemonset/agent", "--timeout=30s"]);
    cluster.ok(&["rollout", "status", "statefulset/db", "--timeout=60s"]);
    for (workload, container, image) in
        [("daemonset/agent", "agent", "busybox:1.37"), ("statefulset/db", "db", "redis:7.2")]
    {
        let history = cluster.ok(&["rollout", "history", workload]);
        assert_eq!(revisions(&history), ["1"], "{workload}: {history}");
        cluster.ok(&["set", "image", workload, &format!("{container}={image}")]);
        cluster.ok(&["rollout", "status", workload, "--timeout=60s"]);
        let history = cluster.ok(&["rollout", "history", workload]);
        assert_eq!(revisions(&history), ["1", "2"], "{workload}: {history}");
        let undone = cluster.ok(&["rollout", "undo", workload]);
        assert!(undone.contains("rolled back"), "{undone}");
        cluster.ok(&["rollout", "status", workload, "--timeout=60s"]);
        let history = cluster.wait_for(&["rollout", "history", workload], |h| revisions(h) == ["2", "3"]);
        assert!(history.contains("REVISION"), "{history}");
    }
    let revisions_listed = cluster.ok(&["get", "controllerrevisions"]);
    assert!(
        revisions_listed.contains("daemonset.apps/agent") && revisions_listed.contains("statefulset.apps/db"),
        "{revisions_listed}"
    );
    let images = cluster.ok(&["get", "pods", "-l", "app=agent", "-o", "jsonpath={.items[*].spec.containers[0].image}"]);
    assert_eq!(images, "busybox:1.36 busybox:1.36", "the daemon runs its first template again");
}

const RBAC: &str = "\
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Namespace
metadata: {name: other}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: ci, namespace: shop}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: reader, namespace: shop}
rules:
- {apiGroups: [\"\"], resources: [pods], verbs: [get, list]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: ci-reads, namespace: shop}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: reader}
subjects:
- {kind: ServiceAccount, name: ci, namespace: shop}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: monitoring}
aggregationRule:
  clusterRoleSelectors:
  - matchLabels: {example.com/aggregate-to-monitoring: \"true\"}
rules: []
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: monitoring-endpoints
  labels: {example.com/aggregate-to-monitoring: \"true\"}
rules:
- {apiGroups: [\"\"], resources: [endpoints], verbs: [get, list, watch]}
";

#[test]
fn kubectl_auth_and_rbac_allow_a_service_account_in_one_namespace_only() {
    let cluster = Up::start(1, &["--authorization", "rbac"]);
    cluster.apply(RBAC);
    let admin = cluster.ok(&["auth", "whoami"]);
    assert!(admin.contains("kubernetes-admin") && admin.contains("system:masters"), "{admin}");
    let token = cluster.ok(&["create", "token", "ci", "-n", "shop"]);
    let token = format!("--token={}", token.trim());
    let allowed = cluster.kubectl(&[&token, "get", "pods", "-n", "shop"]);
    assert!(allowed.status.success(), "{}", String::from_utf8_lossy(&allowed.stderr));
    let refused = cluster.kubectl(&[&token, "get", "pods", "-n", "other"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains(
            "pods is forbidden: User \"system:serviceaccount:shop:ci\" cannot list resource \"pods\" in API group \"\" in the namespace \"other\""
        ),
        "{stderr}"
    );
    // A token nobody knows is refused before RBAC is asked.
    let stranger = cluster.kubectl(&["--token=not-a-token", "get", "pods", "-n", "shop"]);
    assert!(String::from_utf8_lossy(&stranger.stderr).contains("Unauthorized"));
    assert_eq!(cluster.ok(&[&token, "auth", "can-i", "list", "pods", "-n", "shop"]).trim(), "yes");
    let no = cluster.kubectl(&[&token, "auth", "can-i", "delete", "pods", "-n", "shop"]);
    assert_eq!((no.status.code(), String::from_utf8_lossy(&no.stdout).trim()), (Some(1), "no"));
    let who = cluster.ok(&[&token, "auth", "whoami"]);
    assert!(who.contains("system:serviceaccount:shop:ci") && who.contains("system:serviceaccounts:shop"), "{who}");
    let rules = cluster.ok(&[&token, "auth", "can-i", "--list", "-n", "shop"]);
    assert!(rules.lines().any(|l| l.starts_with("pods ") && l.contains("[get list]")), "{rules}");
    // An aggregated ClusterRole holds what its selector picks.
    let aggregated = cluster
        .wait_for(&["get", "clusterrole", "monitoring", "-o", "jsonpath={.rules[*].resources}"], |t| {
            t.contains("endpoints")
        });
    assert!(aggregated.contains("endpoints"), "{aggregated}");
}

/// The bootstrap roles a real cluster has, `kubectl --as` (impersonation), and RBAC's
/// escalation check: a ServiceAccount bound to `edit` in one namespace reads and writes
/// there, may not read RBAC, and may not grant itself more than it holds.
#[test]
fn bootstrap_roles_impersonation_and_the_escalation_check_match_kubernetes() {
    let cluster = Up::start(1, &["--authorization", "rbac"]);
    cluster.apply(
        "apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: deployer, namespace: shop}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: deployer-edits, namespace: shop}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: edit}
subjects:
- {kind: ServiceAccount, name: deployer, namespace: shop}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: deployer-manages-roles, namespace: shop}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: roles-only}
subjects:
- {kind: ServiceAccount, name: deployer, namespace: shop}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: roles-only}
rules:
- {apiGroups: [rbac.authorization.k8s.io], resources: [roles, rolebindings], verbs: [create, get, list]}
",
    );
    let roles = cluster.ok(&["get", "clusterroles", "-o", "name"]);
    for role in ["cluster-admin", "admin", "edit", "view", "system:discovery", "system:basic-user"] {
        assert!(roles.lines().any(|l| l == format!("clusterrole.rbac.authorization.k8s.io/{role}")), "{role}: {roles}");
    }
    let view = cluster.ok(&["get", "clusterrole", "view", "-o", "jsonpath={.rules[*].resources}"]);
    assert!(view.contains("deployments") && !view.contains("secrets"), "view is aggregated: {view}");

    // `--as`: the administrator asks as the ServiceAccount; edit reaches Secrets in shop.
    let account = "--as=system:serviceaccount:shop:deployer";
    assert_eq!(cluster.ok(&[account, "auth", "can-i", "get", "secrets", "-n", "shop"]).trim(), "yes");
    let elsewhere = cluster.kubectl(&[account, "auth", "can-i", "get", "secrets", "-n", "default"]);
    assert_eq!(String::from_utf8_lossy(&elsewhere.stdout).trim(), "no");
    let who = cluster.ok(&[account, "auth", "whoami"]);
    assert!(
        who.contains("system:serviceaccount:shop:deployer") && who.contains("system:serviceaccounts:shop"),
        "{who}"
    );
    let refused = cluster.kubectl(&[account, "get", "pods", "-n", "default"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("User \"system:serviceaccount:shop:deployer\" cannot list resource \"pods\""), "{stderr}");

    // The ServiceAccount may create a Role within what it holds, and not beyond it.
    let token = cluster.ok(&["create", "token", "deployer", "-n", "shop"]);
    let token = format!("--token={}", token.trim());
    let within = cluster.write(
        "within.yaml",
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: pod-reader, namespace: shop}\n\
         rules:\n- {apiGroups: [\"\"], resources: [pods], verbs: [get, list]}\n",
    );
    let created = cluster.kubectl(&[&token, "create", "-f", &within]);
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let beyond = cluster.write(
        "beyond.yaml",
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: node-admin, namespace: shop}\n\
         rules:\n- {apiGroups: [\"\"], resources: [pods, nodes], verbs: [get, escalate]}\n",
    );
    let refused = cluster.kubectl(&[&token, "create", "-f", &beyond]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains(
            "roles.rbac.authorization.k8s.io \"node-admin\" is forbidden: user \"system:serviceaccount:shop:deployer\" \
             (groups=[\"system:serviceaccounts\" \"system:serviceaccounts:shop\" \"system:authenticated\"]) is attempting \
             to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"nodes\"], Verbs:[\"get\" \"escalate\"]}\n\
             {APIGroups:[\"\"], Resources:[\"pods\"], Verbs:[\"escalate\"]}"
        ),
        "{stderr}"
    );
    // Binding admin (which holds roles and bindings it lacks) is refused too.
    let bind = cluster.kubectl(&[
        &token,
        "create",
        "rolebinding",
        "grab-admin",
        "--clusterrole=admin",
        "--serviceaccount=shop:deployer",
        "-n",
        "shop",
    ]);
    let stderr = String::from_utf8_lossy(&bind.stderr);
    assert!(
        stderr.contains("rolebindings.rbac.authorization.k8s.io \"grab-admin\" is forbidden")
            && stderr.contains("is attempting to grant RBAC permissions not currently held"),
        "{stderr}"
    );
    // Allowed to `bind` admin, it may bind it all the same.
    cluster.apply(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: admin-binder}\nrules:\n\
         - {apiGroups: [rbac.authorization.k8s.io], resources: [clusterroles], resourceNames: [admin], verbs: [bind]}\n\
         - {apiGroups: [rbac.authorization.k8s.io], resources: [clusterroles], verbs: [create]}\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: deployer-binds-admin}\n\
         roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: admin-binder}\n\
         subjects:\n- {kind: ServiceAccount, name: deployer, namespace: shop}\n",
    );
    let bound = cluster.kubectl(&[
        &token,
        "create",
        "rolebinding",
        "grab-admin",
        "--clusterrole=admin",
        "--serviceaccount=shop:deployer",
        "-n",
        "shop",
    ]);
    assert!(bound.status.success(), "{}", String::from_utf8_lossy(&bound.stderr));
    // A role that is not there is not found, as the registry's lister says.
    let missing =
        cluster.kubectl(&[&token, "create", "rolebinding", "ghost", "--clusterrole=nope", "--user=x", "-n", "shop"]);
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.contains("clusterroles.rbac.authorization.k8s.io \"nope\" not found"), "{stderr}");
    // An aggregated ClusterRole is a cluster administrator's to write.
    let aggregated = cluster.write(
        "aggregated.yaml",
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: grows}\naggregationRule:\n  \
         clusterRoleSelectors:\n  - matchLabels: {example.com/grows: \"true\"}\nrules: []\n",
    );
    let refused = cluster.kubectl(&[&token, "create", "-f", &aggregated]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains(
            "clusterroles.rbac.authorization.k8s.io \"grows\" is forbidden: must have cluster-admin privileges to use the aggregationRule"
        ),
        "{stderr}"
    );
    // Impersonating someone needs the right to: the ServiceAccount may not be the admin.
    let impersonating = cluster.kubectl(&[&token, "--as=kubernetes-admin", "get", "pods", "-n", "shop"]);
    let stderr = String::from_utf8_lossy(&impersonating.stderr);
    assert!(
        stderr.contains(
            "users \"kubernetes-admin\" is forbidden: User \"system:serviceaccount:shop:deployer\" cannot impersonate \
             resource \"users\" in API group \"\" at the cluster scope"
        ),
        "{stderr}"
    );
}

/// CronJobs as kubectl users drive them: `create cronjob`, the columns a real server
/// prints, a manual run with `create job --from`, `suspend`, and a schedule the API
/// server refuses. (The schedule running on its own, an hour of it, is
/// `fixtures/e2e/cronjob-schedules`, in virtual time.)
#[test]
fn kubectl_creates_triggers_and_suspends_a_cronjob() {
    let cluster = Up::start(1, &[]);
    let created = cluster.ok(&[
        "create",
        "cronjob",
        "nightly",
        "--image=busybox:1.36",
        "--schedule=0 3 * * *",
        "--",
        "echo",
        "report",
    ]);
    assert!(created.contains("cronjob.batch/nightly created"), "{created}");
    let table = cluster.ok(&["get", "cronjob", "nightly"]);
    let header: Vec<&str> = table.lines().next().unwrap_or_default().split("  ").filter(|c| !c.is_empty()).collect();
    let header: Vec<&str> = header.iter().map(|c| c.trim()).collect();
    assert_eq!(header, ["NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST SCHEDULE", "AGE"], "{table}");
    let row: Vec<&str> = table.lines().nth(1).unwrap_or_default().split_whitespace().collect();
    assert_eq!(&row[..9], ["nightly", "0", "3", "*", "*", "*", "<none>", "False", "0"], "{table}");

    // A run now, by hand: a Job from the template, owned by the CronJob, marked manual.
    let triggered = cluster.ok(&["create", "job", "--from=cronjob/nightly", "nightly-now"]);
    assert!(triggered.contains("job.batch/nightly-now created"), "{triggered}");
    let manual = cluster.ok(&[
        "get",
        "job",
        "nightly-now",
        "-o",
        "jsonpath={.metadata.annotations.cronjob\\.kubernetes\\.io/instantiate} {.metadata.ownerReferences[0].kind}",
    ]);
    assert_eq!(manual, "manual CronJob");
    cluster.wait_for(&["get", "job", "nightly-now", "-o", "jsonpath={.status.succeeded}"], |t| t == "1");

    cluster.ok(&["patch", "cronjob", "nightly", "-p", "{\"spec\":{\"suspend\":true}}"]);
    let suspended = cluster.ok(&["get", "cronjob", "nightly", "--no-headers"]);
    // NAME, the schedule's five fields, TIMEZONE, then SUSPEND.
    assert_eq!(suspended.split_whitespace().nth(7), Some("True"), "{suspended}");

    let refused = cluster.kubectl(&["create", "cronjob", "broken", "--image=busybox:1.36", "--schedule=61 * * * *"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("CronJob.batch \"broken\" is invalid: spec.schedule: Invalid value: \"61 * * * *\""),
        "{stderr}"
    );
}

/// `kubectl delete node`: the pod garbage collector removes the pods bound to it once its
/// 40 s quarantine has passed (before, they stayed Running and counted available), and
/// their ReplicaSet replaces them on the node left. Real time: up to a minute.
#[test]
fn kubectl_delete_node_lets_pod_gc_take_its_pods() {
    let cluster = Up::start(2, &[]);
    cluster.apply(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 4\n  \
         selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    \
         spec:\n      containers: [{name: web, image: \"nginx:1.25\"}]\n",
    );
    let on = |node: &str| {
        let selector = format!("spec.nodeName={node}");
        cluster.ok(&["get", "pods", "-l", "app=web", "--field-selector", &selector, "-o", "name"]).lines().count()
    };
    cluster.wait_for(&["get", "deployment", "web", "-o", "jsonpath={.status.readyReplicas}"], |t| t == "4");
    assert!(on("node-2") > 0, "the scheduler spreads the pods over both nodes");
    cluster.ok(&["delete", "node", "node-2"]);
    let client = cluster.client();
    client.wait_within(
        &["get", "pods", "-l", "app=web", "--field-selector", "spec.nodeName=node-2", "-o", "name"],
        Duration::from_secs(90),
        |t| t.trim().is_empty(),
    );
    cluster.wait_for(&["get", "deployment", "web", "-o", "jsonpath={.status.readyReplicas}"], |t| t == "4");
    assert_eq!(on("node-1"), 4);
}

/// `kubeyard test --cluster kubeconfig`: the suite that runs in process runs against a
/// cluster it did not start (here `kubeyard up`, in CI any cluster), each test in a
/// namespace of its own, deleted after.
#[test]
fn the_same_tests_run_on_a_cluster_of_a_kubeconfig() {
    let cluster = Up::start(2, &[]);
    let kubeconfig = cluster.kubeconfig();
    let output = Command::new(KUBEYARD)
        .args(["test", "--cluster", "kubeconfig", "--kubeconfig"])
        .arg(&kubeconfig)
        .args(["fixtures/e2e/scale-and-count", "fixtures/e2e/job-completes", "fixtures/e2e/rolling-update"])
        .current_dir(crate::support::workspace())
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{report}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(report.contains("3 tests: 3 passed, 0 failed"), "{report}");
    // Each test's namespace is gone with it.
    let namespaces = cluster.wait_for(&["get", "namespaces", "-o", "name"], |t| !t.contains("kubeyard-"));
    assert!(namespaces.contains("namespace/default"), "{namespaces}");
}
