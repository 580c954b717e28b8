#include "gossip/config.h"

#include <algorithm>
#include <cmath>

namespace oklog::gossip {

std::string_view MemberStateName(MemberState s) {
  switch (s) {
    case MemberState::kAlive: return "alive";
    case MemberState::kSuspect: return "suspect";
    case MemberState::kDead: return "dead";
    case MemberState::kLeft: return "left";
  }
  return "?";
}

std::string_view EventKindName(MemberEvent::Kind k) {
  switch (k) {
    case MemberEvent::Kind::kJoin: return "join";
    case MemberEvent::Kind::kUpdate: return "update";
    case MemberEvent::Kind::kSuspect: return "suspect";
    case MemberEvent::Kind::kRecover: return "recover";
    case MemberEvent::Kind::kDead: return "dead";
    case MemberEvent::Kind::kLeft: return "left";
    case MemberEvent::Kind::kReap: return "reap";
  }
  return "?";
}

Config Config::Lan() { return Config{}; }

Config Config::Local() {
  Config c;
  c.tcp_timeout = Duration(1000);
  c.probe_interval = Duration(1000);
  c.probe_timeout = Duration(200);
  c.indirect_checks = 1;
  c.suspicion_mult = 3;
  c.retransmit_mult = 2;
  c.gossip_interval = Duration(100);
  c.gossip_to_dead = Duration(15000);
  c.push_pull_interval = Duration(15000);
  return c;
}

Duration SuspicionMinTimeout(const Config& c, size_t n) {
  double node_scale = std::max(1.0, std::log10(std::max<double>(1.0, static_cast<double>(n))));
  double ms = c.suspicion_mult * node_scale * static_cast<double>(c.probe_interval.count());
  return Duration(static_cast<int64_t>(ms));
}

Duration SuspicionMaxTimeout(const Config& c, size_t n) {
  return SuspicionMinTimeout(c, n) * c.suspicion_max_timeout_mult;
}

int SuspicionConfirmationsNeeded(const Config& c, size_t n) {
  int k = c.suspicion_mult - 2;
  if (static_cast<int64_t>(n) - 2 < k) k = 0;
  return std::max(0, k);
}

Duration SuspicionTimeout(Duration min, Duration max, int k, int confirmations) {
  if (k <= 0) return min;
  double frac = std::log(static_cast<double>(confirmations) + 1.0) / std::log(static_cast<double>(k) + 1.0);
  double ms = static_cast<double>(max.count()) - frac * static_cast<double>((max - min).count());
  return std::max(min, Duration(static_cast<int64_t>(std::floor(ms))));
}

int RetransmitLimit(const Config& c, size_t n) {
  int scale = static_cast<int>(std::ceil(std::log10(static_cast<double>(n) + 1.0)));
  return c.retransmit_mult * std::max(1, scale);
}

Duration PushPullInterval(const Config& c, size_t n) {
  constexpr size_t kScaleThreshold = 32;
  if (n <= kScaleThreshold) return c.push_pull_interval;
  double mult = std::ceil(std::log2(static_cast<double>(n)) - std::log2(static_cast<double>(kScaleThreshold))) + 1.0;
  return c.push_pull_interval * static_cast<int64_t>(mult);
}

}  // namespace oklog::gossip
