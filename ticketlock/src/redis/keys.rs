//! Record keys and channel names: built here and nowhere else.
//!
//! A record's key is `lock:<id>` or `<prefix>:lock:<id>`, as Rasa names it.
//! The id is appended verbatim: a key is an opaque byte string to Redis, and
//! every command of this crate names its key exactly (GET, SET, DEL, script
//! KEYS), so no id can reach another's record. Glob characters only matter
//! in SCAN's MATCH pattern, which is built from the prefix alone (escaped)
//! and filtered again here. The channel that announces a record's changes is
//! the key itself (channels are a namespace of their own).

/// Builds keys for one store's prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Keys {
    /// Everything before the conversation id: `lock:` or `<prefix>:lock:`.
    head: String,
}

impl Keys {
    pub(crate) fn new(key_prefix: Option<&str>) -> Self {
        let head = match key_prefix {
            Some(p) if !p.is_empty() => format!("{p}:lock:"),
            _ => "lock:".to_string(),
        };
        Keys { head }
    }

    /// The key of `conversation_id`'s record.
    pub(crate) fn key(&self, conversation_id: &str) -> String {
        let mut key = String::with_capacity(self.head.len() + conversation_id.len());
        key.push_str(&self.head);
        key.push_str(conversation_id);
        key
    }

    /// The conversation id of a record key of this store, if it is one.
    pub(crate) fn conversation_id<'k>(&self, key: &'k [u8]) -> Option<&'k str> {
        let id = key.strip_prefix(self.head.as_bytes())?;
        std::str::from_utf8(id).ok().filter(|id| !id.is_empty())
    }

    /// SCAN's MATCH pattern for every record of this store.
    pub(crate) fn scan_pattern(&self) -> String {
        let mut pattern = String::with_capacity(self.head.len() + 2);
        for c in self.head.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern.push('*');
        pattern
    }

    /// The channel on which changes of the record at `key` are announced.
    pub(crate) fn channel(key: &str) -> &[u8] {
        key.as_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_rasas() {
        assert_eq!(Keys::new(None).key("c1"), "lock:c1");
        assert_eq!(Keys::new(Some("")).key("c1"), "lock:c1");
        assert_eq!(Keys::new(Some("bot7")).key("c1"), "bot7:lock:c1");
    }

    #[test]
    fn ids_are_kept_verbatim_and_read_back() {
        let keys = Keys::new(Some("p"));
        for id in ["*", "a:1", "[x]", "?", "{}", "line\nbreak", "é😀", "lock:x"] {
            let key = keys.key(id);
            assert_eq!(keys.conversation_id(key.as_bytes()), Some(id));
        }
        assert_eq!(keys.conversation_id(b"lock:x"), None);
        assert_eq!(keys.conversation_id(b"p:lock:"), None);
        assert_eq!(keys.conversation_id(b"p:lock:\xff"), None);
    }

    #[test]
    fn scan_pattern_escapes_glob_characters_of_the_prefix() {
        assert_eq!(Keys::new(None).scan_pattern(), "lock:*");
        assert_eq!(
            Keys::new(Some("a*b?[c]\\")).scan_pattern(),
            "a\\*b\\?\\[c\\]\\\\:lock:*"
        );
    }
}
