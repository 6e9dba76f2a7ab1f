//! Embeds every Kubernetes version under `schemas/` into the compiler, so the binary
//! validates offline and from a `FROM scratch` image. Adding a version is a re-import
//! (`schemas/import.py`), with no code change.
// A build script reads the schemas it embeds: the no-I/O rule is for the library.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let schemas = Path::new(&manifest).join("../schemas");
    println!("cargo::rerun-if-changed={}", schemas.display());
    let mut versions: Vec<(u32, std::path::PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(&schemas).expect("schemas/ exists beside compiler/") {
        let entry = entry.expect("schemas/ is readable");
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(minor) = name.strip_prefix("v1.").and_then(|m| m.parse::<u32>().ok()) else {
            continue;
        };
        let definitions = entry.path().join("_definitions.json");
        if definitions.is_file() {
            println!("cargo::rerun-if-changed={}", definitions.display());
            versions.push((minor, definitions.canonicalize().expect("schema path resolves")));
        }
    }
    assert!(!versions.is_empty(), "no schemas/v1.NN/_definitions.json found: run schemas/import.py");
    versions.sort();
    let mut out = String::from("/// `(minor, definitions JSON)` for each shipped Kubernetes 1.x, oldest first.\n");
    out.push_str("pub static VERSIONS: &[(u32, &str)] = &[\n");
    for (minor, path) in &versions {
        writeln!(out, "    ({minor}, include_str!({:?})),", path.display().to_string()).unwrap();
    }
    out.push_str("];\n");
    let descriptions = schemas.join("descriptions.json");
    assert!(descriptions.is_file(), "schemas/descriptions.json not found: run schemas/import.py");
    println!("cargo::rerun-if-changed={}", descriptions.display());
    out.push_str("/// Every version's prose for definitions and fields (see `schemas/README.md`).\n");
    writeln!(
        out,
        "pub static DESCRIPTIONS: &str = include_str!({:?});",
        descriptions.canonicalize().expect("descriptions path resolves").display().to_string()
    )
    .unwrap();
    let dest = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("embedded_schemas.rs");
    std::fs::write(dest, out).expect("OUT_DIR is writable");
}
