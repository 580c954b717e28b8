// A fixed set of worker threads for query scanning. Jobs must be short and must never block
// (one block read + match each), so one slow client cannot hold a worker: everything that
// waits (merging, flow control) runs on the query's own driver thread instead.
// Thread-safe. The destructor drops jobs not yet started and joins the workers; a job that
// outlives its query must therefore own (shared_ptr) what it touches.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace oklog {

class ScanPool {
 public:
  // threads == 0: one per core.
  explicit ScanPool(size_t threads);
  ~ScanPool();
  ScanPool(const ScanPool&) = delete;
  ScanPool& operator=(const ScanPool&) = delete;

  void Submit(std::function<void()> job);
  size_t threads() const { return workers_.size(); }

 private:
  void Work();
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace oklog
