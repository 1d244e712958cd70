//! Anti-entropy: digests, then the leaves of the ranges that differ, then key summaries of the
//! buckets that differ, then only the records that differ — each step capped and chunked. The
//! reads of buckets and records are store jobs ([`super::io`]): the answer goes out when they
//! are done.

use super::io::{Job, Read};
use super::*;

impl GossipNode {
    /// Back to anti-entropy every `ae_interval`, starting within one: there is something to
    /// repair, or a member came or went.
    pub(super) fn ae_hurry(&mut self) {
        self.ae_idle_rounds = 0;
        self.next_ae = self.next_ae.min(self.now + self.cfg.ae_interval);
    }

    pub(super) fn start_anti_entropy(&mut self) {
        let members = self.members();
        let (local, remote): (Vec<&Peer>, Vec<&Peer>) =
            members.iter().partition(|p| p.region == self.me.region);
        // Mostly a near peer; a far one every third round on average, and whenever no near one.
        let pick = if remote.is_empty() || (!local.is_empty() && self.rng.random_ratio(2, 3)) {
            local.choose(&mut self.rng)
        } else {
            remote.choose(&mut self.rng)
        };
        let Some(peer) = pick.map(|p| (*p).clone()) else {
            return;
        };
        self.metrics.ae_rounds += 1;
        let level = self.store.digests().level(AE_DEPTH);
        self.send(peer, Message::AeDigest { level });
    }

    pub(super) fn answer_digest(&mut self, from: Peer, theirs: &[u64]) {
        let tree = self.store.digests();
        let mine = tree.level(AE_DEPTH);
        if theirs.len() != mine.len() {
            tracing::warn!(from = %from.addr, "anti-entropy digest of the wrong shape");
            return;
        }
        let differing: Vec<usize> = (0..mine.len()).filter(|&i| mine[i] != theirs[i]).collect();
        if differing.is_empty() {
            return;
        }
        // Start at a random differing range so repeated rounds cover all of them.
        let start = self.rng.random_range(0..differing.len());
        let ranges = differing
            .iter()
            .cycle()
            .skip(start)
            .take(differing.len().min(self.cfg.ae_max_ranges))
            .map(|&r| {
                let leaves = tree.leaves()[r * RANGE_WIDTH..(r + 1) * RANGE_WIDTH].to_vec();
                (r as u32, leaves)
            })
            .collect();
        self.send(from, Message::AeLeaves { ranges });
    }

    pub(super) fn compare_leaves(&mut self, from: Peer, ranges: &[(u32, Vec<u64>)]) {
        let tree = self.store.digests();
        let mut buckets = Vec::new();
        for (r, theirs) in ranges {
            let r = *r as usize;
            if theirs.len() != RANGE_WIDTH || (r + 1) * RANGE_WIDTH > LEAVES {
                tracing::warn!(from = %from.addr, "anti-entropy leaves of the wrong shape");
                return;
            }
            let mine = &tree.leaves()[r * RANGE_WIDTH..(r + 1) * RANGE_WIDTH];
            buckets.extend(
                (0..RANGE_WIDTH)
                    .filter(|&i| mine[i] != theirs[i])
                    .map(|i| (r * RANGE_WIDTH + i) as u32),
            );
        }
        if buckets.is_empty() {
            return;
        }
        self.metrics.ae_buckets_differing += buckets.len() as u64;
        self.answer(from, Read::Summaries(buckets));
    }

    /// Asks for the reads that answer `to` (a store job, [`super::io`]): the buckets' summaries,
    /// the records that differ, the records wanted, whole buckets, a fetch or a have-request.
    pub(super) fn answer(&mut self, to: Peer, read: Read) {
        self.job(Job::Answer { to, read });
    }
}
