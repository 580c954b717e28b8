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

// One input of the merge: the records of one block at a time.
class Cursor {
 public:
  Cursor(const SegmentReader* seg, size_t first_block) : seg_(seg), next_block_(first_block) {}
  // Loads the next block with records; false at the end. Corruption from a bad block.
  Result<bool> Advance(uint64_t* bytes_read) {
    while (next_block_ < seg_->blocks().size()) {
      size_t b = next_block_++;
      OKLOG_RETURN_IF_ERROR(seg_->ReadBlock(b, &buf_));
      *bytes_read += seg_->blocks()[b].compressed_size;
      ParseStats ps;
      recs_ = ParseRecords(buf_, &ps);
      if (ps.invalid != 0)
        return Status::Corruption(seg_->path() + ": block " + std::to_string(b) + " holds invalid records");
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
  changed |= retention_.Purge() > 0;
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
    Logger("store")->info("compacted {} segment(s) into {}: read {} bytes, wrote {} bytes, {} records, {} duplicates",
                          r->inputs, r->outputs, r->bytes_read, r->bytes_written, r->records, r->duplicates);
  } else if (r.status().code() != Code::kCancelled) {
    Logger("store")->error("compaction of {} segment(s) failed: {}", inputs.size(), r.status().ToString());
  }
  return r;
}

Result<CompactionResult> Compactor::DoCompact(const std::vector<std::shared_ptr<const SegmentReader>>& inputs,
                                              uint64_t expire_before_ms) {
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

  // The merge.
  std::vector<Cursor> cursors;
  cursors.reserve(inputs.size());
  MergeByUlid merge;
  for (size_t i = 0; i < inputs.size(); ++i) {
    size_t from = expire_before_ms ? Retention::FirstLiveBlock(*inputs[i], expire_before_ms) : 0;
    cursors.emplace_back(inputs[i].get(), from);
  }
  // Offers input c's next record, if it has one; false with *err set when its block is unreadable.
  auto offer_next = [&](size_t c, bool first, Status* err) {
    if (!first && cursors[c].Next()) {
      merge.Offer(c, cursors[c].head());
      return true;
    }
    auto more = cursors[c].Advance(&res.bytes_read);
    if (!more.ok()) {
      *err = fail(more.status());
      if (err->code() == Code::kCorruption) store_->Quarantine(inputs[c]->path(), *err);
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
      Status s = emit(rec);
      if (!s.ok()) return fail(s);
    }
    Status err;
    if (!offer_next(c, false, &err)) return err;
    if (++since_stop_check == 4096) {
      since_stop_check = 0;
      if (stop_) return fail(Status::Cancelled("compactor stopping"));
    }
  }
  res.duplicates = merge.duplicates();
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
