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
    let mut rng = SplitMix64(seed);
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

/// A seed for a run that was given none.
pub fn fresh_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    SplitMix64(nanos ^ u64::from(std::process::id()).rotate_left(32)).next_u64()
}

/// SplitMix64: tiny, and the same sequence for a seed in every build, so
/// `--seed` reproduces a run (a general RNG crate does not promise stable
/// streams across versions).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (Lemire's multiply-shift with rejection).
    fn below(&mut self, n: u64) -> u64 {
        loop {
            let m = u128::from(self.next_u64()) * u128::from(n);
            let low = m as u64;
            if low >= n.wrapping_neg() % n {
                return (m >> 64) as u64;
            }
        }
    }
}

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

    #[test]
    fn below_stays_in_range_and_reaches_every_value() {
        let mut rng = SplitMix64(9);
        let mut seen = [false; 6];
        for _ in 0..1000 {
            let v = rng.below(6);
            seen[v as usize] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }
}
