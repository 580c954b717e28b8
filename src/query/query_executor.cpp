#include "query/query_executor.h"

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <mutex>

#include "common/log.h"
#include "segments/record_merge.h"

namespace oklog {
namespace {

enum TaskState : int { kQueued = 0, kRunning = 1, kDone = 2 };

// One block to read and match. Written by whoever moved it from kQueued to kRunning, read by
// the driver once it is kDone (the state is published under RunState::mu).
struct Task {
  const SegmentReader* segment = nullptr;
  size_t block = 0;
  size_t member = 0;           // position of the segment within its overlap group
  char key[Ulid::kTextSize];   // first ULID (ascending) or last ULID (descending) of the block
  std::atomic<int> state{kQueued};
  std::string text;
  std::vector<RecordSpan> spans;
  Status status;
};

// Shared by the driver and the pool jobs; a job holds it by shared_ptr, so a job that runs
// after its query returned only finds its task already settled and touches nothing else.
struct RunState {
  std::vector<std::shared_ptr<const SegmentReader>> segments;  // keeps readers open
  std::vector<Task> tasks;                                      // never resized once built
  const Matcher* matcher = nullptr;  // valid while the driver is in Run (see Settle)
  UlidTextRange range{Ulid(), Ulid()};
  std::atomic<bool> stop{false};

  std::mutex mu;
  std::condition_variable cv;  // a task became kDone
  std::vector<std::string> free_buffers;

  Counter* blocks_read = nullptr;
  Counter* bytes_scanned = nullptr;
  std::atomic<uint64_t> read{0};
  std::atomic<uint64_t> scanned{0};

  std::string TakeBuffer() {
    std::lock_guard<std::mutex> lock(mu);
    if (free_buffers.empty()) return {};
    std::string b = std::move(free_buffers.back());
    free_buffers.pop_back();
    return b;
  }
  // Kept at its size: ReadBlock then writes over the old bytes instead of zero-filling the
  // room it needs first (that memset was ~4% of a scan).
  void GiveBuffer(std::string b) {
    if (b.capacity() == 0) return;
    std::lock_guard<std::mutex> lock(mu);
    if (free_buffers.size() < 64) free_buffers.push_back(std::move(b));
  }

  // Runs a task this thread moved to kRunning.
  void Execute(Task& t) {
    if (!stop.load(std::memory_order_relaxed)) {
      std::string buf = TakeBuffer();
      t.status = t.segment->ReadBlock(t.block, &buf);
      read.fetch_add(1, std::memory_order_relaxed);
      blocks_read->Inc();
      if (t.status.ok()) {
        scanned.fetch_add(buf.size(), std::memory_order_relaxed);
        bytes_scanned->Inc(buf.size());
        matcher->MatchBlock(buf, range, &t.spans);
      }
      if (t.spans.empty()) {
        GiveBuffer(std::move(buf));
      } else {
        t.text = std::move(buf);
      }
    }
    {
      std::lock_guard<std::mutex> lock(mu);
      t.state.store(kDone, std::memory_order_release);
    }
    cv.notify_all();
  }
};

// A segment's blocks that the query must read, in scan order.
struct Member {
  std::vector<size_t> tasks;  // indices into RunState::tasks, in this segment's scan order
  size_t next = 0;
};

// Orders pending blocks and records so that popping "first" yields scan order: ascending
// (key, member) for ULID order; descending key, then ascending member, for newest first.
struct KeyOrder {
  bool descending;
  // True when a comes strictly before b.
  bool Before(const char* ka, size_t ma, const char* kb, size_t mb) const {
    int c = std::memcmp(ka, kb, Ulid::kTextSize);
    if (c != 0) return descending ? c > 0 : c < 0;
    return ma < mb;
  }
};

class Driver {
 public:
  Driver(std::shared_ptr<RunState> st, ScanPool* pool, size_t window, const ScanRequest& req, RecordSink* sink,
         const std::atomic<bool>& cancel, const QueryExecutor::CorruptionHandler& on_corrupt, ScanStats* stats)
      : st_(std::move(st)),
        pool_(pool),
        window_(window),
        req_(req),
        sink_(sink),
        cancel_(cancel),
        on_corrupt_(on_corrupt),
        stats_(stats) {}

  // Emits one group of segments; false when the query must stop (limit, cancel, sink gone).
  bool EmitGroup(std::vector<Member>& members) {
    if (members.size() == 1) return EmitStraight(members[0]);
    return EmitMerged(members);
  }

  // Marks every task nobody started as settled and waits for the running ones, so no pool job
  // touches the matcher after Run returns.
  void Settle() {
    st_->stop.store(true);
    for (size_t i = 0; i < next_start_; ++i) {
      int expected = kQueued;
      st_->tasks[i].state.compare_exchange_strong(expected, kDone);
    }
    std::unique_lock<std::mutex> lock(st_->mu);
    st_->cv.wait(lock, [&] {
      for (size_t i = 0; i < next_start_; ++i) {
        if (st_->tasks[i].state.load(std::memory_order_acquire) == kRunning) return false;
      }
      return true;
    });
  }

  bool stopped_by_limit() const { return limit_reached_; }
  bool refused() const { return refused_; }

 private:
  bool Cancelled() const { return cancel_.load(std::memory_order_relaxed) || refused_; }

  bool Deliver(std::string_view record) {
    if (!sink_->Add(record)) {
      refused_ = true;
      return false;
    }
    ++stats_->records;
    if (req_.limit && stats_->records >= *req_.limit) {
      limit_reached_ = true;
      return false;
    }
    return true;
  }

  void Submit(size_t i) {
    std::shared_ptr<RunState> st = st_;
    pool_->Submit([st, i] {
      Task& t = st->tasks[i];
      int expected = kQueued;
      if (t.state.compare_exchange_strong(expected, kRunning)) st->Execute(t);
    });
  }

  void FillWindow() {
    while (next_start_ < st_->tasks.size() && in_flight_ < window_ && !Cancelled() && !limit_reached_) {
      Submit(next_start_++);
      ++in_flight_;
    }
  }

  // Returns task i once it is done, scanning it (and others) on this thread when useful.
  Task& Await(size_t i) {
    // Tasks start in order; by the ordering argument in the header i <= next_start_, but stay
    // correct if not: start the ones in between regardless of the window.
    while (next_start_ < i) {
      Submit(next_start_++);
      ++in_flight_;
    }
    if (next_start_ == i) {
      ++next_start_;
      ++in_flight_;
    }
    FillWindow();
    Task& t = st_->tasks[i];
    int expected = kQueued;
    if (t.state.compare_exchange_strong(expected, kRunning)) {
      st_->Execute(t);
    } else {
      // Running on a worker: help with tasks ahead while it finishes, then wait.
      while (t.state.load(std::memory_order_acquire) != kDone) {
        bool helped = false;
        for (size_t j = i + 1; j < next_start_ && !helped; ++j) {
          int e = kQueued;
          if (st_->tasks[j].state.compare_exchange_strong(e, kRunning)) {
            st_->Execute(st_->tasks[j]);
            helped = true;
          }
        }
        if (helped) continue;
        sink_->Idle();
        std::unique_lock<std::mutex> lock(st_->mu);
        st_->cv.wait(lock, [&] { return t.state.load(std::memory_order_acquire) == kDone; });
      }
    }
    if (!t.status.ok()) {
      ++stats_->corrupt_blocks;
      Logger("query")->error("msg=\"skipping unreadable block\" segment={} block={} error=\"{}\"",
                             t.segment->path(), t.block, t.status.ToString());
      if (on_corrupt_) on_corrupt_(*t.segment, t.block, t.status);
    }
    return t;
  }

  void Release(Task& t) {
    st_->GiveBuffer(std::move(t.text));
    t.text = std::string();
    t.spans = std::vector<RecordSpan>();
    --in_flight_;
    FillWindow();
  }

  std::string_view RecordOf(const Task& t, size_t span) const {
    const RecordSpan& s = t.spans[span];
    return std::string_view(t.text).substr(s.offset, s.length);
  }

  bool EmitStraight(Member& m) {
    const bool desc = req_.order == ScanOrder::kDescending;
    for (size_t idx : m.tasks) {
      if (Cancelled()) return false;
      Task& t = Await(idx);
      size_t n = t.spans.size();
      for (size_t k = 0; k < n; ++k) {
        if (!Deliver(RecordOf(t, desc ? n - 1 - k : k))) return false;
      }
      Release(t);
    }
    return true;
  }

  // The group's k-way merge (MergeByUlid, one head per member). A member's head is either its
  // next block not yet loaded, keyed by the block's bound ULID, or the current record of its
  // loaded block; popping a not-yet-loaded block loads it and offers its first record.
  struct Cursor {
    size_t task = 0;
    bool loaded = false;
    size_t span = 0;  // position in the scan order of the block's spans
  };

  bool EmitMerged(std::vector<Member>& members) {
    const bool desc = req_.order == ScanOrder::kDescending;
    MergeByUlid merge(desc ? MergeByUlid::Order::kDescending : MergeByUlid::Order::kAscending);
    std::vector<Cursor> cur(members.size());
    auto offer_next_block = [&](size_t m) {
      Member& mem = members[m];
      if (mem.next >= mem.tasks.size()) return;
      cur[m] = Cursor{mem.tasks[mem.next++], false, 0};
      merge.Offer(m, std::string_view(st_->tasks[cur[m].task].key, Ulid::kTextSize));
    };
    for (size_t m = 0; m < members.size(); ++m) offer_next_block(m);
    while (!merge.empty()) {
      if (Cancelled()) return false;
      size_t m = merge.Pop().source;
      Cursor& c = cur[m];
      Task& t = st_->tasks[c.task];
      if (!c.loaded) {
        Await(c.task);
        if (t.spans.empty()) {
          Release(t);
          offer_next_block(m);
          continue;
        }
        c.loaded = true;
        c.span = 0;
      } else {
        size_t n = t.spans.size();
        std::string_view rec = RecordOf(t, desc ? n - 1 - c.span : c.span);
        if (!merge.Accept(rec)) {
          ++stats_->duplicates;
        } else if (!Deliver(rec)) {
          return false;  // Settle and ~RunState clean up
        }
        if (++c.span == n) {
          Release(t);
          offer_next_block(m);
          continue;
        }
      }
      size_t n = t.spans.size();
      merge.Offer(m, RecordOf(t, desc ? n - 1 - c.span : c.span));
    }
    return true;
  }

  std::shared_ptr<RunState> st_;
  ScanPool* pool_;
  size_t window_;
  const ScanRequest& req_;
  RecordSink* sink_;
  const std::atomic<bool>& cancel_;
  const QueryExecutor::CorruptionHandler& on_corrupt_;
  ScanStats* stats_;
  size_t next_start_ = 0;  // tasks [0, next_start_) have been submitted or run here
  size_t in_flight_ = 0;   // started and not released
  bool limit_reached_ = false;
  bool refused_ = false;
};

}  // namespace

QueryExecutor::QueryExecutor(Options options, Registry* metrics)
    : options_(options),
      pool_(options.scan_threads),
      blocks_read_(metrics->NewCounter("oklog_query_blocks_read_total", "Blocks read and matched by queries.")),
      blocks_skipped_(metrics->NewCounter("oklog_query_blocks_skipped_total",
                                          "Blocks in a query's time range excluded by the block filter.")),
      bytes_scanned_(metrics->NewCounter("oklog_query_bytes_scanned_total",
                                         "Uncompressed bytes of the blocks read by queries.")),
      records_matched_(metrics->NewCounter("oklog_query_records_matched_total",
                                           "Records delivered by node-local queries.")),
      duplicates_(metrics->NewCounter("oklog_query_duplicates_dropped_total",
                                      "Records dropped by the query merge as duplicate ULIDs.")),
      corrupt_blocks_(metrics->NewCounter("oklog_query_corrupt_blocks_total",
                                          "Blocks that failed their checksum or LZ4 frame during a query.")) {}

QueryExecutor::~QueryExecutor() = default;

Status QueryExecutor::Run(const ScanRequest& request, const Matcher& matcher, RecordSink* sink,
                          const std::atomic<bool>& cancel, ScanStats* stats_out) {
  ScanStats stats;
  auto st = std::make_shared<RunState>();
  st->matcher = &matcher;
  st->range = UlidTextRange(request.from, request.to);
  st->blocks_read = blocks_read_;
  st->bytes_scanned = bytes_scanned_;
  st->segments = request.segments;
  std::sort(st->segments.begin(), st->segments.end(), [](const auto& a, const auto& b) {
    return a->low() != b->low() ? a->low() < b->low() : a->high() < b->high();
  });
  const bool desc = request.order == ScanOrder::kDescending;
  stats.segments = st->segments.size();

  // Groups of overlapping segments, in scan order.
  std::vector<std::vector<size_t>> groups;
  Ulid group_high;
  for (size_t i = 0; i < st->segments.size(); ++i) {
    const SegmentReader& s = *st->segments[i];
    if (s.high() < request.from || s.low() > request.to) continue;
    if (groups.empty() || s.low() > group_high) {
      groups.emplace_back();
      group_high = s.high();
    }
    groups.back().push_back(i);
    group_high = std::max(group_high, s.high());
  }
  if (desc) std::reverse(groups.begin(), groups.end());
  stats.groups = groups.size();

  // Tasks, group after group, each group's in merge order.
  std::vector<std::vector<Member>> members(groups.size());
  size_t total_tasks = 0;
  std::vector<std::vector<std::pair<size_t, size_t>>> group_blocks(groups.size());  // (member, block)
  size_t largest_group = 1;
  for (size_t g = 0; g < groups.size(); ++g) {
    largest_group = std::max(largest_group, groups[g].size());
    members[g].resize(groups[g].size());
    for (size_t m = 0; m < groups[g].size(); ++m) {
      const SegmentReader& s = *st->segments[groups[g][m]];
      const auto& blocks = s.blocks();
      for (size_t b = 0; b < blocks.size(); ++b) {
        size_t bi = desc ? blocks.size() - 1 - b : b;
        const BlockInfo& info = blocks[bi];
        if (info.last < request.from || info.first > request.to) continue;
        if (s.BlockBad(bi)) {  // stepped over; the caller reports the gap (StoreLog::UnhealedGaps)
          ++stats.bad_blocks;
          continue;
        }
        if (!s.BlockMayMatch(bi, matcher.block_filter())) {
          ++stats.blocks_skipped;
          continue;
        }
        group_blocks[g].emplace_back(m, bi);
      }
    }
    total_tasks += group_blocks[g].size();
  }
  st->tasks = std::vector<Task>(total_tasks);
  size_t next = 0;
  KeyOrder order{desc};
  for (size_t g = 0; g < groups.size(); ++g) {
    size_t begin = next;
    for (auto [m, bi] : group_blocks[g]) {
      Task& t = st->tasks[next++];
      t.segment = st->segments[groups[g][m]].get();
      t.block = bi;
      t.member = m;
      const BlockInfo& info = t.segment->blocks()[bi];
      (desc ? info.last : info.first).Encode(t.key);
    }
    if (groups[g].size() > 1) {
      // Merge order: by key, then member. Task objects are not movable: sort an index and
      // rebuild the slots in place.
      std::vector<size_t> idx(next - begin);
      for (size_t k = 0; k < idx.size(); ++k) idx[k] = begin + k;
      std::stable_sort(idx.begin(), idx.end(), [&](size_t a, size_t b) {
        return order.Before(st->tasks[a].key, st->tasks[a].member, st->tasks[b].key, st->tasks[b].member);
      });
      std::vector<std::tuple<const SegmentReader*, size_t, size_t>> sorted;
      sorted.reserve(idx.size());
      for (size_t k : idx) sorted.emplace_back(st->tasks[k].segment, st->tasks[k].block, st->tasks[k].member);
      for (size_t k = 0; k < sorted.size(); ++k) {
        Task& t = st->tasks[begin + k];
        std::tie(t.segment, t.block, t.member) = sorted[k];
        const BlockInfo& info = t.segment->blocks()[t.block];
        (desc ? info.last : info.first).Encode(t.key);
      }
    }
    for (size_t k = begin; k < next; ++k) members[g][st->tasks[k].member].tasks.push_back(k);
  }
  stats.blocks_selected = total_tasks;
  blocks_skipped_->Inc(stats.blocks_skipped);

  size_t window = options_.min_window_tasks ? options_.min_window_tasks : 2 * pool_.threads() + 2;
  window = std::max(window, largest_group + 1);
  Driver driver(st, &pool_, window, request, sink, cancel, on_corrupt_, &stats);
  bool complete = true;
  for (size_t g = 0; g < groups.size() && complete; ++g) complete = driver.EmitGroup(members[g]);
  driver.Settle();

  stats.blocks_read = st->read.load();
  stats.bytes_scanned = st->scanned.load();
  records_matched_->Inc(stats.records);
  duplicates_->Inc(stats.duplicates);
  corrupt_blocks_->Inc(stats.corrupt_blocks);
  if (stats_out) *stats_out = stats;
  if (complete || driver.stopped_by_limit()) return Status::Ok();
  return Status::Cancelled(driver.refused() ? "the client went away" : "query cancelled");
}

}  // namespace oklog
