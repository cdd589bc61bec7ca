//! Fitting text into the dashboard's cells, in terminal columns (ratatui's
//! widths, from `unicode-width`), never bytes.
//!
//! Promises: nothing drawn is cut silently. Text too wide is cut at a
//! character boundary and ends with [`ELLIPSIS`]; wrapped text breaks
//! between words, and when it has more lines than it may use, its last line
//! ends after a whole word, then `…`. A single word wider than a whole line
//! is the one thing cut inside a word, and it too ends with `…`. No input
//! makes these functions panic, whatever the width (0 included).

use std::borrow::Cow;

use ratatui::style::Style;
use ratatui::text::{Line, Span};

/// Marks where text was cut.
pub const ELLIPSIS: &str = "…";

/// Columns `s` takes on a terminal.
pub fn width(s: &str) -> usize {
    Span::raw(s).width()
}

fn char_width(c: char) -> usize {
    let mut buf = [0u8; 4];
    width(c.encode_utf8(&mut buf))
}

/// The longest prefix of `text` that fits in `width` columns.
fn prefix(text: &str, width: usize) -> &str {
    let mut used = 0;
    for (i, c) in text.char_indices() {
        used += char_width(c);
        if used > width {
            return &text[..i];
        }
    }
    text
}

/// `text` when it fits in `width` columns; otherwise as much of it as fits
/// before a `…`.
pub fn ellipsize(text: &str, width: usize) -> Cow<'_, str> {
    if self::width(text) <= width {
        return Cow::Borrowed(text);
    }
    if width == 0 {
        return Cow::Borrowed("");
    }
    Cow::Owned(format!("{}{ELLIPSIS}", prefix(text, width - 1)))
}

/// `line` ending with `…` so that it fits in `width` columns: cut after
/// its last whole word that leaves room for the `…` (inside the word only
/// when the line is one word).
fn end_at_word(line: &str, width: usize) -> String {
    if width == 0 {
        return String::new();
    }
    let mut kept = line.trim_end();
    loop {
        if self::width(kept) < width {
            return format!("{kept}{ELLIPSIS}");
        }
        match kept.rsplit_once(' ') {
            Some((head, _)) if !head.trim_end().is_empty() => kept = head.trim_end(),
            _ => return format!("{}{ELLIPSIS}", prefix(kept, width - 1)),
        }
    }
}

/// Room a word wider than a whole line needs left on the current line to
/// start there (cut) rather than on a line of its own.
const MIN_CUT_WORD: usize = 8;

/// `text` in at most `max_lines` lines of at most `width` columns, broken
/// between words (any run of whitespace is one break). A word wider than a
/// whole line is cut to the room left, with `…`, and the text goes on; when
/// the text needs more than `max_lines` lines, the last one kept ends after
/// a whole word with `…`. Never empty.
pub fn wrap(text: &str, width: usize, max_lines: usize) -> Vec<String> {
    let width = width.max(1);
    let max_lines = max_lines.max(1);
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    let mut used = 0;
    let mut words = text.split_whitespace().peekable();
    while let Some(&word) = words.peek() {
        if lines.len() == max_lines {
            break;
        }
        let w = self::width(word);
        let sep = usize::from(!line.is_empty());
        if used + sep + w <= width {
            if sep == 1 {
                line.push(' ');
            }
            line.push_str(word);
            used += sep + w;
            words.next();
        } else if w > width && width - used >= sep + MIN_CUT_WORD.min(width) {
            // Wider than any line: cut here, and the line is full.
            if sep == 1 {
                line.push(' ');
            }
            line.push_str(&ellipsize(word, width - used - sep));
            lines.push(std::mem::take(&mut line));
            used = 0;
            words.next();
        } else {
            // Onto the next line (`line` is not empty here: a word that
            // does not fit an empty line was cut above).
            lines.push(std::mem::take(&mut line));
            used = 0;
        }
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    if words.peek().is_some() {
        let last = lines.last_mut().expect("never empty");
        *last = end_at_word(last, width);
    }
    lines
}

/// `line` cut to `width` columns, ending with a `…` in the style of the
/// span it cut; unchanged when it fits. The line's own style and alignment
/// are kept.
pub fn fit_line(line: Line<'static>, width: usize) -> Line<'static> {
    if line.width() <= width {
        return line;
    }
    let Line {
        style: line_style,
        alignment,
        spans,
    } = line;
    let budget = width.saturating_sub(1);
    let mut out: Vec<Span<'static>> = Vec::with_capacity(spans.len() + 1);
    let mut used = 0;
    let mut style = Style::default();
    for span in spans {
        style = span.style;
        let w = span.width();
        if used + w <= budget {
            used += w;
            out.push(span);
            continue;
        }
        let part = prefix(&span.content, budget - used).to_owned();
        if !part.is_empty() {
            out.push(Span::styled(part, style));
        }
        break;
    }
    if width > 0 {
        out.push(Span::styled(ELLIPSIS, style));
    }
    let mut fitted = Line::from(out).style(line_style);
    fitted.alignment = alignment;
    fitted
}

/// One span cut to `width` columns as [`fit_line`] cuts a line.
pub fn fit_span(span: Span<'static>, width: usize) -> Line<'static> {
    fit_line(Line::from(span), width)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::style::{Color, Stylize};

    #[test]
    fn ellipsize_cuts_at_a_char_boundary_and_marks_it() {
        assert_eq!(ellipsize("short", 5), "short");
        assert_eq!(ellipsize("shorter", 5), "shor…");
        assert_eq!(ellipsize("tester-42-18ed6b0c", 10), "tester-42…");
        // Multi-byte characters are never split.
        assert_eq!(ellipsize("ééééé", 4), "ééé…");
        // A wide character that does not fit whole is left out.
        assert_eq!(ellipsize("ab文字", 4), "ab…");
        assert_eq!(ellipsize("abc", 1), "…");
        assert_eq!(ellipsize("abc", 0), "");
        assert_eq!(ellipsize("", 0), "");
    }

    #[test]
    fn wrap_breaks_between_words_and_marks_what_it_drops() {
        assert_eq!(wrap("abc def ghi", 7, 9), vec!["abc def", "ghi"]);
        assert_eq!(wrap("ab cd", 2, 9), vec!["ab", "cd"]);
        assert_eq!(wrap("", 5, 9), vec![""]);
        assert_eq!(wrap("short", 80, 1), vec!["short"]);
        // Whitespace of any kind is one break.
        assert_eq!(wrap("a \n\t b", 80, 1), vec!["a b"]);
        // A word wider than a line is cut with an ellipsis; the text goes on.
        assert_eq!(wrap("abcdefghij", 4, 9), vec!["abc…"]);
        assert_eq!(
            wrap("put \"a-very-long-file-name.txt\" v1", 11, 9),
            vec!["put", "\"a-very-lo…", "v1"]
        );
        // With room left on the line, the cut word starts there.
        assert_eq!(
            wrap("put \"a-very-long-file-name.txt\" v1 (1 hash)", 16, 9),
            vec!["put \"a-very-lon…", "v1 (1 hash)"]
        );
        // Too many lines: the last kept ends after a whole word, then `…`.
        assert_eq!(
            wrap("one two three four five", 9, 2),
            vec!["one two", "three…"]
        );
        assert_eq!(wrap("one two three four", 7, 1), vec!["one…"]);
        // No room for the `…` after the last word: that word goes too.
        assert_eq!(wrap("abcd efgh ijkl", 4, 1), vec!["abc…"]);
        assert_eq!(wrap("ab cd ef gh", 5, 1), vec!["ab…"]);
    }

    #[test]
    fn no_width_or_text_panics() {
        for text in ["", " ", "a", "ab cd", "文字 文字", "x…y", "\u{301}a\u{301}"] {
            for width in 0..8 {
                for max_lines in 0..3 {
                    for line in wrap(text, width, max_lines) {
                        assert!(self::width(&line) <= width.max(1), "{text:?} {width}");
                    }
                }
                assert!(self::width(&ellipsize(text, width)) <= width);
                let fitted = fit_line(Line::from(vec![text.to_owned().red(), "zz".into()]), width);
                assert!(fitted.width() <= width, "{text:?} {width}");
            }
        }
    }

    #[test]
    fn fit_line_keeps_the_styles_and_styles_the_ellipsis_as_what_it_cut() {
        let line = Line::from(vec!["abc".into(), "defgh".red(), "ij".blue()]);
        assert_eq!(fit_line(line.clone(), 10), line);
        let fitted = fit_line(line.clone(), 6);
        assert_eq!(fitted.to_string(), "abcde…");
        assert_eq!(fitted.spans.last().unwrap().style.fg, Some(Color::Red));
        // Cut at a span boundary: the ellipsis takes the next span's style.
        let fitted = fit_line(line, 9);
        assert_eq!(fitted.to_string(), "abcdefgh…");
        assert_eq!(fitted.spans.last().unwrap().style.fg, Some(Color::Blue));
    }
}
