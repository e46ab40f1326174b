#![forbid(unsafe_code)]
//! Writes the man pages and shell completions of `ljail`, from the same clap definitions as
//! its `--help` (as `lj-gen-docs` does for ljbuild and ljspawn, into the same OUTDIR):
//!
//! ```text
//! ljail-gen-docs OUTDIR
//!   OUTDIR/man/man1/ljail.1, ljail-create.1, ...
//!   OUTDIR/completions/bash/ljail.bash, zsh/_ljail, fish/ljail.fish
//! ```

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;

fn generate(out: &Path) -> std::io::Result<()> {
    let mut cmd = ljail::cli::Cli::command();
    let man = out.join("man/man1");
    std::fs::create_dir_all(&man)?;
    clap_mangen::generate_to(cmd.clone(), &man)?;
    for (shell, dir) in [(Shell::Bash, "bash"), (Shell::Zsh, "zsh"), (Shell::Fish, "fish")] {
        let d = out.join("completions").join(dir);
        std::fs::create_dir_all(&d)?;
        clap_complete::generate_to(shell, &mut cmd, "ljail", &d)?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [out] = args.as_slice() else {
        ljbuild::errln!("usage: ljail-gen-docs OUTDIR");
        return ExitCode::from(2);
    };
    let out = PathBuf::from(out);
    if let Err(e) = generate(&out) {
        ljbuild::errln!("ljail-gen-docs: {e}");
        return ExitCode::from(1);
    }
    ljail::out(format_args!("ljail-gen-docs: man pages and completions for ljail in {}\n", out.display()));
    ExitCode::SUCCESS
}
