#include "rpc/cluster_port.h"

#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

namespace oklog::rpc {
namespace {

socklen_t SockLen(const sockaddr_storage& ss) {
  return ss.ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
}

void SetPort(sockaddr_storage* ss, uint16_t port) {
  if (ss->ss_family == AF_INET6)
    reinterpret_cast<sockaddr_in6*>(ss)->sin6_port = htons(port);
  else
    reinterpret_cast<sockaddr_in*>(ss)->sin_port = htons(port);
}

uint16_t PortOf(const sockaddr_storage& ss) {
  return ntohs(ss.ss_family == AF_INET6 ? reinterpret_cast<const sockaddr_in6&>(ss).sin6_port
                                        : reinterpret_cast<const sockaddr_in&>(ss).sin_port);
}

// A socket of `type` bound to ss (listening, for TCP); errno is kept on failure.
Result<UniqueFd> Open(const sockaddr_storage& ss, int type, const char* what) {
  UniqueFd fd(socket(ss.ss_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return Status::IOError(std::string(what) + ": socket: " + std::strerror(errno));
  if (type == SOCK_STREAM) {
    // As libuv's uv_tcp_bind: a restarted node rebinds its port while old connections linger.
    int one = 1;
    setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  }
  if (bind(fd.get(), reinterpret_cast<const sockaddr*>(&ss), SockLen(ss)) != 0)
    return Status::IOError(std::string(what) + ": " + std::strerror(errno));
  if (type == SOCK_STREAM && listen(fd.get(), ClusterPort::kBacklog) != 0)
    return Status::IOError(std::string(what) + ": listen: " + std::strerror(errno));
  return fd;
}

}  // namespace

Result<ClusterPort> ClusterPort::Bind(const Address& addr, int attempts) {
  sockaddr_storage want{};
  Address literal = addr;
  if (literal.host.empty()) literal.host = "0.0.0.0";
  if (!IpLiteral(literal, &want))
    return Status::InvalidArgument("cluster port: the address must be an IP literal: " + addr.HostPort());
  const std::string where = "cluster port " + addr.HostPort();
  Status last = Status::IOError(where + ": not tried");
  for (int attempt = 0; attempt < (addr.port == 0 ? attempts : 1); ++attempt) {
    sockaddr_storage ss = want;
    Result<UniqueFd> tcp = Open(ss, SOCK_STREAM, "TCP side");
    if (!tcp.ok()) return Status::IOError(where + ": " + tcp.status().message());
    socklen_t len = sizeof ss;
    if (getsockname(tcp->get(), reinterpret_cast<sockaddr*>(&ss), &len) != 0)
      return Status::IOError(where + ": getsockname: " + std::strerror(errno));
    const uint16_t port = PortOf(ss);
    SetPort(&ss, port);
    Result<UniqueFd> udp = Open(ss, SOCK_DGRAM, "UDP side");
    if (udp.ok()) {
      ClusterPort p;
      p.host_ = literal.host;
      p.port_ = port;
      p.tcp_ = std::move(tcp).value();
      p.udp_ = std::move(udp).value();
      return p;
    }
    // Port 0: the kernel's TCP port is taken for UDP; both close here and another is tried.
    last = Status::IOError(where + ": " + udp.status().message() + " (port " + std::to_string(port) + ")");
  }
  return last;
}

}  // namespace oklog::rpc
