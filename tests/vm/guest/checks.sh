#!/bin/sh
# The checks of the kernel VM tier, run inside the guest by /init2 (`checks.sh all`), each in a
# fresh shell with a time limit; `checks.sh NAME` runs one. Each check's output goes between
# `LJVM-BEGIN NAME` and `LJVM-END NAME STATUS` lines on stdout (the second serial port), and
# tests/tests/vm.rs turns each into the nextest test vm::NAME, failing with this output.
#
# The guest: Debian bookworm's kernel (6.1), pure cgroup v2 at /sys/fs/cgroup, a tmpfs root,
# the static ljspawn in /lj/bin (and a setuid copy in /lj/setuid), ljbuild beside both (and ljail
# with ljail-supervisor in /lj/bin), a
# busybox world and an empty store on an ext4 disk at /mnt/disk, the user ljtest (uid 1000) with
# subordinate ids 100000-165535.

export PATH=/bin
LJ=/lj/bin/ljspawn
SLJ=/lj/setuid/ljspawn
W=/mnt/disk/worlds/busybox
CG=/sys/fs/cgroup
IP=/lj/ip
NOTE_OOM='ljspawn: note: the jail reached its memory limit and the OOM killer killed a process in it'
USERNS_MSG='unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone = 0)'

fail() {
    echo "FAIL: $*"
    exit 1
}

# run CMD...: runs it, shows it and its output; status in $RC, output (stdout and stderr) in $OUT.
run() {
    echo "+ $*"
    OUT=$("$@" 2>&1)
    RC=$?
    [ -n "$OUT" ] && printf '%s\n' "$OUT" | sed 's/^/  | /'
    echo "  = $RC"
}
# urun SCRIPT: as run, for a shell script run by the user ljtest (a login as `su` makes it).
urun() {
    echo "+ (ljtest) $1"
    OUT=$(su -s /bin/sh ljtest -c "$1" 2>&1)
    RC=$?
    [ -n "$OUT" ] && printf '%s\n' "$OUT" | sed 's/^/  | /'
    echo "  = $RC"
}
# wait_for TEST...: until `test TEST...` holds, at most 60 s (a loaded TCG guest is slow).
wait_for() {
    i=0
    while ! test "$@" && [ $i -lt 300 ]; do sleep 0.2; i=$((i+1)); done
}
want_rc() { [ "$RC" = "$1" ] || fail "exit status $RC, wanted $1"; }
has() { printf '%s\n' "$OUT" | grep -qF -- "$1" || fail "the output lacks: $1"; }
hasnt() { ! printf '%s\n' "$OUT" | grep -qF -- "$1" || fail "the output has: $1"; }
# lines: the output's lines, without the ones ljspawn's own notes add.
is() { [ "$OUT" = "$1" ] || fail "the output is not: $1"; }

userns() {
    echo "$1" > /proc/sys/kernel/unprivileged_userns_clone || fail "cannot set kernel.unprivileged_userns_clone"
    echo "(kernel.unprivileged_userns_clone = $1)"
}
# jail_cgroup DIR NAME: the cgroup ljail made in DIR for jail NAME of a lightjail root other
# than the caller's default (the tests' LIGHTJAIL_ROOT): ljail-NAME:HASH, exactly one.
jail_cgroup() {
    set -- "$1"/ljail-"$2":[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]
    [ $# = 1 ] && [ -d "$1" ] || fail "not one jail cgroup: $*"
    G=$1
}

no_jail_cgroups() {
    left=$(find "$CG" -name 'lightjail-*' -type d 2>/dev/null)
    [ -z "$left" ] || fail "jail cgroups left behind: $left"
}
# reaped_jail_cgroups: as no_jail_cgroups, once setuid mode's root helper, which removes a
# jail's cgroup after its ljspawn exited (asynchronously), has had its time (at most 60 s).
reaped_jail_cgroups() {
    i=0
    while [ -n "$(find "$CG" -name 'lightjail-*' -type d 2>/dev/null)" ] && [ $i -lt 300 ]; do sleep 0.2; i=$((i+1)); done
    no_jail_cgroups
}
# gone PATTERN: wait (at most 60 s) until no process's command line matches PATTERN (a jail
# dies with its SIGKILLed ljspawn through a parent-death signal: asynchronously).
gone() {
    i=0
    while ps -o args | grep -v grep | grep -q -- "$1" && [ $i -lt 300 ]; do sleep 0.2; i=$((i+1)); done
}
# A copy of the busybox world owned by the user (rootless jails copy up only what they own).
user_world() {
    [ -d /home/ljtest/world ] && return
    cp -a "$W" /home/ljtest/world && chown -R ljtest:ljtest /home/ljtest/world
}

# ---------------------------------------------------------------- the machine itself

check_kernel_layout() {
    run uname -r
    case $OUT in 6.1.*) ;; *) fail "not Debian 12's 6.1 kernel" ;; esac
    run grep -E ' cgroup2? ' /proc/mounts
    has "cgroup2 $CG"
    ! grep -q ' cgroup ' /proc/mounts || fail "a cgroup v1 hierarchy is mounted: not a pure v2 host"
    run cat $CG/cgroup.controllers
    for c in memory pids cpu; do has "$c"; done
    run cat /proc/sys/kernel/unprivileged_userns_clone
    [ "$RC" = 0 ] || fail "no kernel.unprivileged_userns_clone (not a Debian kernel?)"
    run grep -E 'overlay|ext4' /proc/filesystems
    has overlay
    has ext4
    run grep ' /mnt/disk ' /proc/mounts
    has ext4
    run $IP link add ljt0 type veth peer name ljt1
    want_rc 0
    run $IP -o link show ljt1
    has ljt1
    $IP link del ljt0
    run ip link add ljb0 type bridge
    want_rc 0
    run ip link add link ljb0 ljm0 type macvlan
    want_rc 0
    ip link del ljm0 2>/dev/null
    ip link del ljb0
}

# ---------------------------------------------------------------- cgroup v2 limits as root

check_root_memory_oom() {
    userns 1
    # busybox tail keeps its whole input when it holds no newline: N MiB of zeros in memory.
    run $LJ --root $W --memory 16M -- /bin/sh -c 'head -c 4194304 /dev/zero | tail | wc -c'
    want_rc 0
    is 4194304
    run $LJ --root $W -- /bin/sh -c 'head -c 33554432 /dev/zero | tail | wc -c'
    want_rc 0
    is 33554432
    run $LJ --root $W --memory 16M -- /bin/sh -c 'cat /sys/fs/cgroup/memory.max 2>/dev/null; head -c 33554432 /dev/zero | tail >/dev/null'
    want_rc 137
    has "$NOTE_OOM"
    no_jail_cgroups
}

# Sizes without a unit are MiB (issue 14, item 4); the smallest accepted limit starts a
# process under cgroup v2's accounting (kernel memory included); a smaller one is refused.
check_root_memory_sizes() {
    userns 1
    $LJ --root $W --memory 100 -- /bin/sleep 100 &
    lj=$!
    d=$CG/lightjail-$lj
    # (Once ljspawn has written it: the directory comes first.)
    i=0
    while [ "$(cat $d/memory.max 2>/dev/null)" != 104857600 ] && [ $i -lt 300 ]; do sleep 0.2; i=$((i+1)); done
    run cat $d/memory.max
    kill $lj
    wait $lj
    is 104857600
    run $LJ --root $W --memory 1M -- /bin/sh -c 'echo ran'
    want_rc 0
    is ran
    run $LJ --root $W --memory 1048575B -- /bin/sh -c 'echo RAN'
    want_rc 2
    hasnt RAN
    has 'ljspawn: --memory 1048575B is too small to start a process in the jail: give at least 1M'
    no_jail_cgroups
}

check_root_pids() {
    userns 1
    $LJ --root $W --pids 32 -- /bin/sh -c '( i=0; while [ $i -lt 100 ]; do sleep 100 & i=$((i+1)); done ) 2>/dev/null; n=0; for p in /proc/[0-9]*; do n=$((n+1)); done; echo procs $n; sleep 3; echo end' > /tmp/pids.out 2>&1 &
    lj=$!
    # Once the bomb is over (the jail counted its processes), while the jail still sleeps.
    i=0
    while ! grep -q procs /tmp/pids.out 2>/dev/null && [ $i -lt 300 ]; do sleep 0.2; i=$((i+1)); done
    d=$CG/lightjail-$lj
    run cat $d/pids.max $d/pids.current $d/pids.events
    has 32
    max=$(sed -n 's/^max //p' $d/pids.events)
    wait $lj
    RC=$?
    OUT=$(cat /tmp/pids.out)
    echo "jail: $OUT (status $RC)"
    want_rc 0
    has end
    n=$(printf '%s\n' "$OUT" | sed -n 's/^procs //p')
    [ -n "$n" ] && [ "$n" -le 32 ] && [ "$n" -ge 25 ] || fail "procs in the jail: $n (want 25..32)"
    [ "${max:-0}" -gt 0 ] || fail "no fork was refused (pids.events max = $max)"
    no_jail_cgroups
}

check_root_cpus() {
    userns 1
    $LJ --root $W --cpus 0.5 -- /bin/sh -c 'end=$(($(date +%s) + 4)); while [ $(date +%s) -lt $end ]; do :; done' &
    lj=$!
    d=$CG/lightjail-$lj
    wait_for -f $d/cpu.stat
    sleep 0.5
    run cat $d/cpu.max
    is "50000 100000"
    u0=$(sed -n 's/^usage_usec //p' $d/cpu.stat)
    t0=$(cut -d' ' -f1 /proc/uptime)
    sleep 2
    u1=$(sed -n 's/^usage_usec //p' $d/cpu.stat)
    t1=$(cut -d' ' -f1 /proc/uptime)
    run cat $d/cpu.stat
    thr=$(sed -n 's/^nr_throttled //p' $d/cpu.stat)
    wait $lj
    share=$(awk -v a="$u0" -v b="$u1" -v s="$t0" -v e="$t1" 'BEGIN { printf "%.2f", (b - a) / 1e6 / (e - s) }')
    echo "busy loop under --cpus 0.5: $share of a CPU, throttled $thr times"
    awk -v s="$share" 'BEGIN { exit !(s <= 0.6 && s >= 0.2) }' || fail "share $share not about 0.5"
    [ "${thr:-0}" -gt 0 ] || fail "never throttled"
    no_jail_cgroups
}

check_root_cgroup_cleanup() {
    userns 1
    run $LJ --root $W --memory 64M --pids 20 --cpus 1 -- /bin/true
    want_rc 0
    no_jail_cgroups
    # A SIGKILLed ljspawn cannot remove its cgroup: the jail dies with it, the next run reaps it.
    $LJ --root $W --pids 10 --memory 64M -- /bin/sleep 100 &
    lj=$!
    d=$CG/lightjail-$lj
    wait_for -d $d
    [ -d "$d" ] || fail "no cgroup $d for the running jail"
    sleep 0.5
    kill -KILL $lj
    wait $lj
    gone 'sleep 100'
    run ps -o pid,args
    hasnt 'sleep 100'
    run $LJ --root $W --pids 10 -- /bin/true
    want_rc 0
    [ ! -d "$d" ] || fail "$d of the killed ljspawn survived the next run"
    no_jail_cgroups
}

# attach_trace: tracefs's cgroup:cgroup_attach_task, the kernel's record of every task moved
# between cgroups, in a trace instance of its own ($TR: its trace). A control move (a sleep
# into a cgroup of its own) shows it records.
attach_trace() {
    T=/tmp/lj-tracefs
    mkdir -p $T
    grep -q " $T tracefs " /proc/mounts || mount -t tracefs nodev $T || fail "cannot mount tracefs"
    mkdir -p $T/instances/born
    echo 1 > $T/instances/born/events/cgroup/cgroup_attach_task/enable || fail "no cgroup:cgroup_attach_task event"
    TR=$T/instances/born/trace
    mkdir $CG/lj-trace-control || fail "cannot make the control cgroup"
    sleep 100 &
    echo $! > $CG/lj-trace-control/cgroup.procs || fail "cannot move the control process"
    grep -q "dst_path=/lj-trace-control pid=$! " $TR || fail "the trace did not record the control move: $(cat $TR)"
    kill $!
    wait $! 2>/dev/null
    rmdir $CG/lj-trace-control
}
# born_in LJPID DIR: the jail of the ljspawn LJPID (its PID 1 and program) ran in its cgroup
# DIR/lightjail-LJPID (waited for, at most 60 s), and the trace shows no task but ljspawn itself
# moved there: the jail was born in it (clone3's CLONE_INTO_CGROUP).
born_in() {
    d=$2/lightjail-$1
    i=0
    while [ "$(cat $d/cgroup.procs 2>/dev/null | wc -l)" -lt 2 ] && [ $i -lt 300 ]; do sleep 0.2; i=$((i+1)); done
    n=$(cat $d/cgroup.procs 2>/dev/null | wc -l)
    [ "$n" -ge 2 ] || fail "the jail's PID 1 and program are not in $d: $n processes"
}
# moved_in LJPID: the tasks the trace saw moved into lightjail-LJPID, other than ljspawn.
moved_in() {
    grep "cgroup_attach_task:.*dst_path=[^ ]*/lightjail-$1 pid=" $TR | grep -v " pid=$1 "
}

# The jail's PID 1 is born in its cgroup v2 (no running task moved: each move waits for an RCU
# grace period), as root, rootless in a delegated scope, and setuid with a grant.
check_cgroup_born_in() {
    userns 1
    attach_trace
    echo "+ (root) $LJ --root $W --memory 64M --pids 64 -- /bin/sleep 100"
    $LJ --root $W --memory 64M --pids 64 -- /bin/sleep 100 &
    lj=$!
    born_in $lj $CG
    kill $lj
    wait $lj
    m=$(moved_in $lj)
    [ -z "$m" ] || fail "root: tasks other than ljspawn ($lj) moved into the jail's cgroup: $m"
    grep "lightjail-$lj" $TR | sed 's/^/  trace| /'
    run $LJ --root $W --memory 64M --pids 64 -- /bin/echo RAN
    want_rc 0
    is RAN
    # Rootless, alone in a scope of its delegated subtree: ljspawn in a leaf of its own, the
    # jail born in its cgroup beside it.
    user_world
    delegate
    inscope_script
    APP=$(dirname $SCOPE)
    uscope "/tmp/inscope $APP/run-b1.scope $LJ --root /home/ljtest/world --pids 16 -- /bin/sleep 100 & echo \$! > /tmp/born-lj; wait"  &
    wait_for -s /tmp/born-lj
    lj=$(cat /tmp/born-lj)
    born_in $lj $APP/run-b1.scope
    kill $lj
    wait
    m=$(moved_in $lj)
    [ -z "$m" ] || fail "rootless: tasks other than ljspawn ($lj) moved into the jail's cgroup: $m"
    grep "lightjail-$lj" $TR | sed 's/^/  trace| /'
    # Setuid, granted limits, in the root cgroup (which gives its children the controllers).
    echo 'limits allow ljtest memory=64M pids=64 cpus=1' > /etc/lightjail.conf
    echo '+memory +pids +cpu' > $CG/cgroup.subtree_control || fail "cannot enable the controllers"
    rm -f /tmp/born-lj
    echo "+ (ljtest) $SLJ --root $W --memory 16M --pids 16 -- /bin/sleep 100"
    su -s /bin/sh ljtest -c "$SLJ --root $W --memory 16M --pids 16 -- /bin/sleep 100 & echo \$! > /tmp/born-lj; wait" &
    wait_for -s /tmp/born-lj
    lj=$(cat /tmp/born-lj)
    born_in $lj $CG
    kill $lj
    wait
    m=$(moved_in $lj)
    [ -z "$m" ] || fail "setuid: tasks other than ljspawn ($lj) moved into the jail's cgroup: $m"
    grep "lightjail-$lj" $TR | sed 's/^/  trace| /'
    rm -f /etc/lightjail.conf /tmp/born-lj
    reaped_jail_cgroups
    echo 0 > $T/instances/born/events/cgroup/cgroup_attach_task/enable
    rmdir $T/instances/born
}

# ---------------------------------------------------------------- networks: the modules of 6.1

# listen PORT: a one-connection TCP listener on the host side (busybox nc), its input in
# /tmp/got; got: wait for it and check that the jail's message arrived.
listen() {
    rm -f /tmp/got
    nc -l -p "$1" > /tmp/got &
    NC=$!
    # Listening (the port in state 0A of /proc/net/tcp or tcp6: busybox nc listens on :: where
    # the kernel has IPv6), at most 60 s.
    port=$(printf '%04X' "$1")
    i=0
    while ! cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | grep -q ":$port 0*:0000 0A" && [ $i -lt 300 ]; do
        sleep 0.2
        i=$((i+1))
    done
    [ $i -lt 300 ] || fail "nc never listened on port $1"
}
got() {
    i=0
    while ! grep -q hello-from-jail /tmp/got 2>/dev/null && [ $i -lt 300 ]; do sleep 0.2; i=$((i+1)); done
    kill $NC 2>/dev/null
    wait $NC 2>/dev/null
    grep -q hello-from-jail /tmp/got || fail "the jail's message did not arrive"
}

check_net_bridge_macvlan() {
    userns 1
    ip link add ljbr0 type bridge && ip addr add 10.79.0.1/24 dev ljbr0 && ip link set ljbr0 up ||
        fail "cannot make the bridge"
    listen 7001
    run $LJ --root $W --net bridge:ljbr0 --ip 10.79.0.2/24 --gateway 10.79.0.1 -- /bin/sh -c 'ip -o -4 addr show eth0; ip route; echo hello-from-jail | nc -w 5 10.79.0.1 7001'
    want_rc 0
    has 10.79.0.2/24
    has "default via 10.79.0.1"
    got
    # macvlan on one end of a veth pair, the host's address on the other.
    $IP link add ljv0 type veth peer name ljv1 && ip addr add 10.80.0.1/24 dev ljv1 &&
        ip link set ljv0 up && ip link set ljv1 up || fail "cannot make the veth pair"
    listen 7002
    run $LJ --root $W --net macvlan:ljv0 --ip 10.80.0.2/24 -- /bin/sh -c 'echo hello-from-jail | nc -w 5 10.80.0.1 7002'
    want_rc 0
    got
    # Setuid: only as /etc/lightjail.conf grants.
    userns 0
    urun "$SLJ --root $W --net bridge:ljbr0 --ip 10.79.0.3/24 -- /bin/echo RAN"
    want_rc 125
    hasnt RAN
    echo 'bridge ljbr0 allow ljtest' > /etc/lightjail.conf
    listen 7003
    urun "$SLJ --root $W --net bridge:ljbr0 --ip 10.79.0.3/24 -- /bin/sh -c 'echo hello-from-jail | nc -w 5 10.79.0.1 7003'"
    rm -f /etc/lightjail.conf
    want_rc 0
    got
    # The host end goes with the jail's network namespace, which the kernel removes
    # asynchronously: at most 60 s.
    i=0
    while [ -n "$($IP -o link show master ljbr0)" ] && [ $i -lt 300 ]; do sleep 0.2; i=$((i+1)); done
    run $IP -o link show master ljbr0
    is ""
    ip link del ljv0
    ip link del ljbr0
}

# ---------------------------------------------------------------- rootless, delegated v2 subtree

# As systemd delegates to a user: user.slice/user-1000.slice/user@1000.service owned by the
# user with the controllers enabled; the user's session in app.slice/run-1.scope below it.
delegate() {
    svc=$CG/user.slice/user-1000.slice/user@1000.service
    mkdir -p $svc
    for d in $CG $CG/user.slice $CG/user.slice/user-1000.slice; do
        echo '+memory +pids +cpu' > $d/cgroup.subtree_control || fail "cannot enable controllers in $d"
    done
    chown ljtest:ljtest $svc $svc/cgroup.procs $svc/cgroup.subtree_control $svc/cgroup.threads
    su -s /bin/sh ljtest -c "mkdir -p $svc/app.slice/run-1.scope && echo '+memory +pids +cpu' > $svc/cgroup.subtree_control && echo '+memory +pids +cpu' > $svc/app.slice/cgroup.subtree_control" ||
        fail "the user cannot use its delegated subtree"
    SCOPE=$svc/app.slice/run-1.scope
}
# inscope DIR CMD...: CMD as the only process of a new cgroup DIR (as `systemd-run --scope`
# gives one): ljspawn makes the jail's cgroup inside its caller's, which a v2 cgroup with other
# processes in it cannot hold.
inscope_script() {
    cat > /tmp/inscope <<'EOS'
#!/bin/sh
mkdir "$1" && echo $$ > "$1/cgroup.procs" && shift && exec "$@"
EOS
    chmod 755 /tmp/inscope
}
# uscope SCRIPT: urun in the user's delegated scope (root moves the login there, as systemd).
uscope() {
    echo "+ (ljtest in $SCOPE) $1"
    OUT=$(sh -c 'echo $$ > "$1"/cgroup.procs && exec su -s /bin/sh ljtest -c "$2"' - "$SCOPE" "$1" 2>&1)
    RC=$?
    [ -n "$OUT" ] && printf '%s\n' "$OUT" | sed 's/^/  | /'
    echo "  = $RC"
}

check_rootless_delegated_limits() {
    userns 1
    user_world
    # Outside a delegated subtree: refused, naming what is missing.
    urun "$LJ --root /home/ljtest/world --pids 10 -- /bin/echo RAN"
    want_rc 125
    hasnt RAN
    has "delegated to you; $CG is not yours"
    delegate
    inscope_script
    APP=$(dirname $SCOPE)
    # Not alone in its cgroup (a sleep of the login's is there too): refused, saying why.
    uscope "sleep 30 & $LJ --root /home/ljtest/world --pids 10 -- /bin/echo RAN; rc=\$?; kill \$!; exit \$rc"
    want_rc 125
    hasnt RAN
    has "has other processes"
    uscope "/tmp/inscope $APP/run-2.scope $LJ --root /home/ljtest/world --memory 16M -- /bin/sh -c 'id -u; head -c 4194304 /dev/zero | tail | wc -c'"
    want_rc 0
    is "0
4194304"
    uscope "/tmp/inscope $APP/run-3.scope $LJ --root /home/ljtest/world --memory 16M -- /bin/sh -c 'head -c 33554432 /dev/zero | tail >/dev/null'"
    want_rc 137
    has "$NOTE_OOM"
    uscope "/tmp/inscope $APP/run-4.scope $LJ --root /home/ljtest/world --pids 16 -- /bin/sh -c '( i=0; while [ \$i -lt 50 ]; do sleep 100 & i=\$((i+1)); done ) 2>/dev/null; n=0; for p in /proc/[0-9]*; do n=\$((n+1)); done; echo procs \$n'"
    want_rc 0
    n=$(printf '%s\n' "$OUT" | sed -n 's/^procs //p')
    [ -n "$n" ] && [ "$n" -le 16 ] && [ "$n" -ge 10 ] || fail "procs in the jail: $n (want 10..16)"
    # The jail's cgroup inside the caller's (the scope), with the limit; the scope as it was after.
    # (The jail runs until the cgroup was read, at most 60 s; then SIGTERM, forwarded: 143.) The
    # jail's cgroup is lightjail-PID, beside ljspawn's own leaf lightjail-PID.ljspawn (made first,
    # cpu.max "max 100000"); its limit is read once the jail is in it (written before the jail
    # is born there or moved in).
    uscope "/tmp/inscope $APP/run-5.scope $LJ --root /home/ljtest/world --cpus 0.5 -- /bin/sleep 100 & lj=\$!; i=0; while ! grep -qs . $APP/run-5.scope/lightjail-*[0-9]/cgroup.procs && [ \$i -lt 300 ]; do sleep 0.2; i=\$((i+1)); done; cat $APP/run-5.scope/lightjail-*[0-9]/cpu.max; kill \$lj; wait \$lj; [ \$? = 143 ]"
    want_rc 0
    has "50000 100000"
    run cat $APP/run-5.scope/cgroup.subtree_control
    is ""
    # A caller capped at 8M by its own cgroup asks for 16M: the jail is held at 8M. (ljspawn
    # shares that cap, so the OOM killer may pick it instead of the jail's `tail`, leaving its
    # cgroups behind: the jail's command raises its own oom_score_adj, as a caller would, so
    # the victim is the jail's.)
    mkdir $APP/run-6.scope && echo 8388608 > $APP/run-6.scope/memory.max && echo 0 > $APP/run-6.scope/memory.swap.max &&
        chown ljtest:ljtest $APP/run-6.scope/cgroup.procs $APP/run-6.scope/cgroup.subtree_control $APP/run-6.scope ||
        fail "cannot make the capped scope"
    uscope "sh -c 'echo \$\$ > $APP/run-6.scope/cgroup.procs && exec $LJ --root /home/ljtest/world --memory 16M -- /bin/sh -c \"echo 1000 >/proc/self/oom_score_adj && head -c 12582912 /dev/zero | tail >/dev/null\"'"
    want_rc 137
    run find $CG/user.slice -name 'lightjail-*'
    is ""
}

# ---------------------------------------------------------------- ljail's jails on pure v2

# json_field NAME FIELD: a number of `ljail status NAME --json` (no python in the guest).
json_field() {
    $LJAIL status "$1" --json | sed -n "s/^ *\"$2\": \([0-9]*\),*$/\1/p"
}

# ljail's own supervisor on a pure v2 host. `ljail start` as the only process of a cgroup (as
# under `systemd-run --scope -p Delegate=yes`) gives the jail a cgroup of its own there,
# OWN/ljail-NAME with the supervisor in `supervisor/` and ljspawn alone in `payload/`, so the
# jail's limits hold (ljspawn beside its supervisor would refuse them); a running jail is frozen
# there for a snapshot; `stop` leaves nothing. With other processes in OWN, ljspawn's refusal.
check_ljail_v2_cgroups() {
    userns 1
    inscope_script
    # As a host's init would have it: the controllers given to the root's children.
    echo '+memory +pids +cpu' > $CG/cgroup.subtree_control || fail "cannot enable controllers in $CG"
    LJAIL=/lj/bin/ljail
    export LIGHTJAIL_ROOT=/mnt/disk/ljail
    run /lj/bin/ljbuild -q world import busybox $W
    want_rc 0
    run $LJAIL -q create m --world busybox --memory 16M --pids 20 -- /bin/sh -c 'echo up; exec sleep 1000'
    want_rc 0
    S=$CG/ljail-m.scope
    run /tmp/inscope $S $LJAIL start m
    want_rc 0
    jail_cgroup $S m
    sup=$(json_field m supervisor_pid)
    run cat $S/cgroup.procs
    is ""
    run cat $G/supervisor/cgroup.procs
    is "$sup"
    run cat $G/payload/lightjail-*[0-9]/memory.max $G/payload/lightjail-*[0-9]/pids.max
    is "16777216
20"
    run $LJAIL snapshot m s1
    want_rc 0
    run cat $G/payload/cgroup.freeze
    is 0
    run $LJAIL stop m
    want_rc 0
    [ ! -e $G ] || fail "$G left after stop"
    # The limit holds: 32M of memory in a jail held at 16M is OOM-killed.
    run $LJAIL -q create o --world busybox --memory 16M -- /bin/sh -c 'head -c 33554432 /dev/zero | tail >/dev/null'
    want_rc 0
    run /tmp/inscope $CG/ljail-o.scope $LJAIL start o
    i=0
    while [ "$($LJAIL status o --json | grep -c '"state": "exited"')" = 0 ] && [ $i -lt 300 ]; do sleep 0.2; i=$((i+1)); done
    run $LJAIL log o
    has "$NOTE_OOM"
    [ "$(json_field o last_exit)" = 137 ] || fail "last exit $(json_field o last_exit), wanted 137"
    run $LJAIL stop o
    [ -z "$(ls -d $CG/ljail-o.scope/ljail-o* 2>/dev/null)" ] || fail "the cgroup of the exited jail o was left after stop"
    # Not alone in its cgroup: no cgroup of its own, and ljspawn says why it cannot limit.
    run /tmp/inscope $CG/ljail-shared.scope sh -c "sleep 30 & $LJAIL start m; rc=\$?; kill \$!; exit \$rc"
    want_rc 1
    has "has other processes"
    [ -z "$(ls -d $CG/ljail-shared.scope/ljail-m* 2>/dev/null)" ] || fail "a jail cgroup was made beside other processes"
    # (The shared scope's processes may still be leaving it.)
    i=0
    while ! rmdir $S $CG/ljail-o.scope $CG/ljail-shared.scope 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
    [ ! -e $S ] && [ ! -e $CG/ljail-o.scope ] && [ ! -e $CG/ljail-shared.scope ] || fail "cannot remove the test's scopes"
    no_jail_cgroups
}

# The same rootless, in the user's delegated subtree.
check_ljail_v2_cgroups_rootless() {
    userns 1
    user_world
    delegate
    inscope_script
    APP=$(dirname $SCOPE)
    LJAIL=/lj/bin/ljail
    E="env LIGHTJAIL_ROOT=/home/ljtest/ljr"
    urun "$E /lj/bin/ljbuild -q world import busybox /home/ljtest/world && $E $LJAIL -q create r --world busybox --memory 16M -- /bin/sh -c 'exec sleep 1000'"
    want_rc 0
    uscope "/tmp/inscope $APP/run-7.scope $E $LJAIL start r"
    want_rc 0
    jail_cgroup $APP/run-7.scope r
    run cat $APP/run-7.scope/cgroup.procs
    is ""
    run cat $G/payload/lightjail-*[0-9]/memory.max
    is 16777216
    uscope "$E $LJAIL stop r"
    want_rc 0
    [ ! -e $G ] || fail "$G left after stop"
    rmdir $APP/run-7.scope
    run find $CG/user.slice -name 'lightjail-*'
    is ""
}

# ---------------------------------------------------------------- overlays on 6.1

# An ephemeral overlay root (--layer) as root and rootless: tmpfs has no user xattrs before 6.6.
check_overlay_root() {
    userns 1
    run $LJ --layer $W -- /bin/sh -c 'echo scratch > /etc/motd && cat /etc/motd && rm /etc/hostname && ls /etc'
    want_rc 0
    has scratch
    hasnt hostname
    [ ! -e $W/etc/motd ] && [ -e $W/etc/hostname ] || fail "the jail changed the world"
    user_world
    urun "$LJ --layer /home/ljtest/world -- /bin/sh -c 'echo scratch > /etc/motd && cat /etc/motd && id -u'"
    want_rc 0
    is "scratch
0"
    [ ! -e /home/ljtest/world/etc/motd ] || fail "the rootless jail changed the world"
    # On 6.1 the upper is on disk, in /var/tmp, while the jail runs; gone after it.
    run ls /var/tmp
    is ""
    $LJ --layer $W -- /bin/sh -c 'echo big > /big; sleep 100' &
    lj=$!
    i=0
    while ! cat /var/tmp/ljspawn-upper.*/upper/big >/dev/null 2>&1 && [ $i -lt 300 ]; do sleep 0.2; i=$((i+1)); done
    run sh -c 'ls -ld /var/tmp/ljspawn-upper.*; cat /var/tmp/ljspawn-upper.*/upper/big'
    want_rc 0
    has "drwx------"
    has big
    # SIGKILL: the jail dies with ljspawn and cannot remove it; the next jail that needs one does.
    kill -KILL $lj
    wait $lj
    sleep 0.5
    run ls /var/tmp
    has ljspawn-upper.
    run $LJ --layer $W -- /bin/true
    want_rc 0
    run ls /var/tmp
    is ""
    # Another user's are not its to remove.
    urun "$LJ --layer /home/ljtest/world -- /bin/sh -c 'sleep 100'" &
    i=0
    while ! ls -l /var/tmp | grep -q ljtest && [ $i -lt 300 ]; do sleep 0.2; i=$((i+1)); done
    sleep 0.5
    kill -KILL $(pidof ljspawn)
    sleep 0.5
    run $LJ --layer $W -- /bin/true
    want_rc 0
    run ls -l /var/tmp
    has ljtest
    urun "$LJ --layer /home/ljtest/world -- /bin/true; ls /var/tmp"
    want_rc 0
    is ""
    # A /var/tmp without user xattrs either: one line that says so.
    mount -t tmpfs tmp /var/tmp
    run $LJ --layer $W -- /bin/true
    umount /var/tmp
    want_rc 125
    has "tmpfs has no user xattrs (Linux < 6.6), and the overlay's upper layer cannot be made in /var/tmp instead: operation not supported"
}

# Layers built with --upper as root (whiteouts, an opaque directory), then stacked: the legacy
# lowerdir= path (no lowerdir+ before 6.8), with names that need escaping; and the same stack
# read rootless (userxattr keeps root-built and rootless layers interchangeable).
check_overlay_stack() {
    userns 1
    s=/mnt/disk/stack
    rm -rf $s
    mkdir -p $s/l1 $s/w1 $s/l2 $s/w2
    run $LJ --layer $W --upper $s/l1 --work $s/w1 -- /bin/sh -c 'mkdir /d && echo one > /d/a && echo one > /d/b && echo 1 > /one && rm /etc/hostname'
    want_rc 0
    # Names with the characters lowerdir= and the legacy mount options cannot hold.
    mv $s/l2 "$s/l:2,x"
    run $LJ --layer $W --layer $s/l1 --upper "$s/l:2,x" --work $s/w2 -- /bin/sh -c 'rm -r /d && mkdir /d && echo two > /d/c && echo 2 > /two'
    want_rc 0
    chmod 0755 $s "$s/l:2,x" $s/l1
    for who in root ljtest; do
        script="$LJ --layer $W --layer $s/l1 --layer '$s/l:2,x' -- /bin/sh -c 'cat /one /two; ls /d; cat /d/c; ls /etc/hostname 2>&1'"
        if [ $who = root ]; then run sh -c "$script"; else urun "$script"; fi
        want_rc 1
        is "1
2
c
two
ls: /etc/hostname: No such file or directory"
    done
    rm -rf $s
}

# ---------------------------------------------------------------- ljbuild on 6.1, store on ext4

check_ljbuild_root() {
    userns 1
    export LIGHTJAIL_ROOT=/mnt/disk/lj
    run /lj/bin/ljbuild world import busybox $W
    want_rc 0
    mkdir -p /tmp/b1 /tmp/b2
    printf '%s\n' 'name vm/base' 'version 1.0' '---' 'echo base > /base' 'rm /etc/hostname' > /tmp/b1/Jailfile
    printf '%s\n' 'name vm/app' 'version 1.0' 'from vm/base' '---' 'cat /base > /app' 'echo app >> /app' > /tmp/b2/Jailfile
    run /lj/bin/ljbuild /tmp/b1/Jailfile
    want_rc 0
    run /lj/bin/ljbuild /tmp/b2/Jailfile
    want_rc 0
    # stdout only (ljbuild says on stderr which version it runs).
    run sh -c "/lj/bin/ljbuild run vm/app -- /bin/sh -c 'cat /app; ls /etc/hostname 2>/dev/null; echo end' 2>/dev/null"
    want_rc 0
    is "base
app
end"
}

# ---------------------------------------------------------------- a host that forbids userns

check_userns_forbidden_rootless() {
    userns 0
    user_world
    urun "$LJ --root /home/ljtest/world -- /bin/echo RAN"
    want_rc 125
    hasnt RAN
    has "$USERNS_MSG"
    has "make install-setuid"
    urun "$SLJ --dry-run --root /home/ljtest/world -- /bin/true"
    want_rc 0
    has "mode: setuid"
}

check_setuid_jails() {
    userns 0
    user_world
    urun "$SLJ --root $W -- /bin/sh -c 'id -u; cat /etc/lj-world; hostname'"
    want_rc 0
    has "world: busybox"
    urun "$SLJ --layer /home/ljtest/world -- /bin/sh -c 'echo scratch > /etc/motd && cat /etc/motd && id -u'"
    want_rc 0
    is "scratch
0"
    # A user-built stack, kept uppers and all, as the setuid binary mounts it.
    s=/home/ljtest/stack
    urun "mkdir -p $s/l1 $s/w1 $s/l2 $s/w2 && $SLJ --layer /home/ljtest/world --upper $s/l1 --work $s/w1 -- /bin/sh -c 'mkdir /d; echo 1 > /d/a; rm /etc/hostname' && $SLJ --layer /home/ljtest/world --layer $s/l1 --upper $s/l2 --work $s/w2 -- /bin/sh -c 'rm -r /d; mkdir /d; echo 2 > /d/b' && $SLJ --layer /home/ljtest/world --layer $s/l1 --layer $s/l2 -- /bin/sh -c 'ls /d; ls /etc/hostname 2>&1'"
    want_rc 1
    is "b
ls: /etc/hostname: No such file or directory"
    # The root-built world under the setuid binary, as an overlay.
    urun "$SLJ --layer $W -- /bin/sh -c 'echo x > /tmp/x && cat /tmp/x'"
    want_rc 0
    is x
}

# An unmodified `flatpak run` of an installed app, through a link named bwrap to the setuid
# ljspawn, where unprivileged user namespaces are forbidden; the rootless binary cannot.
check_setuid_flatpak() {
    userns 0
    [ -x /usr/bin/flatpak ] || fail "no flatpak in the guest (flatpak is not installed on the host: make deps)"
    [ -d /mnt/disk/flatpak/sys ] || fail "no flatpak installation on the disk"
    mkdir -p /lj/sbwrap /lj/ubwrap
    ln -sf "$SLJ" /lj/sbwrap/bwrap
    ln -sf "$LJ" /lj/ubwrap/bwrap
    env="HOME=/tmp/fp-home XDG_RUNTIME_DIR=/tmp/fp-run FLATPAK_SYSTEM_DIR=/mnt/disk/flatpak/sys"
    urun "mkdir -p /tmp/fp-home /tmp/fp-run && chmod 700 /tmp/fp-run && $env FLATPAK_BWRAP=/lj/sbwrap/bwrap /usr/bin/flatpak --system run org.lj.Hello"
    want_rc 0
    has "hello from flatpak"
    has "name=org.lj.Hello"
    printf '%s\n' "$OUT" | grep -qx 1000 || fail "the app did not run as uid 1000"
    urun "$env FLATPAK_BWRAP=/lj/ubwrap/bwrap /usr/bin/flatpak --system run org.lj.Hello"
    [ "$RC" != 0 ] || fail "rootless ljspawn ran flatpak with user namespaces forbidden"
    hasnt "hello from flatpak"
    has "$USERNS_MSG"
}

check_setuid_limits() {
    userns 0
    # The jail's cgroup is inside the caller's (here the root cgroup, which the administrator
    # lets give these controllers to children); ljspawn never enables them for a caller.
    echo '+memory +pids +cpu' > $CG/cgroup.subtree_control || fail "cannot enable the controllers"
    urun "$SLJ --root $W --memory 16M -- /bin/echo RAN"
    want_rc 125
    hasnt RAN
    echo 'limits allow ljtest memory=64M pids=64 cpus=1' > /etc/lightjail.conf
    # Alone in a cgroup of root's that gives its children no controller: setuid ljspawn does
    # not change that cgroup for the caller (rootless could not either), it refuses.
    inscope_script
    echo "+ (ljtest alone in root's $CG/lj-not-yours.scope) $SLJ --memory 16M"
    OUT=$(/tmp/inscope $CG/lj-not-yours.scope su -s /bin/sh ljtest -c "$SLJ --root $W --memory 16M -- /bin/echo RAN" 2>&1)
    RC=$?
    printf '%s\n' "$OUT" | sed 's/^/  | /'
    want_rc 125
    hasnt RAN
    has "is not yours to change"
    [ -z "$(cat $CG/lj-not-yours.scope/cgroup.subtree_control)" ] || fail "setuid ljspawn changed root's cgroup"
    rmdir $CG/lj-not-yours.scope
    urun "$SLJ --root $W --memory 16M --pids 20 -- /bin/sh -c 'head -c 33554432 /dev/zero | tail >/dev/null'"
    want_rc 137
    has "$NOTE_OOM"
    urun "$SLJ --root $W --memory 128M -- /bin/echo RAN"
    want_rc 125
    hasnt RAN
    rm -f /etc/lightjail.conf
    reaped_jail_cgroups
}

check_setuid_escapes() {
    userns 0
    echo SECRET > /root/secret
    chmod 0600 /root/secret
    hn=$(hostname)
    urun "$SLJ --layer $W -- /bin/sh -c '
r=\$(stat -c %d:%i /); [ \"\$r\" = \"\$(stat -c %d:%i /..)\" ] && echo root-is-top
cd /; for i in 1 2 3 4 5 6 7 8; do cd ..; done; [ \"\$(stat -c %d:%i .)\" = \"\$r\" ] && echo dotdot-stays
grep ^PPid: /proc/1/status | tr -d \"\\t\"
mount -t tmpfs none /tmp 2>/dev/null && echo MOUNTED
mount -o remount,rw / 2>/dev/null && echo REMOUNTED
umount /proc 2>/dev/null && echo UMOUNTED
mknod /tmp/b b 8 0 2>/dev/null && echo MKNOD-BLOCK
hostname evil 2>/dev/null && echo SETHOSTNAME
{ echo 1 > /proc/sys/vm/drop_caches; } 2>/dev/null && echo PROC-SYS
unshare -U true 2>/dev/null && echo NESTED-USERNS
echo end'"
    want_rc 0
    is "root-is-top
dotdot-stays
PPid:0
end"
    [ "$(hostname)" = "$hn" ] || fail "the host's hostname changed"
    urun "$SLJ --root $W --seccomp none -- /bin/echo RAN"
    want_rc 125
    hasnt RAN
    has "--seccomp none"
    # A kept capability is that one only, and held in the jail's own user namespace.
    urun "$SLJ --root $W --cap-add net_admin -- /bin/sh -c 'grep -E \"^Cap(Eff|Bnd)\" /proc/self/status | tr -d \"\\t\"'"
    want_rc 0
    is "CapEff:0000000000001000
CapBnd:0000000000001000"
    urun "$SLJ --root $W --ro-bind /root/secret /etc/hostname -- /bin/cat /etc/hostname"
    want_rc 125
    hasnt SECRET
    urun "$SLJ --root / -- /bin/cat /root/secret"
    hasnt SECRET
    rm -f /root/secret
}

check_setuid_ljbuild() {
    userns 0
    urun "export LIGHTJAIL_ROOT=/mnt/disk/user/lj; mkdir -p /tmp/ub && printf '%s\n' 'name vm/user' 'version 1.0' '---' 'echo built-by-\$(id -u) > /hello' > /tmp/ub/Jailfile && /lj/setuid/ljbuild world import busybox /home/ljtest/world && /lj/setuid/ljbuild /tmp/ub/Jailfile && /lj/setuid/ljbuild run vm/user -- /bin/cat /hello"
    want_rc 0
    has built-by-0
}

# Setuid --idmap-layer on 6.1 (idmapped ext4 layer under overlayfs, kernel >= 5.19), with the
# disk-backed upper: a root-owned store granted in /etc/lightjail.conf; its owners show as the
# jail's ids, the jail changes its files in the upper, the store stays as it was.
check_setuid_idmap_layer() {
    userns 0
    st=/mnt/disk/store
    rm -rf $st
    mkdir -p $st/worlds
    chmod 0755 $st $st/worlds
    cp -a $W $st/worlds/bb && chown -R 0:0 $st/worlds/bb && chmod 0700 $st/worlds/bb
    echo secret > $st/worlds/bb/etc/secret && chown 42:42 $st/worlds/bb/etc/secret && chmod 0600 $st/worlds/bb/etc/secret
    echo victim > $st/worlds/bb/etc/victim
    urun "$SLJ --subids --idmap-layer $st/worlds/bb -- /bin/echo RAN"
    want_rc 125
    hasnt RAN
    has "store"
    echo "store $st allow ljtest" > /etc/lightjail.conf
    urun "$SLJ --subids --cap-add container --idmap-layer $st/worlds/bb -- /bin/sh -c 'stat -c \"%u:%g %a %n\" /etc/passwd /etc/secret; echo added >> /etc/passwd && rm /etc/victim && cat /etc/secret && test ! -e /etc/victim && echo DONE'"
    rm -f /etc/lightjail.conf
    want_rc 0
    is "0:0 644 /etc/passwd
42:42 600 /etc/secret
secret
DONE"
    [ "$(cat $st/worlds/bb/etc/victim)" = victim ] || fail "the store changed"
    grep -q added $st/worlds/bb/etc/passwd && fail "the store's passwd changed"
    run ls /var/tmp
    is ""
    rm -rf $st
}

# `ljail exec` into a jail of the setuid copy, where unprivileged user namespaces are forbidden
# (the host setuid mode is for): the command runs in the jail's namespaces, as the jail's own
# program (ids, capabilities, no_new_privs, seccomp), and exits with its status; root's jail of
# the same executable and the user's own plain process are refused.
check_setuid_ljail_exec() {
    userns 0
    user_world
    LJAIL=/lj/bin/ljail
    E="env LIGHTJAIL_ROOT=/home/ljtest/ljx LJSPAWN=$SLJ"
    urun "$E /lj/bin/ljbuild -q world import busybox /home/ljtest/world && $E $LJAIL -q create x --world busybox -- /bin/sh -c 'echo ready > /state; exec sleep 1000' && $E $LJAIL start x"
    want_rc 0
    P1=$(su -s /bin/sh ljtest -c "$E $LJAIL status x --json" | sed -n 's/^ *"pid": \([0-9]*\),*$/\1/p')
    [ -n "$P1" ] || fail "no pid in ljail status x --json"
    i=0
    while [ -z "$(cat /proc/$P1/task/$P1/children 2>/dev/null)" ] && [ $i -lt 300 ]; do sleep 0.2; i=$((i+1)); done
    PROG=$(cat /proc/$P1/task/$P1/children 2>/dev/null | cut -d' ' -f1)
    [ -n "$PROG" ] || fail "jail x runs no program"
    urun "$E $LJAIL exec x -- /bin/sh -c 'i=0; while [ ! -e /state ] && [ \$i -lt 300 ]; do sleep 0.2; i=\$((i+1)); done; hostname; cat /state; for n in user mnt pid net uts ipc cgroup; do readlink /proc/self/ns/\$n; done; grep -E \"^(Uid|Gid|Cap...|NoNewPrivs|Seccomp):\" /proc/self/status' </dev/null"
    want_rc 0
    # (Ids as the jail sees them: its uid 0 is the user, as for its program.)
    want="x
ready
$(for n in user mnt pid net uts ipc cgroup; do readlink /proc/$PROG/ns/$n; done)
Uid:	0	0	0	0
Gid:	0	0	0	0
$(grep -E '^(Cap...|NoNewPrivs|Seccomp):' /proc/$PROG/status)"
    is "$want"
    # Seen from the host while both run: the same ids (the user's), capabilities and filter.
    urun "$E $LJAIL exec x -- /bin/sleep 61 </dev/null >/dev/null 2>&1 &"
    J=
    i=0
    while [ -z "$J" ] && [ $i -lt 300 ]; do
        for p in /proc/[0-9]*; do
            [ "$(tr -d '\0' < $p/cmdline 2>/dev/null)" = /bin/sleep61 ] && J=${p#/proc/}
        done
        [ -n "$J" ] || sleep 0.2
        i=$((i+1))
    done
    [ -n "$J" ] || fail "no joined sleep 61"
    st() { grep -E '^(Uid|Gid|Groups|Cap...|NoNewPrivs|Seccomp|Seccomp_filters):' /proc/$1/status; }
    OUT=$(st $J)
    kill $J
    want=$(st $PROG)
    is "$want"
    has "Uid:	1000	1000	1000	1000"
    has "NoNewPrivs:	1"
    urun "$E $LJAIL exec x -- /bin/sh -c 'exit 7' </dev/null"
    want_rc 7
    # Root's jail of the same (setuid) executable, and a plain process of the user's.
    $SLJ --root $W -- /bin/sleep 60 </dev/null >/tmp/root-jail.log 2>&1 &
    R=$!
    i=0
    while [ -z "$(cat /proc/$R/task/$R/children 2>/dev/null)" ] && [ $i -lt 300 ]; do sleep 0.2; i=$((i+1)); done
    RP=$(cat /proc/$R/task/$R/children 2>/dev/null | cut -d' ' -f1)
    [ -n "$RP" ] || fail "root's jail did not start: $(cat /tmp/root-jail.log)"
    urun "$SLJ --root /home/ljtest/world --join $RP -- /bin/true </dev/null"
    kill $R
    want_rc 125
    is "ljspawn: jail $RP is not yours"
    urun "sleep 60 & p=\$!; $SLJ --root /home/ljtest/world --join \$p -- /bin/true </dev/null; rc=\$?; kill \$p; exit \$rc"
    want_rc 125
    has "is not the PID 1 of a jail"
    urun "$E $LJAIL stop x"
    want_rc 0
}

ALL="kernel_layout root_memory_oom root_memory_sizes root_pids root_cpus root_cgroup_cleanup net_bridge_macvlan
     rootless_delegated_limits ljail_v2_cgroups ljail_v2_cgroups_rootless overlay_root overlay_stack ljbuild_root
     userns_forbidden_rootless setuid_jails setuid_limits setuid_escapes setuid_ljbuild setuid_idmap_layer
     setuid_flatpak setuid_ljail_exec cgroup_born_in"

case ${1:-all} in
all)
    # `all [NAME...]`: every check, or the ones named ("all" again means every one).
    shift
    want=${*:-all}
    [ "$want" = all ] && want=$ALL
    for c in $want; do
        echo "LJVM-BEGIN $c"
        dmesg -c >/dev/null
        t0=$(cut -d' ' -f1 /proc/uptime)
        timeout -s KILL 180 sh /lj/checks.sh "$c" 2>&1
        rc=$?
        echo "(check took $(awk -v a="$t0" -v b="$(cut -d' ' -f1 /proc/uptime)" 'BEGIN { print b - a }') s)"
        if [ "$rc" != 0 ]; then
            echo "kernel messages during the check:"
            dmesg | sed 's/^/  k| /'
        fi
        echo "LJVM-END $c $rc"
    done
    ;;
*)
    "check_$1"
    echo "ok"
    ;;
esac
