#include "rpc/rpc_client.h"

#include <algorithm>
#include <csignal>
#include <cstring>
#include <map>
#include <vector>

#include "common/address.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/uv/check.h"
#include "rpc/rpc.h"
#include "rpc/rpc_conn.h"

namespace oklog::rpc {
namespace {

constexpr uint64_t kTickMs = 20;

struct ClientConn {
  std::string addr;
  RpcConn* rc = nullptr;
  bool connected = false;
  bool server_hello = false;
  uint64_t next_id = 1;
  std::vector<std::string> pending;  // frames written before the connect completed
  std::map<uint64_t, uint64_t> calls;  // wire id -> call handle
  // uv_now when the server last sent anything. A connect does not count: a frozen process's
  // kernel still completes it, and only the server's own hello shows the process is alive.
  uint64_t last_rx_ms = 0;
  uint64_t probe = 0;        // handle of the liveness ping in flight, 0: none
  uint64_t serial = 0;       // tells this connection from a later one to the same address
  uint64_t last_used_ms = 0; // uv_now of the last call started on it
};

struct ConnectReq {
  uv_connect_t req;
  ClientConn* conn;
  class RpcClientImpl* owner;
};

struct TickBox {
  uv_timer_t h;
  class RpcClientImpl* owner;
};

}  // namespace

struct ClientCall {
  uint64_t handle = 0;
  uint64_t wire_id = 0;
  ClientConn* conn = nullptr;
  bool unary = true;
  RpcClient::UnaryCallback done;
  RpcClient::StreamHandlers handlers;
  RpcClient::Credit credit = RpcClient::Credit::kAuto;
  std::string body;  // unary: the response so far
  uint64_t deadline_ms = 0;
  uint64_t idle_ms = 0;
  uint64_t first_ms = 0;  // 0: no first-part bound
  uint64_t start_ms = 0;
  uint64_t last_ms = 0;
  bool got_part = false;
  bool probe = false;  // a liveness ping: its own timeout never starts another
  // Response bytes of this call: chunks received, credits sent to the server, bytes consumed
  // but not yet credited (sent in batches). received - credited <= kRpcStreamWindowBytes, or the
  // server broke the window.
  uint64_t received = 0;
  uint64_t credited = 0;
  uint64_t unacked = 0;
  uint64_t max_bytes = 0;  // streams: 0 unlimited, else ResourceExhausted past it
};

class RpcClientImpl : public RpcConnOwner {
 public:
  uv_loop_t* loop;
  RpcClient::Options opt;
  std::map<std::string, ClientConn*> conns;
  std::map<std::string, uint64_t> failed_at;  // addr -> uv_now of the last failed connect
  std::map<uint64_t, ClientCall> calls;
  uint64_t next_handle = 1;
  uint64_t next_serial = 1;
  TickBox* tick = nullptr;
  bool ticking = false;
  bool closed = false;
  std::shared_ptr<spdlog::logger> log = Logger("rpc");
  Counter *calls_total = nullptr, *call_errors = nullptr, *bytes_in = nullptr, *bytes_out = nullptr;
  Counter *connects = nullptr;
  Family<Counter>* dropped = nullptr;
  Family<Counter>* closed_conns = nullptr;

  uint64_t Now() const { return uv_now(loop); }

  // ---- connections ----

  ClientConn* GetConn(const std::string& addr, Status* why) {
    auto it = conns.find(addr);
    if (it != conns.end()) return it->second;
    auto f = failed_at.find(addr);
    if (f != failed_at.end() && Now() - f->second < static_cast<uint64_t>(opt.reconnect_backoff.count())) {
      *why = Status::Unavailable("rpc: " + addr + " unreachable (recent connect failure)");
      return nullptr;
    }
    Result<Address> a = ParseAddress(addr, 7659);
    sockaddr_storage ss{};
    if (!a.ok() || !IpLiteral(*a, &ss)) {
      *why = Status::InvalidArgument("rpc: not an ip:port address: " + addr);
      return nullptr;
    }
    auto* cc = new ClientConn;
    cc->addr = addr;
    cc->serial = next_serial++;
    cc->rc = new RpcConn(loop, this, kMaxFrameBytes, opt.keyring, opt.cluster_name);
    cc->rc->SetMemoryBudget(opt.memory_budget);
    cc->rc->peer = addr;
    cc->rc->user = cc;
    auto* r = new ConnectReq{{}, cc, this};
    r->req.data = r;
    if (uv_tcp_connect(&r->req, cc->rc->tcp(), reinterpret_cast<const sockaddr*>(&ss), OnConnected) != 0) {
      delete r;
      cc->rc->Close();
      delete cc;
      *why = Status::Unavailable("rpc: connect " + addr + " failed");
      failed_at[addr] = Now();
      return nullptr;
    }
    connects->Inc();
    conns[addr] = cc;
    // The hello goes first, queued until connected.
    cc->pending.push_back(EncodeHello({kClusterProtocolVersion, opt.cluster_name, opt.node_name}));
    return cc;
  }

  static void OnConnected(uv_connect_t* req, int status) noexcept {
    std::unique_ptr<ConnectReq> r(static_cast<ConnectReq*>(req->data));
    if (status == UV_ECANCELED) return;  // closed meanwhile: the conn is already forgotten
    RpcClientImpl* self = r->owner;
    ClientConn* cc = r->conn;
    if (status != 0) {
      self->failed_at[cc->addr] = self->Now();
      self->BreakConn(cc, Status::Unavailable("rpc: connect " + cc->addr + ": " + uv_strerror(status)), "");
      return;
    }
    self->failed_at.erase(cc->addr);
    cc->connected = true;
    cc->rc->StartReading();
    for (const std::string& f : cc->pending) cc->rc->WriteFrame(f);
    cc->pending.clear();
  }

  void Write(ClientConn* cc, std::string payload) {
    if (cc->connected) cc->rc->WriteFrame(std::move(payload));
    else cc->pending.push_back(std::move(payload));
  }

  // Fails every call on the connection and forgets it.
  void BreakConn(ClientConn* cc, const Status& why, const char* reason) {
    auto it = conns.find(cc->addr);
    if (it == conns.end() || it->second != cc) return;
    conns.erase(it);
    if (reason[0] != '\0') {
      dropped->With({reason})->Inc();
      log->warn("dropping cluster connection to {}: {}", cc->addr, why.ToString());
    }
    std::map<uint64_t, uint64_t> ids = std::move(cc->calls);
    const std::string addr = cc->addr;
    cc->rc->user = nullptr;
    cc->rc->Close();
    delete cc;
    for (auto& [id, handle] : ids) {
      auto c = calls.find(handle);
      if (c == calls.end()) continue;
      c->second.conn = nullptr;
      Finish(handle, Status::Unavailable("rpc: " + addr + ": " + why.message()));
    }
  }

  Status OnHello(RpcConn* c, const Hello& h) override {
    if (h.version != kClusterProtocolVersion) return Status::Corruption("protocol version " + std::to_string(h.version));
    if (h.cluster != opt.cluster_name) return Status::InvalidArgument("peer is in cluster \"" + h.cluster + "\"");
    if (auto* cc = static_cast<ClientConn*>(c->user)) {
      cc->server_hello = true;
      cc->last_rx_ms = Now();
    }
    return Status::Ok();
  }

  void OnBroken(RpcConn* c, const Status& why, const char* reason) override {
    auto* cc = static_cast<ClientConn*>(c->user);
    if (cc) BreakConn(cc, why, reason);
  }

  void OnEnvelope(RpcConn* c, Envelope e) override {
    auto* cc = static_cast<ClientConn*>(c->user);
    if (!cc) return;
    cc->last_rx_ms = Now();
    bytes_in->Inc(e.body.size());
    if (e.kind == Envelope::Kind::kRequest) {
      BreakConn(cc, Status::Corruption("a request from a server"), "malformed");
      return;
    }
    auto id = cc->calls.find(e.request_id);
    if (id == cc->calls.end()) return;  // a call that ended here already (deadline, cancel)
    const uint64_t handle = id->second;
    ClientCall& call = calls.at(handle);
    call.last_ms = Now();
    call.got_part = true;
    switch (e.kind) {
      case Envelope::Kind::kResponse:
        if (!call.unary && call.max_bytes != 0 && call.received + e.body.size() > call.max_bytes) {
          Finish(handle, OverMaxBytes(call));  // a whole answer: nothing to cancel
          return;
        }
        if (!call.unary && !e.body.empty() && call.handlers.on_chunk) {
          auto cb = call.handlers.on_chunk;  // a copy: the callback may end the call (and free it)
          cb(std::move(e.body));
        } else if (call.unary) {
          call.body = std::move(e.body);
        }
        Finish(handle, StatusFromWire(e.status, ""));
        return;
      case Envelope::Kind::kChunk: {
        const size_t n = e.body.size();
        call.received += n;
        // ServerCall::Pump keeps sent - credited <= the window, and what we have credited is
        // never behind what the server has heard, so an honest server cannot get past this
        // check (no slack is due). Past it the peer ignores credits (a fake or broken store):
        // its bytes must not pile up here.
        if (call.received - call.credited > kRpcStreamWindowBytes) return WindowBroken(cc, handle);
        if (call.unary) {
          if (call.body.size() + n > kRpcMaxMessageBytes) {
            Cancel(handle, Status::ResourceExhausted("rpc: response exceeds the message limit"));
            return;
          }
          call.body.append(e.body);
          Consumed(handle, n);
          return;
        }
        if (call.max_bytes != 0 && call.received > call.max_bytes) {
          Cancel(handle, OverMaxBytes(call));
          return;
        }
        if (call.handlers.on_chunk) {
          auto cb = call.handlers.on_chunk;  // a copy: the callback may end the call (and free it)
          cb(std::move(e.body));
        }
        auto again = calls.find(handle);  // the callback may have ended the call
        if (again != calls.end() && again->second.credit == RpcClient::Credit::kAuto) Consumed(handle, n);
        return;
      }
      case Envelope::Kind::kEnd:
      case Envelope::Kind::kError:
        Finish(handle, StatusFromWire(e.status, e.body));
        return;
      default:
        return;
    }
  }

  void Consumed(uint64_t handle, size_t n) {
    auto it = calls.find(handle);
    if (it == calls.end() || !it->second.conn) return;
    ClientCall& call = it->second;
    // Never credit bytes that did not arrive: a caller's slip must not widen the window.
    call.unacked += std::min<uint64_t>(n, call.received - call.credited - call.unacked);
    if (call.unacked >= kRpcStreamWindowBytes / 4) {
      Write(call.conn, EncodeEnvelope({Envelope::Kind::kChunk, call.wire_id, "", 0, EncodeCredit(call.unacked)}));
      call.credited += call.unacked;
      call.unacked = 0;
    }
  }

  static Status OverMaxBytes(const ClientCall& call) {
    return Status::ResourceExhausted("rpc: answer exceeds its bound of " + std::to_string(call.max_bytes) + " bytes");
  }

  // The server sent past the credit window. That breaks the grammar, and a sender that ignores
  // credits would ignore a cancel as well, so the whole connection goes (counted as "window"):
  // it carries only calls to this one peer, which fail with Unavailable; connections to other
  // peers are untouched. This call ends with Corruption, naming the peer; it is taken out
  // first, so that the other calls' callbacks cannot end it with another status.
  void WindowBroken(ClientConn* cc, uint64_t handle) {
    auto it = calls.find(handle);
    ClientCall call = std::move(it->second);
    calls.erase(it);
    cc->calls.erase(call.wire_id);
    call.conn = nullptr;
    const std::string addr = cc->addr;
    const Status why = Status::Corruption("sent " + std::to_string(call.received - call.credited) +
                                          " uncredited response bytes, over the credit window of " +
                                          std::to_string(kRpcStreamWindowBytes));
    BreakConn(cc, why, "window");  // frees cc
    Report(std::move(call), Status::Corruption("rpc: " + addr + ": " + why.message()));
  }

  // ---- calls ----

  uint64_t Start(const std::string& addr, const std::string& method, std::string body, ClientCall call,
                 Duration timeout) {
    calls_total->Inc();
    const uint64_t handle = next_handle++;
    call.handle = handle;
    call.last_ms = call.start_ms = Now();
    call.deadline_ms = Now() + static_cast<uint64_t>(std::max<int64_t>(0, timeout.count()));
    calls.emplace(handle, std::move(call));
    if (closed) {
      Finish(handle, Status::Cancelled("rpc client closed"));
      return 0;
    }
    if (body.size() > kRpcMaxMessageBytes) {
      Finish(handle, Status::InvalidArgument("rpc: request exceeds the message limit"));
      return 0;
    }
    Status why;
    ClientConn* cc = GetConn(addr, &why);
    if (!cc) {
      Finish(handle, why);
      return 0;
    }
    ClientCall& c = calls.at(handle);
    c.conn = cc;
    c.wire_id = cc->next_id++;
    cc->calls[c.wire_id] = handle;
    cc->last_used_ms = Now();
    bytes_out->Inc(body.size());
    size_t off = 0;
    while (body.size() - off > kRpcChunkBytes) {
      Write(cc, EncodeEnvelope({Envelope::Kind::kChunk, c.wire_id, "", 0, body.substr(off, kRpcChunkBytes)}));
      off += kRpcChunkBytes;
    }
    Write(cc, EncodeEnvelope({Envelope::Kind::kRequest, c.wire_id, method, 0, off == 0 ? std::move(body) : body.substr(off)}));
    EnsureTicking();
    return handle;
  }

  // Ends the call here and tells the server to stop.
  void Cancel(uint64_t handle, const Status& why) {
    auto it = calls.find(handle);
    if (it == calls.end()) return;
    if (it->second.conn) Write(it->second.conn, EncodeEnvelope({Envelope::Kind::kError, it->second.wire_id, "", 0, ""}));
    Finish(handle, why);
  }

  // Removes the call, then runs its callback (which may start or end other calls).
  void Finish(uint64_t handle, const Status& st) {
    auto it = calls.find(handle);
    if (it == calls.end()) return;
    ClientCall call = std::move(it->second);
    calls.erase(it);
    if (call.conn) call.conn->calls.erase(call.wire_id);
    Report(std::move(call), st);
  }

  // Runs the callback of a call already removed.
  void Report(ClientCall call, const Status& st) {
    if (!st.ok()) call_errors->Inc();
    if (call.unary) {
      if (!call.done) return;
      if (st.ok()) call.done(std::move(call.body));
      else call.done(st);
    } else if (call.handlers.on_end) {
      call.handlers.on_end(st);
    }
  }

  void EnsureTicking() {
    if (ticking || closed) return;
    ticking = true;
    uv_timer_start(&tick->h, OnTick, kTickMs, kTickMs);
  }

  static void OnTick(uv_timer_t* t) noexcept {
    auto* box = static_cast<TickBox*>(t->data);
    RpcClientImpl* self = box->owner;
    if (!self) return;
    const uint64_t now = self->Now();
    struct Expired {
      uint64_t handle;
      Status why;
      uint64_t waited_since;  // the connection should have shown life after this
    };
    std::vector<Expired> expired;
    for (auto& [h, c] : self->calls) {
      if (now >= c.deadline_ms) expired.push_back({h, Status::TimedOut("rpc: deadline exceeded"), c.start_ms});
      else if (c.first_ms && !c.got_part && now - c.start_ms >= c.first_ms)
        expired.push_back({h, Status::TimedOut("rpc: no answer within " + std::to_string(c.first_ms) + " ms"), c.start_ms});
      else if (c.idle_ms && now - c.last_ms >= c.idle_ms)
        expired.push_back({h, Status::TimedOut("rpc: stream idle"), c.last_ms});
    }
    for (auto& e : expired) {
      auto it = self->calls.find(e.handle);
      if (it == self->calls.end()) continue;
      const ClientConn* was = it->second.conn;
      const bool check = was != nullptr && !it->second.probe;
      const std::string addr = check ? was->addr : std::string();
      const uint64_t serial = check ? was->serial : 0;
      self->Cancel(e.handle, e.why);  // its callback may close or replace the connection
      ClientConn* cc = check ? self->Find(addr, serial) : nullptr;
      if (cc != nullptr && cc->last_rx_ms <= e.waited_since) self->CheckLife(cc);
    }
    // Connections idle this long (no call, nothing received) close here, before the server's
    // longer idle timeout could close them under a call just sent.
    const auto idle_ms = static_cast<uint64_t>(self->opt.idle_timeout.count());
    if (idle_ms > 0) {
      std::vector<ClientConn*> idle;
      for (auto& [addr, cc] : self->conns)
        if (cc->calls.empty() && now - std::max(cc->last_used_ms, cc->last_rx_ms) >= idle_ms) idle.push_back(cc);
      for (ClientConn* cc : idle) {
        self->closed_conns->With({"idle"})->Inc();
        self->BreakConn(cc, Status::Unavailable("idle"), "");
      }
    }
    if (self->calls.empty() && (idle_ms == 0 || self->conns.empty())) {
      uv_timer_stop(&self->tick->h);
      self->ticking = false;
    }
  }

  // The connection to addr if it is still the one numbered serial.
  ClientConn* Find(const std::string& addr, uint64_t serial) const {
    auto it = conns.find(addr);
    return it != conns.end() && it->second->serial == serial ? it->second : nullptr;
  }

  // A call timed out and the server sent nothing on its connection meanwhile: ping it; if the
  // ping times out as well, the connection is dead (a frozen process, a cut network) and goes.
  void CheckLife(ClientConn* cc) {
    if (cc->probe != 0 || closed) return;
    ClientCall ping;
    ping.unary = true;
    ping.probe = true;
    const std::string addr = cc->addr;
    const uint64_t serial = cc->serial;
    ping.done = [this, addr, serial](Result<std::string> r) {
      ClientConn* cc = Find(addr, serial);
      if (cc == nullptr) return;  // closed meanwhile, for whatever reason
      cc->probe = 0;
      if (r.ok() || r.status().code() != Code::kTimedOut) return;  // an answer: alive
      closed_conns->With({"no_life"})->Inc();
      log->warn("closing cluster connection to {}: no answer to a call nor to a ping", addr);
      BreakConn(cc, Status::Unavailable("connection shows no life"), "");
    };
    cc->probe = Start(addr, std::string(kPingMethod), "", std::move(ping), opt.liveness_timeout);
  }

  void Disconnect(const std::string& addr, const std::string& why) {
    auto it = conns.find(addr);
    if (it == conns.end()) return;
    closed_conns->With({"peer_down"})->Inc();
    log->info("closing cluster connection to {}: {}", addr, why);
    BreakConn(it->second, Status::Unavailable(why), "");
  }

  void CloseAll() {
    if (closed) return;
    closed = true;
    std::vector<uint64_t> handles;
    for (auto& [h, c] : calls) handles.push_back(h);
    for (uint64_t h : handles) Finish(h, Status::Cancelled("rpc client closed"));
    for (auto& [addr, cc] : std::map<std::string, ClientConn*>(conns)) {
      conns.erase(addr);
      cc->rc->user = nullptr;
      cc->rc->Close();
      delete cc;
    }
    if (tick) {
      tick->owner = nullptr;
      uv_close(reinterpret_cast<uv_handle_t*>(&tick->h),
               [](uv_handle_t* h) { delete static_cast<TickBox*>(h->data); });
      tick = nullptr;
    }
  }

  ~RpcClientImpl() override { CloseAll(); }
};

// ---- RpcClient ----

std::unique_ptr<RpcClient> RpcClient::Create(uv_loop_t* loop, Options options, Registry* metrics) {
  // libuv writes with write(2): a peer that closed (a cap, an idle close) would otherwise kill
  // the process with SIGPIPE.
  signal(SIGPIPE, SIG_IGN);
  auto impl = std::make_unique<RpcClientImpl>();
  impl->loop = loop;
  impl->opt = std::move(options);
  static Registry fallback;
  Registry* r = metrics ? metrics : &fallback;
  impl->calls_total = r->NewCounter("oklog_rpc_calls_total", "RPC calls made to other nodes.");
  impl->call_errors = r->NewCounter("oklog_rpc_call_errors_total", "RPC calls that ended in an error.");
  impl->bytes_in = r->NewCounter("oklog_rpc_client_bytes_received_total", "RPC body bytes received by clients.");
  impl->bytes_out = r->NewCounter("oklog_rpc_client_bytes_sent_total", "RPC body bytes sent by clients.");
  impl->connects = r->NewCounter("oklog_rpc_connects_total", "Outgoing cluster-port connections opened.");
  impl->dropped = r->NewCounterFamily("oklog_rpc_streams_dropped_total",
                                      "Cluster connections closed for bad input or by policy, by reason (oversize, malformed, "
                                      "wrong_cluster, hello_timeout, unauthenticated, rekeyed, idle, cap, window).",
                                      {"reason"});
  impl->closed_conns = r->NewCounterFamily(
      "oklog_rpc_connections_closed_total",
      "Outgoing cluster connections closed to free their calls: peer_down (gossip says the peer is "
      "suspect, dead or gone), no_life (a call and then a ping timed out), idle (no call for the idle timeout).",
      {"reason"});
  impl->tick = new TickBox{{}, impl.get()};
  OKLOG_UV_CHECK(uv_timer_init(loop, &impl->tick->h));
  impl->tick->h.data = impl->tick;
  return std::unique_ptr<RpcClient>(new RpcClient(std::move(impl)));
}

RpcClient::RpcClient(std::unique_ptr<RpcClientImpl> impl) : impl_(std::move(impl)) {}
RpcClient::~RpcClient() = default;

void RpcClient::Call(const std::string& addr, const std::string& method, std::string body, Duration timeout,
                     UnaryCallback done) {
  ClientCall c;
  c.unary = true;
  c.done = std::move(done);
  impl_->Start(addr, method, std::move(body), std::move(c), timeout);
}

uint64_t RpcClient::Stream(const std::string& addr, const std::string& method, std::string body,
                           StreamOptions options, StreamHandlers handlers) {
  ClientCall c;
  c.unary = false;
  c.handlers = std::move(handlers);
  c.credit = options.credit;
  c.max_bytes = options.max_bytes;
  c.idle_ms = static_cast<uint64_t>(std::max<int64_t>(0, options.idle_timeout.count()));
  c.first_ms = static_cast<uint64_t>(std::max<int64_t>(0, options.first_part_timeout.count()));
  return impl_->Start(addr, method, std::move(body), std::move(c), options.timeout);
}

void RpcClient::Consume(uint64_t handle, size_t bytes) { impl_->Consumed(handle, bytes); }
void RpcClient::Cancel(uint64_t handle) { impl_->Cancel(handle, Status::Cancelled("rpc: cancelled by the caller")); }
void RpcClient::Disconnect(const std::string& addr, const std::string& why) { impl_->Disconnect(addr, why); }
void RpcClient::Close() { impl_->CloseAll(); }
void RpcClient::SetKeyring(std::shared_ptr<const crypto::Keyring> ring) {
  if (!ring) return;
  RpcClientImpl& i = *impl_;
  i.opt.keyring = std::move(ring);
  std::vector<ClientConn*> stale;
  for (auto& [addr, cc] : i.conns)
    if (!cc->rc->KeyedWithin(*i.opt.keyring)) stale.push_back(cc);
  for (ClientConn* cc : stale) i.BreakConn(cc, Status::Unavailable("its key left the keyring"), "rekeyed");
}
size_t RpcClient::connections() const { return impl_->conns.size(); }

}  // namespace oklog::rpc
