// The dissemination queue: membership news waiting to be piggybacked on outgoing packets.
// At most one message per node name (newer news about a node invalidates older); each
// inclusion in a packet counts one transmit; a message is dropped after `limit` transmits.
// Messages sent fewest times go first, and among equals the newest. Loop thread only.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <tuple>

#include "gossip/types.h"
#include "gossip/wire.h"

namespace oklog::gossip {

class BroadcastQueue {
 public:
  // Queues an encoded message about `about`, replacing any queued message about that node.
  void Push(const NodeName& about, std::string encoded);
  // Appends queued messages to the packet while they fit. Returns how many were added.
  size_t Fill(PacketBuilder* packet, int transmit_limit);
  bool Contains(const NodeName& about) const { return items_.count(about) > 0; }
  size_t size() const { return items_.size(); }
  bool empty() const { return items_.empty(); }
  void Clear();

 private:
  struct Item {
    std::string encoded;
    int transmits = 0;
    uint64_t id = 0;
  };
  // (transmits, newest first, name)
  using Key = std::tuple<int, uint64_t, NodeName>;
  static Key KeyOf(const NodeName& about, const Item& it) { return {it.transmits, ~it.id, about}; }
  std::map<NodeName, Item> items_;
  std::set<Key> order_;
  uint64_t next_id_ = 0;
};

}  // namespace oklog::gossip
