// Query fan-out (DESIGN.md §8): GET|HEAD /store/query on every node asks every live store peer
// (suspect ones too) with `query.run` (query_messages.h; served by QueryService on each store),
// merges their raw, ULID-sorted streams with duplicates removed while streaming to the client,
// formats the records there (text or JSON, once), and answers OK Log's headers: Nodes-Queried
// and Segments-Queried summed, Max-Data-Set-Size the maximum, Error-Count the peers that failed.
// 206 when any peer failed or did not answer within peer_answer_timeout before the status went
// out, when an answering store knows batches of the range that only stores not asked hold
// (segments/holdings.h: the holdings check), or when at least replication_factor store members
// are dead in the view (their latest batches may be known to nobody asked). A 206 of the
// holdings check names what is missing: X-Oklog-Missing-Nodes (the stores that hold it),
// X-Oklog-Missing-Ranges (RFC3339 FROM/TO pairs, merged, at most 16), X-Oklog-Missing-Records
// (at least that many); X-Oklog-Error-Count counts the missing nodes too (a frozen or cut-off store makes a partial answer after seconds, not a hang); when a peer
// fails after a 200 went out, the answer is cut off (HttpResponse::Abort: no end of the chunked
// body), so no client takes it for complete. 503 "no store nodes available" when the view has
// none. Relative bounds are resolved here once, so every peer scans the same ULID
// range.
//
// Threads: loop thread only. Lifetime: Close() on the loop cancels every peer stream.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/http_server.h"
#include "common/metrics.h"
#include "gossip/peer_view.h"
#include "rpc/rpc_client.h"

namespace oklog {

class QueryFanout {
 public:
  struct Options {
    std::chrono::milliseconds peer_timeout{120000};  // whole answer of one peer
    // Until a peer's first part (its planning stats, sent before it scans): without it the
    // answer goes on without that peer, as a 206.
    std::chrono::milliseconds peer_answer_timeout{5000};
    std::chrono::milliseconds peer_idle_timeout{30000};  // between parts of one peer
    // A peer that let peer_answer_timeout pass without its stats (a blackhole: alive in gossip,
    // silent to queries) is avoided for this long: later queries give it only avoided_answer_timeout
    // for its stats, so it costs one query the full wait, not every query; its first answer in
    // time ends the avoidance. Counted in oklog_query_fanout_peers_avoided_total.
    std::chrono::milliseconds avoid_for{60000};
    std::chrono::milliseconds avoided_answer_timeout{250};
    size_t high_water_bytes = 4 << 20;  // response bytes buffered before merging pauses
    // Stores not reached (dead in the view) that could together hold every copy of a batch
    // written since anyone last saw their holdings: at least this many make the answer a 206.
    size_t replication_factor = 2;
  };
  QueryFanout(gossip::PeerView* view, rpc::RpcClient* client, Options options, Registry* metrics);
  ~QueryFanout();
  // Registers /store/query (replacing a node-local handler registered before).
  void Register(HttpServer* server);
  void Close();

  struct Fan;

 private:
  void Handle(const HttpRequest& req, std::shared_ptr<HttpResponse> resp);
  // Blackholes (see Options::avoid_for), by peer name: steady-clock time the avoidance ends.
  bool Avoided(const std::string& peer, std::chrono::steady_clock::time_point now) const;
  void Avoid(const std::string& peer);
  void Trust(const std::string& peer) { avoided_.erase(peer); }
  std::map<std::string, std::chrono::steady_clock::time_point> avoided_;
  Counter* peers_avoided_ = nullptr;
  gossip::PeerView* view_;
  rpc::RpcClient* client_;
  Options options_;
  bool closed_ = false;
  std::vector<std::weak_ptr<Fan>> fans_;
  Family<Counter>* queries_;
  Counter* peer_errors_;
};

}  // namespace oklog
