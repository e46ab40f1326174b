#!/bin/sh
# bubblewrap's own test suite against ljspawn's bwrap form (a manual yardstick, not part of
# `make test`: the suite is bubblewrap's, not in this repository; see bench/README.md).
#
#   sh bench/bwrap-suite.sh BUBBLEWRAP_CHECKOUT [TRY_SYSCALL]
#
# BUBBLEWRAP_CHECKOUT: a checkout of bubblewrap (its tests/ is used; v0.11.1 is what the
# counts in bench/README.md were taken with). TRY_SYSCALL: its tests' try-syscall helper, built
# (test-seccomp.py needs it; without it that script is not run).
# Environment: BWRAP (what is tested; default a link named `bwrap` to target/release/ljspawn),
# MODES (default "root rootless setuid"; setuid: a 4755 root copy of the binary, made here),
# BENCH_USER (ljtest), SUITE_TIMEOUT (seconds per script, 300), KEEP=1 keeps the logs,
# REFERENCE=/usr/bin/bwrap also runs the suite with that bwrap (root, rootless) and counts how
# many of the points it passes ljspawn passes too.
# Needs bash, setpriv, timeout; test-seccomp.py needs /usr/bin/python3 with Debian's
# python3-seccomp and python3-tap.
# Runs as root. The scripts stop at their first failure (set -e); here each runs in a copy
# changed to go on: a test point is `not ok` when any command of its block failed (bash's ERR
# trap, with set -e's exceptions) or a `fatal` assertion fired in it.
set -eu

src=${1:?usage: bwrap-suite.sh BUBBLEWRAP_CHECKOUT [TRY_SYSCALL]}
try_syscall=${2:-}
[ -f "$src/tests/test-run.sh" ] || { echo "bwrap-suite: $src/tests/test-run.sh: not found" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "bwrap-suite: must run as root" >&2; exit 2; }
here=$(cd "$(dirname "$0")/.." && pwd)
user=${BENCH_USER:-ljtest}
modes=${MODES:-root rootless setuid}
limit=${SUITE_TIMEOUT:-300}
id "$user" >/dev/null 2>&1 || { echo "bwrap-suite: no user $user (run tests/prepare.sh)" >&2; exit 2; }

work=$(mktemp -d /tmp/lj-bwrap-suite.XXXXXX)
chmod 0755 "$work"
[ -n "${KEEP:-}" ] || trap 'rm -rf "$work"' EXIT

# The binary under test, reachable by the user: a copy, and a link named bwrap to it.
mkdir -m 0755 "$work/bin" "$work/suid"
if [ -n "${BWRAP:-}" ]; then
    bin=$BWRAP
else
    install -m 0755 "$here/target/release/ljspawn" "$work/bin/ljspawn"
    ln -s ljspawn "$work/bin/bwrap"
    bin=$work/bin/bwrap
fi
if echo "$modes" | grep -qw setuid; then
    install -o root -g root -m 4755 "$(readlink -f "$bin")" "$work/suid/ljspawn"
    ln -s ljspawn "$work/suid/bwrap"
fi

# The suite's copy, changed to go on after a failure.
cp -r "$src/tests" "$work/tests"
[ -z "$try_syscall" ] || install -m 0755 "$try_syscall" "$work/tests/try-syscall"
t=$work/tests
sed -i 's/^set -xeuo pipefail$/set -xuo pipefail/' "$t"/test-*.sh
cat >> "$t/libtest.sh" <<'EOF'
# bwrap-suite.sh: go on after a failure, and mark the test point it happened in.
set +e
set -E
__lj_fail=0
trap '__lj_fail=1' ERR
fatal() { echo "FATAL: $*" 1>&2; __lj_fail=1; return 1; }
__lj_ok() {
    if [ "$__lj_fail" = 1 ]; then echo "not ok $*"; else echo "ok $*"; fi
    __lj_fail=0
}
EOF
sed -i 's/^\( *\)echo ok \$test_count "\$@"$/\1__lj_ok $test_count "$@"/' "$t/test-run.sh"
sed -i 's/echo "ok - /__lj_ok "- /' "$t"/test-specifying-*.sh
chmod -R a+rX "$work/tests"

run_as() { # MODE CMD...: the suite's scripts run from a directory the user can write
    mode=$1; shift
    case $mode in
    root) (cd "$t" && "$@") ;;
    *) (cd "$t" && setpriv --reuid="$user" --regid="$user" --init-groups env HOME=/tmp "$@") ;;
    esac
}

# run_suite LABEL BINARY MODE: the suite's TAP points in $work/LABEL-MODE.tap, as
# "SCRIPT: ok|not ok N DESCRIPTION".
run_suite() {
    label=$1 b=$2 mode=$3
    log=$work/$label-$mode.tap
    : > "$log"
    for s in test-run.sh test-specifying-pidns.sh test-specifying-userns.sh test-seccomp.py; do
        out=$work/$label-$mode-$s
        case $s in
        *.py)
            [ -x "$t/try-syscall" ] || { echo "# $s not run (no try-syscall)" >> "$log"; continue; }
            run_as "$mode" env BWRAP="$b" timeout "$limit" /usr/bin/python3 "$t/$s" > "$out.out" 2> "$out.err" || true ;;
        *)
            run_as "$mode" env BWRAP="$b" timeout "$limit" bash "$t/$s" > "$out.out" 2> "$out.err" || true ;;
        esac
        sed "s|^|$s: |" "$out.out" | grep -E "^$s: (not )?ok" >> "$log" || true
        if grep -q '^1\.\.0 # SKIP' "$out.out"; then
            echo "# $s skipped: $(grep '^1\.\.0' "$out.out")" >> "$log"
        fi
    done
}

# The points that passed (not skipped), as "SCRIPT: N DESCRIPTION".
passed() { grep -E '^[^ ]+: ok ' "$1" | grep -v '# SKIP' | sed 's/: ok /: /' | sort; }

summary() { # LOG: the counts, then each failure
    pass=$(passed "$1" | wc -l)
    skip=$(grep -E '^[^ ]+: ok ' "$1" | grep -c '# SKIP' || true)
    fail=$(grep -Ec '^[^ ]+: not ok' "$1" || true)
    echo "$pass passed, $fail failed, $skip skipped"
}

if [ -n "${REFERENCE:-}" ]; then
    for mode in root rootless; do
        run_suite ref "$REFERENCE" "$mode"
        echo "reference $REFERENCE, $mode: $(summary "$work/ref-$mode.tap")"
    done
fi
for mode in $modes; do
    case $mode in
    setuid) b=$work/suid/bwrap ;;
    *) b=$bin ;;
    esac
    run_suite lj "$b" "$mode"
    echo "$mode: $(summary "$work/lj-$mode.tap")"
    ref=$work/ref-$mode.tap
    if [ -f "$ref" ]; then
        passed "$ref" > "$work/ref-$mode.pass"
        passed "$work/lj-$mode.tap" > "$work/lj-$mode.pass"
        both=$(comm -12 "$work/ref-$mode.pass" "$work/lj-$mode.pass" | wc -l)
        echo "    of the reference's $(wc -l < "$work/ref-$mode.pass") passed points: $both passed"
    fi
    grep -E '^[^ ]+: not ok|^# ' "$work/lj-$mode.tap" | sed 's/^/    /' || true
done
[ -z "${KEEP:-}" ] || echo "logs: $work"
