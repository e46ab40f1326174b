#![forbid(unsafe_code)]
//! Writes man pages and shell completions for `ljbuild` and `ljspawn`, from the same clap
//! definitions as their `--help` (see `ljbuild::docs`):
//!
//! ```text
//! lj-gen-docs OUTDIR
//!   OUTDIR/man/man1/ljbuild.1, ljbuild-list.1, ..., ljspawn.1
//!   OUTDIR/completions/bash/{ljbuild,ljspawn}.bash
//!   OUTDIR/completions/zsh/{_ljbuild,_ljspawn}
//!   OUTDIR/completions/fish/{ljbuild,ljspawn}.fish
//! ```

fn main() -> std::process::ExitCode {
    ljbuild::docs::main("lj-gen-docs", vec![ljbuild::cli::command(), ljspawn::cli::command()])
}
