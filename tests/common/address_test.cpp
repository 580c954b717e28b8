#include "common/address.h"

#include <gtest/gtest.h>

namespace oklog {
namespace {

TEST(AddressTest, AcceptsEveryOkLogFormAndIpPort) {
  struct Case { const char* in; const char* scheme; const char* host; uint16_t port; };
  Case cases[] = {
      {"localhost", "tcp", "localhost", 7651},
      {"localhost:1234", "tcp", "localhost", 1234},
      {"tcp://host", "tcp", "host", 7651},
      {"tcp://0.0.0.0:7650", "tcp", "0.0.0.0", 7650},
      {"1.2.3.4", "tcp", "1.2.3.4", 7651},
      {"1.2.3.4:99", "tcp", "1.2.3.4", 99},  // OK Log rejected this one
      {"[::1]:99", "tcp", "::1", 99},
      {"::1", "tcp", "::1", 7651},
      {"tcp+dns://logs.internal:7651", "tcp+dns", "logs.internal", 7651},
      {"TCP://Host:5", "tcp", "Host", 5},
  };
  for (const auto& c : cases) {
    auto a = ParseAddress(c.in, 7651);
    ASSERT_TRUE(a.ok()) << c.in << " " << a.status().ToString();
    EXPECT_EQ(a->scheme, c.scheme) << c.in;
    EXPECT_EQ(a->host, c.host) << c.in;
    EXPECT_EQ(a->port, c.port) << c.in;
  }
}

TEST(AddressTest, RejectsGarbageWithAMessage) {
  for (const char* s : {"", "host:", "host:99999", "host:12ab", "[::1", "gopher://x", "a b:1", "::zz"}) {
    auto a = ParseAddress(s, 1);
    EXPECT_FALSE(a.ok()) << s;
    if (!a.ok()) {
      EXPECT_NE(a.status().message().find("bad address"), std::string::npos);
    }
  }
}

TEST(AddressTest, HostPortBracketsIpv6) {
  EXPECT_EQ(ParseAddress("[::1]:5", 1)->HostPort(), "[::1]:5");
  EXPECT_EQ(ParseAddress("127.0.0.1:5", 1)->HostPort(), "127.0.0.1:5");
}

TEST(AddressTest, ResolvesLoopback) {
  auto r = Resolve(*ParseAddress("127.0.0.1:80", 1));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(SockaddrToString(reinterpret_cast<const sockaddr*>(&r->front())), "127.0.0.1:80");
}

TEST(AddressTest, IpLiteralTakesAddressesAndNeverResolvesNames) {
  sockaddr_storage ss;
  ASSERT_TRUE(IpLiteral(*ParseAddress("127.0.0.1:7659", 0), &ss));
  EXPECT_EQ(SockaddrToString(reinterpret_cast<const sockaddr*>(&ss)), "127.0.0.1:7659");
  ASSERT_TRUE(IpLiteral(*ParseAddress("[::1]:80", 0), &ss));
  EXPECT_EQ(SockaddrToString(reinterpret_cast<const sockaddr*>(&ss)), "[::1]:80");
  EXPECT_FALSE(IpLiteral(*ParseAddress("localhost:80", 0), &ss));
  EXPECT_FALSE(IpLiteral(*ParseAddress("999.1.1.1:80", 0), &ss));
}

}  // namespace
}  // namespace oklog
