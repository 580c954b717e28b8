// The `oklog` binary: mode dispatch, wiring of the modules on one libuv loop, signals and clean
// shutdown. Node modes live here; client modes (forward, query, stream, testsvc, segment) live in
// tools/cli/. The node's flags and -config file are NodeConfig (src/node/node_config.h), parsed
// and validated before anything here binds or starts.
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <uv.h>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "common/address.h"
#include "common/api_tokens.h"
#include "common/crypto/keyring.h"
#include "common/crypto/tls_context.h"
#include "common/crypto/seal.h"
#include "common/fs/disk_guard.h"
#include "common/http_server.h"
#include "common/log.h"
#include "common/memory_budget.h"
#include "common/metrics.h"
#include "common/uv/check.h"
#include "common/uv/handle.h"
#include "common/uv/work_pool.h"
#include "gossip/gossip_node.h"
#include "gossip/transport.h"
#include "node/node_config.h"
#include "node/ports_file.h"
#include "rpc/frame_codec.h"
#include "rpc/rpc_bridge.h"
#include "rpc/rpc_client.h"
#include "rpc/cluster_port.h"
#include "rpc/rpc_server.h"
#include "query/fanout.h"
#include "query/query_api.h"
#include "query/stream_api.h"
#include "segments/compactor.h"
#include "segments/cluster_consumer.h"
#include "segments/consumer.h"
#include "segments/holdings.h"
#include "segments/ingest/shedding.h"
#include "segments/ingest_log.h"
#include "segments/ingest_server.h"
#include "segments/segment_rpc.h"
#include "segments/store_log.h"
#include "tools/cli/tools.h"

namespace oklog {
namespace {

constexpr const char* kVersion = "0.1.0";
constexpr size_t kMaxShedReason = 160;  // bytes of a shedding reason in the gossiped metadata

// Gossip's stream exchanges over the cluster RPC: the method "gossip", served on every node by
// GossipNode::ServeStream. The RPC dials IP literals, so names (seeds) are resolved first, at
// every exchange, so DNS changes are followed. Loop thread only.
class RpcGossipStreams : public gossip::StreamTransport {
 public:
  explicit RpcGossipStreams(uv_loop_t* loop) : loop_(loop) {}
  // The client exists only once gossip has named the node; exchanges start after that.
  void SetClient(rpc::RpcClient* client) { client_ = client; }

  void Exchange(const std::string& addr, std::string body, gossip::Duration timeout, Done done) override {
    Result<Address> a = ParseAddress(addr, 7659);
    if (!a.ok()) return done(a.status());
    sockaddr_storage literal;
    if (IpLiteral(*a, &literal)) return Call(a->HostPort(), std::move(body), timeout, std::move(done));
    auto* r = new Resolve{{}, this, a->port, std::move(body), timeout, std::move(done)};
    r->req.data = r;
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    const std::string port = std::to_string(a->port);
    int rc = uv_getaddrinfo(loop_, &r->req, OnResolved, a->host.c_str(), port.c_str(), &hints);
    if (rc != 0) {
      std::unique_ptr<Resolve> owned(r);
      owned->done(Status::Unavailable("resolving " + addr + ": " + uv_strerror(rc)));
    }
  }

 private:
  struct Resolve {
    uv_getaddrinfo_t req;
    RpcGossipStreams* self;
    uint16_t port;
    std::string body;
    gossip::Duration timeout;
    Done done;
  };

  void Call(const std::string& ipport, std::string body, gossip::Duration timeout, Done done) {
    if (client_ == nullptr) return done(Status::Unavailable("gossip streams: no RPC client yet"));
    client_->Call(ipport, std::string(rpc::kGossipMethod), std::move(body), timeout, std::move(done));
  }

  static void OnResolved(uv_getaddrinfo_t* req, int status, addrinfo* res) noexcept {
    std::unique_ptr<Resolve> r(static_cast<Resolve*>(req->data));  // the one release point
    if (status != 0 || res == nullptr) {
      if (res) uv_freeaddrinfo(res);
      return r->done(Status::Unavailable(std::string("resolving a seed: ") + uv_strerror(status)));
    }
    const addrinfo* pick = res;  // prefer IPv4, as our defaults listen on IPv4
    for (const addrinfo* p = res; p; p = p->ai_next)
      if (p->ai_family == AF_INET) {
        pick = p;
        break;
      }
    Result<Address> ip = ParseAddress(SockaddrToString(pick->ai_addr), r->port);
    uv_freeaddrinfo(res);
    if (!ip.ok()) return r->done(ip.status());
    ip->port = r->port;
    r->self->Call(ip->HostPort(), std::move(r->body), r->timeout, std::move(r->done));
  }

  uv_loop_t* loop_;
  rpc::RpcClient* client_ = nullptr;
};

// Sets the file-descriptor limit to its hard maximum: segments and connections need many.
void RaiseFileLimit() {
  rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

// A listener's connection cap when its flag is 0: an eighth of the descriptors (after 256 for
// files), at least 16, so that the five listeners together leave room for segment files and
// outgoing connections however one of them is flooded.
size_t AutoConnectionCap() {
  rlimit rl{};
  uint64_t n = 1024;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) n = rl.rlim_cur == RLIM_INFINITY ? (1u << 20) : rl.rlim_cur;
  return static_cast<size_t>(std::max<uint64_t>(16, n > 256 ? (n - 256) / 8 : 0));
}

size_t CapOr(int64_t flag) { return flag > 0 ? static_cast<size_t>(flag) : AutoConnectionCap(); }

class Node {
 public:
  // The config has passed Validate().
  explicit Node(NodeConfig config) : c_(std::move(config)) {}

  int Run() {
    auto logger = Logger("node");
    if (int rc = uv_loop_init(&loop_); rc != 0) {
      logger->error("uv_loop_init: {}", uv_strerror(rc));
      return 1;
    }
    Status s = Start();
    if (!s.ok()) {
      logger->error("{}", s.ToString());
      if (compactor_) compactor_->Stop();  // before the exchange whose drops it makes goes
      Shutdown();
      uv_run(&loop_, UV_RUN_DEFAULT);
      uv_loop_close(&loop_);
      return 1;
    }
    uv_run(&loop_, UV_RUN_DEFAULT);
    if (compactor_) compactor_->Stop();  // interrupts a merge in progress; its inputs stay
    if (cluster_consumer_) cluster_consumer_->Join();
    if (holdings_) holdings_->Join();
    if (consumer_) consumer_->Stop();
    int rc = uv_loop_close(&loop_);
    if (rc != 0) logger->warn("loop closed with handles still open: {}", uv_strerror(rc));
    logger->info("stopped");
    return exit_code_;
  }

 private:
  Status Start() {
    auto logger = Logger("node");
    // A reader waiting for the file must not take the previous run's ports for this one's.
    if (!c_.ports_file.empty()) std::remove(c_.ports_file.c_str());
    memory_ = std::make_unique<MemoryBudget>(
        c_.memory_budget > 0 ? static_cast<uint64_t>(c_.memory_budget) : MemoryBudget::DefaultLimit(), &metrics_);
    IngestServerOptions io;
    io.memory_budget = memory_.get();
    io.fast = c_.fast;
    io.durable = c_.durable;
    io.bulk = c_.bulk;
    io.topic_mode = c_.topic_mode;
    io.topic = c_.topic;
    io.flush_size_bytes = static_cast<uint64_t>(c_.flush_size_bytes);
    io.flush_age = std::chrono::duration_cast<std::chrono::milliseconds>(c_.flush_age);
    io.record_max_bytes = static_cast<size_t>(c_.record_max_bytes);
    io.max_connections = CapOr(c_.ingest_max_connections);
    io.idle_timeout = std::chrono::duration_cast<std::chrono::milliseconds>(c_.ingest_idle_timeout);
    if (HasIngest(c_.role) && !c_.ingest_tls_cert.empty()) {
      OKLOG_ASSIGN_OR_RETURN(
          io.tls, crypto::TlsContext::Create(crypto::TlsRole::kServer,
                                             {c_.ingest_tls_cert, c_.ingest_tls_key, c_.ingest_tls_client_ca, "ingest"},
                                             &metrics_));
      logger->info("ingest ports over TLS: certificate {}{}", c_.ingest_tls_cert,
                   c_.ingest_tls_client_ca.empty() ? ""
                                                   : ", client certificates of " + c_.ingest_tls_client_ca + " required");
    }

    IngestLog::Options ilo;
    ilo.pending_timeout = std::chrono::duration_cast<std::chrono::milliseconds>(c_.pending_timeout);
    // Roles: an ingest node keeps an ingest log and serves it to stores; a store node keeps a
    // store log, consumes from every ingester and answers queries.
    if (HasIngest(c_.role)) {
      OKLOG_ASSIGN_OR_RETURN(ingest_log_, IngestLog::Open(c_.ingest_path, ilo, &metrics_));
    }
    if (HasStore(c_.role)) {
      StoreLogOptions so;
      so.placement_bucket_ms = bucket_ms_;
      OKLOG_ASSIGN_OR_RETURN(store_log_, StoreLog::Open(c_.store_path, so, &metrics_));
    }
    // Free space of each disk against its floor, read each second by the health timer.
    auto guard = [this](const std::string& dir, const char* label, int64_t floor) {
      auto g = std::make_unique<DiskGuard>(
          DiskGuard::Options{dir, label, std::string("-") + label + ".min-free-bytes", static_cast<uint64_t>(floor)},
          &metrics_);
      g->Poll();
      return g;
    };
    if (ingest_log_) {
      ingest_guard_ = guard(c_.ingest_path, "ingest", c_.ingest_min_free_bytes);
      io.disk_guard = ingest_guard_.get();
    }
    if (store_log_) store_guard_ = guard(c_.store_path, "store", c_.store_min_free_bytes);

    HttpServer::Options hso;
    hso.max_connections = CapOr(c_.api_max_connections);
    hso.memory_budget = memory_.get();
    // No API route reads a request body: a small bound (413 beyond it) keeps a flood of large
    // bodies from holding memory (ten 60 MB bodies took 670 MB with the 64 MiB default).
    hso.max_body_bytes = 1 << 20;
    if (!c_.api_tls_cert.empty()) {
      OKLOG_ASSIGN_OR_RETURN(hso.tls, crypto::TlsContext::Create(crypto::TlsRole::kServer,
                                                                 {c_.api_tls_cert, c_.api_tls_key, c_.api_tls_client_ca, "api"},
                                                                 &metrics_));
      logger->info("API over TLS: certificate {}{}", c_.api_tls_cert,
                   c_.api_tls_client_ca.empty() ? "" : ", client certificates of " + c_.api_tls_client_ca + " required");
    }
    hso.cors_origins = c_.api_cors_origins;
    OKLOG_ASSIGN_OR_RETURN(http_, HttpServer::Create(&loop_, c_.api, hso, &metrics_));
    OKLOG_RETURN_IF_ERROR(LoadApiTokens());
    // 200 "OK" while the node can take and store data; 503 "degraded" with one reason per line
    // while a disk is full (a load balancer then sends producers elsewhere).
    http_->Handle("/health", [this](const HttpRequest&, std::shared_ptr<HttpResponse> w) {
      std::string reasons;
      for (DiskGuard* g : {ingest_guard_.get(), store_guard_.get()})
        if (g != nullptr && g->full()) reasons += g->reason() + "\n";
      if (!meta_.shedding.empty()) reasons += "shedding: " + meta_.shedding + "\n";
      const char* unkeyed = keyring_ ? "" : "unauthenticated cluster: no -cluster.key-file\n";
      if (reasons.empty()) return w->Send(200, std::string("OK\n") + unkeyed);
      w->Send(503, "degraded\n" + reasons);
    });
    http_->Handle("/metrics", [this](const HttpRequest&, std::shared_ptr<HttpResponse> w) {
      w->Send(200, metrics_.Render(), "text/plain; version=0.0.4; charset=utf-8");
    });
    QueryService::Options qo;
    qo.high_water_bytes = std::max<size_t>(static_cast<size_t>(c_.buffer_size_bytes), 64 << 10);
    if (store_log_) {
      OKLOG_ASSIGN_OR_RETURN(query_, QueryService::Create(&loop_, store_log_.get(), qo, &metrics_));
      query_->Register(http_.get());
    }
    // Live streams see records as the ingest listeners encode them, before any disk write.
    StreamRegistry::Options sro;
    sro.memory_budget = memory_.get();
    stream_ = std::make_unique<StreamService>(sro, &metrics_);
    stream_->Register(http_.get());
    io.on_records = [this](std::string_view records) { stream_->Publish(records); };

    if (ingest_log_) {
      OKLOG_ASSIGN_OR_RETURN(ingest_, IngestServer::Create(&loop_, ingest_log_.get(), io, &metrics_));
    }

    OKLOG_RETURN_IF_ERROR(StartGossip());
    // /store/stream fans out to every live peer over stream.open (and serves theirs).
    stream_->EnableFanout(&loop_, &gossip_->peer_view(), rpc_server_.get(), rpc_client_.get());

    // Compaction, retention and range drops (copies beyond N, from the holdings exchange) on
    // their own thread (never the loop thread); started once the exchange that feeds it is.
    CompactorOptions cpo;
    cpo.target_bytes = static_cast<uint64_t>(c_.target_size_bytes);
    cpo.retention.retain = std::chrono::duration_cast<std::chrono::milliseconds>(c_.retain);
    cpo.retention.purge = std::chrono::duration_cast<std::chrono::milliseconds>(c_.purge);
    cpo.retention.max_bytes = static_cast<uint64_t>(c_.max_bytes);
    if (store_log_) {
      OKLOG_ASSIGN_OR_RETURN(compactor_, Compactor::Create(store_log_.get(), cpo, &metrics_));
    }

    ConsumerOptions co;
    co.target_bytes = static_cast<uint64_t>(c_.target_size_bytes);
    co.store_guard = store_guard_.get();
    if (store_log_ && ingest_log_ && c_.peers.empty()) {
      // A standalone ingeststore node (no -peer) consumes its own ingest log in process and keeps
      // one copy; other store nodes that join later pull from it over RPC as well.
      if (c_.replication_factor > 1)
        logger->info("single node: replication factor {} cannot be met, keeping 1 copy", c_.replication_factor);
      consumer_ = LocalConsumer::Start(ingest_log_.get(), store_log_.get(), co, &metrics_);
    } else if (store_log_) {
      ClusterConsumerOptions cco;
      cco.consumers = static_cast<size_t>(c_.consumers);
      cco.replication_factor = static_cast<size_t>(c_.replication_factor);
      cco.max_batch_bytes = std::min<uint64_t>(co.max_batch_bytes, static_cast<uint64_t>(c_.target_size_bytes));
      cco.store_guard = store_guard_.get();
      cco.bucket_ms = bucket_ms_;
      cluster_consumer_ = ClusterConsumer::Start(
          bridge_.get(),
          [this] {
            ClusterPeers p;
            for (const auto& peer : gossip_->peer_view().Live("ingest")) p.ingest.push_back(peer.addr);
            for (const auto& peer : gossip_->peer_view().Live("store"))
              p.store.push_back({peer.name, peer.addr, peer.is_self, peer.state == gossip::MemberState::kSuspect,
                                 std::find(peer.meta.full.begin(), peer.meta.full.end(), "store") != peer.meta.full.end()});
            return p;
          },
          store_log_.get(), cco, &metrics_);
      // Which store holds which batch (segments/holdings.h): pulled from every live store, kept
      // for dead and left ones, and asked by every query.run for the batches no asked store holds.
      HoldingsExchange::Options ho;
      ho.replication_factor = static_cast<size_t>(c_.replication_factor);
      ho.retention = std::chrono::duration_cast<std::chrono::milliseconds>(c_.retain);
      ho.repair_delay = std::chrono::duration_cast<std::chrono::milliseconds>(c_.repair_delay);
      ho.repair_rate = static_cast<uint64_t>(c_.repair_rate);
      ho.rebalance = c_.rebalance;
      ho.bucket_ms = bucket_ms_;
      ho.settle_age = std::chrono::duration_cast<std::chrono::milliseconds>(c_.rebalance_settle);
      ho.drop = [c = compactor_.get()](RangeDrop d) { c->RequestDrop(std::move(d)); };
      holdings_ = HoldingsExchange::Start(
          bridge_.get(),
          [this] {
            std::vector<HoldingsPeer> out;
            for (const auto& peer : gossip_->peer_view().All())
              if (peer.meta.HasRole("store"))
                out.push_back({peer.name, peer.addr, peer.live(), peer.is_self,
                               peer.state == gossip::MemberState::kSuspect,
                               std::find(peer.meta.full.begin(), peer.meta.full.end(), "store") != peer.meta.full.end()});
            return out;
          },
          store_log_.get(), ho, &metrics_);
      if (query_) query_->SetHoldings(holdings_.get());
    }

    if (compactor_) compactor_->Start();

    for (int sig : {SIGINT, SIGTERM, SIGHUP}) {
      auto* h = new uv_signal_t;
      if (Status s = UvStatus(uv_signal_init(&loop_, h), "uv_signal_init"); !s.ok()) {
        delete h;
        return s;
      }
      h->data = this;
      uv_signal_start(h, &Node::OnSignal, sig);
      signals_.push_back(h);
    }
    // Everything is bound: the ports as bound (a listener given port 0 got one from the kernel).
    BoundPorts ports = {{"api", Address{"tcp", c_.api.host, http_->port()}.HostPort()}};
    if (ingest_) {
      ports.push_back({"ingest.fast", Address{"tcp", c_.fast.host, ingest_->fast_port()}.HostPort()});
      ports.push_back({"ingest.durable", Address{"tcp", c_.durable.host, ingest_->durable_port()}.HostPort()});
      ports.push_back({"ingest.bulk", Address{"tcp", c_.bulk.host, ingest_->bulk_port()}.HostPort()});
    }
    ports.push_back({"cluster", Address{"tcp", c_.cluster.host, gossip_->port()}.HostPort()});
    std::string listening;
    for (const auto& [name, addr] : ports) listening += " " + name + "=" + addr;
    logger->info("oklog {} {} listening:{} ingest.path={} store.path={}", kVersion, RoleName(c_.role), listening,
                 c_.ingest_path, c_.store_path);
    if (!c_.ports_file.empty()) OKLOG_RETURN_IF_ERROR(WritePortsFile(c_.ports_file, ports));
    return Status::Ok();
  }

  // Joins the cluster: roles and API address in the gossiped metadata, GET /cluster.
  Status StartGossip() {
    const Address& cluster = c_.cluster;
    gossip::GossipNode::Options go;
    if (!c_.key_file.empty()) {
      Result<std::shared_ptr<const crypto::Keyring>> ring = crypto::Keyring::LoadFile(c_.key_file);
      if (!ring.ok()) return Status::InvalidArgument("-cluster.key-file: " + ring.status().message());
      keyring_ = std::move(ring).value();
      packet_sealer_ = std::make_unique<crypto::PacketSealer>(keyring_, c_.cluster_name);
      go.sealer = packet_sealer_.get();
      Logger("node")->info("cluster keyring {}: {} key(s), primary {}", c_.key_file, keyring_->keys().size(),
                           crypto::Keyring::Fingerprint(keyring_->primary()));
      struct stat st {};
      if (::stat(c_.key_file.c_str(), &st) == 0 && (st.st_mode & 077) != 0)
        Logger("node")->warn("cluster key file {} is readable by group or others (mode {:o}); chmod 600 it",
                             c_.key_file, st.st_mode & 0777);
    } else {
      Logger("node")->warn(
          "the cluster is unauthenticated: anyone who reaches the cluster port can join, read and write "
          "(give every node -cluster.key-file; see the README's Security section)");
    }
    go.advertise_addr = c_.advertise;
    go.seeds = c_.peers;
    go.cluster_name = c_.cluster_name;
    go.preset = c_.preset;
    go.meta.roles = RoleNames(c_.role);  // on the wire as strings
    if (ingest_) {
      go.meta.ingest_fast_port = ingest_->fast_port();
      go.meta.ingest_durable_port = ingest_->durable_port();
      go.meta.ingest_bulk_port = ingest_->bulk_port();
    }
    go.meta.version = kVersion;
    // One cluster port, bound by its owner (both sides on one number; port 0 picks one): UDP goes
    // to gossip, the listening TCP socket to the RPC server, and gossip push/pull is one of the
    // RPC's methods.
    OKLOG_ASSIGN_OR_RETURN(rpc::ClusterPort port, rpc::ClusterPort::Bind(cluster));
    go.bind_addr = port.HostPort();
    go.udp_fd = port.TakeUdp();
    gossip_streams_ = std::make_unique<RpcGossipStreams>(&loop_);
    go.streams = gossip_streams_.get();
    const gossip::NodeMeta announced = go.meta;
    OKLOG_ASSIGN_OR_RETURN(gossip_, gossip::GossipNode::Create(&loop_, std::move(go), &metrics_));
    rpc::RpcServer::Options so;
    so.cluster_name = c_.cluster_name;
    so.node_name = gossip_->name();
    so.keyring = keyring_;
    so.memory_budget = memory_.get();
    so.max_connections = CapOr(c_.cluster_max_connections);
    rpc_server_ = rpc::RpcServer::Create(&loop_, so, &metrics_);
    OKLOG_RETURN_IF_ERROR(rpc_server_->Listen(port.TakeTcp()));
    rpc::RpcClient::Options co;
    co.cluster_name = c_.cluster_name;
    co.node_name = gossip_->name();
    co.keyring = keyring_;
    co.memory_budget = memory_.get();
    rpc_client_ = rpc::RpcClient::Create(&loop_, co, &metrics_);
    gossip_streams_->SetClient(rpc_client_.get());
    // A peer gossip no longer trusts (suspect, dead, left) holds nothing up: its connection
    // closes and every call waiting on it (a replica copy, a query part, a claim) fails now, to
    // go to another peer, instead of at its deadline.
    peer_down_listener_ = gossip_->peer_view().Subscribe([this](const gossip::PeerEvent& e) {
      using K = gossip::MemberEvent::Kind;
      if (e.peer.is_self || !(e.kind == K::kSuspect || e.kind == K::kDead || e.kind == K::kLeft)) return;
      rpc_client_->Disconnect(e.peer.addr, "gossip: " + e.peer.name + " is " +
                                               std::string(gossip::EventKindName(e.kind)));
    });
    rpc_server_->Handle(std::string(rpc::kGossipMethod), [this](std::shared_ptr<rpc::ServerCall> c) {
      c->Respond(Status::Ok(), gossip_->ServeStream(c->peer(), c->body()));
    });
    OKLOG_ASSIGN_OR_RETURN(bridge_, rpc::RpcBridge::Create(&loop_, rpc_client_.get()));
    // Queries: /store/query on every node fans out to the live store nodes (query.run), which
    // answer through their own QueryService, in process.
    QueryFanout::Options fo;
    fo.peer_answer_timeout = std::chrono::duration_cast<std::chrono::milliseconds>(c_.query_peer_answer_timeout);
    fo.replication_factor = static_cast<size_t>(c_.replication_factor);
    fanout_ = std::make_unique<QueryFanout>(&gossip_->peer_view(), rpc_client_.get(), fo, &metrics_);
    fanout_->Register(http_.get());
    if (query_) query_->Serve(rpc_server_.get());
    // The data plane: stores pull from ingesters (segment.*) and replicate to stores. Its file
    // work (claims, reads, commits, replica installs with their fsyncs) gets a disk pool of its
    // own: never the loop, never libuv's shared pool, never the ingest server's durable fsyncs.
    OKLOG_ASSIGN_OR_RETURN(rpc_disk_, WorkPool::Create(&loop_, 2, "segment-rpc"));
    if (ingest_log_)
      ingest_rpc_ = IngestRpc::Create(&loop_, ingest_log_.get(), rpc_server_.get(), rpc_disk_.get(),
                                      std::chrono::duration_cast<std::chrono::milliseconds>(c_.pending_timeout),
                                      &metrics_);
    if (store_log_) ServeReplicas(store_log_.get(), rpc_server_.get(), rpc_disk_.get(), &metrics_, store_guard_.get());
    if (store_log_) ServeHoldings(store_log_->holdings(), rpc_server_.get());
    // Other nodes reach our API at the advertised host (as OK Log) unless it is bound to one IP.
    gossip::NodeMeta meta = announced;
    std::string host = c_.api.host;
    if (host.empty() || host == "0.0.0.0" || host == "::") {
      auto adv = ParseAddress(gossip_->advertise_addr(), 7659);
      host = adv.ok() ? adv->host : "127.0.0.1";
    }
    meta.api_addr = Address{"tcp", host, http_->port()}.HostPort();
    meta.full = FullDisks();
    OKLOG_RETURN_IF_ERROR(gossip_->UpdateMeta(meta));
    meta_ = meta;
    gossip_->Start();
    OKLOG_UV_CHECK(health_timer_.Init(this, [this](uv_timer_t* t) { return uv_timer_init(&loop_, t); }));
    uv_timer_start(health_timer_.get(), &Node::OnHealthTick, 1000, 1000);
    http_->Handle("/cluster", [this](const HttpRequest&, std::shared_ptr<HttpResponse> w) {
      w->Send(200, gossip_->ClusterJson(), "application/json; charset=utf-8");
    });
    return Status::Ok();
  }

  // The disks whose guard says full, as gossiped ("ingest", "store").
  std::vector<std::string> FullDisks() const {
    std::vector<std::string> out;
    if (ingest_guard_ && ingest_guard_->full()) out.push_back("ingest");
    if (store_guard_ && store_guard_->full()) out.push_back("store");
    return out;
  }

  // Each second: the disks' free space is read again; a change of which are full is gossiped.
  static void OnHealthTick(uv_timer_t* t) noexcept {
    auto* self = UvHandle<uv_timer_t>::Data<Node>(t);
    if (self == nullptr) return;
    for (DiskGuard* g : {self->ingest_guard_.get(), self->store_guard_.get()})
      if (g != nullptr) g->Poll();
    gossip::NodeMeta meta = self->meta_;
    meta.full = self->FullDisks();
    if (self->ingest_) self->IngestLoadAndShedding(&meta);
    // Health changes go out at once; the load at most every 5 s.
    const uint64_t now = uv_now(&self->loop_);
    const bool health = meta.full != self->meta_.full || meta.shedding != self->meta_.shedding;
    const bool load = meta.load != self->meta_.load && now - self->load_gossiped_ms_ >= 5000;
    if (!health && !load) return;
    if (Status s = self->gossip_->UpdateMeta(meta); !s.ok()) {
      Logger("node")->warn("gossiping the node's health and load: {}", s.ToString());
      // Not shed unannounced (the minority rule counts on the gossip): back to what is gossiped.
      if (self->ingest_ && meta.shedding != self->meta_.shedding) self->ingest_->SetShedding(self->meta_.shedding);
      return;
    }
    if (meta.load != self->meta_.load) self->load_gossiped_ms_ = now;
    self->meta_ = std::move(meta);
  }

  // An ingest node's load for gossip, and whether it sheds (segments/ingest/shedding.h).
  void IngestLoadAndShedding(gossip::NodeMeta* meta) {
    const IngestLog::Backlog b = ingest_log_->backlog();
    const uint64_t free = ingest_guard_->free_bytes();
    meta->load = {ingest_->connections(), b.bytes, free};
    std::string reason = ShedReason(b, NowUnixMs(), std::chrono::steady_clock::now(),
                                    std::chrono::duration_cast<std::chrono::milliseconds>(c_.shed_after), free,
                                    static_cast<uint64_t>(c_.ingest_min_free_bytes), !meta_.shedding.empty());
    if (reason.size() > kMaxShedReason) reason.resize(kMaxShedReason);  // the metadata has 512 bytes
    std::vector<ShedPeer> live;
    for (const auto& p : gossip_->peer_view().Live("ingest")) live.push_back({p.name, !p.meta.shedding.empty()});
    const bool shed = DecideShedding(gossip_->name(), !reason.empty(), !meta_.shedding.empty(), live);
    ingest_->SetShedding(shed ? reason : "");
    shedding_gauge_->Set(shed ? 1 : 0);
    // Gossiped as first decided: the reason's figures change each second, the decision does not.
    meta->shedding = shed ? (meta_.shedding.empty() ? reason : meta_.shedding) : "";
  }

  static void OnSignal(uv_signal_t* h, int signum) noexcept {
    auto* self = static_cast<Node*>(h->data);
    if (signum == SIGHUP) {
      self->ReloadApiTokens();
      return self->ReloadKeys();
    }
    Logger("node")->info("received signal {}; shutting down", signum == SIGINT ? "interrupt" : "terminated");
    self->Shutdown();
  }

  // -api.tokens-file: read at start (a file that does not parse stops the node), checked on
  // every API request but /health (load balancers probe it without a secret).
  Status LoadApiTokens() {
    if (c_.api_tokens_file.empty()) {
      if (c_.api_tls_client_ca.empty())
        Logger("node")->info("the API takes no credentials (no -api.tokens-file, no -api.tls-client-ca): "
                             "whoever reaches {} can query", c_.api.HostPort());
      return Status::Ok();
    }
    Result<std::shared_ptr<const ApiTokens>> tokens = ApiTokens::LoadFile(c_.api_tokens_file);
    if (!tokens.ok()) return Status::InvalidArgument("-api.tokens-file: " + tokens.status().message());
    api_tokens_ = std::move(tokens).value();
    Logger("node")->info("API tokens {}: {} token(s)", c_.api_tokens_file, api_tokens_->size());
    struct stat st {};
    if (::stat(c_.api_tokens_file.c_str(), &st) == 0 && (st.st_mode & 077) != 0)
      Logger("node")->warn("API tokens file {} is readable by group or others (mode {:o}); chmod 600 it",
                           c_.api_tokens_file, st.st_mode & 0777);
    http_->SetGuard(TokenGuard([this] { return api_tokens_; }, {"/health"}));
    return Status::Ok();
  }

  // SIGHUP: rereads -api.tokens-file; a file that no longer parses keeps the tokens in use.
  void ReloadApiTokens() {
    if (c_.api_tokens_file.empty()) return;
    Result<std::shared_ptr<const ApiTokens>> tokens = ApiTokens::LoadFile(c_.api_tokens_file);
    if (!tokens.ok()) {
      Logger("node")->error("SIGHUP: keeping the API tokens in use: {}", tokens.status().ToString());
      return;
    }
    api_tokens_ = std::move(tokens).value();
    Logger("node")->info("SIGHUP: API tokens {} reread: {} token(s)", c_.api_tokens_file, api_tokens_->size());
  }

  // SIGHUP: rereads -cluster.key-file. New connections and packets use the new primary; every
  // key in the file opens; connections sealed with a key no longer there close (and redial).
  // A file that no longer parses keeps the keys in use, with an error in the log.
  void ReloadKeys() {
    auto logger = Logger("node");
    if (!keyring_) {
      logger->info("SIGHUP: no -cluster.key-file to reread");
      return;
    }
    Result<std::shared_ptr<const crypto::Keyring>> ring = crypto::Keyring::LoadFile(c_.key_file);
    if (!ring.ok()) {
      logger->error("SIGHUP: keeping the keys in use: {}", ring.status().ToString());
      return;
    }
    keyring_ = std::move(ring).value();
    packet_sealer_->SetKeyring(keyring_);
    rpc_server_->SetKeyring(keyring_);
    rpc_client_->SetKeyring(keyring_);
    logger->info("SIGHUP: cluster keyring {} reread: {} key(s), primary {}", c_.key_file, keyring_->keys().size(),
                 crypto::Keyring::Fingerprint(keyring_->primary()));
  }

  // Stop accepting, flush every active segment, close every handle. The loop then ends.
  void Shutdown() {
    if (shutting_down_) return;
    shutting_down_ = true;
    for (auto* h : signals_) uv_close(reinterpret_cast<uv_handle_t*>(h), [](uv_handle_t* x) {
      delete reinterpret_cast<uv_signal_t*>(x);
    });
    signals_.clear();
    if (health_timer_.open()) health_timer_.Close(nullptr);
    if (query_) query_->Close();
    if (stream_) stream_->Close();
    if (http_) http_->Close();
    // Draining leave (ingest nodes): stop accepting and flush, then keep serving the stores until
    // they consumed every segment or -ingest.drain-timeout passed, then leave.
    const bool drain = c_.role == Role::kIngest && ingest_ && ingest_rpc_ && c_.drain_timeout.count() > 0;
    if (ingest_) {
      ingest_->Close([this, drain] {
        Logger("node")->info("ingest listeners closed, active segments flushed");
        if (drain) StartDrain();
      });
    }
    if (!drain) FinishShutdown();
  }

  void StartDrain() {
    Logger("node")->info("draining: {} flushed and {} claimed segment(s) left for the stores",
                         ingest_log_->flushed_count(), ingest_log_->pending_count());
    drain_deadline_ms_ = uv_now(&loop_) + static_cast<uint64_t>(
                                              std::chrono::duration_cast<std::chrono::milliseconds>(c_.drain_timeout).count());
    auto* t = new uv_timer_t;
    OKLOG_UV_CHECK(uv_timer_init(&loop_, t));
    t->data = this;
    uv_timer_start(t, &Node::OnDrainTick, 0, 100);
  }

  static void OnDrainTick(uv_timer_t* t) noexcept {
    auto* self = static_cast<Node*>(t->data);
    const size_t left = self->ingest_log_->flushed_count() + self->ingest_log_->pending_count();
    const bool late = uv_now(&self->loop_) >= self->drain_deadline_ms_;
    if (left > 0 && !late) return;
    if (left > 0) Logger("node")->warn("drain timed out with {} segment(s) left; they stay on disk", left);
    else Logger("node")->info("drained: the stores consumed every ingest segment");
    uv_close(reinterpret_cast<uv_handle_t*>(t), [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
    self->FinishShutdown();
  }

  void FinishShutdown() {
    // Consumer threads waiting on the loop wake with Cancelled; they are joined after the loop.
    if (cluster_consumer_) cluster_consumer_->Stop();
    if (holdings_) holdings_->Stop();
    if (fanout_) fanout_->Close();
    if (bridge_) bridge_->Close();
    if (ingest_rpc_) ingest_rpc_->Close();
    if (gossip_ && peer_down_listener_) gossip_->peer_view().Unsubscribe(peer_down_listener_);
    if (rpc_client_) rpc_client_->Close();
    if (rpc_server_) rpc_server_->Close();
    if (rpc_disk_) rpc_disk_->Close();  // after the server and IngestRpc: nothing new arrives
    // Peers record a graceful leave as `left`, not `dead`.
    if (gossip_) gossip_->Leave([this] { gossip_->Close(); });
  }

  const NodeConfig c_;
  uv_loop_t loop_;
  Registry metrics_;
  // Declared after metrics_ and before everything that charges it: it outlives them.
  std::unique_ptr<MemoryBudget> memory_;
  std::unique_ptr<IngestLog> ingest_log_;
  std::unique_ptr<StoreLog> store_log_;
  std::unique_ptr<DiskGuard> ingest_guard_;  // outlive everything that reads them
  std::unique_ptr<DiskGuard> store_guard_;
  gossip::NodeMeta meta_;  // as last gossiped
  uint64_t load_gossiped_ms_ = 0;  // loop time of the last load update
  Gauge* shedding_gauge_ = metrics_.NewGauge(
      "oklog_ingest_shedding", "1 while this ingester refuses connections so producers move (-ingest.shed-after).");
  UvHandle<uv_timer_t> health_timer_;
  std::unique_ptr<HttpServer> http_;
  std::unique_ptr<QueryService> query_;
  std::unique_ptr<StreamService> stream_;
  std::unique_ptr<IngestServer> ingest_;
  std::unique_ptr<LocalConsumer> consumer_;
  std::unique_ptr<Compactor> compactor_;  // after store_log_: destroyed (and stopped) before it
  const uint64_t bucket_ms_ = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(c_.placement_bucket).count());
  std::unique_ptr<WorkPool> rpc_disk_;  // the segment RPC's file work; closed after rpc_server_
  std::unique_ptr<gossip::GossipNode> gossip_;
  std::shared_ptr<const crypto::Keyring> keyring_;  // null: an unauthenticated cluster
  std::shared_ptr<const ApiTokens> api_tokens_;      // null: the API takes no tokens
  std::unique_ptr<crypto::PacketSealer> packet_sealer_;  // gossip's; outlives gossip_
  std::unique_ptr<rpc::RpcServer> rpc_server_;
  std::unique_ptr<RpcGossipStreams> gossip_streams_;  // gossip's transport, over rpc_client_
  std::unique_ptr<rpc::RpcClient> rpc_client_;
  uint64_t peer_down_listener_ = 0;
  std::unique_ptr<rpc::RpcBridge> bridge_;
  std::unique_ptr<IngestRpc> ingest_rpc_;
  std::unique_ptr<QueryFanout> fanout_;
  std::unique_ptr<HoldingsExchange> holdings_;  // joined after the loop, like the consumer
  std::unique_ptr<ClusterConsumer> cluster_consumer_;  // last: joined before the rest goes
  std::vector<uv_signal_t*> signals_;
  bool shutting_down_ = false;
  uint64_t drain_deadline_ms_ = 0;
  int exit_code_ = 0;
};

int RunNode(Role role, const std::vector<std::string>& args) {
  Result<NodeConfig> config = LoadNodeConfig(role, args);
  if (!config.ok()) {
    if (config.status().code() == Code::kNotFound) {  // -h
      std::cout << NodeConfig::Usage(role);
      return 0;
    }
    std::cerr << "oklog " << RoleName(role) << ": " << config.status().message() << "\n";
    return 1;
  }
  SetLogLevel(config->debug ? "debug" : "info");
  RaiseFileLimit();
  signal(SIGPIPE, SIG_IGN);
  Node node(std::move(config).value());
  return node.Run();
}

void Usage() {
  std::cerr << "USAGE\n  oklog <mode> [flags]\n\nMODES\n"
               "  forward      Forward records from stdin to ingest nodes\n"
               "  ingest       Ingester node\n"
               "  store        Storage node\n"
               "  ingeststore  Combination ingest+store node, for small installations\n"
               "  query        Querying commandline tool\n"
               "  stream       Streaming commandline tool\n"
               "  testsvc      Test service, emits log lines at a fixed rate\n"
               "  segment      Inspect store segment files: cat, verify, stat\n"
               "  keygen       Print a new secret: a cluster key (a line for -cluster.key-file) or an API token\n\n"
               "TLS AND TOKENS (oklog <mode> -h for each flag)\n"
               "  nodes        -api.tls-cert, -api.tls-key, -api.tls-client-ca, -api.tokens-file, -api.cors-origin,\n"
               "               -ingest.tls-cert, -ingest.tls-key, -ingest.tls-client-ca\n"
               "  clients      forward, query, stream: -tls-ca, -tls-cert, -tls-key; query, stream: -token or $OKLOG_TOKEN\n\n"
               "VERSION\n  "
            << kVersion << "\n";
}

}  // namespace
}  // namespace oklog

int main(int argc, char** argv) {
  using namespace oklog;
  if (argc < 2) {
    Usage();
    return 1;
  }
  std::string mode = argv[1];
  std::transform(mode.begin(), mode.end(), mode.begin(), ::tolower);
  std::vector<std::string> args(argv + 2, argv + argc);
  if (std::optional<Role> role = ParseRole(mode)) return RunNode(*role, args);
  if (mode == "forward") return RunForward(args);
  if (mode == "query") return RunQuery(args);
  if (mode == "stream") return RunStream(args);
  if (mode == "testsvc") return RunTestsvc(args);
  if (mode == "segment") return RunSegment(args);
  if (mode == "keygen") {
    Result<std::string> key = crypto::Keyring::Generate();
    if (!key.ok()) {
      std::cerr << "keygen: " << key.status().ToString() << "\n";
      return 1;
    }
    std::cout << *key << "\n";
    return 0;
  }
  if (mode == "-h" || mode == "--help" || mode == "help") {
    Usage();
    return 0;
  }
  std::cerr << "unknown mode " << argv[1] << "\n";
  Usage();
  return 1;
}
