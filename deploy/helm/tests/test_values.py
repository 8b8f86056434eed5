"""values.yaml against values.schema.json, through Helm's own schema
validation: the same keys on both sides, every key of values.yaml
documented, every value typed and constrained (a wrong type or an
out-of-bounds value at each key is refused, naming the key), and bad
values refused with a clear message by an install-time render."""

from __future__ import annotations

import unittest

import helm_python as helm

import chart as c

BAD_STRING = "!not a valid value!"


class Values(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.schema = c.chart().schema
        cls.values = c.load_yaml(c.CHART_DIR / "values.yaml")
        cls.schema_leaves = c.schema_paths(cls.schema)
        cls.value_leaves = c.value_paths(cls.values, cls.schema)

    def refused(self, override: dict) -> str:
        """Helm's schema validation refuses `override`; returns its message."""
        with self.assertRaises(helm.HelmValuesError) as caught:
            c.chart().validate_schema(override)
        return str(caught.exception)

    def test_helm_reads_the_same_defaults(self) -> None:
        self.assertEqual(c.chart().values, self.values)
        c.chart().validate_schema({})

    def test_same_keys_in_values_and_schema(self) -> None:
        in_values = set(self.value_leaves)
        in_schema = set(self.schema_leaves)
        self.assertEqual(in_values - in_schema, set(), "keys of values.yaml missing in the schema")
        self.assertEqual(in_schema - in_values, set(), "keys of the schema missing in values.yaml")
        self.assertGreater(len(in_values), 80)

    def test_every_object_is_closed(self) -> None:
        # additionalProperties false wherever keys are fixed: a misspelt key
        # is an error, not silently ignored. Free-form maps say so by
        # giving additionalProperties a schema.
        def walk(node: dict, path: str) -> None:
            node = c.resolve(self.schema, node)
            if node.get("type") == "object":
                self.assertIn("additionalProperties", node, path)
                if "properties" in node:
                    self.assertIs(node["additionalProperties"], False, path)
                for key, child in node.get("properties", {}).items():
                    walk(child, f"{path}.{key}")
            if node.get("type") == "array":
                walk(node["items"], f"{path}[]")

        walk(self.schema, "")

    def test_every_leaf_typed_and_constrained(self) -> None:
        for path, node in self.schema_leaves.items():
            with self.subTest(key=".".join(path)):
                self.assertIn(node.get("type"), {"string", "integer", "boolean", "array", "object"})
                if node["type"] == "string":
                    self.assertTrue("enum" in node or "pattern" in node, "an unbounded string")
                if node["type"] == "integer":
                    self.assertTrue("enum" in node or "minimum" in node, "an unbounded integer")
                self.assertTrue(node.get("description"), "no description")

    def test_a_wrong_type_at_every_key_is_refused(self) -> None:
        wrong = {"string": 12345, "integer": "12", "boolean": "yes", "array": "x", "object": "x"}
        for path, node in self.schema_leaves.items():
            key = "/" + "/".join(path)
            with self.subTest(key=key):
                message = self.refused(c.set_path(self.values, path, wrong[node["type"]]))
                self.assertIn(f"'{key}'", message)

    def test_an_out_of_bounds_value_at_every_key_is_refused(self) -> None:
        for path, node in self.schema_leaves.items():
            key = "/" + "/".join(path)
            if node["type"] == "string":
                bad = BAD_STRING
            elif node["type"] == "integer":
                bad = node["minimum"] - 1 if "minimum" in node else 2
            else:
                continue
            with self.subTest(key=key):
                message = self.refused(c.set_path(self.values, path, bad))
                self.assertIn(f"'{key}'", message)

    def test_every_key_documented(self) -> None:
        text = (c.CHART_DIR / "values.yaml").read_text()
        self.assertEqual(c.documented_keys(text), [], "keys with no comment (line, key)")

    def test_bad_values_refused_with_a_clear_message(self) -> None:
        cases = [
            ({"apis": {"rest": {"service": {"nodePorts": {"http": "30011"}}}}},
             "at '/apis/rest/service/nodePorts/http': got string, want integer"),
            ({"apis": {"rest": {"service": {"type": "LoadBalancer"}}}},
             "at '/apis/rest/service/type': value must be one of 'ClusterIP', 'NodePort'"),
            ({"apis": {"rest": {"service": {"nodePorts": {"http": 8081}}}}},
             "at '/apis/rest/service/nodePorts/http': minimum"),
            ({"io_engine": {"port": 70000}}, "at '/io_engine/port': maximum"),
            ({"image": {"pullPolicy": "Sometimes"}},
             "at '/image/pullPolicy': value must be one of 'IfNotPresent', 'Always', 'Never'"),
            ({"etcd": {"replicaCount": 2}}, "at '/etcd/replicaCount': value must be one of 1, 3, 5"),
            ({"io_engine": {"hugepages": "2Gi"}}, "at '/io_engine': additional properties 'hugepages' not allowed"),
            ({"storageClass": {"classes": [{"name": "x", "parameters": {"repl": "1", "protocol": "iscsi"}}]}},
             "at '/storageClass/classes/0/parameters/protocol': value must be 'nvmf'"),
            ({"storageClass": {"classes": [{"name": "x", "parameters": {"repl": "1", "protocol": "nvmf", "fstype": "xfs"}}]}},
             "additional properties 'fstype' not allowed"),
            ({"agents": {"core": {"capacity": {"thin": {"poolCommitment": 250}}}}},
             "at '/agents/core/capacity/thin/poolCommitment': got number, want string"),
        ]
        for override, expected in cases:
            with self.subTest(expected=expected):
                self.assertIn(expected, self.refused(override))
                # An install renders nothing with it either.
                with self.assertRaises(helm.HelmValuesError):
                    c.render(override)

    def test_good_values_accepted(self) -> None:
        for override in [
            {"apis": {"rest": {"service": {"type": "NodePort", "nodePorts": {"http": 32000}}}}},
            {"io_engine": {"logLevel": "info,io_engine::nexus=debug"}},
            {"etcd": {"enabled": False, "externalUrl": "10.0.0.5:2379"}},
            {"etcd": {"persistence": {"enabled": False, "hostPath": "/var/local/mayastor/etcd"}}},
            {"csi": {"node": {"nvme": {"ctrl_loss_tmo": "1980"}}}},
            c.load_yaml(c.TESTS_DIR / "custom-values.yaml"),
        ]:
            with self.subTest(override=override):
                c.chart().validate_schema(override)
                c.render(override)


if __name__ == "__main__":
    unittest.main()
