// Anti-entropy (push/pull), joining through seeds, reconnecting to the dead, and reaping, for
// Membership.
//
// A sync exchange runs over one stream, at most three messages:
//   1. initiator -> responder: sync{flags, digest, states?}. Joins and reconnects send the full
//      state with kJoin; periodic syncs send only the digest of the member table.
//   2. responder merges any states, then answers sync{kReply, digest, nil} when the digests
//      agree and nothing was asked, else sync{kReply [| kWant], digest, full state}, with kWant
//      when it has not yet seen the initiator's state.
//   3. initiator merges; sends its full state (no further reply) if kWant was set, or if the
//      reply made it refute (so the responder learns the refutation in the same exchange).
// In a converged cluster a periodic sync is two small messages (~30 bytes each) instead of two
// full tables, which is why we can afford memberlist's interval and still stay under 100 B/s.
#include <algorithm>

#include "gossip/membership.h"

namespace oklog::gossip {

std::vector<SyncState> Membership::FullState() const {
  std::vector<SyncState> out;
  out.reserve(members_.size());
  for (const auto& [name, m] : members_)
    out.push_back(SyncState{name, m.info.addr, m.info.incarnation, m.info.state, m.info.meta});
  return out;
}

void Membership::SendSync(const std::string& to, uint8_t flags, bool full) {
  Sync s;
  s.flags = flags;
  s.digest = Digest();
  s.source = cfg_.name;
  if (full) s.states = FullState();
  ++stats_.syncs_started;
  out_.streams.push_back({to, EncodeMessage(s)});
}

void Membership::Join(std::vector<std::string> seeds, Instant now) {
  if (left_) {  // joining again after a leave: a new life at a higher incarnation
    left_ = false;
    Member& s = SelfMember();
    if (s.info.incarnation >= kMaxIncarnation) ++stats_.incarnation_saturated;  // peers keep us left
    s.info.incarnation = std::min(s.info.incarnation, kMaxIncarnation - 1) + 1;
    s.info.state = MemberState::kAlive;
    s.info.state_change = now;
    Broadcast(cfg_.name, SelfAlive());
    Changed();
    next_probe_at_ = now;
  }
  seeds_.clear();
  for (std::string& s : seeds)
    if (s != cfg_.advertise_addr && std::find(seeds_.begin(), seeds_.end(), s) == seeds_.end())
      seeds_.push_back(std::move(s));
  if (seeds_.empty()) return;  // the first node of a cluster
  joining_ = true;
  join_backoff_ = cfg_.join_retry_min;
  next_join_at_ = now;
  SyncTick(now);
}

std::string Membership::HandleSync(const std::string& from, const Sync& s, Instant now) {
  (void)from;
  if (s.source == cfg_.name) return "";  // a seed that resolved to ourselves
  const Incarnation before = self().incarnation;
  if (s.states) {
    ++stats_.syncs_full;
    Merge(s.source, *s.states, now);
  }
  const bool refuted = self().incarnation != before;
  if (s.flags & Sync::kFinal) return "";
  if (s.flags & Sync::kReply) {
    if (joining_) {  // a seed answered: joined. Now a few quick syncs with random members.
      joining_ = false;
      fast_syncs_left_ = cfg_.join_sync_rounds;
      next_fast_sync_at_ = now + cfg_.join_sync_interval;
    }
    if ((s.flags & Sync::kWant) || refuted) {
      Sync back{static_cast<uint8_t>(Sync::kReply | Sync::kFinal), Digest(), cfg_.name, FullState()};
      return EncodeMessage(back);
    }
    return "";
  }
  const bool agree = s.digest == Digest() && !refuted;
  if (!(s.flags & Sync::kJoin) && !s.states && agree) return EncodeMessage(Sync{Sync::kReply, Digest(), cfg_.name, {}});
  uint8_t flags = Sync::kReply;
  if (!s.states) flags |= Sync::kWant;
  return EncodeMessage(Sync{flags, Digest(), cfg_.name, FullState()});
}

void Membership::Merge(const NodeName& source, const std::vector<SyncState>& states, Instant now) {
  for (const SyncState& st : states) {
    // Alive, and suspect about a node we do not know (learnt as alive), are claims of life; the
    // rest accuse. Both within the incarnation bounds, as in packets.
    const bool known = members_.count(st.node) > 0;
    const bool claims_life = st.state == MemberState::kAlive || (st.state == MemberState::kSuspect && !known);
    if (!IncarnationInRange(st.node, st.incarnation, claims_life ? Claim::kAlive : Claim::kAccusation, now)) continue;
    if (st.node == cfg_.name) {
      if (left_) continue;
      const Incarnation mine = self().incarnation;
      if (st.state == MemberState::kAlive) {
        HandleAlive(Alive{st.incarnation, st.node, st.addr, st.meta}, now);
      } else if (st.incarnation >= mine) {
        Refute(st.incarnation, now);  // suspect, dead or left about us: we are here
      }
      continue;
    }
    switch (st.state) {
      case MemberState::kAlive:
        HandleAlive(Alive{st.incarnation, st.node, st.addr, st.meta}, now);
        break;
      case MemberState::kSuspect:
        if (!known) {
          HandleAlive(Alive{st.incarnation, st.node, st.addr, st.meta}, now);  // we will probe it
        } else {
          HandleSuspect(Suspect{st.incarnation, st.node, source}, now);
        }
        break;
      case MemberState::kDead:
        // As memberlist: another node's verdict is only grounds for our own suspicion, which
        // the accused can still refute. Unknown dead nodes are not worth learning.
        if (known) HandleSuspect(Suspect{st.incarnation, st.node, source}, now);
        break;
      case MemberState::kLeft:
        if (known) HandleDead(Dead{st.incarnation, st.node, st.node}, now);
        break;
    }
  }
}

void Membership::SyncTick(Instant now) {
  if (left_) return;
  RefreshCaches();
  // Alone (everybody else dead, or never joined): keep knocking on the seeds, with backoff.
  if (!joining_ && !seeds_.empty() && live_others_.empty()) {
    joining_ = true;
    join_backoff_ = cfg_.join_retry_min;
    next_join_at_ = now;
  }
  if (joining_ && now >= next_join_at_) {
    for (const std::string& seed : seeds_) SendSync(seed, Sync::kJoin, true);
    next_join_at_ = now + join_backoff_;
    join_backoff_ = std::min(cfg_.join_retry_max, join_backoff_ * 2);
  }
  if (fast_syncs_left_ > 0 && now >= next_fast_sync_at_) {
    --fast_syncs_left_;
    next_fast_sync_at_ = now + cfg_.join_sync_interval;
    for (const Member* m : RandomMembers(1, "", false, now)) SendSync(m->info.addr, 0, false);
  }
  if (now >= next_push_pull_at_) {
    next_push_pull_at_ = now + PushPullInterval(cfg_, LiveCount());
    for (const Member* m : RandomMembers(1, "", false, now)) SendSync(m->info.addr, 0, false);
  }
  if (now >= next_reconnect_at_) {
    next_reconnect_at_ = now + cfg_.reconnect_interval;
    ReapTombstones(now);
    RefreshCaches();
    // A dead member may only be cut off from us; a full exchange lets both sides refute.
    if (!dead_others_.empty()) {
      const NodeName& name = dead_others_[static_cast<size_t>(rng_() % dead_others_.size())];
      SendSync(members_.at(name).info.addr, Sync::kJoin, true);
    }
  }
}

void Membership::ReapTombstones(Instant now) {
  for (auto it = members_.begin(); it != members_.end();) {
    const MemberInfo& i = it->second.info;
    if ((i.state == MemberState::kDead || i.state == MemberState::kLeft) && i.name != cfg_.name &&
        now - i.state_change >= cfg_.dead_retention) {
      Emit(MemberEvent::Kind::kReap, i);
      it = members_.erase(it);
      Changed();
    } else {
      ++it;
    }
  }
}

}  // namespace oklog::gossip
