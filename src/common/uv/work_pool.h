// WorkPool: a small fixed pool of threads of its own for blocking disk work (write, fsync,
// rename), so a slow disk never takes a slot of libuv's shared uv_queue_work pool (4 threads
// for DNS, file system requests and everything else) and cannot starve it or be starved by it.
// Each job's `work` runs on a pool thread; its `after` then runs on the loop thread, posted
// back through a LoopPoster (CONVENTIONS habit 10: a job struct out, the after-work callback
// back).
//
// Order: jobs start in submission order; with more than one thread they may finish in any
// order, so work that must be ordered is submitted by one owner one job at a time.
// Thread: Create, Submit, Close and destruction on the loop thread.
// Lifetime: Close() refuses new jobs, runs `after(Cancelled)` for jobs not yet started, waits
// for running ones (blocking the loop for at most one job per thread: the owner waits for its
// own jobs before closing), runs their afters, and closes the poster. Every `after` runs exactly
// once, on the loop thread. Run the loop until done() before uv_loop_close(). Not to be
// destroyed from inside one of its own after-callbacks (others of the same drain may follow):
// close it there and destroy it later.
#pragma once

#include <uv.h>

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/status.h"
#include "common/uv/loop_poster.h"

namespace oklog {

class WorkPool {
 public:
  // `work` runs on a pool thread; `after` on the loop thread with Ok, or Cancelled when the
  // pool closed before `work` started (then `work` never runs).
  using Work = std::function<void()>;
  using After = std::function<void(Status)>;

  // IOError when the loop poster cannot be made. threads >= 1; name shows in logs.
  static Result<std::unique_ptr<WorkPool>> Create(uv_loop_t* loop, size_t threads, std::string name);
  ~WorkPool();
  WorkPool(const WorkPool&) = delete;
  WorkPool& operator=(const WorkPool&) = delete;

  // Queues a job. False once closing: nothing was queued and neither callback will run.
  bool Submit(Work work, After after);
  void Close();
  bool done() const { return poster_->done(); }
  size_t threads() const { return threads_.size(); }
  // Jobs submitted whose `after` has not run yet.
  size_t in_flight() const { return in_flight_; }

 private:
  struct Job {
    Work work;
    After after;
  };
  WorkPool() = default;
  void Run();

  std::unique_ptr<LoopPoster> poster_;
  std::string name_;
  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> queue_;
  bool closing_ = false;  // under mu_
  size_t in_flight_ = 0;  // loop thread only
};

}  // namespace oklog
