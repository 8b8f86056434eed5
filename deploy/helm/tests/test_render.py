"""The chart rendered by real Helm, with the default values and with
custom-values.yaml: the objects a cluster would get (kinds, names, images,
the io-engine's host access, the Services, RBAC, the CRD, the classes), the
flags of every container checked against the binaries' own clap
definitions, and Helm's linter."""

from __future__ import annotations

import re
import unittest

import helm_python as helm

import chart as c

DEFAULT_TAG = c.chart().metadata["appVersion"]
SIDECARS = {"csi-provisioner", "csi-attacher", "csi-resizer", "csi-driver-registrar"}
# StorageClass parameters the CSI controller understands (DESIGN.md section 2).
SC_PARAMETERS = {
    "repl", "protocol", "ioTimeout", "fsType", "thin", "stsAffinityGroup", "local",
    "nvmeCtrlLossTmo", "nvmeKeepAliveTmo", "nvmeNrIoQueues",
}


def arg_value(container: dict, flag: str) -> str | None:
    for arg in container.get("args", []):
        if arg.startswith(f"--{flag}="):
            return arg.split("=", 1)[1]
    return None


class Lint(unittest.TestCase):
    def assert_clean(self, values: dict) -> None:
        report = helm.lint(c.CHART_DIR, values, strict=True, namespace=c.NAMESPACE)
        problems = [m for m in report["messages"] if m["severity"] >= 2]
        self.assertEqual(report["errors"], [], report)
        self.assertEqual(problems, [], report)
        self.assertEqual(report["total_charts_linted"], 1)

    def test_lint_default_values(self) -> None:
        self.assert_clean({})

    def test_lint_custom_values(self) -> None:
        self.assert_clean(c.load_yaml(c.TESTS_DIR / "custom-values.yaml"))

    def test_lint_reports_a_broken_chart(self) -> None:
        # The linter used above does find problems: a chart with a bad value
        # gets an error, so a clean report means something.
        report = helm.lint(c.CHART_DIR, {"io_engine": {"port": "grpc"}}, strict=True)
        self.assertTrue(report["errors"] or [m for m in report["messages"] if m["severity"] >= 3])


class DefaultRender(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.objects = c.render()

    def get(self, kind: str, name: str) -> dict:
        self.assertIn((kind, name), self.objects, f"no {kind} {name}")
        return self.objects[(kind, name)]

    def test_the_objects(self) -> None:
        expected = {
            ("DaemonSet", "io-engine"), ("DaemonSet", "csi-node"),
            ("Deployment", "agent-core"), ("Deployment", "api-rest"),
            ("Deployment", "operator-diskpool"), ("Deployment", "csi-controller"),
            ("StatefulSet", "etcd"),
            ("Service", "agent-core"), ("Service", "api-rest"), ("Service", "etcd"),
            ("Service", "etcd-headless"), ("CSIDriver", "io.openebs.csi-mayastor"),
        }
        self.assertLessEqual(expected, set(self.objects))
        # HA agents are off by default.
        self.assertNotIn(("Deployment", "agent-ha-cluster"), self.objects)
        self.assertNotIn(("DaemonSet", "agent-ha-node"), self.objects)
        for (kind, name), obj in self.objects.items():
            if kind not in {"ClusterRole", "ClusterRoleBinding", "CSIDriver", "StorageClass"}:
                self.assertEqual(obj["metadata"]["namespace"], c.NAMESPACE, (kind, name))

    def test_io_engine(self) -> None:
        ds = self.get("DaemonSet", "io-engine")
        spec = c.pod_spec(ds)
        self.assertTrue(spec["hostNetwork"])
        self.assertEqual(spec["dnsPolicy"], "ClusterFirstWithHostNet")
        self.assertEqual(spec["nodeSelector"], {"openebs.io/engine": "mayastor"})
        self.assertEqual(ds["spec"]["updateStrategy"], {"type": "OnDelete"})
        engine = c.containers(ds)["io-engine"]
        self.assertTrue(engine["securityContext"]["privileged"])
        self.assertEqual(engine["image"], f"localhost/mayastor/io-engine:{DEFAULT_TAG}")
        self.assertEqual(engine["imagePullPolicy"], "IfNotPresent")
        self.assertEqual(arg_value(engine, "grpc-endpoint"), "$(MY_POD_IP):10124")
        self.assertEqual(arg_value(engine, "nvmf-endpoint"), "$(MY_POD_IP):8420")
        self.assertEqual(arg_value(engine, "node-name"), "$(MY_NODE_NAME)")
        self.assertEqual(arg_value(engine, "registration-endpoint"),
                         "http://agent-core.mayastor.svc.cluster.local:50051")
        self.assertEqual(arg_value(engine, "ps-endpoint"), "etcd.mayastor.svc.cluster.local:2379")
        # No hugepages anywhere: not in the resources, not as a volume.
        resources = str(engine["resources"])
        self.assertNotIn("hugepages", resources)
        for volume in spec["volumes"]:
            self.assertNotEqual(volume.get("emptyDir", {}).get("medium"), "HugePages")
        host_paths = {v["name"]: v["hostPath"]["path"] for v in spec["volumes"] if "hostPath" in v}
        mounts = {m["name"]: m["mountPath"] for m in engine["volumeMounts"]}
        self.assertEqual(host_paths["dev"], "/dev")
        self.assertEqual(mounts["dev"], "/dev")
        # File pools: the host directory at the same path inside.
        self.assertEqual(host_paths["pools-0"], "/var/local/mayastor/pools")
        self.assertEqual(mounts["pools-0"], "/var/local/mayastor/pools")
        # The metrics exporter sidecar, on by default.
        exporter = c.containers(ds)["metrics-exporter"]
        self.assertEqual(exporter["image"], f"localhost/mayastor/metrics-exporter:{DEFAULT_TAG}")
        self.assertEqual(exporter["ports"][0]["containerPort"], 9502)
        # Its flags are the metrics-exporter binary's: this node's engine,
        # on the node address, as the engine (host network: never a wildcard
        # address, which would take the port on every address of the host).
        self.assertEqual(arg_value(exporter, "node-name"), "$(MY_NODE_NAME)")
        self.assertEqual(arg_value(exporter, "engine-endpoint"), "$(MY_POD_IP):10124")
        self.assertEqual(arg_value(exporter, "listen"), "$(MY_POD_IP):9502")
        self.assertEqual(arg_value(exporter, "log-format"), "pretty")

    def test_control_plane(self) -> None:
        core = c.containers(self.get("Deployment", "agent-core"))["agent-core"]
        self.assertEqual(arg_value(core, "store"), "etcd.mayastor.svc.cluster.local:2379")
        self.assertEqual(arg_value(core, "pool-commitment"), "250")
        self.assertEqual(arg_value(core, "volume-commitment"), "40")
        self.assertIsNone(arg_value(core, "faulted-child-wait"))
        rest = c.containers(self.get("Deployment", "api-rest"))["api-rest"]
        self.assertEqual(arg_value(rest, "core-endpoint"), "http://agent-core.mayastor.svc.cluster.local:50051")
        self.assertEqual(arg_value(rest, "http"), "0.0.0.0:8081")
        service = self.get("Service", "api-rest")
        self.assertEqual(service["spec"]["type"], "ClusterIP")
        self.assertEqual(service["spec"]["ports"], [
            {"name": "http", "port": 8081, "targetPort": 8081, "protocol": "TCP"}])
        self.assertEqual(service["spec"]["selector"],
                         self.get("Deployment", "api-rest")["spec"]["selector"]["matchLabels"])
        operator = self.get("Deployment", "operator-diskpool")
        self.assertEqual(operator["spec"]["strategy"], {"type": "Recreate"})
        pool = c.containers(operator)["operator-diskpool"]
        self.assertEqual(arg_value(pool, "endpoint"), "http://api-rest.mayastor.svc.cluster.local:8081")
        self.assertEqual(arg_value(pool, "namespace"), "mayastor")
        self.assertEqual(arg_value(pool, "interval"), "30s")
        self.assertIn("MY_POD_NAME", [e["name"] for e in pool["env"]])
        etcd = self.get("StatefulSet", "etcd")
        self.assertEqual(etcd["spec"]["replicas"], 3)
        member = c.containers(etcd)["etcd"]
        self.assertEqual(member["image"], f"localhost/mayastor/etcd:{DEFAULT_TAG}")
        cluster = arg_value(member, "initial-cluster").split(",")
        self.assertEqual([m.split("=")[0] for m in cluster], ["etcd-0", "etcd-1", "etcd-2"])
        self.assertEqual(etcd["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"], "2Gi")
        self.assertIn("requiredDuringSchedulingIgnoredDuringExecution",
                      c.pod_spec(etcd)["affinity"]["podAntiAffinity"])

    def test_csi(self) -> None:
        ctrl = self.get("Deployment", "csi-controller")
        names = [x["name"] for x in c.pod_spec(ctrl)["containers"]]
        self.assertEqual(names, ["csi-provisioner", "csi-attacher", "csi-resizer", "csi-controller"])
        byname = c.containers(ctrl)
        provisioner = byname["csi-provisioner"]
        self.assertEqual(provisioner["image"], "registry.k8s.io/sig-storage/csi-provisioner:v5.3.0")
        self.assertIn("--extra-create-metadata", provisioner["args"])
        self.assertIn("--feature-gates=Topology=true", provisioner["args"])
        self.assertEqual(byname["csi-attacher"]["image"], "registry.k8s.io/sig-storage/csi-attacher:v4.9.0")
        self.assertEqual(byname["csi-resizer"]["image"], "registry.k8s.io/sig-storage/csi-resizer:v1.12.0")
        plugin = byname["csi-controller"]
        self.assertEqual(arg_value(plugin, "rest-endpoint"), "http://api-rest.mayastor.svc.cluster.local:8081")
        socket = arg_value(plugin, "csi-socket")
        for sidecar in ("csi-provisioner", "csi-attacher", "csi-resizer"):
            env = {e["name"]: e["value"] for e in byname[sidecar]["env"]}
            self.assertEqual(env["ADDRESS"], socket, sidecar)
        node = self.get("DaemonSet", "csi-node")
        spec = c.pod_spec(node)
        self.assertTrue(spec["hostNetwork"])
        byname = c.containers(node)
        self.assertTrue(byname["csi-node"]["securityContext"]["privileged"])
        self.assertEqual(arg_value(byname["csi-node"], "grpc-endpoint"), "$(MY_POD_IP):10199")
        registrar = byname["csi-driver-registrar"]
        self.assertEqual(registrar["image"], "registry.k8s.io/sig-storage/csi-node-driver-registrar:v2.17.0")
        self.assertIn("--kubelet-registration-path=/var/lib/kubelet/plugins/io.openebs.csi-mayastor/csi.sock",
                      registrar["args"])
        kubelet = [m for m in byname["csi-node"]["volumeMounts"] if m["name"] == "kubelet-dir"][0]
        self.assertEqual(kubelet, {"name": "kubelet-dir", "mountPath": "/var/lib/kubelet",
                                   "mountPropagation": "Bidirectional"})
        driver = self.get("CSIDriver", "io.openebs.csi-mayastor")
        self.assertTrue(driver["spec"]["attachRequired"])

    def test_images_of_ours(self) -> None:
        for (kind, name), obj in c.workloads(self.objects).items():
            for container in c.pod_spec(obj)["containers"]:
                if container["name"] in SIDECARS:
                    continue
                self.assertRegex(container["image"], rf"^localhost/mayastor/[a-z-]+:{re.escape(DEFAULT_TAG)}$")
                component = container["image"].split("/")[-1].split(":")[0]
                self.assertIn(component, c.OUR_COMPONENTS)
                self.assertEqual(container["imagePullPolicy"], "IfNotPresent")

    def test_rbac_for_each_service_account(self) -> None:
        check_rbac(self, self.objects)

    def test_storage_classes(self) -> None:
        classes = {n: o for (k, n), o in self.objects.items() if k == "StorageClass"}
        self.assertEqual(set(classes), {"mayastor-single-replica", "mayastor-3", "mayastor-3-thin", "mayastor-3-xfs"})
        for name, sc in classes.items():
            self.assertEqual(sc["provisioner"], "io.openebs.csi-mayastor")
            self.assertTrue(sc["allowVolumeExpansion"])
            self.assertEqual(sc["reclaimPolicy"], "Delete")
            self.assertLessEqual(set(sc["parameters"]), SC_PARAMETERS, name)
            for value in sc["parameters"].values():
                self.assertIsInstance(value, str, name)
        self.assertEqual(classes["mayastor-3"]["parameters"]["repl"], "3")
        self.assertEqual(classes["mayastor-3-thin"]["parameters"]["thin"], "true")
        self.assertEqual(classes["mayastor-3-xfs"]["parameters"]["fsType"], "xfs")

    def test_diskpool_crd(self) -> None:
        crds = c.chart().crds
        self.assertEqual(len(crds), 1)
        crd = helm.values_from_yaml(crds[0]["data"])
        self.assertEqual(crd["kind"], "CustomResourceDefinition")
        self.assertEqual(crd["metadata"]["name"], "diskpools.openebs.io")
        spec = crd["spec"]
        self.assertEqual(spec["group"], "openebs.io")
        self.assertEqual(spec["scope"], "Namespaced")
        self.assertEqual(spec["names"]["kind"], "DiskPool")
        self.assertEqual(spec["names"]["shortNames"], ["dsp"])
        [version] = spec["versions"]
        self.assertEqual(version["name"], "v1beta2")
        self.assertTrue(version["served"] and version["storage"])
        self.assertEqual(version["subresources"], {"status": {}})
        columns = [(col["name"], col["jsonPath"]) for col in version["additionalPrinterColumns"]]
        self.assertEqual(columns, [
            ("node", ".spec.node"), ("state", ".status.cr_state"), ("pool_status", ".status.pool_status"),
            ("capacity", ".status.capacity"), ("used", ".status.used"), ("available", ".status.available"),
        ])
        props = version["schema"]["openAPIV3Schema"]["properties"]
        self.assertEqual(props["spec"]["required"], ["node", "disks"])
        status = props["status"]["properties"]
        self.assertEqual(status["cr_state"]["enum"], ["Creating", "Created", "Terminating"])
        self.assertEqual(status["pool_status"]["enum"], ["Unknown", "Online", "Degraded", "Faulted"])
        # The CRD is not a template: an uninstall leaves it (and the pools).
        self.assertNotIn(("CustomResourceDefinition", "diskpools.openebs.io"), self.objects)

    def test_flags_exist_in_the_binaries(self) -> None:
        check_flags(self, self.objects)

    def test_app_version_is_the_workspace_version(self) -> None:
        # The images are tagged with the binaries' version by default.
        cargo = (c.REPO / "Cargo.toml").read_text()
        package = cargo[cargo.index("[workspace.package]"):]
        version = re.search(r'^version\s*=\s*"([^"]+)"', package, re.M).group(1)
        self.assertEqual(DEFAULT_TAG, version)

    def test_notes(self) -> None:
        notes = c.notes()
        self.assertIn("kubectl label node <node> openebs.io/engine=mayastor", notes)
        self.assertIn("a file under /var/local/mayastor/pools", notes)
        self.assertIn("kubectl get dsp -n mayastor", notes)
        self.assertIn("kubectl mayastor get pools\n", notes)
        self.assertIn("mayastor-single-replica, mayastor-3, mayastor-3-thin, mayastor-3-xfs.", notes)
        self.assertNotIn("NodePort", notes)
        self.assertNotIn("port 30011", notes)


class CustomRender(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.values = c.load_yaml(c.TESTS_DIR / "custom-values.yaml")
        cls.objects = c.render(cls.values)

    def test_images_registry_and_tag(self) -> None:
        engine = c.containers(self.objects[("DaemonSet", "io-engine")])["io-engine"]
        self.assertEqual(engine["image"], "registry.example.com:5000/storage/mayastor/io-engine:1.2.3")
        self.assertEqual(engine["imagePullPolicy"], "Always")
        for (kind, name), obj in c.workloads(self.objects).items():
            spec = c.pod_spec(obj)
            self.assertEqual(spec["imagePullSecrets"], [{"name": "regcred"}], name)
            for container in spec["containers"]:
                if container["name"] not in SIDECARS:
                    self.assertRegex(container["image"], r"^registry\.example\.com:5000/storage/mayastor/[a-z-]+:1\.2\.3$")

    def test_external_etcd(self) -> None:
        self.assertNotIn(("StatefulSet", "etcd"), self.objects)
        self.assertNotIn(("Service", "etcd"), self.objects)
        self.assertNotIn(("ServiceAccount", "etcd"), self.objects)
        core = c.containers(self.objects[("Deployment", "agent-core")])["agent-core"]
        self.assertEqual(arg_value(core, "store"), "http://etcd.storage.svc:2379")
        engine = c.containers(self.objects[("DaemonSet", "io-engine")])["io-engine"]
        self.assertEqual(arg_value(engine, "ps-endpoint"), "http://etcd.storage.svc:2379")

    def test_node_port(self) -> None:
        service = self.objects[("Service", "api-rest")]
        self.assertEqual(service["spec"]["type"], "NodePort")
        self.assertEqual(service["spec"]["ports"][0]["port"], 8081)
        self.assertEqual(service["spec"]["ports"][0]["nodePort"], 31081)
        self.assertEqual(self.objects[("Deployment", "api-rest")]["spec"]["replicas"], 2)

    def test_engine_settings(self) -> None:
        ds = self.objects[("DaemonSet", "io-engine")]
        byname = c.containers(ds)
        self.assertEqual(set(byname), {"io-engine"}, "metrics off: no sidecar")
        engine = byname["io-engine"]
        self.assertEqual(arg_value(engine, "grpc-endpoint"), "$(MY_POD_IP):10200")
        self.assertEqual(arg_value(engine, "nvmf-endpoint"), "$(MY_POD_IP):8430")
        self.assertEqual(arg_value(engine, "log-format"), "json")
        env = {e["name"]: e.get("value") for e in engine["env"]}
        self.assertEqual(env["RUST_LOG"], "debug,io_engine=trace")
        mounts = sorted(m["mountPath"] for m in engine["volumeMounts"])
        self.assertEqual(mounts, ["/dev", "/mnt/more-pools", "/srv/pools"])
        # Its own tolerations win over the global ones; the global nodeSelector
        # does not apply to the storage nodes.
        spec = c.pod_spec(ds)
        self.assertEqual(spec["tolerations"], [{"key": "engine-only", "operator": "Exists"}])
        self.assertEqual(spec["nodeSelector"], {"openebs.io/engine": "mayastor"})
        core = c.pod_spec(self.objects[("Deployment", "agent-core")])
        self.assertEqual(core["tolerations"], [{"key": "storage", "operator": "Exists", "effect": "NoSchedule"}])
        self.assertEqual(core["nodeSelector"], {"kubernetes.io/arch": "amd64"})

    def test_agents(self) -> None:
        core = c.containers(self.objects[("Deployment", "agent-core")])["agent-core"]
        self.assertEqual(arg_value(core, "pool-commitment"), "300")
        self.assertEqual(arg_value(core, "faulted-child-wait"), "5m")
        self.assertIn(("Deployment", "agent-ha-cluster"), self.objects)
        self.assertTrue(c.pod_spec(self.objects[("DaemonSet", "agent-ha-node")])["hostNetwork"])
        for kind in ("Deployment", "ServiceAccount", "ClusterRole"):
            name = "operator-diskpool" if kind != "ClusterRole" else "mayastor-mayastor-operator-diskpool"
            self.assertNotIn((kind, name), self.objects, "operator off")

    def test_csi_node(self) -> None:
        node = self.objects[("DaemonSet", "csi-node")]
        byname = c.containers(node)
        self.assertEqual(arg_value(byname["csi-node"], "nvme-io-timeout"), "60")
        self.assertIsNone(arg_value(byname["csi-node"], "nvme-ctrl-loss-tmo"))
        self.assertIn("--kubelet-registration-path=/var/lib/k0s/kubelet/plugins/io.openebs.csi-mayastor/csi.sock",
                      byname["csi-driver-registrar"]["args"])
        paths = {v["name"]: v["hostPath"]["path"] for v in c.pod_spec(node)["volumes"]}
        self.assertEqual(paths["registration-dir"], "/var/lib/k0s/kubelet/plugins_registry")

    def test_storage_classes(self) -> None:
        classes = {n: o for (k, n), o in self.objects.items() if k == "StorageClass"}
        self.assertEqual(list(classes), ["fast-2"])
        sc = classes["fast-2"]
        self.assertEqual(sc["reclaimPolicy"], "Retain")
        self.assertEqual(sc["parameters"], self.values["storageClass"]["classes"][0]["parameters"])
        self.assertEqual(set(sc["parameters"]), SC_PARAMETERS - {"fsType"})

    def test_rbac_for_each_service_account(self) -> None:
        check_rbac(self, self.objects)

    def test_flags_exist_in_the_binaries(self) -> None:
        check_flags(self, self.objects)

    def test_notes(self) -> None:
        notes = c.notes(self.values, namespace="storage")
        self.assertIn("kubectl mayastor get pools -n storage", notes)
        self.assertIn("a file under /srv/pools", notes)
        self.assertIn("StorageClass: fast-2.", notes)
        self.assertIn("at port 31081 (/v0)", notes)

    def test_single_node_values(self) -> None:
        objects = c.render(c.load_yaml(c.CHART_DIR.parent / "single-node-values.yaml"))
        etcd = objects[("StatefulSet", "etcd")]
        spec = c.pod_spec(etcd)
        self.assertEqual(etcd["spec"]["replicas"], 1)
        self.assertNotIn("volumeClaimTemplates", etcd["spec"])
        self.assertNotIn("affinity", spec)
        self.assertEqual(spec["volumes"], [{"name": "data", "hostPath": {
            "path": "/var/local/mayastor/etcd", "type": "DirectoryOrCreate"}}])
        self.assertEqual(c.containers(etcd)["etcd"]["volumeMounts"],
                         [{"name": "data", "mountPath": "/var/lib/etcd", "subPathExpr": "$(POD_NAME)"}])
        member = c.containers(etcd)["etcd"]
        self.assertEqual(arg_value(member, "initial-cluster"),
                         "etcd-0=http://etcd-0.etcd-headless.mayastor.svc.cluster.local:2380")

    def test_external_etcd_needs_its_url(self) -> None:
        with self.assertRaisesRegex(helm.HelmError, r"set etcd\.externalUrl"):
            c.render({"etcd": {"enabled": False}})


def check_rbac(test: unittest.TestCase, objects: dict) -> None:
    """Every pod runs as a ServiceAccount of the chart, and every
    ServiceAccount is bound to a ClusterRole of the chart."""
    accounts = {n for (k, n) in objects if k == "ServiceAccount"}
    roles = {n: o for (k, n), o in objects.items() if k == "ClusterRole"}
    bound: dict[str, str] = {}
    for (kind, name), obj in objects.items():
        if kind == "ClusterRoleBinding":
            test.assertEqual(obj["roleRef"]["kind"], "ClusterRole")
            test.assertIn(obj["roleRef"]["name"], roles, name)
            for subject in obj["subjects"]:
                test.assertEqual(subject["namespace"], c.NAMESPACE)
                bound[subject["name"]] = obj["roleRef"]["name"]
    workloads = c.workloads(objects)
    used = {c.pod_spec(o)["serviceAccountName"] for o in workloads.values()}
    test.assertEqual(used, accounts, "a ServiceAccount per running component, none spare")
    test.assertEqual(set(bound), accounts, "each ServiceAccount bound to its ClusterRole")
    verbs = {r["resources"][0]: set(r["verbs"]) for r in roles[bound["csi-controller"]]["rules"]}
    test.assertLessEqual({"create", "delete"}, verbs["persistentvolumes"])
    test.assertIn("patch", verbs["volumeattachments/status"])
    if "operator-diskpool" in bound:
        rules = roles[bound["operator-diskpool"]]["rules"]
        test.assertIn("diskpools/status", [r for rule in rules for r in rule["resources"]])


def check_flags(test: unittest.TestCase, objects: dict) -> None:
    """Every --flag given to one of our binaries is one its clap definition declares."""
    checked = set()
    for (kind, name), obj in c.workloads(objects).items():
        for container in c.pod_spec(obj)["containers"]:
            component = container["name"]
            if component in SIDECARS or component not in c.CLAP_SOURCES:
                continue
            known = c.clap_flags(component)
            with test.subTest(component=component):
                if known is None:
                    test.skipTest(f"{component}: its source is not in the tree yet")
                unknown = c.flags_used(container.get("args", [])) - known
                test.assertEqual(unknown, set(), f"{component} does not accept these flags")
                checked.add(component)
    test.assertLessEqual({"io-engine", "agent-core", "api-rest"}, checked)


if __name__ == "__main__":
    unittest.main()
