#include "common/address.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <uv.h>

#include <algorithm>
#include <cstring>

namespace oklog {
namespace {

bool ParsePort(std::string_view s, uint16_t* port) {
  if (s.empty() || s.size() > 5) return false;
  uint32_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<uint32_t>(c - '0');
  }
  if (v > 65535) return false;
  *port = static_cast<uint16_t>(v);
  return true;
}

bool ValidHost(std::string_view h) {
  for (char c : h) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '-' ||
              c == '_' || c == ':' || c == '%';
    if (!ok) return false;
  }
  return true;
}

}  // namespace

std::string Address::HostPort() const {
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

Result<Address> ParseAddress(std::string_view text, uint16_t default_port) {
  auto bad = [&](const char* why) {
    return Status::InvalidArgument("bad address \"" + std::string(text) + "\": " + why);
  };
  Address a;
  a.port = default_port;
  std::string_view s = text;
  if (s.empty()) return bad("empty");
  if (auto p = s.find("://"); p != std::string_view::npos) {
    a.scheme = std::string(s.substr(0, p));
    std::transform(a.scheme.begin(), a.scheme.end(), a.scheme.begin(), ::tolower);
    s.remove_prefix(p + 3);
    static const char* kSchemes[] = {"tcp", "tcp4", "tcp6", "udp", "udp4", "udp6", "tcp+dns", "tcp+dnsip", "http"};
    if (std::none_of(std::begin(kSchemes), std::end(kSchemes), [&](const char* k) { return a.scheme == k; }))
      return bad("unknown scheme");
    if (!s.empty() && s.back() == '/') s.remove_suffix(1);
  }
  if (s.empty()) return bad("no host");
  if (s.front() == '[') {
    auto close = s.find(']');
    if (close == std::string_view::npos) return bad("unclosed [");
    a.host = std::string(s.substr(1, close - 1));
    std::string_view rest = s.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':' || !ParsePort(rest.substr(1), &a.port)) return bad("bad port");
    }
  } else if (std::count(s.begin(), s.end(), ':') > 1) {
    a.host = std::string(s);  // a bare IPv6 literal such as ::1
    in6_addr tmp;
    if (inet_pton(AF_INET6, a.host.c_str(), &tmp) != 1) return bad("bad IPv6 address");
  } else if (auto c = s.rfind(':'); c != std::string_view::npos) {
    a.host = std::string(s.substr(0, c));
    if (!ParsePort(s.substr(c + 1), &a.port)) return bad("bad port");
  } else {
    a.host = std::string(s);
  }
  if (!ValidHost(a.host)) return bad("bad host");
  return a;
}

Result<std::vector<sockaddr_storage>> Resolve(const Address& addr) {
  std::vector<sockaddr_storage> out;
  std::string host = addr.host;
  if (host.empty()) host = "0.0.0.0";
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  if (addr.scheme == "tcp4" || addr.scheme == "udp4") hints.ai_family = AF_INET;
  if (addr.scheme == "tcp6" || addr.scheme == "udp6") hints.ai_family = AF_INET6;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  std::string port = std::to_string(addr.port);
  int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0) return Status::NotFound("resolving " + host + ": " + gai_strerror(rc));
  for (addrinfo* p = res; p; p = p->ai_next) {
    sockaddr_storage ss{};
    std::memcpy(&ss, p->ai_addr, p->ai_addrlen);
    out.push_back(ss);
  }
  freeaddrinfo(res);
  // Prefer IPv4 first: loopback names resolve to both, and our defaults listen on IPv4.
  std::stable_sort(out.begin(), out.end(),
                   [](const sockaddr_storage& x, const sockaddr_storage& y) { return x.ss_family < y.ss_family; });
  if (out.empty()) return Status::NotFound("resolving " + host + ": no address");
  return out;
}

bool IpLiteral(const Address& addr, sockaddr_storage* out) {
  std::memset(out, 0, sizeof *out);
  if (uv_ip4_addr(addr.host.c_str(), addr.port, reinterpret_cast<sockaddr_in*>(out)) == 0) return true;
  return uv_ip6_addr(addr.host.c_str(), addr.port, reinterpret_cast<sockaddr_in6*>(out)) == 0;
}

std::string SockaddrToString(const sockaddr* sa) {
  char buf[INET6_ADDRSTRLEN] = {0};
  if (sa->sa_family == AF_INET) {
    auto* in = reinterpret_cast<const sockaddr_in*>(sa);
    inet_ntop(AF_INET, &in->sin_addr, buf, sizeof buf);
    return std::string(buf) + ":" + std::to_string(ntohs(in->sin_port));
  }
  if (sa->sa_family == AF_INET6) {
    auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
    inet_ntop(AF_INET6, &in6->sin6_addr, buf, sizeof buf);
    return "[" + std::string(buf) + "]:" + std::to_string(ntohs(in6->sin6_port));
  }
  return "?";
}

}  // namespace oklog
