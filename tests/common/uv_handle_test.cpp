// UvHandle against a real loop: the close state machine (empty, open, closing, closed), the
// owner-gone rule, and an owner destroyed from its own close callback.
#include "common/uv/handle.h"

#include <gtest/gtest.h>

#include <memory>

namespace oklog {
namespace {

using State = UvHandle<uv_timer_t>::State;

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

}  // namespace
}  // namespace oklog
