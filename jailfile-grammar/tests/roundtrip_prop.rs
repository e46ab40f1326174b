//! Property tests (stable, run in CI; the cargo-fuzz target in `fuzz/` is the long-running
//! version): generated valid Jailfiles in random layouts parse to what was generated and survive
//! `to_canonical`; random edits of them never panic and, when they parse, roundtrip too.

use jailfile_grammar::{parse, parse_bytes, Jailfile, Span};
use proptest::prelude::*;

/// A generated Jailfile: the values, and how to lay them out.
#[derive(Debug, Clone)]
struct Generated {
    name: String,
    version: Option<String>,
    world: Option<String>,
    from: Option<(String, Option<String>)>,
    copy: Option<String>,
    script: String,
    /// Directive lines in file order, each with its layout.
    lines: Vec<(Line, Layout)>,
    /// Layout of the separator line: trailing text, line end.
    separator: (&'static str, &'static str),
    bom: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Line {
    Name,
    Version,
    World,
    From,
    Copy,
    Blank,
    Comment,
}

#[derive(Debug, Clone)]
struct Layout {
    indent: &'static str,
    gaps: [&'static str; 2],
    trailing: &'static str,
    eol: &'static str,
}

fn segment() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._][A-Za-z0-9._-]{0,7}".prop_filter("not . or ..", |s| s != "." && s != "..")
}

fn name() -> impl Strategy<Value = String> {
    prop::collection::vec(segment(), 2..5).prop_map(|v| v.join("/"))
}

fn version() -> impl Strategy<Value = String> {
    "[A-Za-z0-9][A-Za-z0-9._+-]{0,9}"
}

fn copy_path() -> impl Strategy<Value = String> {
    let component = "[A-Za-z0-9._#~!é€-]{0,6}".prop_filter("not ..", |s| s != "..");
    prop::collection::vec(component, 0..4).prop_map(|v| format!("/{}", v.join("/")))
}

fn script() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("---\n".to_owned()),
        Just("--- x\r\n".to_owned()),
        Just("# not a comment to the parser\n".to_owned()),
        Just("name not/a-directive\n".to_owned()),
        Just("\r\n".to_owned()),
        Just("\u{FEFF}".to_owned()),
        ".{0,12}",
        "\\PC{0,12}\n",
    ];
    prop::collection::vec(piece, 0..6).prop_map(|v| v.concat())
}

fn layout() -> impl Strategy<Value = Layout> {
    let ws = || prop::sample::select(vec![" ", "  ", "\t", " \t "]);
    (
        prop::sample::select(vec!["", "", " ", "\t  "]),
        [ws(), ws()],
        prop::sample::select(vec!["", "  ", "\t", " # comment", "\t#x # y", "   #"]),
        prop::sample::select(vec!["\n", "\r\n"]),
    )
        .prop_map(|(indent, gaps, trailing, eol)| Layout { indent, gaps, trailing, eol })
}

fn generated() -> impl Strategy<Value = Generated> {
    (
        (
            name(),
            prop::option::of(version()),
            prop::option::of(segment()),
            prop::option::of((name(), prop::option::of(version()))),
            prop::option::of(copy_path()),
            script(),
        ),
        prop::collection::vec(prop::sample::select(vec![Line::Blank, Line::Comment]), 0..4),
        prop::collection::vec(layout(), 10),
        prop::sample::select(vec!["", "  ", "\t# sep", " #"]),
        prop::sample::select(vec!["\n", "\r\n", ""]),
        any::<bool>(),
        any::<prop::sample::Index>(),
    )
        .prop_flat_map(
            |((name, version, world, from, copy, script), extra, layouts, sep_tail, sep_eol, bom, _)| {
                let mut kinds = vec![Line::Name];
                kinds.extend(version.as_ref().map(|_| Line::Version));
                kinds.extend(world.as_ref().map(|_| Line::World));
                kinds.extend(from.as_ref().map(|_| Line::From));
                kinds.extend(copy.as_ref().map(|_| Line::Copy));
                kinds.extend(extra);
                let g = Generated {
                    name,
                    version,
                    world,
                    from,
                    copy,
                    script,
                    lines: vec![],
                    separator: (sep_tail, sep_eol),
                    bom,
                };
                (Just(g), Just(kinds).prop_shuffle(), Just(layouts))
            },
        )
        .prop_map(|(mut g, kinds, layouts)| {
            g.lines = kinds.into_iter().zip(layouts).collect();
            // Without a line end after the separator, the script must be empty to stay verbatim.
            if g.separator.1.is_empty() {
                g.script.clear();
            }
            g
        })
}

impl Generated {
    fn text(&self) -> String {
        let mut out = String::new();
        if self.bom {
            out.push('\u{FEFF}');
        }
        for (line, l) in &self.lines {
            let (keyword, args): (&str, Vec<&str>) = match line {
                Line::Name => ("name", vec![&self.name]),
                Line::Version => ("version", self.version.iter().map(String::as_str).collect()),
                Line::World => ("world", self.world.iter().map(String::as_str).collect()),
                Line::From => {
                    let (n, p) = self.from.as_ref().expect("from line only with from");
                    ("from", std::iter::once(n.as_str()).chain(p.as_deref()).collect())
                }
                Line::Copy => ("copy", self.copy.iter().map(String::as_str).collect()),
                Line::Blank => {
                    out.push_str(l.indent);
                    out.push_str(l.eol);
                    continue;
                }
                Line::Comment => {
                    out.push_str(l.indent);
                    out.push_str("# a comment: name x/y\t---");
                    out.push_str(l.eol);
                    continue;
                }
            };
            out.push_str(l.indent);
            out.push_str(keyword);
            for (arg, gap) in args.iter().zip(l.gaps) {
                out.push_str(gap);
                out.push_str(arg);
            }
            out.push_str(l.trailing);
            out.push_str(l.eol);
        }
        out.push_str("---");
        out.push_str(self.separator.0);
        out.push_str(self.separator.1);
        out.push_str(&self.script);
        out
    }
}

/// The text at `span`.
fn at(src: &str, span: Span) -> &str {
    &src[span.offset..span.offset + span.len]
}

fn check_roundtrip(jf: &Jailfile) -> Result<(), TestCaseError> {
    let canonical = jf.to_canonical();
    let again = parse(&canonical).map_err(|e| TestCaseError::fail(format!("{e}: {canonical:?}")))?;
    prop_assert!(jf.same_ast(&again), "{:#?}\n!=\n{:#?}", jf, again);
    prop_assert_eq!(again.to_canonical(), canonical);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn generated_jailfiles_parse_and_roundtrip(g in generated()) {
        let src = g.text();
        let jf = parse(&src).map_err(|e| TestCaseError::fail(format!("{}\n{src:?}", e.render("Jailfile"))))?;
        prop_assert_eq!(jf.name.value.to_string(), g.name.clone());
        prop_assert_eq!(at(&src, jf.name.span), g.name.as_str());
        prop_assert_eq!(jf.version.as_ref().map(|v| v.value.clone()), g.version.clone());
        prop_assert_eq!(jf.world.as_ref().map(|v| v.value.clone()), g.world.clone());
        prop_assert_eq!(jf.copy.as_ref().map(|v| v.value.clone()), g.copy.clone());
        prop_assert_eq!(
            jf.from.as_ref().map(|f| (f.value.name.to_string(), f.value.version_prefix.clone())),
            g.from.clone()
        );
        for v in [&jf.version, &jf.world, &jf.copy].into_iter().flatten() {
            prop_assert_eq!(at(&src, v.span), v.value.as_str());
        }
        prop_assert_eq!(&jf.script, &g.script);
        prop_assert_eq!(jf.script_line, g.lines.len() + 2);
        check_roundtrip(&jf)?;
    }

    /// Random edits of valid files: never a panic; a result that parses roundtrips; an error
    /// points inside the text.
    #[test]
    fn edited_jailfiles_never_panic(
        g in generated(),
        edits in prop::collection::vec(
            (any::<prop::sample::Index>(), any::<prop::sample::Index>(), 0u8..4, any::<char>()),
            1..4,
        ),
    ) {
        let mut src = g.text();
        for (index, pick, op, ch) in edits {
            let boundaries: Vec<usize> =
                src.char_indices().map(|(i, _)| i).chain(std::iter::once(src.len())).collect();
            let pos = boundaries[index.index(boundaries.len())];
            let ch = match op {
                0 => ch,
                1 => *pick.get(&['\n', '\r', ' ', '#', '/', '-', '.', '\t', '\u{FEFF}']),
                _ => ch,
            };
            if op == 3 && pos < src.len() {
                src.remove(pos);
            } else {
                src.insert(pos, ch);
            }
        }
        match parse(&src) {
            Ok(jf) => check_roundtrip(&jf)?,
            Err(e) => {
                prop_assert!(e.span.offset + e.span.len <= src.len());
                prop_assert!(e.span.line >= 1 && e.span.column >= 1);
                prop_assert!(!e.display_with_file("J").to_string().contains('\n'));
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        match parse_bytes(&bytes) {
            Ok(jf) => check_roundtrip(&jf)?,
            Err(e) => prop_assert!(e.span.offset + e.span.len <= bytes.len()),
        }
    }
}
