"""Helpers of the chart tests: load and render deploy/helm/mayastor with real
Helm (helm-python-sdk binds Helm's own Go library), split the manifests into
objects, walk values and values.schema.json, and read the flags a binary
accepts from its clap definition in the source tree."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

import helm_python as helm

REPO = Path(__file__).resolve().parents[3]
CHART_DIR = REPO / "deploy" / "helm" / "mayastor"
TESTS_DIR = Path(__file__).resolve().parent
RELEASE = "mayastor"
NAMESPACE = "mayastor"

# Where each of our binaries declares its command line (clap derive). A
# component whose file is not in the tree yet (the CSI plugins are being
# written) is reported as skipped by the flag test.
CLAP_SOURCES = {
    "io-engine": ["engine/io-engine/src/daemon.rs"],
    # The store flags are flattened in from the store crate.
    "agent-core": ["agents/core/src/config.rs", "agents/store/src/args.rs"],
    "api-rest": ["agents/rest/src/main.rs"],
    "operator-diskpool": ["agents/operator-diskpool/src/main.rs"],
    "csi-controller": ["csi/src/controller.rs", "csi/src/controller/args.rs"],
    "csi-node": ["csi/src/node/args.rs", "csi/src/node.rs"],
}

# Our components, as image names; the CSI sidecars come from elsewhere.
OUR_COMPONENTS = {
    "io-engine",
    "metrics-exporter",
    "agent-core",
    "api-rest",
    "operator-diskpool",
    "csi-controller",
    "csi-node",
    "agent-ha-cluster",
    "agent-ha-node",
    "etcd",
}


@lru_cache(maxsize=1)
def chart() -> helm.Chart:
    return helm.Chart.load(CHART_DIR)


def load_yaml(path: Path) -> dict[str, Any]:
    """A YAML document as a dict, parsed by Helm's own YAML reader."""
    return helm.values_from_yaml(path.read_text())


def render(values: dict[str, Any] | None = None) -> dict[tuple[str, str], dict[str, Any]]:
    """Renders the chart as an install would and returns its objects by
    (kind, name). Two objects of one kind and name fail the test."""
    objects: dict[tuple[str, str], dict[str, Any]] = {}
    for template, text in manifests(values).items():
        for doc in split_documents(text):
            obj = helm.values_from_yaml(doc)
            if not obj:
                continue
            key = (obj["kind"], obj["metadata"]["name"])
            if key in objects:
                raise AssertionError(f"{key} rendered twice (again in {template})")
            objects[key] = obj
    return objects


def split_documents(text: str) -> Iterator[str]:
    """The YAML documents of a multi-document stream."""
    current: list[str] = []
    for line in text.splitlines():
        if line.rstrip() == "---":
            yield "\n".join(current)
            current = []
        else:
            current.append(line)
    yield "\n".join(current)


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    return obj["spec"]["template"]["spec"]


def containers(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in pod_spec(obj)["containers"]}


def workloads(objects: dict) -> dict[tuple[str, str], dict[str, Any]]:
    kinds = {"Deployment", "DaemonSet", "StatefulSet"}
    return {k: v for k, v in objects.items() if k[0] in kinds}


# --- values and schema -------------------------------------------------------


def resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """Follows a local $ref (#/definitions/x), keeping the referring node's other keys."""
    while "$ref" in node:
        name = node["$ref"].removeprefix("#/definitions/")
        target = schema["definitions"][name]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def is_branch(node: dict[str, Any]) -> bool:
    """An object with named properties (walked into), as opposed to a leaf."""
    return node.get("type") == "object" and "properties" in node


def schema_paths(schema: dict[str, Any]) -> dict[tuple[str, ...], dict[str, Any]]:
    """Every leaf of the schema by its key path, resolved."""
    out: dict[tuple[str, ...], dict[str, Any]] = {}

    def walk(node: dict[str, Any], path: tuple[str, ...]) -> None:
        node = resolve(schema, node)
        if is_branch(node):
            for key, child in node["properties"].items():
                walk(child, path + (key,))
        else:
            out[path] = node

    walk(schema, ())
    return out


def value_paths(values: dict[str, Any], schema: dict[str, Any]) -> dict[tuple[str, ...], Any]:
    """Every leaf of a values tree. A mapping is a leaf where the schema
    makes it one (free-form maps such as nodeSelector), or where the schema
    has no such key (then the key comparison reports it)."""
    out: dict[tuple[str, ...], Any] = {}

    def walk(value: Any, node: dict[str, Any] | None, path: tuple[str, ...]) -> None:
        node = resolve(schema, node) if node is not None else None
        if isinstance(value, dict) and value and (node is None or is_branch(node)):
            for key, child in value.items():
                child_node = node["properties"].get(key) if node is not None else None
                walk(child, child_node, path + (key,))
        else:
            out[path] = value

    walk(values, schema, ())
    return out


def set_path(values: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    """A values override holding only `value` at `path`."""
    out: dict[str, Any] = {}
    node = out
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    return out


def documented_keys(values_yaml: str) -> list[tuple[int, str]]:
    """Keys of values.yaml with no comment of their own: neither a comment
    line right above nor a trailing comment. Keys inside list items are
    documented by the list's comment."""
    missing = []
    lines = values_yaml.splitlines()
    list_indent: int | None = None
    for number, line in enumerate(lines, 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        indent = len(line) - len(line.lstrip())
        if list_indent is not None and indent <= list_indent and not stripped.startswith("- "):
            list_indent = None
        if stripped.startswith("- "):
            if list_indent is None:
                list_indent = indent
            continue
        if list_indent is not None:
            continue
        match = re.match(r"^([A-Za-z0-9_.-]+|\"[^\"]+\"):", stripped)
        if not match:
            continue
        previous = lines[number - 2].strip() if number >= 2 else ""
        if not previous.startswith("#") and "#" not in stripped:
            missing.append((number, match.group(1)))
    return missing


# --- flags of our binaries ---------------------------------------------------


def clap_flags(component: str) -> set[str] | None:
    """The long flags a binary accepts, read from its clap derive structs
    (`#[arg(long ...)]` fields) in every source of it that is in the tree;
    None when none is."""
    sources = [REPO / relative for relative in CLAP_SOURCES[component]]
    found = [path for path in sources if path.exists()]
    if not found:
        return None
    return set().union(*(parse_clap_flags(path.read_text()) for path in found))


def parse_clap_flags(source: str) -> set[str]:
    flags: set[str] = set()
    for attr in re.finditer(r"#\[arg\(", source):
        start = attr.end()
        depth = 1
        pos = start
        while depth and pos < len(source):
            depth += {"(": 1, ")": -1}.get(source[pos], 0)
            pos += 1
        body = source[start : pos - 1]
        rest = source[pos:]
        field = re.match(r"\]\s*(?:(?:///[^\n]*|#\[[^\n]*\])\s*)*(?:pub(?:\([a-z]+\))?\s+)?(\w+)\s*:", rest)
        if not field or not re.search(r"\blong\b", body):
            continue
        named = re.search(r'\blong\s*=\s*"([^"]+)"', body)
        flags.add(named.group(1) if named else field.group(1).replace("_", "-"))
    return flags


def flags_used(args: list[str]) -> set[str]:
    """`--name=value` / `--name` arguments as flag names."""
    return {a[2:].split("=", 1)[0] for a in args if a.startswith("--")}


def render_stream(values: dict[str, Any] | None = None) -> str:
    """The rendered manifests as one YAML stream, as `helm template` prints them."""
    rendered = manifests(values)
    return "\n---\n".join(rendered[name] for name in sorted(rendered))


def manifests(values: dict[str, Any] | None = None) -> dict[str, str]:
    """The rendered templates by path, as an install makes them; NOTES.txt
    (what Helm prints after an install) is not a manifest."""
    rendered = chart().render(values or {}, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return {k: v for k, v in rendered.items() if not k.endswith("/NOTES.txt")}


def notes(values: dict[str, Any] | None = None, namespace: str = NAMESPACE) -> str:
    """What Helm prints after an install."""
    rendered = chart().render(values or {}, name=RELEASE, namespace=namespace, is_install=True)
    return rendered[f"{RELEASE}/templates/NOTES.txt"]
