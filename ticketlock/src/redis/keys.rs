//! Record keys and channel names: built here and nowhere else.
//!
//! A record's key is `lock:<id>` or `<prefix>:lock:<id>`, as Rasa names it.
//! The id is appended verbatim: a key is an opaque byte string to Redis, and
//! every command of this crate names its key exactly (GET, SET, DEL, script
//! KEYS), so no id can reach another's record. Glob characters only matter
//! in SCAN's MATCH pattern, which is built from the prefix alone (escaped)
//! and filtered again here. The channel that announces a record's changes is
//! the key itself (channels are a namespace of their own).
//!
//! Stores with different prefixes in one database never share a key, for
//! any ids, as long as neither prefix is `lock` (`lock:lock:x` is prefix
//! `lock`'s `x` and no prefix's `lock:x`) or contains `:` (`a:lock:b`'s `x`
//! is `a`'s `b:lock:x`): [`prefix_problem`] refuses those.

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
    ///
    /// Distinct ids give distinct keys; see the module docs for prefixes.
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

/// Why `prefix` could make a store share keys with another one, if it can.
pub(crate) fn prefix_problem(prefix: &str) -> Option<&'static str> {
    if prefix == "lock" {
        Some(
            "`lock` gives keys `lock:lock:<id>`, which a store without a prefix also uses \
             for ids that start with `lock:`; choose another prefix, e.g. myapp",
        )
    } else if prefix.contains(':') {
        Some(
            "contains `:`, so its keys can be another prefix's keys (`a:lock:b` + `x` is \
             `a` + `b:lock:x`); use letters and digits only, e.g. myapp",
        )
    } else {
        None
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

    #[test]
    fn the_refused_prefixes_are_the_ones_that_collide() {
        assert_eq!(
            Keys::new(Some("lock")).key("x"),
            Keys::new(None).key("lock:x")
        );
        assert_eq!(
            Keys::new(Some("a:lock:b")).key("x"),
            Keys::new(Some("a")).key("b:lock:x")
        );
        assert!(prefix_problem("lock").is_some());
        assert!(prefix_problem("a:lock:b").is_some());
        assert!(prefix_problem("a:b").is_some());
        for ok in ["", "bot7", "Lock", "locks", "my_app", "ünï", "lock_", "*"] {
            assert_eq!(prefix_problem(ok), None, "{ok}");
        }
    }

    mod props {
        use proptest::prelude::*;

        use super::super::*;

        /// Accepted prefixes, weighted towards the ones near trouble.
        fn prefix() -> impl Strategy<Value = Option<String>> {
            prop::option::of(prop_oneof![
                prop::sample::select(&["lock", "lock:", "a", "a:lock", "a:lock:b", "", "b"][..])
                    .prop_map(str::to_owned),
                "[a-z:]{0,8}",
                "(lock|:|a|b){0,4}",
                any::<String>(),
            ])
            .prop_filter("refused by prefix_problem", accepted)
        }

        /// Ids, weighted towards ones that look like keys.
        fn id() -> impl Strategy<Value = String> {
            prop_oneof!["(lock|:|a|b|\\*|\\x00){0,5}", any::<String>(), "\\PC{0,16}",]
        }

        fn accepted(p: &Option<String>) -> bool {
            p.as_deref().is_none_or(|p| prefix_problem(p).is_none())
        }

        fn head(p: &Option<String>) -> Option<&str> {
            p.as_deref().filter(|p| !p.is_empty())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2048))]

            #[test]
            fn distinct_stores_and_ids_never_share_a_key(
                (p1, id1) in (prefix(), id()),
                (p2, id2) in (prefix(), id()),
            ) {
                prop_assume!((head(&p1), &id1) != (head(&p2), &id2));
                let (k1, k2) = (Keys::new(p1.as_deref()), Keys::new(p2.as_deref()));
                prop_assert_ne!(k1.key(&id1), k2.key(&id2));
                // Listing one store never names another store's record.
                if head(&p1) != head(&p2) {
                    let other = k2.key(&id2);
                    prop_assert_eq!(k1.conversation_id(other.as_bytes()), None);
                }
            }

            #[test]
            fn every_id_reads_back_from_its_key(p in prefix(), id in id()) {
                let keys = Keys::new(p.as_deref());
                let key = keys.key(&id);
                let expected = (!id.is_empty()).then_some(id.as_str());
                prop_assert_eq!(keys.conversation_id(key.as_bytes()), expected);
            }
        }
    }
}
