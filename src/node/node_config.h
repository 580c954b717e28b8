// The configuration of a node (`oklog ingest|store|ingeststore`): every flag of OK Log's
// ingeststore plus ours, read from the command line and the -config file, then checked whole
// before anything binds, creates a directory or starts a thread. Not thread-safe; built once at
// start-up and read-only afterwards.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/address.h"
#include "common/duration.h"
#include "common/status.h"
#include "gossip/config.h"
#include "segments/record_encoder.h"

namespace oklog {

// What a node does. The mode names the role; the gossiped metadata carries it as the strings
// "ingest" and "store" (RoleNames), so the wire format does not depend on this enum.
enum class Role : uint8_t { kIngest, kStore, kIngestStore };

// The role of a mode name ("ingest", "store", "ingeststore"), or nullopt for any other.
std::optional<Role> ParseRole(std::string_view mode);
std::string_view RoleName(Role role);  // the mode name
inline bool HasIngest(Role r) { return r != Role::kStore; }
inline bool HasStore(Role r) { return r != Role::kIngest; }
// The roles gossiped for the node: "ingest", "store" or both, in that order.
std::vector<std::string> RoleNames(Role role);

struct NodeConfig {
  Role role = Role::kIngestStore;
  bool debug = false;
  // Listeners. Port 0 lets the node pick one; it reports what it bound (log, -ports.file).
  Address api{"tcp", "0.0.0.0", 7650};
  Address fast{"tcp", "0.0.0.0", 7651};
  Address durable{"tcp", "0.0.0.0", 7652};
  Address bulk{"tcp", "0.0.0.0", 7653};
  Address cluster{"tcp", "0.0.0.0", 7659};  // UDP (gossip) and TCP (RPC) on one port
  std::string advertise;                    // "": derived from -cluster by gossip
  std::string cluster_name = "oklog";
  gossip::Preset preset = gossip::Preset::kLan;
  std::vector<std::string> peers;  // seeds, host[:port]; names are resolved at every exchange
  std::string ports_file;          // "": none; see node/ports_file.h
  std::string key_file;            // "": an unauthenticated cluster; see common/crypto/keyring.h
  // TLS at the edges (common/crypto/tls_context.h): the API and the ingest listeners speak TLS
  // when given a certificate and its key; with a client CA they require client certificates it
  // signed. "": plain TCP. The cluster port keeps its own sealing (key_file).
  std::string api_tls_cert, api_tls_key, api_tls_client_ca;
  std::string ingest_tls_cert, ingest_tls_key, ingest_tls_client_ca;
  // Bearer tokens for the API (common/api_tokens.h; SIGHUP rereads); "": no authentication.
  std::string api_tokens_file;
  // Origins whose pages may read the API (CORS); empty: none.
  std::vector<std::string> api_cors_origins;

  std::string ingest_path = "data/ingest";
  TopicMode topic_mode = TopicMode::kStatic;
  std::string topic = "default";
  int64_t flush_size_bytes = 16 << 20;
  Nanos flush_age = std::chrono::milliseconds(500);
  Nanos pending_timeout = std::chrono::minutes(1);
  Nanos drain_timeout = std::chrono::seconds(30);
  int64_t record_max_bytes = 1 << 20;

  std::string store_path = "data/store";
  int64_t consumers = 1;
  int64_t target_size_bytes = 128 << 20;
  Nanos target_age = std::chrono::milliseconds(500);
  Nanos segment_delay = std::chrono::milliseconds(100);
  int64_t buffer_size_bytes = 1 << 20;
  int64_t replication_factor = 2;
  Nanos retain = std::chrono::hours(168);
  Nanos purge = std::chrono::hours(24);
  int64_t max_bytes = 0;  // 0: no limit
  bool ui_local = false;
  std::string filesystem = "real";

  // Queries: a store that has not begun its answer (its planning stats) within this makes the
  // answer a 206 without it, instead of a wait for a frozen or cut-off peer.
  Nanos query_peer_answer_timeout = std::chrono::seconds(5);

  // Repair (segments/holdings.h): a batch held by fewer live stores than the replication factor
  // for this long is copied to another live store, at most repair_rate bytes a second per store.
  Nanos repair_delay = std::chrono::minutes(1);
  int64_t repair_rate = 16 << 20;
  // Rebalance and copies beyond N (segments/holdings.h), in placement buckets of this much ULID
  // time, for buckets that ended rebalance_settle ago.
  bool rebalance = true;
  Nanos placement_bucket = std::chrono::minutes(1);
  Nanos rebalance_settle = std::chrono::minutes(2);

  // Disk full (common/fs/disk_guard.h): below this many free bytes on the ingest disk, the
  // ingest listeners refuse new connections and acknowledge nothing more; below the store's, a
  // store stops consuming and refuses replicas. Both resume by themselves when room returns.
  int64_t ingest_min_free_bytes = 100ll << 20;
  int64_t store_min_free_bytes = 100ll << 20;
  // Shedding (segments/ingest/shedding.h): an ingester whose stores consumed nothing this long
  // while data waits refuses new connections (a minority of the ingesters at most; 0: never).
  Nanos shed_after = std::chrono::seconds(30);
  // Limits against idle floods: an ingest connection silent this long is let go (0: never);
  // each listener's connection cap (0: a share of the descriptor limit, see node.cpp).
  Nanos ingest_idle_timeout = std::chrono::minutes(10);
  int64_t api_max_connections = 0;
  int64_t ingest_max_connections = 0;
  int64_t cluster_max_connections = 0;
  // The node-wide budget for buffered work (common/memory_budget.h; 0: a quarter of RAM, at
  // least 256 MiB).
  int64_t memory_budget = 0;

  // Reads the flags of `oklog MODE` from args (without the program and mode names), the file
  // of -config first and the command line winning over it. Each value is converted to its type
  // here (addresses, modes, presets, numbers, durations); a failure is InvalidArgument naming
  // the flag. -h returns NotFound (print Usage()). Call Validate() on the result.
  static Result<NodeConfig> Parse(Role role, const std::vector<std::string>& args);
  // "Usage of oklog MODE:" and every flag with its default and help.
  static std::string Usage(Role role);

  // Whether the values make sense, alone and together, for this role: ranges of sizes and
  // durations, paths, the topic, listeners on one explicit port. InvalidArgument naming the
  // flag and why; touches nothing but (read-only) the paths.
  [[nodiscard]] Status Validate() const;
};

// Parse, then Validate.
Result<NodeConfig> LoadNodeConfig(Role role, const std::vector<std::string>& args);

}  // namespace oklog
