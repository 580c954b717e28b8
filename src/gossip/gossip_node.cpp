#include "gossip/gossip_node.h"

#include <arpa/inet.h>

#include <algorithm>
#include <set>

#include "common/address.h"
#include "common/crypto/seal.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/ulid.h"
#include "gossip/membership.h"
#include "gossip/transport.h"

namespace oklog::gossip {

namespace {

constexpr uint16_t kDefaultClusterPort = 7659;
constexpr size_t kUdpRecvBufferBytes = 64 * 1024;

// "ip:port" literal to a socket address; false for names and malformed text.
bool ParseLiteral(const std::string& text, sockaddr_storage* out) {
  Result<Address> a = ParseAddress(text, kDefaultClusterPort);
  return a.ok() && IpLiteral(*a, out);
}

std::string FirstNonLoopbackIpv4() {
  uv_interface_address_t* ifs = nullptr;
  int n = 0;
  if (uv_interface_addresses(&ifs, &n) != 0) return "";
  std::string out;
  for (int i = 0; i < n && out.empty(); ++i) {
    if (ifs[i].is_internal || ifs[i].address.address4.sin_family != AF_INET) continue;
    char buf[INET_ADDRSTRLEN];
    uv_ip4_name(&ifs[i].address.address4, buf, sizeof buf);
    out = buf;
  }
  uv_free_interface_addresses(ifs, n);
  return out;
}

}  // namespace

// Every libuv handle lives in a box allocated apart from Impl; the box is freed in its close
// callback. `owner` is null once Impl is gone, and callbacks then only clean up.
struct Box {
  GossipNode::Impl* owner = nullptr;
  virtual ~Box() = default;
};
struct UdpBox : Box {
  uv_udp_t h;
};
struct TimerBox : Box {
  uv_timer_t h;
};
struct UdpSendReq {
  uv_udp_send_t req;
  std::string data;
};

struct GossipNode::Impl {
  uv_loop_t* loop = nullptr;
  Options opt;
  Config cfg;
  std::unique_ptr<Membership> m;
  std::unique_ptr<PeerView> view;
  std::shared_ptr<spdlog::logger> log = Logger("gossip");
  uint16_t port = 0;
  UdpBox* udp = nullptr;
  TimerBox* timer = nullptr;
  std::set<Box*> boxes;  // every box not yet freed
  bool started = false;
  bool closed = false;
  // Exchanges in flight hold it weakly: their replies are dropped once it is gone.
  std::shared_ptr<Impl*> self_token;
  std::function<void()> leave_done;
  Instant leave_deadline = Instant::max();
  std::vector<char> recv_buf = std::vector<char>(kUdpRecvBufferBytes);
  Incarnation view_self_incarnation = 0;

  // Metrics.
  Registry* reg = nullptr;
  Family<Gauge>* members_by_state = nullptr;
  Gauge* health = nullptr;
  Counter *probes = nullptr, *probes_failed = nullptr, *suspicions = nullptr, *refutes = nullptr;
  Counter *packets_in = nullptr, *packets_out = nullptr, *bytes_in = nullptr, *bytes_out = nullptr;
  Family<Counter>* refused = nullptr;
  Counter *dropped = nullptr, *streams_out = nullptr, *stream_bytes_in = nullptr, *stream_bytes_out = nullptr;
  std::array<Counter*, kRejectionKinds> rejected{};  // by Rejection
  MembershipStats last_stats;
  bool initial_metrics_done = false;

  ~Impl();
  Instant Now() const { return Instant(Duration(static_cast<int64_t>(uv_now(loop)))); }
  Status Bind();
  void Pump();
  // Runs the leave callback once the leave has been handed to the kernel for every transmission
  // (or the leave timeout passed). libuv sends a datagram at once only when nothing is queued
  // before it, so the later packets of one gossip tick wait for the next loop turn: closing at
  // the first chance would cancel them, and the leave could reach no live peer.
  void MaybeFinishLeave(Instant now);
  void SendUdp(const std::string& to, std::string bytes);
  void StartStream(const std::string& to, std::string body);
  void OnStreamReply(const std::string& from, Result<std::string> reply);
  void RegisterMetrics();
  void SyncMetrics(bool members_changed);
  void CloseAll();

  static void OnUdpAlloc(uv_handle_t* h, size_t suggested, uv_buf_t* buf) noexcept;
  static void OnUdpRecv(uv_udp_t* h, ssize_t nread, const uv_buf_t* buf, const sockaddr* addr, unsigned flags) noexcept;
  static void OnUdpSent(uv_udp_send_t* req, int status) noexcept;
  static void OnTimer(uv_timer_t* t) noexcept;
  static void OnBoxClosed(uv_handle_t* h) noexcept;
};

// ---- construction and binding ----

Result<std::unique_ptr<GossipNode>> GossipNode::Create(uv_loop_t* loop, Options options, Registry* metrics) {
  auto impl = std::make_unique<Impl>();
  impl->loop = loop;
  impl->opt = std::move(options);
  impl->reg = metrics;
  OKLOG_ASSIGN_OR_RETURN(Address bind, ParseAddress(impl->opt.bind_addr, kDefaultClusterPort));
  impl->opt.bind_addr = bind.HostPort();
  OKLOG_RETURN_IF_ERROR(impl->Bind());
  // The advertise address: explicit, or the bind address, or a guess when bound to a wildcard.
  std::string adv = impl->opt.advertise_addr;
  if (adv.empty()) {
    std::string host = bind.host;
    if (host.empty() || host == "0.0.0.0" || host == "::") host = FirstNonLoopbackIpv4();
    if (host.empty()) {
      impl->CloseAll();
      return Status::InvalidArgument("gossip: cannot guess an advertise address; set -cluster.advertise-addr");
    }
    adv = Address{"tcp", host, impl->port}.HostPort();
  } else {
    Result<Address> a = ParseAddress(adv, impl->port);
    if (!a.ok()) {
      impl->CloseAll();
      return a.status();
    }
    if (a->port == 0) a->port = impl->port;
    sockaddr_storage ss;
    if (!ParseLiteral(a->HostPort(), &ss)) {  // names are resolved once, here
      Result<std::vector<sockaddr_storage>> r = Resolve(*a);
      if (!r.ok()) {
        impl->CloseAll();
        return r.status();
      }
      std::string ipport = SockaddrToString(reinterpret_cast<const sockaddr*>(&r->front()));
      Result<Address> ra = ParseAddress(ipport, a->port);
      a->host = ra.ok() ? ra->host : a->host;
    }
    adv = a->HostPort();
  }
  impl->cfg = Config::ForPreset(impl->opt.preset);
  impl->cfg.name = impl->opt.name.empty() ? adv : impl->opt.name;
  impl->cfg.advertise_addr = adv;
  impl->cfg.cluster_name = impl->opt.cluster_name;
  impl->cfg.random_seed = RandomU64();
  // Wall-clock seconds: a restarted node outranks whatever its previous life said.
  impl->cfg.initial_incarnation = NowUnixMs() / 1000;
  if (impl->opt.tweak) impl->opt.tweak(impl->cfg);
  // A sealed datagram carries 37 bytes more than its message: keep it within the same size.
  if (impl->opt.sealer && impl->cfg.packet_budget_bytes > 2 * crypto::kPacketOverheadBytes)
    impl->cfg.packet_budget_bytes -= crypto::kPacketOverheadBytes;
  Result<std::string> meta = EncodeNodeMeta(impl->opt.meta);
  if (!meta.ok()) {
    impl->CloseAll();
    return meta.status();
  }
  Result<std::unique_ptr<Membership>> m = Membership::Create(impl->cfg, std::move(meta).value(), impl->Now());
  if (!m.ok()) {
    impl->CloseAll();
    return m.status();
  }
  impl->m = std::move(m).value();
  impl->view = std::make_unique<PeerView>(impl->cfg.name);
  impl->view->Apply({MemberEvent::Kind::kJoin, impl->m->self()});
  impl->view_self_incarnation = impl->m->self().incarnation;
  impl->RegisterMetrics();
  impl->self_token = std::make_shared<Impl*>(impl.get());
  return std::unique_ptr<GossipNode>(new GossipNode(std::move(impl)));
}

GossipNode::GossipNode(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
GossipNode::~GossipNode() = default;

Status GossipNode::Impl::Bind() {
  Result<Address> bind = ParseAddress(opt.bind_addr, kDefaultClusterPort);
  sockaddr_storage ss;
  if (!bind.ok() || !ParseLiteral(bind->HostPort(), &ss))
    return Status::InvalidArgument("gossip: bind address must be an IP literal: " + opt.bind_addr);
  auto* u = new UdpBox;
  u->owner = this;
  int rc = uv_udp_init(loop, &u->h);
  if (rc != 0) {
    delete u;
    return Status::IOError(std::string("gossip: uv_udp_init: ") + uv_strerror(rc));
  }
  u->h.data = u;
  boxes.insert(u);
  udp = u;
  if (opt.udp_fd.valid()) {
    // A socket bound by the cluster port's owner: the handle closes it from here on.
    rc = uv_udp_open(&u->h, opt.udp_fd.get());
    if (rc == 0) opt.udp_fd.release();
  } else {
    rc = uv_udp_bind(&u->h, reinterpret_cast<const sockaddr*>(&ss), 0);
  }
  if (rc != 0) {
    CloseAll();
    return Status::IOError("gossip: UDP bind " + opt.bind_addr + ": " + uv_strerror(rc));
  }
  sockaddr_storage bound;
  int len = sizeof bound;
  uv_udp_getsockname(&u->h, reinterpret_cast<sockaddr*>(&bound), &len);
  port = ntohs(bound.ss_family == AF_INET ? reinterpret_cast<sockaddr_in*>(&bound)->sin_port
                                          : reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port);
  auto* t = new TimerBox;
  t->owner = this;
  rc = uv_timer_init(loop, &t->h);
  if (rc != 0) {
    delete t;
    CloseAll();
    return Status::IOError(std::string("gossip: uv_timer_init: ") + uv_strerror(rc));
  }
  t->h.data = t;
  boxes.insert(t);
  timer = t;
  return Status::Ok();
}

void GossipNode::Start() {
  Impl& i = *impl_;
  if (i.started || i.closed) return;
  i.started = true;
  uv_udp_recv_start(&i.udp->h, Impl::OnUdpAlloc, Impl::OnUdpRecv);
  std::vector<std::string> seeds;
  for (const std::string& s : i.opt.seeds) {
    Result<Address> a = ParseAddress(s, kDefaultClusterPort);
    if (a.ok()) seeds.push_back(a->HostPort());
    else i.log->warn("ignoring bad seed \"{}\": {}", s, a.status().ToString());
  }
  i.log->info("gossip node {} at {} (cluster \"{}\"), seeds: {}", i.cfg.name, i.cfg.advertise_addr, i.cfg.cluster_name,
              seeds.size());
  i.m->Join(std::move(seeds), i.Now());
  i.Pump();
}

void GossipNode::Leave(std::function<void()> done) {
  Impl& i = *impl_;
  if (i.closed) {
    if (done) done();
    return;
  }
  i.leave_done = std::move(done);
  i.leave_deadline = i.Now() + i.opt.leave_timeout;
  i.m->Leave(i.Now());
  i.Pump();
}

Status GossipNode::UpdateMeta(const NodeMeta& meta) {
  OKLOG_ASSIGN_OR_RETURN(std::string bytes, EncodeNodeMeta(meta));
  OKLOG_RETURN_IF_ERROR(impl_->m->UpdateMetadata(std::move(bytes), impl_->Now()));
  impl_->Pump();
  return Status::Ok();
}

std::string GossipNode::ServeStream(const std::string& peer, std::string_view body) {
  Impl& i = *impl_;
  if (i.closed) return "";
  i.stream_bytes_in->Inc(body.size());
  std::string reply = i.m->OnStream(peer, body, i.Now());
  i.stream_bytes_out->Inc(reply.size());
  i.Pump();
  return reply;
}

void GossipNode::Close() { impl_->CloseAll(); }
bool GossipNode::done() const { return impl_->closed && impl_->boxes.empty(); }
PeerView& GossipNode::peer_view() { return *impl_->view; }
std::string GossipNode::ClusterJson() const { return gossip::ClusterJson(*impl_->view); }
const std::string& GossipNode::name() const { return impl_->cfg.name; }
const std::string& GossipNode::advertise_addr() const { return impl_->cfg.advertise_addr; }
uint16_t GossipNode::port() const { return impl_->port; }
const Membership& GossipNode::membership() const { return *impl_->m; }

// ---- driving the state machine ----

void GossipNode::Impl::Pump() {
  if (closed || !m) return;
  Outbox o = m->TakeOutbox();
  for (OutPacket& p : o.packets) SendUdp(p.to, std::move(p.bytes));
  for (OutPacket& s : o.streams) StartStream(s.to, std::move(s.bytes));
  for (const MemberEvent& e : o.events) {
    if (e.member.name != cfg.name) {
      if (e.kind == MemberEvent::Kind::kDead || e.kind == MemberEvent::Kind::kLeft || e.kind == MemberEvent::Kind::kJoin)
        log->info("member {} ({}) {} at incarnation {}", e.member.name, e.member.addr, EventKindName(e.kind),
                  e.member.incarnation);
    }
    view->Apply(e);
  }
  if (m->self().incarnation != view_self_incarnation || m->self().state != view->Find(cfg.name)->state) {
    view_self_incarnation = m->self().incarnation;
    view->Apply({MemberEvent::Kind::kUpdate, m->self()});
  }
  SyncMetrics(!o.events.empty());
  Instant now = Now();
  Instant next = m->NextDeadline();
  if (leave_done) next = std::min(next, leave_deadline);
  if (next == Instant::max()) {
    uv_timer_stop(&timer->h);
  } else {
    auto delay = std::max<int64_t>(0, (next - now).count());
    uv_timer_start(&timer->h, OnTimer, static_cast<uint64_t>(delay), 0);
  }
  MaybeFinishLeave(now);  // may Close(); nothing below touches state
}

void GossipNode::Impl::OnTimer(uv_timer_t* t) noexcept {
  auto* box = static_cast<TimerBox*>(t->data);
  Impl* self = box ? box->owner : nullptr;
  if (!self || self->closed) return;
  self->m->OnTimer(self->Now());
  self->Pump();
}

// ---- UDP ----

void GossipNode::Impl::OnUdpAlloc(uv_handle_t* h, size_t, uv_buf_t* buf) noexcept {
  auto* box = static_cast<UdpBox*>(h->data);
  Impl* self = box ? box->owner : nullptr;
  if (!self) {
    *buf = uv_buf_init(nullptr, 0);
    return;
  }
  *buf = uv_buf_init(self->recv_buf.data(), static_cast<unsigned>(self->recv_buf.size()));
}

void GossipNode::Impl::OnUdpRecv(uv_udp_t* h, ssize_t nread, const uv_buf_t* buf, const sockaddr* addr,
                                 unsigned flags) noexcept {
  (void)buf;
  auto* box = static_cast<UdpBox*>(h->data);
  Impl* self = box ? box->owner : nullptr;
  if (!self || self->closed) return;
  if (nread == 0 || addr == nullptr) return;  // nothing read, or end of a batch
  if (nread < 0) {
    self->dropped->Inc();
    return;
  }
  if (flags & UV_UDP_PARTIAL) {  // larger than our buffer: never a valid packet
    self->dropped->Inc();
    return;
  }
  self->packets_in->Inc();
  self->bytes_in->Inc(static_cast<uint64_t>(nread));
  std::string_view packet(self->recv_buf.data(), static_cast<size_t>(nread));
  std::string opened;
  if (self->opt.sealer) {
    Result<std::string> r = self->opt.sealer->Open(packet, static_cast<int64_t>(NowUnixMs()));
    if (!r.ok()) {
      const char* reason = r.status().code() == Code::kInvalidArgument ? "stale"
                           : r.status().code() == Code::kAlreadyExists ? "replayed"
                                                                       : "unauthenticated";
      self->refused->With({reason})->Inc();
      self->log->debug("refusing a packet from {}: {}", SockaddrToString(addr), r.status().ToString());
      return;
    }
    opened = std::move(r).value();
    packet = opened;
  }
  self->m->OnPacket(SockaddrToString(addr), packet, self->Now());
  self->Pump();
}

void GossipNode::Impl::SendUdp(const std::string& to, std::string bytes) {
  sockaddr_storage ss;
  if (!ParseLiteral(to, &ss)) {  // member addresses are advertised IP literals
    dropped->Inc();
    return;
  }
  auto* r = new UdpSendReq;
  r->data = opt.sealer ? opt.sealer->Seal(bytes, static_cast<int64_t>(NowUnixMs())) : std::move(bytes);
  if (r->data.empty()) {  // sealing failed (no randomness): never sent in the clear
    dropped->Inc();
    delete r;
    return;
  }
  uv_buf_t b = uv_buf_init(r->data.data(), static_cast<unsigned>(r->data.size()));
  packets_out->Inc();
  bytes_out->Inc(r->data.size());
  if (uv_udp_send(&r->req, &udp->h, &b, 1, reinterpret_cast<const sockaddr*>(&ss), OnUdpSent) != 0) {
    dropped->Inc();
    delete r;
  }
}

void GossipNode::Impl::OnUdpSent(uv_udp_send_t* req, int) noexcept {
  auto* box = static_cast<Box*>(req->handle->data);
  delete reinterpret_cast<UdpSendReq*>(req);  // req is the first member: the one release point
  if (box && box->owner && box->owner->leave_done) box->owner->MaybeFinishLeave(box->owner->Now());
}

void GossipNode::Impl::MaybeFinishLeave(Instant now) {
  if (!leave_done || closed) return;
  const bool sent = m->LeaveComplete() && (!udp || uv_udp_get_send_queue_count(&udp->h) == 0);
  if (!sent && now < leave_deadline) return;
  std::function<void()> done = std::move(leave_done);
  leave_done = nullptr;
  log->info("left the cluster{}", sent ? "" : " (timed out waiting for the leave to spread)");
  done();  // may Close()
}

// ---- streams (through the StreamTransport) ----

GossipNode::Impl::~Impl() {
  CloseAll();
  for (Box* b : boxes) b->owner = nullptr;  // close callbacks still to come must not touch us
}

void GossipNode::Impl::StartStream(const std::string& to, std::string body) {
  if (opt.streams == nullptr) {  // no transport (some tests): the exchange cannot happen
    dropped->Inc();
    return;
  }
  streams_out->Inc();
  stream_bytes_out->Inc(body.size());
  std::weak_ptr<Impl*> token = self_token;
  opt.streams->Exchange(to, std::move(body), cfg.tcp_timeout, [token, to](Result<std::string> reply) {
    std::shared_ptr<Impl*> alive = token.lock();
    if (alive) (*alive)->OnStreamReply(to, std::move(reply));
  });
}

// The answer to one exchange; a non-empty body is the next message of it, which goes out as a
// new exchange. A failed exchange gives no verdict here: Membership's own timers decide.
void GossipNode::Impl::OnStreamReply(const std::string& from, Result<std::string> reply) {
  if (closed) return;
  if (!reply.ok()) {
    log->debug("gossip stream to {}: {}", from, reply.status().ToString());
    return;
  }
  if (reply->empty()) return;
  stream_bytes_in->Inc(reply->size());
  std::string next = m->OnStream(from, *reply, Now());
  if (!next.empty()) StartStream(from, std::move(next));
  Pump();
}

// ---- shutdown ----

void GossipNode::Impl::CloseAll() {
  if (closed) return;
  closed = true;
  self_token.reset();  // replies still to come are dropped
  auto close_box = [](Box* b, uv_handle_t* h) {
    if (b && !uv_is_closing(h)) uv_close(h, OnBoxClosed);
  };
  if (udp) close_box(udp, reinterpret_cast<uv_handle_t*>(&udp->h));
  if (timer) close_box(timer, reinterpret_cast<uv_handle_t*>(&timer->h));
  udp = nullptr;
  timer = nullptr;
  if (reg) reg->RemoveCallbacks(this);
}

void GossipNode::Impl::OnBoxClosed(uv_handle_t* h) noexcept {
  auto* b = static_cast<Box*>(h->data);
  if (b->owner) b->owner->boxes.erase(b);
  delete b;
}

// ---- metrics ----

void GossipNode::Impl::RegisterMetrics() {
  static Registry fallback_registry_unused;  // never rendered; keeps pointers valid without a registry
  Registry* r = reg ? reg : &fallback_registry_unused;
  members_by_state = r->NewGaugeFamily("oklog_gossip_members", "Cluster members known, by state.", {"state"});
  health = r->NewGauge("oklog_gossip_health_score", "Lifeguard local health (0 = healthy).");
  probes = r->NewCounter("oklog_gossip_probes_total", "Failure-detector probes started.");
  probes_failed = r->NewCounter("oklog_gossip_probes_failed_total", "Probes that got no ack in time.");
  suspicions = r->NewCounter("oklog_gossip_suspicions_total", "Members put under suspicion.");
  refutes = r->NewCounter("oklog_gossip_refutes_total", "Suspicions about this node that it refuted.");
  packets_in = r->NewCounter("oklog_gossip_packets_received_total", "UDP packets received.");
  packets_out = r->NewCounter("oklog_gossip_packets_sent_total", "UDP packets sent.");
  bytes_in = r->NewCounter("oklog_gossip_bytes_received_total", "UDP payload bytes received.");
  bytes_out = r->NewCounter("oklog_gossip_bytes_sent_total", "UDP payload bytes sent.");
  dropped = r->NewCounter("oklog_gossip_packets_dropped_total",
                          "Packets and streams dropped: malformed, other cluster, oversize, unsendable.");
  refused = r->NewCounterFamily("oklog_gossip_packets_refused_total",
                                "Datagrams refused by the cluster keyring: unauthenticated (no key opens it), stale "
                                "(sent over 60 s from our clock), replayed.",
                                {"reason"});
  streams_out = r->NewCounter("oklog_gossip_streams_total",
                              "Gossip stream exchanges started (push/pull, fallback ping), over the cluster RPC.");
  stream_bytes_in = r->NewCounter("oklog_gossip_stream_bytes_received_total", "Gossip stream message bytes received.");
  stream_bytes_out = r->NewCounter("oklog_gossip_stream_bytes_sent_total", "Gossip stream message bytes sent.");
  Family<Counter>* rej = r->NewCounterFamily("oklog_gossip_messages_rejected_total",
                                             "Gossip messages refused by the membership rules, by reason (dead_from_non_member: "
                                             "taken as a suspicion instead).",
                                             {"reason"});
  for (size_t i = 0; i < kRejectionKinds; ++i) rejected[i] = rej->With({std::string(RejectionName(static_cast<Rejection>(i)))});
}

void GossipNode::Impl::SyncMetrics(bool members_changed) {
  const MembershipStats& s = m->stats();
  probes->Inc(s.probes - last_stats.probes);
  probes_failed->Inc(s.probes_failed - last_stats.probes_failed);
  suspicions->Inc(s.suspicions - last_stats.suspicions);
  refutes->Inc(s.refutes - last_stats.refutes);
  dropped->Inc(s.packets_malformed - last_stats.packets_malformed);
  for (size_t i = 0; i < kRejectionKinds; ++i) rejected[i]->Inc(s.rejected[i] - last_stats.rejected[i]);
  last_stats = s;
  health->Set(m->awareness());
  if (!members_changed && initial_metrics_done) return;
  initial_metrics_done = true;
  int counts[4] = {0, 0, 0, 0};
  for (const Peer& p : view->All()) ++counts[static_cast<int>(p.state)];
  for (int st = 0; st < 4; ++st)
    members_by_state->With({std::string(MemberStateName(static_cast<MemberState>(st)))})->Set(counts[st]);
}

}  // namespace oklog::gossip
