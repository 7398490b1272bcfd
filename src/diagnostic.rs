//! Positioned error messages for files that ops edit: `file:line:column: message`.

use std::fmt;

/// One problem found in a YAML file, with the place it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    /// 1-based; 0 when the problem has no position (the file could not be read at all).
    pub line: u64,
    pub column: u64,
    pub message: String,
}

impl Diagnostic {
    pub fn new(file: &str, line: u64, column: u64, message: impl Into<String>) -> Self {
        Diagnostic {
            file: file.to_owned(),
            line,
            column,
            message: message.into(),
        }
    }

    /// A problem with the whole file (unreadable, not a file): reported at 1:1 so that editors
    /// and CI annotations that expect `file:line:column` still jump to the file.
    pub fn whole_file(file: &str, message: impl Into<String>) -> Self {
        Diagnostic::new(file, 1, 1, message)
    }

    /// Converts a serde-saphyr error into a diagnostic, keeping its line and column.
    pub fn from_yaml(file: &str, err: &serde_saphyr::Error) -> Self {
        let (line, column) = err
            .location()
            .map(|l| (l.line(), l.column()))
            .filter(|(l, _)| *l > 0)
            .unwrap_or((1, 1));
        let message = yaml_message(err);
        Diagnostic::new(file, line, column, message)
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )
    }
}

/// The message of a serde-saphyr error without its own position suffix or source snippet,
/// flattened to one line.
fn yaml_message(err: &serde_saphyr::Error) -> String {
    let text = match err.without_snippet() {
        serde_saphyr::Error::Message { msg, .. } => msg.clone(),
        other => other.to_string(),
    };
    let first = text.lines().next().unwrap_or("invalid YAML").trim();
    // serde-saphyr appends " at line N, column M"; the diagnostic carries the position itself.
    let trimmed = match first.rfind(" at line ") {
        Some(i) => &first[..i],
        None => first,
    };
    trimmed.to_owned()
}

/// All diagnostics, one per line, for printing.
pub fn render(diagnostics: &[Diagnostic]) -> String {
    let mut out = String::new();
    for d in diagnostics {
        out.push_str(&d.to_string());
        out.push('\n');
    }
    out
}
