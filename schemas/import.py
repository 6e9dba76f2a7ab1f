#!/usr/bin/env python3
"""Re-import the upstream Kubernetes JSON Schemas into schemas/.

The schemas come from the PyPI wheel `kubernetes-validate`, which carries the
openapi2jsonschema output (`v1.NN.0-local/_definitions.json`) for every minor
version it supports. We keep one file per minor version:

    schemas/v1.NN/_definitions.json

holding every definition of that version with its `x-kubernetes-*` metadata
(group-version-kind, list types, patch merge keys) and without the prose
`description` fields, one definition per line so that a re-import diffs well.
The non-strict variant is stored: kubeyard adds `additionalProperties: false`
itself in strict mode, which reproduces upstream's `-strict` files exactly.

Usage:
    python3 schemas/import.py                   # newest wheel, every version in it
    python3 schemas/import.py --wheel-version 1.37.0 --versions 1.30 1.37
"""
import argparse
import io
import json
import pathlib
import re
import subprocess
import sys
import tempfile
import zipfile

HERE = pathlib.Path(__file__).resolve().parent


def fetch_wheel(version: str | None) -> pathlib.Path:
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="kubeyard-schemas-"))
    spec = "kubernetes-validate" + (f"=={version}" if version else "")
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(tmp), spec],
        check=True,
    )
    wheels = sorted(tmp.glob("kubernetes_validate-*.whl"))
    if not wheels:
        sys.exit(f"no kubernetes-validate wheel downloaded into {tmp}")
    return wheels[-1]


def strip_descriptions(node):
    if isinstance(node, dict):
        # Prose only: a field named `description` (PriorityClass's, a CRD schema's) is a
        # property whose value is a schema, and stays.
        if isinstance(node.get("description"), str):
            node.pop("description")
        for value in node.values():
            strip_descriptions(value)
    elif isinstance(node, list):
        for value in node:
            strip_descriptions(value)


def take_descriptions(definitions) -> dict:
    """Each definition's and each of its properties' prose, removed from the schemas.

    Upstream puts prose only there (checked for 1.25 to 1.37); prose anywhere deeper is
    not taken, and strip_descriptions then drops it: check for it when a new version
    comes.
    """
    taken = {}
    for name, schema in definitions.items():
        texts = {}
        if isinstance(schema.get("description"), str):
            texts[""] = schema.pop("description")
        for field, property_schema in (schema.get("properties") or {}).items():
            if isinstance(property_schema, dict) and isinstance(property_schema.get("description"), str):
                texts[field] = property_schema.pop("description")
        if texts:
            taken[name] = texts
    return taken


def write_descriptions(by_version: dict) -> pathlib.Path:
    """One file for every version: each text once (most do not change between versions),
    and for each definition and field the versions from which a text applies."""
    texts = sorted({text for taken in by_version.values() for fields in taken.values() for text in fields.values()})
    index = {text: i for i, text in enumerate(texts)}
    history: dict = {}
    for version in sorted(by_version, key=lambda v: int(v.split(".")[1])):
        minor = int(version.split(".")[1])
        for name, fields in by_version[version].items():
            for field, text in fields.items():
                changes = history.setdefault(name, {}).setdefault(field, [])
                if not changes or changes[-1][1] != index[text]:
                    changes.append([minor, index[text]])
    out = HERE / "descriptions.json"
    text_lines = ",\n".join(json.dumps(text) for text in texts)
    definition_lines = ",\n".join(
        json.dumps(name) + ":" + json.dumps(fields, separators=(",", ":"), sort_keys=True)
        for name, fields in sorted(history.items())
    )
    out.write_text('{"texts":[\n' + text_lines + '\n],\n"definitions":{\n' + definition_lines + "\n}}\n", encoding="utf-8")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wheel", help="a kubernetes_validate wheel already on disk")
    parser.add_argument("--wheel-version", help="the kubernetes-validate version to download")
    parser.add_argument("--versions", nargs="*", help="minor versions to import, e.g. 1.35 1.37 (default: all)")
    args = parser.parse_args()

    wheel = pathlib.Path(args.wheel) if args.wheel else fetch_wheel(args.wheel_version)
    pattern = re.compile(r"kubernetes_validate/kubernetes-json-schema/v(1\.\d+)\.0-local/_definitions\.json$")
    with zipfile.ZipFile(wheel) as archive:
        found = {}
        for name in archive.namelist():
            match = pattern.search(name)
            if match:
                found[match.group(1)] = name
        descriptions = {}
        wanted = args.versions or sorted(found, key=lambda v: int(v.split(".")[1]))
        for version in wanted:
            if version not in found:
                sys.exit(f"{wheel.name} has no schemas for {version}; it has {', '.join(sorted(found))}")
            document = json.load(io.TextIOWrapper(archive.open(found[version]), encoding="utf-8"))
            definitions = document["$defs"]
            descriptions[version] = take_descriptions(definitions)
            strip_descriptions(definitions)
            lines = [
                json.dumps(name) + ":" + json.dumps(schema, separators=(",", ":"), sort_keys=True)
                for name, schema in sorted(definitions.items())
            ]
            out = HERE / f"v{version}" / "_definitions.json"
            out.parent.mkdir(exist_ok=True)
            out.write_text('{"$defs":{\n' + ",\n".join(lines) + "\n}}\n", encoding="utf-8")
            print(f"wrote {out.relative_to(HERE.parent)}: {len(definitions)} definitions")
    if args.versions:
        print("descriptions.json not rewritten: it covers every version, so import them all to refresh it")
    else:
        out = write_descriptions(descriptions)
        print(f"wrote {out.relative_to(HERE.parent)}")
    (HERE / "SOURCE").write_text(f"{wheel.name}\n", encoding="utf-8")


if __name__ == "__main__":
    main()
