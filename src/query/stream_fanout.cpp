#include "query/stream_fanout.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "common/http_server.h"
#include "common/log.h"
#include "common/uv/check.h"
#include "query/stream_api.h"

namespace oklog {

namespace {

// A peer stream lasts as long as the subscription; the RPC layer wants a deadline anyway.
constexpr gossip::Duration kPeerStreamDeadline = std::chrono::hours(24 * 365);
// A record cut by the RPC chunking is reassembled; anything longer than this without a LF is
// not a record of ours (the largest allowed is 64 MiB) and is thrown away.
constexpr size_t kMaxCarryBytes = 65 << 20;

// A registry subscriber that is a `stream.open` call: the registry's writes become RPC parts,
// the call's credit window is the queue the bound applies to.
class CallResponse : public HttpResponse {
 public:
  explicit CallResponse(std::shared_ptr<rpc::ServerCall> call) : call_(std::move(call)) {
    // The call invokes its callbacks through copies, so clearing them here (in the destructor
    // too) is safe even from inside one.
    call_->OnWritable([this] {
      if (auto cb = on_drain_) cb();
    });
    call_->OnCancel([this] { Close(); });
  }
  ~CallResponse() override {
    call_->OnWritable(nullptr);
    call_->OnCancel(nullptr);
  }
  void Start(int, const Headers&) override {}
  bool Write(std::string data) override {
    if (closed()) return false;
    return call_->Send(std::move(data));
  }
  void Finish() override {
    if (closed_) return;
    call_->End(Status::Ok());
    Close();
  }
  void Abort(const std::string& reason) override {
    if (closed_) return;
    call_->End(Status::Unavailable(reason));
    Close();
  }
  // Nothing while the credit window has room; "far too much" while it has none, so the registry
  // drops (and later notices) rather than queueing without bound.
  size_t buffered_bytes() const override { return closed() || call_->writable() ? 0 : (size_t{1} << 40); }
  void OnDrain(std::function<void()> cb) override { on_drain_ = std::move(cb); }
  void OnClose(std::function<void()> cb) override {
    if (closed_) {
      if (cb) cb();
      return;
    }
    on_close_ = std::move(cb);
  }
  bool closed() const override { return closed_ || call_->over(); }
  bool is_head() const override { return false; }

 private:
  void Close() {
    if (closed_) return;
    closed_ = true;
    on_drain_ = nullptr;
    auto cb = std::move(on_close_);
    on_close_ = nullptr;
    if (cb) cb();  // last: it may release this response
  }
  std::shared_ptr<rpc::ServerCall> call_;
  bool closed_ = false;
  std::function<void()> on_drain_, on_close_;
};

bool StreamsFrom(const gossip::Peer& p) {
  if (p.is_self) return false;
  return std::any_of(p.meta.roles.begin(), p.meta.roles.end(),
                     [](const std::string& r) { return r == "ingest" || r == "store"; });
}

}  // namespace

StreamFanout::StreamFanout(uv_loop_t* loop, StreamRegistry* registry, gossip::PeerView* view,
                           rpc::RpcServer* server, rpc::RpcClient* client, Options options, Registry* metrics)
    : loop_(loop),
      registry_(registry),
      view_(view),
      client_(client),
      options_(options),
      peer_streams_(metrics->NewGauge("oklog_stream_peer_streams",
                                      "stream.open calls this node has open to peers for its clients.")),
      peer_failures_(metrics->NewCounter("oklog_stream_peer_failures_total",
                                         "Peer streams that failed or ended (reopened after a second).")),
      served_(metrics->NewCounter("oklog_stream_peer_requests_total", "stream.open calls served for peers.")),
      bad_requests_(metrics->NewCounter("oklog_stream_peer_bad_requests_total",
                                        "stream.open calls refused because their body did not decode.")) {
  server->Handle(kStreamOpen, [this](std::shared_ptr<rpc::ServerCall> call) { Serve(std::move(call)); });
  timer_ = new uv_timer_t;
  OKLOG_UV_CHECK(uv_timer_init(loop_, timer_));
  timer_->data = this;
  const auto every = static_cast<uint64_t>(std::max<int64_t>(1, options_.refresh.count()));
  uv_timer_start(timer_, &StreamFanout::OnTimer, every, every);
  view_listener_ = view_->Subscribe([this](const gossip::PeerEvent&) { Reconcile(); });
}

StreamFanout::~StreamFanout() {
  if (!closed_) Close();
  if (timer_ != nullptr) timer_->data = nullptr;
}

void StreamFanout::OnTimer(uv_timer_t* t) noexcept {
  auto* self = static_cast<StreamFanout*>(t->data);
  if (self != nullptr) self->Reconcile();
}

size_t StreamFanout::peers() const {
  size_t n = 0;
  for (const auto& p : view_->Live()) n += StreamsFrom(p) ? 1 : 0;
  return n;
}

void StreamFanout::Start(StreamId id, const MatchSpec& match) {
  if (closed_) return;
  Fan& fan = fans_[id];
  fan.body = EncodeStreamOpen(match);
  Reconcile(id, &fan, uv_now(loop_));
}

void StreamFanout::End(StreamId id) {
  auto it = fans_.find(id);
  if (it == fans_.end()) return;
  Fan fan = std::move(it->second);
  fans_.erase(it);  // first: the cancellations below find nothing to update
  for (auto& [name, ps] : fan.peers) {
    if (ps.open && ps.handle != 0) client_->Cancel(ps.handle);
  }
}

void StreamFanout::Reconcile() {
  if (closed_) return;
  const uint64_t now = uv_now(loop_);
  std::vector<StreamId> ids;
  for (const auto& [id, fan] : fans_) ids.push_back(id);
  for (StreamId id : ids) {
    auto it = fans_.find(id);
    if (it != fans_.end()) Reconcile(id, &it->second, now);
  }
}

void StreamFanout::Reconcile(StreamId id, Fan* fan, uint64_t now) {
  std::map<gossip::NodeName, std::string> want;
  for (const auto& p : view_->Live()) {
    if (StreamsFrom(p)) want.emplace(p.name, p.addr);
  }
  for (auto it = fan->peers.begin(); it != fan->peers.end();) {
    auto w = want.find(it->first);
    if (w != want.end() && w->second == it->second.addr) {
      ++it;
      continue;
    }
    // Gone (or moved): its on_end runs inside Cancel and finds the stream still listed.
    if (it->second.open && it->second.handle != 0) client_->Cancel(it->second.handle);
    it = fan->peers.erase(it);
  }
  for (const auto& [name, addr] : want) {
    PeerStream& ps = fan->peers[name];
    if (!ps.open && now >= ps.retry_at_ms) Open(id, fan, name, addr);
  }
}

void StreamFanout::Open(StreamId id, Fan* fan, const gossip::NodeName& name, const std::string& addr) {
  PeerStream& ps = fan->peers[name];
  ps.addr = addr;
  ps.open = true;
  ps.handle = 0;
  ps.carry.clear();
  const uint64_t gen = ps.generation = next_generation_++;
  peer_streams_->Add(1);
  rpc::RpcClient::StreamOptions so;
  so.timeout = kPeerStreamDeadline;
  so.idle_timeout = gossip::Duration(0);  // a quiet stream is fine
  so.credit = rpc::RpcClient::Credit::kAuto;
  rpc::RpcClient::StreamHandlers h;
  h.on_chunk = [this, id, name, gen](std::string part) { OnPart(id, name, gen, std::move(part)); };
  h.on_end = [this, id, name, gen](const Status& s) { OnPeerEnd(id, name, gen, s); };
  uint64_t handle = client_->Stream(addr, kStreamOpen, fan->body, so, std::move(h));
  // on_end may already have run (a peer we cannot reach): then the stream is not open.
  if (ps.open && ps.generation == gen) ps.handle = handle;
}

void StreamFanout::OnPart(StreamId id, const gossip::NodeName& name, uint64_t generation, std::string part) {
  auto it = fans_.find(id);
  if (it == fans_.end()) return;
  auto pit = it->second.peers.find(name);
  if (pit == it->second.peers.end() || pit->second.generation != generation) return;
  std::string& carry = pit->second.carry;
  size_t last_lf = part.rfind('\n');
  if (last_lf == std::string::npos) {
    carry += part;
    if (carry.size() > kMaxCarryBytes) carry.clear();
    return;
  }
  std::string batch;
  if (carry.empty()) {
    batch.assign(part, 0, last_lf + 1);
  } else {
    batch = std::move(carry);
    batch.append(part, 0, last_lf + 1);
  }
  carry.assign(part, last_lf + 1, std::string::npos);
  registry_->PublishTo(id, batch);  // last: may end the subscription and erase this fan
}

void StreamFanout::OnPeerEnd(StreamId id, const gossip::NodeName& name, uint64_t generation, const Status& status) {
  auto it = fans_.find(id);
  if (it == fans_.end()) {
    peer_streams_->Add(-1);
    return;
  }
  auto pit = it->second.peers.find(name);
  if (pit == it->second.peers.end() || pit->second.generation != generation || !pit->second.open) return;
  PeerStream& ps = pit->second;
  peer_streams_->Add(-1);
  ps.open = false;
  ps.handle = 0;
  ps.carry.clear();
  if (status.code() == Code::kCancelled) return;  // we cancelled it (peer gone, client gone)
  peer_failures_->Inc();
  ps.retry_at_ms = uv_now(loop_) + static_cast<uint64_t>(options_.retry.count());
  Logger("query")->debug("msg=\"peer stream ended; reopening\" peer={} err=\"{}\"", name, status.ToString());
}

void StreamFanout::Serve(std::shared_ptr<rpc::ServerCall> call) {
  served_->Inc();
  if (closed_) return call->End(Status::Unavailable("shutting down"));
  Result<MatchSpec> match = DecodeStreamOpen(call->body());
  if (!match.ok()) {
    bad_requests_->Inc();
    Logger("query")->warn("msg=\"bad stream.open request\" peer={} reason=\"{}\"", call->peer(),
                          match.status().ToString());
    return call->End(Status::InvalidArgument(match.status().message()));
  }
  StreamSpec spec;
  spec.match = std::move(match).value();  // raw records (text), the default window
  auto resp = std::make_shared<CallResponse>(call);
  Result<StreamId> id = registry_->Subscribe(spec, resp);
  if (!id.ok()) call->End(id.status());
}

void StreamFanout::Close() {
  if (closed_) return;
  closed_ = true;
  if (view_listener_ != 0) view_->Unsubscribe(view_listener_);
  view_listener_ = 0;
  std::vector<StreamId> ids;
  for (const auto& [id, fan] : fans_) ids.push_back(id);
  for (StreamId id : ids) End(id);
  peer_streams_->Set(0);
  if (timer_ != nullptr) {
    uv_close(reinterpret_cast<uv_handle_t*>(timer_), [](uv_handle_t* h) {
      auto* self = static_cast<StreamFanout*>(h->data);
      if (self != nullptr) self->timer_ = nullptr;
      delete reinterpret_cast<uv_timer_t*>(h);
    });
  }
}

}  // namespace oklog
