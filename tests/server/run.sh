#!/usr/bin/env bash
# run.sh SAMEPAGE MODEL VENV: the `samepage serve` tests (pytest, the
# official openai client). Their Python packages (openai, requests, pytest;
# pinned) go into a venv in the build tree, made on the first run; without the
# model, or when pip cannot install them, the test is skipped (77).
set -euo pipefail
exe="$1" model="$2" venv="$3"
here="$(cd "$(dirname "$0")" && pwd)"
[[ -r "$model" ]] || { echo "skip: no model at $model"; exit 77; }
# SP_SERVE_BROWSER=1 (test_serve_browser): the chat page in Debian's
# chromium through chromedriver, skipped without them
# (scripts/install-deps.sh --browser installs them).
if [[ ${SP_SERVE_BROWSER:-} == 1 ]]; then
  for b in chromium chromedriver; do
    command -v "$b" >/dev/null || { echo "skip: no $b (apt-get install chromium chromium-driver)"; exit 77; }
  done
fi
if ! "$venv/bin/python" -c "import openai, requests, pytest" 2>/dev/null; then
  echo "samepage: installing Python packages openai, requests and pytest into $venv (pip)" >&2
  { python3 -m venv "$venv" && "$venv/bin/pip" install --quiet openai==3.63.0 requests==2.34.2 pytest==9.2.0; } >&2 ||
    { echo "skip: cannot install the Python test packages"; exit 77; }
fi
if [[ ${SP_SERVE_BROWSER:-} == 1 ]] && ! "$venv/bin/python" -c "import selenium" 2>/dev/null; then
  echo "samepage: installing Python package selenium into $venv (pip)" >&2
  "$venv/bin/pip" install --quiet selenium==4.50.0 trio==0.35.0 trio-websocket==0.12.2 websocket-client==1.9.2 >&2 ||
    { echo "skip: cannot install selenium"; exit 77; }
fi
export SAMEPAGE_EXE="$exe" SP_TEST_MODEL="$model"
cd "$here"
# Extra arguments go to pytest (files, -k ...); without any it runs this
# whole directory.
exec "$venv/bin/python" -m pytest -q -p no:cacheprovider "${@:4}"
