//! The simulated traffic: every conversation's messages, interleaved at
//! random, each conversation's in order.

/// One message: which conversation, and its place in that conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message {
    pub conv: u32,
    pub seq: u32,
}

/// The messages in arrival order: `messages` for each of `conversations`,
/// in a uniformly random interleaving (a shuffle of the conversation of each
/// arrival) in which message k of a conversation comes after message k-1.
pub fn arrivals(conversations: u32, messages: u32, seed: u64) -> Vec<Message> {
    let mut convs: Vec<u32> = (0..conversations)
        .flat_map(|c| std::iter::repeat_n(c, messages as usize))
        .collect();
    let mut rng = Rng::new(seed);
    for i in (1..convs.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        convs.swap(i, j);
    }
    let mut next_seq = vec![0u32; conversations as usize];
    convs
        .into_iter()
        .map(|conv| {
            let seq = &mut next_seq[conv as usize];
            *seq += 1;
            Message {
                conv,
                seq: *seq - 1,
            }
        })
        .collect()
}

use crate::rng::Rng;
pub use crate::rng::fresh_seed;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_conversation_arrives_complete_and_in_order() {
        let a = arrivals(7, 13, 42);
        assert_eq!(a.len(), 7 * 13);
        for c in 0..7 {
            let seqs: Vec<u32> = a.iter().filter(|m| m.conv == c).map(|m| m.seq).collect();
            assert_eq!(seqs, (0..13).collect::<Vec<_>>(), "conversation {c}");
        }
    }

    #[test]
    fn the_seed_fixes_the_interleaving_and_it_is_mixed() {
        assert_eq!(arrivals(5, 20, 1), arrivals(5, 20, 1));
        assert_ne!(arrivals(5, 20, 1), arrivals(5, 20, 2));
        // Not conversation after conversation: the shuffle interleaves.
        let a = arrivals(5, 20, 1);
        let switches = a.windows(2).filter(|w| w[0].conv != w[1].conv).count();
        assert!(switches > 40, "only {switches} switches: {a:?}");
    }
}
