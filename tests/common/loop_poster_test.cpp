// LoopPoster against a real loop: jobs from many threads all run on the loop thread, each
// thread's in its posting order; Close fails what is queued and refuses what comes after.
#include "common/uv/loop_poster.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

namespace oklog {
namespace {

TEST(LoopPosterTest, JobsFromManyThreadsRunOnTheLoopInEachThreadsOrder) {
  uv_loop_t loop;
  ASSERT_EQ(uv_loop_init(&loop), 0);
  auto p = LoopPoster::Create(&loop);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  LoopPoster* poster = p->get();
  constexpr int kThreads = 4, kJobs = 2000;
  std::vector<std::vector<int>> seen(kThreads);  // loop thread only
  std::atomic<int> ran{0}, wrong_thread{0};
  std::thread::id loop_id;
  std::thread loop_thread([&] {
    loop_id = std::this_thread::get_id();
    uv_run(&loop, UV_RUN_DEFAULT);
  });
  std::vector<std::thread> posters;
  for (int t = 0; t < kThreads; ++t)
    posters.emplace_back([&, t] {
      for (int i = 0; i < kJobs; ++i)
        ASSERT_TRUE(poster->Post([&, t, i](bool run) {
          if (!run) return;
          if (std::this_thread::get_id() != loop_id) ++wrong_thread;
          seen[t].push_back(i);
          ++ran;
        }));
    });
  for (auto& th : posters) th.join();
  // The last job closes the poster, on the loop, after everything before it ran.
  ASSERT_TRUE(poster->Post([&](bool) { poster->Close(); }));
  loop_thread.join();  // the loop ends once the poster's handle is closed
  EXPECT_TRUE(poster->done());
  EXPECT_EQ(ran.load(), kThreads * kJobs);
  EXPECT_EQ(wrong_thread.load(), 0);
  for (int t = 0; t < kThreads; ++t) {
    ASSERT_EQ(seen[t].size(), static_cast<size_t>(kJobs));
    for (int i = 0; i < kJobs; ++i) ASSERT_EQ(seen[t][static_cast<size_t>(i)], i) << "thread " << t;
  }
  EXPECT_EQ(uv_loop_close(&loop), 0);
}

TEST(LoopPosterTest, CloseFailsQueuedJobsAndRefusesLaterOnes) {
  uv_loop_t loop;
  ASSERT_EQ(uv_loop_init(&loop), 0);
  auto p = LoopPoster::Create(&loop);
  ASSERT_TRUE(p.ok());
  int ran = 0, failed = 0;
  for (int i = 0; i < 3; ++i) ASSERT_TRUE((*p)->Post([&](bool run) { (run ? ran : failed)++; }));
  (*p)->Close();  // before the loop ever ran them
  EXPECT_EQ(failed, 3);
  EXPECT_FALSE((*p)->Post([&](bool) { ++ran; }));
  EXPECT_FALSE((*p)->done());  // the close callback is still to come
  uv_run(&loop, UV_RUN_DEFAULT);
  EXPECT_TRUE((*p)->done());
  EXPECT_EQ(ran, 0);
  p->reset();
  EXPECT_EQ(uv_loop_close(&loop), 0);
}

TEST(LoopPosterTest, DestroyedBeforeItsCloseCallbackRanLeavesNothingBehind) {
  uv_loop_t loop;
  ASSERT_EQ(uv_loop_init(&loop), 0);
  {
    auto p = LoopPoster::Create(&loop);
    ASSERT_TRUE(p.ok());
  }  // destroyed: closes, the callback runs later and frees the handle
  uv_run(&loop, UV_RUN_DEFAULT);
  EXPECT_EQ(uv_loop_close(&loop), 0);
}

}  // namespace
}  // namespace oklog
