//! A conversation's queue: its tickets in FIFO order, sorted by number,
//! the first one inline (nearly every conversation has one ticket, so
//! it costs no allocation of its own).

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::Notify;

use super::clock::Stamp;

/// A FIFO of tickets sorted by number, the first one inline.
pub(super) enum Queue {
    One(MemTicket),
    /// Two tickets or more, or none (then without allocation).
    Many(VecDeque<MemTicket>),
}

/// A ticket in a queue: its number, when it expires by the store's clock,
/// and the waiter's wake-up once it watches.
pub(super) struct MemTicket {
    pub(super) number: u64,
    pub(super) expires: Stamp,
    pub(super) waker: Option<Arc<Notify>>,
}

impl MemTicket {
    pub(super) fn wake(&self) {
        if let Some(w) = &self.waker {
            w.notify_one();
        }
    }
}
impl Queue {
    pub(super) fn len(&self) -> usize {
        match self {
            Queue::One(_) => 1,
            Queue::Many(q) => q.len(),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(super) fn front(&self) -> Option<&MemTicket> {
        self.get(0)
    }

    pub(super) fn get(&self, i: usize) -> Option<&MemTicket> {
        match self {
            Queue::One(t) => (i == 0).then_some(t),
            Queue::Many(q) => q.get(i),
        }
    }

    pub(super) fn get_mut(&mut self, i: usize) -> Option<&mut MemTicket> {
        match self {
            Queue::One(t) => (i == 0).then_some(t),
            Queue::Many(q) => q.get_mut(i),
        }
    }

    /// The first ticket; only called where the queue is known not to be
    /// empty.
    pub(super) fn head_mut(&mut self) -> &mut MemTicket {
        match self {
            Queue::One(t) => t,
            Queue::Many(q) => &mut q[0],
        }
    }

    pub(super) fn push_back(&mut self, t: MemTicket) {
        match self {
            Queue::Many(q) if q.is_empty() => *self = Queue::One(t),
            Queue::Many(q) => q.push_back(t),
            Queue::One(_) => {
                let Queue::One(first) = std::mem::replace(self, Queue::Many(VecDeque::new()))
                else {
                    unreachable!("matched One above")
                };
                let mut q = VecDeque::with_capacity(4);
                q.push_back(first);
                q.push_back(t);
                *self = Queue::Many(q);
            }
        }
    }

    pub(super) fn remove(&mut self, i: usize) -> Option<MemTicket> {
        match self {
            Queue::One(_) if i == 0 => {
                match std::mem::replace(self, Queue::Many(VecDeque::new())) {
                    Queue::One(t) => Some(t),
                    Queue::Many(_) => None,
                }
            }
            Queue::One(_) => None,
            Queue::Many(q) => q.remove(i),
        }
    }

    pub(super) fn pop_front(&mut self) -> Option<MemTicket> {
        self.remove(0)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &MemTicket> + '_ {
        let (one, many) = match self {
            Queue::One(t) => (Some(t), None),
            Queue::Many(q) => (None, Some(q.iter())),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }

    pub(super) fn retain(&mut self, keep: impl FnMut(&MemTicket) -> bool) {
        match self {
            Queue::One(t) => {
                let mut keep = keep;
                if !keep(t) {
                    *self = Queue::Many(VecDeque::new());
                }
            }
            Queue::Many(q) => q.retain(keep),
        }
    }
}

impl From<Vec<MemTicket>> for Queue {
    fn from(mut tickets: Vec<MemTicket>) -> Self {
        if tickets.len() == 1
            && let Some(t) = tickets.pop()
        {
            return Queue::One(t);
        }
        Queue::Many(tickets.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticket(number: u64) -> MemTicket {
        MemTicket {
            number,
            expires: Stamp::from_secs_f64(0.0),
            waker: None,
        }
    }

    fn numbers(q: &Queue) -> Vec<u64> {
        q.iter().map(|t| t.number).collect()
    }

    #[test]
    fn the_queue_keeps_fifo_order_across_its_two_forms() {
        let mut q = Queue::from(vec![ticket(3)]);
        assert!(matches!(q, Queue::One(_)));
        assert_eq!(q.front().map(|t| t.number), Some(3));
        q.push_back(ticket(4));
        q.push_back(ticket(5));
        assert_eq!(numbers(&q), [3, 4, 5]);
        assert_eq!(q.remove(1).map(|t| t.number), Some(4));
        assert_eq!(q.pop_front().map(|t| t.number), Some(3));
        assert_eq!(q.pop_front().map(|t| t.number), Some(5));
        assert!(q.is_empty() && q.pop_front().is_none());
        // An emptied queue takes its next ticket inline again.
        q.push_back(ticket(6));
        assert!(matches!(q, Queue::One(_)));
        assert!(q.remove(1).is_none() && q.get(1).is_none());
        q.retain(|t| t.number != 6);
        assert!(q.is_empty());
        assert_eq!(q.len(), 0);
        assert!(matches!(Queue::from(Vec::new()), Queue::Many(ref v) if v.is_empty()));
    }
}
