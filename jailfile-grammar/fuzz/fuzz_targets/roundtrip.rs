//! Any input: parsing never panics, errors and spans are consistent with the input, and a
//! Jailfile that parses prints (`to_canonical`) to text that parses to the same AST and prints
//! the same again.
#![no_main]

use jailfile_grammar::{parse, parse_bytes, Span};
use libfuzzer_sys::fuzz_target;

/// The span lies in `src`, on character boundaries, and its line and column match its offset.
fn check_span(src: &str, span: Span) {
    let end = span.offset + span.len;
    assert!(end <= src.len(), "span {span:?} out of {} bytes", src.len());
    assert!(src.is_char_boundary(span.offset) && src.is_char_boundary(end), "{span:?}");
    let before = &src[..span.offset];
    assert_eq!(span.line, before.matches('\n').count() + 1, "{span:?}");
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let mut in_line = &before[line_start..];
    if line_start == 0 {
        in_line = in_line.strip_prefix('\u{FEFF}').unwrap_or(in_line);
    }
    assert_eq!(span.column, in_line.chars().count() + 1, "{span:?}");
}

fuzz_target!(|data: &[u8]| {
    let result = parse_bytes(data);
    let Ok(src) = std::str::from_utf8(data) else {
        let err = result.expect_err("invalid UTF-8 must not parse");
        assert!(err.span.offset < data.len());
        let _ = err.render("Jailfile");
        return;
    };
    assert_eq!(result, parse(src), "parse_bytes and parse disagree");
    match result {
        Err(err) => {
            check_span(src, err.span);
            let one_line = err.display_with_file("Jailfile").to_string();
            assert!(!one_line.contains('\n'), "multi-line message {one_line:?}");
            let _ = err.render("Jailfile");
        }
        Ok(jf) => {
            // Spans point at the values as written.
            check_span(src, jf.name.span);
            assert_eq!(&src[jf.name.span.offset..][..jf.name.span.len], jf.name.value.to_string());
            for v in [&jf.version, &jf.world, &jf.copy].into_iter().flatten() {
                check_span(src, v.span);
                assert_eq!(&src[v.span.offset..][..v.span.len], v.value);
            }
            if let Some(from) = &jf.from {
                check_span(src, from.span);
            }
            assert!(src.ends_with(&jf.script));

            let canonical = jf.to_canonical();
            let again = parse(&canonical)
                .unwrap_or_else(|e| panic!("canonical form does not parse: {e}\n{canonical:?}"));
            assert!(jf.same_ast(&again), "{jf:#?}\n!=\n{again:#?}");
            assert_eq!(again.to_canonical(), canonical);
        }
    }
});
