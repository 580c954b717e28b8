#include "tools/bench/clusterbench/load.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

#include "tools/bench/bench_util.h"

namespace oklog::bench {

using std::chrono::milliseconds;

std::unique_ptr<FifoForwarder> FifoForwarder::Start(const std::string& oklog, const std::string& fifo_path,
                                                    int fast_port, const std::string& log_prefix) {
  if (mkfifo(fifo_path.c_str(), 0600) != 0) {
    std::perror(fifo_path.c_str());
    return nullptr;
  }
  std::unique_ptr<FifoForwarder> f(new FifoForwarder);
  auto child = Child::Spawn({oklog, "forward", "127.0.0.1:" + std::to_string(fast_port)},
                            {.stdin_path = fifo_path, .stdout_path = log_prefix + ".log",
                             .stderr_path = log_prefix + ".err", .cwd = ""});
  if (!child) return nullptr;
  f->child_.emplace(std::move(*child));
  // Non-blocking open fails with ENXIO until the child has opened its read end; never block on
  // a child that failed to start.
  auto deadline = Clock::now() + std::chrono::seconds(5);
  while ((f->fd_ = open(fifo_path.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC)) < 0) {
    if (errno != ENXIO || Clock::now() >= deadline || f->child_->Poll()) {
      std::fprintf(stderr, "[bench] forwarder on %s did not open its input\n", fifo_path.c_str());
      return nullptr;
    }
    std::this_thread::sleep_for(milliseconds(5));
  }
  fcntl(f->fd_, F_SETFL, fcntl(f->fd_, F_GETFL) & ~O_NONBLOCK);
  return f;
}

FifoForwarder::~FifoForwarder() {
  if (fd_ >= 0) close(fd_);
}

bool FifoForwarder::Write(std::string_view data) {
  while (!data.empty()) {
    ssize_t n = write(fd_, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

ExitInfo FifoForwarder::Finish(milliseconds timeout) {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
  return child_->Wait(timeout);
}

PacedLoad::PacedLoad(std::vector<FifoForwarder*> targets, std::string sample, double records_per_s)
    : targets_(std::move(targets)), sample_(std::move(sample)), records_per_s_(records_per_s) {
  // Keep whole lines only.
  size_t end = sample_.rfind('\n');
  sample_.resize(end == std::string::npos ? 0 : end + 1);
  for (size_t p = 0; p < sample_.size();) {
    line_starts_.push_back(p);
    p = sample_.find('\n', p) + 1;
  }
  thread_ = std::thread([this] { Run(); });
}

PacedLoad::~PacedLoad() { Stop(); }

uint64_t PacedLoad::Stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  return lines_.load();
}

void PacedLoad::Run() {
  if (line_starts_.empty() || targets_.empty()) return;
  const auto t0 = Clock::now();
  const double per_target_per_s = records_per_s_ / static_cast<double>(targets_.size());
  std::vector<double> owed(targets_.size(), 0);
  size_t next_line = 0;
  for (int tick = 1; !stop_; ++tick) {
    std::this_thread::sleep_until(t0 + milliseconds(10) * tick);
    for (size_t t = 0; t < targets_.size() && !stop_; ++t) {
      owed[t] += per_target_per_s / 100.0;
      auto n = static_cast<size_t>(owed[t]);
      owed[t] -= static_cast<double>(n);
      // n lines from next_line on, wrapping around the sample: at most two writes.
      while (n > 0) {
        size_t take = std::min(n, line_starts_.size() - next_line);
        size_t from = line_starts_[next_line];
        size_t to = next_line + take < line_starts_.size() ? line_starts_[next_line + take] : sample_.size();
        if (!targets_[t]->Write(std::string_view(sample_).substr(from, to - from))) {
          seconds_ = Since(t0);
          return;
        }
        lines_ += take;
        n -= take;
        next_line = (next_line + take) % line_starts_.size();
      }
    }
  }
  seconds_ = Since(t0);
}

}  // namespace oklog::bench
