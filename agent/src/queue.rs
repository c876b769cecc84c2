//! The in-memory queue of batches waiting to be sent, oldest first, bounded by
//! `max_queue_batches`. When it overflows, the oldest batches are dropped and the loss is
//! reported to the server as an [`Event::SpoolGap`] on the next batch, never silently.
//! (A later version backs this with a durable disk spool.)

use std::collections::VecDeque;
use std::time::Instant;

use yunwei_proto::{Batch, Event};

/// Reason reported in the gap event for batches dropped because the queue was full.
pub const QUEUE_FULL: &str = "queue full";

/// A batch waiting to be sent, with the monotonic time of its collection, from which `age_ms` is
/// computed when it is sent.
#[derive(Debug, Clone)]
pub struct Queued {
    pub batch: Batch,
    pub collected: Instant,
}

/// Batches dropped since the last gap event was attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Gap {
    batches: u64,
    bytes: u64,
    first_seq: u64,
    last_seq: u64,
    from_ms: i64,
    to_ms: i64,
}

impl Gap {
    fn merge(self, other: Gap) -> Gap {
        Gap {
            batches: self.batches + other.batches,
            bytes: self.bytes + other.bytes,
            first_seq: self.first_seq.min(other.first_seq),
            last_seq: self.last_seq.max(other.last_seq),
            from_ms: self.from_ms.min(other.from_ms),
            to_ms: self.to_ms.max(other.to_ms),
        }
    }
}

/// Bounded FIFO of batches.
#[derive(Debug)]
pub struct Queue {
    items: VecDeque<Queued>,
    max_batches: usize,
    pending_gap: Option<Gap>,
    dropped_total: u64,
}

impl Queue {
    /// A queue holding at most `max_batches` (at least 1) batches.
    pub fn new(max_batches: usize) -> Self {
        Queue {
            items: VecDeque::new(),
            max_batches: max_batches.max(1),
            pending_gap: None,
            dropped_total: 0,
        }
    }

    /// Appends a batch. A gap event for batches dropped since the last push is added to it
    /// first; then, if the queue is over its bound, the oldest batches are dropped.
    pub fn push(&mut self, mut batch: Batch, collected: Instant) {
        if let Some(gap) = self.pending_gap.take() {
            batch.events.push(Event::SpoolGap {
                dropped_batches: gap.batches,
                dropped_bytes: gap.bytes,
                first_seq: gap.first_seq,
                last_seq: gap.last_seq,
                from_ms: gap.from_ms,
                to_ms: gap.to_ms,
                reason: QUEUE_FULL.to_string(),
            });
        }
        self.items.push_back(Queued { batch, collected });
        while self.items.len() > self.max_batches {
            let dropped = self.items.pop_front().expect("queue is not empty");
            self.record_drop(&dropped.batch);
        }
    }

    fn record_drop(&mut self, batch: &Batch) {
        self.dropped_total += 1;
        // Uncompressed JSON size: an estimate of what the server did not receive.
        let bytes = serde_json::to_vec(batch).map_or(0, |v| v.len() as u64);
        let mut gap = Gap {
            batches: 1,
            bytes,
            first_seq: batch.seq,
            last_seq: batch.seq,
            from_ms: batch.collected_at_ms,
            to_ms: batch.collected_at_ms,
        };
        // A dropped batch may itself carry the report of an earlier gap; keep it.
        for event in &batch.events {
            if let Event::SpoolGap {
                dropped_batches,
                dropped_bytes,
                first_seq,
                last_seq,
                from_ms,
                to_ms,
                ..
            } = *event
            {
                gap = gap.merge(Gap {
                    batches: dropped_batches,
                    bytes: dropped_bytes,
                    first_seq,
                    last_seq,
                    from_ms,
                    to_ms,
                });
            }
        }
        self.pending_gap = Some(match self.pending_gap {
            Some(pending) => pending.merge(gap),
            None => gap,
        });
    }

    /// The oldest batch, to be sent next.
    pub fn front_mut(&mut self) -> Option<&mut Queued> {
        self.items.front_mut()
    }

    /// Removes the oldest batch (after it was acknowledged or rejected).
    pub fn pop_front(&mut self) -> Option<Queued> {
        self.items.pop_front()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Batches dropped because the queue was full, since start.
    pub fn dropped_total(&self) -> u64 {
        self.dropped_total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use yunwei_proto::HostFacts;

    fn batch(seq: u64) -> Batch {
        Batch {
            version: 1,
            agent_id: "a".into(),
            seq,
            interval_ms: 15_000,
            collected_at_ms: 1_000 * seq as i64,
            age_ms: 0,
            host: HostFacts {
                hostname: "h".into(),
                ..Default::default()
            },
            samples: vec![],
            events: vec![],
        }
    }

    fn seqs(q: &Queue) -> Vec<u64> {
        q.items.iter().map(|i| i.batch.seq).collect()
    }

    fn gap_of(b: &Batch) -> Option<(u64, u64, u64, i64, i64)> {
        b.events.iter().find_map(|e| match *e {
            Event::SpoolGap {
                dropped_batches,
                first_seq,
                last_seq,
                from_ms,
                to_ms,
                ref reason,
                dropped_bytes,
            } => {
                assert_eq!(reason, QUEUE_FULL);
                assert!(dropped_bytes > 0);
                Some((dropped_batches, first_seq, last_seq, from_ms, to_ms))
            }
            _ => None,
        })
    }

    #[test]
    fn overflow_drops_oldest_and_reports_the_gap_on_the_next_batch() {
        let now = Instant::now();
        let mut q = Queue::new(3);
        for seq in 1..=5 {
            q.push(batch(seq), now);
        }
        assert_eq!(seqs(&q), [3, 4, 5]);
        assert_eq!(q.dropped_total(), 2);
        // 1 was dropped by the push of 4 and is reported on 5; 2, dropped by the push of 5, waits
        // for the next batch.
        assert_eq!(gap_of(&q.items[0].batch), None);
        assert_eq!(gap_of(&q.items[1].batch), None);
        assert_eq!(gap_of(&q.items[2].batch), Some((1, 1, 1, 1_000, 1_000)));
        q.pop_front();
        q.push(batch(6), now);
        assert_eq!(seqs(&q), [4, 5, 6]);
        assert_eq!(gap_of(&q.items[2].batch), Some((1, 2, 2, 2_000, 2_000)));
        q.push(batch(7), now); // drops 4
        q.push(batch(8), now); // reports 4, drops 5 and with it the report of 1
        assert_eq!(seqs(&q), [6, 7, 8]);
        assert_eq!(gap_of(&q.items[2].batch), Some((1, 4, 4, 4_000, 4_000)));
        q.push(batch(9), now); // reports 5 and 1, drops 6 and with it the report of 2
        assert_eq!(gap_of(&q.items[2].batch), Some((2, 1, 5, 1_000, 5_000)));
        q.push(batch(10), now);
        assert_eq!(gap_of(&q.items[2].batch), Some((2, 2, 6, 2_000, 6_000)));
        assert_eq!(q.dropped_total(), 6, "popped 3 was sent, not dropped");
    }

    #[test]
    fn a_dropped_gap_report_is_folded_into_the_next_one() {
        let now = Instant::now();
        let mut q = Queue::new(1);
        q.push(batch(1), now);
        q.push(batch(2), now); // drops 1
        q.push(batch(3), now); // carries gap {1}, drops 2
        assert_eq!(gap_of(&q.items[0].batch), Some((1, 1, 1, 1_000, 1_000)));
        q.push(batch(4), now); // carries gap {2}, drops 3 and with it the report of {1}
        assert_eq!(gap_of(&q.items[0].batch), Some((1, 2, 2, 2_000, 2_000)));
        q.push(batch(5), now);
        assert_eq!(seqs(&q), [5]);
        assert_eq!(gap_of(&q.items[0].batch), Some((2, 1, 3, 1_000, 3_000)));
        assert_eq!(q.dropped_total(), 4);
    }
}
