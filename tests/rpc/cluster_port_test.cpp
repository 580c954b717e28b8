// ClusterPort: both sides of the cluster port on one number, handed to their users; what each
// bad address or taken port gets. Real sockets on loopback.
#include "rpc/cluster_port.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <optional>

#include "common/metrics.h"
#include "rpc/rpc_client.h"
#include "rpc/rpc_server.h"
#include "loop_util.h"

namespace oklog::rpc {
namespace {

sockaddr_in Loopback(uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

uint16_t BoundPort(int fd) {
  sockaddr_in a{};
  socklen_t len = sizeof a;
  EXPECT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len), 0);
  return ntohs(a.sin_port);
}

// A socket of `type` bound to 127.0.0.1:port (0: any), listening for TCP.
UniqueFd Occupy(int type, uint16_t port) {
  UniqueFd fd(socket(AF_INET, type, 0));
  sockaddr_in a = Loopback(port);
  EXPECT_EQ(bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  if (type == SOCK_STREAM) {
    EXPECT_EQ(listen(fd.get(), 4), 0);
  }
  return fd;
}

bool CanBind(int type, uint16_t port) {
  UniqueFd fd(socket(AF_INET, type, 0));
  sockaddr_in a = Loopback(port);
  return bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
}

// A socket of `type` on a kernel-picked port whose other side (TCP for UDP, UDP for TCP) is
// free: the number the kernel picks for one protocol may be in use by the other elsewhere on
// the machine (another test's connection), which would make the wrong side fail.
UniqueFd OccupyWithOtherSideFree(int type, uint16_t* port) {
  const int other = type == SOCK_DGRAM ? SOCK_STREAM : SOCK_DGRAM;
  for (int i = 0; i < 100; ++i) {
    UniqueFd fd = Occupy(type, 0);
    *port = BoundPort(fd.get());
    if (CanBind(other, *port)) return fd;
  }
  ADD_FAILURE() << "no port with its other side free in 100 tries";
  return UniqueFd();
}

TEST(ClusterPortTest, PortZeroBindsBothSidesOnOneNumber) {
  auto p = ClusterPort::Bind(Address{"tcp", "127.0.0.1", 0});
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  ASSERT_NE(p->port(), 0);
  EXPECT_EQ(p->HostPort(), "127.0.0.1:" + std::to_string(p->port()));
  UniqueFd tcp = p->TakeTcp(), udp = p->TakeUdp();
  ASSERT_TRUE(tcp.valid());
  ASSERT_TRUE(udp.valid());
  EXPECT_EQ(BoundPort(tcp.get()), p->port());
  EXPECT_EQ(BoundPort(udp.get()), p->port());
  EXPECT_FALSE(p->TakeTcp().valid()) << "each side is handed over once";
  EXPECT_FALSE(p->TakeUdp().valid());
  // Both are really bound: nobody else gets either side of the number.
  EXPECT_FALSE(CanBind(SOCK_STREAM, p->port()));
  EXPECT_FALSE(CanBind(SOCK_DGRAM, p->port()));
}

TEST(ClusterPortTest, SidesNeverTakenAreClosedWithTheOwner) {
  uint16_t port = 0;
  {
    auto p = ClusterPort::Bind(Address{"tcp", "127.0.0.1", 0});
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    port = p->port();
  }
  EXPECT_TRUE(CanBind(SOCK_DGRAM, port));
  EXPECT_TRUE(CanBind(SOCK_STREAM, port));
}

TEST(ClusterPortTest, AnExplicitPortWhoseUdpSideIsTakenIsAnErrorThatLeavesNothingBound) {
  uint16_t port = 0;
  UniqueFd squatter = OccupyWithOtherSideFree(SOCK_DGRAM, &port);
  auto p = ClusterPort::Bind(Address{"tcp", "127.0.0.1", port});
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), Code::kIOError);
  EXPECT_NE(p.status().message().find("UDP side"), std::string::npos) << p.status().ToString();
  EXPECT_NE(p.status().message().find(std::to_string(port)), std::string::npos) << p.status().ToString();
  EXPECT_TRUE(CanBind(SOCK_STREAM, port)) << "the TCP side it bound first was closed again";
}

TEST(ClusterPortTest, AnExplicitPortWhoseTcpSideIsTakenIsAnError) {
  uint16_t port = 0;
  UniqueFd squatter = OccupyWithOtherSideFree(SOCK_STREAM, &port);
  auto p = ClusterPort::Bind(Address{"tcp", "127.0.0.1", port});
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), Code::kIOError);
  EXPECT_NE(p.status().message().find("TCP side"), std::string::npos) << p.status().ToString();
  EXPECT_TRUE(CanBind(SOCK_DGRAM, port));
}

TEST(ClusterPortTest, ANameOrGarbageHostIsInvalidArgument) {
  for (const char* host : {"localhost", "not an ip", "300.1.1.1"}) {
    auto p = ClusterPort::Bind(Address{"tcp", host, 0});
    ASSERT_FALSE(p.ok()) << host;
    EXPECT_EQ(p.status().code(), Code::kInvalidArgument) << host;
  }
}

TEST(ClusterPortTest, AnEmptyHostIsTheIpv4Wildcard) {
  auto p = ClusterPort::Bind(Address{"tcp", "", 0});
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->host(), "0.0.0.0");
}

// The handed-over sides work: the RPC server answers calls on the TCP side, and datagrams sent
// to the number arrive on the UDP side.
TEST(ClusterPortTest, TheRpcServerServesTheTcpSideAndTheUdpSideReceives) {
  uv_loop_t loop;
  ASSERT_EQ(uv_loop_init(&loop), 0);
  Registry metrics;
  auto p = ClusterPort::Bind(Address{"tcp", "127.0.0.1", 0});
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  auto server = RpcServer::Create(&loop, {"test", "server"}, &metrics);
  ASSERT_TRUE(server->Listen(p->TakeTcp()).ok());
  EXPECT_EQ(server->port(), p->port());
  server->Handle("echo", [](std::shared_ptr<ServerCall> c) { c->Respond(Status::Ok(), c->body()); });
  auto client = RpcClient::Create(&loop, {"test", "client"}, &metrics);
  std::optional<Result<std::string>> out;
  client->Call(p->HostPort(), "echo", "over the cluster port", Duration(2000),
               [&](Result<std::string> r) { out = std::move(r); });
  ASSERT_TRUE(RunLoopUntil(&loop, [&] { return out.has_value(); }, 5000, 5));
  ASSERT_TRUE(out->ok()) << out->status().ToString();
  EXPECT_EQ(**out, "over the cluster port");

  UniqueFd udp = p->TakeUdp();
  UniqueFd sender(socket(AF_INET, SOCK_DGRAM, 0));
  sockaddr_in to = Loopback(p->port());
  ASSERT_EQ(sendto(sender.get(), "ping", 4, 0, reinterpret_cast<sockaddr*>(&to), sizeof to), 4);
  pollfd pfd{udp.get(), POLLIN, 0};
  ASSERT_EQ(poll(&pfd, 1, 5000), 1);
  char buf[8];
  EXPECT_EQ(recv(udp.get(), buf, sizeof buf, 0), 4);

  client->Close();
  server->Close();
  RunLoopUntil(&loop, [&] { return server->done(); }, 2000, 5);
  client.reset();
  server.reset();
  uv_run(&loop, UV_RUN_DEFAULT);
  EXPECT_EQ(uv_loop_close(&loop), 0);
}

// A descriptor libuv cannot serve (a datagram socket) is an error, and the listener closes it.
TEST(ClusterPortTest, ListeningOnASocketThatCannotListenIsAnError) {
  uv_loop_t loop;
  ASSERT_EQ(uv_loop_init(&loop), 0);
  Registry metrics;
  UniqueFd udp = Occupy(SOCK_DGRAM, 0);
  const uint16_t port = BoundPort(udp.get());
  auto server = RpcServer::Create(&loop, {"test", "server"}, &metrics);
  Status s = server->Listen(std::move(udp));
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), Code::kIOError) << s.ToString();
  server->Close();
  RunLoopUntil(&loop, [&] { return server->done(); }, 2000, 5);
  server.reset();
  uv_run(&loop, UV_RUN_DEFAULT);
  EXPECT_EQ(uv_loop_close(&loop), 0);
  EXPECT_TRUE(CanBind(SOCK_DGRAM, port)) << "the refused descriptor was closed";
}

}  // namespace
}  // namespace oklog::rpc
