#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints and every test of the
# workspace. Installs what it needs when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v fallocate >/dev/null || need_apt+=(util-linux)
command -v etcd >/dev/null || need_apt+=(etcd-server)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need_apt+=(python3-venv)
# The kubectl plugin is tested through kubectl's own plugin discovery, and
# the dashboard end to end in tmux.
command -v kubectl >/dev/null || need_apt+=(kubernetes-client)
command -v tmux >/dev/null || need_apt+=(tmux)
# Network namespaces and veth pairs for the plugin's Kubernetes discovery test.
command -v ip >/dev/null || need_apt+=(iproute2)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "installing: ${need_apt[*]}"
    if [ "$(id -u)" -eq 0 ]; then apt-get update -qq && apt-get install -y -qq "${need_apt[@]}"
    else sudo apt-get update -qq && sudo apt-get install -y -qq "${need_apt[@]}"; fi
fi
# Prometheus and promtool for the metrics exporter's test; the test starts
# its own Prometheus, so the package's service is stopped and disabled
# (where the machine runs services at all) and never left running.
if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
    echo "installing: prometheus"
    if [ "$(id -u)" -eq 0 ]; then sudo_=(); else sudo_=(sudo); fi
    "${sudo_[@]}" apt-get update -qq
    "${sudo_[@]}" apt-get install -y -qq --no-install-recommends prometheus
    "${sudo_[@]}" systemctl disable --now prometheus >/dev/null 2>&1 || true
    "${sudo_[@]}" invoke-rc.d prometheus stop >/dev/null 2>&1 || true
fi
# Schemathesis (in its own venv) for the REST API fuzz test.
bash scripts/rest-fuzz.sh --install
# Helm's library (helm-python-sdk, in its own venv) for the chart tests.
bash deploy/helm/tests/run.sh --install
# The Linux NVMe/TCP host and target run in a throw-away VM for the interop
# tests; build (or refresh) its image. It installs QEMU and friends itself.
NVME_VM="$(pwd)/../shared/tools/nvme-vm"
if [ ! -x "$NVME_VM/build-image" ]; then
    echo "error: $NVME_VM is missing (../shared must sit beside the project)" >&2
    exit 1
fi
if [ "$(id -u)" -eq 0 ]; then "$NVME_VM/build-image"; else sudo "$NVME_VM/build-image"; fi

# A real Kubernetes API server (kube-local, built from Debian's source
# package and cached) for the kubectl plugin's discovery test.
KUBE_LOCAL="$(pwd)/../shared/tools/kube-local"
if [ ! -x "$KUBE_LOCAL/build" ]; then
    echo "error: $KUBE_LOCAL is missing (../shared must sit beside the project)" >&2
    exit 1
fi
if [ "$(id -u)" -eq 0 ]; then "$KUBE_LOCAL/build"; else sudo "$KUBE_LOCAL/build"; fi

rustup component list --installed 2>/dev/null | grep -q rustfmt || rustup component add rustfmt clippy 2>/dev/null || true

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

echo "== helm chart (deploy/helm/tests)"
bash deploy/helm/tests/run.sh

echo "== tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast
else
    cargo test --workspace --no-fail-fast
fi
# Doc tests are not run by nextest.
cargo test --workspace --doc --quiet
