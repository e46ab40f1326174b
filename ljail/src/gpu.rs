//! `--gpu nvidia|intel|amd`: the host's GPU device nodes bound into the jail (`--dev-bind`),
//! and for NVIDIA the driver's user-space libraries and tools read-only at their host paths.
//!
//! * intel: `/dev/dri`; amd: `/dev/dri` and `/dev/kfd`; nvidia: every `/dev/nvidia*` (nodes
//!   and the `nvidia-caps` directory).
//! * NVIDIA's libraries and tools: what `nvidia-container-cli list --binaries --libraries`
//!   prints when it is installed; else the linker cache's (`ldconfig -p`) `libnvidia-*`,
//!   `libcuda*`, `libnvcuvid*` and `libnvoptix*`, and `nvidia-smi`, `nvidia-debugdump`,
//!   `nvidia-persistenced` found on `PATH`.
//!
//! Computed at every start (a driver update is picked up by a restart) and checked at create:
//! no device node for the vendor is a one-line refusal.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::config::Mount;
use crate::error::Error;

/// The vendors.
pub const VENDORS: &[&str] = &["nvidia", "intel", "amd"];

/// Checks a vendor name.
pub fn check_vendor(v: &str) -> Result<(), String> {
    if VENDORS.contains(&v) {
        Ok(())
    } else {
        Err(format!("unknown GPU '{v}' (expected nvidia, intel or amd)"))
    }
}

/// The mounts of `--gpu VENDOR` on this host, or why there are none.
pub fn mounts(vendor: &str) -> Result<Vec<Mount>, Error> {
    let dev = Path::new("/dev");
    let mut nodes: Vec<PathBuf> = match vendor {
        "intel" => vec![dev.join("dri")],
        "amd" => vec![dev.join("dri"), dev.join("kfd")],
        _ => {
            let mut v: Vec<PathBuf> = ljbuild::store::read_dir_names(dev)?
                .into_iter()
                .filter(|n| n.starts_with("nvidia"))
                .map(|n| dev.join(n))
                .collect();
            v.sort();
            v
        }
    };
    nodes.retain(|p| fs::symlink_metadata(p).is_ok_and(|m| !m.file_type().is_symlink()));
    if nodes.is_empty() {
        let want = match vendor {
            "intel" => "/dev/dri",
            "amd" => "/dev/dri, /dev/kfd",
            _ => "/dev/nvidia*",
        };
        return Err(Error::NotFound(format!(
            "--gpu {vendor}: this host has no GPU device nodes ({want}): is the driver loaded?"
        )));
    }
    let mut out: Vec<Mount> = nodes
        .iter()
        .map(|p| {
            let s = p.to_string_lossy().into_owned();
            Mount::DevBind(s.clone(), s)
        })
        .collect();
    if vendor == "nvidia" {
        for p in nvidia_files() {
            let s = p.to_string_lossy().into_owned();
            out.push(Mount::RoBind(s.clone(), s));
        }
    }
    Ok(out)
}

/// NVIDIA's user-space files (absolute, existing, no duplicates).
fn nvidia_files() -> Vec<PathBuf> {
    let mut files = match run("nvidia-container-cli", &["list", "--binaries", "--libraries"]) {
        Some(text) => text.lines().map(|l| PathBuf::from(l.trim())).collect(),
        None => from_linker_cache(),
    };
    files.retain(|p| p.is_absolute() && p.exists());
    files.sort();
    files.dedup();
    files
}

/// The NVIDIA libraries in `ldconfig -p`, and the tools on `PATH`.
fn from_linker_cache() -> Vec<PathBuf> {
    let text = run("ldconfig", &["-p"]).or_else(|| run("/sbin/ldconfig", &["-p"])).unwrap_or_default();
    let mut v = nvidia_libs_in(&text);
    let path = std::env::var_os("PATH").unwrap_or_default();
    for tool in ["nvidia-smi", "nvidia-debugdump", "nvidia-persistenced"] {
        if let Some(p) = std::env::split_paths(&path).map(|d| d.join(tool)).find(|p| p.is_file()) {
            v.push(p);
        }
    }
    v
}

/// The NVIDIA driver's libraries in the text of `ldconfig -p`.
pub fn nvidia_libs_in(text: &str) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for line in text.lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let ours = ["libnvidia-", "libcuda", "libnvcuvid", "libnvoptix"].iter().any(|p| name.starts_with(p));
        if let (true, Some((_, path))) = (ours, line.rsplit_once(" => ")) {
            v.push(PathBuf::from(path.trim()));
        }
    }
    v
}

/// `prog args` found on PATH: its stdout when it succeeds.
fn run(prog: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(prog).args(args).stdin(Stdio::null()).stderr(Stdio::null()).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linker_cache() {
        let text = "3 libs found in cache `/etc/ld.so.cache'\n\
            \tlibz.so.1 (libc6,x86-64) => /lib/x86_64-linux-gnu/libz.so.1\n\
            \tlibnvidia-ml.so.1 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1\n\
            \tlibcuda.so.1 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libcuda.so.1\n";
        assert_eq!(
            nvidia_libs_in(text),
            [
                PathBuf::from("/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1"),
                PathBuf::from("/usr/lib/x86_64-linux-gnu/libcuda.so.1")
            ]
        );
        assert!(check_vendor("nvidia").is_ok() && check_vendor("matrox").is_err());
    }
}
