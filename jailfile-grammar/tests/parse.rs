//! Valid Jailfiles, every error, spans and messages.

use jailfile_grammar::{
    is_valid_name_segment, parse, parse_bytes, parse_name, validate_version, validate_world, Directive,
    ErrorKind, Field, Jailfile, Name, ParseError, Span,
};

fn ok(src: &str) -> Jailfile {
    match parse(src) {
        Ok(jf) => {
            let again = parse(&jf.to_canonical()).expect("canonical form parses");
            assert!(jf.same_ast(&again), "roundtrip of {src:?}");
            jf
        }
        Err(e) => panic!("{src:?}: {}", e.render("Jailfile")),
    }
}

fn err(src: &str) -> ParseError {
    match parse(src) {
        Ok(jf) => panic!("{src:?} parsed: {jf:#?}"),
        Err(e) => e,
    }
}

/// The error's `line:column` and one-line message with the file name.
fn msg(src: &str) -> String {
    err(src).display_with_file("Jailfile").to_string()
}

fn name(ns: &str, n: &str) -> Name {
    Name { namespace: ns.into(), name: n.into() }
}

// ---- valid files ----

#[test]
fn design_example() {
    let src = "\
# comments start with #
name lang/ruby          # required; namespace/name
version 2.1.1           # optional
world debian-12         # optional
from lang/common 1.0    # optional parent overlay
copy /src               # optional
---
# everything after the separator is a shell script run with /bin/sh -e in the jail
pkg install -y ruby21
";
    let jf = ok(src);
    assert_eq!(jf.name.value, name("lang", "ruby"));
    assert_eq!(jf.name.span, Span { line: 2, column: 6, offset: 29, len: 9 });
    assert_eq!(jf.version.as_ref().unwrap().value, "2.1.1");
    assert_eq!(jf.world.as_ref().unwrap().value, "debian-12");
    let from = jf.from.as_ref().unwrap();
    assert_eq!(from.value.name, name("lang", "common"));
    assert_eq!(from.value.version_prefix.as_deref(), Some("1.0"));
    assert_eq!((from.span.line, from.span.column, from.span.len), (5, 6, "lang/common 1.0".len()));
    assert_eq!(&src[from.span.offset..][..from.span.len], "lang/common 1.0");
    assert_eq!(jf.copy.as_ref().unwrap().value, "/src");
    assert_eq!(
        jf.script,
        "# everything after the separator is a shell script run with /bin/sh -e in the jail\n\
         pkg install -y ruby21\n"
    );
    assert_eq!(jf.script_line, 8);
}

#[test]
fn lightjail_readme_example() {
    let src = "\
# Example: Jailfile for installing Ruby
# Comments start with a # symbol, like in the shell
name lang/ruby # Required. This is the directory where it will be built. MUST contain a slash (subdirectory)
version 2.1.1 # Optional, a random string will be used by default
world 10.0-RELEASE # Techically optional, `uname -r` of the host will be used by default
from lang/common 1.0.0 # Optional. This is the parent overlay.
                       # Prefix search is used for the version.
                       # If you specify 2.1, it will use 2.1.1 if [2.1.0, 2.1.1] exist
copy / # Optional. Copies all files in the Jailfile's directory to the specified directory inside the overlay
---
# After the separator, we have a shell script
pkg install -y ruby21
pkg clean -aqy
";
    let jf = ok(src);
    assert_eq!(jf.world.unwrap().value, "10.0-RELEASE");
    assert_eq!(jf.copy.unwrap().value, "/");
    assert_eq!(jf.from.unwrap().value.version_prefix.as_deref(), Some("1.0.0"));
    assert_eq!(jf.script_line, 11);
    assert!(jf.script.starts_with("# After the separator"));
}

#[test]
fn minimal_and_optional_parts() {
    let jf = ok("name a/b\n---\n");
    assert_eq!(jf.name.value, name("a", "b"));
    assert!(jf.version.is_none() && jf.world.is_none() && jf.from.is_none() && jf.copy.is_none());
    assert_eq!(jf.script, "");
    assert_eq!(jf.script_line, 3);

    // Empty script, separator without a newline.
    let jf = ok("name a/b\n---");
    assert_eq!((jf.script.as_str(), jf.script_line), ("", 3));

    // `from` without a version prefix; directives in any order.
    let jf = ok("from x/y\nname a/b\n---\n");
    let from = jf.from.unwrap();
    assert_eq!(from.value.name, name("x", "y"));
    assert_eq!(from.value.version_prefix, None);
    assert_eq!(from.value.to_string(), "x/y");
}

#[test]
fn nested_namespace_splits_at_the_last_slash() {
    let jf = ok("name a/b/c\nfrom d.e/f_g/h-i 1\n---\n");
    assert_eq!(jf.name.value, name("a/b", "c"));
    assert_eq!(jf.name.value.to_string(), "a/b/c");
    assert_eq!(jf.from.unwrap().value.name, name("d.e/f_g", "h-i"));
}

#[test]
fn comments_everywhere_and_whitespace() {
    let src = "#!first line comment\n\
               \t# indented comment\n\
               \n   \n\
               \tname\t \ta/b\t # tab-separated, trailing comment\n\
               version 1.0+build_2-x   \n\
               #no space needed at line start\n\
               copy /a#b    # '#' inside a word is a character\n\
               ---\t # a comment after the separator\n\
               script";
    let jf = ok(src);
    assert_eq!(jf.name.value, name("a", "b"));
    assert_eq!((jf.name.span.line, jf.name.span.column), (5, 9));
    assert_eq!(jf.version.unwrap().value, "1.0+build_2-x");
    assert_eq!(jf.copy.unwrap().value, "/a#b");
    assert_eq!(jf.script, "script");
    assert_eq!(jf.script_line, 10);
}

#[test]
fn script_is_verbatim() {
    let script = "# a comment in the script\n---\n--- x\nname not/a-directive\n  indented  \n\n\r\nlast";
    let jf = ok(&format!("name a/b\n---\n{script}"));
    assert_eq!(jf.script, script);
    // Only the first separator line counts.
    let jf = ok("name a/b\n---\n---\n");
    assert_eq!(jf.script, "---\n");
}

#[test]
fn crlf() {
    let jf = ok("name a/b\r\nversion 1\r\n\r\n# c\r\n---\r\necho 1\r\necho 2\r\n");
    assert_eq!(jf.name.value, name("a", "b"));
    assert_eq!(jf.version.unwrap().value, "1");
    assert_eq!(jf.script, "echo 1\r\necho 2\r\n");
    assert_eq!(jf.script_line, 6);
    // A last line ending in a lone CR.
    let jf = ok("name a/b\r\n---\r");
    assert_eq!(jf.script, "");
    // Trailing whitespace before CRLF.
    let jf = ok("name a/b \t\r\n---  \r\nx");
    assert_eq!(jf.script, "x");
}

#[test]
fn byte_order_mark() {
    let jf = ok("\u{FEFF}name a/b\n---\n");
    // The BOM is not a column, but it is in the byte offset.
    assert_eq!(jf.name.span, Span { line: 1, column: 6, offset: 8, len: 3 });
}

#[test]
fn byte_order_mark_then_separator() {
    let e = err("\u{FEFF}---\n");
    assert_eq!(e.kind, ErrorKind::MissingName);
    assert_eq!((e.span.line, e.span.column, e.line_text.as_str()), (1, 1, "---"));
}

#[test]
fn canonical_form() {
    let jf = ok("copy /src # c\nfrom p/q 1.\n  world w\nversion 3\n\nname a/b\r\n---\r\nscript\r\n");
    assert_eq!(jf.to_canonical(), "name a/b\nversion 3\nworld w\nfrom p/q 1.\ncopy /src\n---\nscript\r\n");
    let again = parse(&jf.to_canonical()).unwrap();
    assert!(jf.same_ast(&again));
    assert_ne!(jf, again, "spans differ");
    assert_eq!(jf.without_spans(), again.without_spans());
    assert!(!jf.same_ast(&ok("name a/b\n---\nscript\r\n")));
}

// ---- errors ----

#[test]
fn unknown_directive() {
    assert_eq!(
        msg("name a/b\nfrm x/y\n---\n"),
        "Jailfile:2:1: unknown directive 'frm' (expected name, version, world, from, copy or ---)"
    );
    let e = err("name a/b\n\t  Name c/d\n---\n");
    assert_eq!(e.kind, ErrorKind::UnknownDirective { found: "Name".into() });
    assert_eq!((e.span.line, e.span.column, e.span.len), (2, 4, 4));
    assert_eq!(e.line_text, "\t  Name c/d");
    // Hidden characters are escaped in the message.
    assert_eq!(
        err("\u{1b}[31m a/b\n---\n").kind.to_string(),
        "unknown directive '\\u{1b}[31m' (expected name, version, world, from, copy or ---)"
    );
}

#[test]
fn duplicate_directive() {
    assert_eq!(msg("# c\nname a/b\nname c/d\n---\n"), "Jailfile:3:1: duplicate 'name' (first at line 2)");
    let e = err("from a/b\nname a/b\n  from a/b 1 2 3\n---\n");
    assert_eq!(e.kind, ErrorKind::DuplicateDirective { directive: Directive::From, first_line: 1 });
    assert_eq!((e.span.line, e.span.column), (3, 3));
}

#[test]
fn wrong_argument_count() {
    assert_eq!(
        msg("name a/b\nfrom a/b 1.0 extra\n---\n"),
        "Jailfile:2:14: 'from' takes NAME [VERSION-PREFIX], got 3 arguments"
    );
    let e = err("name a/b\nfrom a/b 1.0 x  y # c\n---\n");
    assert_eq!(e.kind, ErrorKind::WrongArgumentCount { directive: Directive::From, got: 4 });
    assert_eq!((e.span.column, e.span.len), (14, "x  y".len()));
    assert_eq!(msg("name\n---\n"), "Jailfile:1:1: 'name' takes NAMESPACE/NAME, got 0 arguments");
    assert_eq!(
        msg("name a/b\nversion 1 2\n---\n"),
        "Jailfile:2:11: 'version' takes VERSION, got 2 arguments"
    );
    assert_eq!(msg("name a/b\nworld # c\n---\n"), "Jailfile:2:1: 'world' takes WORLD, got 0 arguments");
    assert_eq!(
        msg("name a/b\ncopy /a /b\n---\n"),
        "Jailfile:2:9: 'copy' takes DEST (one absolute path), got 2 arguments"
    );
    assert_eq!(
        msg("name a/b\nfrom\n---\n"),
        "Jailfile:2:1: 'from' takes NAME [VERSION-PREFIX], got 0 arguments"
    );
}

#[test]
fn missing_name() {
    let e = err("version 1\n# no name\n---\necho\n");
    assert_eq!(e.kind, ErrorKind::MissingName);
    assert_eq!(e.span, Span { line: 3, column: 1, offset: 20, len: 3 });
    assert_eq!(
        e.display_with_file("Jailfile").to_string(),
        "Jailfile:3:1: missing 'name' directive (expected 'name NAMESPACE/NAME' before '---')"
    );
}

#[test]
fn name_without_slash() {
    assert_eq!(msg("name ruby\n---\n"), "Jailfile:1:6: name 'ruby' has no '/' (expected NAMESPACE/NAME)");
    assert_eq!(
        msg("name a/b\nfrom common 1\n---\n"),
        "Jailfile:2:6: parent name 'common' has no '/' (expected NAMESPACE/NAME)"
    );
}

#[test]
fn dot_segments() {
    assert_eq!(
        msg("name a/../b\n---\n"),
        "Jailfile:1:8: name 'a/../b': segment '..' ('.' and '..' are not allowed)"
    );
    let e = err("name ./b\n---\n");
    assert_eq!(
        e.kind,
        ErrorKind::DotSegment { field: Field::Name, found: "./b".into(), segment: ".".into() }
    );
    assert_eq!((e.span.column, e.span.len), (6, 1));
    assert_eq!(err("name a/..\n---\n").span.column, 8);
    // Dots inside a segment are fine.
    assert_eq!(ok("name .a/b..c\n---\n").name.value, name(".a", "b..c"));
}

#[test]
fn empty_segments() {
    let e = err("name a//b\n---\n");
    assert_eq!(e.kind, ErrorKind::EmptySegment { field: Field::Name, found: "a//b".into() });
    assert_eq!(e.span.column, 8);
    assert_eq!(
        e.kind.to_string(),
        "name 'a//b' has an empty segment (expected NAMESPACE/NAME with non-empty segments)"
    );
    assert_eq!(err("name /a\n---\n").span.column, 6);
    assert_eq!(err("name a/\n---\n").span.column, 7);
    assert_eq!(err("name /\n---\n").span.column, 6);
}

#[test]
fn leading_dash() {
    assert_eq!(
        msg("name a/-b\n---\n"),
        "Jailfile:1:8: name 'a/-b': segment '-b' starts with '-' (expected a letter, digit, '.' or '_' first)"
    );
    assert_eq!(
        msg("name a/b\nworld -w\n---\n"),
        "Jailfile:2:7: world '-w' starts with '-' (expected a letter, digit, '.' or '_' first)"
    );
    assert!(ok("name a-/b-c\n---\n").name.value.namespace == "a-");
}

#[test]
fn bad_character() {
    assert_eq!(
        msg("name a/$b\n---\n"),
        "Jailfile:1:8: bad character '$' in name 'a/$b' (allowed: A-Z a-z 0-9 . _ -)"
    );
    let e = err("name a/$b\n---\n");
    assert_eq!(
        e.kind,
        ErrorKind::BadCharacter { field: Field::Name, ch: '$', column: 3, found: "a/$b".into() }
    );
    // No comment without whitespace before '#'.
    assert_eq!(
        err("name a/b#c\n---\n").kind.to_string(),
        "bad character '#' in name 'a/b#c' (allowed: A-Z a-z 0-9 . _ -)"
    );
    // Columns count characters, offsets bytes.
    let e = err("name a/b\n# é\ncopy /é/\u{7}x\n---\n");
    assert_eq!(e.span, Span { line: 3, column: 9, offset: 23, len: 1 });
    assert_eq!(
        e.kind.to_string(),
        "bad character '\\u{7}' in copy destination '/é/\\u{7}x' (allowed: any character but control characters)"
    );
    let e = err("name a/b\ncopy /a\u{0}b\n---\n");
    assert!(matches!(e.kind, ErrorKind::BadCharacter { field: Field::Copy, ch: '\0', column: 3, .. }));
    // A non-ASCII letter.
    let e = err("name ns/rübÿ\n---\n");
    assert!(matches!(e.kind, ErrorKind::BadCharacter { ch: 'ü', column: 5, .. }));
    assert_eq!((e.span.column, e.span.len), (10, 2));
    // A lone CR inside a header line is a character, not a line end.
    let e = err("name a/b\rc\n---\n");
    assert!(matches!(e.kind, ErrorKind::BadCharacter { ch: '\r', .. }));
    assert_eq!(e.line_text, "name a/b\rc");
    assert!(e.render("J").contains("1 | name a/b\u{FFFD}c"));
}

#[test]
fn bad_versions_and_worlds() {
    assert_eq!(
        msg("name a/b\nversion 1.0~rc1\n---\n"),
        "Jailfile:2:12: bad character '~' in version '1.0~rc1' (allowed: A-Z a-z 0-9 . _ + -)"
    );
    assert_eq!(
        msg("name a/b\nversion -1\n---\n"),
        "Jailfile:2:9: version '-1' does not start with a letter or digit"
    );
    assert_eq!(
        msg("name a/b\nfrom c/d .1\n---\n"),
        "Jailfile:2:10: version prefix '.1' does not start with a letter or digit"
    );
    assert_eq!(
        msg("name a/b\nworld a/b\n---\n"),
        "Jailfile:2:8: bad character '/' in world 'a/b' (allowed: A-Z a-z 0-9 . _ -)"
    );
    assert_eq!(msg("name a/b\nworld ..\n---\n"), "Jailfile:2:7: world '..' ('.' and '..' are not allowed)");
}

#[test]
fn copy_destination() {
    assert_eq!(
        msg("name a/b\ncopy src\n---\n"),
        "Jailfile:2:6: copy destination 'src' is not absolute (expected a path starting with '/')"
    );
    assert_eq!(
        msg("name a/b\ncopy /a/../b\n---\n"),
        "Jailfile:2:9: copy destination '/a/../b': component '..' ('.' and '..' are not allowed)"
    );
    assert_eq!(err("name a/b\ncopy /..\n---\n").span.column, 7);
    // '.' components, '..' inside a name, trailing and double slashes are left as written.
    assert_eq!(ok("name a/b\ncopy /./a..b//c/\n---\n").copy.unwrap().value, "/./a..b//c/");
}

#[test]
fn missing_separator() {
    assert_eq!(msg("name a/b\n"), "Jailfile:2:1: missing '---' separator line before the script");
    let e = err("name a/b\n# c");
    assert_eq!(e.kind, ErrorKind::MissingSeparator);
    assert_eq!(e.span, Span { line: 2, column: 4, offset: 12, len: 0 });
    assert_eq!(e.line_text, "# c");
    assert_eq!(err("").span, Span { line: 1, column: 1, offset: 0, len: 0 });
    assert_eq!(err("\u{FEFF}").span, Span { line: 1, column: 1, offset: 3, len: 0 });
    // A missing separator is reported even when the name is missing too.
    assert_eq!(err("version 1\n").kind, ErrorKind::MissingSeparator);
}

#[test]
fn malformed_separator() {
    assert_eq!(
        msg("name a/b\n--- x\n---\n"),
        "Jailfile:2:1: malformed separator line '--- x' (expected exactly '---' at the start of a line, \
         optionally followed by spaces and a comment)"
    );
    let e = err("name a/b\n  ---\n");
    assert_eq!(e.kind, ErrorKind::MalformedSeparator { found: "  ---".into() });
    assert_eq!(e.span.column, 3);
    for src in ["---x\n", "----\n", "---#c\n", "\t--- # c\n", "--- x # c\r\n"] {
        assert!(matches!(err(src).kind, ErrorKind::MalformedSeparator { .. }), "{src:?}");
    }
    assert_eq!(err("--- x # c\r\n").kind, ErrorKind::MalformedSeparator { found: "--- x # c".into() });
}

#[test]
fn first_error_wins() {
    // In file order; a duplicate is reported before its bad arguments.
    assert!(matches!(err("name a\nfrm\n").kind, ErrorKind::NameWithoutSlash { .. }));
    assert!(matches!(err("name a/b\nname\n---\n").kind, ErrorKind::DuplicateDirective { .. }));
    assert!(matches!(err("frm\nname a\n").kind, ErrorKind::UnknownDirective { .. }));
}

#[test]
fn invalid_utf8() {
    let e = parse_bytes(b"name a/b\nver\xffsion 1\n---\n").unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidUtf8 { byte: 0xff });
    assert_eq!(e.span, Span { line: 2, column: 4, offset: 12, len: 1 });
    assert_eq!(e.line_text, "ver\u{FFFD}sion 1");
    assert_eq!(
        e.display_with_file("Jailfile").to_string(),
        "Jailfile:2:4: invalid UTF-8 (byte 0xff); a Jailfile must be UTF-8 text"
    );
    // In the script too: the script is a String.
    let e = parse_bytes(b"name a/b\r\n---\r\necho \xc3\r\n").unwrap_err();
    assert_eq!((e.span.line, e.span.column, e.line_text.as_str()), (3, 6, "echo \u{FFFD}"));
    // Valid UTF-8 parses like `parse`.
    assert_eq!(parse_bytes(b"name a/b\n---\nx").unwrap(), parse("name a/b\n---\nx").unwrap());
}

#[test]
fn render_shows_the_line_and_a_caret() {
    let e = err("name a/b\n\tfrm x/y\n---\n");
    assert_eq!(
        e.render("Jailfile"),
        "Jailfile:2:2: unknown directive 'frm' (expected name, version, world, from, copy or ---)\n  |\n2 | \tfrm x/y\n  | \t^^^"
    );
    let e = err("name a/b\n");
    assert!(e.render("J").ends_with("  |\n2 | \n  | ^"), "{}", e.render("J"));
    // The span of an error is the offending text.
    let src = "name a/b\nworld w\nversion 1\nfrom a/b 1 2\n---\n";
    let e = err(src);
    assert_eq!(&src[e.span.offset..][..e.span.len], "2");
    assert_eq!(e.to_string(), "4:12: 'from' takes NAME [VERSION-PREFIX], got 3 arguments");
}

#[test]
fn long_values_are_shortened_in_messages() {
    let long = "x".repeat(200);
    let m = err(&format!("{long}\n---\n")).kind.to_string();
    assert!(m.contains(&format!("'{}...'", "x".repeat(60))), "{m}");
}

// ---- helpers for other tools ----

#[test]
fn name_helpers() {
    assert_eq!(parse_name("lang/ruby"), Ok(name("lang", "ruby")));
    assert_eq!("a/b/c".parse::<Name>(), Ok(name("a/b", "c")));
    assert_eq!(parse_name(""), Err(ErrorKind::Empty { field: Field::Name }));
    assert_eq!(
        parse_name("lang/ruby@2.1").unwrap_err().to_string(),
        "bad character '@' in name 'lang/ruby@2.1' (allowed: A-Z a-z 0-9 . _ -)"
    );
    assert!(matches!(parse_name("ruby"), Err(ErrorKind::NameWithoutSlash { .. })));
    assert!(matches!(parse_name("a/../b"), Err(ErrorKind::DotSegment { .. })));

    for good in ["a", "A.b_c-d", "..a", "a..", "0", "_"] {
        assert!(is_valid_name_segment(good), "{good}");
    }
    for bad in ["", ".", "..", "-a", "a/b", "a b", "é", "a\0"] {
        assert!(!is_valid_name_segment(bad), "{bad:?}");
    }

    assert_eq!(validate_version("2.1+b-1_x"), Ok(()));
    assert!(matches!(validate_version("+1"), Err(ErrorKind::BadVersionStart { .. })));
    assert!(matches!(validate_version(""), Err(ErrorKind::Empty { .. })));
    assert_eq!(validate_world("debian-12"), Ok(()));
    assert!(validate_world("..").is_err());
}
