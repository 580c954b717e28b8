// The `oklog` binary: mode dispatch, flags (OK Log's, plus ours), wiring of the modules on one
// libuv loop, signals and clean shutdown. Node modes live here; client modes (forward, query,
// stream, testsvc, segment) live in tools/cli/.
#include <signal.h>
#include <sys/resource.h>
#include <uv.h>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "common/address.h"
#include "common/flags.h"
#include "common/http_server.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/uv/check.h"
#include "gossip/gossip_node.h"
#include "gossip/transport.h"
#include "rpc/frame_codec.h"
#include "rpc/rpc_bridge.h"
#include "rpc/rpc_client.h"
#include "rpc/rpc_server.h"
#include "query/fanout.h"
#include "query/query_api.h"
#include "query/stream_api.h"
#include "segments/compactor.h"
#include "segments/cluster_consumer.h"
#include "segments/consumer.h"
#include "segments/ingest_log.h"
#include "segments/ingest_server.h"
#include "segments/segment_rpc.h"
#include "segments/store_log.h"
#include "tools/cli/tools.h"

namespace oklog {
namespace {

constexpr const char* kVersion = "0.1.0";

// Every flag of `oklog ingeststore` (OK Log's, same meaning) plus ours.
struct NodeFlags {
  bool debug = false;
  std::string api = "tcp://0.0.0.0:7650";
  std::string topic_mode = "static";
  std::string topic = "default";
  std::string fast = "tcp://0.0.0.0:7651";
  std::string durable = "tcp://0.0.0.0:7652";
  std::string bulk = "tcp://0.0.0.0:7653";
  std::string cluster = "tcp://0.0.0.0:7659";
  std::string advertise;
  std::string cluster_name = "oklog";
  std::string cluster_preset = "lan";
  std::string ingest_path = "data/ingest";
  int64_t flush_size = 16 << 20;
  Nanos flush_age = std::chrono::milliseconds(500);
  Nanos pending_timeout = std::chrono::minutes(1);
  Nanos drain_timeout = std::chrono::seconds(30);
  int64_t record_max_size = 1 << 20;
  std::string store_path = "data/store";
  int64_t consumers = 1;
  int64_t target_size = 128 << 20;
  Nanos target_age = std::chrono::milliseconds(500);
  Nanos segment_delay = std::chrono::milliseconds(100);
  int64_t buffer_size = 1 << 20;
  int64_t replication_factor = 2;
  Nanos retain = std::chrono::hours(168);
  Nanos purge = std::chrono::hours(24);
  int64_t max_bytes = 0;
  bool ui_local = false;
  std::string filesystem = "real";
  std::vector<std::string> peers;
  std::string config;
  std::string mode = "ingeststore";  // ingest, store or ingeststore: the roles

  void Register(FlagSet* fs) {
    fs->Bool("debug", &debug, "debug logging");
    fs->String("api", &api, "listen address for the HTTP API (query, metrics, health)");
    fs->String("ingest.topic-mode", &topic_mode, "static (prefix -ingest.topic) or dynamic (first token of each line)");
    fs->Alias("topic-mode", "ingest.topic-mode");
    fs->String("ingest.topic", &topic, "topic of every record in static topic mode");
    fs->Alias("topic", "ingest.topic");
    fs->String("ingest.fast", &fast, "listen address for fast (async) writes");
    fs->String("ingest.durable", &durable, "listen address for durable (group-committed, fsynced) writes");
    fs->String("ingest.bulk", &bulk, "listen address for bulk (whole-segment) writes");
    fs->String("cluster", &cluster, "listen address for cluster gossip and node-to-node traffic");
    fs->String("cluster.advertise-addr", &advertise, "address other nodes reach this one at (host[:port])");
    fs->String("cluster.name", &cluster_name, "cluster name; nodes of other clusters are ignored");
    fs->String("cluster.preset", &cluster_preset, "gossip timing preset: lan or local");
    fs->String("ingest.path", &ingest_path, "directory of ingest segments");
    fs->Int("ingest.segment-flush-size", &flush_size, "flush an active segment at this many bytes");
    fs->Duration("ingest.segment-flush-age", &flush_age, "flush a non-empty active segment this long after it was opened");
    fs->Duration("ingest.segment-pending-timeout", &pending_timeout, "claimed segments not committed in this time go back to flushed");
    fs->Duration("ingest.drain-timeout", &drain_timeout,
                 "ingest nodes on SIGTERM: serve stores until every ingest segment is consumed, at most this long, then leave");
    fs->Int("ingest.record-max-size", &record_max_size, "lines longer than this many bytes are cut at it (and counted)");
    fs->String("store.path", &store_path, "directory of store segments");
    fs->Int("store.segment-consumers", &consumers, "concurrent segment consumers");
    fs->Int("store.segment-target-size", &target_size, "most bytes of ingest segments merged into one store segment");
    fs->Duration("store.segment-target-age", &target_age, "longest a consumer gathers before writing (it writes at once when nothing more waits)");
    fs->Duration("store.segment-delay", &segment_delay, "accepted for OK Log compatibility; consumers pull continuously");
    fs->Int("store.segment-buffer-size", &buffer_size, "per-query output buffer in bytes");
    fs->Int("store.segment-replication-factor", &replication_factor, "copies of each store segment (a single node keeps 1)");
    fs->Duration("store.segment-retain", &retain, "retention period for segment files");
    fs->Duration("store.segment-purge", &purge, "purge deleted segment files after this long");
    fs->Int("store.max-bytes", &max_bytes, "trash the oldest segments while the store holds more bytes (0: no limit)");
    fs->Bool("ui.local", &ui_local, "accepted for OK Log compatibility");
    fs->String("filesystem", &filesystem, "real (virtual and nop are not supported)");
    fs->StringList("peer", &peers, "cluster peer host:port to join (repeatable)");
    fs->String("config", &config, "file of flag values, one \"name value\" per line");
  }
};

// Sets the file-descriptor limit to its hard maximum: segments and connections need many.
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

void RaiseFileLimit() {
  rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

// Parses flags, with -config FILE read first and the command line winning over it.
Result<std::vector<std::string>> ParseWithConfig(FlagSet* fs, NodeFlags* f, const std::vector<std::string>& args) {
  for (size_t i = 0; i < args.size(); ++i) {
    std::string a = args[i];
    std::string name = a.substr(a.find_first_not_of('-') == std::string::npos ? 0 : a.find_first_not_of('-'));
    if (name.rfind("config=", 0) == 0) {
      f->config = name.substr(7);
    } else if (name == "config" && i + 1 < args.size()) {
      f->config = args[i + 1];
    }
  }
  if (!f->config.empty()) OKLOG_RETURN_IF_ERROR(fs->ParseConfigFile(f->config));
  return fs->Parse(args);
}

class Node {
 public:
  explicit Node(NodeFlags flags) : f_(std::move(flags)) {}

  int Run() {
    auto logger = Logger("node");
    if (int rc = uv_loop_init(&loop_); rc != 0) {
      logger->error("uv_loop_init: {}", uv_strerror(rc));
      return 1;
    }
    Status s = Start();
    if (!s.ok()) {
      logger->error("{}", s.ToString());
      Shutdown();
      uv_run(&loop_, UV_RUN_DEFAULT);
      uv_loop_close(&loop_);
      return 1;
    }
    uv_run(&loop_, UV_RUN_DEFAULT);
    if (compactor_) compactor_->Stop();  // interrupts a merge in progress; its inputs stay
    if (cluster_consumer_) cluster_consumer_->Join();
    if (consumer_) consumer_->Stop();
    int rc = uv_loop_close(&loop_);
    if (rc != 0) logger->warn("loop closed with handles still open: {}", uv_strerror(rc));
    logger->info("stopped");
    return exit_code_;
  }

 private:
  Status Start() {
    auto logger = Logger("node");
    if (f_.filesystem != "real")
      return Status::InvalidArgument("-filesystem " + f_.filesystem + " is not supported; use real");
    TopicMode mode;
    if (f_.topic_mode == "static") mode = TopicMode::kStatic;
    else if (f_.topic_mode == "dynamic") mode = TopicMode::kDynamic;
    else return Status::InvalidArgument("-ingest.topic-mode must be static or dynamic, not " + f_.topic_mode);
    if (!ValidTopic(f_.topic)) return Status::InvalidArgument("invalid -ingest.topic \"" + f_.topic + "\"");
    if (f_.record_max_size <= 0 || f_.record_max_size > (64 << 20))
      return Status::InvalidArgument("-ingest.record-max-size must be between 1 and 67108864");
    if (f_.flush_size <= 0) return Status::InvalidArgument("-ingest.segment-flush-size must be positive");
    if (f_.replication_factor < 1) return Status::InvalidArgument("-store.segment-replication-factor must be >= 1");

    OKLOG_ASSIGN_OR_RETURN(Address api, ParseAddress(f_.api, 7650));
    IngestServerOptions io;
    OKLOG_ASSIGN_OR_RETURN(io.fast, ParseAddress(f_.fast, 7651));
    OKLOG_ASSIGN_OR_RETURN(io.durable, ParseAddress(f_.durable, 7652));
    OKLOG_ASSIGN_OR_RETURN(io.bulk, ParseAddress(f_.bulk, 7653));
    io.topic_mode = mode;
    io.topic = f_.topic;
    io.flush_size_bytes = static_cast<uint64_t>(f_.flush_size);
    io.flush_age = std::chrono::duration_cast<std::chrono::milliseconds>(f_.flush_age);
    io.record_max_bytes = static_cast<size_t>(f_.record_max_size);

    IngestLog::Options ilo;
    ilo.pending_timeout = std::chrono::duration_cast<std::chrono::milliseconds>(f_.pending_timeout);
    // Roles: an ingest node keeps an ingest log and serves it to stores; a store node keeps a
    // store log, consumes from every ingester and answers queries.
    if (ingest_role()) {
      OKLOG_ASSIGN_OR_RETURN(ingest_log_, IngestLog::Open(f_.ingest_path, ilo, &metrics_));
    }
    if (store_role()) {
      OKLOG_ASSIGN_OR_RETURN(store_log_, StoreLog::Open(f_.store_path, StoreLogOptions{}, &metrics_));
    }

    OKLOG_ASSIGN_OR_RETURN(http_, HttpServer::Create(&loop_, api, HttpServer::Options{}, &metrics_));
    http_->Handle("/health", [](const HttpRequest&, std::shared_ptr<HttpResponse> w) { w->Send(200, "OK\n"); });
    http_->Handle("/metrics", [this](const HttpRequest&, std::shared_ptr<HttpResponse> w) {
      w->Send(200, metrics_.Render(), "text/plain; version=0.0.4; charset=utf-8");
    });
    QueryService::Options qo;
    qo.high_water_bytes = std::max<size_t>(static_cast<size_t>(f_.buffer_size), 64 << 10);
    if (store_log_) {
      OKLOG_ASSIGN_OR_RETURN(query_, QueryService::Create(&loop_, store_log_.get(), qo, &metrics_));
      query_->Register(http_.get());
    }
    // Live streams see records as the ingest listeners encode them, before any disk write.
    stream_ = std::make_unique<StreamService>(StreamRegistry::Options{}, &metrics_);
    stream_->Register(http_.get());
    io.on_records = [this](std::string_view records) { stream_->Publish(records); };

    if (ingest_log_) {
      OKLOG_ASSIGN_OR_RETURN(ingest_, IngestServer::Create(&loop_, ingest_log_.get(), io, &metrics_));
    }

    OKLOG_RETURN_IF_ERROR(StartGossip(api));
    // /store/stream fans out to every live peer over stream.open (and serves theirs).
    stream_->EnableFanout(&loop_, &gossip_->peer_view(), rpc_server_.get(), rpc_client_.get());

    ConsumerOptions co;
    co.target_bytes = static_cast<uint64_t>(f_.target_size);
    if (store_log_ && ingest_log_ && f_.peers.empty()) {
      // A standalone ingeststore node (no -peer) consumes its own ingest log in process and keeps
      // one copy; other store nodes that join later pull from it over RPC as well.
      if (f_.replication_factor > 1)
        logger->info("single node: replication factor {} cannot be met, keeping 1 copy", f_.replication_factor);
      consumer_ = LocalConsumer::Start(ingest_log_.get(), store_log_.get(), co, &metrics_);
    } else if (store_log_) {
      if (f_.consumers < 1) return Status::InvalidArgument("-store.segment-consumers must be >= 1");
      ClusterConsumerOptions cco;
      cco.consumers = static_cast<size_t>(f_.consumers);
      cco.replication_factor = static_cast<size_t>(f_.replication_factor);
      cco.max_batch_bytes = std::min<uint64_t>(co.max_batch_bytes, static_cast<uint64_t>(f_.target_size));
      cluster_consumer_ = ClusterConsumer::Start(
          bridge_.get(),
          [this] {
            ClusterPeers p;
            for (const auto& peer : gossip_->peer_view().Live("ingest")) p.ingest.push_back(peer.addr);
            for (const auto& peer : gossip_->peer_view().Live("store"))
              p.store.push_back({peer.name, peer.addr, peer.is_self});
            return p;
          },
          store_log_.get(), cco, &metrics_);
    }

    // Compaction and retention on their own thread (never the loop thread).
    if (f_.max_bytes < 0) return Status::InvalidArgument("-store.max-bytes must be >= 0");
    CompactorOptions cpo;
    cpo.target_bytes = static_cast<uint64_t>(f_.target_size);
    cpo.retention.retain = std::chrono::duration_cast<std::chrono::milliseconds>(f_.retain);
    cpo.retention.purge = std::chrono::duration_cast<std::chrono::milliseconds>(f_.purge);
    cpo.retention.max_bytes = static_cast<uint64_t>(f_.max_bytes);
    if (store_log_) {
      OKLOG_ASSIGN_OR_RETURN(compactor_, Compactor::Create(store_log_.get(), cpo, &metrics_));
      compactor_->Start();
    }

    for (int sig : {SIGINT, SIGTERM}) {
      auto* h = new uv_signal_t;
      if (Status s = UvStatus(uv_signal_init(&loop_, h), "uv_signal_init"); !s.ok()) {
        delete h;
        return s;
      }
      h->data = this;
      uv_signal_start(h, &Node::OnSignal, sig);
      signals_.push_back(h);
    }
    logger->info("oklog {} {} API={} fast={} durable={} bulk={} ingest.path={} store.path={}", kVersion, f_.mode,
                 http_->BoundAddress(), io.fast.HostPort(), io.durable.HostPort(), io.bulk.HostPort(), f_.ingest_path,
                 f_.store_path);
    return Status::Ok();
  }

  // Joins the cluster: roles and API address in the gossiped metadata, GET /cluster.
  bool ingest_role() const { return f_.mode != "store"; }
  bool store_role() const { return f_.mode != "ingest"; }

  Status StartGossip(const Address& api) {
    OKLOG_ASSIGN_OR_RETURN(Address cluster, ParseAddress(f_.cluster, 7659));
    gossip::GossipNode::Options go;
    go.bind_addr = cluster.HostPort();
    go.advertise_addr = f_.advertise;
    go.seeds = f_.peers;
    go.cluster_name = f_.cluster_name;
    if (f_.cluster_preset == "lan") go.preset = gossip::Preset::kLan;
    else if (f_.cluster_preset == "local") go.preset = gossip::Preset::kLocal;
    else return Status::InvalidArgument("-cluster.preset must be lan or local, not " + f_.cluster_preset);
    if (ingest_role()) go.meta.roles.push_back("ingest");
    if (store_role()) go.meta.roles.push_back("store");
    if (ingest_) {
      go.meta.ingest_fast_port = ingest_->fast_port();
      go.meta.ingest_durable_port = ingest_->durable_port();
      go.meta.ingest_bulk_port = ingest_->bulk_port();
    }
    go.meta.version = kVersion;
    // One cluster port: gossip binds its UDP side (port 0 picks one), the RPC server listens on
    // the same port's TCP side, and gossip push/pull is one of the RPC's methods.
    gossip_streams_ = std::make_unique<RpcGossipStreams>(&loop_);
    go.streams = gossip_streams_.get();
    for (int attempt = 0;; ++attempt) {
      OKLOG_ASSIGN_OR_RETURN(gossip_, gossip::GossipNode::Create(&loop_, go, &metrics_));
      rpc_server_ = rpc::RpcServer::Create(&loop_, {f_.cluster_name, gossip_->name()}, &metrics_);
      Status listen = rpc_server_->Listen(Address{"tcp", cluster.host, gossip_->port()}.HostPort());
      if (listen.ok()) break;
      // With port 0 the TCP side of the port UDP got may be taken: try another port.
      retired_servers_.push_back(std::move(rpc_server_));
      retired_gossip_.push_back(std::move(gossip_));
      retired_servers_.back()->Close();
      retired_gossip_.back()->Close();
      if (cluster.port != 0 || attempt >= 19) return Status::IOError("cluster port TCP side: " + listen.ToString());
    }
    rpc_client_ = rpc::RpcClient::Create(&loop_, {f_.cluster_name, gossip_->name()}, &metrics_);
    gossip_streams_->SetClient(rpc_client_.get());
    rpc_server_->Handle(std::string(rpc::kGossipMethod), [this](std::shared_ptr<rpc::ServerCall> c) {
      c->Respond(Status::Ok(), gossip_->ServeStream(c->peer(), c->body()));
    });
    OKLOG_ASSIGN_OR_RETURN(bridge_, rpc::RpcBridge::Create(&loop_, rpc_client_.get()));
    // Queries: /store/query on every node fans out to the live store nodes (query.run), which
    // answer through their own QueryService, in process.
    fanout_ = std::make_unique<QueryFanout>(&gossip_->peer_view(), rpc_client_.get(), QueryFanout::Options{}, &metrics_);
    fanout_->Register(http_.get());
    if (query_) query_->Serve(rpc_server_.get());
    // The data plane: stores pull from ingesters (segment.*) and replicate to stores.
    if (ingest_log_)
      ingest_rpc_ = IngestRpc::Create(&loop_, ingest_log_.get(), rpc_server_.get(),
                                      std::chrono::duration_cast<std::chrono::milliseconds>(f_.pending_timeout),
                                      &metrics_);
    if (store_log_) ServeReplicas(&loop_, store_log_.get(), rpc_server_.get(), &metrics_);
    // Other nodes reach our API at the advertised host (as OK Log) unless it is bound to one IP.
    gossip::NodeMeta meta = go.meta;
    std::string host = api.host;
    if (host.empty() || host == "0.0.0.0" || host == "::") {
      auto adv = ParseAddress(gossip_->advertise_addr(), 7659);
      host = adv.ok() ? adv->host : "127.0.0.1";
    }
    meta.api_addr = Address{"tcp", host, http_->port()}.HostPort();
    OKLOG_RETURN_IF_ERROR(gossip_->UpdateMeta(meta));
    gossip_->Start();
    http_->Handle("/cluster", [this](const HttpRequest&, std::shared_ptr<HttpResponse> w) {
      w->Send(200, gossip_->ClusterJson(), "application/json; charset=utf-8");
    });
    return Status::Ok();
  }

  static void OnSignal(uv_signal_t* h, int signum) noexcept {
    auto* self = static_cast<Node*>(h->data);
    Logger("node")->info("received signal {}; shutting down", signum == SIGINT ? "interrupt" : "terminated");
    self->Shutdown();
  }

  // Stop accepting, flush every active segment, close every handle. The loop then ends.
  void Shutdown() {
    if (shutting_down_) return;
    shutting_down_ = true;
    for (auto* h : signals_) uv_close(reinterpret_cast<uv_handle_t*>(h), [](uv_handle_t* x) {
      delete reinterpret_cast<uv_signal_t*>(x);
    });
    signals_.clear();
    if (query_) query_->Close();
    if (stream_) stream_->Close();
    if (http_) http_->Close();
    // Draining leave (ingest nodes): stop accepting and flush, then keep serving the stores until
    // they consumed every segment or -ingest.drain-timeout passed, then leave.
    const bool drain = f_.mode == "ingest" && ingest_ && ingest_rpc_ && f_.drain_timeout.count() > 0;
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
                                              std::chrono::duration_cast<std::chrono::milliseconds>(f_.drain_timeout).count());
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
    if (fanout_) fanout_->Close();
    if (bridge_) bridge_->Close();
    if (ingest_rpc_) ingest_rpc_->Close();
    if (rpc_client_) rpc_client_->Close();
    if (rpc_server_) rpc_server_->Close();
    // Peers record a graceful leave as `left`, not `dead`.
    if (gossip_) gossip_->Leave([this] { gossip_->Close(); });
  }

  NodeFlags f_;
  uv_loop_t loop_;
  Registry metrics_;
  std::unique_ptr<IngestLog> ingest_log_;
  std::unique_ptr<StoreLog> store_log_;
  std::unique_ptr<HttpServer> http_;
  std::unique_ptr<QueryService> query_;
  std::unique_ptr<StreamService> stream_;
  std::unique_ptr<IngestServer> ingest_;
  std::unique_ptr<LocalConsumer> consumer_;
  std::unique_ptr<Compactor> compactor_;  // after store_log_: destroyed (and stopped) before it
  std::unique_ptr<gossip::GossipNode> gossip_;
  std::unique_ptr<rpc::RpcServer> rpc_server_;
  std::unique_ptr<RpcGossipStreams> gossip_streams_;  // gossip's transport, over rpc_client_
  // Closed during a port-0 retry, kept until the loop has run their close callbacks.
  std::vector<std::unique_ptr<rpc::RpcServer>> retired_servers_;
  std::vector<std::unique_ptr<gossip::GossipNode>> retired_gossip_;
  std::unique_ptr<rpc::RpcClient> rpc_client_;
  std::unique_ptr<rpc::RpcBridge> bridge_;
  std::unique_ptr<IngestRpc> ingest_rpc_;
  std::unique_ptr<QueryFanout> fanout_;
  std::unique_ptr<ClusterConsumer> cluster_consumer_;  // last: joined before the rest goes
  std::vector<uv_signal_t*> signals_;
  bool shutting_down_ = false;
  uint64_t drain_deadline_ms_ = 0;
  int exit_code_ = 0;
};

int RunNode(const std::string& mode, const std::vector<std::string>& args) {
  NodeFlags f;
  FlagSet fs(mode);
  f.Register(&fs);
  auto rest = ParseWithConfig(&fs, &f, args);
  if (!rest.ok()) {
    if (rest.status().code() == Code::kNotFound) {
      std::cout << fs.Usage();
      return 0;
    }
    std::cerr << rest.status().message() << "\n" << fs.Usage();
    return 1;
  }
  if (!rest->empty()) {
    std::cerr << "unexpected argument: " << rest->front() << "\n";
    return 1;
  }
  f.mode = mode;
  SetLogLevel(f.debug ? "debug" : "info");
  RaiseFileLimit();
  signal(SIGPIPE, SIG_IGN);
  Node node(std::move(f));
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
               "  segment      Inspect store segment files: cat, verify, stat\n\n"
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
  if (mode == "ingeststore" || mode == "ingest" || mode == "store") return RunNode(mode, args);
  if (mode == "forward") return RunForward(args);
  if (mode == "query") return RunQuery(args);
  if (mode == "stream") return RunStream(args);
  if (mode == "testsvc") return RunTestsvc(args);
  if (mode == "segment") return RunSegment(args);
  if (mode == "-h" || mode == "--help" || mode == "help") {
    Usage();
    return 0;
  }
  std::cerr << "unknown mode " << argv[1] << "\n";
  Usage();
  return 1;
}
