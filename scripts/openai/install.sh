#!/usr/bin/env bash
# Installs the official `openai` Python client (PyPI, pinned) in a virtual environment
# kept outside the repository, for runtime/tests/serve.rs, which drives `lfm-edge serve`
# with it; prints the path of the environment's python. Does nothing when it is there.
#
#   scripts/openai/install.sh           install if missing, print the path of python
#   scripts/openai/install.sh --check   print the path, or fail if it is not installed
#
# LFM_OPENAI_VENV_HOME: the cache (default ~/.cache/lfm-edge/openai); each version has
# a folder of its own there.
set -euo pipefail

VERSION=3.57.0
home="${LFM_OPENAI_VENV_HOME:-$HOME/.cache/lfm-edge/openai}"
venv="$home/$VERSION"
python="$venv/bin/python"

installed() {
    [ -x "$python" ] && "$python" -c "import openai, sys; sys.exit(openai.__version__ != '$VERSION')" 2>/dev/null
}

if installed; then
    echo "$python"
    exit 0
fi
if [ "${1:-}" = "--check" ]; then
    echo "the openai client $VERSION is not in $venv: run scripts/openai/install.sh" >&2
    exit 1
fi

command -v python3 >/dev/null || { echo "python3 is needed for the openai client" >&2; exit 1; }
mkdir -p "$home"
# Made beside the cache, then moved into place whole: an interrupted install leaves no
# half-filled version folder. (Only the scripts in bin/ remember where a venv was made;
# the tests run its python, which finds its packages wherever the folder is.)
staging="$(mktemp -d "$home/.staging.XXXXXX")"
trap 'rm -rf "$staging"' EXIT
python3 -m venv "$staging/venv" >&2
"$staging/venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    "openai==$VERSION" >&2
rm -rf "$venv"
mv "$staging/venv" "$venv"
installed || { echo "$venv does not import openai $VERSION" >&2; exit 1; }
echo "$python"
