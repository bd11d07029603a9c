//! Diagnostics with file:line:col, rendered rustc-style with the offending source line.

use crate::ast::Span;

/// One error found in a scenario file. `span` is 1-based (line, column in characters) and
/// covers the offending token; `hint` is an optional suggestion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    pub span: Span,
    pub message: String,
    pub hint: Option<String>,
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}: error: {}",
            self.file, self.span.line, self.span.col, self.message
        )?;
        if let Some(h) = &self.hint {
            write!(f, " (hint: {h})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostic {}

impl Diagnostic {
    /// Renders with the offending source line and a caret underline:
    ///
    /// ```text
    /// scen.thps:5:10: error: unknown mapping `bfu`
    ///    5 | madvise bfu HUGEPAGE
    ///      |         ^^^
    ///      = hint: did you mean `buf`?
    /// ```
    pub fn render(&self, source: &str) -> String {
        let source = source.strip_prefix('\u{feff}').unwrap_or(source);
        let line = (self.span.line as usize)
            .checked_sub(1)
            .and_then(|i| source.lines().nth(i));
        self.render_line(line)
    }

    /// Renders with `line` as the offending source line (if known).
    fn render_line(&self, line: Option<&str>) -> String {
        let mut out = format!(
            "{}:{}:{}: error: {}\n",
            self.file, self.span.line, self.span.col, self.message
        );
        let number = self.span.line.to_string();
        let width = number.len().max(4);
        let gutter = " ".repeat(width);
        if let Some(line) = line {
            // Very long lines are cut (the caret still points into the shown part).
            let line: String = line.chars().take(4096).collect();
            // Tabs count as one column; show them as one space so the carets line up.
            let shown: String = line
                .chars()
                .map(|c| if c == '\t' { ' ' } else { c })
                .collect();
            let shown = shown.trim_end();
            out.push_str(&format!("{number:>width$} | {shown}\n"));
            let pad = (self.span.col.max(1) - 1) as usize;
            let carets = (self.span.len.max(1) as usize).min(4096);
            out.push_str(&format!(
                "{gutter} | {}{}\n",
                " ".repeat(pad.min(1 << 16)),
                "^".repeat(carets)
            ));
        }
        if let Some(h) = &self.hint {
            out.push_str(&format!("{gutter} = hint: {h}\n"));
        }
        out
    }
}

/// Renders every diagnostic, one block per error, followed by a count line. Linear in the
/// source size plus the output: the source's lines are indexed once.
pub fn render_all(diags: &[Diagnostic], source: &str) -> String {
    let source = source.strip_prefix('\u{feff}').unwrap_or(source);
    let mut wanted: Vec<usize> = diags
        .iter()
        .filter_map(|d| (d.span.line as usize).checked_sub(1))
        .collect();
    wanted.sort_unstable();
    wanted.dedup();
    let mut lines: std::collections::HashMap<usize, &str> = Default::default();
    let mut next = wanted.iter().peekable();
    for (i, l) in source.lines().enumerate() {
        let Some(&&w) = next.peek() else { break };
        if i == w {
            lines.insert(i, l);
            next.next();
        }
    }
    let mut out = String::new();
    for d in diags {
        let line = (d.span.line as usize)
            .checked_sub(1)
            .and_then(|i| lines.get(&i).copied());
        out.push_str(&d.render_line(line));
        out.push('\n');
    }
    match diags.len() {
        0 => {}
        1 => out.push_str("1 error\n"),
        n => out.push_str(&format!("{n} errors\n")),
    }
    out
}
