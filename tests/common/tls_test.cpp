// TlsContext and TlsSession: the engine alone (two sessions wired back to back in memory), then
// over real sockets: the HTTP server with TLS against HttpFetch, curl and a raw socket.
#include "common/crypto/tls_session.h"

#include <gtest/gtest.h>
#include <openssl/ssl.h>

#include <random>

#include "common/http_client.h"
#include "common/http_server.h"
#include "common/http_test_util.h"
#include "common/metrics.h"
#include "test_util.h"
#include "tls_test_certs.h"

namespace oklog {
namespace {

using namespace std::chrono_literals;
using crypto::TlsContext;
using crypto::TlsOptions;
using crypto::TlsRole;
using crypto::TlsSession;
using testing::Curl;
using testing::LoopThread;
using testing::RawClient;
using testing::TestPki;
using testing::WaitFor;

constexpr const char* kFailures = "oklog_tls_handshake_failures_total{listener=\"test\"}";

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override { pki_ = TestPki::Make(dir_.path()); }

  std::shared_ptr<const TlsContext> Server(const std::string& client_ca = "") {
    TlsOptions o{pki_.server_cert, pki_.server_key, client_ca, "test", 10000ms};
    auto c = TlsContext::Create(TlsRole::kServer, o, &metrics_);
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return c.ok() ? *c : nullptr;
  }
  std::shared_ptr<const TlsContext> Client(const std::string& ca, const std::string& cert = "",
                                           const std::string& key = "") {
    TlsOptions o{cert, key, ca, "client", 10000ms};
    auto c = TlsContext::Create(TlsRole::kClient, o, nullptr);
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return c.ok() ? *c : nullptr;
  }
  double Failures() { return SeriesValue(metrics_.Render(), kFailures); }

  TempDir dir_;
  TestPki pki_;
  Registry metrics_;
};

// Moves ciphertext between two sessions until neither has any; collects what each side reads.
// Returns the first error of either side.
Status Shuttle(TlsSession* client, TlsSession* server, std::string* client_read, std::string* server_read) {
  for (int round = 0; round < 20; ++round) {
    std::string to_server = client->TakeCiphertext();
    std::string to_client = server->TakeCiphertext();
    if (to_server.empty() && to_client.empty()) return Status::Ok();
    if (!to_server.empty()) OKLOG_RETURN_IF_ERROR(server->Feed(to_server, server_read));
    if (!to_client.empty()) OKLOG_RETURN_IF_ERROR(client->Feed(to_client, client_read));
  }
  return Status::Ok();
}

TEST_F(TlsTest, HandshakeThenDataBothWaysThenCloseNotify) {
  auto server = TlsSession::Create(Server(), "client-peer");
  auto client = TlsSession::Create(Client(pki_.ca), "server-peer", "localhost");
  ASSERT_TRUE(server.ok() && client.ok());
  ASSERT_TRUE((*client)->Write("written before the handshake").ok());  // held until established
  std::string c_read, s_read;
  ASSERT_TRUE(Shuttle(client->get(), server->get(), &c_read, &s_read).ok());
  EXPECT_TRUE((*server)->established());
  EXPECT_TRUE((*client)->established());
  EXPECT_EQ(s_read, "written before the handshake");
  std::string big(300 * 1024, 'x');
  ASSERT_TRUE((*server)->Write(big).ok());
  ASSERT_TRUE(Shuttle(client->get(), server->get(), &c_read, &s_read).ok());
  EXPECT_EQ(c_read, big);
  (*client)->Shutdown();
  ASSERT_TRUE(Shuttle(client->get(), server->get(), &c_read, &s_read).ok());
  EXPECT_TRUE((*server)->peer_closed());
  EXPECT_FALSE((*client)->Write("after shutdown").ok());
  EXPECT_EQ(Failures(), 0);
}

TEST_F(TlsTest, Tls12ClientIsServed) {
  auto ctx = Client(pki_.ca);
  SSL_CTX_set_max_proto_version(ctx->ssl_ctx(), TLS1_2_VERSION);
  auto server = TlsSession::Create(Server(), "p");
  auto client = TlsSession::Create(ctx, "s", "127.0.0.1");
  std::string c_read, s_read;
  ASSERT_TRUE((*client)->Write("ping").ok());
  ASSERT_TRUE(Shuttle(client->get(), server->get(), &c_read, &s_read).ok());
  EXPECT_EQ(s_read, "ping");
}

TEST_F(TlsTest, Tls11ClientIsRefused) {
  auto ctx = Client(pki_.ca);
  SSL_CTX_set_min_proto_version(ctx->ssl_ctx(), TLS1_VERSION);
  SSL_CTX_set_max_proto_version(ctx->ssl_ctx(), TLS1_1_VERSION);
  SSL_CTX_set_security_level(ctx->ssl_ctx(), 0);
  auto server = TlsSession::Create(Server(), "p");
  auto client = TlsSession::Create(ctx, "s", "localhost");
  if (!client.ok()) return;  // this OpenSSL cannot even offer TLS 1.1: refused all the same
  std::string c_read, s_read;
  EXPECT_FALSE(Shuttle(client->get(), server->get(), &c_read, &s_read).ok());
  EXPECT_FALSE((*server)->established());
}

TEST_F(TlsTest, ClientCaRequiresAClientCertificate) {
  auto server = TlsSession::Create(Server(pki_.ca), "anonymous");
  auto client = TlsSession::Create(Client(pki_.ca), "s", "localhost");
  ASSERT_TRUE((*client)->Write("GET / HTTP/1.1\r\n\r\n").ok());
  std::string c_read, s_read;
  Status s = Shuttle(client->get(), server->get(), &c_read, &s_read);
  EXPECT_FALSE(s.ok());
  EXPECT_FALSE((*server)->established());
  EXPECT_TRUE((*server)->failed());
  EXPECT_TRUE(s_read.empty());
  EXPECT_EQ(Failures(), 1);
}

TEST_F(TlsTest, ClientCertificateOfAnotherCaIsRefused) {
  auto server = TlsSession::Create(Server(pki_.ca), "stranger");
  auto client =
      TlsSession::Create(Client(pki_.ca, pki_.other_client_cert, pki_.other_client_key), "s", "localhost");
  std::string c_read, s_read;
  EXPECT_FALSE(Shuttle(client->get(), server->get(), &c_read, &s_read).ok());
  EXPECT_FALSE((*server)->established());
  EXPECT_EQ(Failures(), 1);
}

TEST_F(TlsTest, ClientCertificateOfTheClientCaIsAccepted) {
  auto server = TlsSession::Create(Server(pki_.ca), "known");
  auto client = TlsSession::Create(Client(pki_.ca, pki_.client_cert, pki_.client_key), "s", "localhost");
  ASSERT_TRUE((*client)->Write("hello").ok());
  std::string c_read, s_read;
  ASSERT_TRUE(Shuttle(client->get(), server->get(), &c_read, &s_read).ok());
  EXPECT_TRUE((*server)->established());
  EXPECT_EQ(s_read, "hello");
}

// A TLS 1.3 client finishes first; it knows the server accepted its certificate only when the
// server's ticket arrives (what `oklog forward` waits for before sending a line).
TEST_F(TlsTest, ClientIsConfirmedOnlyOnceTheServerAcceptedIt) {
  auto server = TlsSession::Create(Server(pki_.ca), "known");
  auto client = TlsSession::Create(Client(pki_.ca, pki_.client_cert, pki_.client_key), "s", "localhost");
  std::string c_read, s_read;
  ASSERT_TRUE(Shuttle(client->get(), server->get(), &c_read, &s_read).ok());
  EXPECT_TRUE((*client)->peer_confirmed());
  auto server2 = TlsSession::Create(Server(pki_.ca), "anonymous");
  auto anonymous = TlsSession::Create(Client(pki_.ca), "s", "localhost");
  // Client hello, server flight, client finished: the client is established, not confirmed.
  ASSERT_TRUE((*server2)->Feed((*anonymous)->TakeCiphertext(), &s_read).ok());
  ASSERT_TRUE((*anonymous)->Feed((*server2)->TakeCiphertext(), &c_read).ok());
  EXPECT_TRUE((*anonymous)->established());
  EXPECT_FALSE((*anonymous)->peer_confirmed());
  EXPECT_FALSE((*server2)->Feed((*anonymous)->TakeCiphertext(), &s_read).ok());
  EXPECT_FALSE((*anonymous)->Feed((*server2)->TakeCiphertext(), &c_read).ok());  // the alert
  EXPECT_FALSE((*anonymous)->peer_confirmed());
}

TEST_F(TlsTest, ClientRefusesAServerItsCaDidNotSign) {
  auto server = TlsSession::Create(Server(), "p");
  auto client = TlsSession::Create(Client(pki_.other_ca), "s", "localhost");
  std::string c_read, s_read;
  Status s = Shuttle(client->get(), server->get(), &c_read, &s_read);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("certificate"), std::string::npos) << s.ToString();
}

TEST_F(TlsTest, ClientRefusesAServerCertificateForAnotherName) {
  auto server = TlsSession::Create(Server(), "p");
  auto client = TlsSession::Create(Client(pki_.ca), "s", "oklog.example.com");
  std::string c_read, s_read;
  EXPECT_FALSE(Shuttle(client->get(), server->get(), &c_read, &s_read).ok());
  auto client_ip = TlsSession::Create(Client(pki_.ca), "s", "10.1.2.3");
  auto server2 = TlsSession::Create(Server(), "p");
  EXPECT_FALSE(Shuttle(client_ip->get(), server2->get(), &c_read, &s_read).ok());
}

TEST_F(TlsTest, GarbageAndPlainHttpFailWithoutACrash) {
  auto ctx = Server();
  auto plain = TlsSession::Create(ctx, "plain");
  std::string out;
  EXPECT_FALSE((*plain)->Feed("GET / HTTP/1.1\r\nHost: x\r\n\r\n", &out).ok());
  EXPECT_FALSE((*plain)->Feed("more", &out).ok());  // stays failed
  std::mt19937 rng(42);
  for (int i = 0; i < 200; ++i) {
    auto s = TlsSession::Create(ctx, "garbage");
    std::string junk(1 + rng() % 4000, '\0');
    for (char& c : junk) c = static_cast<char>(rng());
    if (i % 2 == 0) junk[0] = 0x16;  // looks like a handshake record
    Status st = (*s)->Feed(junk, &out);
    EXPECT_TRUE(out.empty());
    (void)(*s)->TakeCiphertext();
    (void)st;  // a short junk may still wait for more bytes; never a crash, never plaintext
  }
  EXPECT_GE(Failures(), 100);
}

TEST_F(TlsTest, ServerRecordsFedByteByByteStillDecrypt) {
  auto server = TlsSession::Create(Server(), "p");
  auto client = TlsSession::Create(Client(pki_.ca), "s", "localhost");
  std::string c_read, s_read;
  ASSERT_TRUE(Shuttle(client->get(), server->get(), &c_read, &s_read).ok());
  ASSERT_TRUE((*client)->Write("split into single bytes").ok());
  std::string ct = (*client)->TakeCiphertext();
  for (char c : ct) ASSERT_TRUE((*server)->Feed(std::string_view(&c, 1), &s_read).ok());
  EXPECT_EQ(s_read, "split into single bytes");
}

TEST_F(TlsTest, PlaintextHeldBeforeTheHandshakeIsBounded) {
  auto client = TlsSession::Create(Client(pki_.ca), "s", "localhost");
  std::string chunk(1 << 20, 'a');
  for (int i = 0; i < 4; ++i) ASSERT_TRUE((*client)->Write(chunk).ok());
  EXPECT_EQ((*client)->Write("one byte more").code(), Code::kResourceExhausted);
}

TEST_F(TlsTest, HandshakeTimeoutIsCountedOnce) {
  auto server = TlsSession::Create(Server(), "slow");
  (*server)->NoteHandshakeTimeout();
  (*server)->NoteHandshakeTimeout();
  EXPECT_TRUE((*server)->failed());
  EXPECT_EQ(Failures(), 1);
}

TEST_F(TlsTest, CreateRefusesMissingMismatchedAndHalfGivenFiles) {
  auto missing = TlsContext::Create(TlsRole::kServer, {dir_.path() + "/nope.pem", pki_.server_key, "", "t"}, nullptr);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("nope.pem"), std::string::npos);
  auto mismatch = TlsContext::Create(TlsRole::kServer, {pki_.server_cert, pki_.client_key, "", "t"}, nullptr);
  ASSERT_FALSE(mismatch.ok());
  EXPECT_NE(mismatch.status().message().find("mismatch"), std::string::npos) << mismatch.status().ToString();
  EXPECT_FALSE(TlsContext::Create(TlsRole::kServer, {pki_.server_cert, "", "", "t"}, nullptr).ok());
  EXPECT_FALSE(TlsContext::Create(TlsRole::kServer, {}, nullptr).ok());
  EXPECT_FALSE(TlsContext::Create(TlsRole::kClient, {"", pki_.client_key, pki_.ca, "t"}, nullptr).ok());
  auto bad_ca = TlsContext::Create(TlsRole::kServer, {pki_.server_cert, pki_.server_key, pki_.server_key, "t"}, nullptr);
  EXPECT_FALSE(bad_ca.ok());  // a key is no CA certificate
}

// --- Over real sockets: the HTTP server with TLS ---------------------------------------------

class HttpsServerTest : public TlsTest {
 protected:
  void Start(const std::string& client_ca, std::chrono::milliseconds handshake_timeout = 10000ms) {
    TlsOptions o{pki_.server_cert, pki_.server_key, client_ca, "test", handshake_timeout};
    auto ctx = TlsContext::Create(TlsRole::kServer, o, &metrics_);
    ASSERT_TRUE(ctx.ok()) << ctx.status().ToString();
    HttpServer::Options so;
    so.tls = *ctx;
    auto server = HttpServer::Create(loop_.loop(), *ParseAddress("127.0.0.1:0", 0), so, &metrics_);
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(server).value();
    server_->Handle("/hello", [](const HttpRequest&, std::shared_ptr<HttpResponse> w) { w->Send(200, "hello"); });
    server_->Handle("/big", [](const HttpRequest&, std::shared_ptr<HttpResponse> w) {
      w->Start(200, {});  // chunked
      for (int i = 0; i < 64; ++i) w->Write(std::string(64 * 1024, static_cast<char>('a' + i % 26)));
      w->Finish();
    });
    base_ = "https://127.0.0.1:" + std::to_string(server_->port());
    loop_.Start();
  }
  void TearDown() override {
    if (server_ == nullptr) return;
    loop_.Stop([this] { server_->Close(); });
    server_.reset();
  }
  std::string CurlTls(const std::string& args) { return "--cacert " + pki_.ca + " " + args; }

  LoopThread loop_;
  std::unique_ptr<HttpServer> server_;
  std::string base_;
};

TEST_F(HttpsServerTest, HttpFetchAndCurlGetAnswersOverTls) {
  Start("");
  HttpClientOptions co;
  co.tls = Client(pki_.ca);
  auto r = HttpFetchAll("GET", base_ + "/hello", co);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "hello");
  auto big = HttpFetchAll("GET", base_ + "/big", co);
  ASSERT_TRUE(big.ok()) << big.status().ToString();
  EXPECT_EQ(big->body.size(), 64u * 64 * 1024);
  EXPECT_EQ(big->body.substr(64 * 1024, 3), "bbb");
  auto c = Curl(CurlTls(base_ + "/hello"));
  EXPECT_EQ(c.exit_code, 0);
  EXPECT_EQ(c.output, "hello");
  auto localhost = Curl(CurlTls("https://localhost:" + std::to_string(server_->port()) + "/hello"));
  EXPECT_EQ(localhost.output, "hello");
}

TEST_F(HttpsServerTest, UntrustedServerIsRefusedByTheClients) {
  Start("");
  HttpClientOptions co;
  co.tls = Client(pki_.other_ca);
  auto r = HttpFetchAll("GET", base_ + "/hello", co);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kIOError);
  EXPECT_NE(Curl("--cacert " + pki_.other_ca + " " + base_ + "/hello").exit_code, 0);
}

TEST_F(HttpsServerTest, ClientCaRequiresCertificatesOfThatCa) {
  Start(pki_.ca);
  HttpClientOptions with;
  with.tls = Client(pki_.ca, pki_.client_cert, pki_.client_key);
  auto ok = HttpFetchAll("GET", base_ + "/hello", with);
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(ok->body, "hello");
  HttpClientOptions without;
  without.tls = Client(pki_.ca);
  EXPECT_FALSE(HttpFetchAll("GET", base_ + "/hello", without).ok());
  HttpClientOptions stranger;
  stranger.tls = Client(pki_.ca, pki_.other_client_cert, pki_.other_client_key);
  EXPECT_FALSE(HttpFetchAll("GET", base_ + "/hello", stranger).ok());

  auto c = Curl(CurlTls("--cert " + pki_.client_cert + " --key " + pki_.client_key + " " + base_ + "/hello"));
  EXPECT_EQ(c.exit_code, 0);
  EXPECT_EQ(c.output, "hello");
  EXPECT_NE(Curl(CurlTls(base_ + "/hello")).exit_code, 0);
  EXPECT_TRUE(WaitFor([&] { return Failures() >= 3; }, 5s)) << Failures();
}

TEST_F(HttpsServerTest, PlainHttpAndSilenceAreClosed) {
  Start("", 300ms);
  RawClient plain(server_->port());
  ASSERT_TRUE(plain.Send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"));
  bool closed = false;
  std::string got = plain.Read(5s, "", &closed);
  EXPECT_TRUE(closed);
  EXPECT_EQ(got.find("hello"), std::string::npos);

  auto start = std::chrono::steady_clock::now();
  RawClient silent(server_->port());
  ASSERT_TRUE(silent.connected());
  silent.Read(5s, "", &closed);
  EXPECT_TRUE(closed);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);  // the handshake deadline, not the idle one
  EXPECT_TRUE(WaitFor([&] { return Failures() >= 2; }, 5s)) << Failures();
}

}  // namespace
}  // namespace oklog
