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
// Placement buckets: ULID time is cut into buckets of bucket_ms (-store.placement-bucket, the same
// on every node of a cluster; 1 minute by default), and a consumer never
// replicates a batch across a bucket boundary (ClusterConsumer::Encode splits there), so the
// records a store holds in one bucket are exactly those of the batches it holds in it. The bucket
// is the unit that repair and rebalance copy and that a store drops: every record of the bucket,
// with the list of the batches they make up. Each bucket orders the stores by PlacementRank
// (a hash of store name and bucket, the same on every node).
//
// Copies move with segment.copy: a segment file of the sender's records of the unit and the
// batches it makes up, which the receiver notes (claims) once the file is stored. A unit too big
// for one message goes as several files, the claims with the last.
//
// Repair: after each pull round, a batch of this store's that fewer than replication_factor live
// stores are known to hold, continuously for repair_delay, is copied by the first of its live
// holders (by name, so exactly one repairs it) to the live stores that lack it, lowest rank first,
// skipping stores that gossip a full disk: its bucket (a batch that spans buckets, from before
// the split, alone: the records LOW..HIGH). At most repair_rate bytes a second, shared with
// rebalance; what is left waits for the next round. It runs on the exchange's thread, never the
// loop; after a restart it starts again from the pulls.
//
// Copies beyond N: a store drops a bucket (every record of it) when each of the batches it holds
// in it is held by at least N alive stores of lower rank in that bucket. The N lowest-ranked
// holders of a batch therefore never drop it, whatever the others do at the same time, so N
// copies stay. The bucket must have ended settle_age ago (its batches are complete) and hold no
// batch that spans buckets. The batches leave the holdings at once (peers stop counting this
// copy); the records go drop_grace later (peers have pulled the change meanwhile, so no query
// counts on records that are gone), through options.drop (the Compactor rewrites the segments
// without them). Right before the rewrite the decision is checked again against the current
// holdings; the rewrite counts the records it removes and is cancelled, with the batches noted
// again, when they are more than the batches account for (a batch that arrived meanwhile).
//
// Rebalance: a store holding more than 5 % above the mean records of the alive stores moves
// buckets, newest first, to stores more than 5 % below it (each mover takes its share of a
// target's room): a bucket whose batches all have N alive holders, that the target lacks, where
// the target ranks before this store and the store would then have N lower-ranked holders. The
// copy makes N+1 copies, and the rule above drops this store's. So a new store fills up to the
// mean at repair_rate, and disks even out within about 10 %.
//
//   holdings.pull request  = [1, epoch, version]          what the caller has (0, 0: nothing)
//                 response = [1, epoch, version, full, [[LOW, HIGH, records]*], [[LOW, HIGH]*]]
//     epoch    uint, random per process start of the answering store: another epoch than the
//              caller's means `full` (the caller replaces what it had)
//     version  uint, the answering store's change counter after this answer
//     LOW HIGH bin16 ULIDs; added batches with their record count, then dropped batches
//   At most kMaxHoldingsEntries entries in one answer.
//
//   segment.copy  request  = [1, [[LOW, HIGH, records]*]] followed by a store segment file
//                 response = [1, records stored]
//     the batches the records make up (claimed when the file is stored; they must lie within the
//     file's range, or the file and they within one bucket); at most kMaxHoldingsEntries.
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
#include "segments/line_log.h"
#include "rpc/rpc_bridge.h"
#include "rpc/rpc_server.h"

namespace oklog {

class StoreLog;

inline constexpr const char* kHoldingsPull = "holdings.pull";
inline constexpr const char* kSegmentCopy = "segment.copy";
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

inline constexpr uint64_t kDefaultPlacementBucketMs = 60'000;
inline uint64_t PlacementBucket(const Ulid& u, uint64_t bucket_ms) { return u.unix_ms() / bucket_ms; }
BatchId BucketRange(uint64_t bucket, uint64_t bucket_ms);  // its first and last possible ULID
uint64_t PlacementRank(std::string_view store, uint64_t bucket);

using BatchClaims = std::vector<std::pair<BatchId, uint64_t>>;  // batch, records

struct SegmentCopy {
  BatchClaims claims;
  std::string_view file;  // into the decoded body
};
std::string EncodeSegmentCopy(const BatchClaims& claims, std::string_view file);
Result<SegmentCopy> DecodeSegmentCopy(std::string_view body);

// A drop of every record in [low, high] from the store's segment files, which the Compactor
// makes (Compactor::RequestDrop). The callbacks run on the compactor's thread, and only while it
// runs: whoever makes them stops the compactor before it goes.
struct RangeDrop {
  Ulid low, high;
  uint64_t max_records = 0;  // distinct records the range may hold; more cancel it
  std::chrono::steady_clock::time_point not_before;
  std::function<bool()> still_wanted;       // asked right before the rewrite; false cancels it
  std::function<void(const Status&)> done;  // OK: the records are gone; else none went
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
  // Notes batches stored here (a copy's claims), as Add each.
  void AddAll(const BatchClaims& batches);
  // Forgets these batches (a drop of copies beyond N); returns how many were held.
  size_t Drop(const std::vector<BatchId>& batches);
  // Drops every batch whose records are all older than `floor` (retention removed them); returns
  // how many.
  size_t DropBelow(const Ulid& floor);
  // Keeps only batches `held` says are still here (start-up: against the segment files).
  void Retain(const std::function<bool(const BatchId&)>& held);
  bool Has(const BatchId& b) const;
  // The batches lying wholly within [low, high].
  BatchClaims Within(const Ulid& low, const Ulid& high) const;
  // The batches with a record ULID range overlapping [low, high] (a linear walk: for the rare
  // bad block, never per query).
  std::vector<BatchId> Overlapping(const Ulid& low, const Ulid& high) const;
  // Changes since (epoch, version), or everything when epoch is not this one's or the change
  // list no longer reaches back that far.
  HoldingsDelta Since(uint64_t epoch, uint64_t version) const;
  std::vector<std::pair<BatchId, uint64_t>> Snapshot() const;
  size_t size() const;
  uint64_t epoch() const { return epoch_; }

 private:
  explicit Holdings(Registry* metrics);
  void AppendLine(const std::string& line);  // mu_ held
  void Record(bool add, const BatchId& b, uint64_t records);  // mu_ held
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
  std::unique_ptr<LineLog> log_;
  Gauge* batches_gauge_;
  Counter* log_errors_;
};

// A store HoldingsExchange knows of, as the node's gossip view has it.
struct HoldingsPeer {
  std::string name, addr;
  bool live = false;  // alive or suspect: pulled from
  bool is_self = false;
  bool suspect = false;  // (live) not counted as a holder when dropping copies
  bool full = false;     // gossips a full store disk: no copy is sent to it
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
    uint64_t repair_rate = 16 << 20;  // bytes per second; 0: no repair (and no rebalance)
    bool rebalance = true;
    uint64_t bucket_ms = kDefaultPlacementBucketMs;
    // Buckets that ended less than this ago are neither dropped nor moved (their batches may
    // still come).
    std::chrono::milliseconds settle_age{120000};
    // Between a drop's decision (the batches leave the holdings) and the rewrite; 0: three
    // intervals.
    std::chrono::milliseconds drop_grace{0};
    // Where drops go (the node's Compactor); none: copies beyond N are kept.
    std::function<void(RangeDrop)> drop;
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
  // Whether some store of `stores` (not this one) is known to hold b, by its last pull.
  bool HeldByAny(const BatchId& b, const std::set<std::string>& stores) const;
  // One pull round now (tests; the thread does it every interval).
  void PullOnce();

 private:
  HoldingsExchange() = default;
  void Run();
  struct Copy {
    BatchId range;       // the records sent: a bucket's, or an old spanning batch's
    BatchClaims claims;  // the batches they make up
    std::string name, addr;
    bool rebalance = false;
    bool whole_bucket = false;  // claims are taken again right before the records are read
  };
  // The batches of this store by bucket (those within one), and the buckets touched by batches
  // that span several (never dropped or moved).
  struct Buckets {
    std::map<uint64_t, BatchClaims> within;
    std::vector<std::pair<uint64_t, uint64_t>> spans;  // merged, sorted
    bool Fixed(uint64_t bucket) const;
  };
  void Refresh(const std::vector<HoldingsPeer>& peers);  // gauges, and what repair must copy
  // mu_ held: the decisions of one round after the under-replicated ones.
  void DecideDrops(const Buckets& own, std::vector<std::pair<uint64_t, BatchClaims>>* drops);
  void DecideRebalance(const Buckets& own);
  // A bucket with a batch on more than N alive stores, of which this one is the last-ranked
  // holder, that this store cannot drop because another of its batches there has fewer lower
  // holders: copied to a lower-ranked store so that it can.
  void DecideConsolidate(const Buckets& own);
  // A lower-ranked alive store to copy `bucket` to after which every batch of `claims` has N
  // holders ranked before this store, lacking one of them at least; the one with the most
  // `room` (none: ""), among `room`'s keys.
  std::string CopyTarget(uint64_t bucket, const BatchClaims& claims, const std::map<std::string, double>& room) const;
  void AddBucketCopy(uint64_t bucket, const BatchClaims& claims, const std::string& target);
  // mu_ held: how many alive stores other than self and `except`, ranked before self in
  // `bucket`, hold b.
  size_t LowerHolders(const BatchId& b, uint64_t bucket, const std::string& except) const;
  void StartDrops(std::vector<std::pair<uint64_t, BatchClaims>> drops);  // without mu_
  void Repair();                                         // copies up to the rate's budget
  Result<uint64_t> CopyUnit(const Copy& c);              // bytes sent

  rpc::RpcBridge* bridge_ = nullptr;
  std::function<std::vector<HoldingsPeer>()> peers_;
  StoreLog* store_ = nullptr;
  Holdings* own_ = nullptr;
  Options options_;
  // Repair: since when each under-replicated batch has been so; the copies due (batch, target
  // name, target address), decided under mu_ by Refresh and made by Repair without it.
  std::map<BatchId, std::chrono::steady_clock::time_point> under_since_;
  std::vector<Copy> due_;
  std::set<std::string> alive_;         // the last round's alive stores, self excluded
  std::set<uint64_t> dropping_;         // buckets with a drop under way
  std::vector<HoldingsPeer> last_peers_;  // the last round's view (the round's thread only)
  std::chrono::steady_clock::time_point last_repair_{};
  struct Cache {
    uint64_t epoch = 0, version = 0;
    bool live = false;
    std::map<BatchId, uint64_t> batches;
    uint64_t max_span_ms = 0;  // the longest batch seen (for range look-ups)
    bool pulled = false;       // answered at least once in this process
    bool full = false;
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
  Gauge* under_replicated_bytes_ = nullptr;
  Gauge* known_stores_ = nullptr;
  Counter* repaired_batches_ = nullptr;
  Counter* repaired_bytes_ = nullptr;
  Counter* repair_errors_ = nullptr;
  Gauge* repair_lag_ = nullptr;
  Counter* rebalanced_batches_ = nullptr;
  Counter* rebalanced_bytes_ = nullptr;
  Counter* dropped_batches_ = nullptr;
  Counter* dropped_records_ = nullptr;
  Counter* drops_cancelled_ = nullptr;
  Gauge* held_records_ = nullptr;
};

// Registers holdings.pull for `own` on `server` (answered on the loop thread: a copy of the
// changes under the lock and one encode).
void ServeHoldings(Holdings* own, rpc::RpcServer* server);

}  // namespace oklog
