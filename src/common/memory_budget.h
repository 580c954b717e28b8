// MemoryBudget: one node-wide bound on the bytes held for other people (buffered requests and
// answers, partial frames from peers and forwarders, live-tail subscribers' queues). Each
// per-connection bound already holds (1 MiB of HTTP answers, a frame's length limit, a
// subscriber's queue); this one holds when many connections each stay under theirs.
//
// Two ways to use it:
//   - Charge / Release: bytes already taken (queued answer bytes) are counted, unconditionally;
//     the holder releases exactly what it charged.
//   - TryCharge: bytes about to be taken (a partial frame growing) are refused when they would
//     take the total over the limit; the caller refuses that work (an error frame and a close,
//     a 503) and counts nothing else: the refusal is counted here by use.
//   - Admit: new work (a request, a subscriber) is refused once the total reaches the admission
//     mark, 15/16 of the limit: the last sixteenth is kept for work already under way (a
//     response being written, a frame half read), so it finishes rather than failing late.
// Refusals are counted in oklog_memory_refused_total{use}; oklog_memory_budget_bytes and
// oklog_memory_used_bytes are exported. A refusal is logged at most every 10 s.
//
// Thread-safe (atomics). A null MemoryBudget* everywhere means "no global bound".
#pragma once

#include <atomic>
#include <cstdint>

#include "common/log.h"

namespace oklog {

class Counter;
class Registry;

class MemoryBudget {
 public:
  enum class Use { kHttp, kBulkFrame, kRpcFrame, kStream };
  static constexpr int kUses = 4;

  // limit_bytes > 0. metrics may be null; otherwise it must outlive the budget.
  MemoryBudget(uint64_t limit_bytes, Registry* metrics);
  ~MemoryBudget();
  MemoryBudget(const MemoryBudget&) = delete;
  MemoryBudget& operator=(const MemoryBudget&) = delete;

  void Charge(uint64_t n) { used_.fetch_add(n, std::memory_order_relaxed); }
  void Release(uint64_t n) { used_.fetch_sub(n, std::memory_order_relaxed); }
  // Charges n unless that takes the total over the limit (then false, counted for `use`).
  [[nodiscard]] bool TryCharge(uint64_t n, Use use);
  // False (counted for `use`) while the total is at or over the admission mark (15/16 of the
  // limit).
  [[nodiscard]] bool Admit(Use use);

  uint64_t limit() const { return limit_; }
  uint64_t used() const { return used_.load(std::memory_order_relaxed); }

  // The default limit: a quarter of physical memory, at least 256 MiB.
  static uint64_t DefaultLimit();

 private:
  void Refused(Use use);
  const uint64_t limit_;
  Registry* const metrics_;
  std::atomic<uint64_t> used_{0};
  Counter* refused_[kUses] = {};
  LogLimiter log_limit_;
};

// Bytes charged to a budget (may be null), held by one owner and resized as its buffer grows and
// shrinks; released in full when destroyed. Not thread-safe by itself: one owner.
class MemoryCharge {
 public:
  explicit MemoryCharge(MemoryBudget* budget = nullptr) : budget_(budget) {}
  ~MemoryCharge() { Set(0); }
  MemoryCharge(const MemoryCharge&) = delete;
  MemoryCharge& operator=(const MemoryCharge&) = delete;

  // Growth goes through TryCharge (false: nothing changed, the refusal counted); shrinking
  // always succeeds.
  [[nodiscard]] bool TrySet(uint64_t bytes, MemoryBudget::Use use);
  // Unconditional.
  void Set(uint64_t bytes);
  uint64_t bytes() const { return bytes_; }
  MemoryBudget* budget() const { return budget_; }

 private:
  MemoryBudget* budget_;
  uint64_t bytes_ = 0;
};

}  // namespace oklog
