#!/usr/bin/env bash
# Build the Jupyter Book (book/) to HTML in book/_build/html, executing every chapter.
#
#   bash scripts/build_book.sh              uses the virtual environment .venv
#   VENV=/path bash scripts/build_book.sh   uses that one (it needs the .[dev] extras)
#
# Strict: any Sphinx warning, any cell that writes to stderr, and any failing cell fails the
# build (-W, with --keep-going to report them all first); the exit status is non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"

if [ ! -x "$VENV/bin/jupyter-book" ]; then
    echo "error: $VENV/bin/jupyter-book not found; install the dev extras first:" >&2
    echo "  python3 -m venv $VENV && $VENV/bin/pip install -e '.[dev]'" >&2
    exit 2
fi
# the kernel that executes the chapters is this environment's python
VENV_BIN="$(cd "$VENV/bin" && pwd)"
export PATH="$VENV_BIN:$PATH"
"$VENV/bin/jupyter-book" build book --all --warningiserror --keep-going
echo "book: $(pwd)/book/_build/html/index.html"
