// Listen and dial addresses (common/address.h): every -api, -cluster, -peer and forward target.
//   ParseAddress(text) ok  =>  ParseAddress(scheme "://" HostPort()) gives the same address
//   an IP literal          =>  SockaddrToString of it parses back to the same port
#include <string>

#include "common/address.h"
#include "fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const auto default_port = static_cast<uint16_t>((data[0] << 8) | data[1]);
  const std::string_view text(reinterpret_cast<const char*>(data) + 2, size - 2);
  auto a = oklog::ParseAddress(text, default_port);
  if (!a.ok()) return 0;
  const std::string hostport = a->HostPort();
  auto again = oklog::ParseAddress(a->scheme + "://" + hostport, 1);
  if (!again.ok()) std::fprintf(stderr, "\"%s\" printed as \"%s\" does not parse\n", std::string(text).c_str(), hostport.c_str());
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(again->scheme == a->scheme && again->host == a->host && again->port == a->port);
  FUZZ_CHECK(again->HostPort() == hostport);

  sockaddr_storage ss;
  if (oklog::IpLiteral(*a, &ss)) {
    const std::string printed = oklog::SockaddrToString(reinterpret_cast<const sockaddr*>(&ss));
    auto back = oklog::ParseAddress(printed, 0);
    FUZZ_CHECK(back.ok() && back->port == a->port);
    sockaddr_storage ss2;
    FUZZ_CHECK(oklog::IpLiteral(*back, &ss2));
    FUZZ_CHECK(oklog::SockaddrToString(reinterpret_cast<const sockaddr*>(&ss2)) == printed);
  }
  return 0;
}
