#![forbid(unsafe_code)]
//! Writes man pages and shell completions for `ljbuild` and `ljspawn`, from the same clap
//! definitions as their `--help`:
//!
//! ```text
//! lj-gen-docs OUTDIR
//!   OUTDIR/man/man1/ljbuild.1, ljbuild-list.1, ..., ljspawn.1
//!   OUTDIR/completions/bash/{ljbuild,ljspawn}.bash
//!   OUTDIR/completions/zsh/{_ljbuild,_ljspawn}
//!   OUTDIR/completions/fish/{ljbuild,ljspawn}.fish
//! ```

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap_complete::Shell;

fn generate(mut cmd: clap::Command, out: &Path) -> std::io::Result<()> {
    let name = cmd.get_name().to_string();
    let man = out.join("man/man1");
    std::fs::create_dir_all(&man)?;
    clap_mangen::generate_to(cmd.clone(), &man)?;
    for (shell, dir) in [(Shell::Bash, "bash"), (Shell::Zsh, "zsh"), (Shell::Fish, "fish")] {
        let d = out.join("completions").join(dir);
        std::fs::create_dir_all(&d)?;
        clap_complete::generate_to(shell, &mut cmd, &name, &d)?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [out] = args.as_slice() else {
        ljbuild::errln!("usage: lj-gen-docs OUTDIR");
        return ExitCode::from(2);
    };
    let out = PathBuf::from(out);
    for cmd in [ljbuild::cli::command(), ljspawn::cli::command()] {
        let name = cmd.get_name().to_string();
        if let Err(e) = generate(cmd, &out) {
            ljbuild::errln!("lj-gen-docs: {name}: {e}");
            return ExitCode::from(1);
        }
    }
    ljbuild::out(format_args!(
        "lj-gen-docs: man pages and completions for ljbuild and ljspawn in {}\n",
        out.display()
    ));
    ExitCode::SUCCESS
}
