//! `/etc/lightjail.conf`: what the administrator grants setuid callers beyond rootless mode.
//!
//! ```text
//! # WHO is a login name, @group, or * (everyone); several are separated by commas.
//! bridge br0 allow alice,@ci          # --net bridge:br0
//! macvlan eth0 allow @lab              # --net macvlan:eth0 (lightjail's -f eth0)
//! limits allow @ci memory=2G pids=512 cpus=2   # cgroup limits, at most these values
//! store /usr/local/lj allow @ci        # --idmap-layer of layers under /usr/local/lj
//! ```
//!
//! `store DIR` grants a lightjail root: the granted callers may give its layers (directories
//! strictly beneath DIR) as `--idmap-layer`, which setuid ljspawn opens itself and idmaps onto
//! the jail's user namespace, so that root's files show as the jail's root. DIR is absolute and
//! plain (no `.`, `..`, empty components or trailing `/`); ljspawn still checks, when it opens a
//! layer, that every component from `/` down is a root-owned directory that group and others
//! cannot write, and follows no symlink.
//!
//! Strict: an unknown keyword, a missing `allow`, a bad value is an error naming the file and
//! line, and a setuid ljspawn refuses to run with a broken file rather than guess. The file is
//! read only in setuid mode, and only if it is a regular file owned by root that no one else
//! may write. A missing file grants nothing.

use std::fmt;

/// One line's grant, before it is matched against a caller.
#[derive(Debug, Clone, PartialEq)]
enum Rule {
    Bridge { name: String, who: Vec<String> },
    Macvlan { name: String, who: Vec<String> },
    Limits { who: Vec<String>, max: MaxLimits },
    Store { dir: String, who: Vec<String> },
}

/// The most a granted caller may ask for; `None`: no maximum for that controller.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MaxLimits {
    pub memory: Option<u64>,
    pub pids: Option<u64>,
    pub cpus: Option<f64>,
}

/// What one caller is granted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Grants {
    pub bridges: Vec<String>,
    pub macvlans: Vec<String>,
    /// Cgroup limits allowed, with these maxima (the first matching `limits` line).
    pub limits: Option<MaxLimits>,
    /// Stores (lightjail roots) whose layers the caller may idmap, as written in the file.
    pub stores: Vec<String>,
}

/// A syntax error: the line and what is wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfError {
    pub line: usize,
    pub msg: String,
}

impl fmt::Display for ConfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", PATH, self.line, self.msg)
    }
}

pub const PATH: &str = "/etc/lightjail.conf";

/// The caller, as the grants see it: login name and the names of its groups.
#[derive(Debug, Clone, Default)]
pub struct Who {
    pub user: Option<String>,
    pub groups: Vec<String>,
}

impl Who {
    fn matches(&self, list: &[String]) -> bool {
        list.iter().any(|w| match w.strip_prefix('@') {
            _ if w == "*" => true,
            Some(g) => self.groups.iter().any(|x| x == g),
            None => self.user.as_deref() == Some(w.as_str()),
        })
    }
}

/// Parses the whole file, then returns what `who` is granted.
pub fn grants(text: &str, who: &Who) -> Result<Grants, ConfError> {
    let mut g = Grants::default();
    for rule in parse(text)? {
        match rule {
            Rule::Bridge { name, who: list } if who.matches(&list) => g.bridges.push(name),
            Rule::Macvlan { name, who: list } if who.matches(&list) => g.macvlans.push(name),
            Rule::Limits { who: list, max } if who.matches(&list) && g.limits.is_none() => {
                g.limits = Some(max)
            }
            Rule::Store { dir, who: list } if who.matches(&list) => g.stores.push(dir),
            _ => {}
        }
    }
    Ok(g)
}

fn parse(text: &str) -> Result<Vec<Rule>, ConfError> {
    let mut rules = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let err = |msg: String| ConfError { line, msg };
        let words: Vec<&str> = raw.split('#').next().unwrap_or("").split_whitespace().collect();
        let Some((&kw, rest)) = words.split_first() else { continue };
        let who_after_allow = |args: &[&str]| -> Result<Vec<String>, ConfError> {
            match args {
                ["allow", list, ..] => {
                    let who: Vec<String> = list.split(',').map(str::to_string).collect();
                    if who.iter().any(|w| w.is_empty() || w == "@") {
                        return Err(err(format!("empty name in '{list}'")));
                    }
                    Ok(who)
                }
                _ => Err(err(format!("'{kw}' needs 'allow WHO[,WHO...]'"))),
            }
        };
        match kw {
            "bridge" | "macvlan" => {
                let [name, tail @ ..] = rest else {
                    return Err(err(format!("'{kw}' needs an interface name")));
                };
                let who = who_after_allow(tail)?;
                if tail.len() != 2 {
                    return Err(err(format!("unexpected '{}' after the allow list", tail[2])));
                }
                let name = name.to_string();
                rules.push(if kw == "bridge" {
                    Rule::Bridge { name, who }
                } else {
                    Rule::Macvlan { name, who }
                });
            }
            "limits" => {
                let who = who_after_allow(rest)?;
                let mut max = MaxLimits::default();
                for kv in &rest[2..] {
                    let bad = || err(format!("bad limit '{kv}' (expected memory=SIZE, pids=N or cpus=N)"));
                    match kv.split_once('=') {
                        Some(("memory", v)) => max.memory = Some(parse_size(v).ok_or_else(bad)?),
                        Some(("pids", v)) => max.pids = Some(v.parse().map_err(|_| bad())?),
                        Some(("cpus", v)) => {
                            max.cpus = Some(v.parse::<f64>().ok().filter(|c| *c > 0.0).ok_or_else(bad)?)
                        }
                        _ => return Err(bad()),
                    }
                }
                rules.push(Rule::Limits { who, max });
            }
            "store" => {
                let [dir, tail @ ..] = rest else {
                    return Err(err("'store' needs a directory".into()));
                };
                if !is_plain_absolute(dir) || *dir == "/" {
                    return Err(err(format!(
                        "store directory '{dir}' must be an absolute path other than / without '.', '..', empty components or a trailing '/'"
                    )));
                }
                let who = who_after_allow(tail)?;
                if tail.len() != 2 {
                    return Err(err(format!("unexpected '{}' after the allow list", tail[2])));
                }
                rules.push(Rule::Store { dir: dir.to_string(), who });
            }
            other => {
                return Err(err(format!(
                    "unknown keyword '{other}' (expected bridge, macvlan, limits or store)"
                )));
            }
        }
    }
    Ok(rules)
}

/// An absolute path whose components are all plain names: no `.`, `..`, empty component
/// (`//`) or trailing `/` (`/` itself is plain).
pub fn is_plain_absolute(p: &str) -> bool {
    match p.strip_prefix('/') {
        Some("") => true,
        Some(rest) => rest.split('/').all(|c| !c.is_empty() && c != "." && c != ".."),
        None => false,
    }
}

/// Whether `layer` lies strictly beneath `store` (both plain absolute paths), component-wise.
pub fn beneath(store: &str, layer: &str) -> bool {
    layer.strip_prefix(store).is_some_and(|rest| rest.len() > 1 && rest.starts_with('/'))
}

/// A size: `512K`, `64M`, `2G`, `1T` (binary units, an optional `B` or `iB` after them), `4096B`
/// in bytes, and a number without a unit in MiB (as lightjail's `-m`): `--memory 100` is
/// 100 MiB, never 100 bytes. Zero and overflows are `None`.
pub fn parse_size(s: &str) -> Option<u64> {
    let t = s.strip_suffix("iB").unwrap_or(s);
    let (num, mul) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let (num, unit) = (&t[..i], c.to_ascii_uppercase());
            // `B` after a unit letter (`64MB`) is only decoration; after digits it means bytes.
            let (num, unit) = match (unit, num.chars().last()) {
                ('B', Some(u)) if u.is_ascii_alphabetic() => (&num[..num.len() - 1], u.to_ascii_uppercase()),
                _ => (num, unit),
            };
            let m: u64 = match unit {
                'B' => 1,
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                _ => return None,
            };
            (num, m)
        }
        _ => (t, 1 << 20),
    };
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    num.parse::<u64>().ok()?.checked_mul(mul).filter(|&n| n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(user: &str, groups: &[&str]) -> Who {
        Who { user: Some(user.into()), groups: groups.iter().map(|g| g.to_string()).collect() }
    }

    #[test]
    fn grants_follow_users_groups_and_everyone() {
        let text = "# comment\n\nbridge br0 allow alice,@ci   # trailing\nbridge br1 allow *\n\
                    macvlan eth0 allow @lab\nlimits allow @ci memory=2G pids=512 cpus=1.5\nlimits allow * pids=64\n";
        let g = grants(text, &who("alice", &[])).unwrap();
        assert_eq!(g.bridges, ["br0", "br1"]);
        assert!(g.macvlans.is_empty());
        assert_eq!(g.limits, Some(MaxLimits { memory: None, pids: Some(64), cpus: None }));
        let g = grants(text, &who("bob", &["ci", "lab"])).unwrap();
        assert_eq!(g.bridges, ["br0", "br1"]);
        assert_eq!(g.macvlans, ["eth0"]);
        assert_eq!(g.limits, Some(MaxLimits { memory: Some(2 << 30), pids: Some(512), cpus: Some(1.5) }));
        assert_eq!(grants("", &who("x", &[])).unwrap(), Grants::default());
    }

    #[test]
    fn errors_name_the_line() {
        let e = grants("bridge br0 allow a\nbrige br1 allow b\n", &Who::default()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "/etc/lightjail.conf:2: unknown keyword 'brige' (expected bridge, macvlan, limits or store)"
        );
        for (text, msg) in [
            ("bridge br0\n", "'bridge' needs 'allow WHO[,WHO...]'"),
            ("bridge\n", "'bridge' needs an interface name"),
            ("bridge br0 allow a,,b\n", "empty name in 'a,,b'"),
            ("bridge br0 allow a extra\n", "unexpected 'extra' after the allow list"),
            (
                "limits allow a memory=lots\n",
                "bad limit 'memory=lots' (expected memory=SIZE, pids=N or cpus=N)",
            ),
            ("limits allow a cpus=0\n", "bad limit 'cpus=0' (expected memory=SIZE, pids=N or cpus=N)"),
            ("store\n", "'store' needs a directory"),
            ("store /usr/local/lj\n", "'store' needs 'allow WHO[,WHO...]'"),
            ("store /usr/local/lj allow a b\n", "unexpected 'b' after the allow list"),
        ] {
            assert_eq!(grants(text, &Who::default()).unwrap_err().msg, msg, "{text}");
        }
    }

    #[test]
    fn stores_are_plain_absolute_paths() {
        let text = "store /usr/local/lj allow @ci\nstore /srv/lj allow bob\n";
        assert_eq!(grants(text, &who("alice", &["ci"])).unwrap().stores, ["/usr/local/lj"]);
        assert_eq!(grants(text, &who("bob", &[])).unwrap().stores, ["/srv/lj"]);
        assert!(grants(text, &who("carol", &[])).unwrap().stores.is_empty());
        for bad in ["lj", "/", "/usr/../lj", "/usr/./lj", "/usr//lj", "/usr/lj/"] {
            let e = grants(&format!("# x\nstore {bad} allow a\n"), &Who::default()).unwrap_err();
            assert_eq!(e.line, 2, "{bad}");
            assert!(e.msg.starts_with(&format!("store directory '{bad}' must be")), "{bad}: {}", e.msg);
        }
        assert!(beneath("/usr/local/lj", "/usr/local/lj/worlds/debian"));
        assert!(!beneath("/usr/local/lj", "/usr/local/lj"));
        assert!(!beneath("/usr/local/lj", "/usr/local/ljx/worlds"));
        assert!(!beneath("/usr/local/lj", "/usr/local"));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64M"), Some(64 << 20));
        assert_eq!(parse_size("1GiB"), Some(1 << 30));
        assert_eq!(parse_size("512k"), Some(512 << 10));
        assert_eq!(parse_size("4096B"), Some(4096));
        assert_eq!(parse_size("64MB"), Some(64 << 20));
        assert_eq!(parse_size("100"), Some(100 << 20), "a bare number is MiB");
        assert_eq!(parse_size("M"), None);
        assert_eq!(parse_size("1KK"), None);
        assert_eq!(parse_size("-1M"), None);
        assert_eq!(parse_size("0"), None);
        assert_eq!(parse_size("1X"), None);
        assert_eq!(parse_size("99999999999T"), None);
    }
}
