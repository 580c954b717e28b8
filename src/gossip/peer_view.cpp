#include "gossip/peer_view.h"

#include <cstdio>

#include "common/json.h"

namespace oklog::gossip {
namespace {

void AppendJsonString(std::string* out, std::string_view s) {
  out->push_back('"');
  AppendJsonEscaped(s, out);
  out->push_back('"');
}

}  // namespace

std::vector<Peer> PeerView::Live(std::string_view role) const {
  std::vector<Peer> out;
  for (const auto& [name, p] : peers_)
    if (p.live() && (role.empty() || p.meta.HasRole(role))) out.push_back(p);
  return out;
}

std::vector<Peer> PeerView::All() const {
  std::vector<Peer> out;
  out.reserve(peers_.size());
  for (const auto& [name, p] : peers_) out.push_back(p);
  return out;
}

const Peer* PeerView::Find(const NodeName& name) const {
  auto it = peers_.find(name);
  return it == peers_.end() ? nullptr : &it->second;
}

uint64_t PeerView::Subscribe(Listener listener) {
  uint64_t id = next_id_++;
  listeners_.emplace(id, std::move(listener));
  return id;
}

void PeerView::Unsubscribe(uint64_t id) { listeners_.erase(id); }

void PeerView::Apply(const MemberEvent& e) {
  Peer p;
  p.name = e.member.name;
  p.addr = e.member.addr;
  p.state = e.member.state;
  p.incarnation = e.member.incarnation;
  p.is_self = e.member.name == self_;
  Result<NodeMeta> meta = DecodeNodeMeta(e.member.meta);
  if (meta.ok()) p.meta = std::move(meta).value();
  if (e.kind == MemberEvent::Kind::kReap) {
    peers_.erase(p.name);
  } else {
    peers_[p.name] = p;
  }
  PeerEvent pe{e.kind, std::move(p)};
  // Copy the ids first: a listener may unsubscribe (itself or others) while we iterate.
  std::vector<uint64_t> ids;
  for (const auto& [id, l] : listeners_) ids.push_back(id);
  for (uint64_t id : ids) {
    auto it = listeners_.find(id);
    if (it != listeners_.end()) it->second(pe);
  }
}

std::string ClusterJson(const PeerView& view) {
  std::string out = "{\"self\":";
  AppendJsonString(&out, view.self_name());
  out += ",\"members\":[";
  bool first = true;
  for (const Peer& p : view.All()) {
    if (!first) out.push_back(',');
    first = false;
    out += "{\"name\":";
    AppendJsonString(&out, p.name);
    out += ",\"addr\":";
    AppendJsonString(&out, p.addr);
    out += ",\"state\":";
    AppendJsonString(&out, MemberStateName(p.state));
    out += ",\"incarnation\":" + std::to_string(p.incarnation);
    out += ",\"roles\":[";
    for (size_t i = 0; i < p.meta.roles.size(); ++i) {
      if (i) out.push_back(',');
      AppendJsonString(&out, p.meta.roles[i]);
    }
    out += "],\"api\":";
    AppendJsonString(&out, p.meta.api_addr);
    out += ",\"disk_full\":[";
    for (size_t i = 0; i < p.meta.full.size(); ++i) {
      if (i) out.push_back(',');
      AppendJsonString(&out, p.meta.full[i]);
    }
    out += "]";
    if (p.meta.HasRole("ingest")) {
      out += ",\"load\":{\"connections\":" + std::to_string(p.meta.load.connections) +
             ",\"unconsumed_bytes\":" + std::to_string(p.meta.load.unconsumed_bytes) +
             ",\"free_bytes\":" + std::to_string(p.meta.load.free_bytes) + "},\"shedding\":";
      AppendJsonString(&out, p.meta.shedding);
    }
    out += "}";
  }
  out += "]}";
  return out;
}

}  // namespace oklog::gossip
