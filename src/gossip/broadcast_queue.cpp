#include "gossip/broadcast_queue.h"

#include <vector>

namespace oklog::gossip {

void BroadcastQueue::Push(const NodeName& about, std::string encoded) {
  auto it = items_.find(about);
  if (it != items_.end()) {
    order_.erase(KeyOf(about, it->second));
    items_.erase(it);
  }
  Item item{std::move(encoded), 0, next_id_++};
  order_.insert(KeyOf(about, item));
  items_.emplace(about, std::move(item));
}

size_t BroadcastQueue::Fill(PacketBuilder* packet, int transmit_limit) {
  // The smallest message we queue (an accusation with one-byte names) is larger than this, so
  // once less room is left there is no point scanning on; the miss cap bounds the scan in a
  // long queue of large messages.
  constexpr size_t kMinUseful = 12;
  constexpr int kMaxMisses = 32;
  std::vector<NodeName> sent;
  int misses = 0;
  for (const Key& k : order_) {
    if (packet->remaining() < kMinUseful || misses >= kMaxMisses) break;
    const NodeName& about = std::get<2>(k);
    if (packet->TryAdd(items_.at(about).encoded)) {
      sent.push_back(about);
    } else {
      ++misses;
    }
  }
  for (const NodeName& about : sent) {
    auto it = items_.find(about);
    order_.erase(KeyOf(about, it->second));
    if (++it->second.transmits >= transmit_limit) {
      items_.erase(it);
    } else {
      order_.insert(KeyOf(about, it->second));
    }
  }
  return sent.size();
}

void BroadcastQueue::Clear() {
  items_.clear();
  order_.clear();
}

}  // namespace oklog::gossip
