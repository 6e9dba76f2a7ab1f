//! The graph as people read it: text (the apply order with what each object needs),
//! Graphviz DOT and Mermaid. Every format lists nodes in apply order, so outputs diff well.

use super::Graph;
use std::fmt::Write;

pub fn text(graph: &Graph) -> String {
    let mut out = String::new();
    let width = graph.order.len().to_string().len();
    for (at, &i) in graph.order.iter().enumerate() {
        let _ = writeln!(out, "{:>width$}. {}  (wave {})", at + 1, graph.ids[i], graph.waves[i]);
        for (j, reason) in graph.needs(i) {
            let _ = writeln!(out, "{:width$}    after {} ({})", "", graph.ids[j], reason.why());
        }
    }
    for cycle in &graph.cycles {
        let names: Vec<String> = cycle.iter().map(|i| graph.ids[*i].to_string()).collect();
        let _ = writeln!(out, "cycle: {} → {}", names.join(" → "), names[0]);
    }
    let _ = writeln!(
        out,
        "{} object{}, {} dependenc{}, {} wave{}{}",
        graph.ids.len(),
        if graph.ids.len() == 1 { "" } else { "s" },
        graph.edge_count(),
        if graph.edge_count() == 1 { "y" } else { "ies" },
        waves(graph),
        if waves(graph) == 1 { "" } else { "s" },
        match graph.cycles.len() {
            0 => String::new(),
            n => format!(", {n} cycle{}", if n == 1 { "" } else { "s" }),
        }
    );
    out
}

fn waves(graph: &Graph) -> usize {
    graph.waves.iter().max().map_or(0, |w| w + 1)
}

pub fn dot(graph: &Graph) -> String {
    let mut out = String::from("digraph kubeyard {\n  rankdir=LR;\n  node [shape=box, fontname=\"Helvetica\"];\n");
    for &i in &graph.order {
        let _ = writeln!(out, "  n{i} [label={}];", quote(&graph.ids[i].to_string()));
    }
    for (from, to, reason) in graph.edges() {
        let _ = writeln!(out, "  n{from} -> n{to} [label={}];", quote(reason.as_str()));
    }
    out.push_str("}\n");
    out
}

pub fn mermaid(graph: &Graph) -> String {
    let mut out = String::from("flowchart LR\n");
    for &i in &graph.order {
        // Mermaid labels are quoted; `"` is written as its entity.
        let _ = writeln!(out, "  n{i}[\"{}\"]", graph.ids[i].to_string().replace('"', "#quot;"));
    }
    for (from, to, reason) in graph.edges() {
        let _ = writeln!(out, "  n{from} -->|{}| n{to}", reason.as_str());
    }
    out
}

/// A DOT string literal.
fn quote(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}
