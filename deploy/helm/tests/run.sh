#!/usr/bin/env bash
# Tests the Helm chart deploy/helm/mayastor with real Helm: PyPI's
# helm-python-sdk binds Helm's own Go library (no helm binary needed).
# Lint, renders with default and custom values (test_render.py), values.yaml
# against values.schema.json and bad values refused (test_values.py), and
# the manifests, an install, a DiskPool and an uninstall against a real
# Kubernetes 1.20 API server from ../shared/tools/kube-local, API server
# only (test_api_server.py; `kube-local/build` must have run, as
# scripts/test.sh does).
#
#   deploy/helm/tests/run.sh            run the tests (installs the SDK if missing)
#   deploy/helm/tests/run.sh --install  install the SDK if missing (idempotent, quiet)
#
# Environment:
#   MAYASTOR_PY_VENV  the venv holding helm-python-sdk (default ~/.cache/mayastor-py/venv)
set -euo pipefail
self="$(realpath "$0")"
cd "$(dirname "$self")"

# The release of helm-python-sdk the tests are written against (its API
# follows the bundled Helm library). It goes into the project's one Python
# venv for test tools (scripts/py-venv.sh).
HELM_SDK_VERSION=0.2.2
# shellcheck source=../../../scripts/py-venv.sh
source ../../../scripts/py-venv.sh
VENV="$PY_VENV"

install() {
    py_venv_ensure helm-python-sdk "$HELM_SDK_VERSION" || exit 1
}

case "${1:-}" in
    --install) install; exit 0 ;;
    "") ;;
    *) sed -n '2,15p' "$self" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac

install
echo "helm chart tests: Helm $("$VENV/bin/python" -c 'import helm_python; print(helm_python.helm_sdk_version())')"
# Helm's library warns on stderr when a test overrides a map with a scalar
# on purpose (the schema then refuses it); those lines are left out.
PYTHONDONTWRITEBYTECODE=1 "$VENV/bin/python" -m unittest discover -s . -p 'test_*.py' -v 2> >(grep -v 'warning: cannot overwrite table' >&2)
