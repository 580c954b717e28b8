// Vocabulary of the gossip layer: member identity, states, time. Value types only.
//
// Identity is the node name; the address ("host:port", the advertised cluster address, used for
// both UDP and TCP) is an attribute that may change when a node restarts elsewhere.
// Incarnations are 64-bit and only the node itself raises its own; everybody else only ever
// raises its stored copy on higher evidence (never lowers it), which is what stops a stale
// `alive` from resurrecting a node that higher-incarnation failure evidence has killed.
// Incarnations are bounded (kMaxIncarnation, kMaxIncarnationStep below), so none ever wraps.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace oklog::gossip {

// Aliases rather than wrapper structs: names are map keys everywhere and the wire decoder fills
// them directly. The distinct spelling still says what a parameter is.
using NodeName = std::string;
using Incarnation = uint64_t;

// No incarnation above kMaxIncarnation is accepted from the network or produced here; an
// accusation (suspect, dead, leave) must be below it, so the accused can always outrank it
// (refuting an accusation at kMaxIncarnation - 1 gives kMaxIncarnation). News about a known node
// may raise what we know of it by at most kMaxIncarnationStep at once: a node starts at
// wall-clock seconds (< 2^32 until 2106) and adds one per refutation or metadata change, so any
// honest jump is far smaller, while a forger needs 2^31 accepted jumps to reach the ceiling.
inline constexpr Incarnation kMaxIncarnation = Incarnation{1} << 63;
inline constexpr Incarnation kMaxIncarnationStep = Incarnation{1} << 32;
static_assert(kMaxIncarnation + kMaxIncarnationStep > kMaxIncarnation, "known + step never wraps");

// Monotonic milliseconds from an arbitrary origin: uv_now() in the node, virtual in the simulator.
using Duration = std::chrono::milliseconds;
struct GossipClock {
  using duration = Duration;
  using rep = duration::rep;
  using period = duration::period;
  using time_point = std::chrono::time_point<GossipClock, Duration>;
  static constexpr bool is_steady = true;
};
using Instant = GossipClock::time_point;

enum class MemberState : uint8_t { kAlive = 0, kSuspect = 1, kDead = 2, kLeft = 3 };
std::string_view MemberStateName(MemberState s);  // "alive", "suspect", "dead", "left"

// One member as the local node sees it.
struct MemberInfo {
  NodeName name;
  std::string addr;  // advertised "host:port"
  std::string meta;  // opaque bytes, at most kMaxMetaBytes (see wire.h)
  Incarnation incarnation = 0;
  MemberState state = MemberState::kAlive;
  Instant state_change{};
};

// What changed about a member, emitted by Membership in the order it happened.
struct MemberEvent {
  enum class Kind : uint8_t {
    kJoin,     // new, or back from dead/left
    kUpdate,   // still alive, metadata or address changed
    kSuspect,  // alive -> suspect
    kRecover,  // suspect -> alive (refuted)
    kDead,
    kLeft,
    kReap,  // a dead/left entry was forgotten
  };
  Kind kind;
  MemberInfo member;
};
std::string_view EventKindName(MemberEvent::Kind k);

}  // namespace oklog::gossip
