//! Hand-written parsing of the exact line shapes jetsam itself writes to
//! `history.jsonl` and `recovered/<view>.jsonl`, for speed at soak scale.
//! Each parser accepts only its shape, byte for byte (fields in the order
//! serde writes them, no whitespace, no escapes, canonical numbers) and
//! returns `None` for anything else; the caller then parses the line with
//! serde_json, so every other line (and every error message) is exactly as
//! before. On the lines it accepts it yields what serde_json yields.
//!
//! Measured (docs/formats.md "Checker speed and memory"): `jetsam check` on
//! 10M acked writes x 3 nodes of JSON lines takes 7.5-8.1 s of CPU with
//! these parsers against 11.9-13.4 s with serde_json alone.

use crate::history::{OpRef, OpType};
use std::borrow::Cow;

/// A cursor over one line.
struct Cursor<'a> {
    s: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn lit(&mut self, want: &[u8]) -> Option<()> {
        let end = self.pos.checked_add(want.len())?;
        (self.s.get(self.pos..end)? == want).then(|| self.pos = end)
    }

    /// A JSON number as serde_json reads it into a u64: digits, no leading
    /// zero (except "0" itself), no sign, fraction or exponent, no overflow.
    fn u64(&mut self) -> Option<u64> {
        let start = self.pos;
        let mut v: u64 = 0;
        while let Some(b) = self.s.get(self.pos).filter(|b| b.is_ascii_digit()) {
            v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
            self.pos += 1;
        }
        let len = self.pos - start;
        if len == 0 || (len > 1 && self.s[start] == b'0') {
            return None;
        }
        // "1.5" or "1e3" would be a float: not ours.
        match self.s.get(self.pos) {
            Some(b'.' | b'e' | b'E') => None,
            _ => Some(v),
        }
    }

    /// A string without escapes or control characters, as borrowed text.
    fn string(&mut self) -> Option<&'a str> {
        self.lit(b"\"")?;
        let start = self.pos;
        loop {
            match *self.s.get(self.pos)? {
                b'"' => break,
                b'\\' => return None,
                b if b < 0x20 => return None,
                _ => self.pos += 1,
            }
        }
        let text = std::str::from_utf8(&self.s[start..self.pos]).ok()?;
        self.pos += 1;
        Some(text)
    }

    fn end(&self) -> Option<()> {
        (self.pos == self.s.len()).then_some(())
    }
}

/// `{"seq":N,"id":"..."}` (a recovered line as jetsam writes it).
pub fn recovered(line: &[u8]) -> Option<(u64, &str)> {
    let mut c = Cursor { s: line, pos: 0 };
    c.lit(b"{\"seq\":")?;
    let seq = c.u64()?;
    c.lit(b",\"id\":")?;
    let id = c.string()?;
    c.lit(b"}")?;
    c.end()?;
    Some((seq, id))
}

/// A history line as jetsam writes it: `t_ns`, `client`, `type`, `id`, then
/// optionally `seq`, `node` and `error`, in that order.
pub fn history(line: &[u8]) -> Option<OpRef<'_>> {
    let mut c = Cursor { s: line, pos: 0 };
    c.lit(b"{\"t_ns\":")?;
    let t_ns = c.u64()?;
    c.lit(b",\"client\":")?;
    let client = u32::try_from(c.u64()?).ok()?;
    c.lit(b",\"type\":")?;
    let kind = match c.string()? {
        "invoke" => OpType::Invoke,
        "ok" => OpType::Ok,
        "fail" => OpType::Fail,
        "info" => OpType::Info,
        _ => return None,
    };
    c.lit(b",\"id\":")?;
    let id = c.string()?;
    let mut op = OpRef { t_ns, client, kind, id: Cow::Borrowed(id), seq: None, node: None, error: None };
    if c.lit(b",\"seq\":").is_some() {
        op.seq = Some(c.u64()?);
    }
    if c.lit(b",\"node\":").is_some() {
        op.node = Some(Cow::Borrowed(c.string()?));
    }
    if c.lit(b",\"error\":").is_some() {
        op.error = Some(Cow::Borrowed(c.string()?));
    }
    c.lit(b"}")?;
    c.end()?;
    Some(op)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recovered::RecoveredMsgRef;

    #[test]
    fn agrees_with_serde_where_it_answers_and_declines_the_rest() {
        let recovered_lines = [
            r#"{"seq":1,"id":"0-0"}"#,
            r#"{"seq":18446744073709551615,"id":"banana split"}"#,
            r#"{"seq":0,"id":""}"#,
            r#"{"seq":01,"id":"0-0"}"#,
            r#"{"seq":18446744073709551616,"id":"0-0"}"#,
            r#"{"seq":1.0,"id":"0-0"}"#,
            r#"{"seq":1,"id":"0\"-0"}"#,
            r#"{"seq":1,"id":"0-0","x":1}"#,
            r#"{"id":"0-0","seq":1}"#,
            r#"{ "seq":1,"id":"0-0"}"#,
            r#"{"seq":1,"id":"0-0"} "#,
            r#"{"seq":1,"id":"é"}"#,
        ];
        let mut answered = 0;
        for line in recovered_lines {
            let serde: Option<(u64, String)> =
                serde_json::from_str::<RecoveredMsgRef<'_>>(line).ok().map(|m| (m.seq, m.id.into_owned()));
            if let Some((seq, id)) = recovered(line.as_bytes()) {
                answered += 1;
                assert_eq!(Some((seq, id.to_string())), serde, "{line}");
            }
        }
        assert_eq!(answered, 4);

        let history_lines = [
            r#"{"t_ns":5,"client":3,"type":"invoke","id":"3-0"}"#,
            r#"{"t_ns":9,"client":3,"type":"ok","id":"3-0","seq":7,"node":"n1"}"#,
            r#"{"t_ns":9,"client":3,"type":"info","id":"3-1","error":"timeout after 5 s"}"#,
            r#"{"t_ns":9,"client":3,"type":"fail","id":"3-2","seq":1,"node":"n","error":"e"}"#,
            r#"{"t_ns":9,"client":4294967296,"type":"invoke","id":"3-0"}"#,
            r#"{"t_ns":9,"client":3,"type":"invoke","id":"3-0","trigger":"x"}"#,
            r#"{"t_ns":9,"client":3,"type":"Invoke","id":"3-0"}"#,
            r#"{"client":3,"t_ns":9,"type":"invoke","id":"3-0"}"#,
            r#"{"t_ns":9,"client":3,"type":"ok","id":"3-0","node":"n1","seq":7}"#,
            r#"{"t_ns":9,"client":3,"type":"info","id":"3-1","error":"a\nb"}"#,
        ];
        let mut answered = 0;
        for line in history_lines {
            let serde = serde_json::from_str::<OpRef<'_>>(line).ok();
            if let Some(op) = history(line.as_bytes()) {
                answered += 1;
                assert_eq!(Some(op), serde, "{line}");
            }
        }
        assert_eq!(answered, 4);
    }
}
