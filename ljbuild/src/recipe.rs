//! A parsed Jailfile, as the builder uses it (the adapter to `jailfile-grammar`).

use std::path::{Path, PathBuf};

use crate::store::OverlayName;

/// Errors reading a Jailfile.
#[derive(Debug, thiserror::Error)]
pub enum JailfileError {
    /// The file cannot be read.
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// No JAILFILE argument and no `./Jailfile`.
    #[error("cannot read Jailfile: {source} (no Jailfile in the current directory; give its path: ljbuild DIR/Jailfile)")]
    NoJailfile {
        /// Why.
        source: std::io::Error,
    },
    /// The file does not parse; the message names file, line and column.
    #[error("{0}")]
    Parse(String),
    /// A name the store reserves.
    #[error("{file}: {msg}")]
    Reserved {
        /// The file.
        file: String,
        /// The message.
        msg: String,
    },
}

/// The directives and script of a Jailfile.
#[derive(Debug, Clone)]
pub struct Recipe {
    /// `name`.
    pub name: OverlayName,
    /// `version`, if given.
    pub version: Option<String>,
    /// `world`, if given.
    pub world: Option<String>,
    /// `from NAME [PREFIX]`, if given.
    pub from: Option<(OverlayName, Option<String>)>,
    /// `copy DEST`, if given.
    pub copy: Option<String>,
    /// The script after `---`, verbatim.
    pub script: String,
    /// The Jailfile line the script starts on (1-based).
    pub script_line: usize,
    /// The canonical Jailfile with `version`, `world` and `from` left out (they enter the inputs
    /// hash as the resolved world and parent instead; the version is a label).
    pub canonical: String,
}

/// Reads and parses the Jailfile at `path`. Messages name the file as `shown`.
pub fn load(path: &Path, shown: &str) -> Result<Recipe, JailfileError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(source) if source.kind() == std::io::ErrorKind::NotFound && path == Path::new("Jailfile") => {
            return Err(JailfileError::NoJailfile { source });
        }
        Err(source) => return Err(JailfileError::Read { path: path.to_path_buf(), source }),
    };
    parse(&bytes, shown)
}

/// CRLF line ends read as LF, in the header and the script alike (a Jailfile saved on Windows
/// builds, with the same inputs hash, as the same file with LF line ends). A lone CR is content.
pub fn normalize_line_ends(bytes: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if !bytes.windows(2).any(|w| w == b"\r\n") {
        return std::borrow::Cow::Borrowed(bytes);
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\r' && bytes.get(i + 1) == Some(&b'\n') {
            i += 1;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    std::borrow::Cow::Owned(out)
}

/// Parses Jailfile text (CRLF read as LF). Messages name the file as `shown`.
pub fn parse(bytes: &[u8], shown: &str) -> Result<Recipe, JailfileError> {
    let bytes = normalize_line_ends(bytes);
    let mut jf = jailfile_grammar::parse_bytes(&bytes)
        .map_err(|e| JailfileError::Parse(e.display_with_file(shown).to_string()))?;
    let name = OverlayName { namespace: jf.name.value.namespace.clone(), name: jf.name.value.name.clone() };
    name.check_reserved().map_err(|msg| JailfileError::Reserved {
        file: format!("{shown}:{}:{}", jf.name.span.line, jf.name.span.column),
        msg,
    })?;
    let from = jf.from.take().map(|f| {
        let f = f.value;
        (OverlayName { namespace: f.name.namespace, name: f.name.name }, f.version_prefix)
    });
    let recipe_version = jf.version.take().map(|v| v.value);
    let world = jf.world.take().map(|w| w.value);
    Ok(Recipe {
        name,
        version: recipe_version,
        world,
        from,
        copy: jf.copy.as_ref().map(|c| c.value.clone()),
        script: jf.script.clone(),
        script_line: jf.script_line,
        canonical: jf.to_canonical(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crlf_reads_as_lf() {
        let lf = parse(b"name a/b\ncopy /src\n---\ntrue\necho x\n", "J").unwrap();
        let crlf = parse(b"name a/b\r\ncopy /src\r\n---\r\ntrue\r\necho x\r\n", "J").unwrap();
        assert_eq!(crlf.script, "true\necho x\n");
        assert_eq!(crlf.script, lf.script);
        assert_eq!(crlf.canonical, lf.canonical);
        assert_eq!(crlf.script_line, 4);
        assert_eq!(normalize_line_ends(b"a\rb\r"), &b"a\rb\r"[..]);
    }
}
