// Tunables of the membership protocol, with memberlist's LAN and Local presets, and the formulas
// that scale them with the cluster size N (number of members not dead or left, self included).
#pragma once

#include <cstdint>
#include <string>

#include "gossip/types.h"

namespace oklog::gossip {

enum class Preset : uint8_t { kLan, kLocal };

struct Config {
  // Identity. name and advertise_addr are required.
  NodeName name;
  std::string advertise_addr;  // "host:port" others reach us at (UDP and TCP)
  std::string cluster_name = "oklog";

  // memberlist's knobs (reference/swim.md §1.11).
  Duration probe_interval{1000};
  Duration probe_timeout{500};
  int indirect_checks = 3;
  int suspicion_mult = 4;
  int suspicion_max_timeout_mult = 6;
  int awareness_max_multiplier = 8;
  int retransmit_mult = 4;
  Duration gossip_interval{200};
  int gossip_nodes = 3;
  Duration gossip_to_dead{30000};
  Duration push_pull_interval{30000};
  Duration tcp_timeout{10000};
  bool tcp_fallback_ping = true;
  size_t packet_budget_bytes = 1400;

  // Beyond memberlist.
  Duration join_retry_min{500};    // first seed retry; doubles up to join_retry_max
  Duration join_retry_max{30000};
  int join_sync_rounds = 3;        // digest push/pulls with random members right after joining
  Duration join_sync_interval{500};
  Duration reconnect_interval{5000};  // full push/pull with one random dead member
  Duration dead_retention{3600000};   // dead/left tombstones kept (and reconnected) this long

  // Injected: the seed of every random choice, and the incarnation to start from (the node
  // passes wall-clock seconds, so a restarted node outranks its previous life).
  uint64_t random_seed = 1;
  Incarnation initial_incarnation = 1;

  static Config Lan();
  static Config Local();
  static Config ForPreset(Preset p) { return p == Preset::kLan ? Lan() : Local(); }
};

// Formulas (pure; N = live members including self).
Duration SuspicionMinTimeout(const Config& c, size_t n);  // mult * max(1, log10 N) * interval
Duration SuspicionMaxTimeout(const Config& c, size_t n);  // max_mult * min
int SuspicionConfirmationsNeeded(const Config& c, size_t n);  // K = mult - 2, 0 if N - 2 < K
// Timeout after `confirmations` independent confirmations: decays from max to min as
// log(C+1)/log(K+1).
Duration SuspicionTimeout(Duration min, Duration max, int k, int confirmations);
int RetransmitLimit(const Config& c, size_t n);          // mult * ceil(log10(N+1))
Duration PushPullInterval(const Config& c, size_t n);    // scaled up above 32 members

}  // namespace oklog::gossip
