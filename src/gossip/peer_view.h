// PeerView: everything other modules know about the cluster. A snapshot of the members (by
// role, with their addresses) plus change notifications. GossipNode keeps it current; tests of
// other modules may build one by hand with Apply().
//
// Thread: loop thread only (the node's loop), like everything it describes. Snapshots are
// copies: they stay valid and unchanged after the view moves on. Listeners are called on the
// loop thread after the view has changed, in event order; a listener may unsubscribe itself.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "gossip/node_meta.h"
#include "gossip/types.h"

namespace oklog::gossip {

struct Peer {
  NodeName name;
  std::string addr;  // cluster address "host:port" (gossip and data-plane RPC)
  MemberState state = MemberState::kAlive;
  Incarnation incarnation = 0;
  NodeMeta meta;
  bool is_self = false;
  bool live() const { return state == MemberState::kAlive || state == MemberState::kSuspect; }
};

struct PeerEvent {
  MemberEvent::Kind kind;
  Peer peer;  // as it is after the change (a reaped peer as it was last)
};

class PeerView {
 public:
  explicit PeerView(NodeName self) : self_(std::move(self)) {}
  PeerView(const PeerView&) = delete;
  PeerView& operator=(const PeerView&) = delete;

  const NodeName& self_name() const { return self_; }
  // Live members (alive or suspect, self included) having `role`; every live member when role
  // is empty. Sorted by name.
  std::vector<Peer> Live(std::string_view role = "") const;
  // Every known member, dead and left included, sorted by name.
  std::vector<Peer> All() const;
  // nullptr when unknown; valid until the next change.
  const Peer* Find(const NodeName& name) const;

  using Listener = std::function<void(const PeerEvent&)>;
  uint64_t Subscribe(Listener listener);
  void Unsubscribe(uint64_t id);

  // Applies one membership event (metadata bytes are decoded here; undecodable metadata leaves
  // the peer with empty metadata) and notifies listeners.
  void Apply(const MemberEvent& e);

 private:
  NodeName self_;
  std::map<NodeName, Peer> peers_;
  std::map<uint64_t, Listener> listeners_;
  uint64_t next_id_ = 1;
};

// The `GET /cluster` body:
// {"self": NAME, "members": [{"name","addr","state","incarnation","roles":[...],"api"}, ...]}
std::string ClusterJson(const PeerView& view);

}  // namespace oklog::gossip
