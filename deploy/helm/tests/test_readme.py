"""The README's Kubernetes sections are real: the two install commands use
options build.sh and the chart have, every key of the table of values
users tune is a key of values.yaml, the DiskPool examples are DiskPools the
chart's CRD describes (test_api_server.py also has the API server accept
them with a server-side dry run), the event reasons listed are the ones the
operator publishes, and the operator's flag table is its clap definition."""

from __future__ import annotations

import re
import unittest
from typing import Any

import helm_python as helm

import chart as c

README = c.REPO / "README.md"
BUILD_SH = c.REPO / "deploy" / "images" / "build.sh"
CRD = c.CHART_DIR / "crds" / "diskpool.yaml"


def section(title: str) -> str:
    """The README text under `## title`, up to the next `## `."""
    text = README.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def code_blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, re.S)


def diskpool_examples() -> list[dict[str, Any]]:
    """The DiskPool documents of the README's DiskPool section."""
    docs = []
    for block in code_blocks(section("DiskPools and the operator"), "yaml"):
        for doc in re.split(r"^---$", block, flags=re.M):
            if doc.strip():
                docs.append(helm.values_from_yaml(doc))
    return docs


class InstallCommands(unittest.TestCase):
    def test_the_two_commands(self) -> None:
        blocks = code_blocks(section("Install with Helm"), "sh")
        commands = [line for line in blocks[0].splitlines() if line.strip()]
        self.assertEqual(len(commands), 2, commands)
        build, install = commands
        self.assertTrue(build.startswith("deploy/images/build.sh "), build)
        usage = BUILD_SH.read_text()
        for option in re.findall(r"(--[a-z-]+)", build):
            self.assertIn(f"#   {option}", usage, f"build.sh has no {option}")
        self.assertTrue(install.startswith("helm install mayastor deploy/helm/mayastor "), install)
        self.assertIn("-n mayastor", install)
        values = c.load_yaml(c.CHART_DIR / "values.yaml")
        for key in re.findall(r"--set ([\w.]+)=", install):
            self.assertIsNotNone(lookup(values, key), key)

    def test_the_single_node_values_file_exists(self) -> None:
        text = section("Install with Helm")
        for path in re.findall(r"-f (deploy/\S+\.yaml)", text):
            self.assertTrue((c.REPO / path).is_file(), path)


def lookup(values: dict[str, Any], dotted: str) -> Any:
    node: Any = values
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


class ValuesTable(unittest.TestCase):
    def test_every_key_users_tune_is_a_value(self) -> None:
        values = c.load_yaml(c.CHART_DIR / "values.yaml")
        rows = [line for line in section("Install with Helm").splitlines() if line.startswith("| `")]
        keys = [k for row in rows for k in re.findall(r"`([a-z_A-Z.*]+)`", row.split("|")[1])]
        self.assertGreater(len(keys), 20)
        for key in keys:
            with self.subTest(key=key):
                found = lookup(values, key.removesuffix(".*"))
                self.assertIsNotNone(found, f"{key} is not in values.yaml")
                if key.endswith(".*"):
                    self.assertIsInstance(found, dict, key)
        # The families the users tune, as upstream names them.
        for family in ("io_engine.", "csi.node.", "etcd.", "agents.", "base.metrics.enabled"):
            self.assertTrue(any(k.startswith(family) for k in keys), family)


class DiskPoolExamples(unittest.TestCase):
    def test_examples_match_the_crd(self) -> None:
        crd = c.load_yaml(CRD)
        version = crd["spec"]["versions"][0]
        spec_schema = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
        examples = diskpool_examples()
        self.assertGreaterEqual(len(examples), 2)
        for dp in examples:
            with self.subTest(name=dp["metadata"]["name"]):
                self.assertEqual(dp["apiVersion"], f"{crd['spec']['group']}/{version['name']}")
                self.assertEqual(dp["kind"], crd["spec"]["names"]["kind"])
                self.assertEqual(dp["metadata"]["namespace"], c.NAMESPACE)
                spec = dp["spec"]
                self.assertLessEqual(set(spec), set(spec_schema["properties"]))
                self.assertLessEqual(set(spec_schema["required"]), set(spec))
                self.assertEqual(len(spec["disks"]), 1)
                if "topology" in spec:
                    self.assertEqual(set(spec["topology"]), {"labelled"})
        # A file pool lives under a default pool host path of the chart.
        host_paths = c.load_yaml(c.CHART_DIR / "values.yaml")["io_engine"]["poolHostPaths"]
        files = [d["spec"]["disks"][0] for d in examples if d["spec"]["disks"][0].startswith("aio:///")]
        self.assertTrue(files)
        for uri in files:
            path = uri.removeprefix("aio://").split("?")[0]
            self.assertTrue(any(path.startswith(p.rstrip("/") + "/") for p in host_paths), uri)

    def test_the_status_table_has_the_crd_columns(self) -> None:
        crd = c.load_yaml(CRD)
        columns = [col["name"].upper() for col in crd["spec"]["versions"][0]["additionalPrinterColumns"]]
        text = section("DiskPools and the operator")
        header = next(line for line in text.splitlines() if line.startswith("NAME "))
        self.assertEqual(header.split(), ["NAME", *columns])


class OperatorEvents(unittest.TestCase):
    def test_the_event_reasons_are_the_operators(self) -> None:
        source = (c.REPO / "agents" / "operator-diskpool" / "src" / "reconcile.rs").read_text()
        crd = (c.REPO / "agents" / "operator-diskpool" / "src" / "crd.rs").read_text()
        published = set(re.findall(r'publish\(\s*ctx,\s*dp,\s*[\w:]+,\s*"(\w+)"', source))
        published |= set(re.findall(r'\(\s*"([A-Z]\w+)",\s*format!', source))
        # Each state change is an event named after the new state.
        self.assertIn('&format!("{:?}", status.cr_state)', source)
        states = re.search(r"pub enum CrState \{(.*?)\}", crd, re.S).group(1)
        published |= set(re.findall(r"^\s*(\w+),", states, re.M))
        text = section("DiskPools and the operator")
        start = text.index("Every transition and failure is an event")
        documented = set(re.findall(r"`([A-Z][a-zA-Z]+)`", text[start : text.index("A failed create", start)]))
        self.assertGreaterEqual(len(published), 10)
        self.assertEqual(documented, published)


class OperatorFlags(unittest.TestCase):
    def test_the_flag_table_is_the_clap_definition(self) -> None:
        text = section("DiskPools and the operator")
        rows = [line for line in text.splitlines() if line.startswith("| `-")]
        documented = {f for row in rows for f in re.findall(r"`--([a-z-]+)`", row.split("|")[1])}
        known = c.clap_flags("operator-diskpool")
        self.assertIsNotNone(known)
        # The alias (--rest-endpoint) is documented beside its flag.
        self.assertEqual(documented - {"rest-endpoint"}, known)


if __name__ == "__main__":
    unittest.main()
