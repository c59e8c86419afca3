//! One function per fuzz target: it takes any bytes, must not panic on any
//! of them, and panics (a finding) when a property of what was accepted
//! does not hold. Built by the fuzz crate and, with `#[path]`, by
//! `ticketlock/tests/fuzz_replay.rs`, so that the seeds and any local
//! corpus are replayed by a plain `cargo test`.

use ticketlock::{Error, LockStoreConfig, Secret, TicketLock};

/// The record decoder (Rasa's format): whatever it accepts, it writes back
/// stably, reads back equal (floats by bits), and an independent JSON
/// reader (serde_json) sees the same record in what it wrote.
pub fn record_decode(data: &[u8]) {
    let Ok(lock) = TicketLock::from_json(data) else {
        return;
    };
    let once = lock.dumps();
    let back = TicketLock::from_json(once.as_bytes())
        .unwrap_or_else(|e| panic!("dumps wrote what from_json refuses ({e}): {once}"));
    assert_eq!(back, lock, "{once}");
    assert_eq!(back.dumps(), once, "dumps is not stable");

    let v: serde_json::Value = serde_json::from_str(&once).expect("dumps writes JSON");
    assert_eq!(v["conversation_id"].as_str(), Some(lock.conversation_id()));
    let listed = v["tickets"].as_array().expect("tickets is a list");
    assert_eq!(listed.len(), lock.tickets().len());
    for (element, ticket) in listed.iter().zip(lock.tickets()) {
        // Double-encoded, as Rasa writes it.
        let inner: serde_json::Value =
            serde_json::from_str(element.as_str().expect("a ticket is a string")).unwrap();
        assert_eq!(inner["number"].as_u64(), Some(ticket.number));
        assert_eq!(
            inner["expires"].as_f64().map(f64::to_bits),
            Some(ticket.expires.to_bits())
        );
    }
    assert_eq!(v["epoch"].as_u64(), lock.epoch());
    // `last_issued()` is the field or the highest number queued, if higher.
    let highest = lock.tickets().map(|t| t.number).max();
    assert_eq!(v["last_issued"].as_u64().max(highest), lock.last_issued());
}

/// The endpoints.yml parser: any UTF-8 text gives a configuration or a
/// configuration error with a key and a message, never another kind.
pub fn endpoints_yaml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Every variable is set, to a value that is itself hostile.
    let env = |name: &str| Some(format!("{name}${{X}}: [\n"));
    match LockStoreConfig::from_endpoints_yaml_with_env(text, env) {
        Ok(_) => {}
        Err(Error::Config { key, message }) => {
            assert!(!key.is_empty() && !message.is_empty());
        }
        Err(other) => panic!("not a configuration error: {other:?}"),
    }
}

/// The URL parser: any text gives a configuration or a configuration error
/// on `url` whose message never repeats the password; a Redis
/// configuration reads back from its `display_url`, password as `***`.
pub fn url(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match LockStoreConfig::from_url(text) {
        Ok(LockStoreConfig::Redis(c)) => {
            let shown = c.display_url();
            let back = match LockStoreConfig::from_url(&shown) {
                Ok(LockStoreConfig::Redis(r)) => r,
                other => panic!("{shown} => {other:?}"),
            };
            let mut masked = c.clone();
            masked.password = c.password.as_ref().map(|_| Secret::new("***"));
            assert_eq!(back, masked, "{shown}");
        }
        Ok(_) => {}
        Err(Error::Config { key, message }) => {
            assert_eq!(key, "url");
            assert!(!message.is_empty());
            if let Some((raw, decoded)) = password_in(text) {
                // A message that holds the password's text is only a leak if
                // it changes with the password (the words of a message may
                // be a password too): compare with another password.
                let other = text.replacen(&raw, &"Z".repeat(raw.len()), 1);
                let changes = match LockStoreConfig::from_url(&other) {
                    Err(Error::Config { message: m, .. }) => m != message,
                    _ => true,
                };
                for p in [raw, decoded].iter().filter(|p| p.len() >= 6) {
                    assert!(
                        !(message.contains(p.as_str()) && changes),
                        "{message} shows {p:?}"
                    );
                }
            }
        }
        Err(other) => panic!("not a configuration error: {other:?}"),
    }
}

/// The password of `text` as a URL, as written and percent-decoded, when
/// it is written once in `text` (so that it can be swapped for another).
fn password_in(text: &str) -> Option<(String, String)> {
    let raw = url::Url::parse(text.trim()).ok()?.password()?.to_owned();
    if raw.is_empty() || text.matches(raw.as_str()).count() != 1 {
        return None;
    }
    let decoded = percent_encoding::percent_decode_str(&raw)
        .decode_utf8_lossy()
        .into_owned();
    Some((raw, decoded))
}
