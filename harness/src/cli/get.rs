//! `kubeyard get`: objects of a live cluster as kubectl prints them, from the server's own
//! tables (`-o wide` adds the wide columns), or whole as YAML or JSON; any cluster in a
//! kubeconfig (kubectl's default one unless told) or at a URL.

use super::Exit;
use super::lint::usage_error;
use super::plan::Connection;
use crate::client::{Client, Connected};
use clap::{Args, ValueEnum};
use kubeyard_compiler::print;
use serde_json::Value;

#[derive(Args, Debug)]
pub struct GetArgs {
    /// What to list: a resource's plural, singular, kind or short name (`pods`, `po`,
    /// `deployment.apps`), several separated by commas.
    #[arg(value_name = "TYPE")]
    types: String,

    /// One object's name.
    name: Option<String>,

    /// The namespace [default: the kubeconfig context's, else `default`].
    #[arg(long, short = 'n')]
    namespace: Option<String>,

    /// Every namespace.
    #[arg(long, short = 'A', conflicts_with = "namespace")]
    all_namespaces: bool,

    /// Only objects with these labels (`app=web,tier!=cache`).
    #[arg(long, short = 'l')]
    selector: Option<String>,

    #[arg(long, short = 'o', value_enum, default_value_t = Output::Table)]
    output: Output,

    #[command(flatten)]
    connection: Connection,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Output {
    Table,
    Wide,
    Yaml,
    Json,
    Name,
}

pub fn run(args: GetArgs) -> Exit {
    let runtime = match super::runtime(false) {
        Ok(runtime) => runtime,
        Err(message) => return usage_error(&message),
    };
    runtime.block_on(async {
        // Neither --kubeconfig nor --cluster: the kubeconfig kubectl would read.
        let connected = match args.connection.connect().await {
            Ok(Some(connected)) => Ok(connected),
            Ok(None) => Client::connect(None, args.connection.context.as_deref()).await,
            Err(message) => Err(message),
        };
        let Connected { client, namespace } = match connected {
            Ok(connected) => connected,
            Err(message) => return usage_error(&message),
        };
        let namespace = args.namespace.clone().unwrap_or(namespace);
        get(&client, &args, &namespace).await
    })
}

async fn get(client: &Client, args: &GetArgs, namespace: &str) -> Exit {
    let mut found = false;
    let mut printed_tables = 0;
    for name in args.types.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let resource = match client.find(name).await {
            Ok(Some(resource)) => resource,
            Ok(None) => {
                return usage_error(&format!("the server doesn't have a resource type \"{name}\""));
            }
            Err(message) => return usage_error(&message),
        };
        let scope = (resource.namespaced && !args.all_namespaces).then_some(namespace);
        let mut path = Client::collection(&resource.api_version, &resource.plural, scope);
        if let Some(name) = &args.name {
            path = format!("{path}/{name}");
        }
        if let Some(selector) = &args.selector {
            path = format!("{path}?labelSelector={}", encode(selector));
        }
        let answer = match args.output {
            Output::Table | Output::Wide => client.table(&path).await,
            _ => client.get(&path).await,
        };
        let body = match answer {
            Ok(Some(body)) => body,
            Ok(None) => {
                let what = args.name.as_deref().unwrap_or("");
                eprintln!("Error from server (NotFound): {} \"{what}\" not found", resource.plural);
                return Exit::Findings;
            }
            Err(message) => return usage_error(&message),
        };
        let group = resource.api_version.split_once('/').map(|(g, _)| g).unwrap_or("");
        match args.output {
            Output::Table | Output::Wide => {
                let rows = body.get("rows").and_then(Value::as_array).map_or(0, Vec::len);
                if rows == 0 {
                    continue;
                }
                found = true;
                if printed_tables > 0 {
                    println!();
                }
                printed_tables += 1;
                // Several types: each name carries its kind, as kubectl prints `pod/web-1`.
                let kind = resource.kind.to_lowercase();
                let prefix =
                    (args.types.contains(',')).then(|| if group.is_empty() { kind } else { format!("{kind}.{group}") });
                print!(
                    "{}",
                    table(
                        &body,
                        args.output == Output::Wide,
                        args.all_namespaces && resource.namespaced,
                        prefix.as_deref()
                    )
                );
            }
            Output::Yaml | Output::Json => {
                found = true;
                let mut body = body;
                strip_managed_fields(&mut body);
                if args.output == Output::Json {
                    println!("{}", serde_json::to_string_pretty(&body).unwrap_or_default());
                } else {
                    print!("{}", print::to_yaml(&body));
                }
            }
            Output::Name => {
                let items = match body.get("items").and_then(Value::as_array) {
                    Some(items) => items.clone(),
                    None => vec![body.clone()],
                };
                for item in items {
                    found = true;
                    let name = item.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
                    println!(
                        "{}/{name}",
                        resource.kind.to_lowercase() + if group.is_empty() { "" } else { "." } + group
                    );
                }
            }
        }
    }
    if !found && matches!(args.output, Output::Table | Output::Wide) {
        if args.all_namespaces {
            eprintln!("No resources found");
        } else {
            eprintln!("No resources found in {namespace} namespace.");
        }
    }
    Exit::Ok
}

/// The managed fields kubectl hides unless asked.
fn strip_managed_fields(value: &mut Value) {
    if let Some(items) = value.get_mut("items").and_then(Value::as_array_mut) {
        items.iter_mut().for_each(strip_managed_fields);
    }
    if let Some(metadata) = value.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("managedFields");
    }
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A `meta.k8s.io/v1` Table as kubectl prints it: upper-case headers, columns three
/// spaces apart, priority-1 columns only when wide, a NAMESPACE column for `-A`.
fn table(body: &Value, wide: bool, namespaces: bool, prefix: Option<&str>) -> String {
    let columns: Vec<(usize, String)> = body
        .get("columnDefinitions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
        .filter(|(_, c)| wide || c.get("priority").and_then(Value::as_i64).unwrap_or(0) == 0)
        .map(|(i, c)| (i, c.get("name").and_then(Value::as_str).unwrap_or("").to_uppercase()))
        .collect();
    let mut lines: Vec<Vec<String>> = Vec::new();
    let mut header: Vec<String> = columns.iter().map(|(_, name)| name.clone()).collect();
    if namespaces {
        header.insert(0, "NAMESPACE".into());
    }
    lines.push(header);
    for row in body.get("rows").and_then(Value::as_array).into_iter().flatten() {
        let cells = row.get("cells").and_then(Value::as_array).cloned().unwrap_or_default();
        let mut line: Vec<String> = columns
            .iter()
            .map(|(i, _)| match cells.get(*i) {
                Some(Value::String(text)) => text.clone(),
                Some(Value::Null) | None => "<none>".into(),
                Some(other) => other.to_string(),
            })
            .collect();
        if let (Some(prefix), Some(first)) = (prefix, line.first_mut()) {
            *first = format!("{prefix}/{first}");
        }
        if namespaces {
            let namespace = row.pointer("/object/metadata/namespace").and_then(Value::as_str).unwrap_or("");
            line.insert(0, namespace.to_string());
        }
        lines.push(line);
    }
    let widths: Vec<usize> = (0..lines[0].len())
        .map(|i| lines.iter().map(|l| l.get(i).map_or(0, |c| c.chars().count())).max().unwrap_or(0))
        .collect();
    let mut text = String::new();
    for line in lines {
        let last = line.len().saturating_sub(1);
        for (i, cell) in line.iter().enumerate() {
            if i == last {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}   ", width = widths[i]));
            }
        }
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_print_as_kubectl_prints_them() {
        let body = json!({
            "columnDefinitions": [{"name": "Name", "priority": 0}, {"name": "Ready", "priority": 0},
                                  {"name": "Node", "priority": 1}],
            "rows": [{"cells": ["web-1", "1/1", "node-1"], "object": {"metadata": {"namespace": "shop"}}},
                     {"cells": ["longer-name", "0/1", null], "object": {"metadata": {"namespace": "default"}}}],
        });
        assert_eq!(table(&body, false, false, None), "NAME          READY\nweb-1         1/1\nlonger-name   0/1\n");
        let wide = table(&body, true, true, None);
        assert_eq!(wide.lines().next(), Some("NAMESPACE   NAME          READY   NODE"));
        assert!(wide.contains("default     longer-name   0/1     <none>"), "{wide}");
        assert!(table(&body, false, false, Some("pods")).contains("pods/web-1"));
        assert_eq!(encode("app in (a,b)"), "app%20in%20%28a%2Cb%29");
    }
}
