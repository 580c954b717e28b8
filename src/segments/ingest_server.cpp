#include "segments/ingest_server.h"

#include <algorithm>
#include <csignal>
#include <map>
#include <mutex>
#include <vector>

#include "common/log.h"
#include "common/ulid.h"
#include "common/uv/check.h"
#include "common/uv/handle.h"
#include "common/uv/loop_poster.h"
#include "common/uv/tcp_listener.h"
#include "common/uv/work_pool.h"
#include "rpc/bulk_protocol.h"
#include "segments/ingest/bulk_ack_tracker.h"
#include "common/memory_budget.h"
#include "segments/ingest/group_committer.h"
#include "segments/ingest/ingest_conn.h"
#include "segments/ingest/ingest_metrics.h"
#include "segments/ingest_acks.h"

namespace oklog {
namespace {

// At Close, how long half-closed connections may take to send their last line and close.
constexpr uint64_t kDrainConnMs = 5000;
// Disk threads: one for the durable group commit (one batch at a time), one more so a bulk
// segment write does not wait behind an fsync.
constexpr size_t kDiskThreads = 2;
// At a refusal, how long a half-closed newline connection may take to finish and close.
constexpr uint64_t kHandOverMs = 10000;

// Commits arrive on consumer threads and reach the loop through the server's LoopPoster. The
// IngestLog's observer holds this, not the server, so a commit after Close() is harmless.
struct CommitHandoff {
  std::mutex mu;
  LoopPoster* poster = nullptr;  // null once the server closes
};

}  // namespace

class IngestServer::Impl final : public IngestConn::Owner {
 public:
  Impl(uv_loop_t* loop, IngestLog* log, IngestServerOptions o, Registry* m)
      : loop_(loop), log_(log), opts_(std::move(o)), metrics_(m) {}

  ~Impl() override {
    // Callbacks of jobs that finish now must not reach into a half-destroyed server.
    destroying_ = true;
    {
      std::lock_guard<std::mutex> lock(handoff_->mu);
      handoff_->poster = nullptr;
    }
    if (disk_) disk_->Close();  // waits for a running write or sync
  }

  Status Start() {
    // Acks and "leave" go to producers that may have gone (libuv writes with write(2)): an
    // EPIPE must be an error on that connection, not the end of the process.
    signal(SIGPIPE, SIG_IGN);
    OKLOG_RETURN_IF_ERROR(Listen(opts_.fast, Modality::kFast));
    OKLOG_RETURN_IF_ERROR(Listen(opts_.durable, Modality::kDurable));
    OKLOG_RETURN_IF_ERROR(Listen(opts_.bulk, Modality::kBulk));
    OKLOG_ASSIGN_OR_RETURN(disk_, WorkPool::Create(loop_, kDiskThreads, "ingest-disk"));
    OKLOG_ASSIGN_OR_RETURN(commits_, LoopPoster::Create(loop_));
    committer_ = std::make_unique<GroupCommitter>(
        log_, disk_.get(), &metrics_, opts_.flush_size_bytes, opts_.flush_age,
        GroupCommitter::Callbacks{[this](const GroupCommitter::ConnIds& ids) { ResumeDurable(ids); },
                                  [this](const GroupCommitter::ConnIds& ids) { FailDurable(ids); }},
        opts_.disk_guard);
    {
      std::lock_guard<std::mutex> lock(handoff_->mu);
      handoff_->poster = commits_.get();
    }
    log_->SetCommitObserver([h = handoff_, this](const std::string& name) {
      std::lock_guard<std::mutex> lock(h->mu);
      // Under the lock: the server cannot close the poster (and die) between the check and the
      // post; a job runs with run=true only while the poster, so the server, is alive.
      if (h->poster != nullptr) h->poster->Post([this, name](bool run) {
          if (run) BulkCommitted(name);
        });
    });
    OKLOG_UV_CHECK(timer_.Init(this, [this](uv_timer_t* t) { return uv_timer_init(loop_, t); }));
    auto period = static_cast<uint64_t>(std::max<int64_t>(10, opts_.flush_age.count() / 4));
    uv_timer_start(timer_.get(), &Impl::OnTimer, period, period);
    UpdateRefusal();  // a node started on a full disk listens not even until the first tick
    return Status::Ok();
  }

  uint16_t port(Modality m) const {
    auto it = bound_.find(m);
    return it == bound_.end() ? 0 : it->second.port;
  }
  size_t connections() const { return conns_.size(); }

  void Close(std::function<void()> done) {
    if (closing_) return;
    closing_ = true;
    done_ = std::move(done);
    for (auto& [mod, l] : listeners_)
      if (l) l->Close(Closing());
    CloseHandle(timer_);
    {
      std::lock_guard<std::mutex> lock(handoff_->mu);
      handoff_->poster = nullptr;
    }
    commits_->Close();
    // Newline connections are half-closed and read until the forwarder, told by the EOF,
    // finishes its line and closes too (bounded by kDrainConnMs): nothing it sent is lost.
    // Bulk connections close at once: the forwarder resends what has no ack.
    for (IngestConn* c : AllConns()) {
      if (c->modality() == Modality::kBulk || !c->HandOver()) CloseConn(c);
    }
    if (!conns_.empty()) {
      OKLOG_UV_CHECK(drain_timer_.Init(this, [this](uv_timer_t* t) { return uv_timer_init(loop_, t); }));
      uv_timer_start(drain_timer_.get(), &Impl::OnDrainTimeout, kDrainConnMs, 0);
    }
    CheckDone();
  }

  // ---- IngestConn::Owner ----

  void OnData(IngestConn* c, const char* data, size_t n) override {
    if (c->modality() == Modality::kBulk) return IngestBulk(c, data, n);
    EncoderStats before = c->encoder().stats();
    const uint64_t now = NowUnixMs();
    if (c->modality() == Modality::kDurable) {
      std::string* next = committer_->next();
      const size_t old = next->size();
      c->encoder().Feed(data, n, now, next);
      Encoded(std::string_view(*next).substr(old), before, c->encoder().stats());
      // Read nothing more from this connection until its batch is on disk.
      c->StopReading();
      committer_->Join(c->id());
      return;
    }
    scratch_.clear();
    c->encoder().Feed(data, n, now, &scratch_);
    Encoded(scratch_, before, c->encoder().stats());
    WriteFast(c);
  }

  // The encoder's last partial line is kept. A client with the back channel is reading its
  // acks: the last one queued still goes out before the close.
  void OnEnd(IngestConn* c) override { CloseConn(c, c->acks_requested() ? CloseWhen::kAfterAcks : CloseWhen::kNow); }

  void OnClosed(IngestConn* c) override {
    metrics_.clients[static_cast<int>(c->modality())]->Add(-1);
    --open_[static_cast<int>(c->modality())];
    conns_.erase(c->id());  // destroys c
    if (closing_ && conns_.empty()) CloseHandle(drain_timer_);
    CheckDone();
  }

 private:
  Result<std::unique_ptr<TcpListener>> OpenListener(const Address& addr, Modality mod) {
    auto l = TcpListener::Create(loop_, addr, [this, mod](TcpListener* self, int status) {
      if (status == 0) Accept(self, mod);
    });
    if (l.ok())
      (*l)->SetCap(opts_.max_connections, [this, mod] { return open_[static_cast<int>(mod)]; },
                   [this, mod] { metrics_.conns_closed->With({ModalityName(mod), "cap"})->Inc(); });
    return l;
  }

  Status Listen(const Address& addr, Modality mod) {
    auto l = OpenListener(addr, mod);
    if (!l.ok()) return Status::Unavailable(l.status().message() + " (" + ModalityName(mod) + ")");
    // Reopened on this very address (port 0 resolved) when a refusal ends.
    Result<Address> bound = ParseAddress((*l)->bound(), 0);
    if (!bound.ok()) return bound.status();
    bound_[mod] = *bound;
    listeners_.emplace_back(mod, std::move(l).value());
    return Status::Ok();
  }

  void Accept(TcpListener* l, Modality mod) {
    const uint64_t id = ++next_conn_id_;
    auto c = IngestConn::Accept(loop_, l, this, id, mod,
                                RecordEncoder(opts_.topic_mode, opts_.topic, opts_.record_max_bytes), opts_.tls);
    if (!c) return;
    IngestConn* conn = c.get();
    if (mod == Modality::kBulk) conn->frames()->SetBudget(opts_.memory_budget, MemoryBudget::Use::kBulkFrame);
    conns_[id] = std::move(c);
    metrics_.clients[static_cast<int>(mod)]->Add(1);
    ++open_[static_cast<int>(mod)];
    conn->StartReading();
  }

  bool DiskFull() const { return opts_.disk_guard != nullptr && opts_.disk_guard->full(); }

  // Why the server refuses producers now ("" when it does not): a full disk first, then shedding.
  std::string RefusalReason() const {
    if (DiskFull()) return opts_.disk_guard->reason();
    if (!shedding_.empty()) return "shedding: " + shedding_;
    return "";
  }

  void SetShedding(const std::string& reason) {
    if (closing_ || reason == shedding_) return;
    if (reason.empty()) logger_->info("no longer shedding");
    shedding_ = reason;
    UpdateRefusal();
  }

  // Starts or ends a refusal (timer tick, SetShedding). Starting one: the listeners close (a
  // producer's connect is refused and it tries its next ingester), newline connections are
  // half-closed and read until their forwarders, told by the EOF, finish their line and close
  // (at most kHandOverMs), bulk connections get an error frame and close (the forwarder resends
  // what has no ack to its next ingester). Ending one: the listeners open again on their ports.
  void UpdateRefusal() {
    if (closing_) return;
    const std::string why = RefusalReason();
    const bool refusing = !why.empty();
    if (refusing) {
      // Each time, not only at the start: a listener reopened by a partial Relisten, and the
      // connections it took, are refused too.
      for (auto& [mod, l] : listeners_) l.reset();  // closes the socket now: connects are refused
      std::vector<IngestConn*> open;
      for (IngestConn* c : AllConns())
        if (!c->closing() && !handing_over_.count(c->id())) open.push_back(c);
      if (!refusing_)
        logger_->warn("refusing producers: {}; listeners closed, {} open connection(s) sent on", why, open.size());
      refusing_ = true;
      metrics_.refusing->Set(1);
      const uint64_t deadline = uv_now(loop_) + kHandOverMs;
      for (IngestConn* c : open) {
        if (c->modality() == Modality::kBulk) {
          c->Send(rpc::EncodeBulkError("ingest refused: " + why));
          CloseConn(c);
        } else {
          HandOver(c, deadline);
        }
      }
    } else if (refusing_) {
      if (!Relisten()) return;  // tried again at the next tick
      refusing_ = false;
      metrics_.refusing->Set(0);
      logger_->info("taking producers again: listeners open");
    }
  }

  // Opens every closed listener again on its address. False while one cannot (logged every 10 s).
  bool Relisten() {
    bool all = true;
    for (auto& [mod, l] : listeners_) {
      if (l) continue;
      auto r = OpenListener(bound_[mod], mod);
      if (r.ok()) {
        l = std::move(r).value();
        continue;
      }
      all = false;
      const uint64_t now = uv_now(loop_);
      if (last_relisten_log_ms_ == 0 || now - last_relisten_log_ms_ >= 10000) {
        logger_->error("reopening the {} listener: {}; trying again", ModalityName(mod), r.status().ToString());
        last_relisten_log_ms_ = now;
      }
    }
    return all;
  }

  // Connections idle for the idle timeout: newline ones are handed over as at a refusal (half-
  // closed, read until the forwarder closes, at most kHandOverMs), bulk ones with no segment
  // awaiting its ack closed. A durable connection waiting for its group commit is not idle.
  void LetIdleGo() {
    const auto idle_ms = static_cast<uint64_t>(opts_.idle_timeout.count());
    if (idle_ms == 0 || closing_) return;
    const uint64_t now = uv_now(loop_);
    std::vector<IngestConn*> idle;
    for (auto& [id, c] : conns_) {
      if (c->closing() || handing_over_.count(id)) continue;
      if (c->modality() == Modality::kDurable && !c->reading()) continue;
      if (c->modality() == Modality::kBulk && tracker_.unacked(id) > 0) continue;
      if (now - c->last_read_ms() >= idle_ms) idle.push_back(c.get());
    }
    for (IngestConn* c : idle) {
      metrics_.conns_closed->With({ModalityName(c->modality()), "idle"})->Inc();
      if (c->modality() == Modality::kBulk) CloseConn(c);
      else HandOver(c, now + kHandOverMs);
    }
  }

  // A newline connection is half-closed and read until its forwarder, told by the EOF,
  // finishes its line and closes (by `deadline`, else CloseLateHandOvers closes it).
  void HandOver(IngestConn* c, uint64_t deadline) {
    if (c->HandOver()) handing_over_[c->id()] = deadline;
    else CloseConn(c);
  }

  // Newline connections handed over at a refusal that did not close in time are closed.
  void CloseLateHandOvers() {
    const uint64_t now = uv_now(loop_);
    for (auto it = handing_over_.begin(); it != handing_over_.end();) {
      IngestConn* c = Find(it->first);
      if (c != nullptr && now < it->second) {
        ++it;
        continue;
      }
      if (c != nullptr) CloseConn(c);
      it = handing_over_.erase(it);
    }
  }

  void CloseHandle(UvHandle<uv_timer_t>& h) {
    if (h.open()) h.Close(Closing());
  }
  // A handle's on_closed that counts it until its close callback has run.
  std::function<void()> Closing() {
    ++closing_handles_;
    return [this] {
      --closing_handles_;
      CheckDone();
    };
  }

  std::vector<IngestConn*> AllConns() const {
    std::vector<IngestConn*> all;
    for (const auto& [id, c] : conns_) all.push_back(c.get());
    return all;
  }

  IngestConn* Find(uint64_t id) const {
    auto it = conns_.find(id);
    return it == conns_.end() || it->second->closing() ? nullptr : it->second.get();
  }

  static void OnDrainTimeout(uv_timer_t* t) noexcept {
    auto* self = UvHandle<uv_timer_t>::Data<Impl>(t);
    if (self == nullptr) return;
    std::vector<IngestConn*> all = self->AllConns();
    if (!all.empty())
      Logger("ingest")->warn("closing {} ingest connection(s) that did not finish within {} ms", all.size(),
                             kDrainConnMs);
    for (IngestConn* c : all) self->CloseConn(c);
  }

  // Records just encoded: counted, and shown to live tails.
  void Encoded(std::string_view records, const EncoderStats& before, const EncoderStats& after) {
    metrics_.bytes->Inc(records.size());
    metrics_.records->Inc(after.records - before.records);
    if (after.truncated != before.truncated) {
      metrics_.truncated->Inc(after.truncated - before.truncated);
      logger_->warn("cut {} over-long line(s) at -ingest.record-max-size={} bytes", after.truncated - before.truncated,
                    opts_.record_max_bytes);
    }
    metrics_.dropped->Inc(after.dropped_bytes - before.dropped_bytes);
    metrics_.invalid_topic->Inc(after.invalid_topics - before.invalid_topics);
    if (opts_.on_records && !records.empty()) opts_.on_records(records);
  }

  // ---- fast: each connection's own segment, written on the loop (page cache, no fsync) ----

  void WriteFast(IngestConn* c) {
    if (scratch_.empty()) return;
    std::unique_ptr<ActiveSegment>& seg = c->segment();
    if (!seg) {
      auto created = log_->NewActive();
      if (!created.ok()) {
        NoteWriteError(created.status());
        metrics_.write_errors->Inc();
        logger_->error("creating active segment: {}; closing connection", created.status().ToString());
        scratch_.clear();
        return CloseConn(c);
      }
      seg = std::move(created).value();
    }
    Status s = seg->Append(scratch_.data(), scratch_.size());
    scratch_.clear();
    if (!s.ok()) {
      NoteWriteError(s);
      metrics_.write_errors->Inc();
      logger_->error("writing segment={}: {}; closing connection", seg->name(), s.ToString());
      RetireSegment(std::move(seg), "error");
      return CloseConn(c);
    }
    if (seg->bytes() >= opts_.flush_size_bytes) FlushSegment(std::move(seg), "size");
  }

  // Writes out what is buffered, then flushes: a write that fails here is counted and logged
  // (IngestLog::Flush alone would drop the buffered records quietly and return OK).
  void FlushSegment(std::unique_ptr<ActiveSegment> seg, const char* reason) {
    if (!seg) return;
    if (Status w = seg->WriteOut(); !w.ok()) {
      NoteWriteError(w);
      metrics_.write_errors->Inc();
      logger_->error("writing segment={} at flush ({}): {}; {} buffered bytes lost", seg->name(), reason,
                     w.ToString(), seg->bytes());
    }
    RetireSegment(std::move(seg), reason);
  }

  void NoteWriteError(const Status& s) {
    if (opts_.disk_guard != nullptr) opts_.disk_guard->NoteWriteError(s);
  }

  // Flushes a segment whose write failure, if any, is already counted.
  void RetireSegment(std::unique_ptr<ActiveSegment> seg, const char* reason) {
    std::string name = seg->name();
    Status s = log_->Flush(std::move(seg), reason);
    if (!s.ok()) {
      metrics_.write_errors->Inc();
      logger_->error("flushing segment={}: {}", name, s.ToString());
    }
  }

  // ---- durable: the group committer's outcomes ----

  // The batch is durable: each of its connections is told how many of its bytes are done (all
  // it sent but a partial last line, which the encoder still holds: ingest_acks.h), then read
  // again. The connection read nothing since it joined the batch, so the count is exact.
  void ResumeDurable(const GroupCommitter::ConnIds& ids) {
    if (destroying_) return;
    for (uint64_t id : ids) {
      if (IngestConn* c = Find(id)) {
        c->SendAck(c->bytes_read() - c->encoder().partial_bytes());
        c->StartReading();
      }
    }
  }

  // The batch is not durable: its connections are closed, so the producer sees the connection
  // drop instead of believing its data is safe.
  void FailDurable(const GroupCommitter::ConnIds& ids) {
    if (destroying_) return;
    for (uint64_t id : ids)
      if (IngestConn* c = Find(id)) CloseConn(c);
  }

  // ---- bulk ----

  void IngestBulk(IngestConn* c, const char* data, size_t n) {
    if (!c->frames()->Feed(data, n)) {  // the budget logs (rate-limited) and counts the refusal
      metrics_.bulk_rejected->Inc();
      c->Send(rpc::EncodeBulkError("ingest refused: the node's memory budget is used up (-memory.budget)"));
      return CloseConn(c);
    }
    std::string payload;
    while (!c->closing()) {
      Result<bool> got = c->frames()->Next(&payload);
      if (!got.ok()) return RejectBulk(c, got.status().message());
      if (!*got) break;
      Result<rpc::BulkMessage> m = rpc::DecodeBulkMessage(payload);
      if (!m.ok()) return RejectBulk(c, m.status().message());
      if (m->kind != rpc::BulkMessage::Kind::kSegment) return RejectBulk(c, "bulk: expected a segment");
      HandleBulkSegment(c, *m);
    }
    if (!c->closing() && tracker_.AtCap(c->id())) c->StopReading();  // resumed by an ack
  }

  // Malformed input: an error frame, then the connection closes. Its stored segments stay
  // stored (they are complete); the forwarder resends what it has no ack for.
  void RejectBulk(IngestConn* c, const std::string& why) {
    metrics_.bulk_rejected->Inc();
    logger_->warn("bulk connection {} closed: {}", c->id(), why);
    c->Send(rpc::EncodeBulkError(why));
    CloseConn(c);
  }

  void HandleBulkSegment(IngestConn* c, const rpc::BulkMessage& m) {
    if (const std::string why = BulkIdProblem(m); !why.empty()) return RejectBulk(c, why);
    switch (tracker_.Received(c->id(), m.id)) {
      case BulkAckTracker::Arrival::kHeld:  // a resend of a segment still here
        metrics_.bulk_segments->With({"resent"})->Inc();
        return;
      case BulkAckTracker::Arrival::kCommitted:  // a resend of a committed one: its ack was lost
        metrics_.bulk_segments->With({"resent"})->Inc();
        return c->Send(rpc::EncodeBulkAck(m.id));
      case BulkAckTracker::Arrival::kNew:
        break;
    }
    if (const std::string why = RefusalReason(); !why.empty()) {
      // Not stored, so never acknowledged: the forwarder sends it elsewhere or again later.
      metrics_.refused_writes->With({"bulk"})->Inc();
      logger_->warn("bulk connection {}: not storing segment {}: {}", c->id(), m.id.ToString(), why);
      c->Send(rpc::EncodeBulkError("ingest refused: " + why));
      return CloseConn(c);
    }
    // The record ULIDs follow from the segment id, so every copy of a segment is identical.
    RecordEncoder enc(opts_.topic_mode, opts_.topic, opts_.record_max_bytes, UlidStream::At(m.id));
    const uint64_t ms = m.id.unix_ms();
    auto job = std::make_shared<BulkWrite>();
    job->id = m.id;
    enc.Feed(m.text.data(), m.text.size(), ms, &job->records);
    enc.Finish(ms, &job->records);
    Encoded(job->records, EncoderStats{}, enc.stats());
    if (job->records.empty()) {
      metrics_.bulk_segments->With({"empty"})->Inc();
      return c->Send(rpc::EncodeBulkAck(m.id));
    }
    // The file is created here, so its name is known before any store can commit it; the
    // write and the rename to flushed run on the disk pool.
    auto seg = log_->NewActive();
    if (!seg.ok()) return BulkStoreFailed(c->id(), m.id, seg.status());
    job->seg = std::move(seg).value();
    job->name = job->seg->name();
    tracker_.Storing(c->id(), m.id, job->name);
    metrics_.bulk_unacked->Set(static_cast<double>(tracker_.held()));
    ++bulk_writes_;
    const bool queued = disk_->Submit(
        [this, job] {
          job->status = job->seg->Append(job->records.data(), job->records.size());
          // WriteOut here, not inside Flush: Flush cleans up after a failed write and returns
          // OK (a segment left empty is simply deleted), which would hide the failure.
          if (job->status.ok()) job->status = job->seg->WriteOut();
          // A failed segment is flushed too, holding the whole records written before the
          // failure (duplicates of the resend); the tracker never acknowledges it.
          Status f = log_->Flush(std::move(job->seg), "bulk");
          if (job->status.ok()) job->status = f;
        },
        [this, job](Status ran) {
          --bulk_writes_;
          if (destroying_) return;
          if (!ran.ok()) job->status = ran;
          BulkWritten(*job);
        });
    if (!queued) {
      --bulk_writes_;
      job->seg.reset();  // an empty .active: removed at the next start
      BulkStoreFailed(c->id(), m.id, Status::Unavailable("ingest: disk pool closed"));
    }
  }

  // Why a bulk segment's id cannot name its records (bulk_protocol.h), or "" when it can: its
  // records would run past the last ULID (an id at or near the maximum would otherwise wrap
  // them to 1970, where retention trashes them), or it lies further in the future than any
  // clock skew explains (records nobody's query window reaches and retention never ages).
  static std::string BulkIdProblem(const rpc::BulkMessage& m) {
    const uint64_t now_ms = NowUnixMs();
    const uint64_t ahead_ms = static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(rpc::kBulkMaxIdAhead).count());
    if (m.id.unix_ms() > now_ms + ahead_ms)
      return "bulk segment id " + m.id.ToString() + " is more than " + std::to_string(rpc::kBulkMaxIdAhead.count()) +
             "h ahead of this ingester's clock";
    // Each line becomes one record at most (a last line without LF too).
    const uint64_t lines = static_cast<uint64_t>(std::count(m.text.begin(), m.text.end(), '\n')) +
                           (!m.text.empty() && m.text.back() != '\n' ? 1 : 0);
    if (lines > 0 && !UlidStream::RunFits(m.id, lines))
      return "bulk segment id " + m.id.ToString() + " leaves no room for its " + std::to_string(lines) +
             " records' ULIDs";
    return "";
  }

  // One bulk segment on its way to disk: its encoded records and ingest file.
  struct BulkWrite {
    Ulid id;
    std::string records;
    std::unique_ptr<ActiveSegment> seg;  // the pool's until the job ends
    std::string name;
    Status status;
  };

  void BulkWritten(const BulkWrite& job) {
    if (!job.status.ok()) return BulkStoreFailed(kNoConn, job.id, job.status);
    metrics_.bulk_segments->With({"stored"})->Inc();
    if (auto acks = tracker_.Written(job.id)) SendAcks(*acks);  // its commit came first
  }

  // The segment is not stored: every connection that sent it (the tracker's waiters, and conn
  // when it is not kNoConn) gets an error frame and is closed (never an ack); the forwarder
  // resends it.
  static constexpr uint64_t kNoConn = 0;  // connection ids start at 1
  void BulkStoreFailed(uint64_t conn, const Ulid& id, const Status& s) {
    NoteWriteError(s);
    metrics_.write_errors->Inc();
    metrics_.bulk_segments->With({"error"})->Inc();
    std::vector<uint64_t> told = tracker_.Failed(id);
    if (conn != kNoConn) told.push_back(conn);
    logger_->error("storing bulk segment {}: {}; closing {} connection(s)", id.ToString(), s.ToString(), told.size());
    for (uint64_t cid : told) {
      if (IngestConn* c = Find(cid)) {
        c->Send(rpc::EncodeBulkError("storing segment: " + s.ToString()));
        CloseConn(c);
      }
    }
    metrics_.bulk_unacked->Set(static_cast<double>(tracker_.held()));
  }

  // A segment committed by the stores (replicated N times): acknowledge it.
  void BulkCommitted(const std::string& name) {
    if (auto acks = tracker_.Committed(name)) SendAcks(*acks);
  }

  void SendAcks(const BulkAckTracker::Acks& acks) {
    for (uint64_t cid : acks.conns) {
      IngestConn* c = Find(cid);
      if (c == nullptr) continue;
      c->Send(rpc::EncodeBulkAck(acks.id));
      metrics_.bulk_acks->Inc();
      if (!c->reading() && !tracker_.AtCap(cid)) c->StartReading();
    }
    metrics_.bulk_unacked->Set(static_cast<double>(tracker_.held()));
  }

  enum class CloseWhen { kNow, kAfterAcks };
  void CloseConn(IngestConn* c, CloseWhen when = CloseWhen::kNow) {
    if (c->closing()) return;
    c->StopReading();
    const uint64_t now = NowUnixMs();
    EncoderStats before = c->encoder().stats();
    if (c->modality() == Modality::kDurable) {
      std::string* next = committer_->next();
      const size_t old = next->size();
      c->encoder().Finish(now, next);
      Encoded(std::string_view(*next).substr(old), before, c->encoder().stats());
      committer_->MaybeStart();
    } else if (c->modality() == Modality::kFast) {
      scratch_.clear();
      c->encoder().Finish(now, &scratch_);
      Encoded(scratch_, before, c->encoder().stats());
      WriteFast(c);
      FlushSegment(std::move(c->segment()), "close");
    } else {
      tracker_.ForgetConn(c->id());
    }
    if (when == CloseWhen::kAfterAcks) c->CloseAfterAcks();
    else c->Close();
  }

  static void OnTimer(uv_timer_t* t) noexcept {
    auto* self = UvHandle<uv_timer_t>::Data<Impl>(t);
    if (self == nullptr) return;
    auto now = std::chrono::steady_clock::now();
    self->UpdateRefusal();
    self->LetIdleGo();
    self->CloseLateHandOvers();
    for (auto& [id, c] : self->conns_) {
      std::unique_ptr<ActiveSegment>& seg = c->segment();
      if (seg && seg->bytes() > 0 && now - seg->created() >= self->opts_.flush_age)
        self->FlushSegment(std::move(seg), "age");
    }
    self->committer_->OnTimer(now);
  }

  // Done when every handle has closed and no disk job is left; then the disk pool closes (it
  // has nothing to wait for) and done runs.
  void CheckDone() {
    if (!closing_ || destroying_ || closing_handles_ != 0 || !conns_.empty() || bulk_writes_ != 0 ||
        !committer_->idle())
      return;
    committer_->Finish();
    disk_->Close();
    if (done_) {
      auto done = std::move(done_);
      done_ = nullptr;
      done();
    }
  }

  friend class IngestServer;
  uv_loop_t* loop_;
  IngestLog* log_;
  IngestServerOptions opts_;
  IngestMetrics metrics_;
  std::shared_ptr<spdlog::logger> logger_ = Logger("ingest");
  std::vector<std::pair<Modality, std::unique_ptr<TcpListener>>> listeners_;
  UvHandle<uv_timer_t> timer_;
  UvHandle<uv_timer_t> drain_timer_;  // Close(): bounds the half-closed connections
  std::map<uint64_t, std::unique_ptr<IngestConn>> conns_;
  uint64_t next_conn_id_ = 0;
  int closing_handles_ = 0;
  bool closing_ = false;
  bool destroying_ = false;
  std::function<void()> done_;
  std::string scratch_;
  std::shared_ptr<CommitHandoff> handoff_ = std::make_shared<CommitHandoff>();
  std::unique_ptr<LoopPoster> commits_;  // store commits, from consumer threads
  BulkAckTracker tracker_;
  int bulk_writes_ = 0;  // bulk segment writes on the disk pool
  std::string shedding_;               // SetShedding's reason; empty: not shedding
  bool refusing_ = false;              // listeners closed (UpdateRefusal)
  std::map<Modality, Address> bound_;  // each listener's address, to reopen it
  std::map<uint64_t, uint64_t> handing_over_;  // connection id -> loop time it must be closed by
  size_t open_[kModalities] = {0, 0, 0};       // open connections per listener, for its cap
  uint64_t last_relisten_log_ms_ = 0;
  // ~Impl closes the pool first, while everything its last after-callbacks touch is alive.
  std::unique_ptr<WorkPool> disk_;
  std::unique_ptr<GroupCommitter> committer_;
};

IngestServer::IngestServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
IngestServer::~IngestServer() = default;

Result<std::unique_ptr<IngestServer>> IngestServer::Create(uv_loop_t* loop, IngestLog* log,
                                                           IngestServerOptions options, Registry* metrics) {
  auto impl = std::make_unique<Impl>(loop, log, std::move(options), metrics);
  OKLOG_RETURN_IF_ERROR(impl->Start());  // a failed Start's handles close in the caller's loop run
  return std::unique_ptr<IngestServer>(new IngestServer(std::move(impl)));
}

uint16_t IngestServer::fast_port() const { return impl_->port(Modality::kFast); }
uint16_t IngestServer::durable_port() const { return impl_->port(Modality::kDurable); }
uint16_t IngestServer::bulk_port() const { return impl_->port(Modality::kBulk); }
void IngestServer::Close(std::function<void()> done) { impl_->Close(std::move(done)); }
size_t IngestServer::connections() const { return impl_->conns_.size(); }
void IngestServer::SetShedding(const std::string& reason) { impl_->SetShedding(reason); }

}  // namespace oklog
