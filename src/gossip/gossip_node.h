// GossipNode: cluster membership for one oklog node. Drives a Membership with a libuv UDP
// socket (probes and gossip) and a StreamTransport (push/pull and the fallback probe; the node
// carries them over the cluster RPC on the same port's TCP side), keeps a PeerView current and
// exports oklog_gossip_* metrics.
//
// Thread: loop thread only; create, call and destroy it on the thread running `loop`.
// Lifetime: Close() closes every handle; run the loop until done() before uv_loop_close().
// Destroying the object without Close() closes it too (handle memory is freed in the close
// callbacks, which no longer touch this object).
#pragma once

#include <uv.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "common/unique_fd.h"
#include "gossip/config.h"
#include "gossip/node_meta.h"
#include "gossip/peer_view.h"
#include "gossip/transport.h"

namespace oklog {
class Registry;
namespace crypto {
class PacketSealer;
}
}  // namespace oklog

namespace oklog::gossip {

class Membership;

class GossipNode {
 public:
  struct Options {
    NodeName name;                         // default: the advertise address
    std::string bind_addr = "0.0.0.0:7659";  // UDP and TCP; port 0 picks a free port
    // Default: the bind address; when bound to a wildcard, the first non-loopback IPv4
    // interface (InvalidArgument when there is none: give one explicitly).
    std::string advertise_addr;
    std::vector<std::string> seeds;  // "host[:port]" (default port 7659), resolved at every try
    std::string cluster_name = "oklog";
    Preset preset = Preset::kLan;
    NodeMeta meta;
    Duration leave_timeout{5000};
    std::function<void(Config&)> tweak;  // tests and tools: adjust the protocol config
    // Carries stream exchanges; must outlive Close(). Without one, streams are dropped and
    // counted (UDP gossip still works, joins do not).
    StreamTransport* streams = nullptr;
    // A datagram socket already bound to bind_addr (the cluster port's owner binds UDP and TCP
    // together and hands UDP here); the node owns it. Invalid: the node binds bind_addr itself.
    UniqueFd udp_fd;
    // Set (a cluster key file): every datagram is sealed with it, and one that does not open,
    // is stale or is a replay is dropped and counted in
    // oklog_gossip_packets_refused_total{reason}. Must outlive Close(). Null: the clear.
    crypto::PacketSealer* sealer = nullptr;
  };

  // Binds the UDP socket, or adopts options.udp_fd (port 0 picks one; the TCP side of the same
  // port is the transport's). Returns InvalidArgument for bad addresses or oversize metadata,
  // IOError when the port cannot be bound.
  static Result<std::unique_ptr<GossipNode>> Create(uv_loop_t* loop, Options options, Registry* metrics);
  ~GossipNode();
  GossipNode(const GossipNode&) = delete;
  GossipNode& operator=(const GossipNode&) = delete;

  // Starts receiving, probing, and joining the seeds (retried with backoff until one answers).
  void Start();
  // Broadcasts a graceful leave; `done` runs on the loop once it has been sent (or after
  // leave_timeout). `done` may call Close() but must not destroy this object.
  void Leave(std::function<void()> done);
  // Returns InvalidArgument when the metadata does not fit.
  Status UpdateMeta(const NodeMeta& meta);
  void Close();
  bool done() const;

  // The receiving side of an exchange (the transport's server calls it): one stream message from
  // `peer` in, the reply (maybe empty) out.
  std::string ServeStream(const std::string& peer, std::string_view body);

  PeerView& peer_view();
  std::string ClusterJson() const;  // the GET /cluster body
  const std::string& name() const;
  const std::string& advertise_addr() const;
  uint16_t port() const;
  const Membership& membership() const;

  struct Impl;

 private:
  explicit GossipNode(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace oklog::gossip
