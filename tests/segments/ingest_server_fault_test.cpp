// The ingest listeners over a failing disk: an IngestServer on real sockets whose IngestLog
// writes through FaultInjectionEnv. ENOSPC and EIO while the durable group commit writes or
// fdatasyncs, and while a bulk segment is written. What each producer gets:
//   - durable (no acks in the protocol: an open connection is its only promise): the server
//     closes the connection of every producer in the failed batch and reads nothing more from
//     it, so the producer sees EOF (or a reset), never silence that looks like success;
//   - bulk: an ["error", "storing segment: ..."] frame, then the close; never ["ack", id];
//   - fast (no promise at all): its buffered records are lost, logged and counted.
// In every case the failure is logged at error level and counted, no flushed segment holds a
// torn or invalid record, and once the fault is cleared new writes are stored (durable ones
// survive a power cut; a bulk resend is stored once and acknowledged when committed).
// And a disk below its free-space floor (DiskGuard), or shedding: the listeners close (connects
// are refused), open newline connections are half-closed and what their producers send until
// they close is stored, bulk ones get an error frame and no ack; the same ports take producers
// again when the disk has room (or shedding ends).
#include <gtest/gtest.h>
#include <spdlog/sinks/ringbuffer_sink.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <set>
#include <thread>

#include "common/fs/fault_injection_env.h"
#include "common/log.h"
#include "rpc/bulk_protocol.h"
#include "rpc/frame_codec.h"
#include "segments/ingest_server.h"
#include "segments/record_merge.h"
#include "test_util.h"

namespace oklog {
namespace {

struct FaultCase {
  FsOp op;
  int error;
  bool torn;
};
std::string Describe(const FaultCase& f) {
  return std::string(f.op == FsOp::kWrite ? "write" : "sync") + " fails with " + std::strerror(f.error) +
         (f.torn ? " (torn)" : "");
}

// Reads until the peer closes (true) or 10 s of silence (false); the bytes read go to *got.
bool ReadUntilClosed(int fd, std::string* got) {
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  char buf[4096];
  for (;;) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n > 0) {
      got->append(buf, static_cast<size_t>(n));
      continue;
    }
    return n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK);
  }
}

std::vector<rpc::BulkMessage> DecodeAll(const std::string& bytes) {
  std::vector<rpc::BulkMessage> out;
  rpc::FrameDecoder frames(1 << 20);
  EXPECT_TRUE(frames.Feed(bytes.data(), bytes.size()));
  std::string payload;
  for (;;) {
    Result<bool> r = frames.Next(&payload);
    if (!r.ok() || !*r) break;
    auto m = rpc::DecodeBulkMessage(payload);
    EXPECT_TRUE(m.ok()) << m.status().ToString();
    if (m.ok()) out.push_back(*m);
  }
  return out;
}

// Blocks until fd delivers at least one whole bulk frame, closes, or is silent for 10 s.
std::vector<rpc::BulkMessage> RecvBulkFrames(int fd) {
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::string got;
  char buf[512];
  while (DecodeAll(got).empty()) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
  }
  return DecodeAll(got);
}

class IngestServerFaultTest : public ::testing::TestWithParam<FaultCase> {
 protected:
  void SetUp() override {
    ASSERT_EQ(uv_loop_init(&loop_), 0);
    OpenLog();
    log_lines_->set_pattern("level=%l %v");
    Logger("ingest")->sinks().push_back(log_lines_);
  }
  void TearDown() override {
    CloseServer();
    uv_run(&loop_, UV_RUN_DEFAULT);
    EXPECT_EQ(uv_loop_close(&loop_), 0);
    auto& sinks = Logger("ingest")->sinks();
    sinks.erase(std::remove(sinks.begin(), sinks.end(), log_lines_), sinks.end());
  }
  void OpenLog() {
    IngestLog::Options o;
    o.env = &env_;
    auto log = IngestLog::Open(dir_.path(), o, &metrics_);
    ASSERT_TRUE(log.ok()) << log.status().ToString();
    log_ = std::move(log).value();
  }
  void Start() {
    IngestServerOptions o;
    o.fast = *ParseAddress("127.0.0.1:0", 0);
    o.durable = *ParseAddress("127.0.0.1:0", 0);
    o.bulk = *ParseAddress("127.0.0.1:0", 0);
    o.disk_guard = guard_.get();
    auto s = IngestServer::Create(&loop_, log_.get(), o, &metrics_);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    server_ = std::move(s).value();
  }
  void CloseServer() {
    if (!server_) return;
    bool closed = false;
    server_->Close([&] { closed = true; });
    RunUntil([&] { return closed; });
    server_.reset();
  }
  void RunUntil(const std::function<bool()>& done) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (!done() && std::chrono::steady_clock::now() < deadline) uv_run(&loop_, UV_RUN_NOWAIT), usleep(1000);
    ASSERT_TRUE(done());
  }
  uint64_t Metric(const std::string& series) {
    double v = SeriesValue(metrics_.Render(), series);
    return v < 0 ? 0 : static_cast<uint64_t>(v);
  }
  bool Logged(const std::string& a, const std::string& b) {
    for (const std::string& line : log_lines_->last_formatted())
      if (line.find("level=error") != std::string::npos && line.find(a) != std::string::npos &&
          line.find(b) != std::string::npos)
        return true;
    return false;
  }
  // Every record of every flushed segment (topic and line), checking that each file holds only
  // whole, valid records; and that no .active file is left.
  std::multiset<std::string> Flushed() {
    std::multiset<std::string> out;
    for (auto& e : std::filesystem::directory_iterator(dir_.path())) {
      EXPECT_NE(e.path().extension(), ".active") << e.path() << " left behind";
      if (e.path().extension() != ".flushed") continue;
      std::string data = ReadFile(e.path());
      if (!data.empty()) {
        EXPECT_EQ(data.back(), '\n') << e.path() << " ends in a torn record";
      }
      ParseStats ps;
      for (auto r : ParseRecords(data, &ps)) out.emplace(r.substr(27, r.size() - 28));
      EXPECT_EQ(ps.invalid, 0u) << e.path();
    }
    return out;
  }
  static std::string ErrnoText(int err) { return std::strerror(err); }

  FaultInjectionEnv env_;
  TempDir dir_;
  Registry metrics_;
  uv_loop_t loop_;
  std::unique_ptr<IngestLog> log_;
  std::unique_ptr<DiskGuard> guard_;  // set before Start to guard the server
  std::unique_ptr<IngestServer> server_;
  std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> log_lines_ =
      std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(256);
};

// ---- durable group commit ----

class DurableFaultTest : public IngestServerFaultTest {};

TEST_P(DurableFaultTest, FailedGroupCommitClosesTheProducerIsLoggedCountedAndLaterCommitsAreDurable) {
  const FaultCase f = GetParam();
  SCOPED_TRACE(Describe(f));
  env_.Inject({.op = f.op, .error = f.error, .path_contains = ".active", .torn = f.torn});
  Start();
  // The failing producer: its batch cannot reach the disk; the server must close it.
  std::atomic<int> closed{0};
  std::string reply;
  std::thread a([&] {
    int fd = ConnectLoopback(server_->durable_port());
    std::string lines;
    for (int i = 0; i < 50; ++i) lines += "a" + std::to_string(i) + "\n";
    SendAll(fd, lines);
    closed = ReadUntilClosed(fd, &reply) ? 1 : -1;
    ::close(fd);
  });
  RunUntil([&] { return closed != 0; });
  a.join();
  EXPECT_EQ(closed.load(), 1) << "the producer of a failed batch was left open, as if its data were safe";
  EXPECT_TRUE(reply.empty()) << "the durable port never answers with bytes";
  EXPECT_EQ(Metric("oklog_ingest_write_errors_total"), 1u);
  EXPECT_EQ(Metric("oklog_ingest_writer_syncs_total"), 0u);
  EXPECT_TRUE(Logged("durable group commit", ErrnoText(f.error)));
  RunUntil([&] { return server_->connections() == 0; });
  // What the failed segment kept is whole records only (maybe none).
  for (const std::string& r : Flushed()) EXPECT_EQ(r.substr(0, 9), "default a") << r;

  // Space returns: new durable writes are committed, and survive a power cut.
  env_.ClearFaults();
  std::atomic<bool> b_done{false};
  std::thread b([&] {
    int fd = ConnectLoopback(server_->durable_port());
    for (int i = 0; i < 100; ++i) SendAll(fd, "b" + std::to_string(i) + "\n");
    ::close(fd);
    b_done = true;
  });
  RunUntil([&] {
    return b_done && server_->connections() == 0 && Metric("oklog_ingest_writer_records_written_total") == 150;
  });
  b.join();
  CloseServer();  // waits for the commit in flight
  EXPECT_EQ(Metric("oklog_ingest_write_errors_total"), 1u) << "a commit after the fault was cleared failed";
  EXPECT_GT(Metric("oklog_ingest_writer_syncs_total"), 0u);
  log_.reset();
  ASSERT_TRUE(env_.SimulatePowerLoss().ok());
  OpenLog();
  std::multiset<std::string> got = Flushed();
  for (int i = 0; i < 100; ++i) EXPECT_EQ(got.count("default b" + std::to_string(i)), 1u) << i;
}

INSTANTIATE_TEST_SUITE_P(WriteAndSync, DurableFaultTest,
                         ::testing::Values(FaultCase{FsOp::kWrite, ENOSPC, false}, FaultCase{FsOp::kWrite, EIO, true},
                                           FaultCase{FsOp::kSync, ENOSPC, false}, FaultCase{FsOp::kSync, EIO, false}));

// ---- bulk segment write ----

class BulkFaultTest : public IngestServerFaultTest {};

TEST_P(BulkFaultTest, FailedSegmentWriteGetsAnErrorFrameNoAckAndTheResendIsStoredOnce) {
  const FaultCase f = GetParam();
  SCOPED_TRACE(Describe(f));
  env_.Inject({.op = f.op, .error = f.error, .path_contains = ".active", .torn = f.torn});
  Start();
  const Ulid id = UlidStream().NextRun(NowUnixMs(), 3);
  const std::string frame = rpc::EncodeBulkSegment(id, "one\ntwo\nthree\n");
  std::string reply;
  std::atomic<int> closed{0};
  std::thread a([&] {
    int fd = ConnectLoopback(server_->bulk_port());
    SendAll(fd, frame);
    closed = ReadUntilClosed(fd, &reply) ? 1 : -1;
    ::close(fd);
  });
  RunUntil([&] { return closed != 0; });
  a.join();
  EXPECT_EQ(closed.load(), 1);
  std::vector<rpc::BulkMessage> msgs = DecodeAll(reply);
  ASSERT_EQ(msgs.size(), 1u);
  EXPECT_EQ(msgs[0].kind, rpc::BulkMessage::Kind::kError);
  EXPECT_NE(msgs[0].text.find("storing segment"), std::string::npos) << msgs[0].text;
  EXPECT_EQ(Metric("oklog_ingest_write_errors_total"), 1u);
  EXPECT_EQ(Metric("oklog_ingest_bulk_segments_total{result=\"error\"}"), 1u);
  EXPECT_EQ(Metric("oklog_ingest_bulk_segments_total{result=\"stored\"}"), 0u);
  EXPECT_EQ(Metric("oklog_ingest_bulk_unacked_segments"), 0u);
  EXPECT_TRUE(Logged("storing bulk segment " + id.ToString(), ErrnoText(f.error)));
  // Whatever the failed write left is whole records; commit it as a store would: no ack is
  // owed for it (the producer was told it failed).
  for (const std::string& r : Flushed()) EXPECT_NE(r.find("default "), std::string::npos);
  for (const auto& p : log_->Claim(uint64_t{1} << 40)) ASSERT_TRUE(log_->Commit(p.id).ok());

  // Space returns: the forwarder's resend is stored once and acknowledged when committed.
  env_.ClearFaults();
  std::atomic<bool> acked{false};
  std::thread b([&] {
    int fd = ConnectLoopback(server_->bulk_port());
    SendAll(fd, frame);
    std::vector<rpc::BulkMessage> m = RecvBulkFrames(fd);
    acked = m.size() == 1 && m[0].kind == rpc::BulkMessage::Kind::kAck && m[0].id == id;
    ::close(fd);
  });
  // The file is flushed on the disk pool; the write's report reaches the loop just after.
  RunUntil([&] {
    return log_->flushed_count() == 1 && Metric("oklog_ingest_bulk_segments_total{result=\"stored\"}") == 1;
  });
  EXPECT_EQ(Flushed(), (std::multiset<std::string>{"default one", "default two", "default three"}));
  EXPECT_FALSE(acked.load());
  for (const auto& p : log_->Claim(uint64_t{1} << 40)) ASSERT_TRUE(log_->Commit(p.id).ok());
  RunUntil([&] { return acked.load(); });
  b.join();
  EXPECT_EQ(Metric("oklog_ingest_bulk_acks_total"), 1u);
  EXPECT_EQ(Metric("oklog_ingest_write_errors_total"), 1u);
  EXPECT_EQ(log_->flushed_count(), 0u);
}

INSTANTIATE_TEST_SUITE_P(Write, BulkFaultTest,
                         ::testing::Values(FaultCase{FsOp::kWrite, ENOSPC, false}, FaultCase{FsOp::kWrite, EIO, true}));


// ---- fast: the segment's write at flush ----

// A fast connection's records are buffered and written when its segment flushes (here: at its
// close). A full disk there loses them (the fast port promises nothing), but not quietly: the
// loss is logged and counted, and no torn file is left.
class FastFaultTest : public IngestServerFaultTest {};

TEST_F(FastFaultTest, FailedWriteAtFlushIsLoggedAndCountedAndLeavesNoTornFile) {
  env_.Inject({.op = FsOp::kWrite, .error = ENOSPC, .path_contains = ".active", .times = 1});
  Start();
  std::atomic<bool> sent{false};
  std::thread a([&] {
    int fd = ConnectLoopback(server_->fast_port());
    SendAll(fd, "lost 1\nlost 2\n");
    ::close(fd);
    sent = true;
  });
  RunUntil([&] { return sent && Metric("oklog_ingest_write_errors_total") == 1; });
  a.join();
  RunUntil([&] { return server_->connections() == 0; });
  EXPECT_TRUE(Logged("writing segment=", ErrnoText(ENOSPC)));
  EXPECT_TRUE(Flushed().empty());
  // The fault lifted after one failure: the next connection's records are stored.
  std::thread b([&] {
    int fd = ConnectLoopback(server_->fast_port());
    SendAll(fd, "kept\n");
    ::close(fd);
  });
  RunUntil([&] { return log_->flushed_count() == 1; });
  b.join();
  EXPECT_EQ(Flushed(), std::multiset<std::string>{"default kept"});
  EXPECT_EQ(Metric("oklog_ingest_write_errors_total"), 1u);
}

// ---- disk below its free-space floor ----

class DiskFullTest : public IngestServerFaultTest {
 protected:
  void SetUp() override {
    IngestServerFaultTest::SetUp();
    DiskGuard::Options o;
    o.dir = dir_.path();
    o.label = "ingest";
    o.flag = "-ingest.min-free-bytes";
    o.min_free_bytes = 64 << 20;
    o.env = &env_;
    guard_ = std::make_unique<DiskGuard>(o, &metrics_);
    env_.SetFreeBytes(uint64_t{1} << 30);
    guard_->Poll();
    Start();
  }
  void SetFree(uint64_t bytes) {
    env_.SetFreeBytes(bytes);
    ASSERT_EQ(guard_->Poll(), bytes < (64u << 20));
  }
  // Connects, sends `send`, and reads until the server closes (true) or 10 s pass; the loop
  // runs meanwhile.
  bool SendAndSeeClosed(uint16_t port, const std::string& send, std::string* reply) {
    std::atomic<int> closed{0};
    std::thread t([&] {
      int fd = ConnectLoopback(port);
      if (!send.empty()) SendAll(fd, send);
      closed = ReadUntilClosed(fd, reply) ? 1 : -1;
      ::close(fd);
    });
    RunUntil([&] { return closed != 0; });
    t.join();
    return closed == 1;
  }
  // Waits for one bulk frame on fd (the loop runs meanwhile).
  std::vector<rpc::BulkMessage> ReadBulkReply(int fd) {
    std::vector<rpc::BulkMessage> msgs;
    std::atomic<bool> done{false};
    std::thread t([&] {
      msgs = RecvBulkFrames(fd);
      done = true;
    });
    RunUntil([&] { return done.load(); });
    t.join();
    return msgs;
  }
  std::string reason() const { return guard_->reason(); }
};

TEST_F(DiskFullTest, EveryListenerClosesWhileTheDiskIsFullAndOpensAgainOnTheSamePort) {
  const uint16_t ports[] = {server_->fast_port(), server_->durable_port(), server_->bulk_port()};
  SetFree(10 << 20);
  RunUntil([&] { return Metric("oklog_ingest_refusing") == 1; });
  for (uint16_t port : ports) {
    int fd = ConnectLoopback(port);
    EXPECT_LT(fd, 0) << "port " << port << " took a connection while the disk is full";
    if (fd >= 0) ::close(fd);
  }
  // Room again: the same ports take producers, and store what they send.
  SetFree(1 << 30);
  RunUntil([&] { return Metric("oklog_ingest_refusing") == 0; });
  EXPECT_EQ(server_->fast_port(), ports[0]);
  std::atomic<bool> sent{false};
  std::thread a([&] {
    int fd = ConnectLoopback(ports[0]);
    SendAll(fd, "fast again\n");
    ::close(fd);
    sent = true;
  });
  RunUntil([&] { return sent && log_->flushed_count() == 1; });
  a.join();
  EXPECT_EQ(Flushed(), std::multiset<std::string>{"default fast again"});
}

// Open connections when the disk fills: newline ones are half-closed and what their producer
// sends until it closes is stored (nothing lost); a bulk one gets an error frame and no ack.
TEST_F(DiskFullTest, OpenNewlineConnectionsAreHandedOverLosingNothingAndBulkOnesToldToMove) {
  int fast = ConnectLoopback(server_->fast_port());
  int durable = ConnectLoopback(server_->durable_port());
  int bulk = ConnectLoopback(server_->bulk_port());
  SendAll(fast, "before fast\n");
  SendAll(durable, "before durable\n");
  RunUntil([&] { return server_->connections() == 3 && Metric("oklog_ingest_writer_records_written_total") == 2; });

  SetFree(1 << 20);
  std::vector<rpc::BulkMessage> msgs = ReadBulkReply(bulk);
  ASSERT_EQ(msgs.size(), 1u);
  EXPECT_EQ(msgs[0].kind, rpc::BulkMessage::Kind::kError);
  EXPECT_EQ(msgs[0].text, "ingest refused: " + reason());
  EXPECT_NE(msgs[0].text.find("below -ingest.min-free-bytes"), std::string::npos) << msgs[0].text;
  ::close(bulk);
  // The newline connections see EOF (a half-close), finish, and close.
  for (int fd : {fast, durable}) {
    std::string reply;
    std::atomic<bool> eof{false};
    std::thread t([&] {
      char c;
      eof = ::recv(fd, &c, 1, 0) == 0;
    });
    RunUntil([&] { return eof.load(); });
    t.join();
    SendAll(fd, fd == fast ? "after fast\n" : "after durable\n");
    ::close(fd);
  }
  RunUntil([&] { return server_->connections() == 0; });
  RunUntil([&] { return log_->flushed_count() >= 2; });
  CloseServer();
  EXPECT_EQ(Flushed(), (std::multiset<std::string>{"default before fast", "default before durable",
                                                    "default after fast", "default after durable"}));
  EXPECT_EQ(Metric("oklog_ingest_bulk_acks_total"), 0u);
}

// The same refusal for clients with the back channel (segments/ingest_acks.h): both are told
// "leave"; the fast one is half-closed too, the durable one stays open and its last lines are
// still acknowledged after the leave, until the client half-closes and the server closes.
TEST_F(DiskFullTest, ClientsWithTheBackChannelAreToldToLeaveAndTheDurableOneGetsItsLastAcks) {
  int fast = ConnectLoopback(server_->fast_port());
  int durable = ConnectLoopback(server_->durable_port());
  SendAll(fast, "oklog-acks 1\nbefore fast\n");
  SendAll(durable, "oklog-acks 1\nbefore durable\n");
  RunUntil([&] { return server_->connections() == 2 && Metric("oklog_ingest_writer_records_written_total") == 2; });
  SetFree(1 << 20);
  for (int fd : {fast, durable}) {
    std::atomic<bool> told{false};
    std::string got;
    std::thread t([&] {
      char c;
      while (got.find("leave\n") == std::string::npos && ::recv(fd, &c, 1, 0) == 1) got += c;
      told = got.find("leave\n") != std::string::npos && (fd == durable || ::recv(fd, &c, 1, 0) == 0);
    });
    RunUntil([&] { return told.load(); });
    t.join();
    EXPECT_EQ(got, fd == fast ? "oklog-fast 1\nleave\n" : "oklog-durable 1\nack 15\nleave\n");
    SendAll(fd, fd == fast ? "after fast\n" : "after durable\n");
    ::shutdown(fd, SHUT_WR);
  }
  std::string rest;
  std::atomic<bool> closed{false};
  std::thread t([&] {
    char c[64];
    ssize_t n;
    while ((n = ::recv(durable, c, sizeof c, 0)) > 0) rest.append(c, static_cast<size_t>(n));
    closed = n == 0;
  });
  RunUntil([&] { return closed.load(); });
  t.join();
  EXPECT_EQ(rest, "ack 29\n") << "the durable line sent after the leave was not acknowledged before the close";
  ::close(fast);
  ::close(durable);
  RunUntil([&] { return server_->connections() == 0; });
  RunUntil([&] { return log_->flushed_count() >= 2; });
  CloseServer();
  EXPECT_EQ(Flushed(), (std::multiset<std::string>{"default before fast", "default before durable",
                                                    "default after fast", "default after durable"}));
}

// ---- shedding (the node decides; the server refuses and hands over) ----

class SheddingTest : public DiskFullTest {};

TEST_F(SheddingTest, ListenersCloseBulkForwardersAreToldToMoveAndItAllEndsWhenSheddingStops) {
  const uint16_t fast_port = server_->fast_port();
  int fast = ConnectLoopback(fast_port);
  int bulk = ConnectLoopback(server_->bulk_port());
  RunUntil([&] { return server_->connections() == 2; });
  server_->SetShedding("the stores consumed nothing for 31s");
  EXPECT_EQ(Metric("oklog_ingest_refusing"), 1u);
  std::vector<rpc::BulkMessage> msgs = ReadBulkReply(bulk);
  ASSERT_EQ(msgs.size(), 1u);
  EXPECT_EQ(msgs[0].kind, rpc::BulkMessage::Kind::kError);
  EXPECT_EQ(msgs[0].text, "ingest refused: shedding: the stores consumed nothing for 31s");
  ::close(bulk);
  int refused = ConnectLoopback(server_->durable_port());
  EXPECT_LT(refused, 0) << "a shedding ingester took a new connection";
  if (refused >= 0) ::close(refused);
  // The open fast connection is handed over: its last lines are kept.
  std::atomic<bool> eof{false};
  std::thread t([&] {
    char c;
    eof = ::recv(fast, &c, 1, 0) == 0;
  });
  RunUntil([&] { return eof.load(); });
  t.join();
  SendAll(fast, "last words\n");
  ::close(fast);
  RunUntil([&] { return server_->connections() == 0 && log_->flushed_count() == 1; });

  server_->SetShedding("");
  EXPECT_EQ(Metric("oklog_ingest_refusing"), 0u);
  std::atomic<bool> sent{false};
  std::thread a([&] {
    int fd = ConnectLoopback(fast_port);
    SendAll(fd, "taken again\n");
    ::close(fd);
    sent = true;
  });
  RunUntil([&] { return sent && log_->flushed_count() == 2; });
  a.join();
  EXPECT_EQ(Flushed(), (std::multiset<std::string>{"default last words", "default taken again"}));
}

}  // namespace
}  // namespace oklog
