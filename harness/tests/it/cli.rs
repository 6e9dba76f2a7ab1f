//! `kubeyard lint` as a user runs it: exit codes, formats, flags, and hostile input.

use crate::support;

use serde_json::json;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output};

fn kubeyard(args: &[&str]) -> Output {
    kubeyard_with_stdin(args, None)
}

fn kubeyard_with_stdin(args: &[&str], stdin: Option<&[u8]>) -> Output {
    support::kubeyard(args, stdin)
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(output)))
}

#[test]
fn valid_manifests_exit_zero() {
    let output = kubeyard(&["lint", "fixtures/lint/valid"]);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    assert!(stdout(&output).contains("13 objects in 7 files: 12 valid, 0 invalid, 1 skipped"), "{}", stdout(&output));
}

#[test]
fn invalid_manifests_exit_one() {
    let output = kubeyard(&["lint", "fixtures/lint/invalid/unknown-fields.yaml"]);
    assert_eq!(output.status.code(), Some(1));
    let text = stdout(&output);
    assert!(text.contains("fixtures/lint/invalid/unknown-fields.yaml:18:7"), "{text}");
    assert!(text.contains("did you mean \"containers\"?"), "{text}");
}

#[test]
fn unreadable_paths_exit_two_and_the_rest_is_still_linted() {
    let output = kubeyard(&["lint", "does/not/exist.yaml", "fixtures/lint/valid/deployment.yaml"]);
    assert_eq!(output.status.code(), Some(2));
    let text = stdout(&output);
    assert!(text.contains("error[input/unreadable]: does/not/exist.yaml: cannot read"), "{text}");
    assert!(text.contains("1 object in 2 files: 1 valid"), "{text}");
}

#[test]
fn usage_errors_exit_two() {
    let output = kubeyard(&["lint", "--kubernetes-version", "1.2", "fixtures/lint/valid"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("kubeyard has no schemas for Kubernetes 1.2; it has 1.25,"),
        "{}",
        stderr(&output)
    );
    let output = kubeyard(&["lint", "--schema-dir", "no/such/dir", "fixtures/lint/valid"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("schema folder no/such/dir"), "{}", stderr(&output));
    let output = kubeyard(&["lint", "--output", "yaml"]);
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn reads_standard_input() {
    let manifest = b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: piped}\ndata: {a: b}\n";
    let output = kubeyard_with_stdin(&["lint", "-", "-o", "json"], Some(manifest));
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    let report = json(&output);
    assert_eq!(report["objects"][0]["file"], "<stdin>");
    assert_eq!(report["objects"][0]["name"], "piped");
    // Without paths the current directory is linted, never a stdin nobody asked for.
    let output = kubeyard_with_stdin(&["lint", "-o", "json"], Some(b"not: [valid"));
    assert!(json(&output)["summary"]["files"].as_u64().unwrap() > 20, "{}", stdout(&output));
}

#[test]
fn json_output_is_stable_and_complete() {
    let output =
        kubeyard(&["lint", "-o", "json", "fixtures/lint/invalid/wrong-types.yaml", "fixtures/lint/valid/list.yaml"]);
    assert_eq!(output.status.code(), Some(1));
    let report = json(&output);
    assert_eq!(report["formatVersion"], 1);
    assert_eq!(report["summary"]["objects"], 3);
    assert_eq!(report["summary"]["invalid"], 1);
    let first = &report["objects"][0]["diagnostics"][0];
    assert_eq!(first["code"], "schema/type");
    assert_eq!(first["path"], "spec.replicas");
    assert_eq!((first["line"].as_u64(), first["column"].as_u64()), (Some(6), Some(13)));
    assert_eq!(report["objects"][1]["item"], 0);
}

#[test]
fn junit_output_has_a_case_per_object() {
    let output = kubeyard(&[
        "lint",
        "-o",
        "junit",
        "fixtures/lint/invalid/removed-apis.yaml",
        "fixtures/lint/valid/deployment.yaml",
    ]);
    assert_eq!(output.status.code(), Some(1));
    let xml = stdout(&output);
    assert!(xml.starts_with("<?xml"), "{xml}");
    assert_eq!(xml.matches("<testcase ").count(), 5, "{xml}");
    assert_eq!(xml.matches("<failure ").count(), 4, "{xml}");
    assert!(xml.contains("extensions/v1beta1 Deployment was removed in Kubernetes 1.16"), "{xml}");
}

#[test]
fn sarif_output_is_valid_sarif_2_1_0() {
    let root = support::workspace();
    let mut schema: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("fixtures/sarif/sarif-schema-2.1.0.json")).unwrap()).unwrap();
    // OASIS's schema has a pattern a strict regex reader refuses (`language`'s, with a
    // stray `]`), so the schema would not compile: it is left out in memory (kubeyard
    // writes no `language`); the file stays OASIS's.
    for owner in ["run", "toolComponent"] {
        let language = schema.pointer_mut(&format!("/definitions/{owner}/properties/language"));
        let language = language.and_then(|l| l.as_object_mut()).expect("language is in the schema");
        assert!(language.remove("pattern").is_some(), "{owner}.language has its pattern");
    }
    let validator = jsonschema::validator_for(&schema).expect("OASIS's schema compiles");
    let mut inputs: Vec<String> = std::fs::read_dir(root.join("fixtures/lint/invalid"))
        .unwrap()
        .map(|e| format!("fixtures/lint/invalid/{}", e.unwrap().file_name().to_string_lossy()))
        .collect();
    inputs.sort();
    inputs.push("fixtures/rules/image/latest-tag/bad.yaml".into());
    inputs.push("no/such/file.yaml".into());
    let mut args = vec!["lint", "--output", "sarif"];
    args.extend(inputs.iter().map(String::as_str));
    let output = kubeyard(&args);
    // An unreadable path is exit 2, as in every format.
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let sarif = json(&output);
    let problems: Vec<String> =
        validator.iter_errors(&sarif).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    assert!(problems.is_empty(), "not valid SARIF 2.1.0: {problems:#?}");

    let run = &sarif["runs"][0];
    assert_eq!(run["tool"]["driver"]["name"], "kubeyard");
    assert_eq!(run["invocations"][0]["executionSuccessful"], false, "a path could not be read");
    let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
    let results = run["results"].as_array().unwrap();
    for result in results {
        let index = result["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(rules[index]["id"], result["ruleId"], "{result}");
    }
    let find = |rule: &str, file: &str| {
        results
            .iter()
            .find(|r| r["ruleId"] == rule && r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == file)
            .unwrap_or_else(|| panic!("no {rule} in {file}: {results:#?}"))
    };
    // The same place the text and JSON outputs point at (README's example).
    let unknown = results
        .iter()
        .find(|r| r["properties"]["path"] == "spec.template.spec.contianers")
        .unwrap_or_else(|| panic!("no finding on spec.template.spec.contianers: {results:#?}"));
    assert_eq!(unknown["ruleId"], "schema/unknown-field");
    assert_eq!(
        unknown["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
        "fixtures/lint/invalid/unknown-fields.yaml"
    );
    assert_eq!(unknown["level"], "error");
    let region = &unknown["locations"][0]["physicalLocation"]["region"];
    assert_eq!(
        (&region["startLine"], &region["startColumn"], &region["endLine"], &region["endColumn"]),
        (&json!(18), &json!(7), &json!(18), &json!(17)),
        "{unknown:#}"
    );
    assert!(unknown["message"]["text"].as_str().unwrap().contains("help: did you mean \"containers\"?"), "{unknown:#}");
    let latest = find("image/latest-tag", "fixtures/rules/image/latest-tag/bad.yaml");
    assert_eq!(latest["level"], "warning");
    assert_eq!(latest["locations"][0]["logicalLocations"][0]["fullyQualifiedName"], "apps/v1 Deployment/web");
    let rule = &rules[latest["ruleIndex"].as_u64().unwrap() as usize];
    assert!(rule["helpUri"].as_str().unwrap().ends_with("/docs/rules.md#imagelatest-tag"), "{rule:#}");
    assert!(rule["help"]["text"].as_str().unwrap().contains("Fix: "), "{rule:#}");
    let unreadable = find("input/unreadable", "no/such/file.yaml");
    assert!(unreadable["locations"][0]["physicalLocation"].get("region").is_none(), "{unreadable:#}");
}

#[test]
fn github_output_annotates_the_lines() {
    let output = kubeyard(&["lint", "--output", "github", "fixtures/lint/invalid/unknown-fields.yaml"]);
    assert_eq!(output.status.code(), Some(1));
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines.contains(
            &"::error file=fixtures/lint/invalid/unknown-fields.yaml,line=18,col=7,endColumn=16,title=schema/unknown-field (Deployment/web)::unknown field \"spec.template.spec.contianers\"%0Ahelp: did you mean \"containers\"?"
        ),
        "{text}"
    );
    assert_eq!(
        lines.last(),
        Some(&"kubeyard lint: 1 file(s), 1 object(s): 0 valid, 1 invalid, 0 skipped; 4 error(s), 0 warning(s)"),
        "{text}"
    );
    // A path given as ./x is annotated as x: GitHub matches files by their repository path.
    let output = kubeyard(&["lint", "-o", "github", "./fixtures/rules/image/latest-tag/bad.yaml"]);
    assert_eq!(output.status.code(), Some(0), "warnings only");
    let text = stdout(&output);
    let latest: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("::warning file=fixtures/rules/image/latest-tag/bad.yaml,line="))
        .collect();
    assert_eq!(latest.len(), 2, "one for each container: {text}");
    assert!(latest.iter().all(|l| l.contains("title=image/latest-tag (Deployment/web)::")), "{text}");
    // Standard input has no file to annotate: the line still says what and where.
    let output = kubeyard_with_stdin(
        &["lint", "-o", "github", "-"],
        Some(b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: 7\n"),
    );
    let text = stdout(&output);
    assert!(text.starts_with("::error line=4,col=7,"), "{text}");
}

#[test]
fn no_strict_allows_unknown_fields_and_warns_on_duplicate_keys() {
    let output = kubeyard(&["lint", "--no-strict", "fixtures/lint/invalid/duplicate-keys.yaml", "-o", "json"]);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    assert_eq!(json(&output)["objects"][0]["diagnostics"][0]["severity"], "warning");
    let output = kubeyard(&["lint", "--no-strict", "-o", "json", "fixtures/lint/invalid/unknown-fields.yaml"]);
    let codes: Vec<String> = json(&output)["objects"][0]["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["code"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(codes, vec!["schema/required"], "only the missing containers remain");
}

#[test]
fn kubernetes_version_selects_the_schemas() {
    let flow_schema = b"apiVersion: flowcontrol.apiserver.k8s.io/v1beta3\nkind: FlowSchema\nmetadata: {name: f}\nspec:\n  priorityLevelConfiguration: {name: global-default}\n";
    let output = kubeyard_with_stdin(&["lint", "-k", "1.31", "-"], Some(flow_schema));
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    let output = kubeyard_with_stdin(&["lint", "-k", "1.32", "-o", "json", "-"], Some(flow_schema));
    assert_eq!(output.status.code(), Some(1));
    let diagnostic = &json(&output)["objects"][0]["diagnostics"][0];
    assert_eq!(diagnostic["message"], "flowcontrol.apiserver.k8s.io/v1beta3 FlowSchema was removed in Kubernetes 1.32");
    assert_eq!(
        diagnostic["help"],
        "use apiVersion: flowcontrol.apiserver.k8s.io/v1 (check the migration guide for field changes)"
    );
}

#[test]
fn schema_dirs_and_missing_schemas() {
    let dir = tempfile::tempdir().unwrap();
    let schema = serde_json::json!({
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"},
            "spec": {"type": "object", "properties": {"endpoints": {"type": "array"}}}
        }
    });
    std::fs::write(dir.path().join("servicemonitor-monitoring-v1.json"), schema.to_string()).unwrap();
    let manifest =
        b"apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata: {name: m}\nspec: {endpoint: []}\n";
    let output =
        kubeyard_with_stdin(&["lint", "-o", "json", "--schema-dir", dir.path().to_str().unwrap(), "-"], Some(manifest));
    assert_eq!(output.status.code(), Some(1));
    let diagnostic = &json(&output)["objects"][0]["diagnostics"][0];
    assert_eq!(diagnostic["message"], "unknown field \"spec.endpoint\"");
    assert_eq!(diagnostic["help"], "did you mean \"endpoints\"?");

    // The upstream layout: per-kind files pointing into the folder's `_definitions.json`.
    let upstream = tempfile::tempdir().unwrap();
    let definitions = serde_json::json!({"$id": "https://kubernetes.io/api/_definitions.json", "$defs": {
        "com.example.v1.Gadget": {"type": "object", "required": ["spec"], "properties": {
            "apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"},
            "spec": {"type": "object", "properties": {"size": {"type": "integer"}}}}}}});
    std::fs::write(upstream.path().join("_definitions.json"), definitions.to_string()).unwrap();
    std::fs::write(
        upstream.path().join("gadget-example-v1.json"),
        r#"{"$ref": "/api/_definitions.json#/$defs/com.example.v1.Gadget"}"#,
    )
    .unwrap();
    let gadget = b"apiVersion: example.com/v1\nkind: Gadget\nmetadata: {name: g}\nspec: {size: big, colour: red}\n";
    let output = kubeyard_with_stdin(
        &["lint", "-o", "json", "--schema-dir", upstream.path().to_str().unwrap(), "-"],
        Some(gadget),
    );
    let messages: Vec<String> = json(&output)["objects"][0]["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["message"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(messages, vec!["spec.size: expected integer, found string \"big\"", "unknown field \"spec.colour\""]);

    let output = kubeyard_with_stdin(&["lint", "-"], Some(manifest));
    assert_eq!(output.status.code(), Some(1));
    let output = kubeyard_with_stdin(&["lint", "--ignore-missing-schemas", "-o", "json", "-"], Some(manifest));
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(json(&output)["objects"][0]["verdict"], "skipped");
}

#[test]
fn hostile_input_is_reported_and_the_run_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    // 100 MB in one document: refused as the API server would, without building it.
    let mut big = std::fs::File::create(path("a-huge.yaml")).unwrap();
    big.write_all(b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: huge}\ndata:\n  blob: ").unwrap();
    let chunk = vec![b'x'; 1 << 20];
    for _ in 0..100 {
        big.write_all(&chunk).unwrap();
    }
    drop(big);
    std::fs::write(path("b-binary.yaml"), [0u8, 159, 146, 150, 0, 1]).unwrap();
    std::fs::write(path("c-latin1.yaml"), b"kind: Pod\nname: caf\xe9\n").unwrap();
    std::fs::write(path("d-deep.yaml"), "[".repeat(100_000)).unwrap();
    let block: String = (0..5_000).map(|i| format!("{}k:\n", " ".repeat(i))).collect();
    std::fs::write(path("e-deep-block.yaml"), block).unwrap();
    std::fs::write(path("f-broken.yaml"), "a: [1, 2\nb: {c\n").unwrap();
    std::fs::write(
        path("g-laughs.yaml"),
        std::fs::read(support::workspace().join("fixtures/lint/invalid/alias-bomb.yaml")).unwrap(),
    )
    .unwrap();
    std::fs::write(path("h-empty.yaml"), "").unwrap();
    std::fs::write(path("z-valid.yaml"), "apiVersion: v1\nkind: Namespace\nmetadata: {name: fine}\n").unwrap();

    let output = kubeyard(&["lint", "-o", "json", dir.path().to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let report = json(&output);
    let objects = report["objects"].as_array().unwrap();
    let code_of = |file: &str| -> Vec<String> {
        objects
            .iter()
            .filter(|o| o["file"].as_str().unwrap().ends_with(file))
            .flat_map(|o| o["diagnostics"].as_array().unwrap().iter().map(|d| d["code"].as_str().unwrap().to_string()))
            .collect()
    };
    assert_eq!(code_of("a-huge.yaml"), vec!["input/too-large"]);
    assert_eq!(code_of("b-binary.yaml"), vec!["input/binary"]);
    assert_eq!(code_of("c-latin1.yaml"), vec!["input/not-utf8"]);
    assert_eq!(code_of("d-deep.yaml"), vec!["yaml/too-deep"]);
    assert_eq!(code_of("e-deep-block.yaml"), vec!["yaml/too-deep"]);
    assert_eq!(code_of("f-broken.yaml"), vec!["yaml/syntax"]);
    assert_eq!(code_of("g-laughs.yaml"), vec!["yaml/alias-limit"]);
    assert!(code_of("h-empty.yaml").is_empty());
    let last = objects.last().unwrap();
    assert_eq!((last["name"].as_str(), last["verdict"].as_str()), (Some("fine"), Some("valid")));
    assert_eq!(report["summary"]["files"], 9);
}

#[test]
fn output_order_does_not_depend_on_threads() {
    let first = kubeyard(&["lint", "-o", "json", "fixtures/lint"]);
    for threads in ["1", "2", "4"] {
        let again = Command::new(env!("CARGO_BIN_EXE_kubeyard"))
            .args(["lint", "-o", "json", "fixtures/lint"])
            .current_dir(support::workspace())
            .env("RAYON_NUM_THREADS", threads)
            .output()
            .unwrap();
        let strip = |out: &[u8]| {
            let mut value: serde_json::Value = serde_json::from_slice(out).unwrap();
            value["summary"]["seconds"] = serde_json::Value::Null;
            value
        };
        assert_eq!(strip(&first.stdout), strip(&again.stdout), "with {threads} threads");
    }
    assert!(Path::new(&support::workspace()).join("fixtures/lint").is_dir());
}

#[test]
fn normalize_prints_valid_objects_and_reports_the_rest() {
    let output =
        kubeyard(&["normalize", "fixtures/lint/valid/deployment.yaml", "fixtures/lint/invalid/wrong-types.yaml"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let yaml = stdout(&output);
    assert!(yaml.starts_with("---\napiVersion: apps/v1\nkind: Deployment\n"), "{yaml}");
    assert!(yaml.contains("progressDeadlineSeconds: 600"), "{yaml}");
    assert!(yaml.contains("memory: 1536Mi"), "quantities are canonical: {yaml}");
    assert!(!yaml.contains("name: api"), "the invalid Deployment is left out: {yaml}");
    assert!(stderr(&output).contains("spec.replicas: expected integer"), "{}", stderr(&output));

    let output = kubeyard_with_stdin(
        &["normalize", "-o", "json", "-"],
        Some(b"apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  ports: [{port: 80}]\n"),
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let objects = json(&output);
    assert_eq!(objects[0]["spec"]["ports"][0]["targetPort"], 80);
    assert_eq!(objects[0]["spec"]["type"], "ClusterIP");
    assert_eq!(objects[0]["metadata"]["namespace"], "default");
}

#[test]
fn rules_follow_the_configuration_flags_and_annotations() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations:\n    kubeyard.dev/ignore: \"pod/host-port, image/latst-tag\"\nspec:\n  containers:\n  - name: c\n    image: nginx\n    ports: [{containerPort: 80, hostPort: 80}]\n    resources:\n      requests: {cpu: 100m, memory: 64Mi}\n      limits: {cpu: 100m, memory: 64Mi}\n";
    std::fs::create_dir_all(dir.path().join("apps/web")).unwrap();
    std::fs::write(dir.path().join("apps/web/pod.yaml"), manifest).unwrap();
    let path = dir.path().join("apps/web");
    let codes = |output: &Output| -> Vec<String> {
        json(output)["objects"][0]["diagnostics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| format!("{}:{}", d["code"].as_str().unwrap(), d["severity"].as_str().unwrap()))
            .collect()
    };
    // The annotation silences pod/host-port and warns about the misspelt id.
    let output = kubeyard(&["lint", "-o", "json", path.to_str().unwrap()]);
    assert_eq!(codes(&output), vec!["config/invalid:warning", "image/latest-tag:warning"], "{}", stdout(&output));
    let help = json(&output)["objects"][0]["diagnostics"][0]["help"].clone();
    assert_eq!(help, "did you mean \"image/latest-tag\"?");

    // .kubeyard.yaml above the linted path raises the latest-tag rule to an error.
    std::fs::write(dir.path().join(".kubeyard.yaml"), "rules:\n  image/latest-tag: error\n").unwrap();
    let output = kubeyard(&["lint", "-o", "json", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(codes(&output).contains(&"image/latest-tag:error".to_string()), "{:?}", codes(&output));

    // A flag wins over the file; --no-config ignores it.
    let output = kubeyard(&["lint", "-o", "json", "--rule", "image/latest-tag=off", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(codes(&output), vec!["config/invalid:warning"]);
    let output = kubeyard(&["lint", "-o", "json", "--no-config", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0));

    // A broken configuration stops the run with its own diagnostic.
    std::fs::write(dir.path().join(".kubeyard.yaml"), "rulez:\n  image/latest-tag: error\n").unwrap();
    let output = kubeyard(&["lint", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("unknown setting \"rulez\""), "{}", stderr(&output));
    assert!(stderr(&output).contains("did you mean \"rules\"?"), "{}", stderr(&output));

    let output = kubeyard(&["lint", "--rule", "image/nope=off", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn cluster_shape_from_the_command_line() {
    let manifest = b"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: big}\nspec:\n  replicas: 3\n  selector: {matchLabels: {app: big}}\n  template:\n    metadata: {labels: {app: big}}\n    spec:\n      containers:\n      - name: big\n        image: example/big:1\n        resources:\n          requests: {cpu: \"3\", memory: 1Gi}\n          limits: {cpu: \"3\", memory: 1Gi}\n";
    let output = kubeyard_with_stdin(&["lint", "-", "--cluster", "nodes=2,cpu=4,memory=8Gi"], Some(manifest));
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    assert!(stdout(&output).contains("only 2 of 3 pods of Deployment/big fit in the cluster"), "{}", stdout(&output));
    let output = kubeyard_with_stdin(&["lint", "-", "--cluster", "nodes=3,cpu=4,memory=8Gi"], Some(manifest));
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    let output = kubeyard_with_stdin(&["lint", "-", "--cluster", "nodes=3"], Some(manifest));
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn rules_command_lists_and_explains() {
    let output = kubeyard(&["rules"]);
    assert_eq!(output.status.code(), Some(0));
    assert!(stdout(&output).lines().count() >= 29);
    let output = kubeyard(&["rules", "service/no-matching-pods"]);
    assert!(stdout(&output).contains("no endpoints"), "{}", stdout(&output));
    let output = kubeyard(&["rules", "-o", "markdown"]);
    let docs = std::fs::read_to_string(support::workspace().join("docs/rules.md")).unwrap();
    assert_eq!(stdout(&output), docs);
    assert_eq!(kubeyard(&["rules", "service/no-pods"]).status.code(), Some(2));
}

/// Every command that reads manifests refuses what `lint` and the API server refuse,
/// through the same front end: an object without a name is not planned, normalized or
/// graphed (it was planned as `# / will be created` and stored in states).
#[test]
fn every_command_refuses_what_lint_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let nameless = dir.path().join("nameless.yaml");
    std::fs::write(&nameless, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  labels: {app: web}\ndata: {k: v}\n")
        .unwrap();
    let aliased = dir.path().join("aliased.yaml");
    std::fs::write(
        &aliased,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: one}\ndata: &shared {k: v}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: two}\ndata: *shared\n",
    )
    .unwrap();
    let state = dir.path().join("state.yaml");
    for file in [&nameless, &aliased] {
        let file = file.to_str().unwrap();
        let state = state.to_str().unwrap();
        for args in [
            vec!["lint", file],
            vec!["normalize", file],
            vec!["graph", file],
            vec!["plan", file],
            vec!["apply", file, "--state", state],
        ] {
            let output = kubeyard(&args);
            assert_eq!(output.status.code(), Some(1), "{args:?} must refuse: {}{}", stdout(&output), stderr(&output));
            let said = format!("{}{}", stdout(&output), stderr(&output));
            let why = if file.ends_with("nameless.yaml") { "has no metadata.name" } else { "unknown anchor" };
            assert!(said.contains(why), "{args:?}: {said}");
            assert!(
                !said.contains("# / will be created") && !said.contains("ConfigMap/default/two"),
                "{args:?}: {said}"
            );
        }
    }
    let stored = std::fs::read_to_string(&state).unwrap_or_default();
    assert!(!stored.contains("kind: ConfigMap"), "nothing refused is stored: {stored}");
}

/// A file with thousands of problems prints a hundred of them and counts the rest.
#[test]
fn diagnostics_per_file_are_capped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("typos.yaml");
    let fields: String = (0..2_000).map(|i| format!("  typo{i}: x\n")).collect();
    std::fs::write(&path, format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: typos\n{fields}")).unwrap();
    let path = path.to_str().unwrap();
    let output = kubeyard(&["lint", path]);
    assert_eq!(output.status.code(), Some(1));
    let text = stdout(&output);
    assert_eq!(text.matches("schema/unknown-field").count(), 100, "a hundred shown");
    assert!(text.contains("... and 1900 more diagnostics in"), "{}", &text[text.len().saturating_sub(600)..]);
    assert!(text.contains("(2000 errors, 0 warnings)"), "the summary counts them all");
    let all = kubeyard(&["lint", "--max-diagnostics", "0", path]);
    assert_eq!(stdout(&all).matches("schema/unknown-field").count(), 2_000);
    let json_output = kubeyard(&["lint", "-o", "json", path]);
    assert_eq!(json(&json_output)["objects"][0]["diagnostics"].as_array().unwrap().len(), 2_000);
}

/// Standard input is refused once it passes the input limit, while it is read: an
/// endless stream ends the run with a diagnostic instead of filling memory.
#[test]
fn endless_standard_input_is_refused_while_reading() {
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_kubeyard"))
        .args(["lint", "-o", "json", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        let line = b"# an endless comment line, sent until kubeyard stops reading\n".repeat(1 << 14);
        // Bounded: 1 GiB at most, far past the limit; a broken pipe ends it sooner.
        for _ in 0..(1usize << 30) / line.len() {
            if stdin.write_all(&line).is_err() {
                return true;
            }
        }
        false
    });
    let output = child.wait_with_output().unwrap();
    assert!(feeder.join().unwrap(), "kubeyard stopped reading before the stream ended");
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let report = json(&output);
    let diagnostic = &report["objects"][0]["diagnostics"][0];
    assert_eq!(diagnostic["code"], "input/too-large", "{report}");
    assert!(diagnostic["message"].as_str().unwrap().contains("over 256 MiB"), "{diagnostic}");
}

fn listed(args: &[&str]) -> Vec<String> {
    let output = kubeyard(args);
    assert_eq!(output.status.code(), Some(0), "{args:?}: {}", stderr(&output));
    let tests: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    tests.as_array().unwrap().iter().map(|t| t["key"].as_str().unwrap().to_string()).collect()
}

/// `kubeyard test --shard K/N`: over the parts, every test of the suite exactly once,
/// whichever way it is split; and the parts' reports merge into one.
#[test]
fn shards_split_the_suite_once_and_their_reports_merge() {
    let mut all = listed(&["test", "fixtures/e2e", "--list", "--output", "json"]);
    all.sort();
    assert!(all.len() > 20, "{all:?}");
    let dir = tempfile::tempdir().unwrap();
    // Durations of an earlier run: one long test, 5 s for the others.
    let report = dir.path().join("earlier.json");
    let timed: Vec<serde_json::Value> = all
        .iter()
        .map(|key| {
            let name = key.rsplit_once('#').unwrap().1;
            serde_json::json!({"name": name, "seconds": if name == "storefront" { 300.0 } else { 5.0 }})
        })
        .collect();
    let earlier = serde_json::json!({ "tests": timed });
    std::fs::write(&report, earlier.to_string()).unwrap();
    let report = report.to_str().unwrap();
    for (by, extra) in [("path", None), ("count", None), ("duration", Some(report))] {
        let mut parts: Vec<Vec<String>> = Vec::new();
        for k in 1..=3 {
            let shard = format!("{k}/3");
            let mut args =
                vec!["test", "fixtures/e2e", "--shard", &shard, "--shard-by", by, "--list", "--output", "json"];
            if let Some(report) = extra {
                args.extend(["--durations", report]);
            }
            parts.push(listed(&args));
        }
        let mut union: Vec<String> = parts.iter().flatten().cloned().collect();
        union.sort();
        assert_eq!(union, all, "--shard-by {by}: every test in exactly one part");
        if by == "count" {
            assert!(parts.iter().all(|p| p.len().abs_diff(all.len() / 3) <= 1), "{by}: even parts");
        }
        if by == "duration" {
            let alone = parts.iter().find(|p| p.iter().any(|k| k.ends_with("#storefront"))).unwrap();
            assert_eq!(alone.len(), 1, "the 300 s test has a part to itself: {alone:?}");
        }
    }
    let refused = kubeyard(&["test", "fixtures/e2e", "--shard", "4/3", "--list"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(stderr(&refused).contains("--shard wants K/N"), "{}", stderr(&refused));
    let refused = kubeyard(&["test", "fixtures/e2e", "--shard", "1/3", "--shard-by", "duration", "--list"]);
    assert!(stderr(&refused).contains("--shard-by duration needs --durations"), "{}", stderr(&refused));

    // Two parts' JUnit reports, as `--output junit` writes them, merged.
    let junit = |name: &str, seconds: &str, failed: bool| {
        let case = if failed {
            format!(
                "<testcase name=\"converged\" classname=\"fixtures/e2e/{name}/test.yaml\"><failure message=\"not converged\"/></testcase>"
            )
        } else {
            format!("<testcase name=\"converged\" classname=\"fixtures/e2e/{name}/test.yaml\"/>")
        };
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"kubeyard test\" tests=\"1\" failures=\"{}\" errors=\"0\" time=\"{seconds}\">\
             <testsuite name=\"{name}\" tests=\"1\" disabled=\"0\" errors=\"0\" failures=\"{}\" time=\"{seconds}\">{case}</testsuite></testsuites>\n",
            u8::from(failed),
            u8::from(failed)
        )
    };
    let first = dir.path().join("shard-1.xml");
    let second = dir.path().join("shard-2.xml");
    std::fs::write(&first, junit("quota", "12.5", false)).unwrap();
    std::fs::write(&second, junit("cordon", "6.5", true)).unwrap();
    let (first, second) = (first.to_str().unwrap(), second.to_str().unwrap());
    let merged = kubeyard(&["test", "merge-reports", first, second]);
    assert_eq!(merged.status.code(), Some(0), "{}", stderr(&merged));
    let text = stdout(&merged);
    assert!(text.contains("tests=\"2\"") && text.contains("failures=\"1\""), "{text}");
    assert!(
        text.contains("name=\"quota\"") && text.contains("name=\"cordon\"") && text.contains("time=\"12.5"),
        "{text}"
    );
    // A part with no test (more parts than tests) passes and writes an empty report,
    // which merges.
    let empty =
        kubeyard(&["test", "fixtures/e2e/cordon", "--shard", "2/2", "--shard-by", "count", "--output", "junit"]);
    assert_eq!(empty.status.code(), Some(0), "{}", stderr(&empty));
    assert!(stderr(&empty).contains("shard 2/2 has no tests"), "{}", stderr(&empty));
    let empty_report = dir.path().join("shard-empty.xml");
    std::fs::write(&empty_report, &empty.stdout).unwrap();
    let merged = kubeyard(&["test", "merge-reports", first, empty_report.to_str().unwrap()]);
    assert_eq!(merged.status.code(), Some(0), "{}", stderr(&merged));
    assert!(stdout(&merged).contains("tests=\"1\""), "{}", stdout(&merged));
    let twice = kubeyard(&["test", "merge-reports", first, first]);
    assert_eq!(twice.status.code(), Some(2));
    assert!(stderr(&twice).contains("fixtures/e2e/quota/test.yaml#quota is in both"), "{}", stderr(&twice));
}

#[test]
fn shell_completions_complete_subcommands_and_values() {
    let binary = env!("CARGO_BIN_EXE_kubeyard");
    // bash sources the script and asks it, as a user's Tab does.
    let complete = |words: &str, current: usize| {
        let script = format!(
            "source <({binary} completion bash) && COMP_WORDS=({words}) && COMP_CWORD={current} && \
             _kubeyard kubeyard \"${{COMP_WORDS[$COMP_CWORD]}}\" \"${{COMP_WORDS[$COMP_CWORD-1]}}\" && \
             echo \"${{COMPREPLY[@]}}\""
        );
        let output = Command::new("bash").args(["-c", &script]).output().expect("bash runs");
        assert!(output.status.success(), "{}", stderr(&output));
        stdout(&output).trim().to_string()
    };
    assert_eq!(complete("kubeyard li", 1), "lint");
    assert_eq!(complete("kubeyard lint --output ''", 3), "text json junit sarif github");
    assert!(complete("kubeyard test merge", 2).split(' ').any(|w| w == "merge-reports"));
    for (shell, marker) in [("zsh", "#compdef kubeyard"), ("fish", "complete -c kubeyard"), ("powershell", "kubeyard")]
    {
        let output = kubeyard(&["completion", shell]);
        assert_eq!(output.status.code(), Some(0));
        assert!(stdout(&output).contains(marker), "{shell}");
    }
    let output = kubeyard(&["completion", "tcsh"]);
    assert_eq!(output.status.code(), Some(2), "an unknown shell is refused");
}

#[test]
fn manual_pages_cover_every_subcommand_with_its_examples() {
    let dir = tempfile::tempdir().unwrap();
    let output = kubeyard(&["man", "--dir", dir.path().to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let mut pages: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    pages.sort();
    for page in
        ["kubeyard.1", "kubeyard-lint.1", "kubeyard-test.1", "kubeyard-test-merge-reports.1", "kubeyard-image-build.1"]
    {
        assert!(pages.contains(&page.to_string()), "{page} in {pages:?}");
    }
    assert!(!pages.iter().any(|p| p.contains("pause") || p.contains("help")), "hidden ones have none: {pages:?}");
    assert!(stderr(&output).contains(&format!("wrote {} manual pages", pages.len())), "{}", stderr(&output));
    let lint = std::fs::read_to_string(dir.path().join("kubeyard-lint.1")).unwrap();
    assert!(lint.contains(".TH kubeyard-lint 1"), "{}", &lint[..200.min(lint.len())]);
    assert!(lint.contains("Examples:") && lint.contains("kubeyard lint \\-\\-output sarif"), "{lint}");
    // Without --dir: kubeyard(1) on standard output.
    let output = kubeyard(&["man"]);
    assert!(stdout(&output).contains(".TH kubeyard 1"), "{}", stdout(&output));
}
