//! The ticket-lock model and its record format.
//!
//! A conversation's lock is a FIFO queue of [`Ticket`]s; the first live
//! ticket is served. The record is JSON laid out exactly as Rasa writes it,
//! tickets double-encoded:
//!
//! ```text
//! {"conversation_id": "c1", "tickets": ["{\"number\": 0, \"expires\": 1795892618.7471275}"]}
//! ```
//!
//! Two optional top-level fields of ours may follow (Rasa ignores and drops
//! them): `last_issued`, so that ticket numbers are not reused after the
//! highest ticket expires or is withdrawn (written only then: otherwise the
//! queue tells it), and `epoch`, which tells one incarnation of a record
//! from the next so that a stale waiter cannot take a newer ticket of the
//! same number for its own.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// A place in a conversation's queue.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ticket {
    /// The ticket number: increasing within a record, never reused while the
    /// record lives.
    pub number: u64,
    /// When the ticket expires, as Unix time in seconds.
    pub expires: f64,
}

impl Ticket {
    /// A ticket that expires at `expires` (Unix seconds).
    pub fn new(number: u64, expires: f64) -> Self {
        Ticket { number, expires }
    }

    /// Whether the ticket has expired at `now` (Unix seconds).
    pub fn has_expired_at(&self, now: f64) -> bool {
        now > self.expires
    }

    /// Whether the ticket has expired now, by this machine's clock.
    pub fn has_expired(&self) -> bool {
        self.has_expired_at(unix_now())
    }

    /// The ticket as Rasa encodes it: `{"number": 0, "expires": 1795892618.7471275}`.
    pub fn dumps(&self) -> String {
        let mut out = String::with_capacity(48);
        let _ = write!(out, "{{\"number\": {}, \"expires\": ", self.number);
        push_python_float(&mut out, self.expires);
        out.push('}');
        out
    }

    /// Appends the ticket as an element of a record's `tickets` list: the
    /// JSON string of [`Ticket::dumps`], written directly (its only
    /// characters to escape are the quotes).
    pub(crate) fn push_element(&self, out: &mut String) {
        let _ = write!(
            out,
            "\"{{\\\"number\\\": {}, \\\"expires\\\": ",
            self.number
        );
        push_python_float(out, self.expires);
        out.push_str("}\"");
    }
}

/// A conversation's lock: its id and its FIFO queue of tickets.
///
/// The queries take the current time from this machine's clock, as Rasa's
/// do; the `_at` forms take it as an argument. The stores themselves do not
/// use this type on their hot paths: it is the record format, for inspection,
/// tools and Rasa's record-level API.
#[derive(Debug, Clone)]
pub struct TicketLock {
    conversation_id: String,
    tickets: VecDeque<Ticket>,
    last_issued: Option<u64>,
    epoch: Option<u64>,
}

/// Equal when they hold the same record: `last_issued` is compared as
/// [`TicketLock::last_issued`] sees it (the field is not written when the
/// queue tells it).
impl PartialEq for TicketLock {
    fn eq(&self, other: &Self) -> bool {
        self.conversation_id == other.conversation_id
            && self.tickets == other.tickets
            && self.epoch == other.epoch
            && self.last_issued() == other.last_issued()
    }
}

impl TicketLock {
    /// An empty lock for `conversation_id`.
    pub fn new(conversation_id: impl Into<String>) -> Self {
        TicketLock {
            conversation_id: conversation_id.into(),
            tickets: VecDeque::new(),
            last_issued: None,
            epoch: None,
        }
    }

    /// A lock with the given tickets, oldest first.
    pub fn with_tickets(
        conversation_id: impl Into<String>,
        tickets: impl IntoIterator<Item = Ticket>,
    ) -> Self {
        let mut lock = TicketLock::new(conversation_id);
        lock.tickets = tickets.into_iter().collect();
        lock
    }

    /// The conversation this lock belongs to.
    pub fn conversation_id(&self) -> &str {
        &self.conversation_id
    }

    /// The tickets in queue order, expired ones included.
    pub fn tickets(&self) -> impl ExactSizeIterator<Item = &Ticket> + '_ {
        self.tickets.iter()
    }

    /// The record's epoch (our extra field), if it has one.
    pub fn epoch(&self) -> Option<u64> {
        self.epoch
    }

    /// Sets the highest number issued so far (our extra field `last_issued`).
    pub fn set_last_issued(&mut self, last_issued: Option<u64>) {
        self.last_issued = last_issued;
    }

    /// Sets the record's epoch (our extra field).
    pub fn set_epoch(&mut self, epoch: Option<u64>) {
        self.epoch = epoch;
    }

    /// The highest ticket number issued for this record, live or not
    /// (Rasa's `last_issued` counts live tickets only, and so reuses numbers).
    /// `None` when no ticket was issued (Rasa's `NO_TICKET_ISSUED`, -1).
    pub fn last_issued(&self) -> Option<u64> {
        let in_queue = self.tickets.iter().map(|t| t.number).max();
        match (self.last_issued, in_queue) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// The number of the ticket served now: the first live ticket, or 0 when
    /// there is none (as in Rasa).
    pub fn now_serving_at(&self, now: f64) -> u64 {
        self.live_at(now).next().map_or(0, |t| t.number)
    }

    /// [`Self::now_serving_at`] by this machine's clock.
    pub fn now_serving(&self) -> u64 {
        self.now_serving_at(unix_now())
    }

    /// Whether `ticket_number` must still wait (it is not served now).
    pub fn is_locked_at(&self, ticket_number: u64, now: f64) -> bool {
        self.now_serving_at(now) != ticket_number
    }

    /// [`Self::is_locked_at`] by this machine's clock.
    pub fn is_locked(&self, ticket_number: u64) -> bool {
        self.is_locked_at(ticket_number, unix_now())
    }

    /// Whether any live ticket is in the queue.
    pub fn is_someone_waiting_at(&self, now: f64) -> bool {
        self.live_at(now).next().is_some()
    }

    /// [`Self::is_someone_waiting_at`] by this machine's clock.
    pub fn is_someone_waiting(&self) -> bool {
        self.is_someone_waiting_at(unix_now())
    }

    /// Removes the tickets that have expired at `now`; returns how many.
    pub fn remove_expired_tickets_at(&mut self, now: f64) -> usize {
        let before = self.tickets.len();
        self.remember_last_issued();
        self.tickets.retain(|t| !t.has_expired_at(now));
        before - self.tickets.len()
    }

    /// [`Self::remove_expired_tickets_at`] by this machine's clock.
    pub fn remove_expired_tickets(&mut self) -> usize {
        self.remove_expired_tickets_at(unix_now())
    }

    /// Appends a ticket that expires `lifetime` seconds after `now` and
    /// returns its number: one more than any number this record issued.
    pub fn issue_ticket_at(&mut self, lifetime: f64, now: f64) -> u64 {
        self.remove_expired_tickets_at(now);
        let number = self.last_issued().map_or(0, |n| n + 1);
        self.tickets.push_back(Ticket::new(number, now + lifetime));
        self.last_issued = Some(number);
        number
    }

    /// [`Self::issue_ticket_at`] by this machine's clock.
    pub fn issue_ticket(&mut self, lifetime: f64) -> u64 {
        self.issue_ticket_at(lifetime, unix_now())
    }

    /// Removes the ticket numbered `ticket_number`; returns whether it was there.
    pub fn remove_ticket_for(&mut self, ticket_number: u64) -> bool {
        self.remember_last_issued();
        match self.tickets.iter().position(|t| t.number == ticket_number) {
            Some(i) => {
                self.tickets.remove(i);
                true
            }
            None => false,
        }
    }

    /// `last_issued` as written: only when the queue does not tell it (its
    /// highest ticket went), which saves 18 bytes or more in nearly every
    /// record; readers take the highest of the field and the queue.
    fn last_issued_field(&self) -> Option<u64> {
        let in_queue = self.tickets.iter().map(|t| t.number).max();
        match (self.last_issued, in_queue) {
            (Some(n), Some(highest)) if n <= highest => None,
            (n, _) => n,
        }
    }

    fn remember_last_issued(&mut self) {
        self.last_issued = self.last_issued();
    }

    fn live_at(&self, now: f64) -> impl Iterator<Item = &Ticket> + '_ {
        self.tickets.iter().filter(move |t| !t.has_expired_at(now))
    }

    /// The record as stored: Rasa's layout, byte for byte as Python's
    /// `json.dumps` writes it, then our extra fields when set.
    pub fn dumps(&self) -> String {
        let mut out = String::with_capacity(64 + 56 * self.tickets.len());
        out.push_str("{\"conversation_id\": ");
        push_python_str(&mut out, &self.conversation_id);
        out.push_str(", \"tickets\": [");
        for (i, t) in self.tickets.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            t.push_element(&mut out);
        }
        out.push(']');
        if let Some(n) = self.last_issued_field() {
            let _ = write!(out, ", \"last_issued\": {n}");
        }
        if let Some(e) = self.epoch {
            let _ = write!(out, ", \"epoch\": {e}");
        }
        out.push('}');
        out
    }

    /// Parses the record stored for conversation `id`, as every reader of
    /// a stored record does (the stores' scripts check the same): a record
    /// whose `conversation_id` is another conversation's is corrupt, not
    /// accepted (and later rewritten) as this one's.
    pub fn from_record(id: &str, json: &[u8]) -> Result<Self, RecordError> {
        let lock = Self::from_json(json)?;
        if lock.conversation_id != id {
            return Err(RecordError(
                "`conversation_id` is not the conversation of its key".into(),
            ));
        }
        Ok(lock)
    }

    /// Parses a record written by Rasa or by this crate. Unknown top-level
    /// fields are ignored, as Rasa ignores ours. Numbers (ticket numbers,
    /// `last_issued`, `epoch`) must be below 2^53, as a JSON reader with
    /// doubles (Python's floats aside, Lua's cjson in the Redis scripts)
    /// reads them exactly; larger ones make the record corrupt, the same
    /// verdict as the scripts'.
    pub fn from_json(json: &[u8]) -> Result<Self, RecordError> {
        let value: serde_json::Value =
            serde_json::from_slice(json).map_err(|e| RecordError(format!("not JSON: {e}")))?;
        let obj = value
            .as_object()
            .ok_or_else(|| RecordError("not a JSON object".into()))?;
        let conversation_id = match obj.get("conversation_id") {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(_) => return Err(RecordError("`conversation_id` is not a string".into())),
            None => return Err(RecordError("no `conversation_id`".into())),
        };
        let raw = match obj.get("tickets") {
            Some(serde_json::Value::Array(a)) => a,
            Some(serde_json::Value::Null) | None => &Vec::new(),
            Some(_) => return Err(RecordError("`tickets` is not a list".into())),
        };
        let mut tickets = VecDeque::with_capacity(raw.len());
        for (i, t) in raw.iter().enumerate() {
            tickets
                .push_back(parse_ticket(t).map_err(|m| RecordError(format!("ticket {i}: {m}")))?);
        }
        let last_issued = optional_u64(obj, "last_issued")?;
        let epoch = optional_u64(obj, "epoch")?;
        Ok(TicketLock {
            conversation_id,
            tickets,
            last_issued,
            epoch,
        })
    }
}

/// Why a stored record could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RecordError(pub(crate) String);

fn parse_ticket(value: &serde_json::Value) -> Result<Ticket, String> {
    // Rasa stores each ticket as a JSON string holding the ticket's JSON;
    // accept a plain object too, as a tolerant reader.
    let owned;
    let obj = match value {
        serde_json::Value::String(s) => {
            owned = serde_json::from_str::<serde_json::Value>(s)
                .map_err(|e| format!("not JSON: {e}"))?;
            owned.as_object().ok_or("not a JSON object")?
        }
        serde_json::Value::Object(o) => o,
        _ => return Err("neither a string nor an object".into()),
    };
    let number = obj
        .get("number")
        .and_then(json_u64)
        .ok_or("`number` is missing or not a non-negative integer below 2^53")?;
    let expires = obj
        .get("expires")
        .and_then(serde_json::Value::as_f64)
        .filter(|e| e.is_finite())
        .ok_or("`expires` is missing or not a finite number")?;
    Ok(Ticket { number, expires })
}

/// 2^53: the first integer a double cannot tell from its neighbour.
const EXACT_LIMIT: u64 = 1 << 53;

fn json_u64(v: &serde_json::Value) -> Option<u64> {
    v.as_u64().filter(|n| *n < EXACT_LIMIT).or_else(|| {
        // Integral floats such as 3.0 are accepted: Python writes ints, but a
        // float-typed writer may not.
        v.as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 9.007_199_254_740_992e15)
            .map(|f| f as u64)
    })
}

fn optional_u64(
    obj: &serde_json::Map<String, serde_json::Value>,
    key: &str,
) -> Result<Option<u64>, RecordError> {
    match obj.get(key) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v) => json_u64(v).map(Some).ok_or_else(|| {
            RecordError(format!("`{key}` is not a non-negative integer below 2^53"))
        }),
    }
}

/// Now as Unix time in seconds, by this machine's clock.
pub(crate) fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// [`push_python_float`] into a new string.
#[cfg(test)]
pub(crate) fn python_float(f: f64) -> String {
    let mut out = String::with_capacity(24);
    push_python_float(&mut out, f);
    out
}

/// Appends `f` as Python's `repr` writes it: the shortest string that reads
/// back to the same value (ties to even, as Python's dtoa), with `.0` on
/// integral values and `e+XX` exponents outside [1e-4, 1e16).
///
/// Rust's `{:e}` prints the shortest digits that read back to `f`, as
/// Python does; the two differ only when two candidates of that length are
/// equally near `f`: Python takes the even one, Rust the upper one. Such a
/// tie needs 16 digits or more (fewer digits are too coarse for both
/// neighbours to read back), and Rust's choice is then odd, so only then is
/// `f` formatted again at that length, correctly rounded (ties to even).
/// The redis scripts (common.lua, py_float) write the same strings.
pub(crate) fn push_python_float(out: &mut String, f: f64) {
    if f.is_nan() {
        out.push_str("NaN");
        return;
    }
    if f.is_infinite() {
        out.push_str(if f > 0.0 { "Infinity" } else { "-Infinity" });
        return;
    }
    if f == 0.0 {
        out.push_str(if f.is_sign_negative() { "-0.0" } else { "0.0" });
        return;
    }
    let (mut shortest, mut rounded) = (Digits::default(), Digits::default());
    let _ = write!(shortest, "{:e}", f.abs());
    let (mut digits, mut exp) = shortest.split();
    let n = digits.len();
    if n >= 16 && digits[n - 1] % 2 == 1 {
        let _ = write!(rounded, "{:.*e}", n - 1, f.abs());
        (digits, exp) = rounded.split();
    }
    while digits.len() > 1 && digits[digits.len() - 1] == b'0' {
        digits = &digits[..digits.len() - 1];
    }
    if f < 0.0 {
        out.push('-');
    }
    push_layout(out, digits, exp);
}

/// Writes significant `digits` (ASCII, no trailing zeros) times
/// 10^(`exp` - digits + 1) in Python's layout.
fn push_layout(out: &mut String, digits: &[u8], exp: i32) {
    // ASCII digits: each byte is one char.
    let push = |out: &mut String, d: &[u8]| out.extend(d.iter().map(|&b| char::from(b)));
    let n = digits.len() as i32;
    if !(-4..16).contains(&exp) {
        push(out, &digits[..1]);
        if n > 1 {
            out.push('.');
            push(out, &digits[1..]);
        }
        let _ = write!(out, "e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    } else if exp < 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-exp - 1) as usize));
        push(out, digits);
    } else if n <= exp + 1 {
        push(out, digits);
        out.extend(std::iter::repeat_n('0', (exp + 1 - n) as usize));
        out.push_str(".0");
    } else {
        let (int, frac) = digits.split_at((exp + 1) as usize);
        push(out, int);
        out.push('.');
        push(out, frac);
    }
}

/// A stack buffer for one `{:e}` rendering of a positive float (at most 17
/// digits, a point, `e` and a four-character exponent).
#[derive(Default)]
struct Digits {
    buf: [u8; 32],
    len: usize,
}

impl std::fmt::Write for Digits {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        let dest = self.buf.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        dest.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

impl Digits {
    /// The significant digits (the point removed, in place) and the decimal
    /// exponent of `d.ddde±x`.
    fn split(&mut self) -> (&[u8], i32) {
        let text = &mut self.buf[..self.len];
        let e = text.iter().position(|&c| c == b'e').unwrap_or(text.len());
        let mut exp = 0i32;
        let mut negative = false;
        for &c in text.iter().skip(e + 1) {
            match c {
                b'-' => negative = true,
                b'0'..=b'9' => exp = exp * 10 + i32::from(c - b'0'),
                _ => {}
            }
        }
        if negative {
            exp = -exp;
        }
        let mut n = 0;
        for i in 0..e {
            if text[i] != b'.' {
                text[n] = text[i];
                n += 1;
            }
        }
        (&self.buf[..n], exp)
    }
}

/// Whether `s` is written as JSON by Python as it is, between quotes:
/// printable ASCII without `"` or a backslash.
pub(crate) fn python_str_is_plain(s: &str) -> bool {
    s.bytes()
        .all(|b| matches!(b, b' '..=b'~') && b != b'"' && b != b'\\')
}

/// Appends `s` as a JSON string the way Python's `json.dumps` writes it
/// (`ensure_ascii`): every character outside printable ASCII is escaped.
pub(crate) fn push_python_str(out: &mut String, s: &str) {
    out.push('"');
    // Most ids need no escape: copied whole (the loop below costs about 25
    // instructions a character).
    if python_str_is_plain(s) {
        out.push_str(s);
        out.push('"');
        return;
    }
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{u:04x}");
                }
            }
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    const RASA_RECORD: &str = r#"{"conversation_id": "c1", "tickets": ["{\"number\": 0, \"expires\": 1795892618.7471275}"]}"#;

    #[test]
    fn parses_a_record_written_by_rasa_and_writes_it_back_byte_for_byte() {
        let lock = TicketLock::from_json(RASA_RECORD.as_bytes()).unwrap();
        assert_eq!(lock.conversation_id(), "c1");
        assert_eq!(
            lock.tickets().copied().collect::<Vec<_>>(),
            vec![Ticket::new(0, 1_795_892_618.747_127_5)]
        );
        assert_eq!(lock.dumps(), RASA_RECORD);
    }

    #[test]
    fn extra_fields_follow_rasa_layout_and_read_back() {
        let mut lock = TicketLock::from_json(RASA_RECORD.as_bytes()).unwrap();
        lock.issue_ticket_at(60.0, 1_795_892_600.0);
        lock.set_epoch(Some(42));
        let json = lock.dumps();
        assert_eq!(
            json,
            r#"{"conversation_id": "c1", "tickets": ["{\"number\": 0, \"expires\": 1795892618.7471275}", "{\"number\": 1, \"expires\": 1795892660.0}"], "epoch": 42}"#,
            "last_issued is the highest ticket: not written"
        );
        assert_eq!(TicketLock::from_json(json.as_bytes()).unwrap(), lock);
        assert_eq!(lock.last_issued(), Some(1));

        // Once the highest ticket went, only the field tells the next number.
        assert!(lock.remove_ticket_for(1));
        let json = lock.dumps();
        assert_eq!(
            json,
            r#"{"conversation_id": "c1", "tickets": ["{\"number\": 0, \"expires\": 1795892618.7471275}"], "last_issued": 1, "epoch": 42}"#
        );
        let back = TicketLock::from_json(json.as_bytes()).unwrap();
        assert_eq!(back, lock);
        assert_eq!(back.last_issued(), Some(1));
        let mut back = back;
        assert_eq!(back.issue_ticket_at(60.0, 1_795_892_600.0), 2);
    }

    #[test]
    fn strings_are_escaped_as_python_does() {
        let mut out = String::new();
        push_python_str(&mut out, "a\"b\\c\nd\u{1}é😀\u{7f}/");
        assert_eq!(out, r#""a\"b\\c\nd\u0001\u00e9\ud83d\ude00\u007f/""#);
        let back: String = serde_json::from_str(&out).unwrap();
        assert_eq!(back, "a\"b\\c\nd\u{1}é😀\u{7f}/");
    }

    #[test]
    fn floats_are_written_as_python_repr() {
        for (f, s) in [
            (1_795_892_618.747_127_5, "1795892618.7471275"),
            (1_795_892_618.0, "1795892618.0"),
            (0.5, "0.5"),
            (0.0, "0.0"),
            (1e16, "1e+16"),
            (1.5e-5, "1.5e-05"),
            (123_456.789, "123456.789"),
            // Ties at 17 digits go to even, as in Python (Rust's `{}` rounds up).
            (1_795_892_618.0 + 1.0 / 256.0, "1795892618.0039062"),
            (1_712_200_237_658_961.0 + 0.25, "1712200237658961.2"),
            (5e-324, "5e-324"),
            (1e23, "1e+23"),
            (-2.5, "-2.5"),
            (9_999_999_999_999_998.0, "9999999999999998.0"),
            (0.000_123, "0.000123"),
        ] {
            assert_eq!(python_float(f), s, "{f}");
        }
    }

    /// The former implementation, slow but plainly right: correctly rounded
    /// digits at 15, 16 and 17 significant digits, the first that reads
    /// back (fixed-precision formatting rounds ties to even, as Python).
    fn reference_python_float(f: f64) -> String {
        if f.is_nan() || f.is_infinite() || f == 0.0 {
            return python_float(f);
        }
        let from = if f.abs() < f64::MIN_POSITIVE { 0 } else { 14 };
        let s = (from..=16)
            .map(|p| format!("{f:.p$e}"))
            .find(|s| s.parse::<f64>() == Ok(f))
            .unwrap_or_else(|| format!("{f:.16e}"));
        let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
        let exp: i32 = exp.parse().unwrap_or(0);
        let (sign, mantissa) = match mantissa.strip_prefix('-') {
            Some(m) => ("-", m),
            None => ("", mantissa),
        };
        let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
        let digits = digits.trim_end_matches('0');
        let mut out = sign.to_string();
        push_layout(&mut out, digits.as_bytes(), exp);
        out
    }

    #[test]
    fn fast_floats_match_the_reference_on_200_000_values_and_every_kind_of_tie() {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut checked = 0;
        let mut check = |f: f64| {
            assert_eq!(python_float(f), reference_python_float(f), "{f:?}");
            checked += 1;
        };
        for _ in 0..50_000 {
            // Any bits: every magnitude, subnormals included.
            let f = f64::from_bits(next());
            check(if f.is_finite() { f } else { 1.5 });
            // What the stores write: Unix time plus a lifetime, to the
            // microsecond or finer.
            let t = 1.7e9 + (next() % 400_000_000_000_000) as f64 / 1e6;
            check(t);
            check(t + (next() % 1024) as f64 / 1024.0);
            // Ties at 16 digits (x.25 and x.75 around 2^49) and at 17
            // digits (k/256 past 1e9): Python takes the even neighbour.
            let big = (1u64 << 49) as f64 + (next() % (1 << 40)) as f64;
            check(big + [0.25, 0.75][(next() % 2) as usize]);
            check(1e9 + (next() % 1_000_000_000) as f64 + (next() % 256) as f64 / 256.0);
        }
        assert_eq!(checked, 250_000);
    }

    #[test]
    fn an_element_is_the_escaped_ticket() {
        for t in [
            Ticket::new(0, 1_795_892_618.747_127_5),
            Ticket::new(u64::MAX, -0.0),
            Ticket::new(7, 1e300),
            Ticket::new(3, f64::NAN),
        ] {
            let mut via_dumps = String::new();
            push_python_str(&mut via_dumps, &t.dumps());
            let mut direct = String::new();
            t.push_element(&mut direct);
            assert_eq!(direct, via_dumps);
        }
    }

    #[test]
    fn first_ticket_is_zero_and_now_serving_is_zero_without_tickets() {
        let mut lock = TicketLock::new("c");
        assert_eq!(lock.now_serving_at(0.0), 0);
        assert_eq!(lock.last_issued(), None);
        assert_eq!(lock.issue_ticket_at(10.0, 0.0), 0);
        assert_eq!(lock.issue_ticket_at(10.0, 0.0), 1);
        assert!(!lock.is_locked_at(0, 1.0));
        assert!(lock.is_locked_at(1, 1.0));
        assert!(lock.is_someone_waiting_at(1.0));
    }

    #[test]
    fn numbers_are_not_reused_after_the_last_ticket_expires() {
        // Rasa issues last *live* number + 1, so an expired ticket's number
        // comes back; ours keeps counting.
        let mut lock = TicketLock::new("c");
        assert_eq!(lock.issue_ticket_at(1.0, 0.0), 0);
        assert_eq!(lock.issue_ticket_at(1.0, 0.0), 1);
        assert_eq!(lock.issue_ticket_at(1.0, 5.0), 2);
        assert_eq!(lock.remove_expired_tickets_at(100.0), 1);
        assert!(!lock.is_someone_waiting_at(100.0));
        assert_eq!(lock.issue_ticket_at(1.0, 100.0), 3);
        assert!(lock.remove_ticket_for(3));
        assert!(!lock.remove_ticket_for(3));
        assert_eq!(lock.issue_ticket_at(1.0, 100.0), 4);
    }

    #[test]
    fn expired_tickets_are_skipped_when_serving() {
        let lock = TicketLock::with_tickets("c", [Ticket::new(0, 5.0), Ticket::new(1, 20.0)]);
        assert_eq!(lock.now_serving_at(1.0), 0);
        assert_eq!(lock.now_serving_at(6.0), 1);
        assert_eq!(lock.now_serving_at(30.0), 0);
    }

    #[test]
    fn a_record_of_another_conversation_is_corrupt_under_this_key() {
        let json = br#"{"conversation_id": "other", "tickets": []}"#;
        assert!(TicketLock::from_json(json).is_ok());
        let err = TicketLock::from_record("m", json).unwrap_err();
        assert!(
            err.to_string().contains("not the conversation of its key"),
            "{err}"
        );
        assert!(TicketLock::from_record("other", json).is_ok());
        // The largest number a double holds exactly is still accepted.
        let big = br#"{"conversation_id": "c", "tickets": ["{\"number\": 9007199254740991, \"expires\": 1.0}"]}"#;
        assert!(TicketLock::from_record("c", big).is_ok());
    }

    #[test]
    fn corrupt_records_are_errors_not_panics() {
        for (bad, why) in [
            (&b"not json"[..], "not JSON"),
            (b"[]", "not a JSON object"),
            (b"{\"tickets\": []}", "no `conversation_id`"),
            (b"{\"conversation_id\": 5}", "not a string"),
            (b"{\"conversation_id\": \"c\", \"tickets\": 3}", "not a list"),
            (b"{\"conversation_id\": \"c\", \"tickets\": [\"x\"]}", "ticket 0: not JSON"),
            (b"{\"conversation_id\": \"c\", \"tickets\": [\"{\\\"number\\\": -1, \\\"expires\\\": 1}\"]}", "`number`"),
            (b"{\"conversation_id\": \"c\", \"tickets\": [\"{\\\"number\\\": 1}\"]}", "`expires`"),
            (b"{\"conversation_id\": \"c\", \"tickets\": [], \"epoch\": \"x\"}", "`epoch`"),
            (b"{\"conversation_id\": \"c\", \"tickets\": [\"{\\\"number\\\": 9007199254740992, \\\"expires\\\": 1}\"]}", "`number`"),
            (b"{\"conversation_id\": \"c\", \"tickets\": [], \"last_issued\": 9007199254740993}", "`last_issued`"),
        ] {
            let err = TicketLock::from_json(bad).unwrap_err();
            assert!(err.to_string().contains(why), "{err} should mention {why}");
        }
    }

    #[test]
    fn missing_tickets_field_reads_as_empty_queue() {
        let lock = TicketLock::from_json(br#"{"conversation_id": "c", "other": 1}"#).unwrap();
        assert_eq!(lock.tickets().len(), 0);
    }
}

/// Properties of the record codec over generated and hostile input: the
/// decoder never panics; what it accepts it writes back stably and reads
/// back equal; the encoder agrees with an independent one (serde_json).
#[cfg(test)]
mod props {
    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::*;

    /// Any double that is not NaN or infinite, with every bit pattern
    /// (subnormals, -0.0, huge and tiny exponents) reachable.
    fn finite() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<u64>()
                .prop_map(f64::from_bits)
                .prop_filter("finite", |f| f.is_finite()),
            // Plausible expiries: now-ish Unix times with sub-microsecond parts.
            (1.0e9..4.0e9f64),
            Just(0.0),
            Just(-0.0),
            Just(f64::MIN_POSITIVE),
            Just(5e-324),
            Just(f64::MAX),
            Just(1e16),
            Just(9_999_999_999_999_998.0),
            Just(1e-4),
            Just(0.000_099_999_999_999_999_99),
        ]
    }

    /// Any string, weighted towards what needs escaping.
    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "[\\x00-\\x1f\"\\\\/\\x7f\u{80}-\u{ff}\u{2028}\u{fffe}\u{10000}-\u{10ffff}a]{0,24}",
        ]
    }

    fn record() -> impl Strategy<Value = TicketLock> {
        (
            text(),
            // Below 2^53: larger numbers make a record corrupt (see from_json).
            prop::collection::vec((0..(1u64 << 53), finite()), 0..6),
            prop::option::of(0..(1u64 << 53)),
            prop::option::of(0..(1u64 << 53)),
        )
            .prop_map(|(id, tickets, last_issued, epoch)| {
                let mut lock = TicketLock::with_tickets(
                    id,
                    tickets.into_iter().map(|(n, e)| Ticket::new(n, e)),
                );
                lock.set_last_issued(last_issued);
                lock.set_epoch(epoch);
                lock
            })
    }

    /// The record as an independent encoder writes it: serde_json, tickets
    /// double-encoded, our fields only when set.
    fn serde_encoding(lock: &TicketLock) -> Value {
        let tickets: Vec<Value> = lock
            .tickets()
            .map(|t| {
                Value::String(
                    serde_json::to_string(&json!({"number": t.number, "expires": t.expires}))
                        .unwrap(),
                )
            })
            .collect();
        let mut v = json!({"conversation_id": lock.conversation_id(), "tickets": tickets});
        if let Some(n) = lock.last_issued {
            v["last_issued"] = json!(n);
        }
        if let Some(e) = lock.epoch() {
            v["epoch"] = json!(e);
        }
        v
    }

    /// Whether two decoded records are the same, floats compared by bits
    /// (so that -0.0 and 0.0 differ).
    fn same(a: &TicketLock, b: &TicketLock) -> bool {
        a == b
            && a.tickets()
                .zip(b.tickets())
                .all(|(x, y)| x.expires.to_bits() == y.expires.to_bits())
    }

    /// The property every accepted record must have.
    fn check_accepted(lock: &TicketLock) -> Result<(), TestCaseError> {
        let once = lock.dumps();
        let back = TicketLock::from_json(once.as_bytes())
            .map_err(|e| TestCaseError::fail(format!("{e}: {once}")))?;
        prop_assert!(same(&back, lock), "{once}");
        prop_assert_eq!(back.dumps(), once);
        Ok(())
    }

    /// Hostile fragments to splice into records.
    const FRAGMENTS: &[&str] = &[
        "NaN",
        "Infinity",
        "-Infinity",
        "1e400",
        "-1e400",
        "1e-400",
        "18446744073709551615",
        "18446744073709551616",
        "-1",
        "-0",
        "-0.0",
        "3.0",
        "9007199254740993",
        "1.7976931348623157e308",
        "null",
        "true",
        "[]",
        "{}",
        "\"\\ud800\"",
        "\"\\udc00\\ud800\"",
        "\"\\u0000\"",
        "\"\u{10ffff}\"",
        "\"{\\\"number\\\": 1, \\\"expires\\\": 2.5}\"",
        "\"{\\\"number\\\": 1, \\\"expires\\\": NaN}\"",
        "{\"number\": 1, \"expires\": 2.5}",
        "{\"number\": 1, \"number\": 2, \"expires\": 2.5}",
    ];

    fn hostile_record() -> impl Strategy<Value = String> {
        let piece = || {
            prop_oneof![
                prop::sample::select(FRAGMENTS).prop_map(str::to_owned),
                "\\PC{0,8}".prop_map(|s| serde_json::to_string(&s).unwrap()),
            ]
        };
        (
            piece(),
            prop::collection::vec(piece(), 0..4),
            piece(),
            piece(),
            any::<bool>(),
        )
            .prop_map(|(id, tickets, last, epoch, twice)| {
                let mut s = format!(
                    "{{\"conversation_id\": {id}, \"tickets\": [{}], \"last_issued\": {last}, \"epoch\": {epoch}",
                    tickets.join(", ")
                );
                if twice {
                    // Duplicate keys: the last one counts, as in Python.
                    s.push_str(", \"conversation_id\": \"dup\"");
                }
                s.push('}');
                s
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(lock) = TicketLock::from_json(&bytes) {
                check_accepted(&lock)?;
            }
        }

        #[test]
        fn decoding_hostile_records_never_panics_and_what_is_accepted_round_trips(json in hostile_record()) {
            match TicketLock::from_json(json.as_bytes()) {
                Ok(lock) => {
                    check_accepted(&lock)?;
                    if json.ends_with("\"dup\"}") {
                        prop_assert_eq!(lock.conversation_id(), "dup");
                    }
                }
                Err(e) => prop_assert!(!e.to_string().is_empty()),
            }
        }

        #[test]
        fn records_round_trip_and_dumps_is_stable(lock in record()) {
            check_accepted(&lock)?;
        }

        #[test]
        fn dumps_agrees_with_an_independent_encoder(lock in record()) {
            let ours: Value = serde_json::from_str(&lock.dumps()).unwrap();
            let theirs = serde_encoding(&lock);
            prop_assert_eq!(&ours["conversation_id"], &theirs["conversation_id"]);
            // `last_issued` is written exactly when the queue does not tell
            // it; either way readers get the same value.
            let written = ours["last_issued"].as_u64();
            let derived = lock.tickets().map(|t| t.number).max();
            prop_assert_eq!(written.or(derived), lock.last_issued());
            prop_assert_eq!(written.is_some(), lock.last_issued() != derived);
            prop_assert_eq!(&ours["epoch"], &theirs["epoch"]);
            let (Value::Array(a), Value::Array(b)) = (&ours["tickets"], &theirs["tickets"]) else {
                return Err(TestCaseError::fail("tickets is not a list"));
            };
            prop_assert_eq!(a.len(), b.len());
            for (x, y) in a.iter().zip(b) {
                // Both are strings holding the ticket's JSON; compared parsed,
                // floats by bits.
                let x: Value = serde_json::from_str(x.as_str().unwrap()).unwrap();
                let y: Value = serde_json::from_str(y.as_str().unwrap()).unwrap();
                prop_assert_eq!(&x["number"], &y["number"]);
                prop_assert_eq!(
                    x["expires"].as_f64().map(f64::to_bits),
                    y["expires"].as_f64().map(f64::to_bits)
                );
            }
            // And the independent encoding decodes to the same record.
            let decoded = TicketLock::from_json(theirs.to_string().as_bytes()).unwrap();
            prop_assert!(same(&decoded, &lock));
        }

        #[test]
        fn python_float_reads_back_exactly_and_is_shortest(f in finite()) {
            let s = python_float(f);
            let back: f64 = serde_json::from_str(&s).unwrap();
            prop_assert_eq!(back.to_bits(), f.to_bits(), "{}", s);
            prop_assert_eq!(s.parse::<f64>().unwrap().to_bits(), f.to_bits());
            // As many significant digits as the shortest round-trip form.
            let digits = |t: &str| {
                let m = t.split(['e', 'E']).next().unwrap();
                let d: String = m.chars().filter(char::is_ascii_digit).collect();
                let d = d.trim_start_matches('0').trim_end_matches('0').len();
                d.max(1)
            };
            prop_assert_eq!(digits(&s), digits(&format!("{f:e}")), "{} vs {:e}", s, f);
            // Python's layout: fixed notation with a fraction in [1e-4, 1e16).
            let a = f.abs();
            if f == 0.0 || (1e-4..1e16).contains(&a) {
                prop_assert!(!s.contains('e') && s.contains('.'), "{}", s);
            } else {
                prop_assert!(s.contains("e+") || s.contains("e-"), "{}", s);
            }
        }

        #[test]
        fn python_str_is_ascii_json_that_reads_back(s in text()) {
            let mut out = String::new();
            push_python_str(&mut out, &s);
            prop_assert!(out.bytes().all(|b| (b' '..=b'~').contains(&b)), "{}", out);
            let back: String = serde_json::from_str(&out).unwrap();
            prop_assert_eq!(back, s);
        }
    }

    #[test]
    fn deep_nesting_huge_input_and_bad_utf8_are_errors_not_crashes() {
        let deep = format!(
            "{{\"conversation_id\": \"c\", \"tickets\": {}{}}}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert!(TicketLock::from_json(deep.as_bytes()).is_err());
        let deep_ticket = format!(
            "{{\"conversation_id\": \"c\", \"tickets\": [{}]}}",
            serde_json::to_string(&"[".repeat(100_000)).unwrap()
        );
        assert!(TicketLock::from_json(deep_ticket.as_bytes()).is_err());
        assert!(TicketLock::from_json(b"{\"conversation_id\": \"\xff\xfe\"}").is_err());
        let giant = "\u{e9}".repeat(1 << 20);
        let lock = TicketLock::from_json(
            format!("{{\"conversation_id\": \"{giant}\", \"tickets\": []}}").as_bytes(),
        )
        .unwrap();
        assert_eq!(lock.conversation_id(), giant);
        assert_eq!(
            lock.dumps(),
            format!(
                "{{\"conversation_id\": \"{}\", \"tickets\": []}}",
                "\\u00e9".repeat(1 << 20)
            )
        );
        for bad in [
            &br#"{"conversation_id": "c", "tickets": ["{\"number\": 0, \"expires\": NaN}"]}"#[..],
            br#"{"conversation_id": "c", "tickets": [{"number": 0, "expires": Infinity}]}"#,
            br#"{"conversation_id": "c", "tickets": [{"number": 0, "expires": 1e400}]}"#,
            br#"{"conversation_id": "c", "tickets": [{"number": 18446744073709551616, "expires": 1}]}"#,
            br#"{"conversation_id": "c", "tickets": [{"number": 1e300, "expires": 1}]}"#,
            br#"{"conversation_id": "c", "tickets": [], "epoch": -1}"#,
        ] {
            assert!(
                TicketLock::from_json(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
