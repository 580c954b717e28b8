#include "segments/cluster_consumer.h"

#include <algorithm>
#include <random>
#include <set>
#include <span>

#include "common/log.h"
#include "common/ulid.h"
#include "segments/holdings.h"
#include "segments/record_merge.h"
#include "segments/segment_file.h"
#include "segments/segment_messages.h"
#include "segments/segment_rpc.h"

namespace oklog {

std::unique_ptr<ClusterConsumer> ClusterConsumer::Start(rpc::RpcBridge* bridge, std::function<ClusterPeers()> peers,
                                                        StoreLog* store, ClusterConsumerOptions options,
                                                        Registry* m) {
  std::unique_ptr<ClusterConsumer> c(new ClusterConsumer);
  c->bridge_ = bridge;
  c->peers_ = std::move(peers);
  c->store_ = store;
  c->options_ = options;
  c->consumed_segments_ = m->NewCounter("oklog_store_consumed_segments", "Ingest segments consumed.");
  c->consumed_bytes_ = m->NewCounter("oklog_store_consumed_bytes", "Bytes of ingest segments consumed.");
  c->invalid_ = m->NewCounter("oklog_store_invalid_records_total",
                              "Lines in ingest segments that were not valid records, dropped.");
  c->duplicates_ = m->NewCounter("oklog_store_duplicate_records_total", "Duplicate ULIDs dropped while merging.");
  c->failures_ = m->NewCounter("oklog_store_consume_failures_total", "Batches failed back to the ingest log.");
  c->records_ = m->NewCounter("oklog_store_written_records_total", "Records written to store segments.");
  c->replicas_ = m->NewCounter("oklog_store_replicas_sent_total", "Merged segments replicated to a store node.");
  c->invalid_replies_ = m->NewCounter("oklog_store_invalid_replies_total",
                                      "segment.next replies from ingesters that did not decode (nothing consumed).");
  c->copy_failures_ = m->NewCounter("oklog_store_replica_copy_failures_total",
                                    "Replica copies that failed; each is tried on another live store.");
  c->waiting_ = m->NewGauge("oklog_store_replication_waiting",
                            "1 while fewer store nodes are alive than the replication factor (data waits).");
  for (size_t i = 0; i < std::max<size_t>(1, options.consumers); ++i)
    c->threads_.emplace_back([p = c.get(), i] { p->Run(i); });
  return c;
}

ClusterConsumer::~ClusterConsumer() { Join(); }

void ClusterConsumer::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
}

void ClusterConsumer::Join() {
  Stop();
  for (auto& t : threads_)
    if (t.joinable()) t.join();
}

void ClusterConsumer::Sleep(std::chrono::milliseconds d) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, d, [&] { return stop_.load(); });
}

void ClusterConsumer::Run(size_t index) {
  auto log = Logger("store");
  size_t rr = index;
  while (!stop_) {
    ClusterPeers p;
    if (!bridge_->RunOnLoop([&] { p = peers_(); }).ok()) break;
    if (p.store.size() < options_.replication_factor) {
      waiting_->Set(1);
      const int64_t now = static_cast<int64_t>(NowUnixMs());
      int64_t last = last_wait_log_ms_.load();
      if (now - last >= 10000 && last_wait_log_ms_.compare_exchange_strong(last, now))
        log->warn("not consuming: {} store node(s) alive, replication factor {}; data waits on the ingesters",
                  p.store.size(), options_.replication_factor);
      Sleep(std::chrono::milliseconds(250));
      continue;
    }
    waiting_->Set(0);
    if (options_.store_guard != nullptr && options_.store_guard->full()) {
      Sleep(std::chrono::milliseconds(250));
      continue;
    }
    bool got = false;
    for (size_t k = 0; k < p.ingest.size() && !stop_ && !got; ++k) {
      const std::string& addr = p.ingest[(rr + k) % p.ingest.size()];
      Result<std::string> r = bridge_->Call(addr, kSegmentNext, EncodeSegmentNext(options_.max_batch_bytes),
                                            options_.rpc_timeout);
      if (!r.ok()) {
        log->debug("segment.next on {}: {}", addr, r.status().ToString());
        continue;
      }
      Result<std::vector<ClaimedSegment>> claimed = DecodeClaimedSegments(*r);
      if (!claimed.ok()) {
        // What it claimed for us (if anything) times out back to flushed on its side.
        invalid_replies_->Inc();
        log->warn("segment.next on {}: {}", addr, claimed.status().ToString());
        continue;
      }
      if (claimed->empty()) continue;
      std::vector<std::string> ids;
      for (ClaimedSegment& c : *claimed) ids.push_back(std::move(c.id));
      got = true;
      rr = (rr + k + 1) % p.ingest.size();  // the next batch from the next ingester
      if (!ConsumeBatch(addr, ids, p)) Sleep(std::chrono::milliseconds(200));
    }
    if (!got) Sleep(options_.idle_poll);
  }
}

bool ClusterConsumer::ConsumeBatch(const std::string& ingest_addr, const std::vector<std::string>& ids,
                                   const ClusterPeers& peers) {
  auto log = Logger("store");
  const std::string id_list = EncodeSegmentIds(ids);
  auto fail = [&](const std::string& why) {
    failures_->Inc();
    log->warn("batch of {} segment(s) from {} failed: {}; returned to the ingester", ids.size(), ingest_addr, why);
    Result<std::string> r = bridge_->Call(ingest_addr, kSegmentFailed, id_list, options_.rpc_timeout);
    if (!r.ok()) log->warn("segment.failed on {}: {} (the claim times out instead)", ingest_addr, r.status().ToString());
    return false;
  };
  // Read every segment (concurrently), then merge.
  std::vector<std::future<Result<std::string>>> reads;
  for (const auto& id : ids) reads.push_back(bridge_->CallAsync(ingest_addr, kSegmentRead, EncodeSegmentId(id), options_.rpc_timeout));
  std::vector<std::string> bufs;
  Status read_error;
  for (auto& f : reads) {
    Result<std::string> r = f.get();
    if (!r.ok()) {
      if (read_error.ok()) read_error = r.status();
      continue;
    }
    consumed_bytes_->Inc(r->size());
    bufs.push_back(std::move(r).value());
  }
  if (!read_error.ok()) return fail("segment.read: " + read_error.ToString());
  MergedRecords m = MergeBuffers(std::vector<std::string_view>(bufs.begin(), bufs.end()));
  if (m.invalid) invalid_->Inc(m.invalid);
  duplicates_->Inc(m.duplicates);
  const std::vector<std::string_view>& merged = m.records;
  if (!merged.empty()) {
    // Encode once; every replica gets these bytes (the remote ones over segment.replicate_file).
    Result<std::vector<Encoded>> images = Encode(merged, m.bytes);
    if (!images.ok()) return fail("encoding: " + images.status().ToString());
    // N distinct live store nodes, chosen at random so load spreads (alive before suspect).
    // A copy that fails goes to a spare live store instead, so one frozen or dead store delays
    // a batch by one call, not until it is back.
    Status replicated = Replicate(*images, merged, peers.store);
    if (!replicated.ok()) return fail("replication: " + replicated.message());
    records_->Inc(merged.size());
  }
  Result<std::string> c = bridge_->Call(ingest_addr, kSegmentCommit, id_list, options_.rpc_timeout);
  if (!c.ok()) {
    // Stored N times, but the ingester will hand the segments out again: duplicates, which
    // queries and compaction remove.
    log->warn("segment.commit on {}: {}", ingest_addr, c.status().ToString());
    return true;
  }
  consumed_segments_->Inc(ids.size());
  log->debug("consumed {} segment(s) from {}: {} records", ids.size(), ingest_addr, merged.size());
  return true;
}

namespace {
// Stores to copy to, best first: alive, then suspect, then those gossiping a full disk (they
// refuse replicas; tried last rather than never, in case the gossip is stale).
void OrderCandidates(std::vector<ClusterPeers::Store>* c) {
  auto rank = [](const ClusterPeers::Store& s) { return s.full ? 2 : s.suspect ? 1 : 0; };
  std::stable_sort(c->begin(), c->end(), [&](const auto& a, const auto& b) { return rank(a) < rank(b); });
}
}  // namespace

Status ClusterConsumer::Replicate(const std::vector<Encoded>& images, const std::vector<std::string_view>& merged,
                                  std::vector<ClusterPeers::Store> candidates) {
  static thread_local std::mt19937_64 rng(RandomU64());
  std::shuffle(candidates.begin(), candidates.end(), rng);
  OrderCandidates(&candidates);
  std::set<std::string> tried;
  size_t copies = 0;
  std::string errors;
  bool refreshed = false;
  while (copies < options_.replication_factor && !stop_) {
    // The next stores to try: as many as copies are missing, none tried before this batch.
    std::vector<ClusterPeers::Store> round;
    for (const auto& c : candidates)
      if (round.size() < options_.replication_factor - copies && tried.insert(c.name).second) round.push_back(c);
    if (round.empty()) {
      if (refreshed) break;
      // Every store of the batch's view was tried: take the view again, stores may have joined.
      refreshed = true;
      ClusterPeers now;
      if (!bridge_->RunOnLoop([&] { now = peers_(); }).ok()) break;
      candidates = std::move(now.store);
      std::shuffle(candidates.begin(), candidates.end(), rng);
      OrderCandidates(&candidates);
      continue;
    }
    std::vector<std::pair<std::string, std::vector<std::future<Result<std::string>>>>> remote;
    bool local = false;
    for (const auto& t : round) {
      if (t.is_self && store_ != nullptr) {
        local = true;
        continue;
      }
      auto& calls = remote.emplace_back(t.name, std::vector<std::future<Result<std::string>>>{}).second;
      for (const Encoded& e : images)
        calls.push_back(bridge_->CallAsync(t.addr, kSegmentReplicateFile, e.image.bytes, options_.rpc_timeout));
    }
    if (local) {
      Status ls;
      for (const Encoded& e : images) {
        Result<uint64_t> w = store_->InstallReplica(
            e.image, std::span<const std::string_view>(merged).subspan(e.first, e.image.records));
        if (!w.ok()) {
          ls = w.status();
          break;
        }
      }
      if (ls.ok()) {
        ++copies;
        replicas_->Inc();
      } else {
        if (options_.store_guard != nullptr) options_.store_guard->NoteWriteError(ls);
        errors += " local: " + ls.ToString() + ";";
      }
    }
    for (auto& [name, calls] : remote) {
      Status rs;
      for (auto& f : calls) {
        Result<std::string> r = f.get();
        if (r.ok()) {
          Result<uint64_t> stored = DecodeStoredRecords(*r);
          if (!stored.ok()) r = stored.status();
        }
        if (!r.ok() && rs.ok()) rs = r.status();
      }
      if (rs.ok()) {
        ++copies;
        replicas_->Inc();
      } else {
        errors += " " + name + ": " + rs.ToString() + ";";
        copy_failures_->Inc();
        Logger("store")->info("copy to {} failed ({}); trying another live store", name, rs.ToString());
      }
    }
  }
  if (copies >= options_.replication_factor) return Status::Ok();
  return Status::Unavailable(std::to_string(copies) + " of " + std::to_string(options_.replication_factor) +
                             " copies stored:" + errors);
}

Result<std::vector<ClusterConsumer::Encoded>> ClusterConsumer::Encode(const std::vector<std::string_view>& records,
                                                                      uint64_t bytes) const {
  const SegmentWriterOptions options = store_ != nullptr ? store_->writer_options() : SegmentWriterOptions{};
  std::vector<Encoded> out;
  size_t first = 0;
  while (first < records.size()) {
    OKLOG_ASSIGN_OR_RETURN(std::unique_ptr<SegmentEncoder> enc, SegmentEncoder::Create(options, bytes));
    // One image per placement bucket (holdings.h): a batch never crosses a bucket boundary.
    const uint64_t bucket = PlacementBucket(*Ulid::ParseCanonical(records[first].data()), options_.bucket_ms);
    size_t i = first;
    for (; i < records.size(); ++i) {
      if (i > first && PlacementBucket(*Ulid::ParseCanonical(records[i].data()), options_.bucket_ms) != bucket) break;
      Status s = enc->Append(records[i]);
      if (s.code() == Code::kResourceExhausted && i > first) break;  // full: the rest go into the next one
      if (!s.ok()) return s;
    }
    OKLOG_ASSIGN_OR_RETURN(SegmentImage image, enc->Finish());
    out.push_back(Encoded{first, std::move(image)});
    first = i;
  }
  return out;
}

}  // namespace oklog
