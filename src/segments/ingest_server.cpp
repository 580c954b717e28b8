#include "segments/ingest_server.h"

#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <vector>

#include "common/log.h"
#include "common/ulid.h"
#include "common/uv/check.h"
#include "common/uv/tcp_listener.h"
#include "rpc/frame_codec.h"
#include "rpc/bulk_protocol.h"

namespace oklog {
namespace {

enum class Modality { kFast, kDurable, kBulk };
constexpr size_t kReadBufferBytes = 256 * 1024;
// A bulk connection stops being read while this many of its segments await their ack.
constexpr size_t kBulkMaxUnacked = 64;
// Ids of recently committed bulk segments, so a resend after a lost ack is acknowledged at once.
constexpr size_t kBulkRecentCommits = 4096;
// At Close, how long half-closed connections may take to send their last line and close.
constexpr uint64_t kDrainConnMs = 5000;

// Commits arrive on consumer threads; the loop learns of them through an async handle. The
// observer holds this state, not the server, so a late commit after Close() is harmless.
struct CommitQueue {
  std::mutex mu;
  uv_async_t* async = nullptr;  // null once closed
  std::vector<std::string> names;
};
const char* ModalityName(Modality m) {
  switch (m) {
    case Modality::kFast: return "fast";
    case Modality::kDurable: return "durable";
    case Modality::kBulk: return "bulk";
  }
  return "?";
}

}  // namespace

class IngestServer::Impl {
 public:
  struct Listener {
    Modality mod;
    std::unique_ptr<TcpListener> tcp;
  };
  struct Conn {
    Impl* impl;
    uint64_t id;
    Modality mod;
    uv_tcp_t* tcp;
    RecordEncoder enc;
    std::unique_ptr<ActiveSegment> seg;  // fast connections only
    std::unique_ptr<rpc::FrameDecoder> frames;  // bulk connections only
    size_t unacked = 0;                            // bulk: segments awaiting their ack
    bool reading = true;
    std::unique_ptr<char[]> rbuf{new char[kReadBufferBytes]};
    bool closing = false;
    Conn(Impl* i, uint64_t id_, Modality m, uv_tcp_t* t, const IngestServerOptions& o)
        : impl(i), id(id_), mod(m), tcp(t), enc(o.topic_mode, o.topic, o.record_max_bytes) {}
  };
  // One group commit: the batch's bytes, the segment they go to, and the connections to resume.
  struct SyncJob {
    uv_work_t req;
    Impl* impl;
    ActiveSegment* seg;
    std::string data;
    std::vector<uint64_t> conns;
    Status status;
  };

  Impl(uv_loop_t* loop, IngestLog* log, IngestServerOptions o, Registry* m)
      : loop_(loop), log_(log), opts_(std::move(o)), logger_(Logger("ingest")) {
    auto* clients = m->NewGaugeFamily("oklog_connected_clients", "Connected ingest clients.", {"modality"});
    for (Modality mod : {Modality::kFast, Modality::kDurable, Modality::kBulk})
      clients_[static_cast<int>(mod)] = clients->With({ModalityName(mod)});
    bytes_ = m->NewCounter("oklog_ingest_writer_bytes_written_total", "Bytes written to ingest segments.");
    records_ = m->NewCounter("oklog_ingest_writer_records_written_total", "Records written to ingest segments.");
    syncs_ = m->NewCounter("oklog_ingest_writer_syncs_total", "Group-commit fsyncs of the durable segment.");
    truncated_ = m->NewCounter("oklog_ingest_records_truncated_total",
                               "Lines longer than -ingest.record-max-size, cut at that size.");
    dropped_ = m->NewCounter("oklog_ingest_truncated_bytes_total", "Bytes discarded from cut lines.");
    invalid_topic_ = m->NewCounter("oklog_ingest_invalid_topic_total",
                                   "Dynamic-topic lines without a valid topic, kept under the static topic.");
    write_errors_ = m->NewCounter("oklog_ingest_write_errors_total", "Failed writes or syncs of ingest segments.");
    bulk_segments_ = m->NewCounterFamily("oklog_ingest_bulk_segments_total",
                                         "Bulk segments received, by result (stored, resent, empty, error).", {"result"});
    bulk_acks_ = m->NewCounter("oklog_ingest_bulk_acks_total", "Bulk segments acknowledged (replicated N times).");
    bulk_rejected_ = m->NewCounter("oklog_ingest_bulk_rejected_total",
                                   "Bulk connections closed for malformed or oversize input.");
    bulk_unacked_ = m->NewGauge("oklog_ingest_bulk_unacked_segments", "Bulk segments stored here, not yet acknowledged.");
    commits_ = std::make_shared<CommitQueue>();
    log_->SetCommitObserver([q = commits_](const std::string& name) {
      std::lock_guard<std::mutex> lock(q->mu);
      if (q->async == nullptr) return;
      q->names.push_back(name);
      uv_async_send(q->async);
    });
  }

  Status Start() {
    OKLOG_RETURN_IF_ERROR(Listen(opts_.fast, Modality::kFast));
    OKLOG_RETURN_IF_ERROR(Listen(opts_.durable, Modality::kDurable));
    OKLOG_RETURN_IF_ERROR(Listen(opts_.bulk, Modality::kBulk));
    async_ = new uv_async_t;
    if (Status s = UvStatus(uv_async_init(loop_, async_, &Impl::OnCommits), "ingest: uv_async_init"); !s.ok()) {
      delete async_;
      async_ = nullptr;
      return s;
    }
    async_->data = this;
    ++open_handles_;
    {
      std::lock_guard<std::mutex> lock(commits_->mu);
      commits_->async = async_;
    }
    timer_ = new uv_timer_t;
    OKLOG_UV_CHECK(uv_timer_init(loop_, timer_));
    timer_->data = this;
    ++open_handles_;
    auto period = std::max<int64_t>(10, opts_.flush_age.count() / 4);
    uv_timer_start(timer_, &Impl::OnTimer, static_cast<uint64_t>(period), static_cast<uint64_t>(period));
    return Status::Ok();
  }

  // Closes the handles opened by a failed Start without calling back into this object.
  void Abandon() {
    listeners_.clear();  // their handles close without calling back
    if (timer_) {
      timer_->data = nullptr;
      uv_close(reinterpret_cast<uv_handle_t*>(timer_), &Impl::OnHandleClosed);
    }
    CloseAsync(true);
  }

  void CloseAsync(bool abandon) {
    if (!async_) return;
    {
      std::lock_guard<std::mutex> lock(commits_->mu);
      commits_->async = nullptr;
    }
    if (abandon) async_->data = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(async_), &Impl::OnHandleClosed);
    async_ = nullptr;
  }

  uint16_t port(Modality m) const {
    for (const auto& l : listeners_)
      if (l->mod == m) return l->tcp->port();
    return 0;
  }
  size_t connections() const { return conns_.size(); }

  void Close(std::function<void()> done) {
    if (closing_) return;
    closing_ = true;
    done_ = std::move(done);
    for (auto& l : listeners_) {
      ++open_handles_;
      l->tcp->Close([this] {
        --open_handles_;
        CheckDone();
      });
    }
    if (timer_) uv_close(reinterpret_cast<uv_handle_t*>(timer_), &Impl::OnHandleClosed);
    CloseAsync(false);
    // Newline connections are half-closed and read until the forwarder, told by the EOF,
    // finishes its line and closes too (bounded by kDrainConnMs): nothing it sent is lost.
    // Bulk connections close at once: the forwarder resends what has no ack.
    std::vector<Conn*> all;
    for (auto& [id, c] : conns_) all.push_back(c.get());
    for (Conn* c : all) {
      if (c->mod == Modality::kBulk) {
        CloseConn(c);
        continue;
      }
      auto* req = new uv_shutdown_t;
      if (uv_shutdown(req, reinterpret_cast<uv_stream_t*>(c->tcp), [](uv_shutdown_t* r, int) { delete r; }) != 0) {
        delete req;
        CloseConn(c);
      }
    }
    if (!conns_.empty()) {
      drain_timer_ = new uv_timer_t;
      OKLOG_UV_CHECK(uv_timer_init(loop_, drain_timer_));
      drain_timer_->data = this;
      ++open_handles_;
      uv_timer_start(drain_timer_, &Impl::OnDrainTimeout, kDrainConnMs, 0);
    }
    CheckDone();
  }

  static void OnDrainTimeout(uv_timer_t* t) noexcept {
    auto* self = static_cast<Impl*>(t->data);
    std::vector<Conn*> all;
    for (auto& [id, c] : self->conns_) all.push_back(c.get());
    if (!all.empty()) self->logger_->warn("closing {} ingest connection(s) that did not finish within {} ms", all.size(), kDrainConnMs);
    for (Conn* c : all) self->CloseConn(c);
    self->CloseDrainTimer();
  }

  void CloseDrainTimer() {
    if (!drain_timer_) return;
    uv_close(reinterpret_cast<uv_handle_t*>(drain_timer_), &Impl::OnHandleClosed);
    drain_timer_ = nullptr;
  }

 private:
  Status Listen(const Address& addr, Modality mod) {
    auto tcp = TcpListener::Create(loop_, addr, [this, mod](TcpListener* l, int status) { OnConnection(l, mod, status); });
    if (!tcp.ok())
      return Status::Unavailable(tcp.status().message() + " (" + ModalityName(mod) + ")");
    listeners_.push_back(std::make_unique<Listener>(Listener{mod, std::move(tcp).value()}));
    return Status::Ok();
  }

  static void OnHandleClosed(uv_handle_t* h) noexcept {
    // Timer and async handles. A null data pointer means the owner is gone: only free memory.
    Impl* impl = nullptr;
    if (h->type == UV_TIMER) {
      impl = static_cast<Impl*>(h->data);
      delete reinterpret_cast<uv_timer_t*>(h);
    } else if (h->type == UV_ASYNC) {
      impl = static_cast<Impl*>(h->data);
      delete reinterpret_cast<uv_async_t*>(h);
    }
    if (impl) {
      --impl->open_handles_;
      impl->CheckDone();
    }
  }

  void OnConnection(TcpListener* l, Modality mod, int status) {
    if (status < 0) return;
    Impl* self = this;
    auto* tcp = new uv_tcp_t;
    OKLOG_UV_CHECK(uv_tcp_init(self->loop_, tcp));
    ++self->open_handles_;
    if (l->Accept(reinterpret_cast<uv_stream_t*>(tcp)) != 0 || self->closing_) {
      tcp->data = nullptr;
      uv_close(reinterpret_cast<uv_handle_t*>(tcp), &Impl::OnConnClosed);
      --self->open_handles_;  // OnConnClosed with null data does not know the Impl
      return;
    }
    uint64_t id = ++self->next_conn_id_;
    auto conn = std::make_unique<Conn>(self, id, mod, tcp, self->opts_);
    tcp->data = conn.get();
    Conn* c = conn.get();
    self->conns_[id] = std::move(conn);
    self->clients_[static_cast<int>(mod)]->Add(1);
    if (mod == Modality::kBulk) c->frames = std::make_unique<rpc::FrameDecoder>(rpc::kBulkMaxFrameBytes);
    uv_read_start(reinterpret_cast<uv_stream_t*>(tcp), &Impl::OnAlloc, &Impl::OnRead);
  }

  static void OnAlloc(uv_handle_t* h, size_t, uv_buf_t* buf) noexcept {
    auto* c = static_cast<Conn*>(h->data);
    if (!c) {
      *buf = uv_buf_init(nullptr, 0);
      return;
    }
    *buf = uv_buf_init(c->rbuf.get(), kReadBufferBytes);
  }

  static void OnRead(uv_stream_t* s, ssize_t nread, const uv_buf_t*) noexcept {
    auto* c = static_cast<Conn*>(s->data);
    if (!c || c->closing) return;
    if (nread == 0) return;  // EAGAIN: not EOF
    Impl* self = c->impl;
    if (nread < 0) {
      self->CloseConn(c);  // EOF or error: the encoder's last partial line is kept
      return;
    }
    if (c->mod == Modality::kBulk) return self->IngestBulk(c, c->rbuf.get(), static_cast<size_t>(nread));
    self->Ingest(c, c->rbuf.get(), static_cast<size_t>(nread));
  }

  void CountEncoder(const EncoderStats& before, const EncoderStats& after) {
    records_->Inc(after.records - before.records);
    if (after.truncated != before.truncated) {
      truncated_->Inc(after.truncated - before.truncated);
      logger_->warn("cut {} over-long line(s) at -ingest.record-max-size={} bytes",
                    after.truncated - before.truncated, opts_.record_max_bytes);
    }
    dropped_->Inc(after.dropped_bytes - before.dropped_bytes);
    invalid_topic_->Inc(after.invalid_topics - before.invalid_topics);
  }

  void Ingest(Conn* c, const char* data, size_t n) {
    EncoderStats before = c->enc.stats();
    uint64_t now = NowUnixMs();
    if (c->mod == Modality::kDurable) {
      size_t old = durable_next_.size();
      c->enc.Feed(data, n, now, &durable_next_);
      bytes_->Inc(durable_next_.size() - old);
      if (opts_.on_records && durable_next_.size() > old)
        opts_.on_records(std::string_view(durable_next_).substr(old));
      CountEncoder(before, c->enc.stats());
      // Read nothing more from this connection until its batch is on disk.
      uv_read_stop(reinterpret_cast<uv_stream_t*>(c->tcp));
      waiting_next_.push_back(c->id);
      MaybeStartSync();
      return;
    }
    scratch_.clear();
    c->enc.Feed(data, n, now, &scratch_);
    CountEncoder(before, c->enc.stats());
    if (opts_.on_records && !scratch_.empty()) opts_.on_records(scratch_);
    WriteFast(c);
  }

  // Appends scratch_ to the connection's segment, flushing it at the size limit.
  void WriteFast(Conn* c) {
    if (scratch_.empty()) return;
    if (!c->seg) {
      auto seg = log_->NewActive();
      if (!seg.ok()) {
        write_errors_->Inc();
        logger_->error("creating active segment: {}; closing connection", seg.status().ToString());
        scratch_.clear();
        CloseConn(c);
        return;
      }
      c->seg = std::move(seg).value();
    }
    Status s = c->seg->Append(scratch_.data(), scratch_.size());
    bytes_->Inc(scratch_.size());
    scratch_.clear();
    if (!s.ok()) {
      write_errors_->Inc();
      logger_->error("writing segment={}: {}; closing connection", c->seg->name(), s.ToString());
      FlushSegment(std::move(c->seg), "error");
      CloseConn(c);
      return;
    }
    if (c->seg->bytes() >= opts_.flush_size_bytes) FlushSegment(std::move(c->seg), "size");
  }

  void FlushSegment(std::unique_ptr<ActiveSegment> seg, const char* reason) {
    if (!seg) return;
    std::string name = seg->name();
    Status s = log_->Flush(std::move(seg), reason);
    if (!s.ok()) {
      write_errors_->Inc();
      logger_->error("flushing segment={}: {}", name, s.ToString());
    }
  }

  // ---- bulk ----

  void IngestBulk(Conn* c, const char* data, size_t n) {
    c->frames->Feed(data, n);
    std::string payload;
    while (!c->closing) {
      Result<bool> got = c->frames->Next(&payload);
      if (!got.ok()) return RejectBulk(c, got.status().message());
      if (!*got) break;
      Result<rpc::BulkMessage> m = rpc::DecodeBulkMessage(payload);
      if (!m.ok()) return RejectBulk(c, m.status().message());
      if (m->kind != rpc::BulkMessage::Kind::kSegment) return RejectBulk(c, "bulk: expected a segment");
      HandleBulkSegment(c, *m);
    }
    if (!c->closing && c->reading && c->unacked >= kBulkMaxUnacked) {
      uv_read_stop(reinterpret_cast<uv_stream_t*>(c->tcp));  // resumed by an ack
      c->reading = false;
    }
  }

  // Malformed input: an error frame, then the connection closes. Its stored segments stay
  // stored (they are complete); the forwarder resends what it has no ack for.
  void RejectBulk(Conn* c, const std::string& why) {
    bulk_rejected_->Inc();
    logger_->warn("bulk connection {} closed: {}", c->id, why);
    SendFrame(c, rpc::EncodeBulkError(why));
    CloseConn(c);
  }

  void HandleBulkSegment(Conn* c, const rpc::BulkMessage& m) {
    if (auto it = held_.find(m.id); it != held_.end()) {  // a resend of a segment still here
      bulk_segments_->With({"resent"})->Inc();
      if (it->second.insert(c->id).second) ++c->unacked;
      return;
    }
    if (recent_.count(m.id)) {  // a resend of a committed one: its ack was lost
      bulk_segments_->With({"resent"})->Inc();
      return SendFrame(c, rpc::EncodeBulkAck(m.id));
    }
    // The record ULIDs follow from the segment id, so every copy of a segment is identical.
    RecordEncoder enc(opts_.topic_mode, opts_.topic, opts_.record_max_bytes, UlidStream::At(m.id));
    const uint64_t ms = m.id.unix_ms();
    scratch_.clear();
    enc.Feed(m.text.data(), m.text.size(), ms, &scratch_);
    enc.Finish(ms, &scratch_);
    CountEncoder(EncoderStats{}, enc.stats());
    if (scratch_.empty()) {
      bulk_segments_->With({"empty"})->Inc();
      return SendFrame(c, rpc::EncodeBulkAck(m.id));
    }
    if (opts_.on_records) opts_.on_records(scratch_);
    auto seg = log_->NewActive();
    Status s = seg.ok() ? (*seg)->Append(scratch_.data(), scratch_.size()) : seg.status();
    bytes_->Inc(scratch_.size());
    scratch_.clear();
    std::string name = seg.ok() ? (*seg)->name() : "";
    if (seg.ok()) {
      Status f = log_->Flush(std::move(seg).value(), "bulk");
      if (s.ok()) s = f;
    }
    if (!s.ok()) {
      write_errors_->Inc();
      bulk_segments_->With({"error"})->Inc();
      logger_->error("storing bulk segment {}: {}; closing the connection", m.id.ToString(), s.ToString());
      SendFrame(c, rpc::EncodeBulkError("storing segment: " + s.ToString()));
      return CloseConn(c);
    }
    bulk_segments_->With({"stored"})->Inc();
    held_[m.id] = {c->id};
    by_name_[name] = m.id;
    ++c->unacked;
    bulk_unacked_->Set(static_cast<double>(held_.size()));
  }

  struct WriteReq {
    uv_write_t req;
    std::string data;
  };
  void SendFrame(Conn* c, std::string frame) {
    if (c->closing) return;
    // Small frames usually go out at once, so an error frame is sent even when the connection
    // closes right after (closing cancels queued writes).
    uv_buf_t now = uv_buf_init(frame.data(), frame.size());
    int sent = uv_try_write(reinterpret_cast<uv_stream_t*>(c->tcp), &now, 1);
    if (sent == static_cast<int>(frame.size())) return;
    if (sent > 0) frame.erase(0, static_cast<size_t>(sent));
    auto* w = new WriteReq;
    w->data = std::move(frame);
    w->req.data = w;
    uv_buf_t b = uv_buf_init(w->data.data(), w->data.size());
    if (uv_write(&w->req, reinterpret_cast<uv_stream_t*>(c->tcp), &b, 1, &Impl::OnWritten) != 0) delete w;
  }
  static void OnWritten(uv_write_t* req, int) noexcept { delete static_cast<WriteReq*>(req->data); }

  // Segments committed by the stores (replicated N times): acknowledge them.
  static void OnCommits(uv_async_t* a) noexcept {
    auto* self = static_cast<Impl*>(a->data);
    if (!self) return;
    std::vector<std::string> names;
    {
      std::lock_guard<std::mutex> lock(self->commits_->mu);
      names.swap(self->commits_->names);
    }
    for (const std::string& name : names) self->BulkCommitted(name);
  }

  void BulkCommitted(const std::string& name) {
    auto n = by_name_.find(name);
    if (n == by_name_.end()) return;  // not a bulk segment
    Ulid id = n->second;
    by_name_.erase(n);
    auto h = held_.find(id);
    if (h == held_.end()) return;
    for (uint64_t cid : h->second) {
      auto it = conns_.find(cid);
      if (it == conns_.end() || it->second->closing) continue;
      Conn* c = it->second.get();
      SendFrame(c, rpc::EncodeBulkAck(id));
      bulk_acks_->Inc();
      if (c->unacked > 0) --c->unacked;
      if (!c->reading && c->unacked < kBulkMaxUnacked) {
        c->reading = true;
        uv_read_start(reinterpret_cast<uv_stream_t*>(c->tcp), &Impl::OnAlloc, &Impl::OnRead);
      }
    }
    held_.erase(h);
    recent_.insert(id);
    recent_order_.push_back(id);
    if (recent_order_.size() > kBulkRecentCommits) {
      recent_.erase(recent_order_.front());
      recent_order_.pop_front();
    }
    bulk_unacked_->Set(static_cast<double>(held_.size()));
  }

  void ForgetBulkConn(Conn* c) {
    for (auto& [id, waiters] : held_) waiters.erase(c->id);
  }

  void CloseConn(Conn* c) {
    if (c->closing) return;
    c->closing = true;
    uv_read_stop(reinterpret_cast<uv_stream_t*>(c->tcp));
    uint64_t now = NowUnixMs();
    EncoderStats before = c->enc.stats();
    if (c->mod == Modality::kDurable) {
      size_t old = durable_next_.size();
      c->enc.Finish(now, &durable_next_);
      bytes_->Inc(durable_next_.size() - old);
      if (opts_.on_records && durable_next_.size() > old)
        opts_.on_records(std::string_view(durable_next_).substr(old));
      MaybeStartSync();
    } else if (c->mod == Modality::kFast) {
      scratch_.clear();
      c->enc.Finish(now, &scratch_);
      if (opts_.on_records && !scratch_.empty()) opts_.on_records(scratch_);
      WriteFast(c);
      FlushSegment(std::move(c->seg), "close");
    }
    CountEncoder(before, c->enc.stats());
    if (c->mod == Modality::kBulk) ForgetBulkConn(c);
    uv_close(reinterpret_cast<uv_handle_t*>(c->tcp), &Impl::OnConnClosed);
  }

  static void OnConnClosed(uv_handle_t* h) noexcept {
    auto* c = static_cast<Conn*>(h->data);
    delete reinterpret_cast<uv_tcp_t*>(h);
    if (!c) return;
    Impl* self = c->impl;
    self->clients_[static_cast<int>(c->mod)]->Add(-1);
    self->conns_.erase(c->id);  // destroys c
    --self->open_handles_;
    if (self->closing_ && self->conns_.empty()) self->CloseDrainTimer();
    self->CheckDone();
  }

  void MaybeStartSync() {
    if (sync_in_flight_ || durable_next_.empty()) return;
    if (!durable_seg_) {
      auto seg = log_->NewActive();
      if (!seg.ok()) {
        write_errors_->Inc();
        logger_->error("creating durable segment: {}", seg.status().ToString());
        FailDurableBatch();
        return;
      }
      durable_seg_ = std::move(seg).value();
    }
    auto* job = new SyncJob;
    job->req.data = job;
    job->impl = this;
    job->seg = durable_seg_.get();
    job->data.swap(durable_next_);
    job->conns.swap(waiting_next_);
    sync_in_flight_ = true;
    uv_queue_work(loop_, &job->req, &Impl::SyncWork, &Impl::SyncDone);
  }

  // Connections whose records could not be made durable are closed: the producer sees the
  // connection drop instead of believing its data is safe.
  void FailDurableBatch() {
    durable_next_.clear();
    for (uint64_t id : waiting_next_) {
      auto it = conns_.find(id);
      if (it != conns_.end()) CloseConn(it->second.get());
    }
    waiting_next_.clear();
  }

  static void SyncWork(uv_work_t* req) noexcept {
    auto* job = static_cast<SyncJob*>(req->data);
    job->status = job->seg->Append(job->data.data(), job->data.size());
    if (job->status.ok()) job->status = job->seg->Sync();
  }

  static void SyncDone(uv_work_t* req, int) noexcept {
    std::unique_ptr<SyncJob> job(static_cast<SyncJob*>(req->data));
    Impl* self = job->impl;
    self->sync_in_flight_ = false;
    if (job->status.ok()) {
      self->syncs_->Inc();
      for (uint64_t id : job->conns) {
        auto it = self->conns_.find(id);
        if (it == self->conns_.end() || it->second->closing) continue;
        uv_read_start(reinterpret_cast<uv_stream_t*>(it->second->tcp), &Impl::OnAlloc, &Impl::OnRead);
      }
      if (self->durable_seg_ && (self->durable_seg_->bytes() >= self->opts_.flush_size_bytes ||
                                 std::chrono::steady_clock::now() - self->durable_seg_->created() >= self->opts_.flush_age))
        self->FlushSegment(std::move(self->durable_seg_), "size");
    } else {
      self->write_errors_->Inc();
      self->logger_->error("durable group commit of {} bytes failed: {}; closing {} connection(s)", job->data.size(),
                           job->status.ToString(), job->conns.size());
      for (uint64_t id : job->conns) {
        auto it = self->conns_.find(id);
        if (it != self->conns_.end()) self->CloseConn(it->second.get());
      }
      // Retire the segment: what reached it before the failure is still consumed.
      self->FlushSegment(std::move(self->durable_seg_), "error");
    }
    self->MaybeStartSync();
    self->CheckDone();
  }

  static void OnTimer(uv_timer_t* t) noexcept {
    auto* self = static_cast<Impl*>(t->data);
    if (!self) return;
    auto now = std::chrono::steady_clock::now();
    for (auto& [id, c] : self->conns_) {
      if (c->seg && c->seg->bytes() > 0 && now - c->seg->created() >= self->opts_.flush_age)
        self->FlushSegment(std::move(c->seg), "age");
    }
    if (!self->sync_in_flight_ && self->durable_seg_ && self->durable_seg_->bytes() > 0 &&
        now - self->durable_seg_->created() >= self->opts_.flush_age)
      self->FlushSegment(std::move(self->durable_seg_), "age");
  }

  void CheckDone() {
    if (!closing_ || open_handles_ != 0 || sync_in_flight_ || !durable_next_.empty()) return;
    FlushSegment(std::move(durable_seg_), "shutdown");
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
  std::shared_ptr<spdlog::logger> logger_;
  std::vector<std::unique_ptr<Listener>> listeners_;
  uv_timer_t* timer_ = nullptr;
  uv_timer_t* drain_timer_ = nullptr;  // Close(): bounds the half-closed connections
  std::map<uint64_t, std::unique_ptr<Conn>> conns_;
  uint64_t next_conn_id_ = 0;
  int open_handles_ = 0;
  bool closing_ = false;
  std::function<void()> done_;
  std::string scratch_;
  // Durable group commit state.
  std::unique_ptr<ActiveSegment> durable_seg_;
  std::string durable_next_;
  std::vector<uint64_t> waiting_next_;
  bool sync_in_flight_ = false;

  // Bulk state: segments stored here and not yet committed, by id, with the connections
  // waiting for their ack; ingest file name -> id; recently committed ids.
  std::map<Ulid, std::set<uint64_t>> held_;
  std::map<std::string, Ulid> by_name_;
  std::set<Ulid> recent_;
  std::deque<Ulid> recent_order_;
  std::shared_ptr<CommitQueue> commits_;
  uv_async_t* async_ = nullptr;
  Family<Counter>* bulk_segments_;
  Counter* bulk_acks_;
  Counter* bulk_rejected_;
  Gauge* bulk_unacked_;

  Gauge* clients_[3];
  Counter* bytes_;
  Counter* records_;
  Counter* syncs_;
  Counter* truncated_;
  Counter* dropped_;
  Counter* invalid_topic_;
  Counter* write_errors_;
};

IngestServer::IngestServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
IngestServer::~IngestServer() = default;

Result<std::unique_ptr<IngestServer>> IngestServer::Create(uv_loop_t* loop, IngestLog* log,
                                                           IngestServerOptions options, Registry* metrics) {
  auto impl = std::make_unique<Impl>(loop, log, std::move(options), metrics);
  Status s = impl->Start();
  if (!s.ok()) {
    impl->Abandon();  // the caller's loop run frees the handles; impl may die now
    return s;
  }
  return std::unique_ptr<IngestServer>(new IngestServer(std::move(impl)));
}

uint16_t IngestServer::fast_port() const { return impl_->port(Modality::kFast); }
uint16_t IngestServer::durable_port() const { return impl_->port(Modality::kDurable); }
uint16_t IngestServer::bulk_port() const { return impl_->port(Modality::kBulk); }
void IngestServer::Close(std::function<void()> done) { impl_->Close(std::move(done)); }
size_t IngestServer::connections() const { return impl_->connections(); }

}  // namespace oklog
