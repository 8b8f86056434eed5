"""The chart against a real Kubernetes 1.20 API server (kube-local, API
server only: objects are stored and validated, no pod runs): the rendered
manifests pass kubectl's schema validation and a server-side dry run, and
a real Helm install creates every object; the README's DiskPool examples
pass a server-side dry run; a DiskPool is accepted, shows its status in
`kubectl get dsp`, a bad one is refused; `helm uninstall`
removes the release and leaves the CRD and the DiskPools."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import unittest
from pathlib import Path

import helm_python as helm

import chart as c
from test_readme import diskpool_examples

TOOL = Path(os.environ.get("KUBE_LOCAL_TOOL", c.REPO.parent / "shared" / "tools" / "kube-local"))


class ApiServer(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        if not (TOOL / "start").exists():
            raise RuntimeError(f"kube-local not found at {TOOL}: set KUBE_LOCAL_TOOL (scripts/test.sh builds it)")
        cls.tmp = tempfile.TemporaryDirectory(prefix="helm-chart-api-")
        cls.state = Path(cls.tmp.name) / "state"
        started = subprocess.run(
            [str(TOOL / "start"), "--state-dir", str(cls.state), "--ttl", "900"],
            capture_output=True, text=True, timeout=180,
        )
        if started.returncode != 0:
            raise RuntimeError(f"kube-local start failed: {started.stderr[-2000:]}")
        env = dict(line.split("=", 1) for line in started.stdout.splitlines() if "=" in line)
        cls.kubeconfig = env["KUBECONFIG"]
        cls.kubectl_bin = env["KUBE_LOCAL_KUBECTL"]
        cls.kubectl("create", "namespace", c.NAMESPACE)

    @classmethod
    def tearDownClass(cls) -> None:
        subprocess.run([str(TOOL / "stop"), "--state-dir", str(cls.state)], capture_output=True, timeout=120)
        cls.tmp.cleanup()

    @classmethod
    def kubectl(cls, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [cls.kubectl_bin, "--kubeconfig", cls.kubeconfig, *args],
            input=stdin, capture_output=True, text=True, timeout=60,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {done.stderr}")
        return done

    def names(self, resource: str, namespaced: bool = True) -> set[str]:
        args = ["get", resource, "-o", "json"] + (["-n", c.NAMESPACE] if namespaced else [])
        items = json.loads(self.kubectl(*args).stdout)["items"]
        return {i["metadata"]["name"] for i in items}

    def test_manifests_pass_validation_and_a_server_dry_run(self) -> None:
        single_node = c.load_yaml(c.CHART_DIR.parent / "single-node-values.yaml")
        soft = {"etcd": {"podAntiAffinityPreset": "soft", "persistence": {"enabled": False}},
                "apis": {"rest": {"service": {"type": "NodePort"}}}}
        for label, values in [("default", {}), ("custom", c.load_yaml(c.TESTS_DIR / "custom-values.yaml")),
                              ("single node", single_node), ("soft anti-affinity, emptyDir", soft)]:
            with self.subTest(values=label):
                stream = c.render_stream(values)
                done = self.kubectl("apply", "--dry-run=server", "--validate=true", "-f", "-", stdin=stream, check=False)
                self.assertEqual(done.returncode, 0, done.stderr)
                self.assertIn("(server dry run)", done.stdout)
        # The validation is on: a misspelt field is refused.
        broken = c.render_stream({}).replace("hostNetwork: true", "hostNetwrk: true", 1)
        done = self.kubectl("apply", "--dry-run=server", "--validate=true", "-f", "-", stdin=broken, check=False)
        self.assertNotEqual(done.returncode, 0)
        self.assertIn('unknown field "hostNetwrk"', done.stderr)

    def test_install_diskpool_and_uninstall(self) -> None:
        config = helm.Config(kubeconfig_path=self.kubeconfig, namespace=c.NAMESPACE)
        try:
            release = config.install(c.chart(), c.RELEASE, {}, namespace=c.NAMESPACE, timeout=120)
            self.assertEqual(release["status"], "deployed")
            rendered = c.render()
            for resource, kind in [("deployments", "Deployment"), ("daemonsets", "DaemonSet"),
                                   ("statefulsets", "StatefulSet"), ("services", "Service"),
                                   ("serviceaccounts", "ServiceAccount")]:
                expected = {n for (k, n) in rendered if k == kind}
                # The controller-manager does not run: no "default" account.
                self.assertEqual(self.names(resource), expected, resource)
            for resource, kind in [("clusterroles", "ClusterRole"), ("storageclasses", "StorageClass"),
                                   ("csidrivers", "CSIDriver")]:
                expected = {n for (k, n) in rendered if k == kind}
                self.assertLessEqual(expected, self.names(resource, namespaced=False), resource)
            crd = json.loads(self.kubectl("get", "crd", "diskpools.openebs.io", "-o", "json").stdout)
            conditions = {x["type"]: x["status"] for x in crd["status"]["conditions"]}
            self.assertEqual(conditions.get("Established"), "True")
            self.check_diskpools()
        finally:
            config.uninstall(c.RELEASE, ignore_not_found=True, timeout=120)
        self.assertEqual(config.list(all_states=True), [])
        self.assertEqual(self.names("deployments") | self.names("daemonsets") | self.names("statefulsets"), set())
        self.assertNotIn("mayastor-mayastor-agent-core", self.names("clusterroles", namespaced=False))
        # Helm never deletes what crds/ installed: the CRD and the pools stay.
        self.assertIn("diskpools.openebs.io", self.names("crd", namespaced=False))
        self.assertEqual(self.names("dsp"), {"pool-1"})

    def check_diskpools(self) -> None:
        # The README's examples are accepted by the CRD's schema (a
        # server-side dry run: the server validates, stores nothing).
        for example in diskpool_examples():
            done = self.kubectl("apply", "--dry-run=server", "-o", "json", "-f", "-", stdin=json.dumps(example))
            self.assertEqual(json.loads(done.stdout)["spec"], example["spec"])
        pool = {
            "apiVersion": "openebs.io/v1beta2", "kind": "DiskPool",
            "metadata": {"name": "pool-1", "namespace": c.NAMESPACE},
            "spec": {"node": "node-1", "disks": ["/dev/sdb"], "topology": {"labelled": {"zone": "a"}}},
        }
        self.kubectl("apply", "-f", "-", stdin=json.dumps(pool))
        stored = json.loads(self.kubectl("get", "dsp", "pool-1", "-n", c.NAMESPACE, "-o", "json").stdout)
        stored["status"] = {"cr_state": "Created", "pool_status": "Online",
                            "capacity": 10737418240, "used": 1073741824, "available": 9663676416}
        path = f"/apis/openebs.io/v1beta2/namespaces/{c.NAMESPACE}/diskpools/pool-1/status"
        self.kubectl("replace", "--raw", path, "-f", "-", stdin=json.dumps(stored))
        table = self.kubectl("get", "dsp", "-n", c.NAMESPACE).stdout.splitlines()
        self.assertEqual(table[0].split(), ["NAME", "NODE", "STATE", "POOL_STATUS", "CAPACITY", "USED", "AVAILABLE"])
        self.assertEqual(table[1].split(), ["pool-1", "node-1", "Created", "Online", "10737418240", "1073741824", "9663676416"])
        # The status is a subresource: a write to the object leaves it alone.
        pool["spec"]["disks"] = ["/dev/sdc"]
        self.kubectl("apply", "-f", "-", stdin=json.dumps(pool))
        again = json.loads(self.kubectl("get", "dsp", "pool-1", "-n", c.NAMESPACE, "-o", "json").stdout)
        self.assertEqual(again["status"]["cr_state"], "Created")
        for spec, why in [({"node": "node-1", "disks": []}, "spec.disks"),
                          ({"node": "node-1", "disks": ["/dev/a", "/dev/b"]}, "spec.disks"),
                          ({"disks": ["/dev/sdb"]}, "spec.node")]:
            bad = {**pool, "metadata": {"name": "bad", "namespace": c.NAMESPACE}, "spec": spec}
            # The API server refuses it by the CRD's schema (kubectl's own
            # check is off).
            done = self.kubectl("apply", "--validate=false", "-f", "-", stdin=json.dumps(bad), check=False)
            self.assertNotEqual(done.returncode, 0, spec)
            self.assertIn(why, done.stderr)
        bad_status = {**again, "status": {"cr_state": "Exploded"}}
        done = self.kubectl("replace", "--raw", path, "-f", "-", stdin=json.dumps(bad_status), check=False)
        self.assertNotEqual(done.returncode, 0)
        self.assertIn("cr_state", done.stderr + done.stdout)


if __name__ == "__main__":
    unittest.main()
