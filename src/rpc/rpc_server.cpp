#include "rpc/rpc_server.h"

#include <arpa/inet.h>

#include <csignal>
#include <cstring>
#include <set>

#include "common/address.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/uv/check.h"
#include "common/uv/tcp_listener.h"
#include "rpc/cluster_port.h"
#include "rpc/rpc.h"
#include "rpc/rpc_conn.h"

namespace oklog::rpc {

namespace {

// Per-connection protocol state of the server side.
struct ServerConnState {
  uint64_t max_id = 0;
  std::map<uint64_t, std::string> partial;  // request bodies arriving in parts
  size_t partial_bytes = 0;
  std::map<uint64_t, std::shared_ptr<ServerCall>> calls;
  uint64_t last_rx_ms = 0;  // uv_now of the last envelope from the client
};

struct TimerBox {
  uv_timer_t h;
  RpcServerImpl* owner;
};

}  // namespace

class RpcServerImpl : public RpcConnOwner {
 public:
  uv_loop_t* loop;
  RpcServer::Options opt;
  std::map<std::string, RpcServer::Handler> handlers;
  std::set<RpcConn*> conns;
  std::unique_ptr<TcpListener> listener;
  TimerBox* timer = nullptr;
  int open_boxes = 0;
  uint16_t port = 0;
  bool closed = false;
  std::shared_ptr<spdlog::logger> log = Logger("rpc");
  LogLimiter drop_log_limit;
  Counter *requests = nullptr, *bytes_in = nullptr, *bytes_out = nullptr, *accepted = nullptr;
  Family<Counter>* dropped = nullptr;
  Gauge* open_conns = nullptr;

  Status OnHello(RpcConn* c, const Hello& h) override {
    if (h.version != kClusterProtocolVersion)
      return Status::Corruption("protocol version " + std::to_string(h.version));
    if (h.cluster != opt.cluster_name) return Status::InvalidArgument("cluster \"" + h.cluster + "\"");
    c->WriteFrame(EncodeHello({kClusterProtocolVersion, opt.cluster_name, opt.node_name}));
    return Status::Ok();
  }

  void OnBroken(RpcConn* c, const Status& why, const char* reason) override {
    if (reason[0] != '\0') {
      dropped->With({reason})->Inc();
      Warn(c, why.ToString());
    }
    Drop(c);
  }

  void Protocol(RpcConn* c, const std::string& what) {
    dropped->With({"malformed"})->Inc();
    Warn(c, what);
    Drop(c);
    c->Close();
  }

  // Anyone who reaches the port can make drops happen: one report per 10 s, with the count.
  void Warn(RpcConn* c, const std::string& why) {
    uint64_t unlogged = 0;
    if (!drop_log_limit.Allow(&unlogged)) return;
    log->warn("dropping cluster connection from {}: {}{}", c->peer, why,
              unlogged > 0 ? " (and " + std::to_string(unlogged) + " more drops since the last report)" : "");
  }

  // Forgets the connection and cancels its calls; the caller closes it.
  void Drop(RpcConn* c) {
    if (!conns.erase(c)) return;
    open_conns->Set(static_cast<double>(conns.size()));
    auto* st = static_cast<ServerConnState*>(c->user);
    c->user = nullptr;
    if (!st) return;
    std::map<uint64_t, std::shared_ptr<ServerCall>> calls = std::move(st->calls);
    delete st;
    for (auto& [id, call] : calls) Cancel(call.get());
  }

  void Cancel(ServerCall* call) {
    if (call->over_) return;
    std::function<void()> cb = std::move(call->on_cancel_);
    call->Finish();
    if (cb) cb();
  }

  void OnEnvelope(RpcConn* c, Envelope e) override {
    auto* st = static_cast<ServerConnState*>(c->user);
    st->last_rx_ms = uv_now(loop);
    bytes_in->Inc(e.body.size());
    switch (e.kind) {
      case Envelope::Kind::kRequest: {
        if (e.request_id <= st->max_id && st->max_id != 0) return Protocol(c, "request id reused");
        st->max_id = e.request_id;
        auto call = std::make_shared<ServerCall>();
        auto p = st->partial.find(e.request_id);
        if (p != st->partial.end()) {
          st->partial_bytes -= p->second.size();
          call->body_ = std::move(p->second);
          st->partial.erase(p);
        }
        if (call->body_.size() + e.body.size() > kRpcMaxMessageBytes) return Protocol(c, "request too large");
        call->body_.append(e.body);
        call->method_ = std::move(e.method);
        call->server_ = this;
        call->conn_ = c;
        call->id_ = e.request_id;
        call->peer_ = c->peer;
        call->peer_name_ = c->peer_name;
        requests->Inc();
        auto h = handlers.find(call->method_);
        if (h == handlers.end() && call->method_ == kPingMethod) {
          call->Respond(Status::Ok(), "");  // a client checking that this connection is alive
          return;
        }
        if (h == handlers.end()) {
          call->Respond(Status::NotFound("unknown method \"" + call->method_ + "\""));
          return;
        }
        st->calls[e.request_id] = call;
        h->second(call);
        return;
      }
      case Envelope::Kind::kChunk: {
        auto it = st->calls.find(e.request_id);
        if (it != st->calls.end()) {
          Result<uint64_t> credit = DecodeCredit(e.body);
          if (!credit.ok()) return Protocol(c, credit.status().ToString());
          std::shared_ptr<ServerCall> call = it->second;  // Pump may finish it
          call->credited_ = std::min(call->sent_, call->credited_ + *credit);
          call->Pump();
          return;
        }
        if (e.request_id <= st->max_id) return;  // a late credit for a finished call
        st->partial_bytes += e.body.size();
        std::string& part = st->partial[e.request_id];
        if (part.size() + e.body.size() > kRpcMaxMessageBytes || st->partial_bytes > 2 * kRpcMaxMessageBytes)
          return Protocol(c, "request too large");
        part.append(e.body);
        return;
      }
      case Envelope::Kind::kError: {  // cancel
        auto it = st->calls.find(e.request_id);
        if (it == st->calls.end()) return;
        std::shared_ptr<ServerCall> call = it->second;
        Cancel(call.get());
        return;
      }
      default:
        return Protocol(c, "unexpected envelope kind from a client");
    }
  }

  void Forget(ServerCall* call) {
    RpcConn* c = call->conn_;
    call->conn_ = nullptr;
    if (!c || !conns.count(c)) return;
    auto* st = static_cast<ServerConnState*>(c->user);
    if (st) st->calls.erase(call->id_);
  }

  TcpListener::OnConnection OnConnection() {
    return [this](TcpListener* self, int status) {
      if (status == 0) NewConn(self);
    };
  }

  Status Adopt(Result<std::unique_ptr<TcpListener>> l) {
    if (!l.ok()) return Status::IOError("rpc: " + l.status().message());
    listener = std::move(l).value();
    port = listener->port();
    listener->SetCap(opt.max_connections, [this] { return conns.size(); },
                     [this] { dropped->With({"cap"})->Inc(); });
    return Status::Ok();
  }

  // Closes a connection by policy (hello timeout, idle, a removed key), counted as `reason`.
  void Shed(RpcConn* c, const char* reason) {
    dropped->With({reason})->Inc();
    Drop(c);
    c->Close();
  }

  void NewConn(TcpListener* l) {
    auto* c = new RpcConn(loop, this, kMaxFrameBytes, opt.keyring, opt.cluster_name);
    c->SetMemoryBudget(opt.memory_budget);
    if (l->Accept(reinterpret_cast<uv_stream_t*>(c->tcp())) != 0) {
      c->Close();
      return;
    }
    if (closed) {
      c->Close();
      return;
    }
    sockaddr_storage peer;
    int len = sizeof peer;
    if (uv_tcp_getpeername(c->tcp(), reinterpret_cast<sockaddr*>(&peer), &len) == 0)
      c->peer = SockaddrToString(reinterpret_cast<sockaddr*>(&peer));
    c->user = new ServerConnState;
    conns.insert(c);
    accepted->Inc();
    open_conns->Set(static_cast<double>(conns.size()));
    c->StartReading();
  }

  // Closes connections whose hello is late, and idle ones: no call in flight and nothing from
  // the client for idle_timeout (clients close theirs sooner, so a live peer never races this).
  static void OnTick(uv_timer_t* t) noexcept {
    auto* box = static_cast<TimerBox*>(t->data);
    RpcServerImpl* self = box->owner;
    if (!self) return;
    const uint64_t now = uv_now(self->loop);
    const auto idle_ms = static_cast<uint64_t>(self->opt.idle_timeout.count());
    std::vector<std::pair<RpcConn*, const char*>> gone;
    for (RpcConn* c : self->conns) {
      auto* st = static_cast<ServerConnState*>(c->user);
      if (!c->hello_seen()) {
        if (now - c->created_ms > static_cast<uint64_t>(self->opt.hello_timeout.count()))
          gone.emplace_back(c, "hello_timeout");
      } else if (idle_ms > 0 && st != nullptr && st->calls.empty() && st->partial.empty() &&
                 now - std::max(st->last_rx_ms, c->created_ms) >= idle_ms) {
        gone.emplace_back(c, "idle");
      }
    }
    for (auto& [c, why] : gone) self->Shed(c, why);
  }

  static void OnBoxClosed(uv_handle_t* h) noexcept {
    auto* b = static_cast<TimerBox*>(h->data);
    if (b->owner) {
      --b->owner->open_boxes;
      b->owner->timer = nullptr;
    }
    delete b;
  }

  void CloseAll() {
    if (closed) return;
    closed = true;
    for (RpcConn* c : std::vector<RpcConn*>(conns.begin(), conns.end())) {
      Drop(c);
      c->Close();
    }
    if (listener) listener->Close();
    if (timer) uv_close(reinterpret_cast<uv_handle_t*>(&timer->h), OnBoxClosed);
  }

  ~RpcServerImpl() override {
    CloseAll();
    if (timer) timer->owner = nullptr;
  }
};

// ---- ServerCall ----

void ServerCall::Respond(const Status& status, std::string body) {
  if (over_ || ended_) return;
  if (!status.ok()) {
    Envelope e{streamed_ ? Envelope::Kind::kEnd : Envelope::Kind::kError, id_, "", WireStatus(status),
               status.message()};
    ended_ = true;
    queue_.clear();
    queued_bytes_ = 0;
    if (conn_) conn_->WriteFrame(EncodeEnvelope(e));
    Finish();
    return;
  }
  if (!streamed_ && body.size() <= kRpcChunkBytes) {
    Envelope e{Envelope::Kind::kResponse, id_, "", 0, std::move(body)};
    if (server_) server_->bytes_out->Inc(e.body.size());
    ended_ = true;
    if (conn_) conn_->WriteFrame(EncodeEnvelope(e));
    Finish();
    return;
  }
  Send(std::move(body));
  End(Status::Ok());
}

bool ServerCall::Send(std::string part) {
  if (over_ || ended_) return false;
  streamed_ = true;
  for (size_t off = 0; off < part.size(); off += kRpcChunkBytes) {
    size_t n = std::min(kRpcChunkBytes, part.size() - off);
    queue_.push_back(off == 0 && n == part.size() ? std::move(part) : part.substr(off, n));
    queued_bytes_ += n;
  }
  Pump();
  return !over_;
}

void ServerCall::End(const Status& status) {
  if (over_ || ended_) return;
  streamed_ = true;
  ended_ = true;
  end_status_ = status;
  Pump();
}

bool ServerCall::writable() const {
  return !over_ && !ended_ && queued_bytes_ + (sent_ - credited_) < kRpcStreamWindowBytes;
}

// Writes queued chunks while the window allows, then the end frame once the queue is empty.
void ServerCall::Pump() {
  if (over_ || !conn_ || conn_->closed()) return;
  while (!queue_.empty() && (sent_ - credited_ + queue_.front().size() <= kRpcStreamWindowBytes || sent_ == credited_)) {
    Envelope e{Envelope::Kind::kChunk, id_, "", 0, std::move(queue_.front())};
    queue_.pop_front();
    queued_bytes_ -= e.body.size();
    sent_ += e.body.size();
    if (server_) server_->bytes_out->Inc(e.body.size());
    conn_->WriteFrame(EncodeEnvelope(e));
  }
  if (ended_ && queue_.empty()) {
    Envelope e{Envelope::Kind::kEnd, id_, "", WireStatus(end_status_), end_status_.message()};
    conn_->WriteFrame(EncodeEnvelope(e));
    Finish();
    return;
  }
  if (!writable()) {
    was_blocked_ = true;
  } else if (was_blocked_) {
    was_blocked_ = false;
    if (on_writable_) {
      auto cb = on_writable_;  // the callback may replace itself
      cb();
    }
  }
}

void ServerCall::Finish() {
  if (over_) return;
  over_ = true;
  queue_.clear();
  queued_bytes_ = 0;
  // Callbacks often hold the call itself (a cycle): drop them once it is over.
  on_cancel_ = nullptr;
  on_writable_ = nullptr;
  RpcServerImpl* server = server_;
  server_ = nullptr;
  if (server) server->Forget(this);  // may destroy this object: nothing after it
}

// ---- RpcServer ----

std::unique_ptr<RpcServer> RpcServer::Create(uv_loop_t* loop, Options options, Registry* metrics) {
  // libuv writes with write(2): a peer that closed (a cap, an idle close) would otherwise kill
  // the process with SIGPIPE.
  signal(SIGPIPE, SIG_IGN);
  auto impl = std::make_unique<RpcServerImpl>();
  impl->loop = loop;
  impl->opt = std::move(options);
  static Registry fallback;
  Registry* r = metrics ? metrics : &fallback;
  impl->requests = r->NewCounter("oklog_rpc_requests_total", "Data-plane and gossip RPC requests served.");
  impl->bytes_in = r->NewCounter("oklog_rpc_server_bytes_received_total", "RPC body bytes received by the server.");
  impl->bytes_out = r->NewCounter("oklog_rpc_server_bytes_sent_total", "RPC body bytes sent by the server.");
  impl->accepted = r->NewCounter("oklog_rpc_connections_accepted_total", "Cluster-port TCP connections accepted.");
  impl->open_conns = r->NewGauge("oklog_rpc_server_connections", "Open incoming cluster-port connections.");
  impl->dropped = r->NewCounterFamily("oklog_rpc_streams_dropped_total",
                                      "Cluster connections closed for bad input or by policy, by reason (oversize, malformed, "
                                      "wrong_cluster, hello_timeout, unauthenticated, rekeyed, idle, cap, window).",
                                      {"reason"});
  auto* t = new TimerBox{{}, impl.get()};
  OKLOG_UV_CHECK(uv_timer_init(loop, &t->h));
  t->h.data = t;
  impl->timer = t;
  impl->open_boxes = 1;
  uv_timer_start(&t->h, RpcServerImpl::OnTick, 250, 250);
  uv_unref(reinterpret_cast<uv_handle_t*>(&t->h));
  return std::unique_ptr<RpcServer>(new RpcServer(std::move(impl)));
}

RpcServer::RpcServer(std::unique_ptr<RpcServerImpl> impl) : impl_(std::move(impl)) {}
RpcServer::~RpcServer() = default;

void RpcServer::Handle(const std::string& method, Handler handler) { impl_->handlers[method] = std::move(handler); }

Status RpcServer::Listen(const std::string& addr) {
  OKLOG_ASSIGN_OR_RETURN(Address a, ParseAddress(addr, 7659));
  sockaddr_storage ss{};
  if (!IpLiteral(a, &ss))
    return Status::InvalidArgument("rpc: listen address must be an IP literal: " + addr);
  return impl_->Adopt(TcpListener::Create(impl_->loop, ss, impl_->OnConnection(), ClusterPort::kBacklog));
}

Status RpcServer::Listen(UniqueFd listening) {
  return impl_->Adopt(TcpListener::Adopt(impl_->loop, std::move(listening), impl_->OnConnection(), ClusterPort::kBacklog));
}

uint16_t RpcServer::port() const { return impl_->port; }
void RpcServer::Close() { impl_->CloseAll(); }
void RpcServer::SetKeyring(std::shared_ptr<const crypto::Keyring> ring) {
  if (!ring) return;
  RpcServerImpl& i = *impl_;
  i.opt.keyring = std::move(ring);
  for (RpcConn* c : std::vector<RpcConn*>(i.conns.begin(), i.conns.end()))
    if (!c->KeyedWithin(*i.opt.keyring)) i.Shed(c, "rekeyed");
}
bool RpcServer::done() const {
  return impl_->closed && impl_->open_boxes == 0 && (!impl_->listener || impl_->listener->done());
}
size_t RpcServer::connections() const { return impl_->conns.size(); }

}  // namespace oklog::rpc
