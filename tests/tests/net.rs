//! End-to-end tests of ljspawn's networking (`--net none|bridge:BR|macvlan:IFACE`, `--ip`,
//! `--gateway`, lightjail's `-f IFACE -i IP`, the grants of `/etc/lightjail.conf`).
//!
//! Nothing here touches the host's interfaces: every test makes its own network namespaces
//! (held by an `unshare --net` process and gone with it, also when the test fails), builds its
//! bridges and veth pairs inside them, and runs ljspawn there (`nsenter --net`). Every address
//! is a private one that exists only in those namespaces. Nothing is mounted in the host's
//! mount table.
//!
//! `/etc/lightjail.conf` is never written on the host: each setuid run happens in a private
//! mount namespace where `/etc` is an overlay holding the test's own file (or none), so these
//! tests neither race each other nor disturb other setuid tests running at the same time.
//!
//! Connectivity is checked with small python3 programs (the jail's root is the host's `/`,
//! read-only): a server that sends its token and prints what its peer sent back and from which
//! address, and a client that does the opposite. busybox `ping` needs raw sockets, which the
//! jail does not have.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use lj_tests::{
    json_get, marker, net_dev_names, parse_flat_json, path_str, procs_with_env, run_with_timeout,
    shell_quote, wait_until, which, Ctx, Json, Mode, NetNs, Output,
};

/// Every test is under `net::`, so that `cargo nextest run -p lj-tests net` selects them all.
mod net {
    lj_tests::mode_tests! {
        prefix = "net::", run = lj_tests::run_ctx;
        two_jails_on_a_bridge: root;
        net_none_reaches_nothing: root rootless setuid;
        macvlan_uplink: root;
        server_in_jail_answers_host: root;
        icmp_echo: root setuid;
        links_removed_on_exit: root;
        links_removed_after_kill: root;
        net_usage_errors: root rootless setuid;
        missing_link_125: root;
        rootless_refused: rootless;
        setuid_without_grant_refused: setuid;
        setuid_with_grant: setuid;
        conf_malformed: setuid;
        conf_not_root_only: setuid;
        dry_run_network: root setuid;
        pasta_outbound_only: root rootless setuid;
    }
}

// ---------------------------------------------------------------- helpers

/// How long a helper command (ip, python3 on the namespace side) may run. A server started
/// with [`NetNs::spawn`] waits for the test's jails, so it outlasts several of them.
const CMD_TIMEOUT: Duration = Duration::from_secs(90);

/// How long ljspawn may run in these tests (each jail takes well under a second on an idle
/// machine, several on a loaded one).
const JAIL_TIMEOUT: Duration = Duration::from_secs(60);

/// How long the kernel may take to destroy a dead jail's network namespace (and its links):
/// the kernel's netns cleanup work runs asynchronously and, on a busy machine that makes and
/// drops many namespaces, seconds late. A deadline, not a timing check.
const NETNS_GONE: Duration = Duration::from_secs(30);

/// How long a client retries while the server's jail may not be up yet (seconds, as an
/// argument of [`CLIENT`]).
const CLIENT_RETRY: &str = "30";

/// How long the test waits for something a running jail does (a link appearing, its
/// processes, its `--json-status` line).
const JAIL_UP: Duration = Duration::from_secs(30);

/// Accepts `count` connections on ADDR:PORT; to each sends TOKEN and a newline, then prints
/// `peer ADDRESS sent LINE`. Gives up (traceback, status 1) when no connection comes for 60 s
/// (the test's other jails run before the one that connects, each slow on a loaded machine).
const SERVER: &str = r#"
import socket, sys
addr, port, token, count = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((addr, port))
s.listen(8)
s.settimeout(60)
for _ in range(count):
    c, peer = s.accept()
    c.settimeout(30)
    c.sendall(token.encode() + b"\n")
    line = c.makefile().readline().strip()
    print("peer", peer[0], "sent", line, flush=True)
    c.close()
"#;

/// Connects to ADDR:PORT, prints `got LINE` for the server's line and sends TOKEN back. While
/// the connection is refused, the address does not answer or the attempt times out, it retries
/// for up to RETRY seconds (the server's jail may not be up yet); then, or on any other failure
/// (no route: ENETUNREACH), it prints `ERR ERRNO-NAME` and exits 1.
const CLIENT: &str = r#"
import errno, socket, sys, time
addr, port, token = sys.argv[1], int(sys.argv[2]), sys.argv[3]
deadline = time.monotonic() + float(sys.argv[4])
while True:
    s = socket.socket()
    s.settimeout(3)
    try:
        s.connect((addr, port))
        break
    except OSError as e:
        s.close()
        again = e.errno in (errno.ECONNREFUSED, errno.EHOSTUNREACH) or isinstance(e, TimeoutError)
        if not again or time.monotonic() > deadline:
            print("ERR", errno.errorcode.get(e.errno, type(e).__name__), flush=True)
            sys.exit(1)
        time.sleep(0.05)
s.settimeout(30)
f = s.makefile("rw")
print("got", f.readline().strip(), flush=True)
f.write(token + "\n")
f.flush()
s.close()
"#;

/// Sends one ICMP echo request to ADDR through an ICMP datagram socket (what `ping` uses
/// without privileges) and prints `reply TYPE from ADDRESS`; then tries a raw socket and prints
/// `raw ERRNO-NAME` (or `raw allowed`).
const PING: &str = r#"
import errno, socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
s.settimeout(15)
s.sendto(struct.pack("!BBHHH", 8, 0, 0, 0, 1) + b"lightjail", (sys.argv[1], 0))
data, peer = s.recvfrom(1024)
print("reply", data[0], "from", peer[0], flush=True)
try:
    socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    print("raw allowed")
except OSError as e:
    print("raw", errno.errorcode.get(e.errno, e.errno))
"#;

/// Waits (at most about [`JAIL_TIMEOUT`]: 1200 rounds of 50 ms) for `/home/go`, the test's gate
/// directory bound there: a jail that runs until the test says so.
const GATE: &str = "i=0; while [ ! -e /home/go ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done";

/// `ip`, or a SKIP.
fn need_ip(cx: &Ctx) -> bool {
    if which("ip").is_none() {
        cx.skip("ip (iproute2) not installed");
        return false;
    }
    true
}

/// A python3 that is also there in a jail whose root is the host's `/` (the jail's PATH does
/// not have the caller's), or a SKIP.
fn need_python(cx: &Ctx) -> Option<String> {
    let found = ["/usr/bin/python3", "/usr/local/bin/python3", "/bin/python3"]
        .into_iter()
        .find(|p| Path::new(p).is_file());
    if found.is_none() {
        cx.skip("python3 not installed in /usr/bin, /usr/local/bin or /bin");
    }
    found.map(str::to_string)
}

/// Run `argv` (as root, the test process) under the helper timeout.
fn run_cmd(argv: &[&str]) -> Output {
    let mut cmd = Command::new(argv[0]);
    cmd.args(&argv[1..]);
    let mut out =
        run_with_timeout(cmd, None, CMD_TIMEOUT).unwrap_or_else(|e| panic!("cannot run {}: {e}", argv[0]));
    out.command = describe(argv);
    out
}

fn describe(argv: &[&str]) -> String {
    argv.iter().map(|a| shell_quote(a)).collect::<Vec<_>>().join(" ")
}

/// What the network tests do with a [`NetNs`] beyond the basics.
trait NetNsExt {
    /// `ARGV...` run in the namespace, as root.
    fn exec(&self, argv: &[&str]) -> Output;
    /// `ARGV...` in the namespace in the background; join the handle for its output.
    fn spawn(&self, argv: &[&str]) -> thread::JoinHandle<Output>;
    /// The root-side prefix that runs a command line (ljspawn) in the namespace. With `etc`,
    /// also in a private mount namespace where `/etc` is an overlay (its upper layer on a tmpfs
    /// mounted at `mnt`) whose `/etc/lightjail.conf` is `conf`: the host's `/etc` is never
    /// written. (No fresh sysfs on `/sys`, unlike `ip netns exec`: ljspawn asks the kernel, not
    /// sysfs, for the interfaces of its namespace.)
    fn prefix(&self, etc: Option<(&Path, Conf, &Path)>) -> Vec<String>;
    /// A bridge `br` with address `cidr`, up.
    fn bridge(&self, br: &str, cidr: &str);
    /// The `lj*` links (host ends of jails' veth pairs).
    fn lj_links(&self) -> Vec<String>;
    /// The names of the links enslaved to bridge `br`.
    fn ports(&self, br: &str) -> Vec<String>;
    /// The promiscuity count of `dev` (a macvlan on a veth holds it at 1 or more).
    fn promiscuity(&self, dev: &str) -> u32;
    /// A veth pair: `here` in this namespace (up, no address) and `there` in `other` with
    /// address `cidr` (up): an "uplink" with something on the other side.
    fn uplink(&self, here: &str, other: &NetNs, there: &str, cidr: &str);
}

impl NetNsExt for NetNs {
    fn exec(&self, argv: &[&str]) -> Output {
        let mut v = self.enter();
        v.extend(argv.iter().map(|s| s.to_string()));
        run_cmd(&v.iter().map(String::as_str).collect::<Vec<_>>())
    }

    fn spawn(&self, argv: &[&str]) -> thread::JoinHandle<Output> {
        let mut v = self.enter();
        v.extend(argv.iter().map(|s| s.to_string()));
        thread::spawn(move || run_cmd(&v.iter().map(String::as_str).collect::<Vec<_>>()))
    }

    fn prefix(&self, etc: Option<(&Path, Conf, &Path)>) -> Vec<String> {
        let mut v = self.enter();
        let Some((mnt, conf, conf_file)) = etc else { return v };
        let (text, uid, mode) = match conf {
            Conf::Absent => (None, 0, 0o644),
            Conf::Text(t) => (Some(t), 0, 0o644),
            Conf::Owned(t, uid, mode) => (Some(t), uid, mode),
        };
        if let Some(t) = text {
            fs::write(conf_file, t).unwrap_or_else(|e| panic!("write {}: {e}", conf_file.display()));
        }
        v.extend(lj_tests::private_etc_argv(mnt, text.map(|_| conf_file), uid, mode));
        v
    }

    fn bridge(&self, br: &str, cidr: &str) {
        self.ip(&["link", "add", br, "type", "bridge"]);
        self.ip(&["addr", "add", cidr, "dev", br]);
        self.ip(&["link", "set", br, "up"]);
    }

    fn lj_links(&self) -> Vec<String> {
        self.links().into_iter().filter(|n| n.starts_with("lj")).collect()
    }

    fn ports(&self, br: &str) -> Vec<String> {
        self.ip(&["-o", "link", "show", "master", br])
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n).to_string())
            .collect()
    }

    fn promiscuity(&self, dev: &str) -> u32 {
        let text = self.ip(&["-d", "link", "show", dev]);
        let mut words = text.split_whitespace();
        words
            .find(|&w| w == "promiscuity")
            .and_then(|_| words.next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no promiscuity in `ip -d link show {dev}`:\n{text}"))
    }

    fn uplink(&self, here: &str, other: &NetNs, there: &str, cidr: &str) {
        self.ip(&["link", "add", here, "type", "veth", "peer", "name", there, "netns", &other.pid()]);
        self.ip(&["link", "set", here, "up"]);
        other.ip(&["addr", "add", cidr, "dev", there]);
        other.ip(&["link", "set", there, "up"]);
    }
}

/// What `/etc/lightjail.conf` is for a setuid run.
#[derive(Clone, Copy)]
enum Conf<'a> {
    /// No file.
    Absent,
    /// This text, root-owned, mode 0644.
    Text(&'a str),
    /// This text with this owner (uid) and mode.
    Owned(&'a str, u32, u32),
}

/// ljspawn of this mode with `args`, in namespace `ns` ([`NetNs::prefix`], then setpriv for
/// the rootless and setuid modes); setuid runs see `conf` as `/etc/lightjail.conf`.
fn lj_conf(cx: &Ctx, ns: &NetNs, conf: Conf, args: &[&str]) -> Output {
    let scratch = cx.root_tempdir();
    let mnt = scratch.join("etc");
    fs::create_dir(&mnt).expect("mkdir etc mount point");
    let conf_file = scratch.join("lightjail.conf");
    let etc = (cx.mode == Mode::Setuid).then_some((mnt.as_path(), conf, conf_file.as_path()));
    let mut argv = ns.prefix(etc);
    if let Some(user) = &cx.run_as {
        let setpriv = which("setpriv").expect("setpriv (Ctx checked it)");
        argv.push(path_str(&setpriv));
        argv.push(format!("--reuid={}", user.uid));
        argv.push(format!("--regid={}", user.gid));
        argv.extend(["--init-groups", "--reset-env", "--"].map(String::from));
    }
    argv.push(path_str(&cx.bin));
    argv.extend(args.iter().map(|s| s.to_string()));
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]).current_dir(&cx.dir);
    let mut out =
        run_with_timeout(cmd, None, JAIL_TIMEOUT).unwrap_or_else(|e| panic!("cannot run ljspawn: {e}"));
    let conf_note = match (cx.mode, conf) {
        (Mode::Setuid, Conf::Absent) => " [no /etc/lightjail.conf]".to_string(),
        (Mode::Setuid, Conf::Text(t) | Conf::Owned(t, ..)) => format!(" [/etc/lightjail.conf: {t:?}]"),
        _ => String::new(),
    };
    out.command = format!(
        "[{}]{conf_note} {}",
        cx.mode,
        describe(&argv.iter().map(String::as_str).collect::<Vec<_>>())
    );
    out
}

/// [`lj_conf`] without a `/etc/lightjail.conf`.
fn lj(cx: &Ctx, ns: &NetNs, args: &[&str]) -> Output {
    lj_conf(cx, ns, Conf::Absent, args)
}

/// The root ljspawn (whatever the mode of the test), for controls.
fn lj_root(cx: &Ctx, ns: &NetNs, args: &[&str]) -> Output {
    let mut argv = ns.prefix(None);
    argv.push(path_str(&cx.dir.join("bin/ljspawn")));
    argv.extend(args.iter().map(|s| s.to_string()));
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]).current_dir(&cx.dir);
    let mut out =
        run_with_timeout(cmd, None, JAIL_TIMEOUT).unwrap_or_else(|e| panic!("cannot run ljspawn: {e}"));
    out.command = format!("[root] {}", describe(&argv.iter().map(String::as_str).collect::<Vec<_>>()));
    out
}

/// Waits (up to [`NETNS_GONE`]) for the host ends of the jails' veth pairs to go from `ns` and
/// from its bridge `br0`: the kernel removes them with a jail's network namespace, a few
/// milliseconds after ljspawn returns.
#[track_caller]
fn assert_veths_gone(ns: &NetNs, what: &str) {
    let gone = wait_until(NETNS_GONE, || ns.lj_links().is_empty() && ns.ports("br0").is_empty());
    assert!(gone, "{what}: veths left {NETNS_GONE:?} after the jails: links {:?}", ns.links());
}

/// Arguments for a jail whose root is the host's `/` running `python3 -c PROG ARGS...`.
fn py_jail<'a>(net: &[&'a str], python: &'a str, prog: &'a str, args: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["--root", "/"];
    v.extend_from_slice(net);
    v.extend_from_slice(&["--", python, "-c", prog]);
    v.extend_from_slice(args);
    v
}

#[track_caller]
fn assert_lines(out: &Output, want: &[&str]) {
    assert_eq!(out.lines(), want, "unexpected stdout\n{}", out.report());
}

#[track_caller]
fn assert_stderr_has(out: &Output, want: &str) {
    assert!(out.stderr.contains(want), "stderr does not say {want:?}\n{}", out.report());
}

/// `ip -o -4 addr show dev eth0` in a jail: `ADDR/PREFIX` of eth0, from a line like
/// `2: eth0    inet 10.77.0.2/24 scope global eth0\ ...`.
fn inet_of(out: &Output) -> Vec<String> {
    let mut v = Vec::new();
    for line in out.stdout.lines() {
        let mut w = line.split_whitespace();
        while let Some(x) = w.next() {
            if x == "inet" {
                v.extend(w.next().map(str::to_string));
            }
        }
    }
    v
}

// ---------------------------------------------------------------- connectivity

fn two_jails_on_a_bridge(cx: &Ctx) {
    let Some(py) = need_python(cx) else { return };
    if !need_ip(cx) {
        return;
    }
    let ns = NetNs::make();
    ns.bridge("br0", "10.77.0.1/24");
    let (tok_a, tok_b) = (marker("a"), marker("b"));
    // The server takes two connections: the jail at .3, then the one at .4.
    let server = cx
        .ljspawn()
        .wrapper(ns.prefix(None))
        .args(py_jail(
            &["--net", "bridge:br0", "--ip", "10.77.0.2/24"],
            &py,
            SERVER,
            &["10.77.0.2", "5000", &tok_a, "2"],
        ))
        .timeout(JAIL_TIMEOUT)
        .start();
    let client = |ip: &str, port: &str, tok: &str, retry: &str| {
        let ip = format!("{ip}/24");
        lj(
            cx,
            &ns,
            &py_jail(&["--net", "bridge:br0", "--ip", &ip], &py, CLIENT, &["10.77.0.2", port, tok, retry]),
        )
    };
    assert_lines(&client("10.77.0.3", "5000", &tok_b, CLIENT_RETRY).ok(), &[&format!("got {tok_a}")]);
    // Control, while the server's jail still runs: a port nobody listens on is refused.
    let refused = client("10.77.0.3", "5001", "x", "0");
    assert_eq!(refused.status(), 1, "{}", refused.report());
    assert_lines(&refused, &["ERR ECONNREFUSED"]);
    assert_lines(&client("10.77.0.4", "5000", "third", CLIENT_RETRY).ok(), &[&format!("got {tok_a}")]);
    // Straight over the bridge: the server sees each client's own address.
    assert_lines(
        &server.wait().ok(),
        &[&format!("peer 10.77.0.3 sent {tok_b}"), "peer 10.77.0.4 sent third"],
    );
    assert_veths_gone(&ns, "two jails");
}

fn net_none_reaches_nothing(cx: &Ctx) {
    let Some(py) = need_python(cx) else { return };
    if !need_ip(cx) {
        return;
    }
    let ns = NetNs::make();
    ns.bridge("br0", "10.77.0.1/24");
    let tok = marker("srv");
    let server = ns.spawn(&[&py, "-c", SERVER, "10.77.0.1", "5000", &tok, "1"]);
    for net in [&[][..], &["--net", "none"][..]] {
        // Nothing but loopback, and no route anywhere.
        let mut args = vec!["--root", "/"];
        args.extend_from_slice(net);
        args.extend_from_slice(&["--", "/bin/cat", "/proc/net/dev"]);
        let out = lj(cx, &ns, &args).ok();
        assert_eq!(net_dev_names(&out.stdout), ["lo"], "only lo in the jail\n{}", out.report());
        let out = lj(cx, &ns, &py_jail(net, &py, CLIENT, &["10.77.0.1", "5000", "x", "0"]));
        assert_eq!(out.status(), 1, "the bridge address is reachable with --net none\n{}", out.report());
        assert_lines(&out, &["ERR ENETUNREACH"]);
    }
    // The jails plugged nothing into the namespace.
    assert_eq!(ns.links(), ["lo", "br0"], "links in the test namespace");
    // Control: the same client in a bridged (root) jail reaches the listener.
    let out = lj_root(
        cx,
        &ns,
        &py_jail(
            &["--net", "bridge:br0", "--ip", "10.77.0.2/24"],
            &py,
            CLIENT,
            &["10.77.0.1", "5000", "ctl", CLIENT_RETRY],
        ),
    );
    assert_lines(&out.ok(), &[&format!("got {tok}")]);
    let server = server.join().expect("server thread");
    assert_lines(&server.ok(), &["peer 10.77.0.2 sent ctl"]);
}

fn macvlan_uplink(cx: &Ctx) {
    let Some(py) = need_python(cx) else { return };
    if !need_ip(cx) {
        return;
    }
    // The jail's side: a veth "uplink" upl; the far side: its peer, 10.78.0.1, in another
    // namespace.
    let ns = NetNs::make();
    let far = NetNs::make();
    ns.uplink("upl", &far, "upr", "10.78.0.1/24");
    let tok = marker("far");
    let server = far.spawn(&[&py, "-c", SERVER, "10.78.0.1", "5000", &tok, "2"]);
    // lightjail's form: -f IFACE -i IP (prefix 24 by default).
    let script = format!(
        "ip -o -4 addr show dev eth0; ip -d link show dev eth0 | grep -o 'macvlan mode bridge'; \
         ip route show default; exec {py} -c \"$0\" \"$@\""
    );
    let out = lj(
        cx,
        &ns,
        &[
            "--root",
            "/",
            "-f",
            "upl",
            "-i",
            "10.78.0.5",
            "--",
            "/bin/sh",
            "-c",
            &script,
            CLIENT,
            "10.78.0.1",
            "5000",
            "lightjail",
            CLIENT_RETRY,
        ],
    )
    .ok();
    assert_eq!(inet_of(&out), ["10.78.0.5/24"], "eth0's address\n{}", out.report());
    let lines = out.lines();
    assert_eq!(lines[1..], ["macvlan mode bridge".to_string(), format!("got {tok}")], "{}", out.report());
    // --net macvlan:IFACE with a prefix and a gateway.
    let out = lj(
        cx,
        &ns,
        &[
            "--root",
            "/",
            "--net",
            "macvlan:upl",
            "--ip",
            "10.78.0.6/16",
            "--gateway",
            "10.78.0.1",
            "--",
            "/bin/sh",
            "-c",
            &script,
            CLIENT,
            "10.78.0.1",
            "5000",
            "netmacvlan",
            CLIENT_RETRY,
        ],
    )
    .ok();
    assert_eq!(inet_of(&out), ["10.78.0.6/16"], "eth0's address\n{}", out.report());
    let lines = out.lines();
    assert_eq!(lines.len(), 4, "{}", out.report());
    assert_eq!(lines[1], "macvlan mode bridge", "{}", out.report());
    assert!(lines[2].starts_with("default via 10.78.0.1 dev eth0"), "default route\n{}", out.report());
    assert_eq!(lines[3], format!("got {tok}"), "{}", out.report());
    let server = server.join().expect("server thread");
    assert_lines(&server.ok(), &["peer 10.78.0.5 sent lightjail", "peer 10.78.0.6 sent netmacvlan"]);
}

fn server_in_jail_answers_host(cx: &Ctx) {
    let Some(py) = need_python(cx) else { return };
    if !need_ip(cx) {
        return;
    }
    let ns = NetNs::make();
    ns.bridge("br0", "10.77.0.1/24");
    let (tok_jail, tok_host) = (marker("jail"), marker("host"));
    let server = cx
        .ljspawn()
        .wrapper(ns.prefix(None))
        .args(py_jail(
            &["--net", "bridge:br0", "--ip", "10.77.0.2/24", "--gateway", "10.77.0.1"],
            &py,
            SERVER,
            &["0.0.0.0", "8080", &tok_jail, "1"],
        ))
        .timeout(JAIL_TIMEOUT)
        .start();
    // The host's side of the bridge (the test namespace) connects to the jail's address.
    let client = ns.exec(&[&py, "-c", CLIENT, "10.77.0.2", "8080", &tok_host, CLIENT_RETRY]);
    let server = server.wait();
    assert_lines(&client.ok(), &[&format!("got {tok_jail}")]);
    assert_lines(&server.ok(), &[&format!("peer 10.77.0.1 sent {tok_host}")]);
    assert_veths_gone(&ns, "server jail");
}

fn icmp_echo(cx: &Ctx) {
    let Some(py) = need_python(cx) else { return };
    if !need_ip(cx) {
        return;
    }
    let ns = NetNs::make();
    ns.bridge("br0", "10.77.0.1/24");
    let user = cx.run_as.as_ref().map_or("ljtest", |u| u.name.as_str()).to_string();
    let conf = format!("bridge br0 allow {user}\n");
    // As the jail's root and as another user: echo sockets for every group, raw ones for none.
    for who in [&[][..], &["--user", "1000:1000"]] {
        let mut args = vec!["--root", "/", "--net", "bridge:br0", "--ip", "10.77.0.2/24"];
        args.extend_from_slice(who);
        args.extend_from_slice(&["--", &py, "-c", PING, "10.77.0.1"]);
        let out = lj_conf(cx, &ns, Conf::Text(&conf), &args).ok();
        assert_lines(&out, &["reply 0 from 10.77.0.1", "raw EPERM"]);
    }
    assert_veths_gone(&ns, "ping jails");
}

// ---------------------------------------------------------------- cleanup

/// A jail running in the background in a test namespace (root mode) until the test opens its
/// gate, with `--json-status` to learn its PID 1.
struct Gated {
    jail: Option<lj_tests::Running>,
    gate: lj_tests::TempDir,
    _status_dir: lj_tests::TempDir,
    status: std::path::PathBuf,
}

impl Gated {
    fn start(cx: &Ctx, ns: &NetNs, net: &[&str], tag: &str) -> Gated {
        let gate = cx.tempdir();
        let status_dir = cx.root_tempdir();
        let status = status_dir.join("status.json");
        let mut args =
            vec!["--root".to_string(), cx.world_str(), "--bind".into(), gate.str(), "/home".into()];
        args.extend(["--setenv", "LJ_MARKER", tag, "--json-status", "5"].map(String::from));
        args.extend(net.iter().map(|s| s.to_string()));
        args.extend(["--", "/bin/sh", "-c", GATE].map(String::from));
        let jail = cx
            .ljspawn()
            .wrapper(ns.prefix(None))
            .prelude(&format!("exec 5>{}", shell_quote(&path_str(&status))))
            .args(args)
            .timeout(JAIL_TIMEOUT)
            .start();
        Gated { jail: Some(jail), gate, _status_dir: status_dir, status }
    }

    /// Waits up to [`JAIL_UP`] for `cond` while the jail runs; panics with `what` and the jail's
    /// output when it does not come (or the jail ended).
    fn wait_for(&mut self, what: &str, mut cond: impl FnMut() -> bool) {
        let mut jail = self.jail.take().expect("running");
        let held = wait_until(JAIL_UP, || jail.exited() || cond());
        if held && !jail.exited() {
            self.jail = Some(jail);
            return;
        }
        if !jail.exited() {
            jail.signal("KILL");
        }
        panic!("{what}\n{}", jail.wait().report());
    }

    /// ljspawn's pid.
    fn pid(&self) -> u32 {
        self.jail.as_ref().expect("running").pid()
    }

    /// SIGKILL to ljspawn; its output.
    fn kill(mut self) -> Output {
        let jail = self.jail.take().expect("running");
        jail.signal("KILL");
        jail.wait()
    }

    /// The host pid of the jail's PID 1 (`child-pid` of `--json-status`).
    fn child_pid(&mut self) -> u32 {
        let status = self.status.clone();
        let read = || {
            let text = fs::read_to_string(&status).unwrap_or_default();
            let first = text.lines().next()?.to_string();
            let obj = parse_flat_json(&first).ok()?;
            json_get(&obj, "child-pid").and_then(Json::as_i64).map(|p| p as u32)
        };
        self.wait_for("--json-status never said child-pid", || read().is_some());
        read().expect("child-pid")
    }

    /// Lets the jail end; its output.
    fn open(mut self) -> Output {
        fs::write(self.gate.join("go"), "").expect("open the gate");
        self.jail.take().expect("running").wait()
    }
}

fn links_removed_on_exit(cx: &Ctx) {
    if !need_ip(cx) {
        return;
    }
    let ns = NetNs::make();
    ns.bridge("br0", "10.77.0.1/24");
    let far = NetNs::make();
    ns.uplink("upl", &far, "upr", "10.78.0.1/24");
    assert_eq!(ns.promiscuity("upl"), 0, "upl before any macvlan");

    // Bridge: while the jail runs, the host end lj<PID of the jail's init> is on br0, up.
    let mut jail = Gated::start(cx, &ns, &["--net", "bridge:br0", "--ip", "10.77.0.2/24"], &marker("gone"));
    let host_end = format!("lj{}", jail.child_pid());
    jail.wait_for(&format!("no {host_end} (alone) while the jail runs"), || {
        ns.lj_links() == [host_end.as_str()]
    });
    assert_eq!(ns.ports("br0"), [host_end.as_str()], "{host_end} is not on br0");
    let state = ns.ip(&["-o", "link", "show", &host_end]);
    assert!(state.contains(",UP") && state.contains("master br0"), "{host_end} not up on br0: {state}");
    let out = jail.open().ok();
    // Gone with the jail's namespace, soon after ljspawn returned.
    assert_veths_gone(&ns, &out.command);
    // The addresses in the namespace are the test's own only.
    let addrs = ns.ip(&["-o", "-4", "addr", "show"]);
    let inet: Vec<&str> =
        addrs.lines().filter_map(|l| l.split_whitespace().skip_while(|&w| w != "inet").nth(1)).collect();
    assert_eq!(inet, ["127.0.0.1/8", "10.77.0.1/24"], "addresses in the test namespace");

    // Macvlan: it lives in the jail's namespace and goes with it; upl's promiscuity says
    // whether a macvlan still sits on it.
    let mut jail = Gated::start(cx, &ns, &["-f", "upl", "-i", "10.78.0.5/24"], &marker("gonemv"));
    jail.wait_for("no macvlan on upl while the jail runs", || ns.promiscuity("upl") > 0);
    jail.open().ok();
    assert!(wait_until(NETNS_GONE, || ns.promiscuity("upl") == 0), "a macvlan is left on upl after the jail");
    assert_eq!(ns.links(), ["lo", "br0", "upl"], "links left in the test namespace");
}

fn links_removed_after_kill(cx: &Ctx) {
    if !need_ip(cx) {
        return;
    }
    let ns = NetNs::make();
    ns.bridge("br0", "10.77.0.1/24");
    let far = NetNs::make();
    ns.uplink("upl", &far, "upr", "10.78.0.1/24");
    let nets: [&[&str]; 2] =
        [&["--net", "bridge:br0", "--ip", "10.77.0.2/24"], &["--net", "macvlan:upl", "--ip", "10.78.0.5/24"]];
    for net in nets {
        let tag = marker("kill");
        let mut jail = Gated::start(cx, &ns, net, &tag);
        let host_end = format!("lj{}", jail.child_pid());
        let bridged = net[1].starts_with("bridge");
        jail.wait_for(&format!("{net:?}: the jail's link never appeared"), || {
            if bridged {
                ns.lj_links() == [host_end.as_str()]
            } else {
                ns.promiscuity("upl") > 0
            }
        });
        jail.wait_for("the jail's processes are not there", || !procs_with_env("LJ_MARKER", &tag).is_empty());
        let ljspawn = jail.pid();
        let out = jail.kill();
        assert_eq!(out.status(), 137, "{}", out.report());
        // ljspawn is gone without a word; the jail dies with it (its PID 1 has a parent-death
        // signal) and the kernel removes its links with its network namespace.
        assert!(
            wait_until(NETNS_GONE, || procs_with_env("LJ_MARKER", &tag).is_empty()),
            "the jail outlived ljspawn (pid {ljspawn}): {:?}",
            procs_with_env("LJ_MARKER", &tag)
        );
        assert!(
            wait_until(NETNS_GONE, || ns.lj_links().is_empty() && ns.promiscuity("upl") == 0),
            "{net:?}: links left {NETNS_GONE:?} after SIGKILL: {:?}, upl promiscuity {}",
            ns.links(),
            ns.promiscuity("upl")
        );
        assert!(ns.ports("br0").is_empty(), "ports left on br0");
    }
}

// ---------------------------------------------------------------- errors

fn net_usage_errors(cx: &Ctx) {
    if !need_ip(cx) {
        return;
    }
    let ns = NetNs::make();
    ns.bridge("br0", "10.77.0.1/24");
    let w = cx.world_str();
    let with = |extra: &[&str]| {
        let mut v = vec!["--root", w.as_str()];
        v.extend_from_slice(extra);
        v.extend_from_slice(&["--", "/bin/true"]);
        lj(cx, &ns, &v)
    };
    // Valid in every mode up to the network: these are usage errors for everyone.
    for extra in [
        &["--ip", "10.77.0.2/24"][..],
        &["--gateway", "10.77.0.1"],
        &["--net", "host", "--ip", "10.77.0.2/24"],
        &["--net", "none", "--ip", "10.77.0.2"],
    ] {
        let out = with(extra).expect_ljspawn_error(2);
        assert_stderr_has(&out, "--ip and --gateway need --net bridge:BR or macvlan:IFACE");
    }
    for (extra, msg) in [
        (&["--net", "bridge"][..], "unknown network mode 'bridge'"),
        (&["--net", "wifi:br0", "--ip", "10.77.0.2"], "unknown network mode 'wifi:br0'"),
        (&["--net", "bridge:", "--ip", "10.77.0.2"], "invalid interface name ''"),
        (&["--net", "bridge:a/b", "--ip", "10.77.0.2"], "invalid interface name 'a/b'"),
        (&["--net", "none", "-f", "upl"], "cannot be used with"),
    ] {
        let out = with(extra);
        assert_eq!(out.status(), 2, "{}", out.report());
        assert_stderr_has(&out, msg);
    }
    if cx.mode == Mode::Root {
        // The address checks come after the mode's permission: root reaches them.
        for (extra, msg) in [
            (&["--net", "bridge:br0"][..], "--net bridge:br0 needs --ip ADDR/PREFIX"),
            (&["-f", "upl"], "--net macvlan:upl needs --ip ADDR/PREFIX"),
            (&["--net", "bridge:br0", "--ip", "10.77.0.300/24"], "invalid address '10.77.0.300/24'"),
            (&["--net", "bridge:br0", "--ip", "10.77.0.2/33"], "invalid address '10.77.0.2/33'"),
            (&["--net", "bridge:br0", "--ip", "10.77.0.2/0"], "invalid address '10.77.0.2/0'"),
            (&["--net", "bridge:br0", "--ip", "fe80::2/64"], "invalid address 'fe80::2/64'"),
            (&["--net", "bridge:br0", "--ip", "10.77.0.2", "--gateway", "gw"], "invalid address 'gw'"),
            (&["-f", "upl", "-i", "host.example"], "invalid address 'host.example'"),
        ] {
            let out = with(extra).expect_ljspawn_error(2);
            assert_stderr_has(&out, msg);
        }
    }
    assert_eq!(ns.links(), ["lo", "br0"], "links made by refused jails");
    if cx.mode == Mode::Root {
        // Control: the same line with a good address runs.
        with(&["--net", "bridge:br0", "--ip", "10.77.0.2/24", "--gateway", "10.77.0.1"]).ok();
    }
}

fn missing_link_125(cx: &Ctx) {
    if !need_ip(cx) {
        return;
    }
    let ns = NetNs::make();
    ns.bridge("br0", "10.77.0.1/24");
    // An interface that is not a bridge (a veth: this kernel may lack the dummy driver).
    ns.ip(&["link", "add", "notbr0", "type", "veth", "peer", "name", "notbr1"]);
    let w = cx.world_str();
    for (net, msg) in [
        ("bridge:nobr0", "ljspawn: --net bridge:nobr0: no such bridge"),
        ("bridge:notbr0", "ljspawn: --net bridge:notbr0: notbr0 is not a bridge"),
        ("macvlan:noif0", "ljspawn: --net macvlan:noif0: "),
    ] {
        let out = lj(cx, &ns, &["--root", &w, "--net", net, "--ip", "10.77.0.2/24", "--", "/bin/true"])
            .expect_ljspawn_error(125);
        assert!(out.stderr.starts_with(msg), "expected {msg:?}\n{}", out.report());
    }
    // Nothing half-made is left (no veth whose enslaving failed).
    assert_eq!(ns.links(), ["lo", "br0", "notbr1", "notbr0"], "links made by failed jails");
    // Control: on the bridge that exists, it runs.
    lj(cx, &ns, &["--root", &w, "--net", "bridge:br0", "--ip", "10.77.0.2/24", "--", "/bin/true"]).ok();
}

fn rootless_refused(cx: &Ctx) {
    if !need_ip(cx) {
        return;
    }
    let ns = NetNs::make();
    ns.bridge("br0", "10.77.0.1/24");
    let far = NetNs::make();
    ns.uplink("upl", &far, "upr", "10.78.0.1/24");
    let w = cx.world_str();
    for (net, shown) in [
        (&["--net", "bridge:br0", "--ip", "10.77.0.2/24"][..], "bridge:br0"),
        (&["--net", "bridge:br0"], "bridge:br0"),
        (&["--net", "macvlan:upl", "--ip", "10.78.0.5/24"], "macvlan:upl"),
        (&["-f", "upl", "-i", "10.78.0.5"], "macvlan:upl"),
    ] {
        let mut args = vec!["--root", w.as_str()];
        args.extend_from_slice(net);
        args.extend_from_slice(&["--", "/bin/true"]);
        let out = lj(cx, &ns, &args).expect_ljspawn_error(125);
        assert_eq!(
            out.stderr.trim_end(),
            format!(
                "ljspawn: --net {shown} is not allowed in rootless mode \
                 (root, or setuid with a grant in /etc/lightjail.conf)"
            ),
            "{}",
            out.report()
        );
    }
    assert_eq!(ns.links(), ["lo", "br0", "upl"], "links left in the test namespace");
    assert_eq!(ns.promiscuity("upl"), 0);
    // Control: the same caller gets its own namespace with --net none.
    let out = lj(cx, &ns, &["--root", &w, "--net", "none", "--", "/bin/cat", "/proc/net/dev"]).ok();
    assert_eq!(net_dev_names(&out.stdout), ["lo"], "{}", out.report());
}

fn setuid_without_grant_refused(cx: &Ctx) {
    if !need_ip(cx) {
        return;
    }
    let ns = NetNs::make();
    ns.bridge("br0", "10.77.0.1/24");
    ns.bridge("br1", "10.79.0.1/24");
    let far = NetNs::make();
    ns.uplink("upl", &far, "upr", "10.78.0.1/24");
    let w = cx.world_str();
    let user = cx.run_as.as_ref().map_or("ljtest", |u| u.name.as_str()).to_string();
    // Grants that are not this one: another bridge, another user, a macvlan of that name.
    let others =
        format!("bridge br1 allow {user}\nbridge br0 allow root,@nosuchgroup\nmacvlan br0 allow *\n");
    for conf in [Conf::Absent, Conf::Text("# nothing granted\n"), Conf::Text(&others)] {
        for (net, rule) in [
            (&["--net", "bridge:br0", "--ip", "10.77.0.2/24"][..], "bridge br0"),
            (&["-f", "upl", "-i", "10.78.0.5"], "macvlan upl"),
        ] {
            let mut args = vec!["--root", w.as_str()];
            args.extend_from_slice(net);
            args.extend_from_slice(&["--", "/bin/true"]);
            let out = lj_conf(cx, &ns, conf, &args).expect_ljspawn_error(125);
            let shown = rule.replacen(' ', ":", 1);
            assert_eq!(
                out.stderr.trim_end(),
                format!(
                    "ljspawn: --net {shown} is not granted to you in /etc/lightjail.conf \
                     (a line like '{rule} allow USER' is missing)"
                ),
                "{}",
                out.report()
            );
        }
    }
    assert_eq!(ns.links(), ["lo", "br0", "br1", "upl"], "links left in the test namespace");
    // Control: the grant for br1 works.
    lj_conf(
        cx,
        &ns,
        Conf::Text(&others),
        &["--root", &w, "--net", "bridge:br1", "--ip", "10.79.0.2", "--", "/bin/true"],
    )
    .ok();
}

fn setuid_with_grant(cx: &Ctx) {
    let Some(py) = need_python(cx) else { return };
    if !need_ip(cx) {
        return;
    }
    let ns = NetNs::make();
    ns.bridge("br0", "10.77.0.1/24");
    let far = NetNs::make();
    ns.uplink("upl", &far, "upr", "10.78.0.1/24");
    let user = cx.run_as.as_ref().map_or("ljtest", |u| u.name.as_str()).to_string();
    let group = format!("@{user}"); // prepare.sh's useradd makes a group of the same name
    let conf = format!("# test grants\nbridge br0 allow nosuchuser,{user}\nmacvlan upl allow {group}\n");
    let tok = marker("srv");
    let server = ns.spawn(&[&py, "-c", SERVER, "10.77.0.1", "5000", &tok, "1"]);
    let script = format!("ip -o -4 addr show dev eth0; id -u; exec {py} -c \"$0\" \"$@\"");
    let out = lj_conf(
        cx,
        &ns,
        Conf::Text(&conf),
        &[
            "--root",
            "/",
            "--net",
            "bridge:br0",
            "--ip",
            "10.77.0.2/24",
            "--",
            "/bin/sh",
            "-c",
            &script,
            CLIENT,
            "10.77.0.1",
            "5000",
            "setuid",
            CLIENT_RETRY,
        ],
    )
    .ok();
    assert_eq!(inet_of(&out), ["10.77.0.2/24"], "eth0's address\n{}", out.report());
    assert_eq!(out.lines()[1..], ["0".to_string(), format!("got {tok}")], "{}", out.report());
    let server = server.join().expect("server thread");
    assert_lines(&server.ok(), &["peer 10.77.0.2 sent setuid"]);
    // The host end goes at the latest with the jail's namespace.
    assert!(
        wait_until(NETNS_GONE, || ns.lj_links().is_empty()),
        "veth left {NETNS_GONE:?} after the setuid jail: {:?}",
        ns.links()
    );
    // A macvlan granted through the caller's group, lightjail's form.
    let out = lj_conf(
        cx,
        &ns,
        Conf::Text(&conf),
        &[
            "--root",
            &cx.world_str(),
            "-f",
            "upl",
            "-i",
            "10.78.0.5",
            "--",
            "/bin/sh",
            "-c",
            "ip -o -4 addr show dev eth0",
        ],
    )
    .ok();
    assert_eq!(inet_of(&out), ["10.78.0.5/24"], "eth0's address\n{}", out.report());
    assert!(wait_until(NETNS_GONE, || ns.promiscuity("upl") == 0), "a macvlan is left on upl");
}

fn conf_malformed(cx: &Ctx) {
    if !need_ip(cx) {
        return;
    }
    let ns = NetNs::make();
    ns.bridge("br0", "10.77.0.1/24");
    let w = cx.world_str();
    let user = cx.run_as.as_ref().map_or("ljtest", |u| u.name.as_str()).to_string();
    let bridged = ["--root", w.as_str(), "--net", "bridge:br0", "--ip", "10.77.0.2/24", "--", "/bin/true"];
    let good = format!("bridge br0 allow {user}\n");
    for (text, msg) in [
        (
            format!("{good}brige br1 allow {user}\n"),
            "2: unknown keyword 'brige' (expected bridge, macvlan, limits or store)",
        ),
        (format!("# grants\n\n{good}bridge br1 {user}\n"), "4: 'bridge' needs 'allow WHO[,WHO...]'"),
        (format!("bridge br0 allow {user},,x\n"), "1: empty name in '{user},,x'"),
        (format!("{good}macvlan upl allow {user} extra\n"), "2: unexpected 'extra' after the allow list"),
    ] {
        let msg = msg.replace("{user}", &user);
        let out = lj_conf(cx, &ns, Conf::Text(&text), &bridged).expect_ljspawn_error(125);
        assert_eq!(out.stderr.trim_end(), format!("ljspawn: /etc/lightjail.conf:{msg}"), "{}", out.report());
        // A broken file stops every setuid run, not only the networked ones.
        let out =
            lj_conf(cx, &ns, Conf::Text(&text), &["--root", &w, "--", "/bin/true"]).expect_ljspawn_error(125);
        assert_stderr_has(&out, "ljspawn: /etc/lightjail.conf:");
    }
    // Control: the good line alone grants the bridge.
    lj_conf(cx, &ns, Conf::Text(&good), &bridged).ok();
}

fn conf_not_root_only(cx: &Ctx) {
    if !need_ip(cx) {
        return;
    }
    let ns = NetNs::make();
    ns.bridge("br0", "10.77.0.1/24");
    let w = cx.world_str();
    let good = format!("bridge br0 allow {}\n", cx.run_as.as_ref().map_or("ljtest", |u| u.name.as_str()));
    let bridged = ["--root", w.as_str(), "--net", "bridge:br0", "--ip", "10.77.0.2/24", "--", "/bin/true"];
    for conf in
        [Conf::Owned(&good, 0, 0o664), Conf::Owned(&good, 0, 0o646), Conf::Owned(&good, cx.caller_uid, 0o644)]
    {
        let out = lj_conf(cx, &ns, conf, &bridged).expect_ljspawn_error(125);
        assert_eq!(
            out.stderr.trim_end(),
            "ljspawn: /etc/lightjail.conf: not a regular file owned by root and writable only by root",
            "{}",
            out.report()
        );
    }
    // Control: the same text, root's alone (0600 and 0644), grants the bridge.
    lj_conf(cx, &ns, Conf::Owned(&good, 0, 0o600), &bridged).ok();
    lj_conf(cx, &ns, Conf::Text(&good), &bridged).ok();
}

// ---------------------------------------------------------------- dry run

fn dry_run_network(cx: &Ctx) {
    if !need_ip(cx) {
        return;
    }
    let ns = NetNs::make();
    ns.bridge("br0", "10.77.0.1/24");
    let far = NetNs::make();
    ns.uplink("upl", &far, "upr", "10.78.0.1/24");
    let user = cx.run_as.as_ref().map_or("ljtest", |u| u.name.as_str()).to_string();
    let conf = format!("bridge br0 allow {user}\nmacvlan upl allow {user}\n");
    let w = cx.world_str();
    for (net, want) in [
        (&[][..], "network: none (own namespace, loopback up)"),
        (&["--net", "none"], "network: none (own namespace, loopback up)"),
        (&["--net", "host"], "network: host"),
        (
            &["--net", "bridge:br0", "--ip", "10.77.0.2/24", "--gateway", "10.77.0.1"],
            "network: veth lj<PID> on bridge br0, eth0 10.77.0.2/24, default route via 10.77.0.1 \
             in the jail, loopback up",
        ),
        (
            &["--net", "bridge:br0", "--ip", "10.77.0.2/16"],
            "network: veth lj<PID> on bridge br0, eth0 10.77.0.2/16 in the jail, loopback up",
        ),
        (
            &["-f", "upl", "-i", "10.78.0.5"],
            "network: macvlan (bridge mode) on upl, eth0 10.78.0.5/24 in the jail, loopback up",
        ),
        (
            &["--net", "macvlan:upl", "--ip", "10.78.0.5/28", "--gateway", "10.78.0.1"],
            "network: macvlan (bridge mode) on upl, eth0 10.78.0.5/28, default route via 10.78.0.1 \
             in the jail, loopback up",
        ),
    ] {
        let mut args = vec!["--dry-run", "--root", w.as_str()];
        args.extend_from_slice(net);
        args.extend_from_slice(&["--", "/bin/true"]);
        let out = lj_conf(cx, &ns, Conf::Text(&conf), &args).ok();
        let lines: Vec<String> = out.lines().into_iter().filter(|l| l.starts_with("network:")).collect();
        assert_eq!(lines, [want], "{}", out.report());
    }
    // A dry run plugs nothing in, even for a bridge that does not exist.
    let out = lj_conf(
        cx,
        &ns,
        Conf::Text("bridge nobr0 allow *\n"),
        &["--dry-run", "--root", &w, "--net", "bridge:nobr0", "--ip", "10.77.0.2", "--", "/bin/true"],
    )
    .ok();
    assert!(out.stdout.contains("network: veth lj<PID> on bridge nobr0"), "{}", out.report());
    assert_eq!(ns.links(), ["lo", "br0", "upl"], "links left in the test namespace");
    assert_eq!(ns.promiscuity("upl"), 0);
    if cx.mode == Mode::Setuid {
        // The dry run checks the grants too.
        let out = lj(
            cx,
            &ns,
            &["--dry-run", "--root", &w, "--net", "bridge:br0", "--ip", "10.77.0.2", "--", "/bin/true"],
        )
        .expect_ljspawn_error(125);
        assert_stderr_has(&out, "'bridge br0 allow USER' is missing");
    }
}

// ---------------------------------------------------------------- --net pasta

/// Listens on a unix socket in the abstract namespace (name argv[1]) and on 127.0.0.1:argv[2];
/// prints `listening`, then serves each connection its token until killed.
const LOOPBACK_SERVER: &str = r#"
import socket, sys, threading
u = socket.socket(socket.AF_UNIX)
u.bind("\0" + sys.argv[1])
u.listen(8)
t = socket.socket()
t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("127.0.0.1", int(sys.argv[2])))
t.listen(8)
def serve(s):
    while True:
        c, _ = s.accept()
        c.sendall(b"loopback-secret\n")
        c.close()
threading.Thread(target=serve, args=(u,), daemon=True).start()
print("listening", flush=True)
serve(t)
"#;

/// Tries each target (`tcp:ADDR:PORT` or `unix:NAME`, abstract) once, 15 s each (refusals come
/// at once; a loaded machine may take seconds to forward an answer); prints
/// `TARGET got LINE` or `TARGET ERR NAME`.
const PROBE: &str = r#"
import errno, socket, sys
for t in sys.argv[1:]:
    kind, rest = t.split(":", 1)
    try:
        if kind == "unix":
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(15)
            s.connect("\0" + rest)
        else:
            a, p = rest.rsplit(":", 1)
            s = socket.socket()
            s.settimeout(15)
            s.connect((a, int(p)))
        print(t, "got", s.makefile().readline().strip(), flush=True)
    except OSError as e:
        print(t, "ERR", errno.errorcode.get(e.errno, type(e).__name__), flush=True)
"#;

/// `--net pasta`, in a namespace the test makes as "the host" (a dummy uplink with a default
/// route, a server on a second address, a loopback-only TCP service and an abstract unix
/// socket): the jail reaches the server, and neither the loopback service (through 127.0.0.1
/// or the gateway address) nor the abstract socket. A control run with `--net host` reaches
/// both, so the probes work. pasta is gone after the jail. Rootless needs /dev/net/tun usable
/// by the caller (else the refusal must say so); setuid mode refuses pasta.
fn pasta_outbound_only(cx: &Ctx) {
    if cx.mode == Mode::Setuid {
        let out = cx.ljspawn().args(["--net", "pasta", "--root", &cx.world_str(), "--", "/bin/true"]).run();
        let out = out.expect_ljspawn_error(125);
        // (The plan refuses it; the second look in the privileged code refuses it too.)
        assert!(out.stderr.contains("not available in setuid mode"), "{}", out.report());
        return;
    }
    if !need_ip(cx) {
        return;
    }
    let Some(py) = need_python(cx) else { return };
    if !Path::new("/usr/bin/pasta").is_file() {
        return cx.skip("pasta (Debian package passt) not installed");
    }
    // "The host" h, with an uplink to s, where the server is (and the default route goes).
    let (h, srv) = (NetNs::make(), NetNs::make());
    h.uplink("up0", &srv, "s0", "10.77.0.2/24");
    h.ip(&["addr", "add", "10.77.0.1/24", "dev", "up0"]);
    h.ip(&["route", "add", "default", "via", "10.77.0.2", "dev", "up0"]);
    let server = srv.spawn(&[&py, "-c", SERVER, "10.77.0.2", "18080", "outside-token", "1"]);
    let abstract_name = format!("lj-pasta-{}", std::process::id());
    let mut lo = Command::new("nsenter");
    lo.arg(format!("--net={}", h.path)).args([&py, "-c", LOOPBACK_SERVER, &abstract_name, "18081"]);
    let mut lo = lo.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("start the loopback server");
    let mut first = String::new();
    let _ = std::io::BufRead::read_line(
        &mut std::io::BufReader::new(lo.stdout.as_mut().expect("piped stdout")),
        &mut first,
    );
    assert_eq!(first.trim(), "listening");
    let targets = [
        "tcp:10.77.0.2:18080".to_string(),
        "tcp:127.0.0.1:18081".into(),
        // The gateway: pasta would map it to the host's loopback without --no-map-gw.
        "tcp:10.77.0.2:18081".into(),
        format!("unix:{abstract_name}"),
    ];
    let tun_ok = cx.mode == Mode::Root
        || cx
            .command(["/bin/sh", "-c", "test -r /dev/net/tun && test -w /dev/net/tun"])
            .status()
            .is_ok_and(|s| s.success());
    let mut argv: Vec<&str> = vec!["--net", "pasta", "--root", "/", "--", &py, "-c", PROBE];
    argv.extend(targets.iter().map(String::as_str));
    let out = lj(cx, &h, &argv);
    if !tun_ok {
        let out = out.expect_ljspawn_error(125);
        assert!(out.stderr.contains("/dev/net/tun"), "{}", out.report());
        eprintln!(
            "NOTE {}: /dev/net/tun is not usable by {}: pasta cannot run rootless here",
            cx.name, cx.caller_uid
        );
    } else {
        let out = out.ok();
        let lines = out.lines();
        let find =
            |t: &str| lines.iter().find(|l| l.starts_with(&format!("{t} "))).cloned().unwrap_or_default();
        assert_eq!(find(&targets[0]), format!("{} got outside-token", targets[0]), "{}", out.report());
        for t in &targets[1..] {
            assert!(find(t).contains(" ERR "), "{t} was reachable\n{}", out.report());
        }
        let served = server.join().expect("server thread");
        assert!(
            served.stdout.contains("peer 10.78.0.1") || served.stdout.contains("peer "),
            "{}",
            served.report()
        );
        // pasta is gone with the jail.
        let left: Vec<String> = fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.starts_with("passt")))
            .filter(|e| {
                fs::read_to_string(e.path().join("cmdline")).is_ok_and(|c| c.contains("/proc/self/fd/3"))
            })
            .filter_map(|e| fs::read_link(e.path().join("ns/net")).ok().map(|l| format!("{l:?}")))
            .collect();
        let hns = format!("{:?}", fs::read_link(&h.path).unwrap());
        assert!(!left.contains(&hns), "pasta still runs in the test's namespace");
    }
    // Control: the host's own network reaches the loopback service and the abstract socket.
    let mut argv: Vec<&str> = vec!["--net", "host", "--root", "/", "--", &py, "-c", PROBE];
    argv.extend(targets[1..].iter().map(String::as_str));
    argv.remove(argv.len() - 2); // not the gateway: nothing is there
    let ctl = lj(cx, &h, &argv).ok();
    assert!(ctl.stdout.contains("tcp:127.0.0.1:18081 got loopback-secret"), "{}", ctl.report());
    assert!(ctl.stdout.contains(&format!("unix:{abstract_name} got loopback-secret")), "{}", ctl.report());
    let _ = lo.kill();
    let _ = lo.wait();
}
