#![forbid(unsafe_code)]
//! The Jailfile grammar: lightjail's build-file format, parsed into a typed AST with positions.
//!
//! ```text
//! # comments start with #, at the start of a line or after whitespace
//! name lang/ruby          # required: NAMESPACE/NAME
//! version 2.1.1           # optional
//! world debian-12         # optional
//! from lang/common 1.0    # optional: NAME [VERSION-PREFIX]
//! copy /src               # optional: one absolute path
//! ---
//! # everything after the separator line is the shell script, byte for byte
//! pkg install -y ruby21
//! ```
//!
//! The header is a sequence of lines. Each is blank, a comment, or a directive: a keyword and its
//! arguments, separated by spaces or tabs, optionally followed by whitespace and a `#` comment (a
//! `#` inside a word is an ordinary character). Directives may come in any order, each at most
//! once; `name` is required. Lines end with `\n` or `\r\n`; a leading byte order mark is
//! skipped. The first line that is exactly `---` (optionally followed by spaces and a comment)
//! ends the header; everything after that line is the script, verbatim (it may be empty, and
//! may hold lines starting with `#` or `---`). A file without a separator is an error, as in
//! lightjail.
//!
//! Unlike the original lightjail, unknown and repeated directives are errors, not ignored or
//! overridden. Every error ([`ParseError`]) has a typed [`ErrorKind`], the line and column of the
//! offending token and the text of its line.
//!
//! Values:
//! - names (`name`, first argument of `from`): segments of `A-Z a-z 0-9 . _ -` separated by `/`,
//!   at least one `/`, no empty, `.` or `..` segment, no segment starting with `-`. The part
//!   after the last `/` is [`Name::name`], everything before it [`Name::namespace`].
//! - `world`: one such segment (no `/`).
//! - `version` and the version prefix of `from`: `A-Z a-z 0-9 . _ + -`, starting with a letter
//!   or digit.
//! - `copy`: an absolute path without `..` components or control characters (so no NUL).
//!
//! ```
//! let jf = jailfile_grammar::parse("name lang/ruby\nfrom lang/common 1.0\n---\necho hi\n").unwrap();
//! assert_eq!(jf.name.value.to_string(), "lang/ruby");
//! assert_eq!(jf.from.as_ref().unwrap().value.version_prefix.as_deref(), Some("1.0"));
//! assert_eq!(jf.script, "echo hi\n");
//! assert_eq!(jf.script_line, 4);
//!
//! let err = jailfile_grammar::parse("name lang/ruby\nfrm x/y\n---\n").unwrap_err();
//! assert_eq!(
//!     err.display_with_file("Jailfile").to_string(),
//!     "Jailfile:2:1: unknown directive 'frm' (expected name, version, world, from, copy or ---)"
//! );
//! ```

mod error;

use std::fmt;
use std::ops::Range;

use pest::Parser as _;

pub use error::{Directive, ErrorKind, Field, ParseError};

mod grammar {
    //! The pest grammar (`jailfile.pest`): it only cuts the text into lines, words, comments,
    //! the separator and the script; what the words mean is checked in the parent module.
    #[derive(pest_derive::Parser)]
    #[grammar = "jailfile.pest"]
    pub(crate) struct JailfileParser;
}

use grammar::{JailfileParser, Rule};

/// A position in the source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Span {
    /// Line, 1-based. Lines are separated by `\n`.
    pub line: usize,
    /// Column, 1-based, in characters (not bytes) from the start of the line; a byte order
    /// mark at the start of the file is not counted.
    pub column: usize,
    /// Byte offset of the start in the source text (the BOM, if any, counts here).
    pub offset: usize,
    /// Length in bytes (0 for a position, e.g. the end of the file).
    pub len: usize,
}

/// A value with the span of its text in the source.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Spanned<T> {
    /// The value.
    pub value: T,
    /// Where it was written: the directive's argument(s), not its keyword.
    pub span: Span,
}

/// A parsed Jailfile.
///
/// The derived `PartialEq` compares spans too; use [`Jailfile::same_ast`] (or compare
/// [`Jailfile::without_spans`]) to compare content only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jailfile {
    /// `name NAMESPACE/NAME` (required).
    pub name: Spanned<Name>,
    /// `version VERSION`.
    pub version: Option<Spanned<String>>,
    /// `world WORLD`.
    pub world: Option<Spanned<String>>,
    /// `from NAME [VERSION-PREFIX]`: the parent overlay. The span covers both arguments.
    pub from: Option<Spanned<From>>,
    /// `copy DEST`: where the Jailfile's directory is copied to in the overlay, as written.
    pub copy: Option<Spanned<String>>,
    /// The shell script: everything after the separator line, byte for byte (line ends
    /// included, `\r\n` kept as is). May be empty.
    pub script: String,
    /// The 1-based line where the script starts: the line after the separator, even if the
    /// script is empty.
    pub script_line: usize,
}

/// An overlay name, `NAMESPACE/NAME`.
///
/// A name with more than one `/` is split at the last one: `a/b/c` has namespace `a/b` and
/// name `c`. `Display` prints `namespace/name`, the text it was parsed from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name {
    /// Everything before the last `/` (itself one or more valid segments joined by `/`).
    pub namespace: String,
    /// The segment after the last `/`.
    pub name: String,
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl std::str::FromStr for Name {
    type Err = ErrorKind;

    /// Same as [`parse_name`].
    fn from_str(s: &str) -> Result<Name, ErrorKind> {
        parse_name(s)
    }
}

/// The `from` directive: a parent overlay, by name and an optional version prefix.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct From {
    /// The parent's name.
    pub name: Name,
    /// Picks the highest version starting with this prefix; `None`: the newest version.
    pub version_prefix: Option<String>,
}

impl fmt::Display for From {
    /// The directive's arguments: `lang/common 1.0` or `lang/common`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.version_prefix {
            Some(prefix) => write!(f, "{} {prefix}", self.name),
            None => write!(f, "{}", self.name),
        }
    }
}

impl Jailfile {
    /// The canonical printed form: the directives present, one per line, in the fixed order
    /// `name`, `version`, `world`, `from`, `copy`, single spaces, no comments, `\n` line ends;
    /// then `---\n` and the script verbatim.
    ///
    /// `parse(&jf.to_canonical())` succeeds and gives the same AST ([`Jailfile::same_ast`]).
    pub fn to_canonical(&self) -> String {
        let mut out = format!("name {}\n", self.name.value);
        if let Some(version) = &self.version {
            out.push_str(&format!("version {}\n", version.value));
        }
        if let Some(world) = &self.world {
            out.push_str(&format!("world {}\n", world.value));
        }
        if let Some(from) = &self.from {
            out.push_str(&format!("from {}\n", from.value));
        }
        if let Some(copy) = &self.copy {
            out.push_str(&format!("copy {}\n", copy.value));
        }
        out.push_str("---\n");
        out.push_str(&self.script);
        out
    }

    /// A copy with every span set to `Span::default()` and `script_line` to 0: two Jailfiles
    /// have the same content iff their `without_spans()` are equal.
    pub fn without_spans(&self) -> Jailfile {
        fn strip<T: Clone>(s: &Spanned<T>) -> Spanned<T> {
            Spanned { value: s.value.clone(), span: Span::default() }
        }
        Jailfile {
            name: strip(&self.name),
            version: self.version.as_ref().map(strip),
            world: self.world.as_ref().map(strip),
            from: self.from.as_ref().map(strip),
            copy: self.copy.as_ref().map(strip),
            script: self.script.clone(),
            script_line: 0,
        }
    }

    /// Whether both have the same directives and script, ignoring spans and `script_line`
    /// (which depend on comments and layout).
    pub fn same_ast(&self, other: &Jailfile) -> bool {
        self.without_spans() == other.without_spans()
    }
}

/// Whether `s` is a valid name segment (also a valid world): one or more of `A-Z a-z 0-9 . _ -`,
/// not `.` or `..`, not starting with `-`.
pub fn is_valid_name_segment(s: &str) -> bool {
    !s.is_empty() && s.chars().all(is_segment_char) && s != "." && s != ".." && !s.starts_with('-')
}

/// Parses a name like the argument of `name` (e.g. from a command line: `lang/ruby`). Splits at
/// the last `/`: `a/b/c` is namespace `a/b`, name `c`.
pub fn parse_name(s: &str) -> Result<Name, ErrorKind> {
    check_name(s, Field::Name).map_err(|(kind, _)| kind)
}

/// Checks a version (or a version prefix): one or more of `A-Z a-z 0-9 . _ + -`, starting with a
/// letter or digit. The error names the value as a [`Field::Version`].
pub fn validate_version(s: &str) -> Result<(), ErrorKind> {
    check_version(s, Field::Version).map_err(|(kind, _)| kind)
}

/// Checks a world name: a valid name segment (see [`is_valid_name_segment`]), with an error
/// saying what is wrong.
pub fn validate_world(s: &str) -> Result<(), ErrorKind> {
    check_world(s).map_err(|(kind, _)| kind)
}

/// Parses a Jailfile.
///
/// On error, the [`ParseError`] points at the first problem in the file (in text order); a
/// missing `name` or separator is reported after the whole header has been checked.
pub fn parse(src: &str) -> Result<Jailfile, ParseError> {
    let mut pairs = JailfileParser::parse(Rule::file, src).map_err(|e| {
        let pos = match e.location {
            pest::error::InputLocation::Pos(p) => p,
            pest::error::InputLocation::Span((p, _)) => p,
        };
        error_at(src, ErrorKind::Syntax, pos..pos)
    })?;
    let Some(file) = pairs.next() else {
        return Err(error_at(src, ErrorKind::Syntax, 0..0));
    };

    let mut header = Header::default();
    let mut line_no = 0;
    let mut separator: Option<(usize, Range<usize>)> = None;
    let mut script: Option<&str> = None;
    for pair in file.into_inner() {
        match pair.as_rule() {
            Rule::line => {
                line_no += 1;
                let words: Vec<(&str, Range<usize>)> = pair
                    .into_inner()
                    .filter(|p| p.as_rule() == Rule::directive)
                    .flat_map(|d| d.into_inner())
                    .map(|w| (w.as_str(), w.as_span().start()..w.as_span().end()))
                    .collect();
                header.directive(src, line_no, &words)?;
            }
            Rule::separator => {
                line_no += 1;
                let start = pair.as_span().start();
                separator = Some((line_no, start..start + 3));
            }
            Rule::script => script = Some(pair.as_str()),
            Rule::EOI => {}
            _ => {
                let start = pair.as_span().start();
                return Err(error_at(src, ErrorKind::Syntax, start..start));
            }
        }
    }

    let Some((separator_line, separator_range)) = separator else {
        return Err(error_at(src, ErrorKind::MissingSeparator, src.len()..src.len()));
    };
    let Some(name) = header.name else {
        return Err(error_at(src, ErrorKind::MissingName, separator_range));
    };
    Ok(Jailfile {
        name,
        version: header.version,
        world: header.world,
        from: header.from,
        copy: header.copy,
        script: script.unwrap_or_default().to_owned(),
        script_line: separator_line + 1,
    })
}

/// Parses a Jailfile from bytes: like [`parse`], and if the bytes are not UTF-8, an
/// [`ErrorKind::InvalidUtf8`] pointing at the first invalid byte.
pub fn parse_bytes(bytes: &[u8]) -> Result<Jailfile, ParseError> {
    match std::str::from_utf8(bytes) {
        Ok(src) => parse(src),
        Err(e) => {
            let good = e.valid_up_to();
            let (before, after) = bytes.split_at(good);
            // Valid by definition of `valid_up_to`.
            let prefix = std::str::from_utf8(before).unwrap_or_default();
            let mut err = error_at(prefix, ErrorKind::InvalidUtf8 { byte: after[0] }, good..good);
            err.span.len = e.error_len().unwrap_or(after.len());
            let rest = after.split(|&b| b == b'\n').next().unwrap_or_default();
            err.line_text.push_str(&String::from_utf8_lossy(rest));
            if err.line_text.ends_with('\r') {
                err.line_text.pop();
            }
            Err(err)
        }
    }
}

/// The directives seen so far.
#[derive(Default)]
struct Header {
    /// Line of the first occurrence of each directive, indexed like [`Directive::ALL`].
    seen: [Option<usize>; 5],
    name: Option<Spanned<Name>>,
    version: Option<Spanned<String>>,
    world: Option<Spanned<String>>,
    from: Option<Spanned<From>>,
    copy: Option<Spanned<String>>,
}

/// An error with a range relative to the checked value.
type Located = (ErrorKind, Range<usize>);

impl Header {
    /// Handles one header line, given its words (none for a blank or comment line).
    fn directive(
        &mut self,
        src: &str,
        line: usize,
        words: &[(&str, Range<usize>)],
    ) -> Result<(), ParseError> {
        let Some(((keyword, keyword_range), args)) = words.split_first() else {
            return Ok(());
        };
        let keyword_range = keyword_range.clone();
        if keyword.starts_with("---") {
            let mut err = error_at(src, ErrorKind::Syntax, keyword_range);
            err.kind = ErrorKind::MalformedSeparator { found: err.line_text.clone() };
            return Err(err);
        }
        let Some(directive) = Directive::from_keyword(keyword) else {
            let kind = ErrorKind::UnknownDirective { found: (*keyword).to_owned() };
            return Err(error_at(src, kind, keyword_range));
        };
        let index = Directive::ALL.iter().position(|d| *d == directive).unwrap_or_default();
        if let Some(first_line) = self.seen[index] {
            return Err(error_at(
                src,
                ErrorKind::DuplicateDirective { directive, first_line },
                keyword_range,
            ));
        }
        self.seen[index] = Some(line);

        let max = if directive == Directive::From { 2 } else { 1 };
        let (Some(first), Some(last)) = (args.first(), args.last()) else {
            return Err(error_at(src, ErrorKind::WrongArgumentCount { directive, got: 0 }, keyword_range));
        };
        if args.len() > max {
            let extra = args[max].1.start..last.1.end;
            return Err(error_at(src, ErrorKind::WrongArgumentCount { directive, got: args.len() }, extra));
        }
        let (value, value_range) = (first.0, first.1.clone());
        // Turns an error located in the argument `at` into a ParseError.
        let locate =
            |(kind, r): Located, at: &Range<usize>| error_at(src, kind, at.start + r.start..at.start + r.end);
        let spanned = |range: Range<usize>| span_of(src, range);
        match directive {
            Directive::Name => {
                let name = check_name(value, Field::Name).map_err(|e| locate(e, &value_range))?;
                self.name = Some(Spanned { value: name, span: spanned(value_range) });
            }
            Directive::Version => {
                check_version(value, Field::Version).map_err(|e| locate(e, &value_range))?;
                self.version = Some(Spanned { value: value.to_owned(), span: spanned(value_range) });
            }
            Directive::World => {
                check_world(value).map_err(|e| locate(e, &value_range))?;
                self.world = Some(Spanned { value: value.to_owned(), span: spanned(value_range) });
            }
            Directive::From => {
                let name = check_name(value, Field::FromName).map_err(|e| locate(e, &value_range))?;
                let version_prefix = match args.get(1) {
                    Some((prefix, range)) => {
                        check_version(prefix, Field::FromVersionPrefix).map_err(|e| locate(e, range))?;
                        Some((*prefix).to_owned())
                    }
                    None => None,
                };
                let span = spanned(value_range.start..last.1.end);
                self.from = Some(Spanned { value: From { name, version_prefix }, span });
            }
            Directive::Copy => {
                check_copy(value).map_err(|e| locate(e, &value_range))?;
                self.copy = Some(Spanned { value: value.to_owned(), span: spanned(value_range) });
            }
        }
        Ok(())
    }
}

fn is_segment_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

fn is_version_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-')
}

/// The first character of `s` that `ok` rejects, as a [`ErrorKind::BadCharacter`].
fn check_chars(field: Field, s: &str, ok: impl Fn(char) -> bool) -> Result<(), Located> {
    match s.char_indices().enumerate().find(|(_, (_, c))| !ok(*c)) {
        None => Ok(()),
        Some((n, (i, ch))) => {
            let kind = ErrorKind::BadCharacter { field, ch, column: n + 1, found: s.to_owned() };
            Err((kind, i..i + ch.len_utf8()))
        }
    }
}

fn check_name(s: &str, field: Field) -> Result<Name, Located> {
    if s.is_empty() {
        return Err((ErrorKind::Empty { field }, 0..0));
    }
    check_chars(field, s, |c| c == '/' || is_segment_char(c))?;
    let Some(slash) = s.rfind('/') else {
        return Err((ErrorKind::NameWithoutSlash { field, found: s.to_owned() }, 0..s.len()));
    };
    let mut start = 0;
    for segment in s.split('/') {
        let range = start..start + segment.len();
        if segment.is_empty() {
            // Point at the slash next to the empty segment.
            let at = if range.start < s.len() { range.start..range.start + 1 } else { s.len() - 1..s.len() };
            return Err((ErrorKind::EmptySegment { field, found: s.to_owned() }, at));
        }
        check_segment(field, s, segment, range.clone())?;
        start = range.end + 1;
    }
    Ok(Name { namespace: s[..slash].to_owned(), name: s[slash + 1..].to_owned() })
}

/// `.`, `..` and a leading `-`, for a non-empty `segment` at `range` of `whole`.
fn check_segment(field: Field, whole: &str, segment: &str, range: Range<usize>) -> Result<(), Located> {
    if segment == "." || segment == ".." {
        let kind = ErrorKind::DotSegment { field, found: whole.to_owned(), segment: segment.to_owned() };
        return Err((kind, range));
    }
    if segment.starts_with('-') {
        let kind = ErrorKind::LeadingDash { field, found: whole.to_owned(), segment: segment.to_owned() };
        return Err((kind, range.start..range.start + 1));
    }
    Ok(())
}

fn check_world(s: &str) -> Result<(), Located> {
    if s.is_empty() {
        return Err((ErrorKind::Empty { field: Field::World }, 0..0));
    }
    check_chars(Field::World, s, is_segment_char)?;
    check_segment(Field::World, s, s, 0..s.len())
}

fn check_version(s: &str, field: Field) -> Result<(), Located> {
    let Some(first) = s.chars().next() else {
        return Err((ErrorKind::Empty { field }, 0..0));
    };
    check_chars(field, s, is_version_char)?;
    if !first.is_ascii_alphanumeric() {
        return Err((ErrorKind::BadVersionStart { field, found: s.to_owned() }, 0..1));
    }
    Ok(())
}

fn check_copy(s: &str) -> Result<(), Located> {
    if !s.starts_with('/') {
        return Err((ErrorKind::CopyNotAbsolute { found: s.to_owned() }, 0..s.len()));
    }
    check_chars(Field::Copy, s, |c| !c.is_control())?;
    let mut start = 0;
    for component in s.split('/') {
        if component == ".." {
            let kind =
                ErrorKind::DotSegment { field: Field::Copy, found: s.to_owned(), segment: "..".to_owned() };
            return Err((kind, start..start + 2));
        }
        start += component.len() + 1;
    }
    Ok(())
}

/// The span of `range` (byte offsets on character boundaries of `src`).
fn span_of(src: &str, range: Range<usize>) -> Span {
    let before = src.get(..range.start).unwrap_or(src);
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let mut in_line = &before[line_start..];
    if line_start == 0 {
        in_line = in_line.strip_prefix('\u{FEFF}').unwrap_or(in_line);
    }
    Span {
        line: before.bytes().filter(|&b| b == b'\n').count() + 1,
        column: in_line.chars().count() + 1,
        offset: range.start,
        len: range.end.saturating_sub(range.start),
    }
}

/// A [`ParseError`] for `range` of `src`, with the text of its line.
fn error_at(src: &str, kind: ErrorKind, range: Range<usize>) -> ParseError {
    let span = span_of(src, range);
    let start = span.offset.min(src.len());
    let line_start = src[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = src[start..].find('\n').map_or(src.len(), |i| start + i);
    let mut line_text = &src[line_start..line_end];
    line_text = line_text.strip_suffix('\r').unwrap_or(line_text);
    if line_start == 0 {
        line_text = line_text.strip_prefix('\u{FEFF}').unwrap_or(line_text);
    }
    ParseError { kind, span, line_text: line_text.to_owned() }
}
