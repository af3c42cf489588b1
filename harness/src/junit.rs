//! JUnit XML for `jetsam suite --junit FILE`: one `<testcase>` per scenario,
//! a `<failure>` when its verdict differs from its `expect`, an `<error>`
//! when it ended without a verdict (bad scenario, environment). CI systems
//! read this to show each scenario as a test.
//!
//! It formats only; the suite decides what failed.

use std::fmt::Write as _;
use std::time::Duration;

/// One scenario's result as JUnit sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    pub name: String,
    pub time: Duration,
    pub outcome: CaseOutcome,
    /// Shown as `<system-out>` (e.g. the run folder and counts).
    pub output: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaseOutcome {
    Passed,
    Failed { message: String },
    Error { message: String },
}

/// Escapes text for XML attributes and content.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // XML 1.0 forbids most control characters even escaped.
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\r' | '\t') => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

/// The whole JUnit document for a suite named `suite`.
pub fn render(suite: &str, cases: &[Case]) -> String {
    let failures = cases.iter().filter(|c| matches!(c.outcome, CaseOutcome::Failed { .. })).count();
    let errors = cases.iter().filter(|c| matches!(c.outcome, CaseOutcome::Error { .. })).count();
    let total: f64 = cases.iter().map(|c| c.time.as_secs_f64()).sum();
    let suite = escape(suite);
    let mut x = String::new();
    x.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        x,
        "<testsuites name=\"jetsam\" tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\" time=\"{total:.3}\">",
        cases.len()
    );
    let _ = writeln!(
        x,
        "  <testsuite name=\"{suite}\" tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\" time=\"{total:.3}\">",
        cases.len()
    );
    for c in cases {
        let _ = writeln!(
            x,
            "    <testcase classname=\"jetsam.{suite}\" name=\"{}\" time=\"{:.3}\">",
            escape(&c.name),
            c.time.as_secs_f64()
        );
        match &c.outcome {
            CaseOutcome::Passed => {}
            CaseOutcome::Failed { message } => {
                let _ = writeln!(x, "      <failure message=\"{}\">{}</failure>", escape(message), escape(message));
            }
            CaseOutcome::Error { message } => {
                let _ = writeln!(x, "      <error message=\"{}\">{}</error>", escape(message), escape(message));
            }
        }
        if !c.output.is_empty() {
            let _ = writeln!(x, "      <system-out>{}</system-out>", escape(&c.output));
        }
        x.push_str("    </testcase>\n");
    }
    x.push_str("  </testsuite>\n</testsuites>\n");
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_and_escapes() {
        let cases = vec![
            Case {
                name: "a<b".into(),
                time: Duration::from_millis(1500),
                outcome: CaseOutcome::Passed,
                output: String::new(),
            },
            Case {
                name: "lossy".into(),
                time: Duration::from_secs(2),
                outcome: CaseOutcome::Failed { message: "verdict pass, expected \"fail\"".into() },
                output: "acked 3 & lost 0".into(),
            },
            Case {
                name: "broken".into(),
                time: Duration::ZERO,
                outcome: CaseOutcome::Error { message: "bad\u{1}input".into() },
                output: String::new(),
            },
        ];
        let x = render("ci", &cases);
        assert!(
            x.contains("<testsuites name=\"jetsam\" tests=\"3\" failures=\"1\" errors=\"1\" time=\"3.500\">"),
            "{x}"
        );
        assert!(x.contains("name=\"a&lt;b\" time=\"1.500\">"), "{x}");
        assert!(x.contains("<failure message=\"verdict pass, expected &quot;fail&quot;\">"), "{x}");
        assert!(x.contains("<system-out>acked 3 &amp; lost 0</system-out>"), "{x}");
        assert!(x.contains("<error message=\"bad?input\">"), "{x}");
        assert_eq!(x.matches("<testcase ").count(), 3);
        assert_eq!(x.matches("</testcase>").count(), 3);
    }
}
