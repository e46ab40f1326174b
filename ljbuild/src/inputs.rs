//! The inputs hash of a build, and why a cache lookup missed.
//!
//! inputs hash = sha256 over, in order: a format tag; the world's identity; the parent's
//! `NAME@VERSION` and inputs hash (or none); the canonical Jailfile without `version`, `world`
//! and `from` (those enter as the resolved world and parent; the version is a label); the script
//! line by line; every copied entry's path, mode and content hash (or link target).

use sha2::{Digest, Sha256};

use crate::copy::Scan;
use crate::recipe::Recipe;
use crate::resolve::{hex, Chain};
use crate::store::Inputs;

/// Collects the inputs of a build, but for the copied entries: [`digest_scan`] reads those from
/// the scan, and a cache miss (which keeps and explains them) sets `copy` to [`Scan::keys`].
pub fn collect(chain: &Chain, recipe: &Recipe) -> Inputs {
    let parent = chain.parents.last();
    Inputs {
        world: chain.world.identity.clone(),
        parent: parent.map(|p| format!("{}@{}", p.name, p.version)),
        // A parent from another root (an administrator's) also keys on when it was built there:
        // rebuilt with the same inputs, it is another layer.
        parent_hash: parent.map(|p| match (&p.root, p.built_at_ns) {
            (Some(r), Some(b)) => format!("{} in {} built {b}", p.inputs_hash, r.display()),
            _ => p.inputs_hash.clone(),
        }),
        header: recipe.canonical.split("\n---").next().unwrap_or("").to_string(),
        script_lines: recipe.script.split('\n').map(|l| hex(&Sha256::digest(l.as_bytes()))).collect(),
        copy: Default::default(),
        parent_layers: chain
            .parents
            .iter()
            .map(|p| p.layer.clone())
            .collect::<Option<Vec<_>>>()
            .unwrap_or_default(),
    }
}

/// The inputs hash (hex sha256).
pub fn digest(i: &Inputs) -> String {
    digest_with(i, i.copy.len(), |f| {
        for (k, v) in &i.copy {
            f.field("path", k.as_bytes());
            f.field("entry", v.as_bytes());
        }
    })
}

/// The inputs hash of `i` with the copied entries of `scan` (`i.copy` is not read): the same as
/// [`digest`] with `i.copy` set to `scan.keys()`, without building that map.
pub fn digest_scan(i: &Inputs, scan: &Scan) -> String {
    digest_with(i, scan.len(), |f| {
        scan.for_each_key(|k, v| {
            f.field("path", k);
            f.field("entry", v);
        })
    })
}

/// The hashed form of the inputs: `TAG NUL LEN NUL VALUE LF` per field, buffered (a copy of
/// 20,000 files is 40,000 fields).
struct Fields {
    h: Sha256,
    buf: Vec<u8>,
}

impl Fields {
    fn field(&mut self, tag: &str, value: &[u8]) {
        self.buf.extend_from_slice(tag.as_bytes());
        self.buf.push(0);
        let mut n = [0u8; 20];
        let mut at = n.len();
        let mut len = value.len();
        loop {
            at -= 1;
            n[at] = b'0' + (len % 10) as u8;
            len /= 10;
            if len == 0 {
                break;
            }
        }
        self.buf.extend_from_slice(&n[at..]);
        self.buf.push(0);
        self.buf.extend_from_slice(value);
        self.buf.push(b'\n');
        if self.buf.len() >= 16 * 1024 {
            self.h.update(&self.buf);
            self.buf.clear();
        }
    }
}

fn digest_with(i: &Inputs, copies: usize, copy: impl FnOnce(&mut Fields)) -> String {
    let mut f = Fields { h: Sha256::new(), buf: Vec::with_capacity(17 * 1024) };
    if i.parent_layers.is_empty() {
        f.field("lj-inputs", b"1");
        f.field("world", i.world.as_bytes());
        f.field("parent", i.parent.as_deref().unwrap_or("").as_bytes());
        f.field("parent-hash", i.parent_hash.as_deref().unwrap_or("").as_bytes());
    } else {
        f.field("lj-inputs", b"2");
        f.field("world", i.world.as_bytes());
        f.field("parent-layers", i.parent_layers.len().to_string().as_bytes());
        for l in &i.parent_layers {
            f.field("layer", l.as_bytes());
        }
    }
    f.field("header", i.header.as_bytes());
    f.field("script-lines", i.script_lines.len().to_string().as_bytes());
    for l in &i.script_lines {
        f.field("line", l.as_bytes());
    }
    f.field("copy-entries", copies.to_string().as_bytes());
    copy(&mut f);
    f.h.update(&f.buf);
    hex(&f.h.finalize())
}

/// What changed from `old` to `new`, as short phrases (`script line 3`, `copy: 2 files (a, b)`,
/// `parent lang/common@1.0.3 -> 1.0.4`).
pub fn explain(old: &Inputs, new: &Inputs, script_line: usize) -> Vec<String> {
    let mut out = Vec::new();
    if old.world != new.world {
        out.push("world".to_string());
    }
    if old.parent != new.parent && (new.parent_layers.is_empty() || old.parent_layers != new.parent_layers) {
        out.push(format!(
            "parent {} -> {}",
            old.parent.as_deref().unwrap_or("none"),
            new.parent.as_deref().unwrap_or("none")
        ));
    } else if old.parent_hash != new.parent_hash
        && (new.parent_layers.is_empty() || old.parent_layers != new.parent_layers)
    {
        out.push(format!("parent {} rebuilt", new.parent.as_deref().unwrap_or("none")));
    }
    if old.header != new.header {
        out.push("Jailfile header".to_string());
    }
    if old.script_lines != new.script_lines {
        let first = old.script_lines.iter().zip(&new.script_lines).position(|(a, b)| a != b);
        let i = first.unwrap_or(old.script_lines.len().min(new.script_lines.len()));
        out.push(format!("script line {} (Jailfile line {})", i + 1, script_line + i));
    }
    let mut changed: Vec<&str> = new
        .copy
        .iter()
        .filter(|(k, v)| old.copy.get(*k) != Some(v))
        .map(|(k, _)| k.as_str())
        .chain(old.copy.keys().filter(|k| !new.copy.contains_key(*k)).map(String::as_str))
        .collect();
    if !changed.is_empty() {
        changed.sort();
        let n = changed.len();
        let mut shown: Vec<&str> = changed.into_iter().take(5).collect();
        if n > 5 {
            shown.push("...");
        }
        out.push(format!("copy: {n} file{} ({})", if n == 1 { "" } else { "s" }, shown.join(", ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> Inputs {
        Inputs {
            world: "w".into(),
            parent: Some("a/b@1.0.3".into()),
            parent_hash: Some("h".into()),
            header: "name a/c\n".into(),
            script_lines: vec!["l1".into(), "l2".into()],
            copy: [("a.rb".to_string(), "0644 x".to_string())].into_iter().collect(),
            parent_layers: Vec::new(),
        }
    }

    /// The hashed form is fixed (published overlays keep their inputs hash across versions of
    /// ljbuild): this value was computed from the format in the module's doc, independently.
    #[test]
    fn digest_format_is_stable() {
        assert_eq!(digest(&inputs()), "757d60ff34cd9f062e2039fbe8787855f78e0ae1e31883464ea13ddbc4a359e4");
    }

    #[test]
    fn parent_layers_replace_labels() {
        let mut a = inputs();
        a.parent_layers = vec!["sha256:1".into(), "sha256:2".into()];
        let d = digest(&a);
        assert_ne!(d, digest(&inputs()));
        // Another version or inputs hash of a parent with the same bytes: the same key.
        let mut b = a.clone();
        b.parent = Some("a/b@1.0.4".into());
        b.parent_hash = Some("other".into());
        assert_eq!(digest(&b), d);
        assert!(explain(&a, &b, 5).is_empty());
        b.parent_layers[1] = "sha256:3".into();
        assert_ne!(digest(&b), d);
        assert_eq!(explain(&a, &b, 5), ["parent a/b@1.0.3 -> a/b@1.0.4"]);
    }

    #[test]
    fn digest_changes_with_each_input() {
        let base = inputs();
        let d = digest(&base);
        assert_eq!(d, digest(&inputs()));
        assert_eq!(d.len(), 64);
        let mut i = inputs();
        i.world = "w2".into();
        assert_ne!(digest(&i), d);
        let mut i = inputs();
        i.script_lines[1] = "l3".into();
        assert_ne!(digest(&i), d);
        let mut i = inputs();
        i.copy.insert("b".into(), "0644 y".into());
        assert_ne!(digest(&i), d);
        let mut i = inputs();
        i.parent_hash = Some("h2".into());
        assert_ne!(digest(&i), d);
    }

    #[test]
    fn explains_misses() {
        let old = inputs();
        let mut new = inputs();
        new.parent = Some("a/b@1.0.4".into());
        new.script_lines[1] = "changed".into();
        new.copy.insert("Gemfile.lock".into(), "0644 z".into());
        new.copy.insert("a.rb".into(), "0644 y".into());
        let e = explain(&old, &new, 5);
        assert_eq!(
            e,
            [
                "parent a/b@1.0.3 -> a/b@1.0.4",
                "script line 2 (Jailfile line 6)",
                "copy: 2 files (Gemfile.lock, a.rb)"
            ]
        );
        assert!(explain(&old, &old, 1).is_empty());
    }
}
