//! Conversation ids are outside input: any string (NUL, control
//! characters, any Unicode, up to `MAX_ID_LEN` bytes) names exactly one
//! conversation of the in-memory store, and reads back unchanged through
//! the record format. (The Redis store's keys are checked in
//! `redis/keys.rs` and `redis_security.rs`.)

use std::collections::BTreeSet;
use std::time::Duration;

use proptest::prelude::*;
use ticketlock::{Error, LockStore, MAX_ID_LEN, TicketLock};

/// Ids of every kind, weighted towards the awkward ones.
fn id() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>().prop_filter("non-empty", |s| !s.is_empty()),
        "[\\x00-\\x1f\"\\\\:*?\\[\\]{}\u{80}-\u{10ffff}]{1,12}",
        "(lock:|a|:|\\*|\\x00){1,6}",
        // Long ids: up to 16 Ki characters, up to MAX_ID_LEN bytes.
        (
            prop::sample::select(&[255usize, 4096, 16 * 1024][..]),
            any::<char>()
        )
            .prop_map(|(n, c)| std::iter::repeat_n(c, n).collect::<String>()),
    ]
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn every_id_names_exactly_its_own_conversation(ids in prop::collection::btree_set(id(), 1..8)) {
        runtime().block_on(async {
            let store = LockStore::in_memory();
            let mut guards = Vec::new();
            for id in &ids {
                // Held all at once: an id sharing a queue with another would wait.
                let g = store
                    .lock(id)
                    .timeout(Duration::from_secs(5))
                    .await
                    .map_err(|e| TestCaseError::fail(format!("{id:?}: {e}")))?;
                prop_assert_eq!(g.ticket(), 0);
                prop_assert_eq!(g.conversation_id(), id.as_str());
                guards.push(g);
            }
            let listed: BTreeSet<String> = store.conversations().await.unwrap().into_iter().collect();
            prop_assert_eq!(&listed, &ids);
            for id in &ids {
                let record = store.get_lock(id).await.unwrap().unwrap();
                prop_assert_eq!(record.conversation_id(), id.as_str());
                prop_assert_eq!(record.tickets().len(), 1);
                let back = TicketLock::from_json(record.dumps().as_bytes()).unwrap();
                prop_assert_eq!(back.conversation_id(), id.as_str());
            }
            for g in guards {
                g.release().await.unwrap();
            }
            prop_assert!(store.conversations().await.unwrap().is_empty());
            Ok(())
        })?;
    }
}

#[tokio::test]
async fn empty_and_oversized_ids_are_refused_everywhere_and_the_limit_is_inclusive() {
    let store = LockStore::in_memory();
    let at_limit = "é".repeat(MAX_ID_LEN / 2);
    assert_eq!(at_limit.len(), MAX_ID_LEN);
    store
        .lock(&at_limit)
        .await
        .unwrap()
        .release()
        .await
        .unwrap();
    let over = format!("{at_limit}x");
    for id in ["", over.as_str()] {
        let refused = [
            store.lock(id).await.map(|_| ()).unwrap_err(),
            store.issue_ticket(id, None).await.map(|_| ()).unwrap_err(),
            store.get_lock(id).await.map(|_| ()).unwrap_err(),
            store
                .save_lock(&TicketLock::new(id))
                .await
                .map(|_| ())
                .unwrap_err(),
            store.delete_lock(id).await.unwrap_err(),
            store.update_lock(id).await.unwrap_err(),
            store.finish_serving(id, 0).await.unwrap_err(),
        ];
        for e in refused {
            match e {
                Error::InvalidId {
                    conversation_id, ..
                } => assert!(conversation_id.chars().count() <= 64),
                other => panic!("{}: {other:?}", id.len()),
            }
        }
    }
    assert!(store.conversations().await.unwrap().is_empty());
}
