#include "segments/ingest/bulk_ack_tracker.h"

namespace oklog {

BulkAckTracker::BulkAckTracker(size_t max_unacked_per_conn, size_t recent_commits)
    : max_unacked_(max_unacked_per_conn), recent_commits_(recent_commits) {}

BulkAckTracker::Arrival BulkAckTracker::Received(ConnId conn, const Ulid& id) {
  if (auto it = held_.find(id); it != held_.end()) {
    if (it->second.waiters.insert(conn).second) ++unacked_[conn];
    return Arrival::kHeld;
  }
  if (recent_.count(id)) return Arrival::kCommitted;
  return Arrival::kNew;
}

void BulkAckTracker::Storing(ConnId conn, const Ulid& id, const std::string& name) {
  if (held_[id].waiters.insert(conn).second) ++unacked_[conn];
  by_name_[name] = id;
}

std::optional<BulkAckTracker::Acks> BulkAckTracker::Written(const Ulid& id) {
  auto h = held_.find(id);
  if (h == held_.end()) return std::nullopt;
  h->second.written = true;
  if (!h->second.committed) return std::nullopt;
  Acks acks = Take(h);
  Remember(acks.id);
  return acks;
}

std::vector<BulkAckTracker::ConnId> BulkAckTracker::Failed(const Ulid& id) {
  std::vector<ConnId> out;
  auto h = held_.find(id);
  if (h == held_.end()) return out;
  for (auto n = by_name_.begin(); n != by_name_.end();) n = n->second == id ? by_name_.erase(n) : std::next(n);
  return Take(h).conns;
}

std::optional<BulkAckTracker::Acks> BulkAckTracker::Committed(const std::string& name) {
  auto n = by_name_.find(name);
  if (n == by_name_.end()) return std::nullopt;  // not a bulk segment (or one whose write failed)
  const Ulid id = n->second;
  by_name_.erase(n);
  auto h = held_.find(id);
  if (h == held_.end()) return std::nullopt;
  if (!h->second.written) {
    h->second.committed = true;  // acked by Written, or dropped by Failed
    return std::nullopt;
  }
  Acks acks = Take(h);
  Remember(acks.id);
  return acks;
}

BulkAckTracker::Acks BulkAckTracker::Take(std::map<Ulid, Held>::iterator h) {
  Acks acks{h->first, {}};
  for (ConnId c : h->second.waiters) {
    acks.conns.push_back(c);
    if (auto u = unacked_.find(c); u != unacked_.end() && --u->second == 0) unacked_.erase(u);
  }
  held_.erase(h);
  return acks;
}

void BulkAckTracker::Remember(const Ulid& id) {
  if (!recent_.insert(id).second) return;
  recent_order_.push_back(id);
  if (recent_order_.size() > recent_commits_) {
    recent_.erase(recent_order_.front());
    recent_order_.pop_front();
  }
}

void BulkAckTracker::ForgetConn(ConnId conn) {
  for (auto& [id, h] : held_) h.waiters.erase(conn);
  unacked_.erase(conn);
}

size_t BulkAckTracker::unacked(ConnId conn) const {
  auto it = unacked_.find(conn);
  return it == unacked_.end() ? 0 : it->second;
}

}  // namespace oklog
