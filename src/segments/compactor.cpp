#include "segments/compactor.h"

#include <algorithm>
#include <cstring>
#include <functional>

#include "common/log.h"
#include "segments/record_merge.h"
#include "segments/segment_format.h"

namespace oklog {
namespace {


uint64_t SatMul(uint64_t a, uint64_t b) {
  uint64_t r;
  return __builtin_mul_overflow(a, b, &r) ? UINT64_MAX : r;
}

// One input of the merge: the records of one block at a time. A bad block (marked, or found
// now: then marked through the store, which records its gap) is stepped over, so the output
// keeps every good record and the gap stays on record in the store's gaps.log.
class Cursor {
 public:
  Cursor(StoreLog* store, const SegmentReader* seg, size_t first_block)
      : store_(store), seg_(seg), next_block_(first_block) {}
  // Loads the next block with records; false at the end. Errors other than a bad block (I/O).
  Result<bool> Advance(uint64_t* bytes_read, uint64_t* bad_blocks) {
    while (next_block_ < seg_->blocks().size()) {
      size_t b = next_block_++;
      if (seg_->BlockBad(b)) {
        ++*bad_blocks;
        continue;
      }
      Status read = seg_->ReadBlock(b, &buf_);
      *bytes_read += seg_->blocks()[b].compressed_size;
      ParseStats ps;
      if (read.ok()) {
        recs_ = ParseRecords(buf_, &ps);
        if (ps.invalid != 0)
          read = Status::Corruption(seg_->path() + ": block " + std::to_string(b) + " holds invalid records");
      }
      if (read.code() == Code::kCorruption) {
        store_->MarkBlockBad(*seg_, b, read);
        ++*bad_blocks;
        recs_.clear();
        continue;
      }
      OKLOG_RETURN_IF_ERROR(read);
      pos_ = 0;
      if (!recs_.empty()) return true;
    }
    recs_.clear();
    pos_ = 0;
    return false;
  }
  std::string_view head() const { return recs_[pos_]; }
  // Moves past the head; false when the block is used up (call Advance).
  bool Next() { return ++pos_ < recs_.size(); }

 private:
  StoreLog* store_;
  const SegmentReader* seg_;
  size_t next_block_;
  std::string buf_;
  std::vector<std::string_view> recs_;
  size_t pos_ = 0;
};

}  // namespace

Compactor::Compactor(StoreLog* store, CompactorOptions options, Registry* m)
    : store_(store), options_(std::move(options)), retention_(store, options_.retention, m) {
  bytes_read_ = m->NewCounter("oklog_store_compaction_bytes_read_total",
                              "Compressed bytes of segment blocks read by compaction.");
  bytes_written_ = m->NewCounter("oklog_store_compaction_bytes_written_total",
                                 "Bytes of segment files written by compaction (and retention rewrites).");
  duplicates_ = m->NewCounter("oklog_store_compaction_duplicates_total", "Duplicate records dropped by compaction.");
  runs_ = m->NewCounterFamily("oklog_store_compaction_runs_total", "Compactions by result (ok, error, cancelled).",
                              {"result"});
  range_drops_ = m->NewCounter("oklog_store_range_drops_total",
                               "Ranges whose records were removed from the store (copies beyond N).");
  range_dropped_records_ = m->NewCounter("oklog_store_range_dropped_records_total",
                                         "Records removed from the store by range drops.");
  duration_ = m->NewHistogram("oklog_store_compact_duration_seconds", "Duration of one compaction.",
                              ExponentialBuckets(0.005, 2, 16));
}

Result<std::unique_ptr<Compactor>> Compactor::Create(StoreLog* store, CompactorOptions options, Registry* metrics) {
  if (options.fanout < 2) return Status::InvalidArgument("compaction fanout must be at least 2");
  if (options.target_bytes < 4096) return Status::InvalidArgument("segment target size must be at least 4 KiB");
  return std::unique_ptr<Compactor>(new Compactor(store, std::move(options), metrics));
}

Compactor::~Compactor() { Stop(); }

void Compactor::Start() {
  if (thread_.joinable()) return;
  stop_ = false;
  thread_ = std::thread([this] { Run(); });
}

void Compactor::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Compactor::Run() {
  while (!stop_) {
    auto r = RunOnce();
    if (r.ok() && r.value()) continue;
    if (!r.ok() && r.status().code() != Code::kCancelled)
      Logger("store")->error("compaction round failed: {}", r.status().ToString());
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, options_.idle_interval, [this] { return stop_.load(); });
  }
}

Result<bool> Compactor::RunOnce() {
  RetentionPlan plan = retention_.Decide();
  bool changed = retention_.Trash(plan.trash) > 0;
  // Gaps of expired records are no longer gaps: retention would have removed the records anyway.
  if (plan.cutoff_ms > 0) store_->gaps()->DropBelow(Ulid::MinAt(plan.cutoff_ms));
  changed |= retention_.Purge() > 0;
  auto ranges = RunDrops();
  if (!ranges.ok()) return ranges.status();
  if (ranges.value() > 0) return true;
  auto dropped = DropContainedSegments();
  if (!dropped.ok()) return dropped.status();
  if (dropped.value() > 0) return true;
  std::vector<std::shared_ptr<const SegmentReader>> inputs;
  if (!plan.rewrite.empty()) {
    inputs = {plan.rewrite.front()};
  } else {
    inputs = PickCompaction();
  }
  if (inputs.empty()) return changed;
  auto r = Compact(inputs, plan.cutoff_ms);
  if (!r.ok()) return r.status();
  return true;
}

void Compactor::RequestDrop(RangeDrop d) {
  std::lock_guard<std::mutex> lock(drops_mu_);
  drops_.push_back(std::move(d));
}

Result<size_t> Compactor::RunDrops(bool force) {
  const auto now = std::chrono::steady_clock::now();
  std::vector<RangeDrop> due;
  {
    std::lock_guard<std::mutex> lock(drops_mu_);
    if (drops_.empty()) return size_t{0};
    auto oldest = std::min_element(drops_.begin(), drops_.end(), [](const RangeDrop& a, const RangeDrop& b) {
                    return a.not_before < b.not_before;
                  })->not_before;
    if (!force && oldest + options_.drop_gather > now) return size_t{0};
    for (auto it = drops_.begin(); it != drops_.end();) {
      if (force || it->not_before <= now) {
        due.push_back(std::move(*it));
        it = drops_.erase(it);
      } else {
        ++it;
      }
    }
  }
  auto finish = [](RangeDrop& d, const Status& s) {
    if (d.done) d.done(s);
  };
  std::sort(due.begin(), due.end(), [](const RangeDrop& a, const RangeDrop& b) { return a.low < b.low; });
  std::vector<RangeDrop> go;
  for (RangeDrop& d : due) {
    if (!go.empty() && d.low <= go.back().high) {
      RequestDrop(std::move(d));  // overlaps one made now: the next round
      continue;
    }
    if (d.still_wanted && !d.still_wanted()) {
      finish(d, Status::Cancelled("no longer held by enough other stores"));
      continue;
    }
    go.push_back(std::move(d));
  }
  if (go.empty()) return size_t{0};
  Drops drops;
  std::vector<std::shared_ptr<const SegmentReader>> inputs;
  for (const RangeDrop& d : go) {
    drops.ranges.emplace_back(d.low.ToString(), d.high.ToString());
    drops.max.push_back(d.max_records);
    for (auto& seg : store_->Select(d.low, d.high))
      if (std::find(inputs.begin(), inputs.end(), seg) == inputs.end()) inputs.push_back(std::move(seg));
  }
  std::sort(inputs.begin(), inputs.end(), [](const auto& a, const auto& b) { return a->low() < b->low(); });
  drops.dropped.assign(go.size(), 0);
  drops.over.assign(go.size(), false);
  auto start = std::chrono::steady_clock::now();
  Result<CompactionResult> r = inputs.empty() ? Result<CompactionResult>(CompactionResult{}) : DoCompact(inputs, 0, &drops);
  duration_->Observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  runs_->With({r.ok() ? "ok" : r.status().code() == Code::kCancelled ? "cancelled" : "error"})->Inc();
  auto log = Logger("store");
  if (!r.ok()) {
    const bool counted = std::find(drops.over.begin(), drops.over.end(), true) != drops.over.end();
    for (size_t i = 0; i < go.size(); ++i) {
      if (counted && !drops.over[i]) {
        RequestDrop(std::move(go[i]));  // not the one at fault: again at the next round
        continue;
      }
      finish(go[i], r.status());
    }
    if (r.status().code() != Code::kCancelled)
      log->warn("range drop of {} range(s) over {} segment(s) not made: {}", go.size(), inputs.size(),
                r.status().ToString());
    return r.status().code() == Code::kCancelled ? r.status() : Result<size_t>(size_t{0});
  }
  uint64_t gone = 0;
  for (size_t i = 0; i < go.size(); ++i) {
    gone += drops.dropped[i];
    finish(go[i], Status::Ok());
  }
  range_drops_->Inc(go.size());
  range_dropped_records_->Inc(gone);
  log->info("dropped {} range(s): {} records out of {} segment(s), {} records kept in {} output(s)", go.size(), gone,
            inputs.size(), r->records, r->outputs);
  return go.size();
}

Result<size_t> Compactor::DropContainedSegments() {
  const auto segs = store_->All();  // sorted by low
  const size_t n = segs.size();
  size_t dropped = 0;
  std::string block;
  // Smallest first: of a segment and the compaction output that holds it, the segment goes.
  std::vector<size_t> order(n);
  for (size_t i = 0; i < n; ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return segs[a]->raw_bytes() < segs[b]->raw_bytes(); });
  // Forget verdicts about segments that are gone.
  std::erase_if(not_contained_, [&](const auto& e) {
    return std::find(segs.begin(), segs.end(), e.first) == segs.end();
  });
  for (size_t i : order) {
    const auto& m = segs[i];
    if (m->raw_bytes() > options_.target_bytes) continue;
    // Every other segment overlapping m, and the raw bytes of their blocks within m's range.
    std::vector<std::pair<const SegmentReader*, size_t>> blocks;
    uint64_t cost = 0;
    for (size_t j = 0; j < n; ++j) {
      if (j == i || segs[j]->high() < m->low() || segs[j]->low() > m->high()) continue;
      const auto& bl = segs[j]->blocks();
      for (size_t b = 0; b < bl.size(); ++b)
        if (bl[b].last >= m->low() && bl[b].first <= m->high()) {
          blocks.emplace_back(segs[j].get(), b);
          cost += bl[b].raw_size;
        }
    }
    if (blocks.empty() || cost > 4 * options_.target_bytes) continue;
    // Checked before against the same overlapping blocks: still not contained.
    auto seen = not_contained_.find(m);
    if (seen != not_contained_.end() && seen->second == blocks.size()) continue;
    not_contained_[m] = blocks.size();
    std::vector<std::string> others;  // ULIDs present elsewhere
    bool ok = true;
    for (auto [seg, b] : blocks) {
      if (!seg->ReadBlock(b, &block).ok()) {
        ok = false;
        break;
      }
      ParseStats ps;
      for (auto r : ParseRecords(block, &ps)) others.emplace_back(r.substr(0, Ulid::kTextSize));
    }
    if (!ok) continue;
    std::sort(others.begin(), others.end());
    bool contained = true;
    for (size_t b = 0; contained && b < m->blocks().size(); ++b) {
      if (!m->ReadBlock(b, &block).ok()) {
        contained = false;
        break;
      }
      ParseStats ps;
      for (auto r : ParseRecords(block, &ps))
        if (!std::binary_search(others.begin(), others.end(), r.substr(0, Ulid::kTextSize))) {
          contained = false;
          break;
        }
    }
    if (!contained) continue;
    // Every record of m is in another segment: m goes without writing anything.
    OKLOG_RETURN_IF_ERROR(store_->Swap({m}, {}));
    if (Status s = store_->env()->RemoveFile(m->path()); !s.ok() && s.code() != Code::kNotFound) return s;
    Logger("store")->info("removed segment file={}: all of its {} records are in other segments", m->path(),
                          m->records());
    duplicates_->Inc(m->records());
    ++dropped;
    return dropped;  // the set changed: one at a time
  }
  return dropped;
}

std::vector<std::shared_ptr<const SegmentReader>> Compactor::PickCompaction() const {
  const auto segs = store_->All();  // sorted by low
  const size_t n = segs.size();
  if (n < 2) return {};
  // 1. Overlapping runs, unless the others are tiny next to the largest.
  for (size_t i = 0; i < n;) {
    size_t j = i;
    Ulid high = segs[i]->high();
    while (j + 1 < n && segs[j + 1]->low() <= high) {
      ++j;
      high = std::max(high, segs[j]->high());
    }
    if (j > i) {
      uint64_t total = 0, largest = 0;
      for (size_t k = i; k <= j; ++k) {
        total += segs[k]->raw_bytes();
        largest = std::max(largest, segs[k]->raw_bytes());
      }
      if (SatMul(total - largest, options_.fanout) >= largest)
        return {segs.begin() + static_cast<ptrdiff_t>(i), segs.begin() + static_cast<ptrdiff_t>(j) + 1};
    }
    i = j + 1;
  }
  // 2. Size tiers.
  const uint64_t target = options_.target_bytes, fanout = options_.fanout;
  auto level = [&](uint64_t raw) {
    int k = 0;
    for (uint64_t v = std::max<uint64_t>(raw, 1); v < target; v = SatMul(v, fanout)) ++k;
    return k;
  };
  // sum is at a level <= k when sum * fanout^k >= target.
  auto reaches = [&](uint64_t sum, int k) {
    uint64_t v = sum;
    for (int i = 0; i < k; ++i) v = SatMul(v, fanout);
    return v >= target;
  };
  std::vector<int> levels(n);
  int deepest = 0;
  for (size_t i = 0; i < n; ++i) deepest = std::max(deepest, levels[i] = level(segs[i]->raw_bytes()));
  for (int k = deepest; k >= 2; --k) {
    size_t start = 0;
    uint64_t sum = 0;
    for (size_t i = 0; i < n; ++i) {
      if (levels[i] < k) {
        start = i + 1;
        sum = 0;
        continue;
      }
      sum += segs[i]->raw_bytes();
      if (i > start && reaches(sum, k - 1))
        return {segs.begin() + static_cast<ptrdiff_t>(start), segs.begin() + static_cast<ptrdiff_t>(i) + 1};
    }
  }
  return {};
}

Result<CompactionResult> Compactor::Compact(const std::vector<std::shared_ptr<const SegmentReader>>& inputs,
                                            uint64_t expire_before_ms) {
  auto start = std::chrono::steady_clock::now();
  auto r = DoCompact(inputs, expire_before_ms);
  duration_->Observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  const char* result = r.ok() ? "ok" : r.status().code() == Code::kCancelled ? "cancelled" : "error";
  runs_->With({result})->Inc();
  if (r.ok()) {
    Logger("store")->info(
        "compacted {} segment(s) into {}: read {} bytes, wrote {} bytes, {} records, {} duplicates, {} bad block(s) "
        "stepped over",
        r->inputs, r->outputs, r->bytes_read, r->bytes_written, r->records, r->duplicates, r->bad_blocks);
  } else if (r.status().code() != Code::kCancelled) {
    Logger("store")->error("compaction of {} segment(s) failed: {}", inputs.size(), r.status().ToString());
  }
  return r;
}

Result<CompactionResult> Compactor::DoCompact(const std::vector<std::shared_ptr<const SegmentReader>>& inputs,
                                              uint64_t expire_before_ms, Drops* drops) {
  CompactionResult res;
  res.inputs = inputs.size();
  if (inputs.empty()) return res;
  const std::string& dir = store_->dir();
  Env* env = store_->env();

  std::vector<std::string> outputs;
  struct Aside {
    size_t input;
    std::string from, to;
  };
  std::vector<Aside> aside;
  std::unique_ptr<SegmentWriter> writer;
  char first[Ulid::kTextSize], last[Ulid::kTextSize];

  // On failure: outputs go, inputs stay as they were (each step best effort: start-up recovery
  // and the next round handle what is left).
  auto fail = [&](Status s) -> Status {
    if (writer) writer->Abandon();
    for (const auto& p : outputs) (void)env->RemoveFile(p);
    for (const auto& a : aside) (void)env->RenameFile(a.to, a.from);
    (void)env->SyncDir(dir);  // best effort: start-up recovery and the next round handle a lost rename or unlink
    bytes_read_->Inc(res.bytes_read);
    return s;
  };
  // Writes the current output under its final name; on an error the caller must fail().
  auto finish_output = [&]() -> Status {
    SegmentName name{*Ulid::ParseCanonical(first), *Ulid::ParseCanonical(last)};
    std::string final_path = dir + "/" + name.FileName();
    if (env->GetFileInfo(final_path).ok()) {
      // Only an input may be replaced: the output holds every record of an input of its range.
      size_t idx = inputs.size();
      for (size_t i = 0; i < inputs.size(); ++i)
        if (inputs[i]->path() == final_path) idx = i;
      if (idx == inputs.size()) return Status::AlreadyExists("output " + final_path + " exists and is not an input");
      std::string to = final_path + ".replaced";
      OKLOG_RETURN_IF_ERROR(env->RenameFile(final_path, to));
      aside.push_back({idx, final_path, to});
      (void)env->SyncDir(dir);  // best effort: start-up recovery and the next round handle a lost rename or unlink
    }
    auto path = writer->Finish();
    if (!path.ok()) return path.status();
    outputs.push_back(path.value());
    writer.reset();
    if (auto info = env->GetFileInfo(outputs.back()); info.ok()) res.bytes_written += info->size;
    return Status::Ok();
  };
  std::function<Status(std::string_view)> emit = [&](std::string_view rec) -> Status {
    if (!writer) {
      auto w = store_->NewWriter();
      if (!w.ok()) return w.status();
      writer = std::move(w).value();
      std::memcpy(first, rec.data(), Ulid::kTextSize);
    }
    Status s = writer->Append(rec);
    if (s.code() == Code::kResourceExhausted && writer->records() > 0) {  // block limit: split here
      OKLOG_RETURN_IF_ERROR(finish_output());
      return emit(rec);
    }
    OKLOG_RETURN_IF_ERROR(s);
    std::memcpy(last, rec.data(), Ulid::kTextSize);
    ++res.records;
    if (writer->raw_bytes() >= options_.target_bytes) return finish_output();
    return Status::Ok();
  };

  // The drop range holding a record (its index), or -1.
  auto in_drop = [drops](std::string_view rec) -> ssize_t {
    if (drops == nullptr || drops->ranges.empty()) return -1;
    std::string_view id = rec.substr(0, Ulid::kTextSize);
    auto it = std::upper_bound(drops->ranges.begin(), drops->ranges.end(), id,
                               [](std::string_view v, const auto& r) { return v < std::string_view(r.first); });
    if (it == drops->ranges.begin() || id > std::string_view(std::prev(it)->second)) return -1;
    return std::prev(it) - drops->ranges.begin();
  };

  // The merge.
  std::vector<Cursor> cursors;
  cursors.reserve(inputs.size());
  MergeByUlid merge;
  for (size_t i = 0; i < inputs.size(); ++i) {
    size_t from = expire_before_ms ? Retention::FirstLiveBlock(*inputs[i], expire_before_ms) : 0;
    cursors.emplace_back(store_, inputs[i].get(), from);
  }
  // Offers input c's next record, if it has one; false with *err set when its block is unreadable.
  auto offer_next = [&](size_t c, bool first, Status* err) {
    if (!first && cursors[c].Next()) {
      merge.Offer(c, cursors[c].head());
      return true;
    }
    auto more = cursors[c].Advance(&res.bytes_read, &res.bad_blocks);
    if (!more.ok()) {
      *err = fail(more.status());
      return false;
    }
    if (more.value()) merge.Offer(c, cursors[c].head());
    return true;
  };
  for (size_t i = 0; i < inputs.size(); ++i) {
    Status err;
    if (!offer_next(i, true, &err)) return err;
  }
  uint64_t since_stop_check = 0;
  while (!merge.empty()) {
    size_t c = merge.Pop().source;
    std::string_view rec = cursors[c].head();
    if (merge.Accept(rec)) {
      if (ssize_t d = in_drop(rec); d >= 0) {
        ++drops->dropped[static_cast<size_t>(d)];
        ++res.range_dropped;
      } else {
        Status s = emit(rec);
        if (!s.ok()) return fail(s);
      }
    }
    Status err;
    if (!offer_next(c, false, &err)) return err;
    if (++since_stop_check == 4096) {
      since_stop_check = 0;
      if (stop_) return fail(Status::Cancelled("compactor stopping"));
    }
  }
  res.duplicates = merge.duplicates();
  if (drops != nullptr) {
    bool over = false;
    for (size_t i = 0; i < drops->ranges.size(); ++i)
      if (drops->dropped[i] > drops->max[i]) over = drops->over[i] = true;
    if (over)
      return fail(Status::InvalidArgument("a drop range holds more records than its batches account for"));
  }
  if (writer && writer->records() > 0) {
    Status s = finish_output();
    if (!s.ok()) return fail(s);
  }
  writer.reset();
  bytes_read_->Inc(res.bytes_read);

  // Outputs are durable: the store serves them instead of the inputs, then the inputs go.
  Status s = store_->Swap(inputs, outputs);
  if (!s.ok()) return fail(s);
  for (size_t i = 0; i < inputs.size(); ++i) {
    std::string path = inputs[i]->path();
    for (const auto& a : aside)
      if (a.input == i) path = a.to;
    if (Status u = env->RemoveFile(path); !u.ok() && u.code() != Code::kNotFound)
      Logger("store")->warn("unlinking compacted segment file={}: {}", path, u.ToString());
  }
  (void)env->SyncDir(dir);  // best effort: start-up recovery and the next round handle a lost rename or unlink
  res.outputs = outputs.size();
  bytes_written_->Inc(res.bytes_written);
  duplicates_->Inc(res.duplicates);
  return res;
}

}  // namespace oklog
