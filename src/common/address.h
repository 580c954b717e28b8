// Listen and dial addresses in every form OK Log accepted, plus the ones it rejected:
//   host  host:port  scheme://host  scheme://host:port  1.2.3.4  1.2.3.4:port  [::1]:port  ::1
// A missing port takes the default given by the caller. Schemes: tcp, tcp4, tcp6, udp, and
// OK Log's forwarder suffixes tcp+dns, tcp+dnsip (resolved at every attempt).
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace oklog {

struct Address {
  std::string scheme = "tcp";
  std::string host;  // without brackets; "" means every interface when listening
  uint16_t port = 0;
  // "host:port", bracketing IPv6 literals.
  std::string HostPort() const;
};

// Returns InvalidArgument naming the input when it is not an address.
Result<Address> ParseAddress(std::string_view text, uint16_t default_port);

// Resolves host (a name or a literal) with getaddrinfo; blocking. "" and "0.0.0.0" resolve to
// the IPv4 wildcard. Returns NotFound when nothing resolves.
Result<std::vector<sockaddr_storage>> Resolve(const Address& addr);
// The socket address of an IP literal (v4, or v6 with an optional zone) and its port; false for a
// name, which this never resolves (see Resolve).
bool IpLiteral(const Address& addr, sockaddr_storage* out);
// "ip:port" of a socket address, bracketing IPv6.
std::string SockaddrToString(const sockaddr* sa);

}  // namespace oklog
