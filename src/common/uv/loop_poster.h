// LoopPoster: the one way plain threads hand work to the loop (CONVENTIONS habit 10): a locked
// queue of jobs and one uv_async_t. Sends coalesce; the loop takes the whole queue under the
// lock and runs it outside the lock, in posting order (libuv's own uv__work_done shape).
//
// Thread: Create, Close and destruction on the loop thread; Post from any thread.
// Lifetime: Close() refuses new jobs, runs the queued ones with run=false so their owners can
// fail them (a promise set to Cancelled, an event dropped), and closes the handle, whose memory
// is freed in its close callback; run the loop until done() before uv_loop_close().
#pragma once

#include <uv.h>

#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "common/status.h"

namespace oklog {

class LoopPoster {
 public:
  using Job = std::function<void(bool run)>;
  // IOError when the async handle cannot be made (out of descriptors).
  static Result<std::unique_ptr<LoopPoster>> Create(uv_loop_t* loop);
  ~LoopPoster();
  LoopPoster(const LoopPoster&) = delete;
  LoopPoster& operator=(const LoopPoster&) = delete;

  // Queues job and wakes the loop. False once closed: the job was not taken (and not run).
  bool Post(Job job);
  void Close();
  bool done() const { return box_ == nullptr; }  // closed and the close callback ran

 private:
  struct Box;
  LoopPoster() = default;
  static void OnAsync(uv_async_t* a) noexcept;

  Box* box_ = nullptr;  // freed in its close callback
  std::mutex mu_;
  bool closed_ = false;
  std::vector<Job> jobs_;
};

}  // namespace oklog
