// WorkPool with real threads and a real loop: work runs off the loop thread and its after runs
// on it; Close waits for running work, cancels queued work and refuses new work.
#include "common/uv/work_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <thread>

#include "loop_util.h"

namespace oklog {
namespace {

// Runs the loop until pred() or 10 s; returns pred().
bool RunUntil(uv_loop_t* loop, const std::function<bool()>& pred) { return RunLoopUntil(loop, pred, 10000, 1); }

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
