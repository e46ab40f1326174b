//! Man pages and shell completions from a clap definition, the one `--help` renders: what
//! `lj-gen-docs` (ljbuild, ljspawn) and `ljail-gen-docs` (ljail) write, into one OUTDIR.
//! (Feature `docs`; `gen-docs` adds the `lj-gen-docs` program.)

use std::io;
use std::path::Path;

use clap_complete::Shell;

/// The shells completions are written for, and each one's directory under `completions/`.
pub const SHELLS: [(Shell, &str); 3] = [(Shell::Bash, "bash"), (Shell::Zsh, "zsh"), (Shell::Fish, "fish")];

/// Writes the man pages of `cmd` (`OUT/man/man1/NAME.1`, and `NAME-SUB.1` for each
/// subcommand) and its completions (`OUT/completions/bash/NAME.bash`, `zsh/_NAME`,
/// `fish/NAME.fish`), making the directories.
pub fn write(mut cmd: clap::Command, out: &Path) -> io::Result<()> {
    let name = cmd.get_name().to_string();
    let man = out.join("man/man1");
    std::fs::create_dir_all(&man)?;
    clap_mangen::generate_to(cmd.clone(), &man)?;
    for (shell, dir) in SHELLS {
        let d = out.join("completions").join(dir);
        std::fs::create_dir_all(&d)?;
        clap_complete::generate_to(shell, &mut cmd, &name, &d)?;
    }
    Ok(())
}

/// A generator's `main`: `PROG OUTDIR` writes the docs of each of `cmds` into OUTDIR and says
/// so on stdout (0); a bad command line is its usage line (2), a failure one line (1).
pub fn main(prog: &str, cmds: Vec<clap::Command>) -> std::process::ExitCode {
    use std::process::ExitCode;
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let [out] = args.as_slice() else {
        crate::errln!("usage: {prog} OUTDIR");
        return ExitCode::from(2);
    };
    let out = Path::new(out);
    let mut names = Vec::new();
    for cmd in cmds {
        let name = cmd.get_name().to_string();
        if let Err(e) = write(cmd, out) {
            crate::errln!("{prog}: {name}: {e}");
            return ExitCode::from(1);
        }
        names.push(name);
    }
    crate::out(format_args!(
        "{prog}: man pages and completions for {} in {}\n",
        names.join(" and "),
        out.display()
    ));
    ExitCode::SUCCESS
}
