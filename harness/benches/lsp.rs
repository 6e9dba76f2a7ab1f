//! The language server's time per keystroke: a 1,000-line document of 25 Deployments is
//! opened, then typed into one character at a time; each edit re-lints the document and
//! runs the set rules, as `kubeyard lsp` does on `didChange`. Issue 24's target: under
//! 50 ms per keystroke.
//!
//! Run: `cargo bench -p kubeyard-harness --bench lsp` (add `-- --lines N` for another size).

use kubeyard_harness::lsp::Server;
use kubeyard_harness::lsp::analysis::Encoding;
use lsp_types::{Position, Range, TextDocumentContentChangeEvent};
use std::time::{Duration, Instant};

fn deployment(i: usize) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web-{i}
  labels:
    app: web-{i}
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web-{i}
  template:
    metadata:
      labels:
        app: web-{i}
    spec:
      containers:
        - name: web
          image: nginx:1.27
          ports:
            - name: http
              containerPort: 80
          readinessProbe:
            httpGet:
              path: /healthz
              port: http
          resources:
            requests:
              cpu: 100m
              memory: 64Mi
            limits:
              cpu: 500m
              memory: 128Mi
          env:
            - name: MODE
              value: production
            - name: LEVEL
              value: info
---
"
    )
}

fn main() {
    let mut lines = 1000usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--lines" {
            lines = args.next().and_then(|v| v.parse().ok()).expect("--lines N");
        }
    }
    let mut text = String::new();
    let mut count = 0;
    while text.lines().count() < lines {
        text.push_str(&deployment(count));
        count += 1;
    }
    let total = text.lines().count();
    let mut server = Server::new(None, Encoding::Utf16).expect("the server");
    let uri = "file:///bench/app.yaml";
    let started = Instant::now();
    let published = server.open(uri, 1, text.clone());
    println!(
        "open: {total} lines, {count} Deployments, {} diagnostics in {:.1?}",
        published.first().map_or(0, |p| p.2.len()),
        started.elapsed()
    );

    // Type "-v2" after the last Deployment's image, one character at a time, then delete it.
    let line =
        text.lines().enumerate().filter(|(_, l)| l.contains("image: nginx:1.27")).last().expect("an image").0 as u32;
    let column = "          image: nginx:1.27".len() as u32;
    let mut times: Vec<Duration> = Vec::new();
    let mut version = 1;
    for round in 0..20 {
        for (i, c) in "-v2".chars().enumerate() {
            let at = Position { line, character: column + i as u32 };
            version += 1;
            let edit = TextDocumentContentChangeEvent {
                range: Some(Range { start: at, end: at }),
                range_length: None,
                text: c.to_string(),
            };
            let started = Instant::now();
            let _ = server.change(uri, version, vec![edit]);
            times.push(started.elapsed());
        }
        let start = Position { line, character: column };
        let end = Position { line, character: column + 3 };
        version += 1;
        let edit = TextDocumentContentChangeEvent {
            range: Some(Range { start, end }),
            range_length: None,
            text: String::new(),
        };
        let started = Instant::now();
        let _ = server.change(uri, version, vec![edit]);
        times.push(started.elapsed());
        if round == 0 {
            times.clear(); // the first round warms the caches
        }
    }
    times.sort();
    let at = |q: f64| times[((times.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "keystroke on {total} lines: median {:.1?}, p95 {:.1?}, max {:.1?} over {} edits (target: under 50 ms)",
        at(0.5),
        at(0.95),
        times[times.len() - 1],
        times.len()
    );
}
