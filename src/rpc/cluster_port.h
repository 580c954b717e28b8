// ClusterPort: the one owner of a node's cluster port. Binds its two sockets on the same
// ip:port, a listening TCP socket (the RPC server's: segment.*, query.run, stream.open and
// gossip's push/pull) and a datagram socket (gossip's probes and broadcasts), then hands each
// to its user. With port 0 the kernel picks TCP's port and UDP binds the same number; when that
// UDP port is taken, both are closed and another is tried.
//
// Thread: any (plain sockets, no loop). The descriptors are non-blocking and close-on-exec; the
// ones never taken are closed by the destructor.
#pragma once

#include <cstdint>
#include <string>

#include "common/address.h"
#include "common/status.h"
#include "common/unique_fd.h"

namespace oklog::rpc {

class ClusterPort {
 public:
  static constexpr int kDefaultAttempts = 20;
  static constexpr int kBacklog = 128;

  // addr.host must be an IP literal ("" is the IPv4 wildcard). InvalidArgument for a name;
  // IOError "cluster port IP:PORT: TCP|UDP side: <reason>" when a side cannot be bound (a port
  // given explicitly is tried once; port 0 up to `attempts` times).
  static Result<ClusterPort> Bind(const Address& addr, int attempts = kDefaultAttempts);

  ClusterPort(ClusterPort&&) = default;
  ClusterPort& operator=(ClusterPort&&) = default;

  uint16_t port() const { return port_; }
  const std::string& host() const { return host_; }
  std::string HostPort() const { return Address{"tcp", host_, port_}.HostPort(); }
  // Each hands its socket over once (later calls return an invalid fd): a listening TCP socket
  // for RpcServer::Listen(UniqueFd), a bound datagram socket for GossipNode::Options::udp_fd.
  UniqueFd TakeTcp() { return std::move(tcp_); }
  UniqueFd TakeUdp() { return std::move(udp_); }

 private:
  ClusterPort() = default;
  std::string host_;
  uint16_t port_ = 0;
  UniqueFd tcp_;
  UniqueFd udp_;
};

}  // namespace oklog::rpc
