#include "segments/ingest_server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <thread>

#include "segments/record_merge.h"
#include "test_util.h"

namespace oklog {
namespace {

int Connect(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

void SendAll(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return;
    off += static_cast<size_t>(n);
  }
}

class IngestServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    uv_loop_init(&loop_);
    auto log = IngestLog::Open(dir_.path(), {}, &metrics_);
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
    int fd = Connect(server_->fast_port());
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
    fd = Connect(server_->fast_port());
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
      int fd = Connect(server_->durable_port());
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

TEST_F(IngestServerTest, BulkPortClosesUntilClusterBulkExists) {
  Start({});
  std::atomic<bool> got_eof{false};
  std::thread client([&] {
    int fd = Connect(server_->bulk_port());
    char b;
    got_eof = ::recv(fd, &b, 1, 0) <= 0;
    ::close(fd);
  });
  RunUntil([&] { return got_eof.load(); });
  client.join();
}

TEST_F(IngestServerTest, CloseFlushesOpenConnections) {
  Start({});
  int fd = -1;
  std::thread client([&] {
    fd = Connect(server_->fast_port());
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
