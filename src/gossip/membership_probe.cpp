// Failure detection (probe, indirect probe, stream fallback, Lifeguard awareness) and
// dissemination (piggyback and the gossip tick) for Membership.
#include <algorithm>

#include "gossip/membership.h"

namespace oklog::gossip {

void Membership::AdjustAwareness(int delta) {
  awareness_ = std::clamp(awareness_ + delta, 0, std::max(0, cfg_.awareness_max_multiplier - 1));
}

void Membership::AddToProbeOrder(const NodeName& name) {
  // At a random place, so a newcomer waits on average half a round like everybody else.
  size_t pos = probe_order_.empty() ? 0 : static_cast<size_t>(rng_() % (probe_order_.size() + 1));
  probe_order_.insert(probe_order_.begin() + static_cast<std::ptrdiff_t>(pos), name);
  if (pos < probe_index_) ++probe_index_;
}

std::optional<NodeName> Membership::NextProbeTarget() {
  for (int pass = 0; pass < 2; ++pass) {
    while (probe_index_ < probe_order_.size()) {
      const NodeName& name = probe_order_[probe_index_++];
      auto it = members_.find(name);
      if (it == members_.end() || name == cfg_.name) continue;
      MemberState st = it->second.info.state;
      if (st == MemberState::kAlive || st == MemberState::kSuspect) return name;
    }
    // Wrapped: reshuffle the live members.
    RefreshCaches();
    probe_order_ = live_others_;
    std::shuffle(probe_order_.begin(), probe_order_.end(), rng_);
    probe_index_ = 0;
    if (probe_order_.empty()) return std::nullopt;
  }
  return std::nullopt;
}

void Membership::ProbeTick(Instant now) {
  if (probe_) {
    if (now >= probe_->end) {
      FinishProbe(now);
    } else if (!probe_->indirect_sent && now >= probe_->ack_deadline) {
      SendIndirect(now);
    }
  }
  if (!probe_ && !left_ && now >= next_probe_at_) StartProbe(now);
}

void Membership::StartProbe(Instant now) {
  std::optional<NodeName> target = NextProbeTarget();
  if (!target) {
    next_probe_at_ = now + cfg_.probe_interval;
    return;
  }
  Probe p;
  p.target = *target;
  p.seq = next_seq_++;
  p.start = now;
  p.ack_deadline = now + cfg_.probe_timeout;  // not scaled by health, as memberlist: see README
  p.end = now + ScaledProbeInterval();
  next_probe_at_ = p.end;
  ++stats_.probes;
  const std::string addr = members_.at(p.target).info.addr;
  probe_ = std::move(p);
  // The accused hears the suspicion first: SendPacket puts it ahead of the ping.
  SendPacket(addr, &probe_->target, {Ping{probe_->seq, probe_->target, cfg_.name}});
}

void Membership::SendIndirect(Instant now) {
  Probe& p = *probe_;
  p.indirect_sent = true;
  auto it = members_.find(p.target);
  if (it == members_.end()) return;
  const std::string target_addr = it->second.info.addr;
  for (const Member* helper : RandomMembers(static_cast<size_t>(cfg_.indirect_checks), p.target, false, now)) {
    SendPacket(helper->info.addr, &helper->info.name, {PingReq{p.seq, p.target, target_addr}});
    ++p.expected_nacks;
    ++stats_.indirect_probes;
  }
  if (cfg_.tcp_fallback_ping) out_.streams.push_back({target_addr, EncodeMessage(Ping{p.seq, p.target, cfg_.name})});
}

void Membership::FinishProbe(Instant now) {
  Probe p = std::move(*probe_);
  probe_.reset();
  // Starved: our timer ran late, so the ack may be waiting unread. No verdict, lower trust in
  // ourselves instead (Lifeguard's point: the slow member is usually the one judging).
  if (now - p.end > cfg_.probe_timeout) {
    ++stats_.probes_inconclusive;
    AdjustAwareness(1);
    return;
  }
  ++stats_.probes_failed;
  AdjustAwareness(p.expected_nacks > 0 ? p.expected_nacks - p.nacks : 1);
  auto it = members_.find(p.target);
  if (it == members_.end()) return;
  const MemberInfo& t = it->second.info;
  // On a member already suspect, our own failed probe is an independent confirmation.
  if (t.state == MemberState::kAlive || t.state == MemberState::kSuspect) HandleSuspect(Suspect{t.incarnation, t.name, cfg_.name}, now);
}

void Membership::HandlePing(const std::string& from, const Ping& p, Instant now) {
  if (p.target != cfg_.name) return;  // meant for whoever had this address before us
  const bool known = members_.count(p.source) > 0;
  SendPacket(from, known ? &p.source : nullptr, {Ack{p.seq}});
  // A stranger talking to us: pull its view (memberlist ignores this evidence, which is how
  // its joins get stuck until the next push/pull).
  if (!known && p.source != cfg_.name && !left_ && now - last_unknown_sync_ >= cfg_.probe_interval) {
    last_unknown_sync_ = now;
    SendSync(from, 0, false);
  }
}

void Membership::HandlePingReq(const std::string& from, const PingReq& r, Instant now) {
  if (r.target == cfg_.name) {  // odd, but the answer is obvious
    SendPacket(from, nullptr, {Ack{r.seq}});
    return;
  }
  // Only a member, at the address we hold for it: otherwise anyone could make us send UDP to
  // any address. The nack spares a requester whose view is ahead of ours the Lifeguard penalty.
  auto it = members_.find(r.target);
  if (it == members_.end() || it->second.info.state == MemberState::kLeft || it->second.info.addr != r.target_addr) {
    const bool unknown = it == members_.end() || it->second.info.state == MemberState::kLeft;
    Reject(unknown ? Rejection::kPingReqUnknownTarget : Rejection::kPingReqWrongAddress,
           "ping_req for " + r.target + " at " + r.target_addr +
               (unknown ? std::string(", not a member") : ", member's address is " + it->second.info.addr),
           now);
    SendPacket(from, nullptr, {Nack{r.seq}});
    return;
  }
  uint32_t seq = next_seq_++;
  relays_[seq] = Relay{from, r.seq, now + cfg_.probe_timeout};
  SendPacket(it->second.info.addr, &r.target, {Ping{seq, r.target, cfg_.name}});
}

void Membership::HandleAck(uint32_t seq, Instant now) {
  (void)now;
  if (probe_ && probe_->seq == seq) {
    AdjustAwareness(-1);
    probe_.reset();
    return;
  }
  auto it = relays_.find(seq);
  if (it != relays_.end()) {
    SendPacket(it->second.origin, nullptr, {Ack{it->second.origin_seq}});
    relays_.erase(it);
  }
}

void Membership::HandleNack(uint32_t seq) {
  if (probe_ && probe_->seq == seq) ++probe_->nacks;
}

void Membership::ExpireRelays(Instant now) {
  for (auto it = relays_.begin(); it != relays_.end();) {
    if (it->second.deadline <= now) {
      SendPacket(it->second.origin, nullptr, {Nack{it->second.origin_seq}});
      it = relays_.erase(it);
    } else {
      ++it;
    }
  }
}

void Membership::GossipTick(Instant now) {
  if (now < next_gossip_at_) return;
  next_gossip_at_ = now + cfg_.gossip_interval;
  if (broadcasts_.empty()) return;
  for (const Member* m : RandomMembers(static_cast<size_t>(cfg_.gossip_nodes), "", true, now)) {
    if (broadcasts_.empty()) break;
    SendPacket(m->info.addr, &m->info.name, {});
  }
}

std::vector<const Membership::Member*> Membership::RandomMembers(size_t k, const NodeName& exclude,
                                                                 bool include_recent_dead, Instant now) {
  RefreshCaches();
  std::vector<const Member*> out;
  auto eligible = [&](const NodeName& name) -> const Member* {
    if (name == exclude) return nullptr;
    auto it = members_.find(name);
    if (it == members_.end()) return nullptr;
    const MemberInfo& i = it->second.info;
    if (i.state == MemberState::kAlive || i.state == MemberState::kSuspect) return &it->second;
    if (i.state == MemberState::kDead && include_recent_dead && now - i.state_change < cfg_.gossip_to_dead)
      return &it->second;
    return nullptr;
  };
  const size_t pool = live_others_.size() + (include_recent_dead ? dead_others_.size() : 0);
  if (pool == 0 || k == 0) return out;
  auto pick = [&](size_t i) -> const NodeName& {
    return i < live_others_.size() ? live_others_[i] : dead_others_[i - live_others_.size()];
  };
  if (pool <= 4 * k) {  // small: shuffle indices
    std::vector<size_t> idx(pool);
    for (size_t i = 0; i < pool; ++i) idx[i] = i;
    std::shuffle(idx.begin(), idx.end(), rng_);
    for (size_t i : idx) {
      if (out.size() >= k) break;
      if (const Member* m = eligible(pick(i))) out.push_back(m);
    }
    return out;
  }
  // Large: rejection sampling, bounded.
  for (size_t tries = 0; out.size() < k && tries < 8 * k; ++tries) {
    const Member* m = eligible(pick(static_cast<size_t>(rng_() % pool)));
    if (m && std::find(out.begin(), out.end(), m) == out.end()) out.push_back(m);
  }
  return out;
}

void Membership::SendPacket(const std::string& to, const NodeName* about, const std::vector<Message>& first) {
  PacketBuilder pkt(cluster_hash_, cfg_.packet_budget_bytes);
  if (about) {
    auto it = members_.find(*about);
    if (it != members_.end() && *about != cfg_.name) {
      const MemberInfo& i = it->second.info;
      // Tell a node we hold as suspect or dead, so it can refute at once (it may otherwise
      // never hear: memberlist's restarted-node and partition cases).
      if (i.state == MemberState::kSuspect) {
        (void)pkt.TryAdd(EncodeMessage(Suspect{i.incarnation, i.name, cfg_.name}));
      } else if (i.state == MemberState::kDead) {
        (void)pkt.TryAdd(EncodeMessage(Dead{i.incarnation, i.name, cfg_.name}));
      }
    }
  }
  for (const Message& m : first) (void)pkt.TryAdd(EncodeMessage(m));
  broadcasts_.Fill(&pkt, RetransmitLimit(cfg_, LiveCount()));
  if (pkt.count() == 0) return;
  out_.packets.push_back({to, std::move(pkt).Finish()});
}

}  // namespace oklog::gossip
