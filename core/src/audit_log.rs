//! One line of a durability-audit record (`audit/<node>.log` in a run
//! folder, and the tracer's `S/audit.log` before the harness moves it onto
//! the run clock; docs/formats.md "audit/&lt;node&gt;.log"):
//! `w <t_ns> <file>` (a write to a data file started) or
//! `s <start_ns> <end_ns> <file | *>` (a sync of that file, or a
//! syncfs/sync of all, succeeded). The one parser and printer of the format.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditLine<'a> {
    Write {
        t_ns: u64,
        file: &'a str,
    },
    /// `file: None` is `*`: every file.
    Sync {
        start_ns: u64,
        end_ns: u64,
        file: Option<&'a str>,
    },
}

impl<'a> AuditLine<'a> {
    /// Parses one line; `None` for a torn or foreign one (readers skip it).
    pub fn parse(line: &'a str) -> Option<AuditLine<'a>> {
        let mut p = line.split(' ');
        match (p.next()?, p.next(), p.next(), p.next(), p.next()) {
            ("w", Some(t), Some(file), None, None) => Some(AuditLine::Write { t_ns: t.parse().ok()?, file }),
            ("s", Some(a), Some(b), Some(file), None) => Some(AuditLine::Sync {
                start_ns: a.parse().ok()?,
                end_ns: b.parse().ok()?,
                file: (file != "*").then_some(file),
            }),
            _ => None,
        }
    }

    /// The same line with every time `minus_ns` earlier (not below 0).
    pub fn shifted(self, minus_ns: u64) -> AuditLine<'a> {
        match self {
            AuditLine::Write { t_ns, file } => AuditLine::Write { t_ns: t_ns.saturating_sub(minus_ns), file },
            AuditLine::Sync { start_ns, end_ns, file } => AuditLine::Sync {
                start_ns: start_ns.saturating_sub(minus_ns),
                end_ns: end_ns.saturating_sub(minus_ns),
                file,
            },
        }
    }
}

/// The line without its newline.
impl fmt::Display for AuditLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuditLine::Write { t_ns, file } => write!(f, "w {t_ns} {file}"),
            AuditLine::Sync { start_ns, end_ns, file } => write!(f, "s {start_ns} {end_ns} {}", file.unwrap_or("*")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prints_and_shifts() {
        for text in ["w 10 1-2", "s 5 7 1-2", "s 5 7 *"] {
            assert_eq!(AuditLine::parse(text).unwrap().to_string(), text);
        }
        assert_eq!(AuditLine::parse("s 1 2 *"), Some(AuditLine::Sync { start_ns: 1, end_ns: 2, file: None }));
        assert_eq!(AuditLine::parse("w 1000 a").unwrap().shifted(900).to_string(), "w 100 a");
        assert_eq!(AuditLine::parse("s 5 1000 a").unwrap().shifted(900).to_string(), "s 0 100 a");
        for bad in ["w 5", "w x a", "s 1 2", "w 1 a extra", "x 1 2 3", ""] {
            assert_eq!(AuditLine::parse(bad), None, "{bad:?}");
        }
    }
}
