#!/usr/bin/env python3
"""Writes the Kubernetes API's protobuf descriptors as one FileDescriptorSet.

The API server reads protobuf request bodies (kubectl's typed commands send them) by
reflection over these descriptors. They are the compiled `generated.proto` files of
k8s.io/api, k8s.io/apimachinery and k8s.io/apiextensions-apiserver (Apache-2.0), taken
from the byte strings the crate k8s-rs-pb (Apache-2.0) embeds for one Kubernetes version:
its own reflection cannot be used (every file of it names itself as its dependency).

    cargo fetch   # with k8s-rs-pb in Cargo.lock, or: cargo download k8s-rs-pb
    python3 scripts/k8s-descriptors.py ~/.cargo/registry/src/*/k8s-rs-pb-0.5.0/src/v1_33 \
        harness/src/apiserver/protobuf/k8s-api.fds
"""

import pathlib
import re
import sys

LITERAL = re.compile(rb'static file_descriptor_proto_data: &\'static \[u8\] = b"(.*?)";\n', re.S)
SIMPLE = {ord("n"): 10, ord("t"): 9, ord("r"): 13, ord("0"): 0, ord("\\"): 92, ord('"'): 34, ord("'"): 39}


def unescape(text: bytes) -> bytes:
    """A Rust byte string literal's bytes."""
    out = bytearray()
    i = 0
    while i < len(text):
        c = text[i]
        if c != ord("\\"):
            out.append(c)
            i += 1
            continue
        e = text[i + 1]
        if e == ord("\n"):  # a line continuation: the newline and the next line's indent go
            i += 2
            while i < len(text) and text[i] in b" \t\n\r":
                i += 1
        elif e == ord("x"):
            out.append(int(text[i + 2 : i + 4], 16))
            i += 4
        elif e in SIMPLE:
            out.append(SIMPLE[e])
            i += 2
        else:
            raise ValueError(f"unknown escape \\{chr(e)}")
    return bytes(out)


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def main(source: str, output: str) -> None:
    files = []
    for path in sorted(pathlib.Path(source).rglob("mod.rs")):
        match = LITERAL.search(path.read_bytes())
        if match:
            files.append(unescape(match.group(1)))
    # FileDescriptorSet { repeated FileDescriptorProto file = 1; }
    data = b"".join(b"\x0a" + varint(len(f)) + f for f in files)
    pathlib.Path(output).write_bytes(data)
    print(f"{len(files)} files, {len(data)} bytes -> {output}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
