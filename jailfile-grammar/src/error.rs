//! Parse errors: one typed enum of what went wrong ([`ErrorKind`]), one struct that adds where
//! ([`ParseError`]).

use std::fmt;

use crate::Span;

/// A directive of the Jailfile header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Directive {
    /// `name NAMESPACE/NAME`
    Name,
    /// `version VERSION`
    Version,
    /// `world WORLD`
    World,
    /// `from NAME [VERSION-PREFIX]`
    From,
    /// `copy DEST`
    Copy,
}

impl Directive {
    /// All directives, in canonical order.
    pub const ALL: [Directive; 5] =
        [Directive::Name, Directive::Version, Directive::World, Directive::From, Directive::Copy];

    /// The keyword as written in a Jailfile.
    pub fn keyword(self) -> &'static str {
        match self {
            Directive::Name => "name",
            Directive::Version => "version",
            Directive::World => "world",
            Directive::From => "from",
            Directive::Copy => "copy",
        }
    }

    /// The directive's arguments, for "takes ..." messages.
    pub fn usage(self) -> &'static str {
        match self {
            Directive::Name => "NAMESPACE/NAME",
            Directive::Version => "VERSION",
            Directive::World => "WORLD",
            Directive::From => "NAME [VERSION-PREFIX]",
            Directive::Copy => "DEST (one absolute path)",
        }
    }

    /// The directive for a keyword (case-sensitive: only lower case is a keyword).
    pub fn from_keyword(word: &str) -> Option<Directive> {
        Directive::ALL.into_iter().find(|d| d.keyword() == word)
    }
}

impl fmt::Display for Directive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.keyword())
    }
}

/// Which value an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    /// The argument of `name` (also names given on a command line, see [`crate::parse_name`]).
    Name,
    /// The argument of `version`.
    Version,
    /// The argument of `world`.
    World,
    /// The first argument of `from`.
    FromName,
    /// The second argument of `from`.
    FromVersionPrefix,
    /// The argument of `copy`.
    Copy,
}

impl Field {
    /// The characters the field allows, for "allowed: ..." messages.
    pub fn allowed(self) -> &'static str {
        match self {
            Field::Name | Field::FromName | Field::World => "A-Z a-z 0-9 . _ -",
            Field::Version | Field::FromVersionPrefix => "A-Z a-z 0-9 . _ + -",
            Field::Copy => "any character but control characters",
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Field::Name => "name",
            Field::Version => "version",
            Field::World => "world",
            Field::FromName => "parent name",
            Field::FromVersionPrefix => "version prefix",
            Field::Copy => "copy destination",
        })
    }
}

/// What is wrong with a Jailfile (or with a name or version given elsewhere, see
/// [`crate::parse_name`]). Each renders as one lower-case line that quotes the offending text
/// (escaped and shortened, so it is safe to print on a terminal) and says what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A header line starts with a word that is no directive.
    #[error("unknown directive {} (expected name, version, world, from, copy or ---)", Quoted(.found))]
    UnknownDirective {
        /// The unknown word.
        found: String,
    },
    /// A directive appears a second time.
    #[error("duplicate '{directive}' (first at line {first_line})")]
    DuplicateDirective {
        /// The repeated directive.
        directive: Directive,
        /// Line (1-based) of its first occurrence.
        first_line: usize,
    },
    /// A directive with the wrong number of arguments.
    #[error("'{directive}' takes {}, got {got} argument{}", .directive.usage(), plural(*.got))]
    WrongArgumentCount {
        /// The directive.
        directive: Directive,
        /// How many arguments it was given.
        got: usize,
    },
    /// The header has no `name` directive.
    #[error("missing 'name' directive (expected 'name NAMESPACE/NAME' before '---')")]
    MissingName,
    /// No `---` line ends the header.
    #[error("missing '---' separator line before the script")]
    MissingSeparator,
    /// A line that looks like the separator but is not one: indented, or with more text after
    /// `---` than spaces and a comment (`--- x`, `---x`, `----`, `  ---`).
    #[error(
        "malformed separator line {} (expected exactly '---' at the start of a line, \
         optionally followed by spaces and a comment)",
        Quoted(.found)
    )]
    MalformedSeparator {
        /// The line, as written (without its line end).
        found: String,
    },
    /// A value holds a character its field does not allow.
    #[error("bad character {} in {field} {} (allowed: {})", QuotedChar(*.ch), Quoted(.found), .field.allowed())]
    BadCharacter {
        /// The field.
        field: Field,
        /// The first offending character.
        ch: char,
        /// Its position in `found`, in characters, 1-based.
        column: usize,
        /// The whole value.
        found: String,
    },
    /// A value is empty (only possible outside a Jailfile, e.g. `parse_name("")`).
    #[error("empty {field}")]
    Empty {
        /// The field.
        field: Field,
    },
    /// A name has no `/`.
    #[error("{field} {} has no '/' (expected NAMESPACE/NAME)", Quoted(.found))]
    NameWithoutSlash {
        /// `Name` or `FromName`.
        field: Field,
        /// The whole value.
        found: String,
    },
    /// A name has an empty segment (`/a`, `a/`, `a//b`).
    #[error("{field} {} has an empty segment (expected NAMESPACE/NAME with non-empty segments)", Quoted(.found))]
    EmptySegment {
        /// `Name` or `FromName`.
        field: Field,
        /// The whole value.
        found: String,
    },
    /// A name or world has a `.` or `..` segment, or a copy destination a `..` component.
    #[error("{} ('.' and '..' are not allowed)", Subject(*.field, .found, .segment))]
    DotSegment {
        /// `Name`, `FromName`, `World` or `Copy`.
        field: Field,
        /// The whole value.
        found: String,
        /// `.` or `..`.
        segment: String,
    },
    /// A name segment or a world starts with `-` (it would read as a command-line option).
    #[error("{} starts with '-' (expected a letter, digit, '.' or '_' first)", Subject(*.field, .found, .segment))]
    LeadingDash {
        /// `Name`, `FromName` or `World`.
        field: Field,
        /// The whole value.
        found: String,
        /// The segment starting with `-`.
        segment: String,
    },
    /// A version or version prefix does not start with a letter or digit.
    #[error("{field} {} does not start with a letter or digit", Quoted(.found))]
    BadVersionStart {
        /// `Version` or `FromVersionPrefix`.
        field: Field,
        /// The whole value.
        found: String,
    },
    /// The `copy` destination does not start with `/`.
    #[error("copy destination {} is not absolute (expected a path starting with '/')", Quoted(.found))]
    CopyNotAbsolute {
        /// The argument.
        found: String,
    },
    /// The input is not UTF-8 (from [`crate::parse_bytes`]).
    #[error("invalid UTF-8 (byte 0x{byte:02x}); a Jailfile must be UTF-8 text")]
    InvalidUtf8 {
        /// The first byte that is not valid UTF-8.
        byte: u8,
    },
    /// The grammar itself failed. The grammar accepts any text, so this is not expected to
    /// happen; it exists so that no input can panic.
    #[error("cannot parse this line (expected a directive, a comment or '---')")]
    Syntax,
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// `name 'a/../b': segment '..'`, or `world '..'` when the segment is the whole value.
struct Subject<'a>(Field, &'a str, &'a str);

impl fmt::Display for Subject<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Subject(field, found, segment) = *self;
        if found == segment {
            write!(f, "{field} {}", Quoted(found))
        } else {
            let part = if field == Field::Copy { "component" } else { "segment" };
            write!(f, "{field} {}: {part} {}", Quoted(found), Quoted(segment))
        }
    }
}

/// A parse error: what ([`ErrorKind`]), where ([`Span`]) and the text of the line it is on.
///
/// `Display` is the one-line form without a file name, `3:5: unknown directive 'frm' (...)`;
/// [`ParseError::display_with_file`] prefixes a file name and [`ParseError::render`] also shows
/// the line with a caret under the offending text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{}: {}", .span.line, .span.column, .kind)]
pub struct ParseError {
    /// What is wrong.
    pub kind: ErrorKind,
    /// Where: the offending token (a bad character, a directive word, an extra argument, ...).
    /// For a missing separator it is the (empty) end of the file; for a missing `name`, the
    /// separator line.
    pub span: Span,
    /// The source line holding `span` (without its line end or a byte order mark), as written.
    /// May hold control characters; [`ParseError::render`] escapes them.
    pub line_text: String,
}

impl ParseError {
    /// The one-line message with a file name:
    /// `Jailfile:3:5: unknown directive 'frm' (expected name, version, world, from, copy or ---)`.
    pub fn display_with_file<'a>(&'a self, file: &'a str) -> impl fmt::Display + 'a {
        WithFile { err: self, file }
    }

    /// The one-line message with a file name, then the offending line and a caret line under
    /// the span, like rustc:
    ///
    /// ```text
    /// Jailfile:3:1: unknown directive 'frm' (expected name, version, world, from, copy or ---)
    ///   |
    /// 3 | frm lang/common 1.0
    ///   | ^^^
    /// ```
    ///
    /// Control and invisible characters of the line are shown as `\u{FFFD}`, so that the
    /// output is safe on a terminal and the caret still lines up (one column per character).
    pub fn render(&self, file: &str) -> String {
        let num = self.span.line.to_string();
        let pad = " ".repeat(num.len());
        let col0 = self.span.column.saturating_sub(1);
        let indent: String =
            self.line_text.chars().take(col0).map(|c| if c == '\t' { '\t' } else { ' ' }).collect();
        // The span's length is in bytes; count the characters it covers on this line.
        let mut bytes = 0;
        let width = self
            .line_text
            .chars()
            .skip(col0)
            .take_while(|c| {
                let more = bytes < self.span.len;
                bytes += c.len_utf8();
                more
            })
            .count()
            .max(1);
        let shown: String = self.line_text.chars().map(display_char).collect();
        format!(
            "{}\n{pad} |\n{num} | {shown}\n{pad} | {indent}{}",
            self.display_with_file(file),
            "^".repeat(width)
        )
    }
}

struct WithFile<'a> {
    err: &'a ParseError,
    file: &'a str,
}

impl fmt::Display for WithFile<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.err)
    }
}

/// Characters that must not reach a terminal raw: controls (escape sequences), and invisible or
/// direction-changing format characters.
fn is_hidden(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2028}' | '\u{2029}'
            | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

/// One column per character in the echoed source line.
fn display_char(c: char) -> char {
    if c != '\t' && is_hidden(c) {
        '\u{FFFD}'
    } else {
        c
    }
}

/// Longest user text quoted in a message, in characters.
const QUOTE_MAX: usize = 60;

/// User text in a message: single-quoted, hidden characters escaped, long text shortened with
/// `...`.
#[derive(Debug)]
pub(crate) struct Quoted<'a>(pub(crate) &'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("'")?;
        for (i, c) in self.0.chars().enumerate() {
            if i == QUOTE_MAX {
                f.write_str("...")?;
                break;
            }
            write_char(f, c)?;
        }
        f.write_str("'")
    }
}

/// One character in a message, quoted and escaped like [`Quoted`].
#[derive(Debug)]
pub(crate) struct QuotedChar(pub(crate) char);

impl fmt::Display for QuotedChar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("'")?;
        write_char(f, self.0)?;
        f.write_str("'")
    }
}

fn write_char(f: &mut fmt::Formatter<'_>, c: char) -> fmt::Result {
    match c {
        '\t' => f.write_str("\\t"),
        '\r' => f.write_str("\\r"),
        '\n' => f.write_str("\\n"),
        '\'' => f.write_str("\\'"),
        c if is_hidden(c) => write!(f, "{}", c.escape_unicode()),
        c => write!(f, "{c}"),
    }
}
