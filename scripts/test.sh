#!/usr/bin/env bash
# Run every test: machine setup, the unit tests, then the Mininet tests under each framework.
#   scripts/test.sh [PYTEST_ARGS...]    e.g. scripts/test.sh -x   or   scripts/test.sh -m sanity
# PYTEST_ARGS go to every pytest run. DYNCAST_TEST_FRAMEWORKS (default "ryu os-ken") names
# the frameworks the Mininet tests run under (each run gets DYNCAST_FRAMEWORK=<name>); without
# PYTEST_ARGS the second and later ones leave out tests marked `heavy`.
# Exit status: 0 only if every run passed. Unit tests that collect nothing count as a failure;
# so does an empty Mininet run, unless PYTEST_ARGS deselected everything in it, and so does a
# Mininet run in which every test was skipped (no root, no OVS: nothing was proven).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PY="$ROOT/.venv/bin/python"
FRAMEWORKS=${DYNCAST_TEST_FRAMEWORKS-ryu os-ken}  # set but empty: no Mininet runs

scripts/setup.sh || { echo "test: setup failed" >&2; exit 1; }

# PostgreSQL (scripts/postgres.sh) for the tests that run the store on it. DYNCAST_TEST_PG_URL is
# always set, so they fail, not skip, when the server is not there. Stopped at the end unless it
# was running before.
pg_was_running=$(scripts/postgres.sh status && echo yes || echo no)
scripts/postgres.sh start >/dev/null || echo "test: PostgreSQL did not start" >&2
[ "$pg_was_running" = yes ] || trap 'scripts/postgres.sh stop' EXIT
DYNCAST_TEST_PG_URL=$(scripts/postgres.sh url)
export DYNCAST_TEST_PG_URL

results=()
failed=0
tails=()  # the last lines each failed run printed, repeated after the summary's lines

# run NAME ALLOW_EMPTY -- command...: run one pytest pass and record how it ended.
run() {
    local name=$1 allow_empty=$2
    shift 3
    echo
    echo "=== $name: $*"
    local started=$SECONDS
    local out
    out=$(mktemp /tmp/dyncast-run.XXXXXX)
    "$@" 2>&1 | tee "$out"
    local rc=${PIPESTATUS[0]}
    local took=$((SECONDS - started))
    local verdict
    case $rc in
        0) verdict=passed ;;
        5) if [ "$allow_empty" = yes ]; then verdict="nothing selected"; else
               verdict="FAILED (no tests collected)"; failed=1; fi ;;
        *) verdict="FAILED (pytest exit $rc)"; failed=1 ;;
    esac
    if [ $rc -eq 0 ] && [ -n "${JUNIT:-}" ] && all_skipped "$JUNIT"; then
        verdict="FAILED (every test was skipped)"; failed=1
    fi
    results+=("$(printf '%-28s %-32s %5d s' "$name" "$verdict" "$took")")
    case $verdict in
        FAILED*) tails+=("--- $name: its last lines" "$(tail -n 25 "$out")") ;;
    esac
    rm -f "$out"
}

# all_skipped REPORT: true when the JUnit report counts tests and every one was skipped.
all_skipped() {
    "$PY" - "$1" <<'PYEOF'
import sys
import xml.etree.ElementTree as ET
suite = ET.parse(sys.argv[1]).getroot()
suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
tests, skipped = int(suite.get("tests", 0)), int(suite.get("skipped", 0))
print(f"test: {tests} tests, {skipped} skipped")
sys.exit(0 if tests > 0 and skipped == tests else 1)
PYEOF
}

# With extra arguments an empty Mininet run may be the caller's selection, not a broken suite.
mininet_allow_empty=$([ $# -gt 0 ] && echo yes || echo no)

run "lint (ruff, mypy)" no -- bash -c '.venv/bin/ruff check . && .venv/bin/mypy'
run "unit" no -- "$PY" -m pytest tests -q "$@"
run "bench smoke: engine" no -- "$PY" bench/engine_scale.py --quick
run "bench smoke: cbench" no -- "$PY" bench/cbench.py --quick
run "bench smoke: control plane" no -- "$PY" bench/control_plane.py --quick
run "bench smoke: intake margin" no -- "$PY" bench/intake_margin.py --quick
run "bench smoke: cluster reports" no -- "$PY" bench/cluster_reports.py --quick
run "bench smoke: cluster flows" no -- "$PY" bench/cluster_flows.py --quick
run "bench smoke: cluster claims" no -- "$PY" bench/cluster_claims.py --quick
if [ -n "$FRAMEWORKS" ]; then  # needs Mininet, as the Mininet runs do
    run "bench smoke: dataplane" no -- "$PY" bench/dataplane.py --quick
    run "bench smoke: steering" no -- "$PY" bench/steering.py --quick
fi
first_fw=1
for fw in $FRAMEWORKS; do
    JUNIT=$(mktemp /tmp/dyncast-junit.XXXXXX)
    # The first framework runs every Mininet test; the others leave out the `heavy` ones (long
    # variants another variant covers, e.g. the learn/bucket restarts) to keep CI well under
    # its time limit, unless PYTEST_ARGS select tests themselves.
    subset=()
    if [ $first_fw -eq 0 ] && [ $# -eq 0 ]; then subset=(-m "not heavy"); fi
    first_fw=0
    run "mininet [$fw]${subset:+ (not heavy)}" "$mininet_allow_empty" -- \
        env DYNCAST_FRAMEWORK="$fw" "$PY" -m pytest mininet_tests -q --durations=15 --junitxml="$JUNIT" \
        "${subset[@]}" "$@"
    rm -f "$JUNIT"
    JUNIT=
done

if [ ${#tails[@]} -gt 0 ]; then
    echo
    echo "=== what each failed run printed last"
    printf '%s\n' "${tails[@]}"
fi
echo
echo "=== summary (the whole run, setup included: $SECONDS s; CI's budget is 45 minutes)"
printf '%s\n' "${results[@]}"
exit $failed
