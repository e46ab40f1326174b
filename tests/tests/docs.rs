//! The documentation generators: `lj-gen-docs` (ljbuild, ljspawn) and `ljail-gen-docs` (ljail)
//! write each program's man pages and completions with one function, `ljbuild::docs::write`,
//! from the clap definitions `--help` renders. Run here into one directory, as `make install`
//! runs both into `target/docs`.

use std::fs;
use std::path::{Path, PathBuf};

/// A directory of this test's own under the system's temporary directory, removed when dropped.
struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The text of `p`, which must exist and not be empty.
#[track_caller]
fn text(p: &Path) -> String {
    let t = fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    assert!(!t.trim().is_empty(), "{} is empty", p.display());
    t
}

/// A man page of `name` (section 1), by its `.TH` line.
#[track_caller]
fn man_page(dir: &Path, name: &str) {
    let p = dir.join(format!("man/man1/{name}.1"));
    let t = text(&p);
    let th = t
        .lines()
        .find(|l| l.starts_with(".TH "))
        .unwrap_or_else(|| panic!("no .TH in {}:\n{t}", p.display()));
    // (roff writes a hyphen as `\-`.)
    let th = th.replace("\\-", "-");
    let words: Vec<&str> = th.split_whitespace().collect();
    assert_eq!(words.get(1..3), Some(&[name, "1"][..]), "{}: {th}", p.display());
    assert!(t.contains(".SH NAME") && t.contains(".SH SYNOPSIS"), "{}:\n{t}", p.display());
}

#[test]
fn man_pages_and_completions() {
    let dir = Dir(std::env::temp_dir().join(format!("lj-docs-test.{}", std::process::id())));
    let _ = fs::remove_dir_all(&dir.0);
    let programs = [ljbuild::cli::command(), ljspawn::cli::command(), ljail::cli::command()];
    for cmd in programs.iter().cloned() {
        ljbuild::docs::write(cmd, &dir.0).unwrap_or_else(|e| panic!("docs of ljbuild, ljspawn, ljail: {e}"));
    }
    for cmd in &programs {
        let name = cmd.get_name();
        man_page(&dir.0, name);
        // One page a subcommand (`ljbuild-list.1`, `ljail-create.1`), as `man ljail-create` finds it.
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            man_page(&dir.0, &format!("{name}-{}", sub.get_name()));
        }
        // The names `make install` copies, each naming the program it completes.
        for file in [format!("bash/{name}.bash"), format!("zsh/_{name}"), format!("fish/{name}.fish")] {
            let t = text(&dir.0.join("completions").join(&file));
            assert!(t.contains(name), "completions/{file} does not name {name}:\n{t}");
        }
    }
    // The pages the README and `make install` promise.
    for name in ["ljbuild-list", "ljail-status", "ljail-create"] {
        man_page(&dir.0, name);
    }
    assert!(programs[0].get_subcommands().count() > 3 && programs[2].get_subcommands().count() > 10);
}
