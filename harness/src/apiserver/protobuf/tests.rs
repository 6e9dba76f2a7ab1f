use super::*;
use kubeyard_compiler::source::SourceFile;
use kubeyard_compiler::yaml::Documents;
use protobuf::MessageDyn;
use protobuf::reflect::{ReflectValueBox, RuntimeType};

/// The inverse of `message_json`, as client-go's protobuf serializer writes an object:
/// for building bodies to read back.
fn encode(descriptor: &MessageDescriptor, value: &Value) -> Box<dyn MessageDyn> {
    let name = descriptor.full_name();
    let shaped = if name.ends_with("resource.Quantity") {
        json!({"string": value})
    } else if name.ends_with("intstr.IntOrString") {
        match value {
            Value::String(text) => json!({"type": 1, "strVal": text}),
            number => json!({"type": 0, "intVal": number}),
        }
    } else if name.ends_with("meta.v1.Time") {
        let text = value.as_str().unwrap_or_default();
        let time = chrono::DateTime::parse_from_rfc3339(text).expect("an RFC 3339 time");
        json!({"seconds": time.timestamp()})
    } else if name.ends_with("runtime.RawExtension") || name.ends_with("apiextensions.v1.JSON") {
        json!({"raw": base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(value).unwrap())})
    } else {
        value.clone()
    };
    let mut message = descriptor.new_instance();
    for field in descriptor.fields() {
        let item = if is_inline(descriptor, field.name()) { Some(&shaped) } else { shaped.get(field.name()) };
        let Some(item) = item.filter(|v| !v.is_null()) else { continue };
        match field.runtime_field_type() {
            RuntimeFieldType::Singular(kind) => field.set_singular_field(&mut *message, boxed(&kind, item)),
            RuntimeFieldType::Repeated(kind) => {
                let mut repeated = field.mut_repeated(&mut *message);
                for element in item.as_array().into_iter().flatten() {
                    repeated.push(boxed(&kind, element));
                }
            }
            RuntimeFieldType::Map(_, kind) => {
                let mut map = field.mut_map(&mut *message);
                for (key, element) in item.as_object().into_iter().flatten() {
                    map.insert(ReflectValueBox::String(key.clone()), boxed(&kind, element));
                }
            }
        }
    }
    message
}

fn boxed(kind: &RuntimeType, value: &Value) -> ReflectValueBox {
    let int = value.as_i64().unwrap_or_default();
    match kind {
        RuntimeType::I32 => ReflectValueBox::I32(i32::try_from(int).unwrap()),
        RuntimeType::I64 => ReflectValueBox::I64(int),
        RuntimeType::U32 => ReflectValueBox::U32(u32::try_from(int).unwrap()),
        RuntimeType::U64 => ReflectValueBox::U64(u64::try_from(int).unwrap()),
        RuntimeType::F32 => ReflectValueBox::F32(value.as_f64().unwrap_or_default() as f32),
        RuntimeType::F64 => ReflectValueBox::F64(value.as_f64().unwrap_or_default()),
        RuntimeType::Bool => ReflectValueBox::Bool(value.as_bool().unwrap_or_default()),
        RuntimeType::String => ReflectValueBox::String(value.as_str().unwrap_or_default().to_string()),
        RuntimeType::VecU8 => ReflectValueBox::Bytes(
            base64::engine::general_purpose::STANDARD.decode(value.as_str().unwrap_or_default()).unwrap(),
        ),
        RuntimeType::Enum(descriptor) => ReflectValueBox::Enum(descriptor.clone(), i32::try_from(int).unwrap()),
        RuntimeType::Message(descriptor) => ReflectValueBox::Message(encode(descriptor, value)),
    }
}

/// A body as client-go writes it: the magic, then `runtime.Unknown` around the object.
fn body(object: &Value) -> Vec<u8> {
    let text = |field: &str| object[field].as_str().unwrap_or_default().to_string();
    let descriptor = message_descriptor(&text("apiVersion"), &text("kind")).unwrap().expect("a served kind");
    let raw = encode(&descriptor, object).write_to_bytes_dyn().unwrap();
    let unknown = json!({
        "typeMeta": {"apiVersion": text("apiVersion"), "kind": text("kind")},
        "raw": base64::engine::general_purpose::STANDARD.encode(raw),
    });
    let mut body = MAGIC.to_vec();
    body.extend(encode(&unknown_descriptor().unwrap(), &unknown).write_to_bytes_dyn().unwrap());
    body
}

/// What protobuf cannot carry: nulls, and empty lists and maps (absent and empty are one).
fn without_empties(value: &Value) -> Option<Value> {
    match value {
        Value::Null => None,
        Value::Array(items) if items.is_empty() => None,
        Value::Array(items) => Some(Value::Array(items.iter().filter_map(without_empties).collect())),
        Value::Object(fields) => {
            Some(Value::Object(fields.iter().filter_map(|(k, v)| Some((k.clone(), without_empties(v)?))).collect()))
        }
        other => Some(other.clone()),
    }
}

#[test]
fn a_deployment_reads_as_kubectl_would_have_sent_it_in_json() {
    let deployment = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "creationTimestamp": "2023-11-14T22:13:20Z", "labels": {"app": "web"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{
                    "name": "web", "image": "nginx:1.25",
                    "ports": [{"containerPort": 80}],
                    "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}},
                    "readinessProbe": {"httpGet": {"path": "/", "port": "http"}},
                }]},
            },
        },
    });
    assert_eq!(decode(&body(&deployment)).unwrap(), deployment);
}

#[test]
fn what_go_writes_for_unset_fields_reads_as_unset() {
    // client-go writes a struct's every non-pointer field: "" for an unset name, the zero
    // time for an unset creationTimestamp, 0 for an unset targetPort.
    let written = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "", "creationTimestamp": "1970-01-01T00:00:00Z",
                     "labels": {"empty": ""}},
        "spec": {"ports": [{"name": "", "port": 80, "targetPort": 0, "nodePort": 0}], "clusterIP": ""},
    });
    let expected = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "labels": {"empty": ""}},
        "spec": {"ports": [{"port": 80}]},
    });
    assert_eq!(decode(&body(&written)).unwrap(), expected, "a label's empty value stays: it is a value");
}

#[test]
fn secrets_bytes_are_base64_and_raw_extensions_json() {
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "token"},
                        "data": {"key": "aGVsbG8="}, "type": "Opaque"});
    assert_eq!(decode(&body(&secret)).unwrap(), secret);
    let revision = json!({"apiVersion": "apps/v1", "kind": "ControllerRevision", "metadata": {"name": "r1"},
                          "data": {"spec": {"template": {"metadata": {"labels": {"a": "b"}}}}}, "revision": 1});
    assert_eq!(decode(&body(&revision)).unwrap(), revision);
}

#[test]
fn every_object_of_a_whole_application_reads_back_as_it_was_written() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/apps/storefront/manifests.yaml");
    let source = SourceFile::from_bytes(path, std::fs::read(path).expect("the fixture is in the project")).unwrap();
    let mut read = 0;
    for document in Documents::new(&source) {
        let Some(root) = document.unwrap().root else { continue };
        let object = without_empties(&root.to_json()).unwrap();
        assert_eq!(decode(&body(&object)).unwrap(), object);
        read += 1;
    }
    assert_eq!(read, 30, "every object of the application");
}

#[test]
fn bad_bodies_are_errors_that_say_why() {
    let no_magic = decode(b"{\"kind\": \"Pod\"}").unwrap_err();
    assert_eq!(no_magic.code, 400, "{}", no_magic.message);
    let unknown = json!({"typeMeta": {"apiVersion": "example.com/v1", "kind": "Widget"}});
    let mut widget = MAGIC.to_vec();
    widget.extend(encode(&unknown_descriptor().unwrap(), &unknown).write_to_bytes_dyn().unwrap());
    let refused = decode(&widget).unwrap_err();
    assert_eq!(refused.code, 415);
    assert!(refused.message.contains("Widget in example.com/v1"), "{}", refused.message);
    let mut truncated = body(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}));
    truncated.truncate(truncated.len() - 1);
    assert_eq!(decode(&truncated).unwrap_err().code, 400);
}

#[test]
fn durations_and_schema_names_read_as_go_writes_them() {
    assert_eq!(go_duration(0), "0s");
    assert_eq!(go_duration(1_500_000_000), "1.5s");
    assert_eq!(go_duration(90_000_000_000), "1m30s");
    assert_eq!(go_duration(3_600_000_000_000), "1h0m0s");
    assert_eq!(schema_props_name("xKubernetesPreserveUnknownFields"), "x-kubernetes-preserve-unknown-fields");
    assert_eq!(schema_props_name("ref"), "$ref");
}

#[test]
fn delete_options_typed_with_the_resources_group_version_read_as_meta_v1() {
    // client-go's typed clients send DeleteOptions (kubectl's delete fallback, drain
    // without eviction) under the resource's own group version.
    for api_version in ["v1", "apps/v1", "meta.k8s.io/v1"] {
        let options = json!({"apiVersion": api_version, "kind": "DeleteOptions",
                             "gracePeriodSeconds": 0, "propagationPolicy": "Foreground", "dryRun": ["All"]});
        assert_eq!(decode(&body(&options)).unwrap(), options, "{api_version}");
    }
    let eviction = json!({"apiVersion": "policy/v1", "kind": "Eviction",
                          "metadata": {"name": "web-0", "namespace": "shop"},
                          "deleteOptions": {"gracePeriodSeconds": 30}});
    assert_eq!(decode(&body(&eviction)).unwrap(), eviction);
}
