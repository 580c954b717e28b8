// The live subscriptions of this node (`/store/stream`, `/store/_stream`): each a compiled
// filter, a de-duplication window and the response it writes to. Publish() hands every batch
// of fresh records (from the ingest listeners, later from replication and remote peers) to every
// subscription at once: no timer, no reordering, no waiting for storage.
//
// A slow subscriber never blocks: its bytes queue in its own response, and once more than
// max_buffered_bytes are queued, its records are dropped and counted until the queue drains (to
// HttpResponse's low-water mark, 256 KiB, or a sixteenth of the bound); then one notice record
// tells the client how many were dropped, in place of the gap (see README.md, "Live stream"),
// and delivery resumes.
//
// Threads: loop thread only (Publish included; the ingest server calls it there). The registry
// keeps a shared_ptr to each response until it closes or is unsubscribed; the callbacks it sets
// on a response hold only a pointer to the registry, so Close() before destroying it.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string_view>

#include "common/http_server.h"
#include "common/metrics.h"
#include "common/status.h"
#include "query/matcher.h"
#include "query/query_params.h"

namespace oklog {

class MemoryBudget;

struct StreamSpec {
  MatchSpec match;
  OutputFormat format = OutputFormat::kText;
  // A record whose ULID was delivered to this subscriber less than window ago is not sent again.
  std::chrono::milliseconds window{3000};
};

using StreamId = uint64_t;

class StreamRegistry {
 public:
  struct Options {
    // Per subscriber: bytes queued in its response beyond which records are dropped.
    size_t max_buffered_bytes = 4 << 20;
    // Per subscriber: ULIDs remembered for de-duplication; beyond it the oldest are forgotten
    // early (the window shrinks under a flood rather than memory growing).
    size_t max_dedup_entries = 256 << 10;  // about 20 MiB at most
    // While it is used up (common/memory_budget.h: the answers queued to every client count),
    // a new subscription is refused (ResourceExhausted) and a subscriber with bytes queued gets
    // no more (dropped and counted as for max_buffered_bytes). Null: no bound.
    MemoryBudget* memory_budget = nullptr;
    std::function<uint64_t()> now_ms;   // monotonic milliseconds for the window; default steady_clock
    std::function<uint64_t()> wall_ms;  // the time of a drop notice's ULID; default NowUnixMs
  };

  // metrics gets oklog_stream_*; it must outlive the registry.
  StreamRegistry(Options options, Registry* metrics);
  ~StreamRegistry();
  StreamRegistry(const StreamRegistry&) = delete;
  StreamRegistry& operator=(const StreamRegistry&) = delete;

  // Subscribes a started response (status and headers already sent). InvalidArgument
  // ("compiling regex: ...") for a regex RE2 rejects. The subscription ends by itself when the
  // response closes (client gone), or by Unsubscribe; on_end (optional) runs once then, on the
  // loop thread (the fan-out cancels its peer streams there).
  Result<StreamId> Subscribe(const StreamSpec& spec, std::shared_ptr<HttpResponse> response,
                             std::function<void()> on_end = nullptr);
  // Ends a subscription without finishing its response. Unknown ids are ignored.
  void Unsubscribe(StreamId id);
  // Offers a batch of complete records "ULID SP topic SP line LF" to every subscription. The
  // view need only live during the call.
  void Publish(std::string_view records);
  // The same for one subscription only (records a peer streamed for it). Unknown ids are ignored.
  void PublishTo(StreamId id, std::string_view records);
  // Finishes every response and forgets every subscription.
  void Close();

  size_t subscribers() const { return live_; }
  bool Has(StreamId id) const;

 private:
  struct Subscription;
  void Deliver(Subscription* sub, std::string_view records, uint64_t now);
  void Resume(Subscription* sub);
  void Remove(StreamId id, bool finish);
  void Sweep();  // erases removed subscriptions once nothing of ours is on the stack

  Options options_;
  StreamId next_id_ = 1;
  std::map<StreamId, std::unique_ptr<Subscription>> subs_;
  size_t live_ = 0;  // subscriptions not removed
  int busy_ = 0;     // registry frames on the stack: removal is deferred while nonzero

  Gauge* subscribers_;
  Counter* delivered_;
  Counter* delivered_bytes_;
  Counter* dropped_;
  Counter* duplicates_;
};

}  // namespace oklog
