#!/usr/bin/env bash
# Install everything the tests need (Debian packages, Python packages, throwaway Redis and
# PostgreSQL) and run the whole suite with ruff. Safe to run again. Needs root for apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v chromium >/dev/null || need_apt+=(chromium)
command -v redis-server >/dev/null || need_apt+=(redis-server)
[ -x /usr/lib/postgresql/15/bin/initdb ] || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
  || need_apt+=(postgresql)
command -v wrk >/dev/null || need_apt+=(wrk)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need_apt+=(nginx-light)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "== apt-get install ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

echo "== pip install -e .[test]"
python3 -m pip install -q --disable-pip-version-check -e '.[test]'

if [ -x scripts/services.sh ]; then
  echo "== starting throwaway Redis and PostgreSQL"
  eval "$(bash scripts/services.sh start)"
fi

echo "== ruff"
python3 -m ruff check .
python3 -m ruff format --check .

echo "== pytest"
set +e
python3 -m pytest -q -p no:cacheprovider "$@"
status=$?
set -e
if [ $status -eq 5 ]; then
  echo "pytest collected no tests: failing" >&2
  exit 1
fi
exit $status
