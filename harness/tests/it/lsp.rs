//! `kubeyard lsp` driven as an editor drives it: real LSP messages over its standard input
//! and output (Content-Length framing), from initialize to exit.

use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

struct Client {
    child: Child,
    input: ChildStdin,
    /// The server's messages, read on a thread of their own.
    output: std::sync::mpsc::Receiver<Value>,
    next: i64,
    /// Notifications received while waiting for a response.
    notifications: Vec<Value>,
}

impl Client {
    fn start() -> Client {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kubeyard"))
            .arg("lsp")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("kubeyard lsp starts");
        let input = child.stdin.take().unwrap();
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        let (sender, output) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            while let Some(message) = read_message(&mut reader) {
                if sender.send(message).is_err() {
                    break;
                }
            }
        });
        Client { child, input, output, next: 1, notifications: Vec::new() }
    }

    fn send(&mut self, message: Value) {
        let body = message.to_string();
        write!(self.input, "Content-Length: {}\r\n\r\n{body}", body.len()).unwrap();
        self.input.flush().unwrap();
    }

    fn receive(&mut self) -> Value {
        self.output.recv_timeout(Duration::from_secs(30)).expect("the server answers within 30 s")
    }

    fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next;
        self.next += 1;
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        loop {
            let message = self.receive();
            if message["id"] == id {
                assert!(message.get("error").is_none(), "{method}: {message}");
                return message["result"].clone();
            }
            self.notifications.push(message);
        }
    }

    fn notify(&mut self, method: &str, params: Value) {
        self.send(json!({"jsonrpc": "2.0", "method": method, "params": params}));
    }

    /// The next diagnostics published for `uri`.
    fn diagnostics(&mut self, uri: &str) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(at) = self
                .notifications
                .iter()
                .position(|n| n["method"] == "textDocument/publishDiagnostics" && n["params"]["uri"] == uri)
            {
                let notification = self.notifications.remove(at);
                return notification["params"]["diagnostics"].as_array().unwrap().clone();
            }
            assert!(Instant::now() < deadline, "no diagnostics for {uri}");
            let message = self.receive();
            self.notifications.push(message);
        }
    }
}

/// One message: `Content-Length` headers, a blank line, the JSON body.
fn read_message(reader: &mut BufReader<ChildStdout>) -> Option<Value> {
    let mut length = 0;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).ok()? == 0 {
            return None;
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some(value) = header.strip_prefix("Content-Length: ") {
            length = value.parse().ok()?;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    serde_json::from_slice(&body).ok()
}

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      contianers:
        - name: web
          image: nginx:1.27
";

#[test]
fn an_editor_gets_diagnostics_hover_completion_and_fixes() {
    let mut client = Client::start();
    let uri = "file:///work/app/web.yaml";
    let init = client.request(
        "initialize",
        json!({"processId": null, "rootUri": null, "capabilities": {"general": {"positionEncodings": ["utf-16"]}}}),
    );
    assert_eq!(init["capabilities"]["textDocumentSync"], 2, "incremental: {init}");
    assert_eq!(init["serverInfo"]["name"], "kubeyard");
    client.notify("initialized", json!({}));

    client.notify(
        "textDocument/didOpen",
        json!({"textDocument": {"uri": uri, "languageId": "yaml", "version": 1, "text": DEPLOYMENT}}),
    );
    let diagnostics = client.diagnostics(uri);
    let unknown =
        diagnostics.iter().find(|d| d["code"] == "schema/unknown-field").unwrap_or_else(|| panic!("{diagnostics:#?}"));
    assert_eq!(unknown["range"], json!({"start": {"line": 11, "character": 6}, "end": {"line": 11, "character": 16}}));
    assert_eq!(unknown["severity"], 1);
    assert!(unknown["message"].as_str().unwrap().starts_with("unknown field \"spec.template.spec.contianers\""));
    assert!(unknown["codeDescription"]["href"].as_str().unwrap().ends_with("/docs/diagnostics.md"));

    // The quick fix the did-you-mean offers.
    let actions = client.request(
        "textDocument/codeAction",
        json!({"textDocument": {"uri": uri}, "range": unknown["range"], "context": {"diagnostics": [unknown]}}),
    );
    assert_eq!(actions[0]["title"], "Change to \"containers\"");
    assert_eq!(actions[0]["kind"], "quickfix");
    assert_eq!(actions[0]["edit"]["changes"][uri][0], json!({"range": unknown["range"], "newText": "containers"}));

    // The user applies it: one incremental edit; the diagnostics are sent again, empty.
    client.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": uri, "version": 2},
               "contentChanges": [{"range": unknown["range"], "text": "containers"}]}),
    );
    let after = client.diagnostics(uri);
    assert!(after.iter().all(|d| d["severity"] != 1), "no errors left: {after:#?}");

    // Hover on `image` in the container.
    let hover = client.request(
        "textDocument/hover",
        json!({"textDocument": {"uri": uri}, "position": {"line": 13, "character": 12}}),
    );
    let shown = hover["contents"]["value"].as_str().unwrap();
    assert!(shown.starts_with("**spec.template.spec.containers[].image** `string`"), "{shown}");
    assert!(shown.contains("Container image name."), "{shown}");

    // Completion on a new line of the container: its fields not written yet.
    client.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": uri, "version": 3},
               "contentChanges": [{"range": {"start": {"line": 14, "character": 0}, "end": {"line": 14, "character": 0}}, "text": "          imagePullPolicy: \n          "}]}),
    );
    let _ = client.diagnostics(uri);
    let items = client.request(
        "textDocument/completion",
        json!({"textDocument": {"uri": uri}, "position": {"line": 15, "character": 10}}),
    );
    let labels: Vec<&str> = items.as_array().unwrap().iter().map(|i| i["label"].as_str().unwrap()).collect();
    assert!(labels.contains(&"ports") && labels.contains(&"resources"), "{labels:?}");
    assert!(!labels.contains(&"image") && !labels.contains(&"imagePullPolicy"), "{labels:?}");
    let ports = items.as_array().unwrap().iter().find(|i| i["label"] == "ports").unwrap();
    assert_eq!(ports["insertText"], "ports: ");
    assert_eq!(ports["detail"], "[]ContainerPort");
    // And values: a kind of the apiVersion written, from what is typed of it.
    let values = client.request(
        "textDocument/completion",
        json!({"textDocument": {"uri": uri}, "position": {"line": 1, "character": 9}}),
    );
    let labels: Vec<&str> = values.as_array().unwrap().iter().map(|i| i["label"].as_str().unwrap()).collect();
    assert_eq!(labels, ["Deployment"]);

    // Set rules across open documents: a Service in another document selecting the pods.
    let service = "file:///work/app/svc.yaml";
    client.notify("textDocument/didOpen", json!({"textDocument": {"uri": service, "languageId": "yaml", "version": 1,
        "text": "apiVersion: v1\nkind: Service\nmetadata:\n  name: db\nspec:\n  selector: {app: db}\n  ports: [{port: 5432}]\n"}}));
    let found = client.diagnostics(service);
    assert!(found.iter().any(|d| d["code"] == "service/no-matching-pods"), "{found:#?}");

    // A custom resource is checked against the CRD open beside it, opened after it.
    let widget = "file:///work/app/widget.yaml";
    client.notify(
        "textDocument/didOpen",
        json!({"textDocument": {"uri": widget, "languageId": "yaml", "version": 1,
        "text": "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\nspec: {size: big}\n"}}),
    );
    let before = client.diagnostics(widget);
    assert!(before.iter().any(|d| d["code"] == "schema/unknown-kind"), "{before:#?}");
    let crd = "file:///work/app/crd.yaml";
    client.notify("textDocument/didOpen", json!({"textDocument": {"uri": crd, "languageId": "yaml", "version": 1,
        "text": "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: widgets.example.com}\nspec:\n  group: example.com\n  names: {kind: Widget, plural: widgets, singular: widget, listKind: WidgetList}\n  scope: Namespaced\n  versions:\n  - name: v1\n    served: true\n    storage: true\n    schema:\n      openAPIV3Schema:\n        type: object\n        properties:\n          spec: {type: object, properties: {size: {type: integer}}}\n"}}));
    let _ = client.diagnostics(crd);
    let after = client.diagnostics(widget);
    let codes: Vec<&str> = after.iter().map(|d| d["code"].as_str().unwrap()).collect();
    assert_eq!(codes, ["schema/type"], "size is an integer now that the CRD says so: {after:#?}");

    client.notify("textDocument/didClose", json!({"textDocument": {"uri": service}}));
    assert!(client.diagnostics(service).is_empty(), "a closed document's diagnostics are cleared");
    let _ = client.request("shutdown", json!(null));
    client.notify("exit", json!(null));
    let status = client.child.wait().unwrap();
    assert!(status.success(), "{status}");
}

#[test]
fn exit_without_shutdown_ends_with_code_1() {
    // The protocol: "exit" after "shutdown" is code 0 (above), without it code 1.
    let mut client = Client::start();
    let _ = client.request("initialize", json!({"processId": null, "rootUri": null, "capabilities": {}}));
    client.notify("initialized", json!({}));
    client.notify("exit", json!(null));
    let status = client.child.wait().unwrap();
    assert_eq!(status.code(), Some(1), "{status}");
}
