// UvHandle, TcpListener and WorkPool against a real loop, real sockets on 127.0.0.1 port 0 and
// real threads: the close state machine, the owner-gone rule, bind/listen/accept and its
// errors, and disk-style jobs coming back to the loop thread.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "common/uv/handle.h"
#include "common/uv/tcp_listener.h"
#include "common/uv/work_pool.h"

namespace oklog {
namespace {

using State = UvHandle<uv_timer_t>::State;

int Connect(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Runs the loop until pred() or 10 s; returns pred().
bool RunUntil(uv_loop_t* loop, const std::function<bool()>& pred) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!pred() && std::chrono::steady_clock::now() < deadline) {
    uv_run(loop, UV_RUN_NOWAIT);
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return pred();
}

// ---- UvHandle ----

TEST(UvHandleTest, StatesGoEmptyOpenClosingClosedAndTheCloseCallbackRuns) {
  uv_loop_t loop;
  ASSERT_EQ(uv_loop_init(&loop), 0);
  int owner = 0;
  UvHandle<uv_timer_t> t;
  EXPECT_EQ(t.state(), State::kEmpty);
  EXPECT_EQ(t.get(), nullptr);
  t.Close();  // nothing initialised: nothing to close
  EXPECT_EQ(t.state(), State::kEmpty);
  ASSERT_EQ(t.Init(&owner, [&](uv_timer_t* h) { return uv_timer_init(&loop, h); }), 0);
  EXPECT_EQ(t.state(), State::kOpen);
  EXPECT_EQ(UvHandle<uv_timer_t>::Data<int>(t.get()), &owner);
  EXPECT_EQ(t.Init(&owner, [&](uv_timer_t* h) { return uv_timer_init(&loop, h); }), UV_EINVAL);  // once only
  bool closed = false;
  t.Close([&] { closed = true; });
  EXPECT_EQ(t.state(), State::kClosing);
  EXPECT_EQ(UvHandle<uv_timer_t>::Data<int>(t.get()), nullptr) << "callbacks must see the owner gone once closing";
  t.Close([&] { ADD_FAILURE() << "a second Close must be a no-op"; });
  EXPECT_FALSE(closed);
  uv_run(&loop, UV_RUN_DEFAULT);
  EXPECT_TRUE(closed);
  EXPECT_EQ(t.state(), State::kClosed);
  EXPECT_EQ(t.get(), nullptr);
  EXPECT_EQ(uv_loop_close(&loop), 0);
}

TEST(UvHandleTest, FailedInitLeavesNothingToClose) {
  uv_loop_t loop;
  ASSERT_EQ(uv_loop_init(&loop), 0);
  UvHandle<uv_tcp_t> t;
  EXPECT_EQ(t.Init(nullptr, [](uv_tcp_t*) { return UV_EMFILE; }), UV_EMFILE);
  EXPECT_EQ(t.state(), UvHandle<uv_tcp_t>::State::kEmpty);
  EXPECT_EQ(t.get(), nullptr);
  EXPECT_EQ(uv_loop_close(&loop), 0);  // libuv never saw the handle
}

TEST(UvHandleTest, OwnerDestroyedWhileOpenOrClosingFreesTheHandleWithoutCallingBack) {
  uv_loop_t loop;
  ASSERT_EQ(uv_loop_init(&loop), 0);
  int fired = 0;
  {
    auto open = std::make_unique<UvHandle<uv_timer_t>>();
    ASSERT_EQ(open->Init(&fired, [&](uv_timer_t* h) { return uv_timer_init(&loop, h); }), 0);
    uv_timer_start(open->get(), [](uv_timer_t* h) { ++*UvHandle<uv_timer_t>::Data<int>(h); }, 0, 0);
    auto closing = std::make_unique<UvHandle<uv_timer_t>>();
    ASSERT_EQ(closing->Init(&fired, [&](uv_timer_t* h) { return uv_timer_init(&loop, h); }), 0);
    closing->Close([&] { ADD_FAILURE() << "on_closed ran after its owner died"; });
  }  // both owners die here; libuv still holds both handles
  uv_run(&loop, UV_RUN_DEFAULT);
  EXPECT_EQ(fired, 0);
  EXPECT_EQ(uv_loop_close(&loop), 0);  // both close callbacks ran and freed their boxes (ASan checks)
}

TEST(UvHandleTest, OnClosedMayDestroyTheOwner) {
  uv_loop_t loop;
  ASSERT_EQ(uv_loop_init(&loop), 0);
  auto h = std::make_unique<UvHandle<uv_async_t>>();
  ASSERT_EQ(h->Init(nullptr, [&](uv_async_t* a) { return uv_async_init(&loop, a, nullptr); }), 0);
  h->Close([&] { h.reset(); });
  uv_run(&loop, UV_RUN_DEFAULT);
  EXPECT_EQ(h, nullptr);
  EXPECT_EQ(uv_loop_close(&loop), 0);
}

// ---- TcpListener ----

struct Accepted {
  std::vector<std::unique_ptr<UvHandle<uv_tcp_t>>> clients;
  int errors = 0;
};

TEST(TcpListenerTest, PortZeroBindsAFreePortReportsItAndAcceptsConnections) {
  uv_loop_t loop;
  ASSERT_EQ(uv_loop_init(&loop), 0);
  Accepted acc;
  auto l = TcpListener::Create(&loop, *ParseAddress("127.0.0.1:0", 0), [&](TcpListener* self, int status) {
    if (status < 0) return void(++acc.errors);
    auto c = std::make_unique<UvHandle<uv_tcp_t>>();
    ASSERT_EQ(c->Init(nullptr, [&](uv_tcp_t* t) { return uv_tcp_init(&loop, t); }), 0);
    ASSERT_EQ(self->Accept(c->stream()), 0);
    acc.clients.push_back(std::move(c));
  });
  ASSERT_TRUE(l.ok()) << l.status().ToString();
  const uint16_t port = (*l)->port();
  EXPECT_NE(port, 0);
  EXPECT_EQ((*l)->bound(), "127.0.0.1:" + std::to_string(port));
  int a = Connect(port), b = Connect(port);
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
  EXPECT_LT(Connect(port), 0) << "still listening after Close";
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

// ---- WorkPool ----

TEST(WorkPoolTest, WorkRunsOffTheLoopThreadAndAfterRunsOnIt) {
  uv_loop_t loop;
  ASSERT_EQ(uv_loop_init(&loop), 0);
  auto p = WorkPool::Create(&loop, 2, "test");
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  WorkPool* pool = p->get();
  const std::thread::id loop_id = std::this_thread::get_id();
  constexpr int kJobs = 200;
  std::atomic<int> on_loop{0};
  int afters = 0, after_off_loop = 0;
  for (int i = 0; i < kJobs; ++i)
    ASSERT_TRUE(pool->Submit([&] { on_loop += std::this_thread::get_id() == loop_id; },
                             [&](Status s) {
                               EXPECT_TRUE(s.ok()) << s.ToString();
                               after_off_loop += std::this_thread::get_id() != loop_id;
                               ++afters;
                             }));
  EXPECT_EQ(pool->in_flight(), static_cast<size_t>(kJobs));
  EXPECT_TRUE(RunUntil(&loop, [&] { return afters == kJobs; }));
  EXPECT_EQ(on_loop.load(), 0);
  EXPECT_EQ(after_off_loop, 0);
  EXPECT_EQ(pool->in_flight(), 0u);
  pool->Close();
  uv_run(&loop, UV_RUN_DEFAULT);
  EXPECT_TRUE(pool->done());
  EXPECT_EQ(uv_loop_close(&loop), 0);
}

TEST(WorkPoolTest, CloseWaitsForRunningWorkCancelsQueuedWorkAndRefusesNewWork) {
  uv_loop_t loop;
  ASSERT_EQ(uv_loop_init(&loop), 0);
  auto p = WorkPool::Create(&loop, 1, "test");
  ASSERT_TRUE(p.ok());
  WorkPool* pool = p->get();
  std::atomic<bool> started{false}, release{false};
  bool first_ok = false, first_work_done = false;
  Status second = Status::Ok();
  bool second_ran = false;
  ASSERT_TRUE(pool->Submit(
      [&] {
        started = true;
        while (!release) std::this_thread::sleep_for(std::chrono::milliseconds(1));
        first_work_done = true;
      },
      [&](Status s) { first_ok = s.ok(); }));
  ASSERT_TRUE(pool->Submit([&] { second_ran = true; }, [&](Status s) { second = s; }));
  while (!started) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  std::thread releaser([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    release = true;
  });
  pool->Close();  // blocks until the running job ends
  releaser.join();
  EXPECT_TRUE(first_work_done);
  EXPECT_TRUE(first_ok) << "the running job's after must run, with Ok";
  EXPECT_FALSE(second_ran);
  EXPECT_EQ(second.code(), Code::kCancelled);
  EXPECT_EQ(pool->in_flight(), 0u);
  EXPECT_FALSE(pool->Submit([] { ADD_FAILURE(); }, [](Status) { ADD_FAILURE(); }));
  uv_run(&loop, UV_RUN_DEFAULT);
  EXPECT_TRUE(pool->done());
  p->reset();
  EXPECT_EQ(uv_loop_close(&loop), 0);
}

TEST(WorkPoolTest, DestroyingAnIdlePoolClosesItsHandle) {
  uv_loop_t loop;
  ASSERT_EQ(uv_loop_init(&loop), 0);
  {
    auto p = WorkPool::Create(&loop, 3, "test");
    ASSERT_TRUE(p.ok());
    EXPECT_EQ((*p)->threads(), 3u);
  }
  EXPECT_FALSE(WorkPool::Create(&loop, 0, "none").ok());
  uv_run(&loop, UV_RUN_DEFAULT);
  EXPECT_EQ(uv_loop_close(&loop), 0);
}

}  // namespace
}  // namespace oklog
