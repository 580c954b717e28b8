#include "rpc/rpc_conn.h"

#include <memory>

#include "common/uv/check.h"

namespace oklog::rpc {

uint32_t WireStatus(const Status& s) {
  WireCode w = WireCode::kIOError;
  switch (s.code()) {
    case Code::kOk: w = WireCode::kOk; break;
    case Code::kInvalidArgument: w = WireCode::kInvalidArgument; break;
    case Code::kNotFound: w = WireCode::kNotFound; break;
    case Code::kCorruption: w = WireCode::kCorruption; break;
    case Code::kIOError: w = WireCode::kIOError; break;
    case Code::kUnavailable: w = WireCode::kUnavailable; break;
    case Code::kTimedOut: w = WireCode::kTimedOut; break;
    case Code::kResourceExhausted: w = WireCode::kResourceExhausted; break;
    case Code::kAlreadyExists: w = WireCode::kAlreadyExists; break;
    case Code::kCancelled: w = WireCode::kCancelled; break;
  }
  return static_cast<uint32_t>(w);
}

Status StatusFromWire(uint32_t code, std::string_view message) {
  std::string m(message);
  switch (static_cast<WireCode>(code)) {
    case WireCode::kOk: return Status::Ok();
    case WireCode::kInvalidArgument: return Status::InvalidArgument(m);
    case WireCode::kNotFound: return Status::NotFound(m);
    case WireCode::kCorruption: return Status::Corruption(m);
    case WireCode::kIOError: return Status::IOError(m);
    case WireCode::kUnavailable: return Status::Unavailable(m);
    case WireCode::kTimedOut: return Status::TimedOut(m);
    case WireCode::kResourceExhausted: return Status::ResourceExhausted(m);
    case WireCode::kAlreadyExists: return Status::AlreadyExists(m);
    case WireCode::kCancelled: return Status::Cancelled(m);
  }
  return Status::IOError("remote status " + std::to_string(code) + ": " + m);
}

std::string EncodeCredit(uint64_t bytes) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((bytes >> (56 - 8 * i)) & 0xFF);
  return out;
}

Result<uint64_t> DecodeCredit(std::string_view body) {
  if (body.size() != 8) return Status::Corruption("credit: not 8 bytes");
  uint64_t v = 0;
  for (char c : body) v = (v << 8) | static_cast<uint8_t>(c);
  return v;
}

struct RpcConn::WriteReq {
  uv_write_t req;
  char header[kFrameHeaderBytes];
  std::string data;
  RpcConn* conn;
  size_t bytes() const { return kFrameHeaderBytes + data.size(); }
};

namespace {
constexpr size_t kReadBufferBytes = 256 << 10;
}  // namespace

RpcConn::RpcConn(uv_loop_t* loop, RpcConnOwner* owner, size_t max_frame_bytes,
                 std::shared_ptr<const crypto::Keyring> ring, std::string_view cluster)
    : owner_(owner), decoder_(max_frame_bytes) {
  if (ring) seal_ = std::make_unique<crypto::StreamSeal>(std::move(ring), cluster);
  OKLOG_UV_CHECK(uv_tcp_init(loop, &tcp_));
  tcp_.data = this;
  created_ms = uv_now(loop);
}

void RpcConn::StartReading() {
  if (closing_ || reading_) return;
  reading_ = true;
  uv_tcp_nodelay(&tcp_, 1);
  uv_tcp_keepalive(&tcp_, 1, 30);
  uv_read_start(reinterpret_cast<uv_stream_t*>(&tcp_), OnAlloc, OnRead);
  if (seal_) WriteRaw(seal_->preamble());
}

bool RpcConn::WriteFrame(std::string payload) {
  if (closing_) return false;
  if (!seal_) return WriteRaw(std::move(payload));
  if (!seal_->started()) {
    queued_bytes_ += kFrameHeaderBytes + payload.size();
    unsealed_.push_back(std::move(payload));
    return true;
  }
  seal_->Seal(&payload);
  return WriteRaw(std::move(payload));
}

bool RpcConn::Unseal(std::string* frame, bool* preamble) {
  *preamble = false;
  if (!seal_) return true;
  if (seal_->started()) {
    Status st = seal_->Open(frame);
    if (!st.ok()) Broken(st, "unauthenticated");
    return st.ok();
  }
  Status st = seal_->Start(*frame);
  if (!st.ok()) {
    Broken(st, "unauthenticated");
    return false;
  }
  *preamble = true;
  std::vector<std::string> waiting = std::move(unsealed_);
  for (std::string& f : waiting) {
    queued_bytes_ -= kFrameHeaderBytes + f.size();
    seal_->Seal(&f);
    if (!WriteRaw(std::move(f))) return false;
  }
  return true;
}

bool RpcConn::WriteRaw(std::string payload) {
  if (closing_) return false;
  auto* w = new WriteReq;
  const auto n32 = static_cast<uint32_t>(payload.size());
  for (int i = 0; i < 4; ++i) w->header[i] = static_cast<char>((n32 >> (24 - 8 * i)) & 0xFF);
  w->data = std::move(payload);
  w->conn = this;
  w->req.data = w;
  uv_buf_t b[2] = {uv_buf_init(w->header, kFrameHeaderBytes),
                   uv_buf_init(w->data.data(), static_cast<unsigned>(w->data.size()))};
  const size_t n = w->bytes();
  if (uv_write(&w->req, reinterpret_cast<uv_stream_t*>(&tcp_), b, 2, OnWritten) != 0) {
    delete w;
    Broken(Status::IOError("write failed"), "");
    return false;
  }
  queued_bytes_ += n;
  return true;
}

void RpcConn::OnWritten(uv_write_t* req, int status) noexcept {
  std::unique_ptr<WriteReq> w(static_cast<WriteReq*>(req->data));  // the one release point
  RpcConn* c = w->conn;
  c->queued_bytes_ -= w->bytes();
  if (status != 0 && !c->closing_) c->Broken(Status::IOError(std::string("write: ") + uv_strerror(status)), "");
}

void RpcConn::OnAlloc(uv_handle_t* h, size_t, uv_buf_t* buf) noexcept {
  auto* c = static_cast<RpcConn*>(h->data);
  if (!c->rbuf_) c->rbuf_.reset(new char[kReadBufferBytes]);
  *buf = uv_buf_init(c->rbuf_.get(), static_cast<unsigned>(kReadBufferBytes));
}

void RpcConn::OnRead(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) noexcept {
  auto* c = static_cast<RpcConn*>(s->data);
  if (c->closing_ || nread == 0) return;  // nread 0: EAGAIN, not EOF
  if (nread < 0) {
    c->Broken(nread == UV_EOF ? Status::Unavailable("peer closed the connection")
                              : Status::IOError(std::string("read: ") + uv_strerror(static_cast<int>(nread))),
              "");
    return;
  }
  if (!c->decoder_.Feed(buf->base, static_cast<size_t>(nread))) {
    c->Broken(Status::ResourceExhausted("the node's memory budget is used up (-memory.budget)"), "memory");
    return;
  }
  std::string frame;
  while (!c->closing_) {
    Result<bool> next = c->decoder_.Next(&frame);
    if (!next.ok()) {
      c->Broken(next.status(), "oversize");
      return;
    }
    if (!next.value()) break;
    bool preamble = false;
    if (!c->Unseal(&frame, &preamble)) return;
    if (preamble) continue;
    if (!c->hello_seen_) {
      Result<Hello> h = DecodeHello(frame);
      if (!h.ok()) {
        c->Broken(h.status(), "malformed");
        return;
      }
      c->peer_name = h->node;
      Status st = c->owner_->OnHello(c, *h);
      if (!st.ok()) {
        c->Broken(st, st.code() == Code::kInvalidArgument ? "wrong_cluster" : "malformed");
        return;
      }
      c->hello_seen_ = true;
      continue;
    }
    Result<Envelope> e = DecodeEnvelope(frame);
    if (!e.ok()) {
      c->Broken(e.status(), "malformed");
      return;
    }
    c->owner_->OnEnvelope(c, std::move(e).value());
  }
}

void RpcConn::Broken(const Status& why, const char* reason) {
  if (closing_) return;
  owner_->OnBroken(this, why, reason);
  Close();
}

void RpcConn::Close() {
  if (closing_) return;
  closing_ = true;
  uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), OnClosed);
}

// Write callbacks (UV_ECANCELED) run before the close callback, so nothing touches the
// connection after this.
void RpcConn::OnClosed(uv_handle_t* h) noexcept { delete static_cast<RpcConn*>(h->data); }

}  // namespace oklog::rpc
