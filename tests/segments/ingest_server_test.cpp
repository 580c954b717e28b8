#include "segments/ingest_server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <set>
#include <thread>

#include "common/fs/fault_injection_env.h"
#include "rpc/frame_codec.h"
#include "rpc/bulk_protocol.h"
#include "segments/record_merge.h"
#include "test_util.h"

namespace oklog {
namespace {

class IngestServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    uv_loop_init(&loop_);
    IngestLog::Options o;
    o.env = &env_;  // passes every operation through until a test injects a fault
    auto log = IngestLog::Open(dir_.path(), o, &metrics_);
    ASSERT_TRUE(log.ok());
    log_ = std::move(log).value();
  }
  void Start(IngestServerOptions o) {
    o.fast = *ParseAddress("127.0.0.1:0", 0);
    o.durable = *ParseAddress("127.0.0.1:0", 0);
    o.bulk = *ParseAddress("127.0.0.1:0", 0);
    auto s = IngestServer::Create(&loop_, log_.get(), o, &metrics_);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    server_ = std::move(s).value();
  }
  // Runs the loop until done() holds (bounded).
  void RunUntil(const std::function<bool()>& done) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (!done() && std::chrono::steady_clock::now() < deadline) uv_run(&loop_, UV_RUN_NOWAIT), usleep(1000);
    ASSERT_TRUE(done());
  }
  void TearDown() override {
    bool closed = false;
    if (server_) server_->Close([&] { closed = true; });
    RunUntil([&] { return closed || !server_; });
    uv_run(&loop_, UV_RUN_DEFAULT);
    EXPECT_EQ(uv_loop_close(&loop_), 0);
  }
  uint64_t Metric(const std::string& name) {
    std::string text = metrics_.Render();
    auto pos = text.find("\n" + name + " ");
    return pos == std::string::npos ? 0 : std::stoull(text.substr(pos + name.size() + 2));
  }
  // All records in flushed segments, parsed.
  std::vector<std::string> FlushedPayloads() {
    std::vector<std::string> out;
    for (auto& e : std::filesystem::directory_iterator(dir_.path())) {
      if (e.path().extension() != ".flushed") continue;
      std::string data = ReadFile(e.path());
      ParseStats ps;
      for (auto r : ParseRecords(data, &ps)) out.emplace_back(r.substr(27, r.size() - 28));
      EXPECT_EQ(ps.invalid, 0u);
    }
    return out;
  }

  FaultInjectionEnv env_;
  TempDir dir_;
  Registry metrics_;
  uv_loop_t loop_;
  std::unique_ptr<IngestLog> log_;
  std::unique_ptr<IngestServer> server_;
};

TEST_F(IngestServerTest, FastConnectionRecordsAreFlushedOnClose) {
  Start({});
  std::atomic<bool> sent{false};
  std::thread client([&] {
    int fd = ConnectLoopback(server_->fast_port());
    std::string data;
    for (int i = 0; i < 10000; ++i) data += "line " + std::to_string(i) + "\n";
    SendAll(fd, data);
    ::close(fd);
    sent = true;
  });
  RunUntil([&] { return sent && server_->connections() == 0 && log_->flushed_count() > 0; });
  client.join();
  auto p = FlushedPayloads();
  ASSERT_EQ(p.size(), 10000u);
  EXPECT_EQ(p[0], "default line 0");
  EXPECT_EQ(p[9999], "default line 9999");
}

TEST_F(IngestServerTest, SegmentsFlushBySizeAndAge) {
  IngestServerOptions o;
  o.flush_size_bytes = 64 * 1024;
  o.flush_age = std::chrono::milliseconds(100);
  Start(o);
  int fd = -1;
  std::thread client([&] {
    fd = ConnectLoopback(server_->fast_port());
    SendAll(fd, std::string(200 * 1024, 'a').insert(0, "x\n").append("\n"));
  });
  // Size: ~200 KiB of records with a 64 KiB limit gives several segments while connected.
  RunUntil([&] { return log_->flushed_count() >= 1; });
  client.join();
  SendAll(fd, "late\n");
  size_t before = log_->flushed_count();
  // Age: the connection stays open, the last record is flushed by the timer anyway.
  RunUntil([&] { return log_->flushed_count() > before; });
  ::close(fd);
  RunUntil([&] { return server_->connections() == 0; });
  auto p = FlushedPayloads();
  EXPECT_NE(std::find(p.begin(), p.end(), "default late"), p.end());
}

TEST_F(IngestServerTest, DurableConnectionsShareOneGroupCommit) {
  Start({});
  constexpr int kClients = 8;
  std::atomic<int> done{0};
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      int fd = ConnectLoopback(server_->durable_port());
      for (int i = 0; i < 200; ++i) SendAll(fd, "c" + std::to_string(c) + " r" + std::to_string(i) + "\n");
      ::close(fd);
      ++done;
    });
  }
  RunUntil([&] {
    return done == kClients && server_->connections() == 0 &&
           Metric("oklog_ingest_writer_records_written_total") == kClients * 200;
  });
  for (auto& t : clients) t.join();
  bool closed = false;
  server_->Close([&] { closed = true; });
  RunUntil([&] { return closed; });
  server_.reset();
  auto p = FlushedPayloads();
  EXPECT_EQ(p.size(), static_cast<size_t>(kClients * 200));
  uint64_t syncs = Metric("oklog_ingest_writer_syncs_total");
  EXPECT_GT(syncs, 0u);
  EXPECT_LE(syncs, static_cast<uint64_t>(kClients * 200));  // batches, not one per record
}

// A durable read that ends inside a line holds no whole record, so there is nothing to sync
// for it: the connection must read on, not wait for a batch of someone else's.
TEST_F(IngestServerTest, DurableLineSplitAcrossReadsIsNotStalled) {
  Start({});
  std::atomic<bool> stop{false};
  int fd = ConnectLoopback(server_->durable_port());
  ASSERT_GE(fd, 0);
  std::thread client([&] {
    SendAll(fd, "par");
    ::usleep(300000);  // the server reads "par" alone
    SendAll(fd, "tial\nnext\n");
    while (!stop) ::usleep(1000);
    ::close(fd);
  });
  RunUntil([&] { return Metric("oklog_ingest_writer_records_written_total") == 2; });
  stop = true;
  client.join();
  RunUntil([&] { return server_->connections() == 0; });
  bool closed = false;
  server_->Close([&] { closed = true; });
  RunUntil([&] { return closed; });
  server_.reset();
  EXPECT_EQ(FlushedPayloads(), (std::vector<std::string>{"default partial", "default next"}));
}

// A full disk at a group commit: the connections of that batch are closed (their producers
// must not believe the data is safe), the failure is counted, and later durable writes work and
// survive a power cut; no flushed segment holds a torn record.
TEST_F(IngestServerTest, FailedGroupCommitClosesItsConnectionsAndLaterCommitsAreDurable) {
  env_.Inject({.op = FsOp::kSync, .error = ENOSPC, .path_contains = ".active", .times = 1});
  Start({});
  std::atomic<int> b_closed{0};
  std::thread b([&] {
    int fd = ConnectLoopback(server_->durable_port());
    SendAll(fd, "b0\nb1\n");
    timeval tv{10, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char c;
    b_closed = ::recv(fd, &c, 1, 0) <= 0 && errno != EAGAIN ? 1 : -1;
    ::close(fd);
  });
  RunUntil([&] { return b_closed != 0; });
  b.join();
  EXPECT_EQ(b_closed.load(), 1) << "the server did not close the failed batch's connection";
  EXPECT_EQ(Metric("oklog_ingest_write_errors_total"), 1u);

  std::atomic<bool> c_done{false};
  std::thread c([&] {
    int fd = ConnectLoopback(server_->durable_port());
    for (int i = 0; i < 100; ++i) SendAll(fd, "c" + std::to_string(i) + "\n");
    ::close(fd);
    c_done = true;
  });
  RunUntil([&] { return c_done && server_->connections() == 0 && Metric("oklog_ingest_writer_records_written_total") >= 102; });
  c.join();
  bool closed = false;
  server_->Close([&] { closed = true; });
  RunUntil([&] { return closed; });  // waits for the group commit in flight
  server_.reset();
  EXPECT_EQ(Metric("oklog_ingest_write_errors_total"), 1u);  // every commit of c's records succeeded
  EXPECT_GT(Metric("oklog_ingest_writer_syncs_total"), 0u);

  log_.reset();
  ASSERT_TRUE(env_.SimulatePowerLoss().ok());
  IngestLog::Options o;
  o.env = &env_;
  auto log = IngestLog::Open(dir_.path(), o, &metrics_);
  ASSERT_TRUE(log.ok());
  log_ = std::move(log).value();
  std::set<std::string> got;
  for (const auto& p : FlushedPayloads()) got.insert(p);  // no invalid record (checked inside)
  for (int i = 0; i < 100; ++i) EXPECT_EQ(got.count("default c" + std::to_string(i)), 1u) << i;
  EXPECT_EQ(got.size() - 100, got.count("default b0") + got.count("default b1"));  // b's, never acknowledged, may be kept
}

bool NextFrame(rpc::FrameDecoder& d, std::string* out) {
  Result<bool> r = d.Next(out);
  return r.ok() && *r;
}

// Reads bulk frames from fd until `want` messages arrived or the peer closed (10 s bound).
struct BulkRead {
  std::vector<rpc::BulkMessage> msgs;
  bool closed = false;
};
BulkRead ReadBulk(int fd, size_t want) {
  BulkRead r;
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  rpc::FrameDecoder frames(1 << 20);
  char buf[4096];
  while (r.msgs.size() < want) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) {
      r.closed = n == 0;
      break;
    }
    EXPECT_TRUE(frames.Feed(buf, static_cast<size_t>(n)));
    std::string payload;
    while (NextFrame(frames, &payload)) {
      auto m = rpc::DecodeBulkMessage(payload);
      EXPECT_TRUE(m.ok()) << m.status().ToString();
      if (m.ok()) r.msgs.push_back(*m);
    }
  }
  return r;
}

// Claims and commits every flushed segment, as a store does after replicating them.
void CommitAll(IngestLog* log) {
  for (const auto& p : log->Claim(uint64_t{1} << 40)) ASSERT_TRUE(log->Commit(p.id).ok());
}

TEST_F(IngestServerTest, BulkSegmentGetsUlidsFromItsIdAndIsAcknowledgedWhenCommitted) {
  Start({});
  UlidStream forwarder;
  const Ulid id = forwarder.NextRun(NowUnixMs(), 3);
  std::atomic<bool> acked{false};
  std::thread client([&] {
    int fd = ConnectLoopback(server_->bulk_port());
    SendAll(fd, rpc::EncodeBulkSegment(id, "alpha\nbeta\ngamma"));  // the last line without LF still counts
    BulkRead r = ReadBulk(fd, 1);
    ASSERT_EQ(r.msgs.size(), 1u);
    EXPECT_EQ(r.msgs[0].kind, rpc::BulkMessage::Kind::kAck);
    EXPECT_EQ(r.msgs[0].id, id);
    acked = true;
    ::close(fd);
  });
  RunUntil([&] { return log_->flushed_count() == 1; });
  // Stored, not yet acknowledged: the ULIDs are the id's run, in order.
  std::string data;
  for (auto& e : std::filesystem::directory_iterator(dir_.path()))
    if (e.path().extension() == ".flushed") data = ReadFile(e.path());
  UlidStream expect = UlidStream::At(id);
  ParseStats ps;
  auto recs = ParseRecords(data, &ps);
  ASSERT_EQ(recs.size(), 3u);
  const char* lines[] = {"alpha", "beta", "gamma"};
  for (size_t i = 0; i < 3; ++i)
    EXPECT_EQ(std::string(recs[i]), expect.Next(id.unix_ms()).ToString() + " default " + lines[i] + "\n");
  // The next segment of the same forwarder starts after this one's last ULID.
  EXPECT_GT(forwarder.NextRun(NowUnixMs(), 1).ToString(), std::string(recs[2].substr(0, 26)));
  for (int i = 0; i < 20; ++i) uv_run(&loop_, UV_RUN_NOWAIT), usleep(1000);
  EXPECT_FALSE(acked.load());
  EXPECT_EQ(Metric("oklog_ingest_bulk_unacked_segments"), 1u);
  CommitAll(log_.get());
  RunUntil([&] { return acked.load(); });
  client.join();
  EXPECT_EQ(Metric("oklog_ingest_bulk_acks_total"), 1u);
  EXPECT_EQ(Metric("oklog_ingest_bulk_unacked_segments"), 0u);
}

TEST_F(IngestServerTest, BulkResendIsStoredOnceAndEveryCopyIsAcknowledged) {
  Start({});
  const Ulid id = UlidStream().NextRun(NowUnixMs(), 2);
  const std::string frame = rpc::EncodeBulkSegment(id, "one\ntwo\n");
  std::atomic<int> acks{0};
  std::atomic<bool> sent{false};
  std::vector<std::thread> clients;
  for (int i = 0; i < 2; ++i) {
    clients.emplace_back([&] {
      int fd = ConnectLoopback(server_->bulk_port());
      SendAll(fd, frame);
      sent = true;
      BulkRead r = ReadBulk(fd, 1);
      if (r.msgs.size() == 1 && r.msgs[0].kind == rpc::BulkMessage::Kind::kAck && r.msgs[0].id == id) ++acks;
      ::close(fd);
    });
  }
  RunUntil([&] { return Metric("oklog_ingest_bulk_segments_total{result=\"resent\"}") == 1 &&
                        Metric("oklog_ingest_bulk_segments_total{result=\"stored\"}") == 1; });
  EXPECT_EQ(log_->flushed_count(), 1u);  // one file for both copies
  CommitAll(log_.get());
  RunUntil([&] { return acks.load() == 2; });
  for (auto& t : clients) t.join();
  // A copy arriving after the commit (its ack was lost) is acknowledged at once, not stored.
  std::atomic<bool> late{false};
  std::thread again([&] {
    int fd = ConnectLoopback(server_->bulk_port());
    SendAll(fd, frame);
    BulkRead r = ReadBulk(fd, 1);
    late = r.msgs.size() == 1 && r.msgs[0].kind == rpc::BulkMessage::Kind::kAck;
    ::close(fd);
  });
  RunUntil([&] { return late.load(); });
  again.join();
  EXPECT_EQ(log_->flushed_count(), 0u);
  EXPECT_EQ(Metric("oklog_ingest_bulk_segments_total{result=\"resent\"}"), 2u);
}

// Hostile input on the bulk port: each gets an error frame, is counted, and closes only that
// connection; a well-formed segment afterwards is still stored.
TEST_F(IngestServerTest, BulkGarbageOversizeAndWrongMessagesAreRejectedAndCounted) {
  Start({});
  std::string oversize("\xff\xff\xff\xff", 4);
  std::string garbage = rpc::EncodeFrame("not msgpack at all \x01\x02");
  std::string wrong_kind = rpc::EncodeBulkAck(UlidStream().Next(NowUnixMs()));
  std::string bad_id = rpc::EncodeFrame(std::string("\x93\xa3seg\xa3xyz\xc4\x01\x41", 12));
  std::atomic<int> rejected_ok{0};
  std::thread client([&] {
    for (const std::string& bad : {oversize, garbage, wrong_kind, bad_id}) {
      int fd = ConnectLoopback(server_->bulk_port());
      SendAll(fd, bad);
      BulkRead r = ReadBulk(fd, 2);  // an error, then the close
      if (r.closed && r.msgs.size() == 1 && r.msgs[0].kind == rpc::BulkMessage::Kind::kError) ++rejected_ok;
      ::close(fd);
    }
  });
  RunUntil([&] { return Metric("oklog_ingest_bulk_rejected_total") == 4; });
  client.join();
  EXPECT_EQ(rejected_ok.load(), 4);
  EXPECT_EQ(log_->flushed_count(), 0u);
  std::thread good([&] {
    int fd = ConnectLoopback(server_->bulk_port());
    SendAll(fd, rpc::EncodeBulkSegment(UlidStream().NextRun(NowUnixMs(), 1), "fine\n"));
    ::usleep(200000);
    ::close(fd);
  });
  RunUntil([&] { return log_->flushed_count() == 1; });
  good.join();
  EXPECT_EQ(FlushedPayloads(), std::vector<std::string>{"default fine"});
}

// A bulk id names its records' ULIDs: one at the maximum ULID (whose records would wrap to
// 1970, where retention trashes them) or further ahead than any clock skew is refused with an
// error frame; an id a little ahead of this clock is stored with exactly its ULIDs.
TEST_F(IngestServerTest, BulkSegmentIdsAtTheMaximumOrFarAheadAreRejectedNeverWrapped) {
  Start({});
  const uint64_t day_ms = 24 * 3600 * 1000;
  const std::vector<Ulid> bad = {Ulid::Max(), Ulid::FromParts(Ulid::kMaxUnixMs, 0xFFFF, ~uint64_t{0} - 1),
                                 Ulid::FromParts(NowUnixMs() + 2 * day_ms, 1, 1)};
  std::atomic<int> rejected_ok{0};
  std::vector<std::string> errors(bad.size());
  std::thread client([&] {
    for (size_t i = 0; i < bad.size(); ++i) {
      int fd = ConnectLoopback(server_->bulk_port());
      SendAll(fd, rpc::EncodeBulkSegment(bad[i], "one\ntwo\nthree\n"));
      BulkRead r = ReadBulk(fd, 2);  // an error, then the close
      if (r.closed && r.msgs.size() == 1 && r.msgs[0].kind == rpc::BulkMessage::Kind::kError) {
        ++rejected_ok;
        errors[i] = r.msgs[0].text;
      }
      ::close(fd);
    }
  });
  RunUntil([&] { return Metric("oklog_ingest_bulk_rejected_total") == bad.size(); });
  client.join();
  EXPECT_EQ(rejected_ok.load(), static_cast<int>(bad.size()));
  for (const std::string& e : errors) EXPECT_NE(e.find("bulk segment id"), std::string::npos) << e;
  EXPECT_EQ(log_->flushed_count(), 0u);

  const Ulid ahead = Ulid::FromParts(NowUnixMs() + 3600 * 1000, 2, 7);  // an hour of clock skew
  std::thread good([&] {
    int fd = ConnectLoopback(server_->bulk_port());
    SendAll(fd, rpc::EncodeBulkSegment(ahead, "fine\n"));
    ::usleep(200000);
    ::close(fd);
  });
  RunUntil([&] { return log_->flushed_count() == 1; });
  good.join();
  std::string data;
  for (auto& e : std::filesystem::directory_iterator(dir_.path()))
    if (e.path().extension() == ".flushed") data = ReadFile(e.path());
  EXPECT_EQ(data, ahead.ToString() + " default fine\n");
}

TEST(BulkProtocolTest, MessagesRoundTripAndMalformedOnesAreErrors) {
  const Ulid id = UlidStream().Next(NowUnixMs());
  rpc::FrameDecoder d(rpc::kBulkMaxFrameBytes);
  std::string all = rpc::EncodeBulkSegment(id, std::string("a\0b\n\xff", 5)) + rpc::EncodeBulkAck(id) + rpc::EncodeBulkError("no");
  EXPECT_TRUE(d.Feed(all.data(), all.size()));
  std::string p;
  ASSERT_TRUE(NextFrame(d, &p));
  auto seg = rpc::DecodeBulkMessage(p);
  ASSERT_TRUE(seg.ok());
  EXPECT_EQ(seg->kind, rpc::BulkMessage::Kind::kSegment);
  EXPECT_EQ(seg->id, id);
  EXPECT_EQ(seg->text, std::string("a\0b\n\xff", 5));
  ASSERT_TRUE(NextFrame(d, &p));
  EXPECT_EQ(rpc::DecodeBulkMessage(p)->kind, rpc::BulkMessage::Kind::kAck);
  ASSERT_TRUE(NextFrame(d, &p));
  EXPECT_EQ(rpc::DecodeBulkMessage(p)->text, "no");
  for (std::string bad : {std::string(), std::string("\x90"), std::string("\x92\xa3seg\x01"),
                          std::string("\xc1"), std::string("\x93\xa3" "ack" "\xa1x\x01"), p + "x"})
    EXPECT_FALSE(rpc::DecodeBulkMessage(bad).ok()) << bad.size();
}

// A leaving ingester half-closes and reads on: a forwarder that sees the EOF finishes its line
// and closes, and the line arrives whole; the server closes as soon as the client has.
TEST_F(IngestServerTest, CloseHalfClosesAndReadsUntilTheClientFinishesItsLine) {
  Start({});
  std::atomic<bool> saw_eof{false};
  int fd = -1;
  std::thread client([&] {
    fd = ConnectLoopback(server_->fast_port());
    SendAll(fd, "a\nb\npart");
    char b;
    timeval tv{10, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    saw_eof = ::recv(fd, &b, 1, 0) == 0;
    SendAll(fd, "ial\n");
    ::shutdown(fd, SHUT_WR);
  });
  RunUntil([&] { return server_->connections() == 1; });
  for (int i = 0; i < 20; ++i) uv_run(&loop_, UV_RUN_NOWAIT), usleep(1000);
  bool closed = false;
  auto t0 = std::chrono::steady_clock::now();
  server_->Close([&] { closed = true; });
  RunUntil([&] { return closed; });
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(3));  // not the 5 s bound
  client.join();
  EXPECT_TRUE(saw_eof.load());
  server_.reset();
  ::close(fd);
  EXPECT_EQ(FlushedPayloads(), (std::vector<std::string>{"default a", "default b", "default partial"}));
}

// A client that ignores the half-close is closed after the bound; what it sent is kept.
TEST_F(IngestServerTest, CloseFlushesOpenConnections) {
  Start({});
  int fd = -1;
  std::thread client([&] {
    fd = ConnectLoopback(server_->fast_port());
    SendAll(fd, "a\nb\npartial");
  });
  client.join();
  RunUntil([&] { return server_->connections() == 1; });
  // Let the bytes arrive.
  for (int i = 0; i < 50; ++i) uv_run(&loop_, UV_RUN_NOWAIT), usleep(2000);
  bool closed = false;
  server_->Close([&] { closed = true; });
  RunUntil([&] { return closed; });
  server_.reset();
  ::close(fd);
  auto p = FlushedPayloads();
  EXPECT_EQ(p, (std::vector<std::string>{"default a", "default b", "default partial"}));
}

}  // namespace
}  // namespace oklog
