# Sourced by the scripts that need Python test tools: the project's one
# venv for them (schemathesis for the REST API fuzz test, helm-python-sdk
# for the Helm chart tests), made when missing.
#
#   PY_VENV                      the venv: MAYASTOR_PY_VENV, default ~/.cache/mayastor-py/venv
#   py_venv_ensure PKG VERSION   installs PKG==VERSION unless that version is there
#   py_venv_version PKG          the installed version of PKG, or nothing

PY_VENV="${MAYASTOR_PY_VENV:-${HOME:-/root}/.cache/mayastor-py/venv}"

py_venv_version() {
    "$PY_VENV/bin/python" -m pip show "$1" 2>/dev/null | awk '/^Version:/ {print $2}'
}

py_venv_ensure() {
    local pkg="$1" version="$2"
    if [ "$(py_venv_version "$pkg")" = "$version" ]; then
        return 0
    fi
    echo "installing $pkg $version into $PY_VENV"
    if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
        echo "error: python3 cannot make a venv: apt-get install -y python3-venv" >&2
        return 1
    fi
    # Made when missing; rebuilt (--clear) only when its interpreter no
    # longer runs (Python upgraded or removed), so one tool's install never
    # removes another's.
    if ! "$PY_VENV/bin/python" -c '' >/dev/null 2>&1; then
        mkdir -p "$(dirname "$PY_VENV")"
        python3 -m venv --clear "$PY_VENV"
    fi
    "$PY_VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$pkg==$version"
    if [ "$(py_venv_version "$pkg")" != "$version" ]; then
        echo "error: $pkg $version did not install into $PY_VENV" >&2
        return 1
    fi
}
