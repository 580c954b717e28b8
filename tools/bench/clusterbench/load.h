// Feeding running `oklog forward` processes from the benchmark: each forwarder reads a FIFO
// whose write end the benchmark holds, so lines can be paced (background load, markers).
// One thread per FifoForwarder writer at a time; the owner stops it from its own thread.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "tools/bench/process.h"

namespace oklog::bench {

// `oklog forward 127.0.0.1:port` reading the FIFO path (created here).
class FifoForwarder {
 public:
  // nullopt when the FIFO, the process or the open of the write end failed (within 5 s).
  static std::unique_ptr<FifoForwarder> Start(const std::string& oklog, const std::string& fifo_path, int fast_port,
                                              const std::string& log_prefix);
  ~FifoForwarder();
  // Writes all of data (blocking). false once a write failed (the forwarder went away).
  bool Write(std::string_view data);
  // Closes the write end: the forwarder sends what it has and exits. Waits up to timeout.
  ExitInfo Finish(std::chrono::milliseconds timeout);
  // Kills the forwarder (a blocked Write then fails with EPIPE).
  void Kill() { child_->Signal(9); }

 private:
  FifoForwarder() = default;
  std::optional<Child> child_;
  int fd_ = -1;
};

// Writes lines from a sample at a steady rate, split evenly over the forwarders, on its own
// thread, in 10 ms ticks.
class PacedLoad {
 public:
  PacedLoad(std::vector<FifoForwarder*> targets, std::string sample, double records_per_s);
  ~PacedLoad();
  // Stops the thread (if a write is blocked, kill the forwarders first). Returns lines written.
  uint64_t Stop();
  double seconds() const { return seconds_; }

 private:
  void Run();
  std::vector<FifoForwarder*> targets_;
  std::string sample_;                 // whole lines
  std::vector<size_t> line_starts_;    // offsets of each line in sample_
  double records_per_s_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> lines_{0};
  double seconds_ = 0;
  std::thread thread_;
};

}  // namespace oklog::bench
