// Holdings: which replicated batches each store holds, the summary that tells a query whether the
// stores it reached hold every record of its range (and, next, what repair must copy).
//
// A batch is one merged segment as a consumer replicated it: its name LOW-HIGH (first and last
// record ULID) is the same on all N stores that took a copy, whatever compaction later does to
// the files. A store notes every batch it installs (StoreLog's replica paths, the local consumer)
// in its own Holdings, kept in memory and appended to `holdings.log` in the store directory:
//
//   holdings.log := line*      line := ("+" SP LOW SP HIGH SP RECORDS | "-" SP LOW SP HIGH) LF
//   LOW, HIGH canonical ULIDs; RECORDS decimal. A torn or unreadable line is skipped (counted);
//   Open rewrites the file with the live entries only (tmp, rename); a store that never held a
//   replicated batch (a single node) has no file. No fsync: a batch lost from the log only makes
//   queries of its range conservative (a 206 while another holder is unreachable), never falsely
//   complete. Open keeps only batches whose both ends lie inside segment files.
//
// HoldingsExchange runs beside it on every store: every `interval` it pulls each live store
// peer's changes since the version it has (`holdings.pull`, below) and keeps what every store ever
// reached held, dead and left ones included (an unreachable store's records are exactly what a
// query must not claim). A store's query part (query.run) is told which stores the fan-out asked;
// Missing() names the batches that overlap the range, that some store not asked holds and that
// neither this store nor any asked store is known to hold.
//
// Repair: after each pull round, a batch of this store's that fewer than replication_factor live
// stores are known to hold, continuously for repair_delay, is copied by the first of its live
// holders (by name, so exactly one repairs it) to a live store that lacks it: its records (the
// ULIDs LOW..HIGH of this store's segments; records of other batches in that span go along as
// harmless duplicates) encoded once and sent with segment.replicate_file, whose receiver notes
// the batch. At most repair_rate bytes a second; what is left waits for the next round. It runs
// on the exchange's thread, never the loop; after a restart it starts again from the pulls.
//
//   holdings.pull request  = [1, epoch, version]          what the caller has (0, 0: nothing)
//                 response = [1, epoch, version, full, [[LOW, HIGH, records]*], [[LOW, HIGH]*]]
//     epoch    uint, random per process start of the answering store: another epoch than the
//              caller's means `full` (the caller replaces what it had)
//     version  uint, the answering store's change counter after this answer
//     LOW HIGH bin16 ULIDs; added batches with their record count, then dropped batches
//   At most kMaxHoldingsEntries entries in one answer.
//
// Threads: Holdings and HoldingsExchange are thread-safe (one mutex each). The exchange's pulls
// run on its own thread through an RpcBridge; Serve() registers the method on the loop's server.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/fs/env.h"
#include "common/metrics.h"
#include "common/status.h"
#include "common/ulid.h"
#include "rpc/rpc_bridge.h"
#include "rpc/rpc_server.h"

namespace oklog {

class StoreLog;

inline constexpr const char* kHoldingsPull = "holdings.pull";
inline constexpr uint32_t kHoldingsMessagesVersion = 1;
inline constexpr size_t kMaxHoldingsEntries = 1u << 20;

struct BatchId {
  Ulid low, high;
  friend auto operator<=>(const BatchId&, const BatchId&) = default;
};

struct HoldingsDelta {
  uint64_t epoch = 0, version = 0;
  bool full = false;
  std::vector<std::pair<BatchId, uint64_t>> add;  // batch, records
  std::vector<BatchId> drop;
};

std::string EncodeHoldingsPull(uint64_t epoch, uint64_t version);
Result<std::pair<uint64_t, uint64_t>> DecodeHoldingsPull(std::string_view body);
std::string EncodeHoldingsDelta(const HoldingsDelta& d);
Result<HoldingsDelta> DecodeHoldingsDelta(std::string_view body);

class Holdings {
 public:
  // Loads dir/holdings.log (absent: empty) and rewrites it with the live entries.
  static Result<std::unique_ptr<Holdings>> Open(Env* env, const std::string& dir, Registry* metrics);
  ~Holdings();

  // Notes a batch stored here (again: a no-op). Never fails: a log append that fails is logged
  // and counted; the batch is held in memory all the same.
  void Add(const BatchId& b, uint64_t records);
  // Drops every batch whose records are all older than `floor` (retention removed them); returns
  // how many.
  size_t DropBelow(const Ulid& floor);
  // Keeps only batches `held` says are still here (start-up: against the segment files).
  void Retain(const std::function<bool(const BatchId&)>& held);
  bool Has(const BatchId& b) const;
  // Changes since (epoch, version), or everything when epoch is not this one's or the change
  // list no longer reaches back that far.
  HoldingsDelta Since(uint64_t epoch, uint64_t version) const;
  std::vector<std::pair<BatchId, uint64_t>> Snapshot() const;
  size_t size() const;
  uint64_t epoch() const { return epoch_; }

 private:
  Holdings(Env* env, std::string path, Registry* metrics);
  void AppendLine(const std::string& line);  // mu_ held
  void Record(bool add, const BatchId& b, uint64_t records);  // mu_ held
  Env* env_;
  std::string path_;
  uint64_t epoch_;
  mutable std::mutex mu_;
  std::map<BatchId, uint64_t> batches_;
  struct Change {
    uint64_t version;
    bool add;
    BatchId batch;
    uint64_t records;
  };
  std::vector<Change> changes_;  // ascending version; trimmed to the newest kMaxHoldingsEntries
  uint64_t version_ = 0;
  std::unique_ptr<WritableFile> log_;  // null until the first line when there was no file
  bool log_failed_ = false;            // the start-up rewrite failed: memory only
  Gauge* batches_gauge_;
  Counter* log_errors_;
};

// A store HoldingsExchange knows of, as the node's gossip view has it.
struct HoldingsPeer {
  std::string name, addr;
  bool live = false;  // alive or suspect: pulled from
  bool is_self = false;
};

struct MissingBatch {
  BatchId batch;
  uint64_t records = 0;
  std::vector<std::string> holders;  // the stores not asked that hold it
};

class HoldingsExchange {
 public:
  struct Options {
    std::chrono::milliseconds interval{2000};
    std::chrono::milliseconds rpc_timeout{5000};
    size_t replication_factor = 2;
    // Batches wholly older than now - retention are forgotten (0: kept until a holder drops them).
    std::chrono::milliseconds retention{0};
    std::chrono::milliseconds repair_delay{60000};
    uint64_t repair_rate = 16 << 20;  // bytes per second; 0: no repair
  };
  // peers runs on the loop thread (through the bridge); own is this store's Holdings.
  static std::unique_ptr<HoldingsExchange> Start(rpc::RpcBridge* bridge, std::function<std::vector<HoldingsPeer>()> peers,
                                                 StoreLog* store, Options options, Registry* metrics);
  ~HoldingsExchange();
  void Stop();
  void Join();  // never on the loop thread

  // Batches overlapping [from, to] that a store not in `asked` holds and that neither this store
  // nor any store in `asked` is known to hold; at most `max` listed, *total counts them all.
  std::vector<MissingBatch> Missing(const Ulid& from, const Ulid& to, const std::set<std::string>& asked, size_t max,
                                    uint64_t* total) const;
  // One pull round now (tests; the thread does it every interval).
  void PullOnce();

 private:
  HoldingsExchange() = default;
  void Run();
  void Refresh(const std::vector<HoldingsPeer>& peers);  // gauges, and what repair must copy
  void Repair();                                         // copies up to the rate's budget
  Result<uint64_t> CopyBatch(const BatchId& b, const std::string& addr);  // bytes sent

  rpc::RpcBridge* bridge_ = nullptr;
  std::function<std::vector<HoldingsPeer>()> peers_;
  StoreLog* store_ = nullptr;
  Holdings* own_ = nullptr;
  Options options_;
  // Repair: since when each under-replicated batch has been so; the copies due (batch, target
  // name, target address), decided under mu_ by Refresh and made by Repair without it.
  std::map<BatchId, std::chrono::steady_clock::time_point> under_since_;
  struct Copy {
    BatchId batch;
    std::string name, addr;
  };
  std::vector<Copy> due_;
  std::chrono::steady_clock::time_point last_repair_{};
  struct Cache {
    uint64_t epoch = 0, version = 0;
    bool live = false;
    std::map<BatchId, uint64_t> batches;
    uint64_t max_span_ms = 0;  // the longest batch seen (for range look-ups)
  };
  mutable std::mutex mu_;
  std::map<std::string, Cache> caches_;  // by store name, self excluded
  std::string self_;
  std::mutex run_mu_;  // one pull round at a time
  std::atomic<bool> stop_{false};
  std::mutex sleep_mu_;
  std::condition_variable cv_;
  std::thread thread_;
  Counter* pulls_ = nullptr;
  Counter* pull_errors_ = nullptr;
  Gauge* under_replicated_batches_ = nullptr;
  Gauge* under_replicated_records_ = nullptr;
  Gauge* known_stores_ = nullptr;
  Counter* repaired_batches_ = nullptr;
  Counter* repaired_bytes_ = nullptr;
  Counter* repair_errors_ = nullptr;
  Gauge* repair_lag_ = nullptr;
};

// Registers holdings.pull for `own` on `server` (answered on the loop thread: a copy of the
// changes under the lock and one encode).
void ServeHoldings(Holdings* own, rpc::RpcServer* server);

}  // namespace oklog
