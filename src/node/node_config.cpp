#include "node/node_config.h"

#include <filesystem>
#include <map>
#include <utility>

#include "common/api_tokens.h"
#include "common/crypto/keyring.h"
#include "common/crypto/tls_context.h"
#include "common/flags.h"

namespace oklog {
namespace {

// The flags as the command line spells them (OK Log's names and defaults, shown by -h); Parse
// converts them into a NodeConfig.
// The typed defaults; the flags below start from them where the types agree.
const NodeConfig kDefaults{};

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
  std::string ports_file;
  std::string key_file;
  std::string api_tls_cert, api_tls_key, api_tls_client_ca;
  std::string ingest_tls_cert, ingest_tls_key, ingest_tls_client_ca;
  std::string api_tokens_file;
  std::string api_cors_origin;
  std::string ingest_path = kDefaults.ingest_path;
  int64_t flush_size = kDefaults.flush_size_bytes;
  Nanos flush_age = kDefaults.flush_age;
  Nanos pending_timeout = kDefaults.pending_timeout;
  Nanos drain_timeout = kDefaults.drain_timeout;
  int64_t record_max_size = kDefaults.record_max_bytes;
  std::string store_path = kDefaults.store_path;
  int64_t consumers = kDefaults.consumers;
  int64_t target_size = kDefaults.target_size_bytes;
  Nanos target_age = kDefaults.target_age;
  Nanos segment_delay = kDefaults.segment_delay;
  int64_t buffer_size = kDefaults.buffer_size_bytes;
  int64_t replication_factor = kDefaults.replication_factor;
  Nanos retain = kDefaults.retain;
  Nanos purge = kDefaults.purge;
  int64_t max_bytes = kDefaults.max_bytes;
  bool ui_local = kDefaults.ui_local;
  std::string filesystem = kDefaults.filesystem;
  Nanos query_peer_answer_timeout = kDefaults.query_peer_answer_timeout;
  Nanos repair_delay = kDefaults.repair_delay;
  int64_t repair_rate = kDefaults.repair_rate;
  bool rebalance = kDefaults.rebalance;
  Nanos placement_bucket = kDefaults.placement_bucket;
  Nanos rebalance_settle = kDefaults.rebalance_settle;
  int64_t ingest_min_free = kDefaults.ingest_min_free_bytes;
  int64_t store_min_free = kDefaults.store_min_free_bytes;
  Nanos shed_after = kDefaults.shed_after;
  Nanos ingest_idle_timeout = kDefaults.ingest_idle_timeout;
  int64_t api_max_conns = 0, ingest_max_conns = 0, cluster_max_conns = 0;
  int64_t memory_budget = 0;
  std::vector<std::string> peers;
  std::string config;

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
    fs->String("cluster.key-file", &key_file,
               "cluster keyring: base64 keys (oklog keygen), one per line, the first primary; seals gossip and "
               "node-to-node traffic, and refuses nodes without a key (SIGHUP rereads it)");
    fs->String("api.tls-cert", &api_tls_cert, "serve the API over TLS with this PEM certificate (chain); needs -api.tls-key");
    fs->String("api.tls-key", &api_tls_key, "PEM private key of -api.tls-cert");
    fs->String("api.tls-client-ca", &api_tls_client_ca,
               "require API clients to present a certificate signed by this PEM CA (needs -api.tls-cert)");
    fs->String("api.tokens-file", &api_tokens_file,
               "require bearer tokens on the API: lines of \"read TOKEN\", \"write TOKEN\" or \"read,write TOKEN\" "
               "(/health stays open; SIGHUP rereads it)");
    fs->String("api.cors-origin", &api_cors_origin,
               "origins (comma-separated, or *) whose web pages may read the API; empty: no CORS");
    fs->String("ingest.tls-cert", &ingest_tls_cert,
               "serve the fast, durable and bulk ingest ports over TLS with this PEM certificate; needs -ingest.tls-key");
    fs->String("ingest.tls-key", &ingest_tls_key, "PEM private key of -ingest.tls-cert");
    fs->String("ingest.tls-client-ca", &ingest_tls_client_ca,
               "require forwarders to present a certificate signed by this PEM CA (needs -ingest.tls-cert)");
    fs->String("ports.file", &ports_file,
               "once every listener is bound, write their addresses to this file as name=host:port lines");
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
    fs->Int("store.max-bytes", &max_bytes, "expire the oldest blocks while the store holds more bytes (0: no limit)");
    fs->Bool("ui.local", &ui_local, "accepted for OK Log compatibility");
    fs->String("filesystem", &filesystem, "real (virtual and nop are not supported)");
    fs->Duration("query.peer-answer-timeout", &query_peer_answer_timeout,
                 "a store that has not begun answering a query in this time is left out (the answer is a 206)");
    fs->Duration("store.repair-delay", &repair_delay,
                 "a batch on fewer live stores than the replication factor this long is copied to another store");
    fs->Int("store.repair-rate", &repair_rate,
            "bytes per second a store copies for repair and rebalance (0: neither)");
    fs->Bool("store.rebalance", &rebalance,
             "move data from stores above the mean to stores below it, and drop copies beyond the replication factor");
    fs->Duration("store.placement-bucket", &placement_bucket,
                 "records are placed, moved and dropped in buckets of this much time (the same on every node)");
    fs->Duration("store.rebalance-settle", &rebalance_settle,
                 "a bucket is moved or its extra copies dropped only this long after it ended");
    fs->Int("ingest.min-free-bytes", &ingest_min_free,
            "below this many free bytes on the ingest disk, refuse new connections and acknowledge nothing (0: off)");
    fs->Int("store.min-free-bytes", &store_min_free,
            "below this many free bytes on the store disk, stop consuming and refuse replicas (0: off)");
    fs->Duration("ingest.shed-after", &shed_after,
                 "when the stores consumed nothing this long while data waits, refuse new connections so producers "
                 "move (a minority of ingesters at most; 0: never)");
    fs->Duration("ingest.idle-timeout", &ingest_idle_timeout,
                 "an ingest connection that sent nothing this long is half-closed (its forwarder finishes and "
                 "reconnects; nothing it sent is lost) or, for bulk, closed (0: never)");
    fs->Int("api.max-connections", &api_max_conns,
            "most open API connections; more are closed at once (0: a share of the descriptor limit)");
    fs->Int("ingest.max-connections", &ingest_max_conns,
            "most open connections on each ingest port; more are closed at once (0: a share of the descriptor limit)");
    fs->Int("cluster.max-connections", &cluster_max_conns,
            "most open cluster-port TCP connections; more are closed at once (0: a share of the descriptor limit)");
    fs->Int("memory.budget", &memory_budget,
            "bytes the node may hold for buffered work (requests, answers, partial frames, live-tail queues); "
            "beyond it new work gets 503 or is closed (0: a quarter of RAM, at least 256 MiB)");
    fs->StringList("peer", &peers, "cluster peer host:port to join (repeatable)");
    fs->String("config", &config, "file of flag values, one \"name value\" per line");
  }
};

// The -config value, found before the other flags are parsed (the file goes first).
std::string ConfigPath(const std::vector<std::string>& args) {
  std::string path;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    const size_t start = a.find_first_not_of('-');
    const std::string name = a.substr(start == std::string::npos ? 0 : start);
    if (name.rfind("config=", 0) == 0) path = name.substr(7);
    else if (name == "config" && i + 1 < args.size()) path = args[i + 1];
  }
  return path;
}

Result<Address> FlagAddress(const std::string& flag, const std::string& text, uint16_t default_port) {
  Result<Address> a = ParseAddress(text, default_port);
  if (!a.ok()) return Status::InvalidArgument("-" + flag + ": " + a.status().message());
  return a;
}

Status Positive(const std::string& flag, int64_t v) {
  if (v < 1) return Status::InvalidArgument("-" + flag + " must be at least 1, not " + std::to_string(v));
  return Status::Ok();
}

Status AtLeast(const std::string& flag, Nanos v, Nanos min) {
  if (v < min)
    return Status::InvalidArgument("-" + flag + " must be at least " + FormatDuration(min) + ", not " +
                                   FormatDuration(v));
  return Status::Ok();
}

bool Wildcard(const std::string& host) { return host.empty() || host == "0.0.0.0" || host == "::"; }

// A path that exists must be a directory; one that does not is created at start-up.
// -PREFIX.tls-cert, -PREFIX.tls-key and -PREFIX.tls-client-ca: the certificate and the key go
// together, a client CA needs them, and the files must load (as the node will load them).
Status CheckTls(const std::string& prefix, const std::string& cert, const std::string& key,
                const std::string& client_ca) {
  if (cert.empty() && key.empty()) {
    if (!client_ca.empty())
      return Status::InvalidArgument("-" + prefix + ".tls-client-ca needs -" + prefix + ".tls-cert and -" + prefix +
                                     ".tls-key");
    return Status::Ok();
  }
  if (cert.empty() || key.empty())
    return Status::InvalidArgument("-" + prefix + ".tls-cert and -" + prefix + ".tls-key go together; only -" +
                                   prefix + (cert.empty() ? ".tls-key" : ".tls-cert") + " is given");
  auto ctx = crypto::TlsContext::Create(crypto::TlsRole::kServer, {cert, key, client_ca, prefix}, nullptr);
  if (!ctx.ok()) return Status::InvalidArgument("-" + prefix + ".tls-*: " + ctx.status().message());
  return Status::Ok();
}

Status DirectoryOrAbsent(const std::string& flag, const std::string& path) {
  if (path.empty()) return Status::InvalidArgument("-" + flag + " is empty; this role needs it");
  std::error_code ec;
  const auto st = std::filesystem::status(path, ec);
  if (std::filesystem::exists(st) && !std::filesystem::is_directory(st))
    return Status::InvalidArgument("-" + flag + " " + path + " exists and is not a directory");
  return Status::Ok();
}

// Whether two paths name the same place, as spelled (no file system access): "d" and "./d/".
bool SamePath(const std::string& a, const std::string& b) {
  auto norm = [](const std::string& p) {
    std::error_code ec;  // absolute() reads only the working directory
    std::filesystem::path n = std::filesystem::absolute(p, ec).lexically_normal();
    return n.has_filename() ? n : n.parent_path();
  };
  return norm(a) == norm(b);
}

}  // namespace

std::optional<Role> ParseRole(std::string_view mode) {
  if (mode == "ingest") return Role::kIngest;
  if (mode == "store") return Role::kStore;
  if (mode == "ingeststore") return Role::kIngestStore;
  return std::nullopt;
}

std::string_view RoleName(Role role) {
  switch (role) {
    case Role::kIngest: return "ingest";
    case Role::kStore: return "store";
    case Role::kIngestStore: return "ingeststore";
  }
  return "ingeststore";
}

std::vector<std::string> RoleNames(Role role) {
  std::vector<std::string> names;
  if (HasIngest(role)) names.push_back("ingest");
  if (HasStore(role)) names.push_back("store");
  return names;
}

std::string NodeConfig::Usage(Role role) {
  NodeFlags f;
  FlagSet fs(std::string(RoleName(role)));
  f.Register(&fs);
  return fs.Usage();
}

Result<NodeConfig> NodeConfig::Parse(Role role, const std::vector<std::string>& args) {
  NodeFlags f;
  FlagSet fs(std::string(RoleName(role)));
  f.Register(&fs);
  if (std::string path = ConfigPath(args); !path.empty()) {
    Status s = fs.ParseConfigFile(path);
    // NotFound means "print the usage" to the caller: an unreadable file is a bad -config.
    if (!s.ok()) return s.code() == Code::kNotFound ? Status::InvalidArgument("-config: " + s.message()) : s;
  }
  OKLOG_ASSIGN_OR_RETURN(std::vector<std::string> rest, fs.Parse(args));
  if (!rest.empty()) return Status::InvalidArgument("unexpected argument: " + rest.front());

  NodeConfig c;
  c.role = role;
  c.debug = f.debug;
  OKLOG_ASSIGN_OR_RETURN(c.api, FlagAddress("api", f.api, 7650));
  OKLOG_ASSIGN_OR_RETURN(c.fast, FlagAddress("ingest.fast", f.fast, 7651));
  OKLOG_ASSIGN_OR_RETURN(c.durable, FlagAddress("ingest.durable", f.durable, 7652));
  OKLOG_ASSIGN_OR_RETURN(c.bulk, FlagAddress("ingest.bulk", f.bulk, 7653));
  OKLOG_ASSIGN_OR_RETURN(c.cluster, FlagAddress("cluster", f.cluster, 7659));
  c.advertise = f.advertise;
  c.cluster_name = f.cluster_name;
  if (f.cluster_preset == "lan") c.preset = gossip::Preset::kLan;
  else if (f.cluster_preset == "local") c.preset = gossip::Preset::kLocal;
  else return Status::InvalidArgument("-cluster.preset must be lan or local, not \"" + f.cluster_preset + "\"");
  c.peers = f.peers;
  c.ports_file = f.ports_file;
  c.key_file = f.key_file;
  c.api_tls_cert = f.api_tls_cert;
  c.api_tls_key = f.api_tls_key;
  c.api_tls_client_ca = f.api_tls_client_ca;
  c.ingest_tls_cert = f.ingest_tls_cert;
  c.ingest_tls_key = f.ingest_tls_key;
  c.ingest_tls_client_ca = f.ingest_tls_client_ca;
  c.api_tokens_file = f.api_tokens_file;
  for (size_t at = 0; at <= f.api_cors_origin.size();) {
    size_t comma = f.api_cors_origin.find(',', at);
    if (comma == std::string::npos) comma = f.api_cors_origin.size();
    std::string o = f.api_cors_origin.substr(at, comma - at);
    while (!o.empty() && o.front() == ' ') o.erase(0, 1);
    while (!o.empty() && (o.back() == ' ' || o.back() == '/')) o.pop_back();  // origins have no path
    if (!o.empty()) c.api_cors_origins.push_back(o);
    at = comma + 1;
  }
  c.ingest_path = f.ingest_path;
  if (f.topic_mode == "static") c.topic_mode = TopicMode::kStatic;
  else if (f.topic_mode == "dynamic") c.topic_mode = TopicMode::kDynamic;
  else return Status::InvalidArgument("-ingest.topic-mode must be static or dynamic, not \"" + f.topic_mode + "\"");
  c.topic = f.topic;
  c.flush_size_bytes = f.flush_size;
  c.flush_age = f.flush_age;
  c.pending_timeout = f.pending_timeout;
  c.drain_timeout = f.drain_timeout;
  c.record_max_bytes = f.record_max_size;
  c.store_path = f.store_path;
  c.consumers = f.consumers;
  c.target_size_bytes = f.target_size;
  c.target_age = f.target_age;
  c.segment_delay = f.segment_delay;
  c.buffer_size_bytes = f.buffer_size;
  c.replication_factor = f.replication_factor;
  c.retain = f.retain;
  c.purge = f.purge;
  c.max_bytes = f.max_bytes;
  c.ui_local = f.ui_local;
  c.filesystem = f.filesystem;
  c.query_peer_answer_timeout = f.query_peer_answer_timeout;
  c.repair_delay = f.repair_delay;
  c.repair_rate = f.repair_rate;
  c.rebalance = f.rebalance;
  c.placement_bucket = f.placement_bucket;
  c.rebalance_settle = f.rebalance_settle;
  c.ingest_min_free_bytes = f.ingest_min_free;
  c.store_min_free_bytes = f.store_min_free;
  c.shed_after = f.shed_after;
  c.ingest_idle_timeout = f.ingest_idle_timeout;
  c.api_max_connections = f.api_max_conns;
  c.ingest_max_connections = f.ingest_max_conns;
  c.cluster_max_connections = f.cluster_max_conns;
  c.memory_budget = f.memory_budget;
  return c;
}

Status NodeConfig::Validate() const {
  using std::chrono::milliseconds;
  if (filesystem != "real")
    return Status::InvalidArgument("-filesystem " + filesystem + " is not supported; use real");
  if (!ValidTopic(topic))
    return Status::InvalidArgument("-ingest.topic \"" + topic +
                                   "\" is not a topic (1-255 of [A-Za-z0-9_-], starting with a letter or digit)");
  if (record_max_bytes < 1 || record_max_bytes > (64 << 20))
    return Status::InvalidArgument("-ingest.record-max-size must be between 1 and 67108864, not " +
                                   std::to_string(record_max_bytes));
  OKLOG_RETURN_IF_ERROR(Positive("ingest.segment-flush-size", flush_size_bytes));
  // The ingest side counts in milliseconds: less would be 0, that is never (age) or at once.
  OKLOG_RETURN_IF_ERROR(AtLeast("ingest.segment-flush-age", flush_age, milliseconds(1)));
  OKLOG_RETURN_IF_ERROR(AtLeast("ingest.segment-pending-timeout", pending_timeout, milliseconds(1)));
  OKLOG_RETURN_IF_ERROR(AtLeast("ingest.drain-timeout", drain_timeout, Nanos(0)));
  OKLOG_RETURN_IF_ERROR(Positive("store.segment-consumers", consumers));
  OKLOG_RETURN_IF_ERROR(Positive("store.segment-target-size", target_size_bytes));
  OKLOG_RETURN_IF_ERROR(AtLeast("store.segment-target-age", target_age, Nanos(0)));
  OKLOG_RETURN_IF_ERROR(AtLeast("store.segment-delay", segment_delay, Nanos(0)));
  OKLOG_RETURN_IF_ERROR(Positive("store.segment-buffer-size", buffer_size_bytes));
  OKLOG_RETURN_IF_ERROR(Positive("store.segment-replication-factor", replication_factor));
  OKLOG_RETURN_IF_ERROR(AtLeast("store.segment-retain", retain, Nanos(0)));  // 0: keep for ever
  OKLOG_RETURN_IF_ERROR(AtLeast("store.segment-purge", purge, Nanos(0)));
  OKLOG_RETURN_IF_ERROR(AtLeast("query.peer-answer-timeout", query_peer_answer_timeout, milliseconds(1)));
  OKLOG_RETURN_IF_ERROR(AtLeast("ingest.shed-after", shed_after, Nanos(0)));
  OKLOG_RETURN_IF_ERROR(AtLeast("ingest.idle-timeout", ingest_idle_timeout, Nanos(0)));
  for (auto [flag, v] : {std::pair<const char*, int64_t>{"api.max-connections", api_max_connections},
                         {"ingest.max-connections", ingest_max_connections},
                         {"cluster.max-connections", cluster_max_connections}})
    if (v < 0) return Status::InvalidArgument(std::string("-") + flag + " must be 0 (automatic) or more, not " + std::to_string(v));
  if (memory_budget < 0)
    return Status::InvalidArgument("-memory.budget must be 0 (automatic) or more, not " + std::to_string(memory_budget));
  OKLOG_RETURN_IF_ERROR(AtLeast("store.placement-bucket", placement_bucket, milliseconds(1)));
  OKLOG_RETURN_IF_ERROR(AtLeast("store.rebalance-settle", rebalance_settle, Nanos(0)));
  if (repair_rate < 0)
    return Status::InvalidArgument("-store.repair-rate must be 0 (no repair) or more, not " + std::to_string(repair_rate));
  if (max_bytes < 0)
    return Status::InvalidArgument("-store.max-bytes must be 0 (no limit) or more, not " + std::to_string(max_bytes));
  if (ingest_min_free_bytes < 0)
    return Status::InvalidArgument("-ingest.min-free-bytes must be 0 (off) or more, not " +
                                   std::to_string(ingest_min_free_bytes));
  if (store_min_free_bytes < 0)
    return Status::InvalidArgument("-store.min-free-bytes must be 0 (off) or more, not " +
                                   std::to_string(store_min_free_bytes));
  if (cluster_name.empty()) return Status::InvalidArgument("-cluster.name is empty");
  if (!key_file.empty()) {
    Result<std::shared_ptr<const crypto::Keyring>> ring = crypto::Keyring::LoadFile(key_file);
    if (!ring.ok()) return Status::InvalidArgument("-cluster.key-file: " + ring.status().message());
  }
  OKLOG_RETURN_IF_ERROR(CheckTls("api", api_tls_cert, api_tls_key, api_tls_client_ca));
  if (HasIngest(role)) OKLOG_RETURN_IF_ERROR(CheckTls("ingest", ingest_tls_cert, ingest_tls_key, ingest_tls_client_ca));
  if (!api_tokens_file.empty()) {
    Result<std::shared_ptr<const ApiTokens>> tokens = ApiTokens::LoadFile(api_tokens_file);
    if (!tokens.ok()) return Status::InvalidArgument("-api.tokens-file: " + tokens.status().message());
  }
  for (const std::string& o : api_cors_origins)
    if (o != "*" && o.find("://") == std::string::npos)
      return Status::InvalidArgument("-api.cors-origin \"" + o + "\" is not an origin (scheme://host[:port], or *)");
  if (!advertise.empty()) OKLOG_RETURN_IF_ERROR(FlagAddress("cluster.advertise-addr", advertise, 7659).status());
  for (const std::string& p : peers) OKLOG_RETURN_IF_ERROR(FlagAddress("peer", p, 7659).status());

  if (HasIngest(role)) OKLOG_RETURN_IF_ERROR(DirectoryOrAbsent("ingest.path", ingest_path));
  if (HasStore(role)) OKLOG_RETURN_IF_ERROR(DirectoryOrAbsent("store.path", store_path));
  if (role == Role::kIngestStore && SamePath(ingest_path, store_path))
    return Status::InvalidArgument("-ingest.path and -store.path are both " + ingest_path + "; they must differ");
  if (!ports_file.empty()) {
    const std::filesystem::path dir = std::filesystem::path(ports_file).parent_path();
    std::error_code ec;
    if (!dir.empty() && !std::filesystem::is_directory(dir, ec))
      return Status::InvalidArgument("-ports.file " + ports_file + ": " + dir.string() + " is not a directory");
  }

  // Two listeners of this role on one explicit port (and overlapping hosts) cannot both bind.
  std::vector<std::pair<std::string, const Address*>> listeners = {{"api", &api}, {"cluster", &cluster}};
  if (HasIngest(role))
    listeners.insert(listeners.end(), {{"ingest.fast", &fast}, {"ingest.durable", &durable}, {"ingest.bulk", &bulk}});
  for (size_t i = 0; i < listeners.size(); ++i)
    for (size_t j = i + 1; j < listeners.size(); ++j) {
      const Address& a = *listeners[i].second;
      const Address& b = *listeners[j].second;
      if (a.port == 0 || a.port != b.port) continue;
      if (a.host != b.host && !Wildcard(a.host) && !Wildcard(b.host)) continue;
      return Status::InvalidArgument("-" + listeners[i].first + " and -" + listeners[j].first +
                                     " both listen on port " + std::to_string(a.port));
    }
  return Status::Ok();
}

Result<NodeConfig> LoadNodeConfig(Role role, const std::vector<std::string>& args) {
  OKLOG_ASSIGN_OR_RETURN(NodeConfig c, NodeConfig::Parse(role, args));
  OKLOG_RETURN_IF_ERROR(c.Validate());
  return c;
}

}  // namespace oklog
