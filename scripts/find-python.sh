# Sourced by scripts/setup.sh and scripts/test.sh: find_python prints the first Python >= 3.11
# ($PYTHON, python3.11, ...), the one taomake's own venv is made with.
find_python() {
  for candidate in "${PYTHON:-}" python3.11 python3.12 python3.13 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      command -v "$candidate"; return 0
    fi
  done
  echo "error: taomake needs Python >= 3.11 (set PYTHON=/path/to/python3.11)" >&2
  return 2
}
