// The ingest listeners over TLS (IngestServerOptions::tls, IngestConn's TLS edge): records
// arrive decrypted whatever the record boundaries, a client without a certificate stores
// nothing, and a connection that never completes its handshake is closed at its deadline.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>

#include <filesystem>
#include <thread>

#include "common/crypto/tls_session.h"
#include "segments/ingest_server.h"
#include "segments/record_merge.h"
#include "test_util.h"
#include "tls_test_certs.h"

namespace oklog {
namespace {

using crypto::TlsContext;
using crypto::TlsRole;
using crypto::TlsSession;

// A blocking TLS client on a loopback socket, for a test thread.
class TlsClient {
 public:
  TlsClient(uint16_t port, std::shared_ptr<const TlsContext> ctx) : fd_(ConnectLoopback(port)) {
    session_ = std::move(TlsSession::Create(std::move(ctx), "server", "127.0.0.1")).value();
  }
  ~TlsClient() { ::close(fd_); }
  // Handshakes until the server accepted us; false when it refused.
  bool Handshake() {
    char buf[16384];
    while (!session_->peer_confirmed()) {
      SendAll(fd_, session_->TakeCiphertext());
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 5000) <= 0) return false;
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) return false;
      std::string plain;
      if (!session_->Feed(std::string_view(buf, static_cast<size_t>(n)), &plain).ok()) return false;
    }
    SendAll(fd_, session_->TakeCiphertext());
    return true;
  }
  // Encrypts data and sends it in pieces of `slice` bytes of ciphertext.
  void Send(const std::string& data, size_t slice) {
    ASSERT_TRUE(session_->Write(data).ok());
    std::string ct = session_->TakeCiphertext();
    for (size_t off = 0; off < ct.size(); off += slice) {
      SendAll(fd_, ct.substr(off, slice));
      if (slice < 64) std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  }
  void Close() {
    session_->Shutdown();
    SendAll(fd_, session_->TakeCiphertext());
    ::shutdown(fd_, SHUT_WR);
  }
  int fd() const { return fd_; }

 private:
  int fd_;
  std::unique_ptr<TlsSession> session_;
};

class IngestTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pki_ = testing::TestPki::Make(certs_.path());
    uv_loop_init(&loop_);
    log_ = std::move(IngestLog::Open(dir_.path(), {}, &metrics_)).value();
  }
  void Start(std::chrono::milliseconds handshake_timeout = std::chrono::seconds(10)) {
    IngestServerOptions o;
    o.fast = *ParseAddress("127.0.0.1:0", 0);
    o.durable = *ParseAddress("127.0.0.1:0", 0);
    o.bulk = *ParseAddress("127.0.0.1:0", 0);
    auto ctx = TlsContext::Create(TlsRole::kServer,
                                  {pki_.server_cert, pki_.server_key, pki_.ca, "ingest", handshake_timeout}, &metrics_);
    ASSERT_TRUE(ctx.ok()) << ctx.status().ToString();
    o.tls = *ctx;
    server_ = std::move(IngestServer::Create(&loop_, log_.get(), o, &metrics_)).value();
  }
  std::shared_ptr<const TlsContext> Client(bool with_cert) {
    return *TlsContext::Create(TlsRole::kClient,
                               {with_cert ? pki_.client_cert : "", with_cert ? pki_.client_key : "", pki_.ca, "c"},
                               nullptr);
  }
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
  std::vector<std::string> FlushedPayloads() {
    std::vector<std::string> out;
    for (auto& e : std::filesystem::directory_iterator(dir_.path())) {
      if (e.path().extension() != ".flushed") continue;
      std::string data = ReadFile(e.path());
      ParseStats ps;
      for (auto r : ParseRecords(data, &ps)) out.emplace_back(r.substr(27, r.size() - 28));
    }
    return out;
  }
  double Failures() {
    return SeriesValue(metrics_.Render(), "oklog_tls_handshake_failures_total{listener=\"ingest\"}");
  }

  TempDir dir_, certs_;
  testing::TestPki pki_;
  Registry metrics_;
  uv_loop_t loop_;
  std::unique_ptr<IngestLog> log_;
  std::unique_ptr<IngestServer> server_;
};

TEST_F(IngestTlsTest, FastAndDurableRecordsArriveDecryptedWhateverTheSlices) {
  Start();
  std::atomic<int> done{0};
  std::thread client([&] {
    for (uint16_t port : {server_->fast_port(), server_->durable_port()}) {
      TlsClient c(port, Client(true));
      ASSERT_TRUE(c.Handshake());
      std::string data;
      for (int i = 0; i < 2000; ++i) data += "p" + std::to_string(port) + " line " + std::to_string(i) + "\n";
      c.Send(data.substr(0, 300), 7);  // records cut at odd ciphertext boundaries
      c.Send(data.substr(300), 1 << 16);
      c.Close();
      char b[64];
      while (::recv(c.fd(), b, sizeof b, 0) > 0) {
      }
      ++done;
    }
  });
  RunUntil([&] { return done == 2 && server_->connections() == 0 && log_->flushed_count() > 0; });
  client.join();
  RunUntil([&] { return FlushedPayloads().size() == 4000u; });
  auto p = FlushedPayloads();
  std::sort(p.begin(), p.end());
  EXPECT_NE(std::find(p.begin(), p.end(), "default p" + std::to_string(server_->fast_port()) + " line 1999"), p.end());
  EXPECT_NE(std::find(p.begin(), p.end(), "default p" + std::to_string(server_->durable_port()) + " line 0"), p.end());
  EXPECT_EQ(Failures(), 0);
}

TEST_F(IngestTlsTest, NoClientCertificateOrPlainBytesStoreNothing) {
  Start();
  std::atomic<bool> done{false};
  std::thread client([&] {
    TlsClient c(server_->fast_port(), Client(false));
    EXPECT_FALSE(c.Handshake());
    ASSERT_TRUE(SendAndDrain(server_->fast_port(), "plain text line\n"));
    done = true;
  });
  RunUntil([&] { return done && server_->connections() == 0; });
  client.join();
  EXPECT_TRUE(FlushedPayloads().empty());
  EXPECT_EQ(Failures(), 2);
}

TEST_F(IngestTlsTest, SilentConnectionIsClosedAtTheHandshakeDeadline) {
  Start(std::chrono::milliseconds(200));
  int fd = ConnectLoopback(server_->bulk_port());
  RunUntil([&] { return server_->connections() == 1; });
  const auto start = std::chrono::steady_clock::now();
  RunUntil([&] { return server_->connections() == 0; });
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));
  EXPECT_EQ(Failures(), 1);
  ::close(fd);
}

}  // namespace
}  // namespace oklog
