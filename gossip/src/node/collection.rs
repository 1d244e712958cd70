//! When tombstones may be collected: the rule the reaper ([`crate::reaper`]) asks about before
//! each page. The collecting itself is the reaper's, beside the core loop.

use super::*;

impl GossipNode {
    /// Tombstones last written before this are garbage (see the module documentation).
    pub(super) fn gc_horizon(&self) -> Hlc {
        let wall = self.clock.wall_millis();
        Hlc::new(wall.saturating_sub(self.cfg.gc_grace.as_millis() as u64), 0)
    }

    /// Notes since when every known member has been alive (see [`GossipNode::collectable`]).
    pub(super) fn watch_settled(&mut self) {
        let all_alive = self
            .swim
            .lock()
            .swim
            .iter_membership_state()
            .all(|m| m.state() == foca::State::Alive);
        if all_alive {
            self.settled_since.get_or_insert(self.now);
        } else {
            self.settled_since = None;
        }
    }

    /// Whether tombstones older than the grace period may be collected now: every known member
    /// has been alive, with no member joining or returning, for a whole grace period (time for
    /// anti-entropy to bring each of them every tombstone). The reaper ([`crate::reaper`]) asks
    /// before each page; a node that has not yet been given a time says no.
    pub fn collectable(&self) -> bool {
        let Some(started) = self.started else {
            return false;
        };
        // Not before the node has had a whole grace to learn its members.
        self.now.saturating_sub(started) >= self.cfg.gc_grace
            && self
                .settled_since
                .is_some_and(|since| self.now.saturating_sub(since) >= self.cfg.gc_grace)
    }
}
