#include "common/fs/disk_guard.h"

#include <algorithm>

#include "common/log.h"

namespace oklog {

DiskGuard::DiskGuard(Options options, Registry* m) : o_(std::move(options)) {
  free_gauge_ = m->NewGaugeFamily("oklog_disk_free_bytes",
                                  "Bytes free for writing on the filesystem of the ingest or store directory.",
                                  {"dir"})
                    ->With({o_.label});
  full_gauge_ = m->NewGaugeFamily("oklog_disk_full",
                                  "1 while the ingest or store directory's disk is below its free-space floor "
                                  "(-ingest.min-free-bytes, -store.min-free-bytes) or failed a write for lack of space.",
                                  {"dir"})
                    ->With({o_.label});
}

std::string DiskGuard::reason() const {
  std::lock_guard<std::mutex> lock(mu_);
  return full_.load() ? reason_ : std::string();
}

uint64_t DiskGuard::free_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return free_;
}

bool DiskGuard::Poll() {
  std::lock_guard<std::mutex> lock(mu_);
  const auto now = std::chrono::steady_clock::now();
  Result<uint64_t> got = o_.env->FreeBytes(o_.dir);
  if (!got.ok()) {
    Logger("node")->warn("{} disk: cannot read the free space of {}: {}; keeping the last state ({})", o_.label, o_.dir,
                         got.status().ToString(), full_.load() ? "full" : "not full");
    return full_.load();
  }
  free_ = *got;
  free_gauge_->Set(static_cast<double>(free_));
  const uint64_t floor = o_.min_free_bytes;
  if (!full_.load()) {
    if (free_ < floor)
      SetFull(true, o_.label + " disk: " + o_.dir + " has " + std::to_string(free_) + " bytes free, below " + o_.flag +
                        " " + std::to_string(floor));
    return full_.load();
  }
  // Full: resume only with room above the floor and above what was free when a write failed.
  const uint64_t margin = std::max<uint64_t>(o_.resume_bytes, floor / 10);
  const uint64_t base = error_pending_ ? std::max(floor, free_at_error_) : floor;
  const bool retry = error_pending_ && free_ >= floor + margin && now - error_at_ >= o_.error_retry;
  if (free_ >= base + margin || retry) {
    error_pending_ = false;
    SetFull(false, "");
  }
  return full_.load();
}

void DiskGuard::NoteWriteError(const Status& s) {
  if (s.code() != Code::kResourceExhausted) return;
  std::lock_guard<std::mutex> lock(mu_);
  Result<uint64_t> got = o_.env->FreeBytes(o_.dir);
  if (got.ok()) {
    free_ = *got;
    free_gauge_->Set(static_cast<double>(free_));
  }
  // Several writers may fail at once: the highest figure they saw is the one to climb above.
  free_at_error_ = error_pending_ ? std::max(free_at_error_, free_) : free_;
  error_pending_ = true;
  error_at_ = std::chrono::steady_clock::now();
  if (!full_.load()) SetFull(true, o_.label + " disk: a write in " + o_.dir + " failed: " + s.ToString());
}

void DiskGuard::SetFull(bool full, const std::string& why) {
  reason_ = why;
  full_.store(full, std::memory_order_release);
  full_gauge_->Set(full ? 1 : 0);
  if (full)
    Logger("node")->error("{}; {}", why,
                          o_.label == "ingest" ? "refusing producers (new connections and bulk segments)"
                                               : "not consuming or accepting replicas");
  else
    Logger("node")->info("{} disk: {} has {} bytes free again (floor {}); resuming", o_.label, o_.dir, free_,
                         o_.min_free_bytes);
}

}  // namespace oklog
