#include "segments/ingest/group_committer.h"

namespace oklog {

// One commit: the batch's bytes, the segment they go to, and the connections to resume.
struct GroupCommitter::Batch {
  ActiveSegment* seg;
  std::string data;
  ConnIds conns;
  Status status;
};

GroupCommitter::GroupCommitter(IngestLog* log, WorkPool* disk, IngestMetrics* metrics, uint64_t flush_size_bytes,
                               std::chrono::milliseconds flush_age, Callbacks callbacks, DiskGuard* guard)
    : log_(log),
      disk_(disk),
      metrics_(metrics),
      flush_size_bytes_(flush_size_bytes),
      flush_age_(flush_age),
      callbacks_(std::move(callbacks)),
      guard_(guard) {}

void GroupCommitter::Join(uint64_t conn) {
  waiting_.push_back(conn);
  MaybeStart();
}

void GroupCommitter::MaybeStart() {
  if (in_flight_) return;
  if (next_.empty()) {
    // The waiting connections sent no whole record yet (a line split across reads): nothing of
    // theirs needs a sync, so they read on rather than wait for someone else's batch.
    if (!waiting_.empty()) {
      ConnIds ready;
      ready.swap(waiting_);
      callbacks_.resume(ready);
    }
    return;
  }
  if (!seg_) {
    auto seg = log_->NewActive();
    if (!seg.ok()) {
      if (guard_ != nullptr) guard_->NoteWriteError(seg.status());
      metrics_->write_errors->Inc();
      logger_->error("creating durable segment: {}; closing {} connection(s)", seg.status().ToString(),
                     waiting_.size());
      next_.clear();
      ConnIds failed;
      failed.swap(waiting_);
      callbacks_.fail(failed);
      return;
    }
    seg_ = std::move(seg).value();
  }
  auto batch = std::make_shared<Batch>();
  batch->seg = seg_.get();
  batch->data.swap(next_);
  batch->conns.swap(waiting_);
  in_flight_ = true;
  const bool queued = disk_->Submit(
      [batch] {
        batch->status = batch->seg->Append(batch->data.data(), batch->data.size());
        if (batch->status.ok()) batch->status = batch->seg->Sync();
      },
      [this, batch](Status ran) {
        if (!ran.ok()) batch->status = ran;  // the pool closed before the job started
        Done(batch.get());
      });
  if (!queued) {  // the pool is closing: nothing of this batch is durable
    batch->status = Status::Unavailable("ingest: disk pool closed");
    Done(batch.get());
  }
}

void GroupCommitter::Done(Batch* batch) {
  in_flight_ = false;
  if (batch->status.ok()) {
    metrics_->syncs->Inc();
    callbacks_.resume(batch->conns);
    const auto now = std::chrono::steady_clock::now();
    if (seg_ && (seg_->bytes() >= flush_size_bytes_ || now - seg_->created() >= flush_age_)) Retire("size");
  } else {
    if (guard_ != nullptr) guard_->NoteWriteError(batch->status);
    metrics_->write_errors->Inc();
    logger_->error("durable group commit of {} bytes to segment={} failed: {}; closing {} connection(s)",
                   batch->data.size(), seg_ ? seg_->name() : "?", batch->status.ToString(), batch->conns.size());
    // Retire the segment: the whole records that reached it before the failure are still
    // consumed; the next batch gets a new one.
    Retire("error");
    callbacks_.fail(batch->conns);
  }
  MaybeStart();
}

void GroupCommitter::OnTimer(std::chrono::steady_clock::time_point now) {
  if (!in_flight_ && seg_ && seg_->bytes() > 0 && now - seg_->created() >= flush_age_) Retire("age");
}

void GroupCommitter::Finish() {
  if (!in_flight_) Retire("shutdown");
}

void GroupCommitter::Retire(const char* reason) {
  if (!seg_) return;
  std::string name = seg_->name();
  Status s = log_->Flush(std::move(seg_), reason);
  if (!s.ok()) {
    metrics_->write_errors->Inc();
    logger_->error("flushing segment={}: {}", name, s.ToString());
  }
}

}  // namespace oklog
