// TcpListener on real sockets (127.0.0.1, port 0): the bound port is reported and connections
// are accepted; a port in use and an unresolvable host are errors that leave nothing open.
#include "common/uv/tcp_listener.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "loop_util.h"
#include "test_util.h"

namespace oklog {
namespace {

// Runs the loop until pred() or 10 s; returns pred().
bool RunUntil(uv_loop_t* loop, const std::function<bool()>& pred) { return RunLoopUntil(loop, pred, 10000, 1); }

struct Accepted {
  std::vector<std::unique_ptr<UvHandle<uv_tcp_t>>> clients;
  int errors = 0;
};

// An on_connection that accepts every connection into acc (failed accepts counted).
TcpListener::OnConnection AcceptInto(uv_loop_t* loop, Accepted* acc) {
  return [loop, acc](TcpListener* self, int status) {
    if (status < 0) return void(++acc->errors);
    auto c = std::make_unique<UvHandle<uv_tcp_t>>();
    ASSERT_EQ(c->Init(nullptr, [loop](uv_tcp_t* t) { return uv_tcp_init(loop, t); }), 0);
    ASSERT_EQ(self->Accept(c->stream()), 0);
    acc->clients.push_back(std::move(c));
  };
}

TEST(TcpListenerTest, PortZeroBindsAFreePortReportsItAndAcceptsConnections) {
  uv_loop_t loop;
  ASSERT_EQ(uv_loop_init(&loop), 0);
  Accepted acc;
  auto l = TcpListener::Create(&loop, *ParseAddress("127.0.0.1:0", 0), AcceptInto(&loop, &acc));
  ASSERT_TRUE(l.ok()) << l.status().ToString();
  const uint16_t port = (*l)->port();
  EXPECT_NE(port, 0);
  EXPECT_EQ((*l)->bound(), "127.0.0.1:" + std::to_string(port));
  int a = ConnectLoopback(port), b = ConnectLoopback(port);
  ASSERT_GE(a, 0);
  ASSERT_GE(b, 0);
  EXPECT_TRUE(RunUntil(&loop, [&] { return acc.clients.size() == 2; }));
  EXPECT_EQ(acc.errors, 0);
  ::close(a);
  ::close(b);
  bool closed = false;
  (*l)->Close([&] { closed = true; });
  for (auto& c : acc.clients) c->Close();
  uv_run(&loop, UV_RUN_DEFAULT);
  EXPECT_TRUE(closed);
  EXPECT_TRUE((*l)->done());
  EXPECT_LT(ConnectLoopback(port), 0) << "still listening after Close";
  EXPECT_EQ(uv_loop_close(&loop), 0);
}

TEST(TcpListenerTest, AtItsCapAConnectionIsClosedAtOnceUntilOneOfTheOpenOnesCloses) {
  uv_loop_t loop;
  ASSERT_EQ(uv_loop_init(&loop), 0);
  Accepted acc;
  int shed = 0;
  auto l = TcpListener::Create(&loop, *ParseAddress("127.0.0.1:0", 0), AcceptInto(&loop, &acc));
  ASSERT_TRUE(l.ok()) << l.status().ToString();
  (*l)->SetCap(2, [&] { return acc.clients.size(); }, [&] { ++shed; });
  const uint16_t port = (*l)->port();
  int a = ConnectLoopback(port), b = ConnectLoopback(port), c = ConnectLoopback(port);
  ASSERT_TRUE(RunUntil(&loop, [&] { return acc.clients.size() == 2 && shed == 1; }));
  // The third is closed by the listener: its reader sees EOF.
  char byte;
  EXPECT_EQ(::recv(c, &byte, 1, 0), 0);
  ::close(c);
  // One of the two closes; a new connection is taken again.
  acc.clients.back()->Close();
  acc.clients.pop_back();
  int d = ConnectLoopback(port);
  ASSERT_TRUE(RunUntil(&loop, [&] { return acc.clients.size() == 2; }));
  EXPECT_EQ(shed, 1);
  EXPECT_EQ(acc.errors, 0);
  for (int fd : {a, b, d}) ::close(fd);
  (*l)->Close();
  for (auto& h : acc.clients) h->Close();
  uv_run(&loop, UV_RUN_DEFAULT);
  EXPECT_EQ(uv_loop_close(&loop), 0);
}

TEST(TcpListenerTest, APortInUseIsAnIOErrorNamingTheAddressAndLeavesNothingOpen) {
  uv_loop_t loop;
  ASSERT_EQ(uv_loop_init(&loop), 0);
  auto first = TcpListener::Create(&loop, *ParseAddress("127.0.0.1:0", 0), [](TcpListener*, int) {});
  ASSERT_TRUE(first.ok());
  const std::string addr = "127.0.0.1:" + std::to_string((*first)->port());
  auto second = TcpListener::Create(&loop, *ParseAddress(addr, 0), [](TcpListener*, int) {});
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), Code::kIOError);
  EXPECT_NE(second.status().message().find("listening on " + addr), std::string::npos) << second.status().ToString();
  first->reset();  // destroyed while open: its handle closes in the loop run
  uv_run(&loop, UV_RUN_DEFAULT);
  EXPECT_EQ(uv_loop_close(&loop), 0);
}

TEST(TcpListenerTest, AnUnresolvableHostIsAnError) {
  uv_loop_t loop;
  ASSERT_EQ(uv_loop_init(&loop), 0);
  Address bad;
  bad.host = "no-such-host.invalid";
  auto l = TcpListener::Create(&loop, bad, [](TcpListener*, int) {});
  EXPECT_FALSE(l.ok());
  uv_run(&loop, UV_RUN_DEFAULT);
  EXPECT_EQ(uv_loop_close(&loop), 0);
}

}  // namespace
}  // namespace oklog
