#include "query/query_api.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <deque>
#include <fstream>
#include <functional>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>

#include "query/query_test_util.h"
#include "test_util.h"

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

// A node's query side on a loop thread: HttpServer on 127.0.0.1:0 plus QueryService over a
// real StoreLog.
class ApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = StoreLog::Open(dir_.path() + "/store", StoreLogOptions{}, &metrics_);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(s).value();
  }

  void StartServer(QueryService::Options options = {}) {
    ASSERT_EQ(uv_loop_init(&loop_), 0);
    ASSERT_EQ(uv_async_init(&loop_, &wake_, &ApiTest::OnWake), 0);
    wake_.data = this;
    auto server = HttpServer::Create(&loop_, Address{"tcp", "127.0.0.1", 0}, HttpServer::Options{}, &metrics_);
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(server).value();
    options.now_ms = [] { return kBaseMs + 3600 * 1000; };
    auto service = QueryService::Create(&loop_, store_.get(), options, &metrics_);
    ASSERT_TRUE(service.ok()) << service.status().ToString();
    service_ = std::move(service).value();
    service_->Register(server_.get());
    base_ = "http://127.0.0.1:" + std::to_string(server_->port());
    thread_ = std::thread([this] { uv_run(&loop_, UV_RUN_DEFAULT); });
    started_ = true;
  }

  void TearDown() override {
    if (!started_) return;
    Post([this] {
      service_->Close();
      server_->Close();
      uv_close(reinterpret_cast<uv_handle_t*>(&wake_), nullptr);
    });
    thread_.join();
    EXPECT_TRUE(service_->done());
    EXPECT_TRUE(server_->done());
    service_.reset();
    server_.reset();
    EXPECT_EQ(uv_loop_close(&loop_), 0) << "a handle was left open";
  }

  void Post(std::function<void()> fn) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      posted_.push_back(std::move(fn));
    }
    uv_async_send(&wake_);
  }
  static void OnWake(uv_async_t* a) noexcept {
    auto* self = static_cast<ApiTest*>(a->data);
    std::deque<std::function<void()>> q;
    {
      std::lock_guard<std::mutex> lock(self->mu_);
      q.swap(self->posted_);
    }
    for (auto& fn : q) fn();
  }

  // The value of one rendered metric line ("name{labels}"), or -1.
  double Metric(const std::string& series) {
    return SeriesValue(metrics_.Render(), series);
  }

  HttpResult Get(const std::string& path_and_query, const std::string& extra = "") {
    return Curl(dir_.path(), extra + " '" + base_ + path_and_query + "'");
  }

  // Writes records 0..n-1, one per millisecond from kBaseMs, as three segments where the
  // middle one overlaps both others and repeats some of their records.
  std::vector<TestRecord> WriteOverlapping(size_t n) {
    std::vector<TestRecord> all;
    for (size_t i = 0; i < n; ++i) {
      all.push_back(MakeRecord(kBaseMs + i, i, i % 2 ? "web" : "api", "line " + std::to_string(i) + " 100%"));
    }
    auto slice = [&](size_t lo, size_t hi) { return std::vector<TestRecord>(all.begin() + lo, all.begin() + hi); };
    WriteSegment(store_.get(), slice(0, n / 2));
    WriteSegment(store_.get(), slice(n / 3, 2 * n / 3));
    WriteSegment(store_.get(), slice(n / 2, n));
    return all;
  }

  Registry metrics_;
  TempDir dir_;
  std::unique_ptr<StoreLog> store_;
  uv_loop_t loop_;
  uv_async_t wake_;
  std::mutex mu_;
  std::deque<std::function<void()>> posted_;
  std::unique_ptr<HttpServer> server_;
  std::unique_ptr<QueryService> service_;
  std::thread thread_;
  bool started_ = false;
  std::string base_;
};

TEST_F(ApiTest, GetStreamsRecordsInOrderWithOkLogHeaders) {
  auto all = WriteOverlapping(300);
  StartServer();
  HttpResult r = Get("/store/query?from=2023-11-14T22:13:20Z&to=now&q=100%25");
  EXPECT_EQ(r.status, 200);
  std::string want;
  for (const auto& rec : all) want += rec.text;
  EXPECT_EQ(r.body, want);
  EXPECT_EQ(Header(r, "x-oklog-from"), "2023-11-14T22:13:20Z");
  EXPECT_EQ(Header(r, "x-oklog-to"), "2023-11-14T23:13:20Z");
  EXPECT_EQ(Header(r, "x-oklog-q"), "100%");
  EXPECT_EQ(Header(r, "x-oklog-regex"), "false");
  EXPECT_EQ(Header(r, "x-oklog-nodes-queried"), "1");
  EXPECT_EQ(Header(r, "x-oklog-segments-queried"), "3");
  EXPECT_EQ(Header(r, "x-oklog-error-count"), "0");
  EXPECT_NE(Header(r, "x-oklog-duration"), "<missing>");
  uint64_t raw = 0;
  for (const auto& s : store_->All()) raw += s->raw_bytes();
  EXPECT_EQ(Header(r, "x-oklog-max-data-set-size"), std::to_string(raw));
  EXPECT_EQ(Header(r, "content-type"), "text/plain; charset=utf-8");
  // The node-local path answers the same.
  EXPECT_EQ(Get("/store/_query?q=100%25").body, want);
}

TEST_F(ApiTest, FiltersByTimeTermRegexAndTopic) {
  auto all = WriteOverlapping(300);
  StartServer();
  // Milliseconds 10..12 inclusive, given as RFC3339 with an offset.
  HttpResult r = Get("/store/query?from=2023-11-14T23:13:20.010%2B01:00&to=2023-11-14T22:13:20.012Z");
  EXPECT_EQ(r.body, all[10].text + all[11].text + all[12].text);
  // A ULID bound is exact.
  r = Get("/store/query?from=" + all[200].ulid.ToString() + "&to=" + all[201].ulid.ToString());
  EXPECT_EQ(r.body, all[200].text + all[201].text);
  r = Get("/store/query?q=line%2012[0-9]%20&regex");
  EXPECT_EQ(Header(r, "x-oklog-regex"), "true");
  std::string want;
  for (int i = 120; i < 130; ++i) want += all[i].text;
  EXPECT_EQ(r.body, want);
  r = Get("/store/query?q=%5Eweb%20line%2012&regex=false");  // ^ anchors at the topic
  EXPECT_EQ(r.body, all[121].text + all[123].text + all[125].text + all[127].text + all[129].text);
  r = Get("/store/query?q=line%2012&topic=api");
  EXPECT_EQ(r.body, all[12].text + all[120].text + all[122].text + all[124].text + all[126].text + all[128].text);
}

TEST_F(ApiTest, LimitReturnsTheNewestFirst) {
  auto all = WriteOverlapping(300);
  StartServer();
  HttpResult r = Get("/store/query?limit=3");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, all[299].text + all[298].text + all[297].text);
}

TEST_F(ApiTest, JsonFormat) {
  auto w = store_->NewWriter();
  ASSERT_TRUE(w.ok());
  Ulid u = Ulid::FromParts(kBaseMs + 5, 0, 1);
  std::string line = "say \"hi\"\\ \t \x01 caf\xC3\xA9 \xFF end";
  ASSERT_TRUE(w.value()->Append(u.ToString() + " api " + line + "\n").ok());
  auto path = w.value()->Finish();
  ASSERT_TRUE(path.ok());
  ASSERT_TRUE(store_->Add(path.value()).ok());
  StartServer();
  HttpResult r = Get("/store/query?format=json");
  EXPECT_EQ(Header(r, "content-type"), "application/x-ndjson");
  EXPECT_EQ(r.body, "{\"ulid\":\"" + u.ToString() +
                        "\",\"time\":\"2023-11-14T22:13:20.005Z\",\"topic\":\"api\",\"line\":\"say \\\"hi\\\"\\\\ \\t "
                        "\\u0001 caf\xC3\xA9 \xEF\xBF\xBD end\"}\n");
}

TEST_F(ApiTest, HeadGivesStatsWithoutScanning) {
  WriteOverlapping(300);
  StartServer();
  double before = Metric("oklog_query_blocks_read_total");
  HttpResult r = Get("/store/query?from=1h&q=x", "-I");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(Header(r, "x-oklog-segments-queried"), "3");
  EXPECT_EQ(Metric("oklog_query_blocks_read_total"), before);
  EXPECT_EQ(Metric("oklog_query_queries_total{result=\"stats\"}"), 1);
}

// Writes records 0..n-1 (one per ms from kBaseMs) as one segment of 4 KiB blocks into a fresh
// store, flips a byte in the middle of block k (in place, behind any open reader), and returns
// that block's index entry.
BlockInfo WriteAndDamage(StoreLog* store, const std::vector<TestRecord>& recs, size_t k) {
  WriteSegment(store, recs);
  std::shared_ptr<const SegmentReader> seg = store->All().at(0);
  EXPECT_GT(seg->blocks().size(), k + 2);
  const BlockInfo b = seg->blocks().at(k);
  int fd = ::open(seg->path().c_str(), O_RDWR);
  EXPECT_GE(fd, 0);
  const off_t at = static_cast<off_t>(b.offset + b.compressed_size / 2);
  char c = 0;
  EXPECT_EQ(::pread(fd, &c, 1, at), 1);
  c = static_cast<char>(c ^ 0x08);
  EXPECT_EQ(::pwrite(fd, &c, 1, at), 1);
  ::close(fd);
  return b;
}

std::vector<TestRecord> Numbered(size_t n) {
  std::vector<TestRecord> all;
  for (size_t i = 0; i < n; ++i) all.push_back(MakeRecord(kBaseMs + i, i, "api", "line " + std::to_string(i)));
  return all;
}

// A bad block found at start (the store reopened over the damaged file): the node-local query
// answers 206 with the records of every other block, names the skipped block and its records
// in X-Oklog-Skipped-*, and counts an error; HEAD says the same without scanning. A range that
// does not reach the block is a plain 200.
TEST_F(ApiTest, ABadBlockKnownAtStartMakesThe206AndTheNeighboursAreAnswered) {
  StoreLogOptions so;
  so.writer.block_target_bytes = 4096;
  store_ = std::move(StoreLog::Open(dir_.path() + "/blocky", so, &metrics_)).value();
  auto all = Numbered(2000);
  const BlockInfo bad = WriteAndDamage(store_.get(), all, 4);
  store_.reset();
  store_ = std::move(StoreLog::Open(dir_.path() + "/blocky", so, &metrics_)).value();
  EXPECT_EQ(store_->blocks_quarantined(), 1u);
  EXPECT_EQ(store_->quarantined(), 0u);
  StartServer();
  std::string want;
  for (const auto& r : all)
    if (r.ulid < bad.first || r.ulid > bad.last) want += r.text;
  HttpResult r = Get("/store/_query?from=2023-11-14T22:13:20Z&to=now");
  EXPECT_EQ(r.status, 206);
  EXPECT_EQ(r.body, want);
  EXPECT_EQ(Header(r, "x-oklog-skipped-blocks"), "1");
  EXPECT_EQ(Header(r, "x-oklog-skipped-records"), std::to_string(bad.records));
  EXPECT_EQ(Header(r, "x-oklog-skipped-ranges"),
            FormatRfc3339(bad.first.unix_ms()) + "/" + FormatRfc3339(bad.last.unix_ms()));
  EXPECT_EQ(Header(r, "x-oklog-error-count"), "1");
  EXPECT_EQ(Get("/store/_query?from=2023-11-14T22:13:20Z&to=now", "-I").status, 206);
  HttpResult early = Get("/store/_query?from=2023-11-14T22:13:20Z&to=2023-11-14T22:13:20.009Z");
  EXPECT_EQ(early.status, 200);
  EXPECT_EQ(Header(early, "x-oklog-skipped-blocks"), "<missing>");
  EXPECT_EQ(Metric("oklog_store_blocks_quarantined_total"), 1);
}

// A block that goes bad after start is found by the scan, after the 200 went out: the answer
// is cut off (the chunked body never ends, so curl fails) rather than claiming to be whole, the
// block is marked and counted, and the next query is the 206.
TEST_F(ApiTest, ABlockFoundBadDuringTheScanCutsOffThe200AndTheNextQueryIs206) {
  StoreLogOptions so;
  so.writer.block_target_bytes = 4096;
  store_ = std::move(StoreLog::Open(dir_.path() + "/blocky", so, &metrics_)).value();
  auto all = Numbered(2000);
  WriteAndDamage(store_.get(), all, 4);
  StartServer();
  const std::string cmd = "curl -sS -o /dev/null '" + base_ + "/store/_query?from=2023-11-14T22:13:20Z&to=now' 2>" +
                          dir_.path() + "/curl.err";
  const int rc = std::system(cmd.c_str());
  EXPECT_TRUE(WIFEXITED(rc) && WEXITSTATUS(rc) != 0) << "a cut-off answer must fail the client";
  EXPECT_EQ(Metric("oklog_store_blocks_quarantined_total"), 1);
  EXPECT_EQ(Metric("oklog_query_corrupt_blocks_total"), 1);
  HttpResult r = Get("/store/_query?from=2023-11-14T22:13:20Z&to=now");
  EXPECT_EQ(r.status, 206);
  EXPECT_EQ(Header(r, "x-oklog-skipped-blocks"), "1");
  EXPECT_EQ(Metric("oklog_store_blocks_quarantined_total"), 1);
}

TEST_F(ApiTest, BadParametersAre400WithAMessage) {
  StartServer();
  struct Case {
    std::string query, message_prefix;
  } cases[] = {
      {"from=yesterday", "parsing 'from': "},
      {"to=2023-13-01T00:00:00Z", "parsing 'to': "},
      {"q=a(b&regex", "compiling regex: "},
      {"limit=0", "parsing 'limit': "},
      {"limit=x", "parsing 'limit': "},
      {"format=xml", "parsing 'format': "},
  };
  for (const Case& c : cases) {
    HttpResult r = Get("/store/query?" + c.query);
    EXPECT_EQ(r.status, 400) << c.query;
    EXPECT_EQ(r.body.rfind(c.message_prefix, 0), 0u) << c.query << " -> " << r.body;
    EXPECT_EQ(r.body.back(), '\n');
  }
  EXPECT_EQ(Metric("oklog_query_queries_total{result=\"bad_request\"}"), 6);
}

TEST_F(ApiTest, RootRedirectsToTheQueryAndOtherMethodsAreRefused) {
  StartServer();
  HttpResult r = Get("/store/?q=abc&from=5m");
  EXPECT_EQ(r.status, 307);
  EXPECT_EQ(Header(r, "location"), "/store/query?q=abc&from=5m");
  EXPECT_EQ(Get("/store/query", "-X POST").status, 405);
  EXPECT_EQ(Get("/store/nothing").status, 404);
  // An empty store answers 200 with no body.
  r = Get("/store/query");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "");
}

// Opens a query over a raw socket, reads a little, and hangs up.
std::string ReadSomeAndHangUp(uint16_t port, const std::string& target, size_t want_bytes) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  // A small receive buffer keeps the kernel from soaking up the stream.
  int rcvbuf = 16 * 1024;
  ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  std::string req = "GET " + target + " HTTP/1.1\r\nHost: x\r\n\r\n";
  EXPECT_EQ(::send(fd, req.data(), req.size(), MSG_NOSIGNAL), static_cast<ssize_t>(req.size()));
  std::string got;
  char buf[16384];
  while (got.size() < want_bytes) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 10000) <= 0) break;
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
  }
  linger l{1, 0};  // reset: the server sees the client gone at once
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  ::close(fd);
  return got;
}

class BigStoreApiTest : public ApiTest {
 protected:
  void SetUp() override {
    ApiTest::SetUp();
    // ~24 MB of records in one segment, ~100 blocks.
    std::vector<TestRecord> recs;
    std::mt19937 rng(1);
    for (size_t i = 0; i < 240000; ++i) {
      std::string line = "request " + std::to_string(i) + " took " + std::to_string(rng() % 1000) +
                         "ms path=/api/v1/items/" + std::to_string(rng() % 100000) + " status=200 ok";
      recs.push_back(MakeRecord(kBaseMs + i / 10, i, "api", line));
    }
    WriteSegment(store_.get(), recs);
    records_ = recs.size();
    for (const auto& s : store_->All()) blocks_ += s->blocks().size();
  }
  size_t records_ = 0;
  size_t blocks_ = 0;
};

TEST_F(BigStoreApiTest, WholeStreamArrivesInOrder) {
  StartServer();
  HttpResult r = Get("/store/query");
  EXPECT_EQ(r.status, 200);
  size_t lines = 0;
  std::string_view prev;
  std::string_view body(r.body);
  bool ordered = true;
  for (size_t pos = 0; pos < body.size();) {
    size_t nl = body.find('\n', pos);
    std::string_view ulid = body.substr(pos, Ulid::kTextSize);
    if (!prev.empty() && !(prev < ulid)) ordered = false;
    prev = ulid;
    ++lines;
    pos = nl + 1;
  }
  EXPECT_EQ(lines, records_);
  EXPECT_TRUE(ordered);
  EXPECT_EQ(Metric("oklog_query_queries_total{result=\"ok\"}"), 1);
}

TEST_F(BigStoreApiTest, ClientThatHangsUpStopsTheScan) {
  QueryService::Options o;
  o.high_water_bytes = 256 * 1024;
  StartServer(o);
  std::string got = ReadSomeAndHangUp(server_->port(), "/store/query", 200 * 1024);
  EXPECT_NE(got.find("HTTP/1.1 200"), std::string::npos);
  // The driver notices at its next chunk and the query ends as cancelled.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (Metric("oklog_query_queries_total{result=\"cancelled\"}") != 1 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(Metric("oklog_query_queries_total{result=\"cancelled\"}"), 1);
  EXPECT_EQ(Metric("oklog_query_running"), 0);
  double read = Metric("oklog_query_blocks_read_total");
  EXPECT_GT(read, 0);
  EXPECT_LT(read, static_cast<double>(blocks_) / 2) << "blocks " << blocks_;
}

}  // namespace
}  // namespace oklog
