#include "segments/ingest/ingest_conn.h"

#include "common/uv/check.h"
#include "rpc/bulk_protocol.h"
#include "segments/ingest_acks.h"

namespace oklog {
namespace {

// One write in flight: it owns its bytes; its callback (which always runs, with UV_ECANCELED
// when the socket closes first) is the one place that frees it.
struct WriteReq {
  uv_write_t req;
  std::string data;
};

}  // namespace

const char* ModalityName(Modality m) {
  switch (m) {
    case Modality::kFast: return "fast";
    case Modality::kDurable: return "durable";
    case Modality::kBulk: return "bulk";
  }
  return "?";
}

IngestConn::IngestConn(Owner* owner, uint64_t id, Modality mod, RecordEncoder encoder)
    : owner_(owner), id_(id), mod_(mod), enc_(std::move(encoder)) {
  if (mod == Modality::kBulk) {
    frames_ = std::make_unique<rpc::FrameDecoder>(rpc::kBulkMaxFrameBytes);
    channel_ = Channel::kPlain;
  }
}

std::unique_ptr<IngestConn> IngestConn::Accept(uv_loop_t* loop, TcpListener* listener, Owner* owner, uint64_t id,
                                               Modality mod, RecordEncoder encoder,
                                               std::shared_ptr<const crypto::TlsContext> tls) {
  std::unique_ptr<IngestConn> c(new IngestConn(owner, id, mod, std::move(encoder)));
  OKLOG_UV_CHECK(c->tcp_.Init(c.get(), [loop](uv_tcp_t* t) { return uv_tcp_init(loop, t); }));
  if (listener->Accept(c->tcp_.stream()) != 0) return nullptr;  // ~IngestConn closes the socket
  c->last_read_ms_ = uv_now(loop);
  if (tls != nullptr) {
    std::string peer = "?";
    sockaddr_storage ss{};
    int len = sizeof ss;
    if (uv_tcp_getpeername(c->tcp_.get(), reinterpret_cast<sockaddr*>(&ss), &len) == 0)
      peer = SockaddrToString(reinterpret_cast<const sockaddr*>(&ss));
    const uint64_t timeout_ms = static_cast<uint64_t>(tls->options().handshake_timeout.count());
    auto session = crypto::TlsSession::Create(std::move(tls), peer);
    if (!session.ok()) return nullptr;  // out of memory: refused like a failed accept
    c->tls_ = std::move(session).value();
    OKLOG_UV_CHECK(c->handshake_timer_.Init(c.get(), [loop](uv_timer_t* t) { return uv_timer_init(loop, t); }));
    uv_timer_start(c->handshake_timer_.get(), &IngestConn::OnHandshakeTimeout, timeout_ms, 0);
  }
  return c;
}

void IngestConn::OnHandshakeTimeout(uv_timer_t* t) noexcept {
  auto* c = UvHandle<uv_timer_t>::Data<IngestConn>(t);
  if (c == nullptr || c->closing_ || c->tls_ == nullptr || c->tls_->established()) return;
  c->tls_->NoteHandshakeTimeout();
  c->owner_->OnEnd(c);
}

void IngestConn::ReadTls(const char* data, size_t n) {
  plain_.clear();
  const bool was_established = tls_->established();
  Status s = tls_->Feed(std::string_view(data, n), &plain_);
  SendRaw(tls_->TakeCiphertext());  // handshake records, or the alert of a failure
  if (!s.ok()) return owner_->OnEnd(this);
  if (!was_established && tls_->established() && handshake_timer_.open()) handshake_timer_.Close();
  if (!plain_.empty()) Deliver(plain_.data(), plain_.size());
  // close_notify: the peer's EOF. It may come in the same read as the last records; a durable
  // connection then waits for its batch (reading stopped) and sees the EOF when it reads again,
  // as a plain one would, so its last ack still goes out.
  if (!closing_ && tls_->peer_closed()) {
    if (reading_) OnEof();
    else eof_pending_ = true;
  }
}

void IngestConn::StartReading() {
  if (closing_ || reading_) return;
  if (eof_pending_) {
    eof_pending_ = false;
    return OnEof();
  }
  reading_ = true;
  uv_read_start(tcp_.stream(), &IngestConn::OnAlloc, &IngestConn::OnRead);
}

void IngestConn::StopReading() {
  if (!reading_) return;
  reading_ = false;
  uv_read_stop(tcp_.stream());
}

// One read buffer per loop thread, shared by all its connections: libuv reads one stream at a
// time and OnRead hands the bytes on (the owner copies what it keeps) before the next read, so
// an idle connection holds no buffer (2,000 idle producers would otherwise hold 500 MB).
void IngestConn::OnAlloc(uv_handle_t* h, size_t, uv_buf_t* buf) noexcept {
  thread_local std::unique_ptr<char[]> shared(new char[kReadBufferBytes]);
  auto* c = UvHandle<uv_tcp_t>::Data<IngestConn>(h);
  *buf = c != nullptr ? uv_buf_init(shared.get(), kReadBufferBytes) : uv_buf_init(nullptr, 0);
}

void IngestConn::OnRead(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) noexcept {
  auto* c = UvHandle<uv_tcp_t>::Data<IngestConn>(reinterpret_cast<uv_tcp_t*>(s));
  if (c == nullptr || c->closing_) return;
  if (nread == 0) return;  // EAGAIN: not EOF
  if (nread < 0) return c->OnEof();  // EOF or error
  c->last_read_ms_ = uv_now(s->loop);
  if (c->tls_ != nullptr) return c->ReadTls(buf->base, static_cast<size_t>(nread));
  c->Deliver(buf->base, static_cast<size_t>(nread));
}

// Newline ports: the first bytes decide whether the client asked for the back channel. While
// they match a prefix of kAckRequest they are held (at most its length); a mismatch makes the
// connection plain and hands the held bytes on with the rest, so a plain client loses nothing.
void IngestConn::Deliver(const char* data, size_t n) {
  if (channel_ == Channel::kUndecided) {
    const size_t held = request_matched_;
    size_t i = 0;
    while (i < n && request_matched_ < kAckRequest.size() && data[i] == kAckRequest[request_matched_]) {
      ++i;
      ++request_matched_;
    }
    if (request_matched_ == kAckRequest.size()) {
      channel_ = Channel::kAcks;
      Send(std::string(mod_ == Modality::kDurable ? kDurableHello : kFastHello));
      data += i;
      n -= i;
    } else if (i == n) {
      return;  // all a prefix so far: held
    } else {
      channel_ = Channel::kPlain;
      if (held > 0) {  // the held prefix came in earlier reads: hand it on in front
        std::string joined(kAckRequest.substr(0, held));
        joined.append(data, n);
        bytes_read_ += joined.size();
        return owner_->OnData(this, joined.data(), joined.size());
      }
    }
  }
  if (n == 0) return;
  bytes_read_ += n;
  owner_->OnData(this, data, n);
}

void IngestConn::OnEof() {
  if (channel_ == Channel::kUndecided) {
    channel_ = Channel::kPlain;
    if (request_matched_ > 0) {  // a client whose whole stream was a prefix of the request
      std::string held(kAckRequest.substr(0, request_matched_));
      bytes_read_ += held.size();
      owner_->OnData(this, held.data(), held.size());
      if (closing_) return;
    }
  }
  owner_->OnEnd(this);
}

void IngestConn::Send(std::string bytes) {
  if (closing_) return;
  if (tls_ != nullptr) {
    if (!tls_->Write(bytes).ok()) return;  // failed: the read side ends the connection
    bytes = tls_->TakeCiphertext();
  }
  SendRaw(std::move(bytes));
}

void IngestConn::SendRaw(std::string bytes) {
  if (closing_ || bytes.empty()) return;
  uv_buf_t now = uv_buf_init(bytes.data(), bytes.size());
  int sent = uv_try_write(tcp_.stream(), &now, 1);
  if (sent == static_cast<int>(bytes.size())) return;
  if (sent > 0) bytes.erase(0, static_cast<size_t>(sent));
  auto* w = new WriteReq;
  w->data = std::move(bytes);
  w->req.data = w;
  uv_buf_t b = uv_buf_init(w->data.data(), w->data.size());
  if (uv_write(&w->req, tcp_.stream(), &b, 1, [](uv_write_t* r, int) { delete static_cast<WriteReq*>(r->data); }) != 0)
    delete w;
}

bool IngestConn::Shutdown() {
  if (shut_) return true;  // already half-closed (a refusal, then Close): it drains on
  if (tls_ != nullptr) {
    tls_->Shutdown();  // close_notify ahead of the FIN
    SendRaw(tls_->TakeCiphertext());
  }
  auto* req = new uv_shutdown_t;
  if (uv_shutdown(req, tcp_.stream(), [](uv_shutdown_t* r, int) { delete r; }) != 0) {
    delete req;
    return false;
  }
  shut_ = true;
  return true;
}

bool IngestConn::HandOver() {
  if (mod_ == Modality::kBulk) return false;
  if (channel_ != Channel::kAcks) return Shutdown();
  if (!told_leave_) {
    Send(std::string(kLeaveMessage));
    told_leave_ = true;
  }
  return mod_ == Modality::kDurable ? true : Shutdown();
}

void IngestConn::SendAck(uint64_t count) {
  if (closing_ || channel_ != Channel::kAcks || count <= ack_wanted_) return;
  ack_wanted_ = count;
  if (!ack_in_flight_) WriteAck();
}

// Writes "ack ack_wanted_"; what uv_try_write could not take is queued, and its callback writes
// the newest count if it grew meanwhile.
void IngestConn::WriteAck() {
  if (closing_ || ack_written_ == ack_wanted_) return;
  std::string bytes = EncodeAck(ack_wanted_);
  ack_written_ = ack_wanted_;
  if (tls_ != nullptr) {  // one record per ack; ordered behind what Send queued (try_write then fails)
    if (!tls_->Write(bytes).ok()) return;  // failed: the read side ends the connection
    bytes = tls_->TakeCiphertext();
  }
  uv_buf_t now = uv_buf_init(bytes.data(), bytes.size());
  int sent = uv_try_write(tcp_.stream(), &now, 1);
  if (sent == static_cast<int>(bytes.size())) return;
  if (sent > 0) bytes.erase(0, static_cast<size_t>(sent));
  struct AckReq {
    uv_write_t req;
    std::string data;
    IngestConn* conn;
  };
  auto* w = new AckReq;
  w->data = std::move(bytes);
  w->conn = this;
  w->req.data = w;
  uv_buf_t b = uv_buf_init(w->data.data(), w->data.size());
  const int rc = uv_write(&w->req, tcp_.stream(), &b, 1, [](uv_write_t* r, int status) {
    auto* req = static_cast<AckReq*>(r->data);
    // Write callbacks run before the socket's close callback, so the connection is alive here;
    // after a failure or cancel nothing more is written.
    IngestConn* c = req->conn;
    c->ack_in_flight_ = false;
    if (status == 0) c->WriteAck();
    if (c->close_after_acks_ && !c->ack_in_flight_) c->Close();
    delete req;
  });
  if (rc != 0) {
    delete w;
    return;
  }
  ack_in_flight_ = true;
}

void IngestConn::CloseAfterAcks() {
  if (!ack_in_flight_) return Close();
  close_after_acks_ = true;
  StopReading();
}

void IngestConn::Close() {
  if (closing_) return;
  closing_ = true;
  StopReading();
  if (handshake_timer_.open()) handshake_timer_.Close();
  tcp_.Close([this] { owner_->OnClosed(this); });
}

}  // namespace oklog
