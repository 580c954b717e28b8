#include "gossip/gossip_node.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <set>

#include "common/address.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/ulid.h"
#include "rpc/frame_codec.h"
#include "gossip/membership.h"

namespace oklog::gossip {
// GossipNode still speaks the cluster-port hello and envelope itself (see src/gossip/README.md).
using rpc::DecodeEnvelope;
using rpc::DecodeHello;
using rpc::EncodeEnvelope;
using rpc::EncodeFrame;
using rpc::EncodeHello;
using rpc::Envelope;
using rpc::FrameDecoder;
using rpc::Hello;
using rpc::kClusterProtocolVersion;
using rpc::kGossipMethod;

namespace {

constexpr uint16_t kDefaultClusterPort = 7659;
constexpr size_t kUdpRecvBufferBytes = 64 * 1024;

// "ip:port" literal to a socket address; false for names and malformed text.
bool ParseLiteral(const std::string& text, sockaddr_storage* out) {
  Result<Address> a = ParseAddress(text, kDefaultClusterPort);
  if (!a.ok()) return false;
  std::memset(out, 0, sizeof *out);
  if (uv_ip4_addr(a->host.c_str(), a->port, reinterpret_cast<sockaddr_in*>(out)) == 0) return true;
  return uv_ip6_addr(a->host.c_str(), a->port, reinterpret_cast<sockaddr_in6*>(out)) == 0;
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
struct TcpListenBox : Box {
  uv_tcp_t h;
};
struct TimerBox : Box {
  uv_timer_t h;
};
// One TCP stream, either direction, with its idle timer. Freed when both handles are closed
// and no request (getaddrinfo, connect, write) is still pending.
struct Conn : Box {
  uv_tcp_t tcp;
  uv_timer_t timer;
  uv_getaddrinfo_t gai;
  uv_connect_t connect;
  int open_handles = 0;
  int pending_reqs = 0;
  bool closing = false;
  bool outgoing = false;
  bool hello_seen = false;
  bool resolving = false;
  std::string peer;         // outgoing: the address we dialled; incoming: the remote socket
  std::string request;      // outgoing: the gossip message to send once connected
  FrameDecoder decoder;
};
struct WriteReq {
  uv_write_t req;
  std::string data;
  Conn* conn;
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
  TcpListenBox* listener = nullptr;
  TimerBox* timer = nullptr;
  std::set<Box*> boxes;  // every box not yet freed
  std::set<Conn*> conns;
  bool started = false;
  bool closed = false;
  std::function<void()> leave_done;
  std::function<void(uv_stream_t*)> accept_handler;
  Instant leave_deadline = Instant::max();
  std::vector<char> recv_buf = std::vector<char>(kUdpRecvBufferBytes);
  Incarnation view_self_incarnation = 0;

  // Metrics.
  Registry* reg = nullptr;
  Family<Gauge>* members_by_state = nullptr;
  Gauge* health = nullptr;
  Counter *probes = nullptr, *probes_failed = nullptr, *suspicions = nullptr, *refutes = nullptr;
  Counter *packets_in = nullptr, *packets_out = nullptr, *bytes_in = nullptr, *bytes_out = nullptr;
  Counter *dropped = nullptr, *streams_out = nullptr, *stream_bytes_in = nullptr, *stream_bytes_out = nullptr;
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
  void Dial(Conn* c, const sockaddr* sa);
  void OnFrame(Conn* c, std::string frame);
  void Write(Conn* c, std::string data);
  void CloseConn(Conn* c);
  Conn* NewConn(bool outgoing);
  void RegisterMetrics();
  void SyncMetrics(bool members_changed);
  void CloseAll();

  static void OnUdpAlloc(uv_handle_t* h, size_t suggested, uv_buf_t* buf) noexcept;
  static void OnUdpRecv(uv_udp_t* h, ssize_t nread, const uv_buf_t* buf, const sockaddr* addr, unsigned flags) noexcept;
  static void OnUdpSent(uv_udp_send_t* req, int status) noexcept;
  static void OnTimer(uv_timer_t* t) noexcept;
  static void OnConnection(uv_stream_t* server, int status) noexcept;
  static void OnResolved(uv_getaddrinfo_t* req, int status, addrinfo* res) noexcept;
  static void OnConnected(uv_connect_t* req, int status) noexcept;
  static void OnAlloc(uv_handle_t* h, size_t suggested, uv_buf_t* buf) noexcept;
  static void OnRead(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) noexcept;
  static void OnWritten(uv_write_t* req, int status) noexcept;
  static void OnConnTimeout(uv_timer_t* t) noexcept;
  static void OnBoxClosed(uv_handle_t* h) noexcept;
  static void OnConnHandleClosed(uv_handle_t* h) noexcept;
  static void MaybeFreeConn(Conn* c);
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
  return std::unique_ptr<GossipNode>(new GossipNode(std::move(impl)));
}

GossipNode::GossipNode(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
GossipNode::~GossipNode() = default;

Status GossipNode::Impl::Bind() {
  Result<Address> bind = ParseAddress(opt.bind_addr, kDefaultClusterPort);
  sockaddr_storage ss;
  if (!bind.ok() || !ParseLiteral(bind->HostPort(), &ss))
    return Status::InvalidArgument("gossip: bind address must be an IP literal: " + opt.bind_addr);
  // TCP first (port 0 picks the port), then UDP on the same port; with port 0 the UDP port
  // may be taken, so try a few times.
  for (int attempt = 0; attempt < 20; ++attempt) {
    auto* l = new TcpListenBox;
    l->owner = this;
    uv_tcp_init(loop, &l->h);
    l->h.data = l;
    boxes.insert(l);
    listener = l;
    int rc = uv_tcp_bind(&l->h, reinterpret_cast<const sockaddr*>(&ss), 0);
    if (rc == 0) rc = uv_listen(reinterpret_cast<uv_stream_t*>(&l->h), 128, OnConnection);
    if (rc != 0) {
      CloseAll();
      return Status::IOError("gossip: TCP bind/listen " + opt.bind_addr + ": " + uv_strerror(rc));
    }
    sockaddr_storage bound;
    int len = sizeof bound;
    uv_tcp_getsockname(&l->h, reinterpret_cast<sockaddr*>(&bound), &len);
    port = ntohs(bound.ss_family == AF_INET ? reinterpret_cast<sockaddr_in*>(&bound)->sin_port
                                            : reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port);
    sockaddr_storage uss = bound;
    auto* u = new UdpBox;
    u->owner = this;
    uv_udp_init(loop, &u->h);
    u->h.data = u;
    boxes.insert(u);
    udp = u;
    rc = uv_udp_bind(&u->h, reinterpret_cast<const sockaddr*>(&uss), 0);
    if (rc == 0) break;
    const bool retry = rc == UV_EADDRINUSE && bind->port == 0 && attempt < 19;
    CloseAll();
    closed = false;
    if (!retry) return Status::IOError("gossip: UDP bind " + opt.bind_addr + ": " + uv_strerror(rc));
  }
  auto* t = new TimerBox;
  t->owner = this;
  uv_timer_init(loop, &t->h);
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

void GossipNode::SetAcceptHandler(std::function<void(uv_stream_t*)> accept) {
  impl_->accept_handler = std::move(accept);
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
  self->m->OnPacket(SockaddrToString(addr), std::string_view(self->recv_buf.data(), static_cast<size_t>(nread)),
                    self->Now());
  self->Pump();
}

void GossipNode::Impl::SendUdp(const std::string& to, std::string bytes) {
  sockaddr_storage ss;
  if (!ParseLiteral(to, &ss)) {  // member addresses are advertised IP literals
    dropped->Inc();
    return;
  }
  auto* r = new UdpSendReq;
  r->data = std::move(bytes);
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

// ---- TCP streams ----

GossipNode::Impl::~Impl() {
  CloseAll();
  for (Box* b : boxes) b->owner = nullptr;  // close callbacks still to come must not touch us
}

Conn* GossipNode::Impl::NewConn(bool outgoing) {
  auto* c = new Conn;
  c->owner = this;
  c->outgoing = outgoing;
  uv_tcp_init(loop, &c->tcp);
  uv_timer_init(loop, &c->timer);
  c->tcp.data = c;
  c->timer.data = c;
  c->open_handles = 2;
  boxes.insert(c);
  conns.insert(c);
  uv_timer_start(&c->timer, OnConnTimeout, static_cast<uint64_t>(cfg.tcp_timeout.count()), 0);
  return c;
}

void GossipNode::Impl::StartStream(const std::string& to, std::string body) {
  Conn* c = NewConn(true);
  c->peer = to;
  c->request = std::move(body);
  streams_out->Inc();
  sockaddr_storage ss;
  if (ParseLiteral(to, &ss)) {
    Dial(c, reinterpret_cast<const sockaddr*>(&ss));
    return;
  }
  // A name (a seed): resolved now, at every attempt, so DNS changes are followed.
  Result<Address> a = ParseAddress(to, kDefaultClusterPort);
  if (!a.ok()) {
    CloseConn(c);
    return;
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  c->gai.data = c;
  std::string port = std::to_string(a->port);
  if (uv_getaddrinfo(loop, &c->gai, OnResolved, a->host.c_str(), port.c_str(), &hints) == 0) {
    ++c->pending_reqs;
    c->resolving = true;
  } else {
    CloseConn(c);
  }
}

void GossipNode::Impl::OnResolved(uv_getaddrinfo_t* req, int status, addrinfo* res) noexcept {
  auto* c = static_cast<Conn*>(req->data);
  --c->pending_reqs;
  c->resolving = false;
  Impl* self = c->owner;
  if (!self || self->closed || c->closing || status != 0 || !res) {
    if (res) uv_freeaddrinfo(res);
    if (self && !c->closing) self->CloseConn(c);
    MaybeFreeConn(c);
    return;
  }
  const addrinfo* pick = res;  // prefer IPv4, as our defaults listen on IPv4
  for (const addrinfo* p = res; p; p = p->ai_next)
    if (p->ai_family == AF_INET) {
      pick = p;
      break;
    }
  sockaddr_storage ss{};
  std::memcpy(&ss, pick->ai_addr, pick->ai_addrlen);
  uv_freeaddrinfo(res);
  self->Dial(c, reinterpret_cast<const sockaddr*>(&ss));
}

void GossipNode::Impl::Dial(Conn* c, const sockaddr* sa) {
  c->connect.data = c;
  if (uv_tcp_connect(&c->connect, &c->tcp, sa, OnConnected) == 0) {
    ++c->pending_reqs;
  } else {
    CloseConn(c);
  }
}

void GossipNode::Impl::OnConnected(uv_connect_t* req, int status) noexcept {
  auto* c = static_cast<Conn*>(req->data);
  --c->pending_reqs;
  Impl* self = c->owner;
  if (!self || self->closed || c->closing || status != 0) {
    if (self && !c->closing) self->CloseConn(c);
    MaybeFreeConn(c);
    return;
  }
  uv_read_start(reinterpret_cast<uv_stream_t*>(&c->tcp), OnAlloc, OnRead);
  Envelope e;
  e.kind = Envelope::Kind::kRequest;
  e.request_id = 1;
  e.method = std::string(kGossipMethod);
  e.body = std::move(c->request);
  self->stream_bytes_out->Inc(e.body.size());
  self->Write(c, EncodeFrame(EncodeHello({kClusterProtocolVersion, self->cfg.cluster_name, self->cfg.name})) +
                     EncodeFrame(EncodeEnvelope(e)));
}

void GossipNode::Impl::OnConnection(uv_stream_t* server, int status) noexcept {
  auto* box = static_cast<TcpListenBox*>(server->data);
  Impl* self = box ? box->owner : nullptr;
  if (!self || self->closed || status != 0) return;
  if (self->accept_handler) {
    self->accept_handler(server);
    return;
  }
  Conn* c = self->NewConn(false);
  if (uv_accept(server, reinterpret_cast<uv_stream_t*>(&c->tcp)) != 0) {
    self->CloseConn(c);
    return;
  }
  sockaddr_storage peer;
  int len = sizeof peer;
  if (uv_tcp_getpeername(&c->tcp, reinterpret_cast<sockaddr*>(&peer), &len) == 0)
    c->peer = SockaddrToString(reinterpret_cast<sockaddr*>(&peer));
  uv_read_start(reinterpret_cast<uv_stream_t*>(&c->tcp), OnAlloc, OnRead);
}

void GossipNode::Impl::OnAlloc(uv_handle_t*, size_t suggested, uv_buf_t* buf) noexcept {
  *buf = uv_buf_init(new char[suggested], static_cast<unsigned>(suggested));
}

void GossipNode::Impl::OnRead(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) noexcept {
  auto* c = static_cast<Conn*>(s->data);
  std::unique_ptr<char[]> owned(buf->base);  // released on every path
  Impl* self = c->owner;
  if (!self || self->closed || c->closing) return;
  if (nread == 0) return;  // EAGAIN, not EOF
  if (nread < 0) {
    self->CloseConn(c);
    return;
  }
  c->decoder.Feed(buf->base, static_cast<size_t>(nread));
  std::string frame;
  while (!c->closing) {
    Result<bool> next = c->decoder.Next(&frame);
    if (!next.ok()) {
      self->dropped->Inc();
      self->CloseConn(c);
      return;
    }
    if (!next.value()) break;
    self->OnFrame(c, std::move(frame));
    if (self->closed) return;
  }
}

void GossipNode::Impl::OnFrame(Conn* c, std::string frame) {
  if (!c->hello_seen) {
    Result<Hello> h = DecodeHello(frame);
    if (!h.ok() || h->version != kClusterProtocolVersion || h->cluster != cfg.cluster_name) {
      dropped->Inc();
      log->debug("dropping stream from {}: {}", c->peer, h.ok() ? "other cluster or version" : h.status().ToString());
      CloseConn(c);
      return;
    }
    c->hello_seen = true;
    if (!c->outgoing) Write(c, EncodeFrame(EncodeHello({kClusterProtocolVersion, cfg.cluster_name, cfg.name})));
    return;
  }
  Result<Envelope> env = DecodeEnvelope(frame);
  if (!env.ok()) {
    dropped->Inc();
    CloseConn(c);
    return;
  }
  stream_bytes_in->Inc(env->body.size());
  if (c->outgoing) {
    // The answer to our one request; a non-empty body is the next message of the exchange,
    // which goes out as a new request.
    CloseConn(c);
    if (env->kind != Envelope::Kind::kResponse || env->status != 0 || env->body.empty()) return;
    std::string reply = m->OnStream(c->peer, env->body, Now());
    if (!reply.empty()) StartStream(c->peer, std::move(reply));
    Pump();
    return;
  }
  if (env->kind != Envelope::Kind::kRequest) return;
  Envelope resp;
  resp.kind = Envelope::Kind::kResponse;
  resp.request_id = env->request_id;
  if (env->method == kGossipMethod) {
    resp.body = m->OnStream(c->peer, env->body, Now());
  } else {
    resp.kind = Envelope::Kind::kError;
    resp.status = 404;
    resp.body = "unknown method";
  }
  stream_bytes_out->Inc(resp.body.size());
  Write(c, EncodeFrame(EncodeEnvelope(resp)));
  Pump();
}

void GossipNode::Impl::Write(Conn* c, std::string data) {
  auto* w = new WriteReq;
  w->data = std::move(data);
  w->conn = c;
  w->req.data = w;
  uv_buf_t b = uv_buf_init(w->data.data(), static_cast<unsigned>(w->data.size()));
  if (uv_write(&w->req, reinterpret_cast<uv_stream_t*>(&c->tcp), &b, 1, OnWritten) == 0) {
    ++c->pending_reqs;
  } else {
    delete w;
    CloseConn(c);
  }
}

void GossipNode::Impl::OnWritten(uv_write_t* req, int status) noexcept {
  auto* w = static_cast<WriteReq*>(req->data);
  Conn* c = w->conn;
  delete w;
  --c->pending_reqs;
  if (status != 0 && c->owner && !c->closing) c->owner->CloseConn(c);
  MaybeFreeConn(c);
}

void GossipNode::Impl::OnConnTimeout(uv_timer_t* t) noexcept {
  auto* c = static_cast<Conn*>(t->data);
  if (c->owner && !c->closing) c->owner->CloseConn(c);
}

void GossipNode::Impl::CloseConn(Conn* c) {
  if (c->closing) return;
  c->closing = true;
  conns.erase(c);
  if (c->resolving) uv_cancel(reinterpret_cast<uv_req_t*>(&c->gai));  // its callback still runs
  uv_close(reinterpret_cast<uv_handle_t*>(&c->tcp), OnConnHandleClosed);
  uv_close(reinterpret_cast<uv_handle_t*>(&c->timer), OnConnHandleClosed);
}

void GossipNode::Impl::OnConnHandleClosed(uv_handle_t* h) noexcept {
  auto* c = static_cast<Conn*>(h->data);
  --c->open_handles;
  MaybeFreeConn(c);
}

void GossipNode::Impl::MaybeFreeConn(Conn* c) {
  if (!c->closing || c->open_handles > 0 || c->pending_reqs > 0) return;
  if (c->owner) c->owner->boxes.erase(c);
  delete c;
}

// ---- shutdown ----

void GossipNode::Impl::CloseAll() {
  if (closed) return;
  closed = true;
  for (Conn* c : std::vector<Conn*>(conns.begin(), conns.end())) CloseConn(c);
  auto close_box = [](Box* b, uv_handle_t* h) {
    if (b && !uv_is_closing(h)) uv_close(h, OnBoxClosed);
  };
  if (udp) close_box(udp, reinterpret_cast<uv_handle_t*>(&udp->h));
  if (listener) close_box(listener, reinterpret_cast<uv_handle_t*>(&listener->h));
  if (timer) close_box(timer, reinterpret_cast<uv_handle_t*>(&timer->h));
  udp = nullptr;
  listener = nullptr;
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
  streams_out = r->NewCounter("oklog_gossip_streams_total", "TCP gossip streams opened (push/pull, fallback ping).");
  stream_bytes_in = r->NewCounter("oklog_gossip_stream_bytes_received_total", "TCP gossip message bytes received.");
  stream_bytes_out = r->NewCounter("oklog_gossip_stream_bytes_sent_total", "TCP gossip message bytes sent.");
}

void GossipNode::Impl::SyncMetrics(bool members_changed) {
  const MembershipStats& s = m->stats();
  probes->Inc(s.probes - last_stats.probes);
  probes_failed->Inc(s.probes_failed - last_stats.probes_failed);
  suspicions->Inc(s.suspicions - last_stats.suspicions);
  refutes->Inc(s.refutes - last_stats.refutes);
  dropped->Inc(s.packets_malformed - last_stats.packets_malformed);
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
