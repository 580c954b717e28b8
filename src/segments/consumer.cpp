#include "segments/consumer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <span>
#include <unordered_set>

#include "common/fs/env.h"
#include "common/log.h"
#include "segments/record_merge.h"

namespace oklog {
namespace {

// When a store segment of the same name exists (a crash between writing it and committing the
// ingest segments), the batch is safe only if every one of its records is already there.
Status CheckAlreadyStored(Env* env, const std::string& path, std::span<const std::string_view> records) {
  auto reader = SegmentReader::Open(path, env);
  if (!reader.ok()) return reader.status();
  std::unordered_set<std::string> stored;
  std::string block;
  for (size_t i = 0; i < (*reader)->blocks().size(); ++i) {
    OKLOG_RETURN_IF_ERROR((*reader)->ReadBlock(i, &block));
    ParseStats ps;
    for (auto r : ParseRecords(block, &ps)) stored.emplace(r.substr(0, Ulid::kTextSize));
  }
  for (auto r : records)
    if (!stored.count(std::string(r.substr(0, Ulid::kTextSize))))
      return Status::AlreadyExists("segment " + path + " exists with other records");
  return Status::Ok();
}

}  // namespace

LocalConsumer::LocalConsumer(IngestLog* ingest, StoreLog* store, ConsumerOptions options, Registry* m)
    : ingest_(ingest), store_(store), options_(options) {
  consumed_segments_ = m->NewCounter("oklog_store_consumed_segments", "Ingest segments consumed.");
  consumed_bytes_ = m->NewCounter("oklog_store_consumed_bytes", "Bytes of ingest segments consumed.");
  invalid_records_ = m->NewCounter("oklog_store_invalid_records_total",
                                   "Lines in ingest segments that were not valid records, dropped.");
  duplicates_ = m->NewCounter("oklog_store_duplicate_records_total", "Duplicate ULIDs dropped while merging.");
  failures_ = m->NewCounter("oklog_store_consume_failures_total", "Batches failed back to the ingest log.");
  store_records_ = m->NewCounter("oklog_store_written_records_total", "Records written to store segments.");
}

std::unique_ptr<LocalConsumer> LocalConsumer::Start(IngestLog* ingest, StoreLog* store, ConsumerOptions options,
                                                    Registry* metrics) {
  std::unique_ptr<LocalConsumer> c(new LocalConsumer(ingest, store, options, metrics));
  c->thread_ = std::thread([p = c.get()] { p->Run(); });
  return c;
}

LocalConsumer::~LocalConsumer() { Stop(); }

void LocalConsumer::Stop() {
  if (stop_.exchange(true)) return;  // once: the ingest log may be gone after the first Stop
  ingest_->Shutdown();
  if (thread_.joinable()) thread_.join();
}

void LocalConsumer::Run() {
  while (!stop_) {
    ingest_->ExpirePending(std::chrono::steady_clock::now());
    if (options_.store_guard != nullptr && options_.store_guard->full()) {
      for (int i = 0; i < 12 && !stop_; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
      continue;
    }
    if (!ingest_->WaitForFlushed(std::chrono::milliseconds(1000))) continue;
    auto r = ConsumeOnce();
    if (!r.ok()) {
      // Back off, but stay responsive to Stop.
      auto until = std::chrono::steady_clock::now() + options_.retry_backoff;
      while (!stop_ && std::chrono::steady_clock::now() < until)
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
}

Result<uint64_t> LocalConsumer::ConsumeOnce() {
  auto batch = ingest_->Claim(std::min(options_.target_bytes, options_.max_batch_bytes));
  if (batch.empty()) return uint64_t{0};
  auto r = ConsumeBatch(batch);
  if (r.ok()) {
    for (const auto& p : batch) {
      Status s = ingest_->Commit(p.id);
      if (!s.ok()) Logger("store")->error("commit segment={}: {}", p.id, s.ToString());
    }
    consumed_segments_->Inc(batch.size());
  } else {
    failures_->Inc();
    if (options_.store_guard != nullptr) options_.store_guard->NoteWriteError(r.status());
    Logger("store")->error("consuming {} segment(s) failed: {}; returned to flushed", batch.size(),
                           r.status().ToString());
    for (const auto& p : batch) (void)ingest_->Fail(p.id);
  }
  return r;
}

Result<uint64_t> LocalConsumer::ConsumeBatch(const std::vector<PendingSegment>& batch) {
  // Read every claimed file into one buffer, then take views into it.
  read_buf_.clear();
  std::vector<std::pair<size_t, size_t>> spans;
  for (const auto& p : batch) {
    size_t off = read_buf_.size();
    OKLOG_RETURN_IF_ERROR(AppendFileContents(ingest_->env(), p.path, &read_buf_));
    spans.emplace_back(off, read_buf_.size() - off);
    consumed_bytes_->Inc(read_buf_.size() - off);
  }
  std::vector<std::string_view> buffers;
  for (auto [off, len] : spans) buffers.push_back(std::string_view(read_buf_).substr(off, len));
  MergedRecords m = MergeBuffers(buffers);
  if (m.invalid) {
    invalid_records_->Inc(m.invalid);
    Logger("store")->warn("dropped {} invalid line(s) from {} ingest segment(s)", m.invalid, batch.size());
  }
  duplicates_->Inc(m.duplicates);
  if (m.records.empty()) return uint64_t{0};
  const std::vector<std::string_view>& merged = m.records;
  const uint64_t merged_bytes = m.bytes;
  // Large batches are cut into consecutive ranges written as separate segments on parallel
  // threads: compressing and filtering blocks is most of the store's CPU, and the ranges do not
  // overlap, so nothing else changes (compaction may join them later).
  size_t parts = 1;
  if (merged_bytes >= options_.parallel_min_bytes)
    parts = std::clamp<size_t>(std::thread::hardware_concurrency(), 1, options_.max_parallel_writers);
  std::vector<std::span<const std::string_view>> ranges;
  size_t begin = 0;
  uint64_t acc = 0;
  for (size_t i = 0; i < merged.size(); ++i) {
    acc += merged[i].size();
    if (ranges.size() + 1 < parts && acc >= merged_bytes * (ranges.size() + 1) / parts) {
      ranges.emplace_back(merged.data() + begin, i + 1 - begin);
      begin = i + 1;
    }
  }
  if (begin < merged.size()) ranges.emplace_back(merged.data() + begin, merged.size() - begin);
  std::vector<Result<std::string>> results(ranges.size(), Status::Cancelled("not run"));
  auto write_range = [&](size_t k) { results[k] = WriteSegment(ranges[k]); };
  std::vector<std::thread> threads;
  for (size_t k = 1; k < ranges.size(); ++k) threads.emplace_back(write_range, k);
  write_range(0);
  for (auto& t : threads) t.join();
  // Make every written part visible; the batch fails (and is consumed again) if any failed.
  Status first_error;
  uint64_t written = 0;
  for (size_t k = 0; k < ranges.size(); ++k) {
    if (!results[k].ok()) {
      if (first_error.ok()) first_error = results[k].status();
      continue;
    }
    if (results[k].value().empty()) {  // already stored by an earlier attempt
      written += ranges[k].size();
      continue;
    }
    Status s = store_->Add(results[k].value());
    if (!s.ok() && first_error.ok()) first_error = s;
    if (s.ok()) written += ranges[k].size();
    Logger("store")->debug("stored segment={} records={}", results[k].value(), ranges[k].size());
  }
  store_records_->Inc(written);
  if (!first_error.ok()) return first_error;
  return written;
}

Result<std::string> LocalConsumer::WriteSegment(std::span<const std::string_view> records) {
  auto writer = store_->NewWriter();
  if (!writer.ok()) return writer.status();
  for (std::string_view rec : records) {
    Status s = (*writer)->Append(rec);
    if (!s.ok()) {
      (*writer)->Abandon();
      return s;
    }
  }
  auto path = (*writer)->Finish();
  if (path.ok()) return path;
  (*writer)->Abandon();
  if (path.status().code() != Code::kAlreadyExists) return path.status();
  SegmentName name{*Ulid::Parse(records.front().substr(0, Ulid::kTextSize)),
                   *Ulid::Parse(records.back().substr(0, Ulid::kTextSize))};
  std::string existing = store_->dir() + "/" + name.FileName();
  OKLOG_RETURN_IF_ERROR(CheckAlreadyStored(store_->env(), existing, records));
  Logger("store")->info("segment={} already holds these records (consumed again after a crash)", existing);
  return std::string();
}

}  // namespace oklog
