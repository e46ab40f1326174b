#![forbid(unsafe_code)]
//! Writes the man pages and shell completions of `ljail`, from the same clap definitions as
//! its `--help` (with `ljbuild::docs`, as `lj-gen-docs` does for ljbuild and ljspawn, into the
//! same OUTDIR):
//!
//! ```text
//! ljail-gen-docs OUTDIR
//!   OUTDIR/man/man1/ljail.1, ljail-create.1, ...
//!   OUTDIR/completions/bash/ljail.bash, zsh/_ljail, fish/ljail.fish
//! ```

fn main() -> std::process::ExitCode {
    ljbuild::docs::main("ljail-gen-docs", vec![ljail::cli::command()])
}
