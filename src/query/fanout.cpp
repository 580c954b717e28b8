#include "query/fanout.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <set>

#include "common/duration.h"
#include "common/log.h"
#include "common/ulid.h"
#include "query/matcher.h"
#include "query/query_messages.h"
#include "query/query_params.h"
#include "query/record_sink.h"
#include "segments/record_merge.h"
#include "segments/segment_format.h"

namespace oklog {
namespace {

constexpr size_t kOutChunkBytes = 64 << 10;
// No stored record is longer, LF included (segment_file.cpp refuses to read one that is): a
// peer sending this many bytes without a LF is not sending records.
constexpr size_t kMaxPeerRecordBytes = segment_format::kMaxRecordBytes;

}  // namespace

// ---- fan-out ----

struct QueryFanout::Fan {
  struct PeerStream {
    std::string name;
    uint64_t handle = 0;
    std::string buf;
    size_t pos = 0;
    size_t head_len = 0;  // > 0 while the line at pos is this peer's head in the merge
    size_t scan = 0;      // no LF in buf between pos and here
    size_t tail = 0;      // bytes after the last LF received: the record still arriving
    // Record bytes as offsets from this peer's first: dropped from the front of buf, and
    // credited to the RPC (merged, or credited ahead for a record longer than what came).
    uint64_t erased = 0, credited = 0;
    bool stats = false, ended = false, failed = false, exhausted = false;
    bool avoided = false;  // asked with the short answer timeout of an avoided peer
    Status rejected;  // set when we end the peer's answer for breaking query.run's format
    QueryRunStats st;
  };
  QueryFanout* owner;
  std::shared_ptr<HttpResponse> resp;
  std::vector<PeerStream> peers;
  bool head = false;
  OutputFormat format = OutputFormat::kText;
  std::optional<uint64_t> limit;
  uint64_t emitted = 0;
  bool headers_sent = false, finished = false, waiting_drain = false;
  bool partial = false;  // the status that went out was 206
  MergeByUlid merge;  // one head per peer with a complete line; ordered like the request
  std::string out;
  HttpResponse::Headers base_headers;
  std::chrono::steady_clock::time_point t0;
  Ulid from, to;
  std::vector<std::string> dead_stores;  // store members dead in the view when the query began

  // Credits peer p's record bytes up to `offset` (from its first record byte). Memory per peer
  // stays within the RPC window of uncredited bytes plus the one record being received,
  // which on_chunk bounds by kMaxPeerRecordBytes.
  void CreditTo(PeerStream& p, uint64_t offset) {
    if (offset <= p.credited) return;
    if (p.handle && !p.ended && !p.failed) owner->client_->Consume(p.handle, offset - p.credited);
    p.credited = offset;
  }

  // Peer i's answer breaks query.run's format: it ends here, counted as this peer's error (the
  // answer is a 206 when its headers have not gone out yet, else it is cut off).
  void Reject(size_t i, const Status& why) {
    PeerStream& p = peers[i];
    Logger("query")->warn("query.run on {}: {}", p.name, why.ToString());
    p.rejected = why;
    owner->client_->Cancel(p.handle);  // on_end runs now, and reports `why`
  }

  void CancelAll() {
    for (auto& p : peers)
      if (!p.ended && !p.failed && p.handle) owner->client_->Cancel(p.handle);
  }

  void Finish() {
    if (finished) return;
    finished = true;
    if (!out.empty()) resp->Write(std::move(out));
    out.clear();
    resp->Finish();
    CancelAll();
  }

  void SendHeaders() {
    uint64_t nodes = 0, segments = 0, max_size = 0, errors = 0, skipped_blocks = 0, skipped_records = 0;
    std::string content_type =
        format == OutputFormat::kJson ? "application/x-ndjson" : "text/plain; charset=utf-8";
    for (auto& p : peers) {
      // A peer that failed after its stats (before these headers) sent only part of its
      // records: an error too, or the answer would claim to be whole.
      if (p.failed) ++errors;
      if (!p.stats) continue;
      nodes += std::max<uint64_t>(1, p.st.nodes);
      segments += p.st.segments;
      max_size = std::max(max_size, p.st.max_data_set_size);
      errors += p.st.errors;
      // A store that stepped over bad blocks no asked store holds good copies of answered only
      // part of its range: one error per such store, and the blocks named.
      if (p.st.skipped_blocks > 0) ++errors;
      skipped_blocks += p.st.skipped_blocks;
      skipped_records += p.st.skipped_records;
    }
    // The holdings check: batches some answering store knows that only stores not asked hold.
    std::map<BatchId, uint64_t> missing;
    std::set<std::string> missing_nodes;
    uint64_t reported = 0;
    for (auto& p : peers) {
      if (!p.stats) continue;
      reported = std::max(reported, p.st.missing_total);
      for (const MissingBatch& m : p.st.missing) {
        missing[m.batch] = std::max(missing[m.batch], m.records);
        missing_nodes.insert(m.holders.begin(), m.holders.end());
      }
    }
    std::vector<std::pair<Ulid, Ulid>> ranges;
    for (const auto& [b, n] : missing) {
      if (!ranges.empty() && b.low <= ranges.back().second) {
        ranges.back().second = std::max(ranges.back().second, b.high);
      } else {
        ranges.emplace_back(b.low, b.high);
      }
    }
    if (dead_stores.size() >= std::max<size_t>(1, owner->options_.replication_factor)) {
      // Every copy of a batch written after their holdings were last seen may be on them.
      missing_nodes.insert(dead_stores.begin(), dead_stores.end());
      ranges = {{from, to}};
    }
    HttpResponse::Headers h = base_headers;
    if (!missing_nodes.empty()) {
      std::string nodes_list, ranges_list;
      for (const std::string& n : missing_nodes) nodes_list += (nodes_list.empty() ? "" : ",") + n;
      for (size_t i = 0; i < ranges.size() && i < 16; ++i)
        ranges_list += (i ? "," : "") + FormatRfc3339(std::max(ranges[i].first, from).unix_ms()) + "/" +
                       FormatRfc3339(std::min(ranges[i].second, to).unix_ms());
      uint64_t records = 0;
      for (const auto& [b, n] : missing) records += n;
      h.push_back({"X-Oklog-Missing-Nodes", nodes_list});
      h.push_back({"X-Oklog-Missing-Ranges", ranges_list});
      h.push_back({"X-Oklog-Missing-Records", std::to_string(records)});
      errors += missing_nodes.size();
      owner->queries_->With({"missing"})->Inc();
      Logger("query")->warn("partial answer: records of {} batch(es) (at least {} known) held only by {} not reached",
                            missing.size(), std::max<uint64_t>(reported, missing.size()), nodes_list);
    }
    if (skipped_blocks > 0) {
      h.push_back({"X-Oklog-Skipped-Blocks", std::to_string(skipped_blocks)});
      h.push_back({"X-Oklog-Skipped-Records", std::to_string(skipped_records)});
      owner->queries_->With({"skipped_blocks"})->Inc();
      Logger("query")->warn("partial answer: {} bad block(s) ({} records) skipped by the stores asked", skipped_blocks,
                            skipped_records);
    }
    h.push_back({"Content-Type", content_type});
    h.push_back({"X-Oklog-Nodes-Queried", std::to_string(nodes)});
    h.push_back({"X-Oklog-Segments-Queried", std::to_string(segments)});
    h.push_back({"X-Oklog-Max-Data-Set-Size", std::to_string(max_size)});
    h.push_back({"X-Oklog-Error-Count", std::to_string(errors)});
    h.push_back({"X-Oklog-Duration", FormatDuration(std::chrono::steady_clock::now() - t0)});
    partial = errors > 0;
    resp->Start(partial ? 206 : 200, h);
    headers_sent = true;
  }

  // Merges whatever can be merged now: a line goes out only when every open stream has a
  // complete line to compare it with.
  void Pump() {
    if (finished) return;
    if (!headers_sent) {
      for (auto& p : peers)
        if (!p.stats && !p.failed) return;
      SendHeaders();
      if (head) return Finish();
    }
    if (resp->closed()) {
      finished = true;
      CancelAll();
      return;
    }
    // Peers send raw records, so the merge key is the leading ULID; formatting happens once,
    // here at the edge, as records leave the merge.
    for (;;) {
      if (limit && emitted >= *limit) return Finish();
      bool waiting = false;
      for (size_t i = 0; i < peers.size(); ++i) {
        PeerStream& p = peers[i];
        if (p.exhausted || p.head_len) continue;
        size_t nl = p.buf.find('\n', std::max(p.pos, p.scan));
        if (nl == std::string::npos) {
          if (p.ended || p.failed) {
            p.exhausted = true;
            continue;
          }
          // Wait for this peer: its next line may come first. Everything it sent is that one
          // line, which the merge needs whole: credit it now, or a record longer than the
          // window would stall the answer (the store waiting for credit, we for its LF).
          p.scan = p.buf.size();
          CreditTo(p, p.erased + p.buf.size());
          waiting = true;
          continue;
        }
        p.head_len = nl + 1 - p.pos;
        merge.Offer(i, std::string_view(p.buf).substr(p.pos, p.head_len));
      }
      if (waiting) return;
      if (merge.empty()) return Finish();
      PeerStream& p = peers[merge.Pop().source];
      std::string_view line(p.buf.data() + p.pos, p.head_len);
      p.head_len = 0;
      if (merge.Accept(line)) {
        AppendFormatted(line, format, &out);
        ++emitted;
      }
      p.pos += line.size();
      CreditTo(p, p.erased + p.pos);
      if (p.pos >= (1u << 20)) {
        p.buf.erase(0, p.pos);
        p.erased += p.pos;
        p.scan = p.scan > p.pos ? p.scan - p.pos : 0;
        p.pos = 0;
      }
      if (out.size() >= kOutChunkBytes) {
        resp->Write(std::move(out));
        out.clear();
        if (resp->buffered_bytes() > owner->options_.high_water_bytes) {
          waiting_drain = true;
          return;  // OnDrain resumes
        }
      }
    }
  }

  // A peer failed after a 200 went out: the records merged so far go, then the body is cut off.
  void AbortAnswer(const std::string& peer, const Status& why) {
    finished = true;
    owner->queries_->With({"cut_off"})->Inc();
    Logger("query")->warn("cutting off a 200 answer: store {} failed mid-stream: {}", peer, why.ToString());
    if (!out.empty()) resp->Write(std::move(out));
    out.clear();
    resp->Abort("store " + peer + " failed: " + why.message());
    CancelAll();
  }

  // Pump, then flush a partial output chunk when merging has to wait for a peer.
  void PumpAndFlush() {
    Pump();
    if (!finished && headers_sent && !out.empty() && !waiting_drain) {
      resp->Write(std::move(out));
      out.clear();
      // A slow client: stop consuming the peers' parts (their windows then stop them) until
      // the response drains. (Unchecked here, a slow client made the node buffer without bound.)
      if (resp->buffered_bytes() > owner->options_.high_water_bytes) waiting_drain = true;
    }
  }
};

QueryFanout::QueryFanout(gossip::PeerView* view, rpc::RpcClient* client, Options options, Registry* metrics)
    : view_(view), client_(client), options_(options) {
  queries_ = metrics->NewCounterFamily("oklog_query_fanout_queries_total", "Fanned-out queries by result.", {"result"});
  peer_errors_ = metrics->NewCounter("oklog_query_fanout_peer_errors_total", "Store peers that failed a fanned-out query.");
  peers_avoided_ = metrics->NewCounter("oklog_query_fanout_peers_avoided_total",
                                       "Store peers that sent no stats within the answer timeout, then avoided a while.");
}

QueryFanout::~QueryFanout() { Close(); }

void QueryFanout::Register(HttpServer* server) {
  server->Handle("/store/query", [this](const HttpRequest& req, std::shared_ptr<HttpResponse> resp) { Handle(req, resp); });
}

void QueryFanout::Close() {
  if (closed_) return;
  closed_ = true;
  for (auto& w : fans_)
    if (auto f = w.lock()) {
      f->finished = true;
      f->CancelAll();
      if (!f->resp->closed()) f->resp->Finish();
    }
  fans_.clear();
}

void QueryFanout::Handle(const HttpRequest& req, std::shared_ptr<HttpResponse> resp) {
  if (req.path != "/store/query") return resp->Send(404, "404 page not found\n");
  if (req.method != "GET" && req.method != "HEAD") {
    resp->Start(405, {{"Allow", "GET, HEAD"}, {"Content-Type", "text/plain; charset=utf-8"}});
    resp->Write("method not allowed\n");
    resp->Finish();
    return;
  }
  if (closed_) return resp->Send(503, "shutting down\n");
  Result<QueryParams> params = ParseQueryParams(req.params, NowUnixMs());
  if (!params.ok()) {
    queries_->With({"bad_request"})->Inc();
    return resp->Send(400, params.status().message() + "\n");
  }
  const QueryParams& p = *params;
  MatchSpec spec{p.q, p.mode, p.topics};
  Result<std::unique_ptr<Matcher>> matcher = Matcher::Create(spec);  // a bad regex is a 400 here too
  if (!matcher.ok()) {
    queries_->With({"bad_request"})->Inc();
    return resp->Send(400, matcher.status().message() + "\n");
  }
  std::vector<gossip::Peer> stores = view_->Live("store");
  if (stores.empty()) {
    queries_->With({"no_store"})->Inc();
    return resp->Send(503, "no store nodes available\n");
  }
  const bool head = req.method == "HEAD" || resp->is_head();
  // The same exact range for every peer.
  QueryRunRequest run;
  run.kind = head ? QueryRunKind::kStatsOnly : QueryRunKind::kRecords;
  run.from = p.from;
  run.to = p.to;
  run.q = p.q;
  run.mode = p.mode;
  run.topics = p.topics;
  run.limit = p.limit;
  run.asked.emplace();
  for (const gossip::Peer& s : stores) run.asked->push_back(s.name);
  const std::string request = EncodeQueryRunRequest(run);

  auto fan = std::make_shared<Fan>();
  fan->owner = this;
  fan->resp = resp;
  fan->head = head;
  fan->format = p.format;
  fan->merge = MergeByUlid(p.order() == ScanOrder::kDescending ? MergeByUlid::Order::kDescending
                                                               : MergeByUlid::Order::kAscending);
  fan->limit = p.limit;
  fan->t0 = std::chrono::steady_clock::now();
  fan->from = p.from;
  fan->to = p.to;
  for (const gossip::Peer& m : view_->All())
    if (m.state == gossip::MemberState::kDead && m.meta.HasRole("store")) fan->dead_stores.push_back(m.name);
  fan->base_headers = {{"X-Oklog-From", FormatRfc3339(p.from.unix_ms())},
                       {"X-Oklog-To", FormatRfc3339(p.to.unix_ms())},
                       {"X-Oklog-Q", p.q},
                       {"X-Oklog-Regex", p.mode == MatchMode::kRegex ? "true" : "false"}};
  fan->peers.resize(stores.size());
  fans_.erase(std::remove_if(fans_.begin(), fans_.end(), [](auto& w) { return w.expired(); }), fans_.end());
  fans_.push_back(fan);
  std::weak_ptr<Fan> weak = fan;
  resp->OnClose([weak] {
    if (auto f = weak.lock()) {
      if (!f->finished) {
        f->finished = true;
        f->CancelAll();
      }
    }
  });
  // The drain callback owns the fan: when the last peer stream ends while the merge waits for
  // the client, nothing else holds the fan, and only this callback can finish the answer (held
  // weakly, the answer never ended). The cycle fan -> resp -> callback -> fan ends with the
  // response: End() drops its callbacks.
  resp->OnDrain([fan] {
    fan->waiting_drain = false;
    fan->PumpAndFlush();
  });
  const auto now = std::chrono::steady_clock::now();
  for (size_t i = 0; i < stores.size(); ++i) {
    fan->peers[i].name = stores[i].name;
    rpc::RpcClient::StreamOptions so;
    so.timeout = options_.peer_timeout;
    so.idle_timeout = options_.peer_idle_timeout;
    fan->peers[i].avoided = Avoided(stores[i].name, now);
    so.first_part_timeout = fan->peers[i].avoided ? options_.avoided_answer_timeout : options_.peer_answer_timeout;
    so.credit = rpc::RpcClient::Credit::kManual;
    rpc::RpcClient::StreamHandlers h;
    h.on_chunk = [fan, i](std::string part) {
      auto& ps = fan->peers[i];
      if (!ps.stats) {
        fan->owner->client_->Consume(ps.handle, part.size());
        Result<QueryRunStats> st = DecodeQueryRunStats(part);
        // A peer that does not speak query.run v1: an error for this answer, not a crash.
        if (!st.ok()) return fan->Reject(i, st.status());
        ps.stats = true;
        ps.st = *st;
        fan->owner->Trust(ps.name);
      } else {
        const size_t lf = part.rfind('\n');
        ps.tail = lf == std::string::npos ? ps.tail + part.size() : part.size() - lf - 1;
        if (ps.tail >= kMaxPeerRecordBytes)
          return fan->Reject(i, Status::Corruption("a record longer than " + std::to_string(kMaxPeerRecordBytes) +
                                                   " bytes (no LF)"));
        ps.buf.append(part);
      }
      if (!fan->waiting_drain) fan->PumpAndFlush();
    };
    h.on_end = [fan, i](const Status& end) {
      auto& ps = fan->peers[i];
      const Status s = ps.rejected.ok() ? end : ps.rejected;
      ps.ended = true;
      if (fan->finished) return;  // we cancelled it (limit reached, client gone)
      if (!s.ok() || !ps.stats) {
        ps.failed = true;
        fan->owner->peer_errors_->Inc();
        // Only a full wait starts an avoidance: its end brings the full wait back, so a peer
        // that is slow rather than gone is not left out for good.
        if (!ps.stats && !ps.avoided && s.code() == Code::kTimedOut) fan->owner->Avoid(ps.name);
        Logger("query")->warn("query.run on {} failed: {}", ps.name, s.ok() ? "no stats" : s.ToString());
        if (fan->headers_sent && !fan->partial && !fan->head)
          return fan->AbortAnswer(ps.name, s.ok() ? Status::Corruption("no stats") : s);
      }
      if (!fan->waiting_drain) fan->PumpAndFlush();
    };
    const uint64_t handle = client_->Stream(stores[i].addr, kQueryRun, request, so, std::move(h));
    if (handle != 0 && !fan->peers[i].ended) fan->peers[i].handle = handle;
  }
  queries_->With({head ? "stats" : "ok"})->Inc();
  if (!fan->waiting_drain) fan->PumpAndFlush();
}

bool QueryFanout::Avoided(const std::string& peer, std::chrono::steady_clock::time_point now) const {
  auto it = avoided_.find(peer);
  return it != avoided_.end() && now < it->second;
}

void QueryFanout::Avoid(const std::string& peer) {
  peers_avoided_->Inc();
  Logger("query")->warn("{} sent no stats within the answer timeout: queries wait {} ms for it for the next {} s", peer,
                        options_.avoided_answer_timeout.count(), options_.avoid_for.count() / 1000);
  avoided_[peer] = std::chrono::steady_clock::now() + options_.avoid_for;
}

}  // namespace oklog
