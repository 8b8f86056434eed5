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
#   HELM_TEST_VENV  the venv holding helm-python-sdk (default ~/.cache/helm-chart-test/venv)
set -euo pipefail
self="$(realpath "$0")"
cd "$(dirname "$self")"

# The release of helm-python-sdk the tests are written against (its API
# follows the bundled Helm library).
HELM_SDK_VERSION=0.2.2
VENV="${HELM_TEST_VENV:-${HOME:-/root}/.cache/helm-chart-test/venv}"

installed_version() {
    "$VENV/bin/python" -c 'import helm_python; print(helm_python.__version__)' 2>/dev/null || true
}

install() {
    if [ "$(installed_version)" = "$HELM_SDK_VERSION" ]; then
        return 0
    fi
    echo "installing helm-python-sdk $HELM_SDK_VERSION into $VENV"
    if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
        echo "error: python3 cannot make a venv: apt-get install -y python3-venv" >&2
        exit 1
    fi
    mkdir -p "$(dirname "$VENV")"
    # --clear: a venv left by an older or removed interpreter is rebuilt.
    python3 -m venv --clear "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        "helm-python-sdk==$HELM_SDK_VERSION"
    if [ "$(installed_version)" != "$HELM_SDK_VERSION" ]; then
        echo "error: helm-python-sdk $HELM_SDK_VERSION did not install into $VENV" >&2
        exit 1
    fi
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
