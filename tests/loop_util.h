// Driving a libuv loop from a test's own thread, or on a thread of its own (LoopThread).
#pragma once

#include <gtest/gtest.h>
#include <uv.h>

#include <chrono>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <thread>

namespace oklog {

// Runs the loop until pred() holds or timeout_ms of real time pass; a ticker (tick_ms) keeps it
// waking to check. Returns pred()'s last value.
inline bool RunLoopUntil(uv_loop_t* loop, const std::function<bool()>& pred, int timeout_ms, int tick_ms) {
  uv_timer_t tick;
  uv_timer_init(loop, &tick);
  uv_timer_start(&tick, [](uv_timer_t*) {}, static_cast<uint64_t>(tick_ms), static_cast<uint64_t>(tick_ms));
  auto start = std::chrono::steady_clock::now();
  bool ok = pred();
  while (!ok && std::chrono::steady_clock::now() - start < std::chrono::milliseconds(timeout_ms)) {
    uv_run(loop, UV_RUN_ONCE);
    ok = pred();
  }
  uv_close(reinterpret_cast<uv_handle_t*>(&tick), nullptr);
  uv_run(loop, UV_RUN_NOWAIT);
  return ok;
}

namespace testing {

// A libuv loop on its own thread with a locked queue of closures (posted with uv_async_send).
class LoopThread {
 public:
  LoopThread() {
    uv_loop_init(&loop_);
    uv_async_init(&loop_, &async_, OnAsync);
    async_.data = this;
  }
  ~LoopThread() { Stop(); }
  LoopThread(const LoopThread&) = delete;
  LoopThread& operator=(const LoopThread&) = delete;

  uv_loop_t* loop() { return &loop_; }
  void Start() {
    thread_ = std::thread([this] { uv_run(&loop_, UV_RUN_DEFAULT); });
  }
  void Post(std::function<void()> fn) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.push_back(std::move(fn));
    }
    uv_async_send(&async_);
  }
  // Runs fn on the loop thread and waits for it.
  template <typename F>
  auto Run(F fn) -> decltype(fn()) {
    std::packaged_task<decltype(fn())()> task(std::move(fn));
    auto fut = task.get_future();
    Post([&task] { task(); });
    return fut.get();
  }
  // Runs `before_close` on the loop, closes the async handle, waits for the loop to end, and
  // checks that every handle was closed.
  void Stop(std::function<void()> before_close = nullptr) {
    if (stopped_) return;
    stopped_ = true;
    Post([this, before_close] {
      if (before_close) before_close();
      uv_close(reinterpret_cast<uv_handle_t*>(&async_), nullptr);
    });
    if (thread_.joinable()) thread_.join();
    EXPECT_EQ(uv_loop_close(&loop_), 0) << "a handle was left open";
  }

 private:
  static void OnAsync(uv_async_t* a) noexcept {
    auto* self = static_cast<LoopThread*>(a->data);
    std::deque<std::function<void()>> q;
    {
      std::lock_guard<std::mutex> lock(self->mu_);
      q.swap(self->queue_);
    }
    for (auto& fn : q) fn();
  }

  uv_loop_t loop_;
  uv_async_t async_;
  std::thread thread_;
  std::mutex mu_;
  std::deque<std::function<void()>> queue_;
  bool stopped_ = false;
};

}  // namespace testing

}  // namespace oklog
