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

/// The key of the request-id entry `suffix` (see [`request_suffix`] and
/// [`release_suffix`]) of the record at `record_key`: `{T}:<record key>:<suffix>`,
/// where `T` is a hash tag that places it in the record's cluster slot, so
/// one script can touch both. It starts with `{`, which no record key of a
/// store does (prefixes with braces are refused), so no id names it; the
/// record key inside keeps entries of different records apart, and the
/// fixed-form suffix at the end keeps entries of one record apart.
///
/// `T` is the record key's own hash tag when it has one (an id such as
/// `a{user7}`), else the whole key when that holds no `}` (`{lock:abc}`
/// places a key in the slot of `lock:abc`), else a short tag of the same
/// slot, found by search.
pub(crate) fn request_key(record_key: &str, suffix: &impl std::fmt::Display) -> String {
    use std::fmt::Write;
    let tag = slot_tag(record_key);
    // The longest suffix: `rl:<epoch>:<number>`, 44 bytes.
    let mut key = String::with_capacity(tag.len() + record_key.len() + 48);
    key.push('{');
    key.push_str(&tag);
    key.push_str("}:");
    key.push_str(record_key);
    key.push(':');
    let _ = write!(key, "{suffix}");
    key
}

/// The suffix of an issue's entry: its request id (32 hex digits), written
/// into the key by [`request_key`] (no string of its own).
pub(crate) fn request_suffix(request_id: &str) -> impl std::fmt::Display + '_ {
    Suffix::Request(request_id)
}

/// The suffix of a release's entry: the ticket it released (`-` for a
/// ticket without an epoch).
pub(crate) fn release_suffix(number: u64, epoch: Option<u64>) -> impl std::fmt::Display {
    Suffix::Release(number, epoch)
}

enum Suffix<'a> {
    Request(&'a str),
    Release(u64, Option<u64>),
}

impl std::fmt::Display for Suffix<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Suffix::Request(id) => write!(f, "rq:{id}"),
            Suffix::Release(number, Some(e)) => write!(f, "rl:{e}:{number}"),
            Suffix::Release(number, None) => write!(f, "rl:-:{number}"),
        }
    }
}

/// The prefix of the native layout's names beside the conversation's hash
/// at `record_key` (see `redis/native.rs`): `{T}:<record key>:`, in the
/// record's slot, as request entries are (see [`request_key`]). The scripts
/// take it as ARGV[1] and name the queue (`q`), the liveness set (`x`),
/// the request entries (`rq:...`, `rl:...`) and the wake-up channels
/// (`w:<wake id>`, one per waiting process) from it.
pub(crate) fn native_prefix(record_key: &str) -> String {
    request_key(record_key, &"")
}

/// [`native_prefix`] as a command argument, written straight into the
/// command's buffer (no string of its own: it is in every call of the
/// native layout).
pub(crate) struct NativePrefix<'a>(pub &'a str);

impl redis::ToRedisArgs for NativePrefix<'_> {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        use std::io::Write;
        let tag = slot_tag(self.0);
        let mut w = out.writer_for_next_arg();
        // Writes into the command's buffer cannot fail.
        let _ = w.write_all(b"{");
        let _ = w.write_all(tag.as_bytes());
        let _ = w.write_all(b"}:");
        let _ = w.write_all(self.0.as_bytes());
        let _ = w.write_all(b":");
    }
}

/// The native layout's names beside the conversation's hash at
/// `record_key`, as the scripts make them from [`native_prefix`].
pub(crate) struct NativeKeys {
    #[cfg(test)]
    pub queue: String,
    #[cfg(test)]
    pub expiry: String,
    pub wake: String,
}

impl NativeKeys {
    pub(crate) fn new(record_key: &str) -> Self {
        let prefix = native_prefix(record_key);
        NativeKeys {
            #[cfg(test)]
            queue: format!("{prefix}q"),
            #[cfg(test)]
            expiry: format!("{prefix}x"),
            wake: format!("{prefix}w:"),
        }
    }

    /// The wake-up channel of the process whose wake id is `wake_id`: the
    /// grants and wake-ups of all its tickets of this conversation.
    pub(crate) fn channel(&self, wake_id: &str) -> String {
        format!("{}{wake_id}", self.wake)
    }
}

/// The part of `key` Redis Cluster hashes: the text between the first `{`
/// and the first `}` after it, if not empty; else `None` (the whole key).
fn hash_tag(key: &str) -> Option<&str> {
    let open = key.find('{')?;
    let close = key[open + 1..].find('}')?;
    (close > 0).then(|| &key[open + 1..open + 1 + close])
}

/// A hash tag whose slot is `key`'s.
fn slot_tag(key: &str) -> std::borrow::Cow<'_, str> {
    if let Some(tag) = hash_tag(key) {
        return tag.into();
    }
    if !key.contains('}') {
        return key.into();
    }
    // `{key}` would end at the key's own `}`: search a number of the slot
    // (16,384 slots; a few thousand tries on average, only for such ids).
    let slot = slot(key.as_bytes());
    (0u64..)
        .map(|n| n.to_string())
        .find(|t| self::slot(t.as_bytes()) == slot)
        .expect("every slot has a decimal tag")
        .into()
}

/// Redis Cluster's slot of a hashed key part: CRC16 (XMODEM) mod 16384.
fn slot(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in bytes {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
}

/// The slot Redis Cluster places `key` in.
#[cfg(test)]
fn key_slot(key: &str) -> u16 {
    slot(hash_tag(key).unwrap_or(key).as_bytes())
}

/// Why `prefix` could make a store share keys with another one, if it can.
pub(crate) fn prefix_problem(prefix: &str) -> Option<&'static str> {
    if prefix.contains(['{', '}']) {
        Some(
            "contains a brace, so its keys could be the request-id entries of another store \
             (which start with `{`); use letters and digits only, e.g. myapp",
        )
    } else if prefix == "lock" {
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

    #[test]
    fn native_keys_share_their_records_slot_and_are_no_record() {
        for record in ["lock:abc", "p:lock:a{u7}", "lock:a}b"] {
            let n = NativeKeys::new(record);
            let entry = format!("{}rl:17:3", native_prefix(record));
            for k in [&n.queue, &n.expiry, &n.channel("5f0c6a1e9b2d4387"), &entry] {
                assert_eq!(key_slot(k), key_slot(record), "{k}");
                assert!(k.starts_with('{'), "{k}");
            }
        }
        assert_eq!(
            NativeKeys::new("lock:abc").channel("5f0c6a1e9b2d4387"),
            "{lock:abc}:lock:abc:w:5f0c6a1e9b2d4387"
        );
        // The names the scripts make from the prefix are the ones the
        // client would build itself (request entries included).
        // Written into a command, the prefix is the same string.
        for record in ["lock:abc", "p:lock:a{u7}", "lock:a}b"] {
            let args = redis::ToRedisArgs::to_redis_args(&NativePrefix(record));
            assert_eq!(args, vec![native_prefix(record).into_bytes()], "{record}");
        }
        let prefix = native_prefix("lock:a}b");
        assert_eq!(
            format!("{prefix}rl:17:3"),
            request_key("lock:a}b", &release_suffix(3, Some(17)))
        );
        assert_eq!(
            format!("{prefix}rq:00ff"),
            request_key("lock:a}b", &request_suffix("00ff"))
        );
    }

    #[test]
    fn request_entries_share_their_records_slot() {
        // Known slots (CLUSTER KEYSLOT): "foo" 12182, "{user1000}.following" 3443.
        assert_eq!(key_slot("foo"), 12182);
        assert_eq!(key_slot("{user1000}.following"), 3443);
        assert_eq!(key_slot("a{}b"), slot(b"a{}b"));
        let keys = Keys::new(Some("p"));
        for id in [
            "abc", "a{x}b", "a}b", "{", "}", "{}", "}{", "a{}b}c", "é}", "x{y",
        ] {
            let key = keys.key(id);
            let entry = request_key(&key, &request_suffix("00ff"));
            assert_eq!(key_slot(&entry), key_slot(&key), "{id:?}: {entry:?}");
            assert!(entry.starts_with('{'), "{entry:?}");
            assert_eq!(keys.conversation_id(entry.as_bytes()), None);
        }
        assert_eq!(
            request_key("lock:abc", &release_suffix(3, Some(17))),
            "{lock:abc}:lock:abc:rl:17:3"
        );
        assert_eq!(
            request_key("lock:a{t}", &release_suffix(3, None)),
            "{t}:lock:a{t}:rl:-:3"
        );
        assert!(prefix_problem("a{b}").is_some());
        assert!(prefix_problem("}").is_some());
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
            fn request_entries_share_the_slot_and_are_no_record(
                p in prefix(),
                id in prop_oneof![id(), "[{}a]{1,8}"],
                other in id(),
                number in any::<u64>(),
            ) {
                let keys = Keys::new(p.as_deref());
                let key = keys.key(&id);
                for entry in [
                    request_key(&key, &request_suffix("0123456789abcdef0123456789abcdef")),
                    request_key(&key, &release_suffix(number, Some(number / 3))),
                    request_key(&key, &release_suffix(number, None)),
                ] {
                    prop_assert_eq!(key_slot(&entry), key_slot(&key), "{:?}", entry);
                    // No store's record key, and not another record's entry.
                    prop_assert!(!entry.starts_with(&keys.key("")), "{:?}", entry);
                    prop_assert_eq!(keys.conversation_id(entry.as_bytes()), None);
                    if other != id {
                        let theirs = request_key(&keys.key(&other), &release_suffix(number, None));
                        prop_assert_ne!(&entry, &theirs);
                    }
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
