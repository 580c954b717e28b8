// StreamRegistry and the stream parameters: filtering, de-duplication within the window (and
// not after), slow-subscriber drop accounting and its notice, unsubscription. The registry
// writes to HttpResponse, faked here so that buffering, draining and disconnects are under the
// test's control; no loop is needed.
#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/http_server.h"
#include "common/metrics.h"
#include "common/ulid.h"
#include "query/stream_api.h"
#include "query/stream_fanout.h"
#include "query/stream_registry.h"

namespace oklog {
namespace {

// An HttpResponse whose queued bytes stay "buffered" until Drain().
class FakeResponse : public HttpResponse {
 public:
  void Start(int s, const Headers&) override { status = s; }
  bool Write(std::string data) override {
    if (closed_) return false;
    ++writes;
    body += data;
    buffered += data.size();
    drain_wanted_ = true;
    if (close_on_write) Disconnect();  // as a failed uv_write: closed inside Write
    return !closed_;
  }
  void Finish() override {
    if (closed_) return;
    finished = true;
    Disconnect();
  }
  void Abort(const std::string&) override {
    if (closed_) return;
    aborted = true;
    Disconnect();
  }
  size_t buffered_bytes() const override { return closed_ ? 0 : buffered; }
  void OnDrain(std::function<void()> cb) override { on_drain_ = std::move(cb); }
  void OnClose(std::function<void()> cb) override {
    if (closed_) {
      if (cb) cb();
      return;
    }
    on_close_ = std::move(cb);
  }
  bool closed() const override { return closed_; }
  bool is_head() const override { return false; }

  // The socket wrote everything: fires the drain callback if a Write came since the last one.
  void Drain() {
    buffered = 0;
    if (closed_ || !drain_wanted_ || !on_drain_) return;
    drain_wanted_ = false;
    auto cb = on_drain_;
    cb();
  }
  // The client went away.
  void Disconnect() {
    if (closed_) return;
    closed_ = true;
    on_drain_ = nullptr;
    auto cb = std::move(on_close_);
    on_close_ = nullptr;
    if (cb) cb();
  }
  std::vector<std::string> Lines() const {
    std::vector<std::string> out;
    size_t p = 0;
    while (p < body.size()) {
      size_t lf = body.find('\n', p);
      if (lf == std::string::npos) lf = body.size();
      out.push_back(body.substr(p, lf - p));
      p = lf + 1;
    }
    return out;
  }

  int status = 0;
  std::string body;
  size_t buffered = 0;
  int writes = 0;
  bool finished = false;
  bool aborted = false;
  bool close_on_write = false;

 private:
  bool closed_ = false;
  bool drain_wanted_ = false;
  std::function<void()> on_drain_, on_close_;
};

std::string Rec(uint64_t seq, const std::string& topic, const std::string& line) {
  return Ulid::FromParts(1700000000000 + seq, 0, seq).ToString() + " " + topic + " " + line + "\n";
}

std::string Strip(const std::string& rec) { return rec.substr(0, rec.size() - 1); }

class StreamRegistryTest : public ::testing::Test {
 protected:
  StreamRegistry::Options Opts() {
    StreamRegistry::Options o;
    o.now_ms = [this] { return now_ms_; };
    o.wall_ms = [] { return uint64_t{1700000000000}; };
    return o;
  }
  StreamSpec Spec(const std::string& q, MatchMode mode = MatchMode::kSubstring, std::vector<std::string> topics = {}) {
    StreamSpec s;
    s.match = MatchSpec{q, mode, std::move(topics)};
    return s;
  }
  std::shared_ptr<FakeResponse> Subscribe(StreamRegistry* r, const StreamSpec& spec) {
    auto resp = std::make_shared<FakeResponse>();
    auto id = r->Subscribe(spec, resp);
    EXPECT_TRUE(id.ok()) << id.status().ToString();
    return resp;
  }
  uint64_t CounterValue(const char* name) { return metrics_.NewCounter(name, "")->Value(); }
  double GaugeValue(const char* name) { return metrics_.NewGauge(name, "")->Value(); }

  uint64_t now_ms_ = 1000;
  Registry metrics_;
};

TEST_F(StreamRegistryTest, DeliversOnlyMatchingRecordsAtOnce) {
  StreamRegistry reg(Opts(), &metrics_);
  auto all = Subscribe(&reg, Spec(""));
  auto sub = Subscribe(&reg, Spec("error"));
  auto re = Subscribe(&reg, Spec("^api .*5[0-9]{2}$", MatchMode::kRegex));
  auto topic = Subscribe(&reg, Spec("", MatchMode::kSubstring, {"db"}));
  const std::string a = Rec(1, "api", "GET / 200"), b = Rec(2, "api", "error: GET /x 503"),
                    c = Rec(3, "db", "error: disk"), d = Rec(4, "web", "fine");
  reg.Publish(a + b + c + d);
  EXPECT_EQ(all->Lines(), (std::vector<std::string>{Strip(a), Strip(b), Strip(c), Strip(d)}));
  EXPECT_EQ(sub->Lines(), (std::vector<std::string>{Strip(b), Strip(c)}));
  EXPECT_EQ(re->Lines(), (std::vector<std::string>{Strip(b)}));
  EXPECT_EQ(topic->Lines(), (std::vector<std::string>{Strip(c)}));
  EXPECT_EQ(all->writes, 1) << "one write per batch";
  EXPECT_EQ(CounterValue("oklog_stream_records_delivered_total"), 8u);
  EXPECT_EQ(GaugeValue("oklog_stream_subscribers"), 4);
}

TEST_F(StreamRegistryTest, QMatchesThePayloadNotTheUlid) {
  StreamRegistry reg(Opts(), &metrics_);
  const std::string a = Rec(1, "t", "x");
  auto sub = Subscribe(&reg, Spec(a.substr(0, 10)));
  reg.Publish(a);
  EXPECT_TRUE(sub->body.empty());
}

TEST_F(StreamRegistryTest, JsonFormat) {
  StreamRegistry reg(Opts(), &metrics_);
  StreamSpec spec = Spec("");
  spec.format = OutputFormat::kJson;
  auto sub = Subscribe(&reg, spec);
  reg.Publish(Rec(1, "t", "say \"hi\""));
  ASSERT_EQ(sub->Lines().size(), 1u);
  EXPECT_NE(sub->body.find("\"topic\":\"t\""), std::string::npos) << sub->body;
  EXPECT_NE(sub->body.find("\"line\":\"say \\\"hi\\\"\""), std::string::npos) << sub->body;
}

TEST_F(StreamRegistryTest, BadRegexIsRefused) {
  StreamRegistry reg(Opts(), &metrics_);
  auto resp = std::make_shared<FakeResponse>();
  auto id = reg.Subscribe(Spec("(", MatchMode::kRegex), resp);
  ASSERT_FALSE(id.ok());
  EXPECT_NE(id.status().message().find("compiling regex"), std::string::npos);
  EXPECT_EQ(reg.subscribers(), 0u);
}

TEST_F(StreamRegistryTest, DuplicateWithinWindowIsNotSentAgain) {
  StreamRegistry reg(Opts(), &metrics_);
  StreamSpec spec = Spec("");
  spec.window = std::chrono::milliseconds(3000);
  auto sub = Subscribe(&reg, spec);
  const std::string a = Rec(1, "t", "a"), b = Rec(2, "t", "b");
  reg.Publish(a);
  now_ms_ += 2999;
  reg.Publish(a + b);  // a second copy of a, from another source
  reg.Publish(b + b);  // and twice in one batch
  EXPECT_EQ(sub->Lines(), (std::vector<std::string>{Strip(a), Strip(b)}));
  EXPECT_EQ(CounterValue("oklog_stream_duplicate_records_total"), 3u);
}

TEST_F(StreamRegistryTest, DuplicateAfterWindowIsSentAgain) {
  StreamRegistry reg(Opts(), &metrics_);
  StreamSpec spec = Spec("");
  spec.window = std::chrono::milliseconds(100);
  auto sub = Subscribe(&reg, spec);
  const std::string a = Rec(1, "t", "a");
  reg.Publish(a);
  now_ms_ += 100;
  reg.Publish(a);
  now_ms_ += 50;
  reg.Publish(a);  // within the window of the second delivery
  EXPECT_EQ(sub->Lines(), (std::vector<std::string>{Strip(a), Strip(a)}));
}

TEST_F(StreamRegistryTest, DedupIsPerSubscriber) {
  StreamRegistry reg(Opts(), &metrics_);
  auto early = Subscribe(&reg, Spec(""));
  const std::string a = Rec(1, "t", "a");
  reg.Publish(a);
  auto late = Subscribe(&reg, Spec(""));
  reg.Publish(a);
  EXPECT_EQ(early->Lines().size(), 1u);
  EXPECT_EQ(late->Lines().size(), 1u) << "the late subscriber never had a";
}

TEST_F(StreamRegistryTest, DedupMemoryIsBounded) {
  StreamRegistry::Options o = Opts();
  o.max_dedup_entries = 2;
  StreamRegistry reg(o, &metrics_);
  auto sub = Subscribe(&reg, Spec(""));
  reg.Publish(Rec(1, "t", "a") + Rec(2, "t", "b") + Rec(3, "t", "c"));
  reg.Publish(Rec(3, "t", "c"));  // still remembered
  reg.Publish(Rec(1, "t", "a"));  // forgotten early: sent again
  EXPECT_EQ(sub->Lines().size(), 4u);
}

TEST_F(StreamRegistryTest, SlowSubscriberDropsAndIsToldWhileOthersGetEverything) {
  StreamRegistry::Options o = Opts();
  o.max_buffered_bytes = 1000;
  StreamRegistry reg(o, &metrics_);
  auto slow = Subscribe(&reg, Spec(""));
  auto fast = Subscribe(&reg, Spec(""));
  std::vector<std::string> sent;
  for (uint64_t i = 0; i < 100; ++i) {
    sent.push_back(Rec(i, "t", std::string(50, 'x')));  // 80 bytes a record
    reg.Publish(sent.back());
    fast->Drain();
  }
  // The slow one took records until 1000 bytes were queued (12 × 80 = 960, the 13th overflows).
  EXPECT_EQ(slow->Lines().size(), 12u);
  EXPECT_EQ(fast->Lines().size(), 100u);
  EXPECT_EQ(CounterValue("oklog_stream_dropped_records_total"), 88u);

  // The client catches up: one notice in place of the gap, then records again.
  slow->Drain();
  ASSERT_EQ(slow->Lines().size(), 13u);
  const std::string notice = slow->Lines().back();
  EXPECT_EQ(notice.substr(Ulid::kTextSize), " oklog.stream dropped 88 records: this client read too slowly (more than 1000 bytes behind)");
  EXPECT_TRUE(Ulid::Parse(notice.substr(0, Ulid::kTextSize)).has_value());
  reg.Publish(Rec(200, "t", "after"));
  EXPECT_EQ(slow->Lines().back(), Strip(Rec(200, "t", "after")));
  EXPECT_EQ(CounterValue("oklog_stream_dropped_records_total"), 88u);
}

TEST_F(StreamRegistryTest, LaggingSubscriberResumesWithoutADrainCallback) {
  StreamRegistry::Options o = Opts();
  o.max_buffered_bytes = 1000;
  StreamRegistry reg(o, &metrics_);
  auto slow = Subscribe(&reg, Spec(""));
  for (uint64_t i = 0; i < 20; ++i) reg.Publish(Rec(i, "t", std::string(50, 'x')));
  slow->buffered = 0;  // written out, but the drain callback is not called
  reg.Publish(Rec(100, "t", "next"));
  auto lines = slow->Lines();
  ASSERT_EQ(lines.size(), 12u + 2u);
  EXPECT_NE(lines[12].find("oklog.stream dropped 8 records"), std::string::npos);
  EXPECT_EQ(lines[13], Strip(Rec(100, "t", "next")));
}

TEST_F(StreamRegistryTest, DroppedRecordsAreNotRememberedAsDelivered) {
  StreamRegistry::Options o = Opts();
  o.max_buffered_bytes = 100;
  StreamRegistry reg(o, &metrics_);
  auto sub = Subscribe(&reg, Spec(""));
  const std::string a = Rec(1, "t", std::string(60, 'a')), b = Rec(2, "t", std::string(60, 'b'));
  reg.Publish(a);
  reg.Publish(b);  // dropped
  sub->Drain();    // the notice goes out
  sub->Drain();
  reg.Publish(b);  // a copy from another source fills the gap
  auto lines = sub->Lines();
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[2], Strip(b));
}

TEST_F(StreamRegistryTest, AnIdleResponseTakesABatchLargerThanTheBound) {
  StreamRegistry::Options o = Opts();
  o.max_buffered_bytes = 100;
  StreamRegistry reg(o, &metrics_);
  auto sub = Subscribe(&reg, Spec(""));
  std::string batch;
  for (uint64_t i = 0; i < 10; ++i) batch += Rec(i, "t", std::string(50, 'x'));
  reg.Publish(batch);
  EXPECT_EQ(sub->Lines().size(), 10u);
  EXPECT_EQ(CounterValue("oklog_stream_dropped_records_total"), 0u);
}

TEST_F(StreamRegistryTest, DisconnectUnsubscribesAtOnce) {
  StreamRegistry reg(Opts(), &metrics_);
  auto a = Subscribe(&reg, Spec(""));
  auto b = Subscribe(&reg, Spec(""));
  EXPECT_EQ(GaugeValue("oklog_stream_subscribers"), 2);
  a->Disconnect();
  EXPECT_EQ(reg.subscribers(), 1u);
  EXPECT_EQ(GaugeValue("oklog_stream_subscribers"), 1);
  reg.Publish(Rec(1, "t", "x"));
  EXPECT_TRUE(a->body.empty());
  EXPECT_EQ(b->Lines().size(), 1u);
  EXPECT_EQ(a.use_count(), 1) << "the registry let go of the response";
}

TEST_F(StreamRegistryTest, UnsubscribeStopsDeliveryAndCloseFinishes) {
  StreamRegistry reg(Opts(), &metrics_);
  auto a = std::make_shared<FakeResponse>();
  auto id = reg.Subscribe(Spec(""), a);
  ASSERT_TRUE(id.ok());
  auto b = Subscribe(&reg, Spec(""));
  reg.Unsubscribe(*id);
  reg.Unsubscribe(*id);  // twice: ignored
  reg.Publish(Rec(1, "t", "x"));
  EXPECT_TRUE(a->body.empty());
  EXPECT_FALSE(a->finished);
  reg.Close();
  EXPECT_TRUE(b->finished);
  EXPECT_EQ(reg.subscribers(), 0u);
  EXPECT_EQ(GaugeValue("oklog_stream_subscribers"), 0);
}

TEST_F(StreamRegistryTest, ResponseClosingInsideWriteIsSafe) {
  StreamRegistry reg(Opts(), &metrics_);
  auto a = Subscribe(&reg, Spec(""));
  auto b = Subscribe(&reg, Spec(""));
  auto c = Subscribe(&reg, Spec(""));
  a->close_on_write = true;
  b->close_on_write = true;
  reg.Publish(Rec(1, "t", "x"));
  EXPECT_EQ(reg.subscribers(), 1u);
  reg.Publish(Rec(2, "t", "y"));
  EXPECT_EQ(c->Lines().size(), 2u);
  EXPECT_EQ(a->Lines().size(), 1u);
}

TEST_F(StreamRegistryTest, AlreadyClosedResponseIsNotKept) {
  StreamRegistry reg(Opts(), &metrics_);
  auto a = std::make_shared<FakeResponse>();
  a->Disconnect();
  ASSERT_TRUE(reg.Subscribe(Spec(""), a).ok());
  EXPECT_EQ(reg.subscribers(), 0u);
}

TEST_F(StreamRegistryTest, PublishToReachesOneSubscriptionWithItsDedup) {
  StreamRegistry reg(Opts(), &metrics_);
  auto a = std::make_shared<FakeResponse>();
  auto id = reg.Subscribe(Spec("x"), a);
  ASSERT_TRUE(id.ok());
  auto b = Subscribe(&reg, Spec(""));
  const std::string r = Rec(1, "t", "x");
  reg.Publish(r);
  reg.PublishTo(*id, r + Rec(2, "t", "x") + Rec(3, "t", "y"));  // a peer's copy, a new one, a miss
  reg.PublishTo(999, r);                                         // unknown: ignored
  EXPECT_EQ(a->Lines(), (std::vector<std::string>{Strip(r), Strip(Rec(2, "t", "x"))}));
  EXPECT_EQ(b->Lines().size(), 1u);
}

TEST_F(StreamRegistryTest, APeersDropNoticePassesTheFilter) {
  StreamRegistry reg(Opts(), &metrics_);
  auto a = std::make_shared<FakeResponse>();
  auto id = reg.Subscribe(Spec("error"), a);
  ASSERT_TRUE(id.ok());
  const std::string notice =
      Ulid::MinAt(1700000000000).ToString() + " oklog.stream dropped 7 records: this client read too slowly\n";
  const std::string hit = Rec(1, "t", "error here"), miss = Rec(2, "t", "fine");
  reg.PublishTo(*id, hit + notice + miss);
  EXPECT_EQ(a->Lines(), (std::vector<std::string>{Strip(notice), Strip(hit)}));
  reg.Publish(notice);  // only a peer's copy counts: local input is matched like any record
  EXPECT_EQ(a->Lines().size(), 2u);
}

TEST_F(StreamRegistryTest, OnEndRunsOnceWhenTheSubscriptionEnds) {
  StreamRegistry reg(Opts(), &metrics_);
  int ended = 0;
  auto a = std::make_shared<FakeResponse>();
  auto id = reg.Subscribe(Spec(""), a, [&] { ++ended; });
  ASSERT_TRUE(id.ok());
  EXPECT_TRUE(reg.Has(*id));
  a->Disconnect();
  reg.Unsubscribe(*id);
  EXPECT_EQ(ended, 1);
  EXPECT_FALSE(reg.Has(*id));
}

TEST(StreamFilterWireTest, RoundTrips) {
  MatchSpec m{"a b&c=d%+é", MatchMode::kRegex, {"x", "y-z"}};
  auto back = DecodeStreamOpen(EncodeStreamOpen(m));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->q, m.q);
  EXPECT_EQ(back->mode, MatchMode::kRegex);
  EXPECT_EQ(back->topics, m.topics);
  auto plain = DecodeStreamOpen(EncodeStreamOpen(MatchSpec{"", MatchMode::kSubstring, {}}));
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(plain->mode, MatchMode::kSubstring);
  EXPECT_TRUE(plain->topics.empty());
  // The old query-string body is refused, not misread; so is every truncation.
  EXPECT_EQ(DecodeStreamOpen("format=xml").status().code(), Code::kCorruption);
  const std::string bytes = EncodeStreamOpen(m);
  for (size_t n = 0; n < bytes.size(); ++n)
    EXPECT_EQ(DecodeStreamOpen(bytes.substr(0, n)).status().code(), Code::kCorruption) << n;
}

TEST(StreamParamsTest, DefaultsAndFilters) {
  std::multimap<std::string, std::string> p = {{"q", "err"}, {"topic", "a"}, {"topic", "b"}, {"from", "junk"}};
  auto s = ParseStreamParams(p);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->match.q, "err");
  EXPECT_EQ(s->match.mode, MatchMode::kSubstring);
  EXPECT_EQ(s->match.topics, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(s->window, std::chrono::milliseconds(3000));
  EXPECT_EQ(s->format, OutputFormat::kText);
}

TEST(StreamParamsTest, RegexIsAPresenceFlag) {
  auto s = ParseStreamParams({{"q", "a"}, {"regex", "false"}});
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->match.mode, MatchMode::kRegex);
}

TEST(StreamParamsTest, WindowIsAGoDurationRaisedTo100ms) {
  EXPECT_EQ(ParseStreamParams({{"window", "1.5s"}})->window, std::chrono::milliseconds(1500));
  EXPECT_EQ(ParseStreamParams({{"window", "10ms"}})->window, std::chrono::milliseconds(100));
  EXPECT_EQ(ParseStreamParams({{"window", "0"}})->window, std::chrono::milliseconds(100));
  EXPECT_EQ(ParseStreamParams({{"window", "-5s"}})->window, std::chrono::milliseconds(100));
  EXPECT_EQ(ParseStreamParams({{"window", ""}})->window, std::chrono::milliseconds(3000));
  auto bad = ParseStreamParams({{"window", "3 seconds"}});
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message().rfind("parsing 'window': ", 0), 0u) << bad.status().message();
}

TEST(StreamParamsTest, BadFormatIsRefused) {
  auto s = ParseStreamParams({{"format", "xml"}});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().message().rfind("parsing 'format'", 0), 0u);
  EXPECT_EQ(ParseStreamParams({{"format", "json"}})->format, OutputFormat::kJson);
}

}  // namespace
}  // namespace oklog
