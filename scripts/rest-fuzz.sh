#!/usr/bin/env bash
# Fuzzes the REST API with schemathesis, driven by the OpenAPI document the
# server itself serves at <base-url>/v0/api/spec.
#
#   scripts/rest-fuzz.sh <base-url>   fuzz a running server, e.g. http://127.0.0.1:8081
#   scripts/rest-fuzz.sh --install    install schemathesis if missing (idempotent, quiet)
#
# The server should front a live control plane with some data (nodes, pools,
# volumes): the fuzzer creates, changes and deletes things, so never point it
# at a cluster that matters. agent-core's `rest_api` test does this against a
# throw-away cluster.
#
# Environment:
#   REST_FUZZ_EXAMPLES  test cases per operation and phase (default 50)
#   REST_FUZZ_SEED      seed of a run to replay (default: random, printed)
#   REST_FUZZ_TIMEOUT   seconds before the whole run is stopped (default 300)
#   REST_FUZZ_VENV      where schemathesis is installed (default: the project's
#                       Python venv, scripts/py-venv.sh)
#   SCHEMATHESIS        a schemathesis executable to use instead of the venv's
#
# Exit status: 0 no failure, 1 failures (the output names each with a curl
# line to reproduce it), 2 usage, 3 schemathesis is not installed.
#
# Checks, and why the others are left out:
#   not_a_server_error           no 5xx answer, except 507: ResourceExhausted and
#                                CapacityLimitExceeded say the cluster has no room
#                                for what was asked (fuzzed sizes reach 2^63 bytes).
#                                That refusal depends on free space, not on a fault.
#   status_code_conformance      every status is one the document lists,
#   content_type_conformance     with the content type,
#   response_schema_conformance  and the body schema it states;
#   response_headers_conformance and the headers it states;
#   negative_data_rejection      a request the document rules out (wrong type,
#                                out of range, unknown field, malformed id) is
#                                refused with a 4xx whatever the cluster holds;
#   unsupported_method           a method the document does not list gets 405,
#   allow_header_conformance     with an Allow header naming the right ones;
#   use_after_free               (stateful) once deleted, a resource is gone;
#   ensure_resource_availability (stateful) once created, a resource is there.
#   Left out:
#   positive_data_acceptance     it expects every request the document allows to
#                                succeed, but success depends on state: a volume
#                                needs free space and enough usable nodes, a
#                                publish needs the volume to exist and not to be
#                                published elsewhere, a pool needs a free disk that
#                                exists on the node, a label removal needs the
#                                label, a page token must lie within the volume
#                                count. Those refusals are correct answers. (The
#                                document also leaves out two stateless rules:
#                                volume sizes are whole 512-byte blocks, and only
#                                the nvmf protocol publishes.)
#   ignored_auth                 the server under test runs without a bearer token
#                                (the document makes the token optional).
#   object_level_authorization,  there are no per-user objects and no required
#   missing_required_header      headers.
#
# One worker only: under Python 3.11 (Debian 12's) a second worker fails runs
# inside hypothesis with "AST constructor recursion depth mismatch", and the
# cluster behind the server needs the cores anyway.
set -euo pipefail

# The release of schemathesis this script is written against (its CLI and
# config file change between major releases).
SCHEMATHESIS_VERSION=4.32.5
# shellcheck source=py-venv.sh
source "$(dirname "$0")/py-venv.sh"
PY_VENV="${REST_FUZZ_VENV:-$PY_VENV}"
VENV="$PY_VENV"

usage() {
    sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

# The schemathesis executable, or nothing.
find_schemathesis() {
    if [ -n "${SCHEMATHESIS:-}" ]; then
        echo "$SCHEMATHESIS"
    elif [ -x "$VENV/bin/schemathesis" ]; then
        echo "$VENV/bin/schemathesis"
    elif command -v schemathesis >/dev/null 2>&1; then
        command -v schemathesis
    fi
}

install() {
    py_venv_ensure schemathesis "$SCHEMATHESIS_VERSION" || exit 1
}

[ $# -eq 1 ] || usage
case "$1" in
    --install) install; exit 0 ;;
    -h | --help) usage ;;
    -*) usage ;;
esac

base_url="${1%/}"
st="$(find_schemathesis)"
if [ -z "$st" ]; then
    echo "schemathesis is not installed: run 'bash scripts/rest-fuzz.sh --install'" \
        "(scripts/test.sh does)" >&2
    exit 3
fi

examples="${REST_FUZZ_EXAMPLES:-50}"
seed="${REST_FUZZ_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}"
limit="${REST_FUZZ_TIMEOUT:-300}"

# Work in a scratch directory: nothing (hypothesis database, reports) is
# left in the caller's tree.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cat >"$work/schemathesis.toml" <<'EOF'
[checks.not_a_server_error]
expected-statuses = ["2xx", "3xx", "4xx", "507"]
EOF

checks=not_a_server_error,status_code_conformance,content_type_conformance
checks+=,response_schema_conformance,response_headers_conformance
checks+=,negative_data_rejection,unsupported_method,allow_header_conformance
checks+=,use_after_free,ensure_resource_availability

echo "rest-fuzz: $("$st" --version) against $base_url, $examples examples, seed $seed"
cd "$work"
status=0
timeout --kill-after=10 "$limit" "$st" --config-file "$work/schemathesis.toml" --no-color \
    run "$base_url/v0/api/spec" \
    --url "$base_url" \
    --checks "$checks" \
    --phases coverage,fuzzing,stateful \
    --max-examples "$examples" \
    --seed "$seed" \
    --workers 1 \
    --request-timeout 30 \
    --generation-database none \
    --suppress-health-check too_slow,filter_too_much \
    --warnings off \
    || status=$?
case "$status" in
    0) echo "rest-fuzz: no failure (seed $seed)" ;;
    124 | 137) echo "rest-fuzz: stopped after ${limit}s (seed $seed)" >&2; exit 1 ;;
    *) echo "rest-fuzz: failures found (seed $seed; REST_FUZZ_SEED=$seed replays the run)" >&2; exit 1 ;;
esac
