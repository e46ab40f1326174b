# The setup spawn.sh and versus.sh share, sourced (`. bench/common.sh`) from the repository's
# top directory with `set -eu`, after USER_NAME and RUNS are set.
#
#   bench_need TOOL...    exits unless each TOOL is on PATH
#   bench_as_root WHAT    exits unless run as root (WHAT: what else it measures as USER_NAME)
#   bench_setup           creates USER_NAME if missing; makes the scratch directory $dir
#                         (removed on exit, traversable by the user) with $dir/setuid (for
#                         setuid copies) and $dir/json (the user's, for its hyperfine JSON),
#                         a busybox world $W = $dir/w, and AS_USER (run a command as the user)
#   bench_hf AS JSON ARGS...
#                         one hyperfine run (AS: "" for root, or "$AS_USER") of RUNS runs after
#                         10 warm-ups, its JSON in JSON; its output is shown only on failure

bench_need() {
    for t in "$@"; do
        command -v "$t" >/dev/null || { echo "bench: $t is missing (make deps)"; exit 1; }
    done
}

bench_as_root() {
    [ "$(id -u)" = 0 ] || { echo "bench: run as root (it also measures $1, as $USER_NAME)"; exit 1; }
}

bench_setup() {
    id "$USER_NAME" >/dev/null 2>&1 || useradd --create-home --shell /bin/sh "$USER_NAME"
    dir=$(mktemp -d /tmp/lj-bench.XXXXXX)
    trap 'rm -rf --one-file-system "$dir"' EXIT
    chmod 755 "$dir"
    mkdir -m 755 "$dir/setuid"
    mkdir "$dir/json"
    chown "$USER_NAME" "$dir/json"
    worlds/busybox/make-world.sh "$dir/w" >/dev/null
    W=$dir/w
    AS_USER="setpriv --reuid=$USER_NAME --regid=$USER_NAME --init-groups --"
}

bench_hf() {
    as=$1 json=$2
    shift 2
    if ! $as hyperfine -N --warmup 10 --runs "$RUNS" --export-json "$json" "$@" >"$dir/log" 2>&1; then
        cat "$dir/log"
        exit 1
    fi
}
