#include "common/memory_budget.h"

#include <unistd.h>

#include <algorithm>

#include "common/log.h"
#include "common/metrics.h"

namespace oklog {
namespace {

const char* UseName(MemoryBudget::Use u) {
  switch (u) {
    case MemoryBudget::Use::kHttp: return "http";
    case MemoryBudget::Use::kBulkFrame: return "bulk_frame";
    case MemoryBudget::Use::kRpcFrame: return "rpc_frame";
    case MemoryBudget::Use::kStream: return "stream";
  }
  return "?";
}

}  // namespace

MemoryBudget::MemoryBudget(uint64_t limit_bytes, Registry* metrics) : limit_(limit_bytes), metrics_(metrics) {
  if (metrics_ == nullptr) return;
  auto* fam = metrics_->NewCounterFamily(
      "oklog_memory_refused_total",
      "Work refused because the node's memory budget (-memory.budget) was used up, by use.", {"use"});
  for (int i = 0; i < kUses; ++i) refused_[i] = fam->With({UseName(static_cast<Use>(i))});
  metrics_->NewGauge("oklog_memory_budget_bytes", "The node's memory budget for buffered work (-memory.budget).")
      ->Set(static_cast<double>(limit_));
  metrics_->NewGaugeCallback("oklog_memory_used_bytes",
                             "Bytes of buffered requests, answers, frames and subscriber queues held now.", this,
                             [this] { return static_cast<double>(used()); });
}

MemoryBudget::~MemoryBudget() {
  if (metrics_ != nullptr) metrics_->RemoveCallbacks(this);
}

bool MemoryBudget::TryCharge(uint64_t n, Use use) {
  uint64_t cur = used_.load(std::memory_order_relaxed);
  for (;;) {
    if (cur + n > limit_) {
      Refused(use);
      return false;
    }
    if (used_.compare_exchange_weak(cur, cur + n, std::memory_order_relaxed)) return true;
  }
}

bool MemoryBudget::Admit(Use use) {
  if (used() < limit_ - limit_ / 16) return true;
  Refused(use);
  return false;
}

void MemoryBudget::Refused(Use use) {
  if (refused_[static_cast<int>(use)] != nullptr) refused_[static_cast<int>(use)]->Inc();
  uint64_t unlogged = 0;
  if (log_limit_.Allow(&unlogged))
    Logger("node")->warn("memory budget used up ({} of {} bytes held for buffered work): refusing new {} work "
                         "(oklog_memory_refused_total; {} more refusals since the last report; raise "
                         "-memory.budget if this is normal load)",
                         used(), limit_, UseName(use), unlogged);
}

uint64_t MemoryBudget::DefaultLimit() {
  const long pages = ::sysconf(_SC_PHYS_PAGES);
  const long page = ::sysconf(_SC_PAGESIZE);
  const uint64_t phys = pages > 0 && page > 0 ? static_cast<uint64_t>(pages) * static_cast<uint64_t>(page) : 0;
  return std::max<uint64_t>(phys / 4, 256ull << 20);
}

bool MemoryCharge::TrySet(uint64_t bytes, MemoryBudget::Use use) {
  if (budget_ == nullptr || bytes <= bytes_) {
    Set(bytes);
    return true;
  }
  if (!budget_->TryCharge(bytes - bytes_, use)) return false;
  bytes_ = bytes;
  return true;
}

void MemoryCharge::Set(uint64_t bytes) {
  if (budget_ != nullptr) {
    if (bytes > bytes_) budget_->Charge(bytes - bytes_);
    else budget_->Release(bytes_ - bytes);
  }
  bytes_ = bytes;
}

}  // namespace oklog
