// The stream half of gossip's transport (memberlist's Transport is the model): one
// request/response exchange with a peer, for push/pull state syncs and the TCP fallback probe.
// Gossip declares it and knows nothing of what carries it; the node implements it with the
// cluster RPC (src/node.cpp: the method "gossip" on the cluster port, whose server side calls
// GossipNode::ServeStream), and tests with an in-memory transport. UDP packets stay with
// GossipNode's own socket.
#pragma once

#include <functional>
#include <string>

#include "common/status.h"
#include "gossip/types.h"

namespace oklog::gossip {

class StreamTransport {
 public:
  virtual ~StreamTransport() = default;
  using Done = std::function<void(Result<std::string> reply)>;
  // Sends `body` to `addr` ("host:port"; a seed may be a name, resolved at every call) and calls
  // done exactly once on the loop thread with the peer's reply (maybe empty) or the failure,
  // within about `timeout`. done may run before Exchange returns only with a failure.
  virtual void Exchange(const std::string& addr, std::string body, Duration timeout, Done done) = 0;
};

}  // namespace oklog::gossip
