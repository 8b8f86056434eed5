"""Installs or uninstalls the mayastor release with real Helm (helm-python-sdk
binds Helm's own Go library; no helm binary needed), for tests written in
other languages (the install on kube-local's node: deploy/local/tests).

  python helm_release.py install   --kubeconfig K [--values FILE]... [--set-json JSON]
  python helm_release.py uninstall --kubeconfig K

Values: the files in order, then the JSON object, merged as `helm -f ... --set`
would (maps merged key by key, anything else replaced). The release is
`mayastor` in namespace `mayastor` (created when missing). Prints one line
with the release's name, revision and status; errors in one line, exit 1."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import helm_python as helm

import chart as c


def merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["install", "uninstall"])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--values", action="append", default=[])
    parser.add_argument("--set-json", default="{}")
    parser.add_argument("--timeout", type=int, default=120)
    args = parser.parse_args()
    config = helm.Config(kubeconfig_path=args.kubeconfig, namespace=c.NAMESPACE)
    try:
        if args.action == "install":
            values: dict[str, Any] = {}
            for path in args.values:
                values = merge(values, c.load_yaml(Path(path)))
            values = merge(values, json.loads(args.set_json))
            release = config.install(
                c.chart(), c.RELEASE, values, namespace=c.NAMESPACE,
                create_namespace=True, timeout=args.timeout,
            )
        else:
            release = config.uninstall(c.RELEASE, timeout=args.timeout)
    except Exception as e:  # Helm's errors come as one exception type per call
        print(f"helm {args.action} failed: {e}".replace("\n", " "), file=sys.stderr)
        return 1
    # Helm's answer: the release (install) or a summary of the removal.
    status = "uninstalled"
    if isinstance(release, dict):
        inner = release.get("release") if isinstance(release.get("release"), dict) else release
        info = inner.get("info") if isinstance(inner.get("info"), dict) else {}
        status = inner.get("status") or info.get("status") or status
    print(f"helm {args.action}: release {c.RELEASE} in namespace {c.NAMESPACE}: {status}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
