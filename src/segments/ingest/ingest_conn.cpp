#include "segments/ingest/ingest_conn.h"

#include "common/uv/check.h"
#include "rpc/bulk_protocol.h"

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
  if (mod == Modality::kBulk) frames_ = std::make_unique<rpc::FrameDecoder>(rpc::kBulkMaxFrameBytes);
}

std::unique_ptr<IngestConn> IngestConn::Accept(uv_loop_t* loop, TcpListener* listener, Owner* owner, uint64_t id,
                                               Modality mod, RecordEncoder encoder) {
  std::unique_ptr<IngestConn> c(new IngestConn(owner, id, mod, std::move(encoder)));
  OKLOG_UV_CHECK(c->tcp_.Init(c.get(), [loop](uv_tcp_t* t) { return uv_tcp_init(loop, t); }));
  if (listener->Accept(c->tcp_.stream()) != 0) return nullptr;  // ~IngestConn closes the socket
  c->last_read_ms_ = uv_now(loop);
  return c;
}

void IngestConn::StartReading() {
  if (closing_ || reading_) return;
  reading_ = true;
  uv_read_start(tcp_.stream(), &IngestConn::OnAlloc, &IngestConn::OnRead);
}

void IngestConn::StopReading() {
  if (!reading_) return;
  reading_ = false;
  uv_read_stop(tcp_.stream());
}

void IngestConn::OnAlloc(uv_handle_t* h, size_t, uv_buf_t* buf) noexcept {
  auto* c = UvHandle<uv_tcp_t>::Data<IngestConn>(h);
  *buf = c != nullptr ? uv_buf_init(c->rbuf_.get(), kReadBufferBytes) : uv_buf_init(nullptr, 0);
}

void IngestConn::OnRead(uv_stream_t* s, ssize_t nread, const uv_buf_t*) noexcept {
  auto* c = UvHandle<uv_tcp_t>::Data<IngestConn>(reinterpret_cast<uv_tcp_t*>(s));
  if (c == nullptr || c->closing_) return;
  if (nread == 0) return;  // EAGAIN: not EOF
  if (nread < 0) return c->owner_->OnEnd(c);  // EOF or error
  c->last_read_ms_ = uv_now(s->loop);
  c->owner_->OnData(c, c->rbuf_.get(), static_cast<size_t>(nread));
}

void IngestConn::Send(std::string bytes) {
  if (closing_) return;
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
  auto* req = new uv_shutdown_t;
  if (uv_shutdown(req, tcp_.stream(), [](uv_shutdown_t* r, int) { delete r; }) != 0) {
    delete req;
    return false;
  }
  shut_ = true;
  return true;
}

void IngestConn::Close() {
  if (closing_) return;
  closing_ = true;
  StopReading();
  tcp_.Close([this] { owner_->OnClosed(this); });
}

}  // namespace oklog
