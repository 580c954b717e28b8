// query.run end to end inside one process: store nodes (StoreLog + QueryService + RpcServer on
// 127.0.0.1:0) answering a real RpcClient and a QueryFanout behind a real HTTP server, all on
// one loop thread; plus the query.run message codecs against damaged bytes.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <random>
#include <thread>

#include "common/http_server.h"
#include "loop_util.h"
#include "gossip/peer_view.h"
#include "query/fanout.h"
#include "query/query_api.h"
#include "query/query_messages.h"
#include "query/query_test_util.h"
#include "test_util.h"
#include "rpc/rpc_client.h"
#include "rpc/rpc_server.h"
#include "segments/segment_format.h"

namespace oklog {
namespace {

using testing::Curl;
using testing::Header;
using testing::HttpResult;
using testing::MakeRecord;
using testing::TempDir;
using testing::TestRecord;
using testing::WriteSegment;

constexpr uint64_t kBaseMs = 1700000000000;

// ---- codecs ----

QueryRunRequest SampleRequest() {
  QueryRunRequest r;
  r.kind = QueryRunKind::kRecords;
  r.from = Ulid::MinAt(kBaseMs);
  r.to = Ulid::MaxAt(kBaseMs + 5000);
  r.q = "status=5\xff\x00x";
  r.mode = MatchMode::kRegex;
  r.topics = {"api", "web"};
  r.limit = 42;
  return r;
}

TEST(QueryMessagesTest, RequestAndStatsRoundTrip) {
  QueryRunRequest r = SampleRequest();
  Result<QueryRunRequest> d = DecodeQueryRunRequest(EncodeQueryRunRequest(r));
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->kind, r.kind);
  EXPECT_EQ(d->from, r.from);
  EXPECT_EQ(d->to, r.to);
  EXPECT_EQ(d->q, r.q);
  EXPECT_EQ(d->mode, r.mode);
  EXPECT_EQ(d->topics, r.topics);
  EXPECT_EQ(d->limit, r.limit);
  r.limit.reset();
  r.topics.clear();
  r.kind = QueryRunKind::kStatsOnly;
  d = DecodeQueryRunRequest(EncodeQueryRunRequest(r));
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_FALSE(d->limit.has_value());
  EXPECT_TRUE(d->topics.empty());
  EXPECT_EQ(d->kind, QueryRunKind::kStatsOnly);

  QueryRunStats s{3, 17, 1ull << 40, 1};
  s.skipped_blocks = 2;
  s.skipped_records = 1234;
  Result<QueryRunStats> ds = DecodeQueryRunStats(EncodeQueryRunStats(s));
  ASSERT_TRUE(ds.ok()) << ds.status().ToString();
  EXPECT_EQ(ds->nodes, 3u);
  EXPECT_EQ(ds->segments, 17u);
  EXPECT_EQ(ds->max_data_set_size, 1ull << 40);
  EXPECT_EQ(ds->errors, 1u);
  EXPECT_EQ(ds->skipped_blocks, 2u);
  EXPECT_EQ(ds->skipped_records, 1234u);
}

TEST(QueryMessagesTest, EveryTruncationIsCorruption) {
  std::string req = EncodeQueryRunRequest(SampleRequest());
  for (size_t n = 0; n < req.size(); ++n)
    EXPECT_EQ(DecodeQueryRunRequest(req.substr(0, n)).status().code(), Code::kCorruption) << n;
  std::string st = EncodeQueryRunStats({1, 2, 3, 4});
  for (size_t n = 0; n < st.size(); ++n)
    EXPECT_EQ(DecodeQueryRunStats(st.substr(0, n)).status().code(), Code::kCorruption) << n;
  EXPECT_EQ(DecodeQueryRunRequest(req + "x").status().code(), Code::kCorruption);  // trailing bytes
}

TEST(QueryMessagesTest, OversizeFieldsAndUnknownValuesAreCorruption) {
  QueryRunRequest r = SampleRequest();
  r.q.assign(kMaxQueryTermBytes + 1, 'a');
  EXPECT_EQ(DecodeQueryRunRequest(EncodeQueryRunRequest(r)).status().code(), Code::kCorruption);
  r = SampleRequest();
  r.topics.assign(kMaxQueryTopics + 1, "t");
  EXPECT_EQ(DecodeQueryRunRequest(EncodeQueryRunRequest(r)).status().code(), Code::kCorruption);
  r = SampleRequest();
  r.topics = {std::string(kMaxQueryTopicBytes + 1, 't')};
  EXPECT_EQ(DecodeQueryRunRequest(EncodeQueryRunRequest(r)).status().code(), Code::kCorruption);
  r = SampleRequest();
  r.topics = {""};
  EXPECT_EQ(DecodeQueryRunRequest(EncodeQueryRunRequest(r)).status().code(), Code::kCorruption);
  // Byte 1 is the version (a fixint after the array header), byte 2 the kind, and the mode
  // follows q: damage each to a value no version of this codec defines.
  std::string req = EncodeQueryRunRequest(SampleRequest());
  std::string bad = req;
  bad[1] = 2;
  EXPECT_EQ(DecodeQueryRunRequest(bad).status().code(), Code::kCorruption);
  bad = req;
  bad[2] = 7;
  EXPECT_EQ(DecodeQueryRunRequest(bad).status().code(), Code::kCorruption);
  // The old text request ("GET\n" + query string) is refused, not misread.
  EXPECT_EQ(DecodeQueryRunRequest("GET\nq=x").status().code(), Code::kCorruption);
  EXPECT_EQ(DecodeQueryRunStats("status 200\nX-Oklog-Nodes-Queried: 1\n").status().code(), Code::kCorruption);
}

TEST(QueryMessagesTest, RandomAndFlippedBytesNeverCrash) {
  std::mt19937 rng(7);
  std::string req = EncodeQueryRunRequest(SampleRequest());
  size_t ok = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string b = req;
    b[rng() % b.size()] = static_cast<char>(rng());
    if (DecodeQueryRunRequest(b).ok()) ++ok;
    std::string noise(rng() % 64, '\0');
    for (char& c : noise) c = static_cast<char>(rng());
    (void)DecodeQueryRunRequest(noise);
    (void)DecodeQueryRunStats(noise);
  }
  EXPECT_LT(ok, 20000u);  // most flips are caught; the rest decode to some valid request
}

// ---- the store side and the fan-out, over real sockets ----

struct StoreNode {
  std::unique_ptr<StoreLog> store;
  std::unique_ptr<QueryService> service;
  std::unique_ptr<rpc::RpcServer> rpc;
  std::string addr;
};

struct RunResult {
  Status status;
  std::vector<std::string> parts;
  std::string Records() const {
    std::string out;
    for (size_t i = 1; i < parts.size(); ++i) out += parts[i];
    return out;
  }
};

class QueryRunTest : public ::testing::Test {
 protected:
  void TearDown() override {
    loop_.Stop([this] {
      if (fanout_) fanout_->Close();
      if (http_) http_->Close();
      if (client_) client_->Close();
      for (auto& n : nodes_) {
        n->service->Close();
        n->rpc->Close();
      }
    });
    for (auto& n : nodes_) EXPECT_TRUE(n->service->done());
  }

  // A store node with its own StoreLog; write segments into node->store before Start().
  StoreNode* AddStore(QueryService::Options options = {}, StoreLogOptions store_options = {}) {
    auto node = std::make_unique<StoreNode>();
    auto s = StoreLog::Open(dir_.path() + "/store" + std::to_string(nodes_.size()), store_options, &metrics_);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    node->store = std::move(s).value();
    options.now_ms = [] { return kBaseMs + 3600 * 1000; };
    auto service = QueryService::Create(loop_.loop(), node->store.get(), options, &metrics_);
    EXPECT_TRUE(service.ok()) << service.status().ToString();
    node->service = std::move(service).value();
    node->rpc = rpc::RpcServer::Create(loop_.loop(), {"test", "store" + std::to_string(nodes_.size())}, &metrics_);
    EXPECT_TRUE(node->rpc->Listen("127.0.0.1:0").ok());
    node->addr = "127.0.0.1:" + std::to_string(node->rpc->port());
    node->service->Serve(node->rpc.get());
    nodes_.push_back(std::move(node));
    return nodes_.back().get();
  }

  // Starts the loop thread, with a fan-out node whose view holds every store added (plus
  // extra_peers, cluster addresses of stores that may not answer).
  void Start(std::vector<std::string> extra_peers = {}) {
    client_ = rpc::RpcClient::Create(loop_.loop(), {"test", "fanout"}, &metrics_);
    auto http = HttpServer::Create(loop_.loop(), Address{"tcp", "127.0.0.1", 0}, HttpServer::Options{}, &metrics_);
    ASSERT_TRUE(http.ok()) << http.status().ToString();
    http_ = std::move(http).value();
    std::vector<std::string> peers;
    for (auto& n : nodes_) peers.push_back(n->addr);
    for (auto& p : extra_peers) peers.push_back(p);
    for (size_t i = 0; i < peers.size(); ++i) {
      gossip::MemberEvent e;
      e.kind = gossip::MemberEvent::Kind::kJoin;
      e.member.name = "peer" + std::to_string(i);
      e.member.addr = peers[i];
      gossip::NodeMeta meta;
      meta.roles = {"store"};
      e.member.meta = *gossip::EncodeNodeMeta(meta);
      view_.Apply(e);
    }
    fanout_ = std::make_unique<QueryFanout>(&view_, client_.get(), fanout_options_, &metrics_);
    fanout_->Register(http_.get());
    base_ = "http://127.0.0.1:" + std::to_string(http_->port());
    loop_.Start();
  }

  void Post(std::function<void()> fn) { loop_.Post(std::move(fn)); }
  template <typename T>
  T OnLoop(std::function<T()> fn) {
    return loop_.Run(std::move(fn));
  }

  // Sends query.run with `body` to addr and collects every part until the end.
  RunResult Run(const std::string& addr, std::string body) {
    std::promise<RunResult> done;
    auto result = std::make_shared<RunResult>();
    Post([&, result, body = std::move(body)]() mutable {
      rpc::RpcClient::StreamOptions so;
      so.timeout = std::chrono::milliseconds(30000);
      rpc::RpcClient::StreamHandlers h;
      h.on_chunk = [result](std::string part) { result->parts.push_back(std::move(part)); };
      h.on_end = [result, &done](const Status& s) {
        result->status = s;
        done.set_value(*result);
      };
      client_->Stream(addr, kQueryRun, std::move(body), so, std::move(h));
    });
    return done.get_future().get();
  }

  // A query.run left open: manual credit, nothing consumed, so the store stops at its window.
  uint64_t OpenStalled(const std::string& addr, const std::string& body, std::shared_ptr<RunResult> result,
                       std::shared_ptr<std::promise<void>> ended) {
    return OnLoop<uint64_t>([&] {
      rpc::RpcClient::StreamOptions so;
      so.timeout = std::chrono::milliseconds(30000);
      so.credit = rpc::RpcClient::Credit::kManual;
      rpc::RpcClient::StreamHandlers h;
      h.on_chunk = [result](std::string part) { result->parts.push_back(std::move(part)); };
      h.on_end = [result, ended](const Status& s) {
        result->status = s;
        ended->set_value();
      };
      return client_->Stream(addr, kQueryRun, body, so, std::move(h));
    });
  }

  double Metric(const std::string& series) {
    return SeriesValue(OnLoop<std::string>([&] { return metrics_.Render(); }), series);
  }

  bool WaitFor(const std::function<bool()>& pred, int timeout_ms = 20000) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (!pred()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return true;
  }

  HttpResult Get(const std::string& path_and_query) { return Curl(dir_.path(), "'" + base_ + path_and_query + "'"); }

  static QueryRunRequest All() {
    QueryRunRequest r;
    r.from = Ulid::MinAt(kBaseMs);
    r.to = Ulid::MaxAt(kBaseMs + 3600 * 1000);
    return r;
  }

  // Records 0..n-1, one per millisecond, topics alternating, "line i" with every 7th "error".
  static std::vector<TestRecord> Records(size_t lo, size_t hi) {
    std::vector<TestRecord> out;
    for (size_t i = lo; i < hi; ++i)
      out.push_back(MakeRecord(kBaseMs + i, i, i % 2 ? "web" : "api",
                               "line " + std::to_string(i) + (i % 7 == 0 ? " error" : " ok")));
    return out;
  }
  static std::string Text(const std::vector<TestRecord>& recs, const std::function<bool(size_t)>& keep) {
    std::string out;
    for (size_t i = 0; i < recs.size(); ++i)
      if (keep(i)) out += recs[i].text;
    return out;
  }

  Registry metrics_;
  TempDir dir_;
  testing::LoopThread loop_;  // declared before what lives on it: destroyed after it
  std::vector<std::unique_ptr<StoreNode>> nodes_;
  gossip::PeerView view_{"fanout"};
  std::unique_ptr<rpc::RpcClient> client_;
  std::unique_ptr<HttpServer> http_;
  std::unique_ptr<QueryFanout> fanout_;
  QueryFanout::Options fanout_options_;
  std::string base_;
};

TEST_F(QueryRunTest, AnswersStatsThenRawRecordsInOrderFromOverlappingSegments) {
  StoreNode* s = AddStore();
  auto recs = Records(0, 300);
  WriteSegment(s->store.get(), {recs.begin(), recs.begin() + 150});
  WriteSegment(s->store.get(), {recs.begin() + 100, recs.begin() + 200});  // overlaps both
  WriteSegment(s->store.get(), {recs.begin() + 150, recs.end()});
  Start();
  QueryRunRequest r = All();
  r.q = "error";
  RunResult got = Run(s->addr, EncodeQueryRunRequest(r));
  ASSERT_TRUE(got.status.ok()) << got.status.ToString();
  ASSERT_GE(got.parts.size(), 1u);
  Result<QueryRunStats> st = DecodeQueryRunStats(got.parts[0]);
  ASSERT_TRUE(st.ok()) << st.status().ToString();
  EXPECT_EQ(st->nodes, 1u);
  EXPECT_EQ(st->segments, 3u);
  EXPECT_EQ(st->errors, 0u);
  uint64_t raw = 0;
  for (const auto& seg : s->store->All()) raw += seg->raw_bytes();
  EXPECT_EQ(st->max_data_set_size, raw);
  // Raw stored records, each once, whatever the format the user will ask for.
  EXPECT_EQ(got.Records(), Text(recs, [](size_t i) { return i % 7 == 0; }));
  EXPECT_EQ(Metric("oklog_query_peer_queries_total{result=\"ok\"}"), 1);
  EXPECT_EQ(Metric("oklog_query_queries_total{result=\"ok\"}"), -1);  // users' queries untouched
}

TEST_F(QueryRunTest, StatsOnlyScansNothingAndLimitIsNewestFirst) {
  StoreNode* s = AddStore();
  auto recs = Records(0, 100);
  WriteSegment(s->store.get(), recs);
  Start();
  QueryRunRequest r = All();
  r.kind = QueryRunKind::kStatsOnly;
  RunResult head = Run(s->addr, EncodeQueryRunRequest(r));
  ASSERT_TRUE(head.status.ok()) << head.status.ToString();
  ASSERT_EQ(head.parts.size(), 1u);
  EXPECT_EQ(DecodeQueryRunStats(head.parts[0])->segments, 1u);
  EXPECT_EQ(Metric("oklog_query_blocks_read_total"), 0);
  r.kind = QueryRunKind::kRecords;
  r.limit = 3;
  RunResult got = Run(s->addr, EncodeQueryRunRequest(r));
  ASSERT_TRUE(got.status.ok()) << got.status.ToString();
  EXPECT_EQ(got.Records(), recs[99].text + recs[98].text + recs[97].text);
}

TEST_F(QueryRunTest, MalformedRequestOrBadRegexEndsTheCallWithAReasonAndIsCounted) {
  StoreNode* s = AddStore();
  WriteSegment(s->store.get(), Records(0, 10));
  Start();
  RunResult got = Run(s->addr, "GET\nq=line");  // the old text form
  EXPECT_EQ(got.status.code(), Code::kInvalidArgument) << got.status.ToString();
  EXPECT_NE(got.status.message().find("query.run request"), std::string::npos) << got.status.ToString();
  EXPECT_TRUE(got.parts.empty());
  QueryRunRequest r = All();
  r.mode = MatchMode::kRegex;
  r.q = "(unclosed";
  got = Run(s->addr, EncodeQueryRunRequest(r));
  EXPECT_EQ(got.status.code(), Code::kInvalidArgument) << got.status.ToString();
  EXPECT_NE(got.status.message().find("compiling regex"), std::string::npos) << got.status.ToString();
  EXPECT_EQ(Metric("oklog_query_peer_queries_total{result=\"bad_request\"}"), 2);
  // The store still answers.
  EXPECT_TRUE(Run(s->addr, EncodeQueryRunRequest(All())).status.ok());
}

// ~12 MB in one segment: far more than one credit window (4 MiB), so a query.run whose client
// never consumes holds its driver.
class BigQueryRunTest : public QueryRunTest {
 protected:
  void Fill(StoreNode* s) {
    std::vector<TestRecord> recs;
    for (size_t i = 0; i < 120000; ++i)
      recs.push_back(MakeRecord(kBaseMs + i / 10, i, "api",
                                "request " + std::to_string(i) + " took 12ms path=/api/v1/items status=200 ok"));
    WriteSegment(s->store.get(), recs);
    records_ = recs.size();
  }
  size_t records_ = 0;
};

TEST_F(BigQueryRunTest, PeerQueriesHaveTheirOwnBoundAndLeaveUserSlotsFree) {
  QueryService::Options o;
  o.peer_query_threads = 1;
  o.max_queued_peer_queries = 1;
  o.max_running_queries = 1;
  StoreNode* s = AddStore(o);
  Fill(s);
  Start();
  s->service->Register(http_.get());  // /store/_query of the same service, for the user's side
  const std::string body = EncodeQueryRunRequest(All());
  auto r1 = std::make_shared<RunResult>(), r2 = std::make_shared<RunResult>();
  auto e1 = std::make_shared<std::promise<void>>(), e2 = std::make_shared<std::promise<void>>();
  auto f1 = e1->get_future(), f2 = e2->get_future();
  uint64_t h1 = OpenStalled(s->addr, body, r1, e1);
  // The first holds the one driver (stalled on its window); wait until it has sent records.
  ASSERT_TRUE(WaitFor([&] { return OnLoop<size_t>([&] { return r1->parts.size(); }) > 1; }));
  uint64_t h2 = OpenStalled(s->addr, body, r2, e2);  // queued
  ASSERT_TRUE(WaitFor([&] { return OnLoop<size_t>([&] { return r2->parts.size(); }) == 1; }));  // its stats
  RunResult r3 = Run(s->addr, body);  // the queue is full
  EXPECT_EQ(r3.status.code(), Code::kUnavailable) << r3.status.ToString();
  EXPECT_EQ(Metric("oklog_query_peer_queries_total{result=\"rejected\"}"), 1);
  // A user's query still runs: peers do not take the user's single slot.
  HttpResult user = Get("/store/_query?q=request%2011999%20");
  EXPECT_EQ(user.status, 200);
  EXPECT_NE(user.body.find("request 11999 took"), std::string::npos);
  // Cancelling the first frees the driver for the second, which then streams everything.
  Post([&] { client_->Cancel(h1); });
  f1.wait();
  EXPECT_EQ(r1->status.code(), Code::kCancelled);
  std::atomic<size_t> bytes{0};
  ASSERT_TRUE(WaitFor([&] {
    OnLoop<int>([&] {
      size_t have = 0;
      for (auto& p : r2->parts) have += p.size();
      if (have > bytes) client_->Consume(h2, have - bytes);
      bytes = have;
      return 0;
    });
    return f2.wait_for(std::chrono::seconds(0)) == std::future_status::ready;
  }, 60000));
  ASSERT_TRUE(r2->status.ok()) << r2->status.ToString();
  std::string all = r2->Records();
  EXPECT_EQ(static_cast<size_t>(std::count(all.begin(), all.end(), '\n')), records_);
  ASSERT_TRUE(WaitFor([&] { return OnLoop<size_t>([&] { return s->service->running(); }) == 0; }));
  EXPECT_EQ(Metric("oklog_query_peer_queries_total{result=\"cancelled\"}"), 1);
}

TEST_F(QueryRunTest, FanoutMergesPeersOnceEachAndFormatsAtTheEdge) {
  StoreNode* a = AddStore();
  StoreNode* b = AddStore();
  auto recs = Records(0, 300);
  WriteSegment(a->store.get(), {recs.begin(), recs.begin() + 200});
  WriteSegment(b->store.get(), {recs.begin() + 100, recs.end()});  // 100 records on both
  Start();
  HttpResult r = Get("/store/query?from=2023-11-14T22:13:20Z&to=now");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, Text(recs, [](size_t) { return true; }));
  EXPECT_EQ(Header(r, "x-oklog-nodes-queried"), "2");
  EXPECT_EQ(Header(r, "x-oklog-segments-queried"), "2");
  EXPECT_EQ(Header(r, "x-oklog-error-count"), "0");

  HttpResult j = Get("/store/query?from=2023-11-14T22:13:20Z&to=now&q=error&format=json&topic=api");
  EXPECT_EQ(j.status, 200);
  EXPECT_EQ(Header(j, "content-type"), "application/x-ndjson");
  std::string want;
  for (size_t i = 0; i < recs.size(); ++i)
    if (i % 7 == 0 && i % 2 == 0) AppendFormatted(recs[i].text, OutputFormat::kJson, &want);
  EXPECT_EQ(j.body, want);

  HttpResult l = Get("/store/query?from=2023-11-14T22:13:20Z&to=now&limit=4");
  EXPECT_EQ(l.body, recs[299].text + recs[298].text + recs[297].text + recs[296].text);
  HttpResult h = Curl(dir_.path(), "-I '" + base_ + "/store/query?from=2023-11-14T22:13:20Z&to=now'");
  EXPECT_EQ(h.status, 200);
  EXPECT_EQ(Header(h, "x-oklog-segments-queried"), "2");
}

// One flipped byte in block 3 of a store's 20-block segment. The first query meets it while
// scanning: the store's call ends with Corruption after sending the records of every other block
// (the fan-out would count that store as failed). From then on the block is marked: the store's
// stats name it (one skipped block, its records) and its call ends OK; the fan-out answers 206
// with X-Oklog-Skipped-Blocks and the neighbours' records; a range away from the block is a
// whole 200. The block is counted once in oklog_store_blocks_quarantined_total.
TEST_F(QueryRunTest, ABadBlockIsSkippedItsNeighboursAnsweredAndTheAnswerSaysIncomplete) {
  StoreLogOptions so;
  so.writer.block_target_bytes = 4096;
  StoreNode* s = AddStore({}, so);
  auto recs = Records(0, 2000);
  WriteSegment(s->store.get(), recs);
  std::shared_ptr<const SegmentReader> seg = s->store->All()[0];
  ASSERT_GE(seg->blocks().size(), 5u);
  const BlockInfo bk = seg->blocks()[3];
  {
    int fd = ::open(seg->path().c_str(), O_RDWR);  // behind the open reader's back (same inode)
    ASSERT_GE(fd, 0);
    const off_t at = static_cast<off_t>(bk.offset + bk.compressed_size / 2);
    char c;
    ASSERT_EQ(::pread(fd, &c, 1, at), 1);
    c = static_cast<char>(c ^ 0x10);
    ASSERT_EQ(::pwrite(fd, &c, 1, at), 1);
    ::close(fd);
  }
  seg.reset();
  Start();
  auto outside = [&](size_t i) { return recs[i].ulid < bk.first || recs[i].ulid > bk.last; };
  const std::string neighbours = Text(recs, outside);

  RunResult first = Run(s->addr, EncodeQueryRunRequest(All()));
  EXPECT_EQ(first.status.code(), Code::kCorruption) << first.status.ToString();
  EXPECT_EQ(first.Records(), neighbours);
  EXPECT_EQ(Metric("oklog_store_blocks_quarantined_total"), 1);

  RunResult second = Run(s->addr, EncodeQueryRunRequest(All()));
  ASSERT_TRUE(second.status.ok()) << second.status.ToString();
  Result<QueryRunStats> st = DecodeQueryRunStats(second.parts.at(0));
  ASSERT_TRUE(st.ok()) << st.status().ToString();
  EXPECT_EQ(st->skipped_blocks, 1u);
  EXPECT_EQ(st->skipped_records, bk.records);
  EXPECT_EQ(second.Records(), neighbours);

  HttpResult r = Get("/store/query?from=2023-11-14T22:13:20Z&to=now");
  EXPECT_EQ(r.status, 206);
  EXPECT_EQ(Header(r, "x-oklog-skipped-blocks"), "1");
  EXPECT_EQ(Header(r, "x-oklog-skipped-records"), std::to_string(bk.records));
  EXPECT_EQ(Header(r, "x-oklog-error-count"), "1");
  EXPECT_EQ(r.body, neighbours);
  HttpResult h = Curl(dir_.path(), "-I '" + base_ + "/store/query?from=2023-11-14T22:13:20Z&to=now'");
  EXPECT_EQ(h.status, 206);
  // The first 6 ms lie in block 0: nothing of the range is missing.
  HttpResult early = Get("/store/query?from=2023-11-14T22:13:20Z&to=2023-11-14T22:13:20.005Z");
  EXPECT_EQ(early.status, 200);
  EXPECT_EQ(Header(early, "x-oklog-skipped-blocks"), "<missing>");
  EXPECT_EQ(early.body, Text(recs, [](size_t i) { return i <= 5; }));
  EXPECT_EQ(Metric("oklog_store_blocks_quarantined_total"), 1);
}

TEST_F(QueryRunTest, AnUnreachablePeerOrOneAnsweringGarbageMakesTheAnswerPartial) {
  StoreNode* a = AddStore();
  auto recs = Records(0, 50);
  WriteSegment(a->store.get(), recs);
  // A "store" whose query.run answers bytes that are not the stats message.
  auto liar = rpc::RpcServer::Create(loop_.loop(), {"test", "liar"}, &metrics_);
  ASSERT_TRUE(liar->Listen("127.0.0.1:0").ok());
  liar->Handle(kQueryRun, [](std::shared_ptr<rpc::ServerCall> c) {
    c->Send("status 200\nX-Oklog-Nodes-Queried: 9\n");
    c->Send("01ZZZZZZZZZZZZZZZZZZZZZZZZ api forged\n");
    c->End(Status::Ok());
  });
  const std::string liar_addr = "127.0.0.1:" + std::to_string(liar->port());
  // A port with nothing listening (bound, then closed).
  auto gone = rpc::RpcServer::Create(loop_.loop(), {"test", "gone"}, &metrics_);
  ASSERT_TRUE(gone->Listen("127.0.0.1:0").ok());
  const std::string gone_addr = "127.0.0.1:" + std::to_string(gone->port());
  gone->Close();
  Start({liar_addr, gone_addr});
  HttpResult r = Get("/store/query?from=2023-11-14T22:13:20Z&to=now");
  EXPECT_EQ(r.status, 206);
  EXPECT_EQ(Header(r, "x-oklog-error-count"), "2");
  EXPECT_EQ(Header(r, "x-oklog-nodes-queried"), "1");
  EXPECT_EQ(r.body, Text(recs, [](size_t) { return true; }));  // nothing of the liar's
  EXPECT_EQ(Metric("oklog_query_fanout_peer_errors_total"), 2);
  Post([&] { liar->Close(); });
  ASSERT_TRUE(WaitFor([&] { return OnLoop<bool>([&] { return liar->done() && gone->done(); }); }));
}


// A store of the test's own making: an RpcServer whose query.run handler is `handler`.
std::unique_ptr<rpc::RpcServer> FakeStore(uv_loop_t* loop, Registry* metrics, rpc::RpcServer::Handler handler,
                                          std::string* addr) {
  auto s = rpc::RpcServer::Create(loop, {"test", "fake"}, metrics);
  EXPECT_TRUE(s->Listen("127.0.0.1:0").ok());
  s->Handle(kQueryRun, std::move(handler));
  *addr = "127.0.0.1:" + std::to_string(s->port());
  return s;
}

TEST_F(QueryRunTest, ARecordLongerThanTheCreditWindowStillReachesTheAnswer) {
  StoreNode* a = AddStore();
  auto recs = Records(0, 20);
  WriteSegment(a->store.get(), recs);
  const TestRecord big = MakeRecord(kBaseMs + 500, 1, "api", std::string(6 << 20, 'b'));
  ASSERT_GT(big.text.size(), rpc::kRpcStreamWindowBytes);
  std::string big_addr;
  auto big_store = FakeStore(loop_.loop(), &metrics_, [&big](std::shared_ptr<rpc::ServerCall> c) {
    c->Send(EncodeQueryRunStats({}));
    c->Send(big.text);  // queued in the call; its window paces it
    c->End(Status::Ok());
  }, &big_addr);
  Start({big_addr});
  HttpResult r = Get("/store/query?from=2023-11-14T22:13:20Z&to=now");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(Header(r, "x-oklog-error-count"), "0");
  EXPECT_TRUE(r.body == Text(recs, [](size_t) { return true; }) + big.text) << r.body.size() << " bytes";
  Post([&] { big_store->Close(); });
  ASSERT_TRUE(WaitFor([&] { return OnLoop<bool>([&] { return big_store->done(); }); }));
}

TEST_F(QueryRunTest, ARecordRunningPastTheRecordLimitEndsThatPeerAsCorruptionInBoundedMemory) {
  StoreNode* a = AddStore();
  auto recs = Records(0, 20);
  WriteSegment(a->store.get(), recs);
  // A store sending its stats, then bytes without a LF for as long as it is credited.
  const uint64_t kCap = uint64_t{512} << 20;
  std::atomic<uint64_t> produced{0};
  std::atomic<bool> cancelled{false};
  std::shared_ptr<rpc::ServerCall> call;
  std::function<void()> produce = [&] {
    while (call->writable() && produced < kCap) {
      call->Send(std::string(rpc::kRpcChunkBytes, 'x'));
      produced += rpc::kRpcChunkBytes;
    }
  };
  std::string liar_addr;
  auto liar = FakeStore(loop_.loop(), &metrics_, [&](std::shared_ptr<rpc::ServerCall> c) {
    call = c;
    c->OnCancel([&] { cancelled = true; });
    c->OnWritable(produce);
    c->Send(EncodeQueryRunStats({}));
    produce();
  }, &liar_addr);
  Start({liar_addr});
  // Both stats came, so a 200 went out; the liar's failure then cuts the body off.
  const std::string cmd = "curl -sS -g --max-time 60 -o " + dir_.path() + "/cut '" + base_ +
                          "/store/query?from=2023-11-14T22:13:20Z&to=now' 2>/dev/null";
  EXPECT_NE(std::system(cmd.c_str()), 0) << "a cut-off answer is a transfer error";
  ASSERT_TRUE(WaitFor([&] { return cancelled.load(); }));
  EXPECT_EQ(Metric("oklog_query_fanout_peer_errors_total"), 1);
  EXPECT_EQ(Metric("oklog_query_fanout_queries_total{result=\"cut_off\"}"), 1);
  // Held here: at most the one would-be record plus a window, not what the liar would send.
  EXPECT_LE(Metric("oklog_rpc_client_bytes_received_total"),
            static_cast<double>(segment_format::kMaxRecordBytes + rpc::kRpcStreamWindowBytes));
  // It was credited up to the record limit (the record in progress), and cut off there.
  EXPECT_GE(produced.load(), segment_format::kMaxRecordBytes);
  EXPECT_LT(produced.load(), kCap);
  Post([&] {
    call.reset();
    liar->Close();
  });
  ASSERT_TRUE(WaitFor([&] { return OnLoop<bool>([&] { return liar->done(); }); }));
}

TEST_F(QueryRunTest, APeerFailingAfterItsStatsButBeforeTheHeadersMakesTheAnswerPartial) {
  auto recs = Records(0, 20);
  std::shared_ptr<rpc::ServerCall> late_call;  // loop thread
  std::string late_addr, failing_addr;
  auto late = FakeStore(loop_.loop(), &metrics_, [&](std::shared_ptr<rpc::ServerCall> c) { late_call = c; },
                        &late_addr);
  auto failing = FakeStore(loop_.loop(), &metrics_, [](std::shared_ptr<rpc::ServerCall> c) {
    c->Send(EncodeQueryRunStats({}));
    c->End(Status::IOError("the disk went away"));
  }, &failing_addr);
  Start({late_addr, failing_addr});
  auto answer = std::async(std::launch::async, [&] { return Get("/store/query?from=2023-11-14T22:13:20Z&to=now"); });
  ASSERT_TRUE(WaitFor([&] { return Metric("oklog_query_fanout_peer_errors_total") == 1; }));
  ASSERT_TRUE(WaitFor([&] { return OnLoop<bool>([&] { return late_call != nullptr; }); }));
  Post([&] {
    late_call->Send(EncodeQueryRunStats({}));
    late_call->Send(Text(recs, [](size_t) { return true; }));
    late_call->End(Status::Ok());
  });
  HttpResult r = answer.get();
  EXPECT_EQ(r.status, 206);
  EXPECT_EQ(Header(r, "x-oklog-error-count"), "1");
  EXPECT_EQ(Header(r, "x-oklog-nodes-queried"), "2");
  EXPECT_EQ(r.body, Text(recs, [](size_t) { return true; }));
  Post([&] {
    late_call.reset();
    late->Close();
    failing->Close();
  });
  ASSERT_TRUE(WaitFor([&] { return OnLoop<bool>([&] { return late->done() && failing->done(); }); }));
}


// A blackhole: a member that takes query.run and never answers. The first query waits its
// answer timeout for it and is a 206; the next ones give it the short timeout (a 206 at once,
// here within the 3 s that curl is given, against a 4 s answer timeout); once it answers in time
// it is asked with the full wait again.
TEST_F(QueryRunTest, APeerThatNeverAnswersCostsOneQueryTheFullWaitThenIsAvoided) {
  StoreNode* a = AddStore();
  auto recs = Records(0, 20);
  WriteSegment(a->store.get(), recs);
  bool answering = false;
  std::vector<std::shared_ptr<rpc::ServerCall>> held;
  std::string hole_addr;
  auto hole = FakeStore(loop_.loop(), &metrics_, [&](std::shared_ptr<rpc::ServerCall> c) {
    if (!answering) return held.push_back(c);  // never answered
    QueryRunStats st;
    c->Send(EncodeQueryRunStats(st));
    c->End(Status::Ok());
  }, &hole_addr);
  fanout_options_.peer_answer_timeout = std::chrono::milliseconds(4000);
  Start({hole_addr});
  HttpResult first = Get("/store/query?from=2023-11-14T22:13:20Z&to=now");
  EXPECT_EQ(first.status, 206);
  EXPECT_EQ(first.body, Text(recs, [](size_t) { return true; }));
  EXPECT_EQ(Metric("oklog_query_fanout_peers_avoided_total"), 1);
  for (int i = 0; i < 3; ++i) {
    HttpResult r = Curl(dir_.path(), "--max-time 3 '" + base_ + "/store/query?from=2023-11-14T22:13:20Z&to=now'");
    EXPECT_EQ(r.status, 206) << "query " << i << " waited for the blackhole";
    EXPECT_EQ(r.body, Text(recs, [](size_t) { return true; }));
  }
  EXPECT_EQ(Metric("oklog_query_fanout_peers_avoided_total"), 1);  // short waits do not extend it
  // It answers again: trusted at once, and the answer is whole.
  Post([&] { answering = true; });
  HttpResult back = Get("/store/query?from=2023-11-14T22:13:20Z&to=now");
  EXPECT_EQ(back.status, 200);
  Post([&] {
    held.clear();
    hole->Close();
  });
  ASSERT_TRUE(WaitFor([&] { return OnLoop<bool>([&] { return hole->done(); }); }));
}

}  // namespace
}  // namespace oklog
